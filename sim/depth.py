"""The RTL path of the QuartDepth engine: a compiled program run on the generated Verilog (cocotb,
Verilator) and compared with the integer graph and the instruction-set simulator."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from qsilicon.hw.depth.engine import DepthEngine
from qsilicon.hw.depth.isa import EngineConfig
from qsilicon.hw.export import to_verilog

from .runner import Simulation, prepare

__all__ = ["RtlRun", "build_depth_engine", "depth_engine_verilog", "rtl_run"]

TOPLEVEL = "depth_engine"


@dataclass(frozen=True)
class RtlRun:
    """What a run left: the memory image after it, the registers, per-tag compute cycles and beats."""

    memory: bytes
    regs: dict
    busy_by_tag: dict
    beats_by_tag: dict

    @property
    def cycles(self) -> int:
        return self.regs["CYCLES"]

    @property
    def error_cause(self) -> int:
        return (self.regs["STATUS"] >> 8) & 15 if self.regs["STATUS"] & 4 else 0


def depth_engine_verilog(cfg: EngineConfig) -> str:
    return to_verilog(DepthEngine(cfg), TOPLEVEL)


def build_depth_engine(cfg: EngineConfig, sim: str = "verilator", log_file: Path | None = None) -> Simulation:
    if sim != "verilator":
        raise ValueError(f"the whole engine runs on Verilator only (Icarus is too slow for it), not {sim!r}")
    return prepare(depth_engine_verilog(cfg), TOPLEVEL, sim, cfg.tag, log_file)


def rtl_run(cfg: EngineConfig, memory: bytes | bytearray, prog_addr: int, *, sim: str = "verilator",
            ready_p: float = 1.0, seed: int = 0, expect_error: bool = False, max_cycles: int = 20_000_000,
            log_file: Path | None = None) -> RtlRun:
    """Run the program at ``prog_addr`` in ``memory`` on the engine's RTL (AXI4 memory model with
    ``ready_p`` handshake probability, AXI4-Lite start and status)."""
    simulation = build_depth_engine(cfg, sim, log_file)
    with tempfile.TemporaryDirectory(prefix="qs-depth-") as tmp:
        tmp = Path(tmp)
        (tmp / "mem.bin").write_bytes(bytes(memory))
        env = {"QS_MEM": str(tmp / "mem.bin"), "QS_PROG": str(prog_addr), "QS_DUMP": str(tmp / "dump.bin"),
               "QS_RESULT": str(tmp / "result.json"), "QS_READY_P": str(ready_p), "QS_SEED": str(seed),
               "QS_EXPECT_ERROR": "1" if expect_error else "0", "QS_MAX_CYCLES": str(max_cycles)}
        simulation.run("qsilicon.sim.tb_depth", env, tmp / "results.xml", log_file)
        res = json.loads((tmp / "result.json").read_text())
        image = (tmp / "dump.bin").read_bytes()
    return RtlRun(image, res["regs"], {int(k): v for k, v in res["busy_by_tag"].items()},
                  {int(k): v for k, v in res["beats_by_tag"].items()})

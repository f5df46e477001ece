"""The RTL path of the ViT block accelerator: a block program run on the generated Verilog."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from qsilicon.hw.export import to_verilog
from qsilicon.hw.vit.engine import VitBlockEngine
from qsilicon.hw.vit.program import BlockProgram

from .runner import Simulation, SimulationError, prepare

__all__ = ["RtlBlockResult", "build_vit_block", "rtl_vit_block", "vit_block_verilog"]

TOPLEVEL = "vit_block"


@dataclass(frozen=True)
class RtlBlockResult:
    """What the RTL wrote, compared with the integer model.

    Members
    -------
    got : every intermediate read back from memory (shapes of :meth:`IntViT.block`).
    mismatches : per intermediate, the number of values that differ from the integer model.
    op_cycles : ``(name, kind, cycles)`` per operation, from the descriptors' write-back words.
    cycles : cycles from start to done (the ``CYCLES`` register).
    """

    got: dict[str, torch.Tensor]
    mismatches: dict[str, int]
    op_cycles: list[tuple[str, str, int]]
    cycles: int

    @property
    def ok(self) -> bool:
        return not any(self.mismatches.values())


def vit_block_verilog(lanes: int) -> str:
    return to_verilog(VitBlockEngine(lanes), TOPLEVEL)


def build_vit_block(lanes: int, sim: str, log_file: Path | None = None) -> Simulation:
    return prepare(vit_block_verilog(lanes), TOPLEVEL, sim, f"vit_block_l{lanes}", log_file)


def rtl_vit_block(prog: BlockProgram, *, sim: str = "verilator", ready_p: float = 1.0, seed: int = 0,
                  log_file: Path | None = None) -> RtlBlockResult:
    """Run ``prog`` on the accelerator's RTL in cocotb (AXI4 memory model, AXI4-Lite start and
    status polling) and compare every intermediate with the integer model, ``torch.equal``."""
    simulation = build_vit_block(prog.memory.lanes, sim, log_file)
    with tempfile.TemporaryDirectory(prefix="qs-vit-") as tmp:
        tmp = Path(tmp)
        (tmp / "mem.bin").write_bytes(bytes(prog.memory.data))
        env = {"QS_MEM": str(tmp / "mem.bin"), "QS_PROG": str(prog.program), "QS_DUMP": str(tmp / "dump.bin"),
               "QS_RESULT": str(tmp / "result.json"), "QS_READY_P": str(ready_p), "QS_SEED": str(seed)}
        simulation.run("qsilicon.sim.tb_vit", env, tmp / "results.xml", log_file)
        res = json.loads((tmp / "result.json").read_text())
        image = (tmp / "dump.bin").read_bytes()
    got = prog.read(image)
    mismatches = {k: int((got[k] != prog.expected[k]).sum()) for k in prog.expected}
    if res["ops"] != len(prog.ops):
        raise SimulationError(f"the engine completed {res['ops']} of {len(prog.ops)} operations")
    return RtlBlockResult(got, mismatches, prog.op_cycles(image), res["cycles"])

"""The RTL path of the GEMM engine: same signature as :func:`qsilicon.quant.ref_gemm`."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from qsilicon.hw.config import GemmConfig
from qsilicon.hw.export import to_verilog
from qsilicon.hw.gemm import GemmEngine, schedule_gemm
from qsilicon.quant import GemmCase

from .runner import Simulation, SimulationError, prepare

__all__ = ["GemmMismatchError", "RtlGemmResult", "build_gemm", "gemm_verilog", "rtl_gemm"]

TOPLEVEL = "gemm_engine"


@dataclass(frozen=True)
class RtlGemmResult:
    """Outputs of the RTL run and what it cost.

    Members
    -------
    out : ``[M, N]`` int32 requantized outputs, as the RTL produced them.
    cycles : cycles from the first accepted input beat to the last output beat, inclusive.
    ideal_cycles : ``ceil(M*N*K / (rows*cols))``.
    utilization : ``M*N*K / (rows*cols*cycles)``.
    mismatches : outputs that the testbench's checker found different from the reference.
    """

    out: torch.Tensor
    cycles: int
    ideal_cycles: int
    utilization: float
    mismatches: int


class GemmMismatchError(SimulationError):
    """The RTL ran to completion and differs from the reference; ``result`` holds its outputs."""

    def __init__(self, result: RtlGemmResult) -> None:
        super().__init__(f"RTL differs from the integer reference in {result.mismatches} outputs")
        self.result = result


def gemm_verilog(cfg: GemmConfig) -> str:
    """The engine's Verilog (top module ``gemm_engine``)."""
    return to_verilog(GemmEngine(cfg), TOPLEVEL)


def build_gemm(cfg: GemmConfig, sim: str, log_file: Path | None = None, waves: bool = False) -> Simulation:
    """Build (or reuse the cached build of) the engine for ``sim`` (``waves``: a build that records
    waveforms)."""
    return prepare(gemm_verilog(cfg), TOPLEVEL, sim, cfg.tag + ("_waves" if waves else ""), log_file, waves=waves)


def rtl_gemm(
    case: GemmCase,
    cfg: GemmConfig,
    *,
    sim: str = "verilator",
    valid_p: float = 1.0,
    ready_p: float = 1.0,
    seed: int = 0,
    log_file: Path | None = None,
    netlist=None,
    vcd: Path | None = None,
    saif: Path | None = None,
    waves: Path | None = None,
) -> RtlGemmResult:
    """Run ``case`` on the generated RTL in cocotb and return what the RTL computed.

    The testbench checks the RTL against :func:`~qsilicon.quant.ref_gemm` itself and the run
    raises :class:`~qsilicon.sim.runner.SimulationError` on any mismatch; the outputs are
    returned as well so callers can compare them independently.

    ``netlist`` (a :class:`~qsilicon.hw.asic.AsicNetlist` of this engine) runs the mapped
    gate-level netlist instead of the RTL (``vcd``: Icarus dumps its nets there; ``saif``: Verilator
    writes their toggle counts there; for power).  ``waves``: the RTL run's waveform goes there (FST
    on Verilator, VCD on Icarus).
    """
    sched = schedule_gemm(case, cfg)  # validates the case against the config before building
    if netlist is not None:
        from qsilicon.hw.asic import gate_level_verilog

        simulation = prepare(gate_level_verilog(netlist), TOPLEVEL, sim, f"{cfg.tag}_gl_{netlist.library}", log_file,
                             saif=sim == "verilator" and saif is not None)
    else:
        simulation = build_gemm(cfg, sim, log_file, waves=waves is not None)
    with tempfile.TemporaryDirectory(prefix="qs-gemm-") as tmp:
        tmp = Path(tmp)
        case.save(tmp / "case.pt")
        env = {
            "QS_CASE": str(tmp / "case.pt"), "QS_CONFIG": json.dumps(cfg.to_dict()),
            "QS_RESULT": str(tmp / "result.json"), "QS_VALID_P": str(valid_p),
            "QS_READY_P": str(ready_p), "QS_SEED": str(seed),
        }
        failure = None
        try:
            simulation.run("qsilicon.sim.tb_gemm", env, tmp / "results.xml", log_file,
                           plusargs=[f"+qs_vcd={vcd}"] if vcd is not None else None,
                           trace_file=saif if netlist is not None else waves)
        except SimulationError as e:
            failure = e
        if not (tmp / "result.json").exists():
            raise failure or SimulationError("the testbench wrote no result")
        res = json.loads((tmp / "result.json").read_text())
    result = RtlGemmResult(
        out=torch.tensor(res["out"], dtype=torch.int32).reshape(case.shape[0], case.shape[2]),
        cycles=res["cycles"], ideal_cycles=sched.ideal_cycles, utilization=sched.utilization(res["cycles"]),
        mismatches=res["mismatches"],
    )
    if result.mismatches:
        raise GemmMismatchError(result)
    if failure is not None:
        raise failure
    return result

"""The RTL path of the ViT accelerator: a compiled whole model run on the generated Verilog."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from qsilicon.hw.config import AccelConfig
from qsilicon.hw.export import to_verilog
from qsilicon.hw.vit.compiler import VitProgram
from qsilicon.hw.vit.driver import RunResult
from qsilicon.hw.vit.system import VitAccel

from .runner import Simulation, SimulationError, prepare

__all__ = ["TOPLEVEL", "RtlVitRun", "build_vit_accel", "rtl_vit", "vit_accel_verilog"]

TOPLEVEL = "vit_accel"


@dataclass
class RtlVitRun:
    """Per image: what the host read (:class:`~qsilicon.hw.vit.driver.RunResult`) and, with
    ``dump``, the whole memory after the run."""

    results: list[RunResult]
    images: list[bytes]


def vit_accel_verilog(cfg: AccelConfig) -> str:
    """The design's Verilog, top module ``vit_accel``."""
    return to_verilog(VitAccel(cfg), TOPLEVEL)


def build_vit_accel(cfg: AccelConfig, sim: str = "verilator", log_file: Path | None = None,
                    waves: bool = False) -> Simulation:
    """Build (or reuse the cached build of) the design for ``sim`` (``waves``: one that records
    waveforms)."""
    return prepare(vit_accel_verilog(cfg), TOPLEVEL, sim, f"vit_accel_{cfg.tag}" + ("_waves" if waves else ""),
                   log_file, waves=waves)


def rtl_vit(prog: VitProgram, codes: torch.Tensor, *, sim: str = "verilator", ready_p: float = 1.0, seed: int = 0,
            faults: dict | None = None, dump: bool = False, watchdog: int = 0, max_cycles: int = 5_000_000,
            image: bytes | None = None, log_file: Path | None = None, waves: Path | None = None,
            design: AccelConfig | None = None) -> RtlVitRun:
    """Run the images ``codes`` (int8 patch codes ``[N, patches, patch_dim]``) one after another on
    the design's RTL in cocotb; ``image`` replaces the program's memory image (a corrupted program,
    for the error tests); ``waves``: the run's FST waveform goes there; ``design``: run on this
    design's RTL instead of the program's (the host refuses a design the program was not compiled
    for)."""
    if codes.dim() != 3:
        raise ValueError(f"patch codes must be [images, patches, patch_dim], not {tuple(codes.shape)}")
    simulation = build_vit_accel(design or prog.config, sim, log_file, waves=waves is not None)
    with tempfile.TemporaryDirectory(prefix="qs-vit-") as tmp:
        tmp = Path(tmp)
        (tmp / "mem.bin").write_bytes(bytes(prog.memory.data) if image is None else image)
        np.save(tmp / "inputs.npy", codes.to(torch.int8).numpy())
        env = {"QS_MEM": str(tmp / "mem.bin"), "QS_LAYOUT": json.dumps(prog.layout().to_dict()),
               "QS_INPUTS": str(tmp / "inputs.npy"), "QS_RESULT": str(tmp / "result.json"),
               "QS_READY_P": str(ready_p), "QS_SEED": str(seed), "QS_FAULTS": json.dumps(faults or {}),
               "QS_WATCHDOG": str(watchdog), "QS_MAX_CYCLES": str(max_cycles)}
        if dump:
            (tmp / "dump").mkdir()
            env["QS_DUMP"] = str(tmp / "dump")
        failure = None
        try:
            simulation.run("qsilicon.sim.tb_vit_accel", env, tmp / "results.xml", log_file, trace_file=waves)
        except SimulationError as e:
            failure = e
        if not (tmp / "result.json").exists():
            raise failure or SimulationError("the testbench wrote no result")
        results = [RunResult(**r) for r in json.loads((tmp / "result.json").read_text())]
        images = [(tmp / "dump" / f"image{i}.bin").read_bytes() for i in range(len(results))] if dump else []
    if failure is not None:
        raise failure
    return RtlVitRun(results, images)

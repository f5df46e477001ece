"""cocotb testbench of the GEMM engine: driver / monitor / model / checker in one class.

Run through :func:`qsilicon.sim.gemm.rtl_gemm`, which passes the case and settings in the
environment: ``QS_CASE`` (a saved :class:`~qsilicon.quant.GemmCase`), ``QS_CONFIG`` (JSON of a
:class:`~qsilicon.hw.config.GemmConfig`), ``QS_RESULT`` (where to write the outputs and cycle
count as JSON), ``QS_VALID_P`` / ``QS_READY_P`` (idle and backpressure probabilities) and
``QS_SEED``.  ``QS_MODEL_CASE`` optionally gives the model a different case than the RTL
(used to prove that the checker catches a mismatch).
"""

from __future__ import annotations

import json
import os
import random

import cocotb
import torch
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from qsilicon.hw.config import GemmConfig
from qsilicon.hw.gemm import schedule_gemm
from qsilicon.quant import GemmCase, ref_gemm
from qsilicon.sim.streams import StreamDriver, StreamMonitor


class GemmTB:
    """Driver (three input streams), monitor (``o_res``), model (:func:`ref_gemm`), checker."""

    def __init__(self, dut, case: GemmCase, cfg: GemmConfig, valid_p: float, ready_p: float, seed: int,
                 model_case: GemmCase | None = None):
        self.dut = dut
        self.case = case
        self.model_case = case if model_case is None else model_case
        self.sched = schedule_gemm(case, cfg)
        rng = random.Random(seed)
        self.drivers = [
            StreamDriver(dut, "i_act", self.sched.act, valid_p, rng),
            StreamDriver(dut, "i_wgt", self.sched.wgt, valid_p, rng),
            StreamDriver(dut, "i_par", self.sched.par, valid_p, rng),
        ]
        self.monitor = StreamMonitor(dut, "o_res", ready_p, rng)

    def model(self) -> torch.Tensor:
        return ref_gemm(self.model_case).out

    async def reset(self) -> None:
        self.dut.rst.value = 1
        for d in self.drivers:
            d.valid.value = 0
        self.monitor.ready.value = 0
        for _ in range(3):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0

    async def run(self, max_cycles: int) -> int:
        """Run until every output beat arrived; return cycles from the first accepted input beat
        to the last delivered output beat, inclusive."""
        for cycle in range(max_cycles):
            await RisingEdge(self.dut.clk)
            for agent in (*self.drivers, self.monitor):
                agent.drive()
            await ReadOnly()
            for agent in (*self.drivers, self.monitor):
                agent.sample(cycle)
            if len(self.monitor.beats) == self.sched.out_beats:
                first = min(d.first_fire for d in self.drivers if d.first_fire is not None)
                return self.monitor.last_fire - first + 1
        raise AssertionError(
            f"timeout after {max_cycles} cycles: {len(self.monitor.beats)} of {self.sched.out_beats} output rows"
        )

    def check(self) -> tuple[torch.Tensor, int]:
        got = self.sched.assemble(self.monitor.beats)
        return got, int((got != self.model()).sum())


@cocotb.test()
async def gemm_matches_reference(dut):
    case = GemmCase.load(os.environ["QS_CASE"])
    cfg = GemmConfig(**json.loads(os.environ["QS_CONFIG"]))
    tb = GemmTB(dut, case, cfg, float(os.environ.get("QS_VALID_P", "1")),
                float(os.environ.get("QS_READY_P", "1")), int(os.environ.get("QS_SEED", "0")),
                GemmCase.load(os.environ["QS_MODEL_CASE"]) if "QS_MODEL_CASE" in os.environ else None)
    Clock(dut.clk, 10, unit="ns").start()
    await tb.reset()
    m, k, n = case.shape
    cycles = await tb.run(max_cycles=50 * (tb.sched.ideal_cycles + len(tb.sched.tiles) * (cfg.rows + 8)) + 1000)
    got, mismatches = tb.check()
    with open(os.environ["QS_RESULT"], "w") as f:
        json.dump({"out": got.tolist(), "cycles": cycles, "mismatches": mismatches}, f)
    assert mismatches == 0, f"{mismatches} of {m * n} outputs differ from the integer reference"

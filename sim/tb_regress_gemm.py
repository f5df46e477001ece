"""cocotb regression testbench of the GEMM engine: many cases streamed through one simulation.

Run by :func:`qsilicon.sim.regress.regress`: ``QS_CASES`` (a ``torch.save`` list of case dicts:
the :class:`~qsilicon.quant.GemmCase` state, valid/ready probabilities, reset, seed), ``QS_CONFIG``
(the :class:`~qsilicon.hw.config.GemmConfig`, JSON) and ``QS_RESULTS`` (one JSON line per case).
Cases follow each other without a reset unless a case asks for one or the previous one failed.
Each is checked against :func:`~qsilicon.quant.ref_gemm` with a cycle limit; the first mismatch
is reported with its tile, row, column and the cycle its row left the engine.
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
from qsilicon.quant.intops import ACC_BITS
from qsilicon.sim.regress import cycle_limit_gemm
from qsilicon.sim.streams import StreamDriver, StreamMonitor


async def _reset(dut) -> None:
    await RisingEdge(dut.clk)  # (out of the read-only phase the last case ended in)
    dut.rst.value = 1
    for name in ("i_act", "i_wgt", "i_par"):
        getattr(dut, f"{name}__valid").value = 0
    dut.o_res__ready.value = 0
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0


async def run_case(dut, cfg: GemmConfig, c: dict) -> dict:
    case = GemmCase.from_state(c["case"])
    sched = schedule_gemm(case, cfg)
    ref = ref_gemm(case)
    rng = random.Random(c["seed"])
    drivers = [StreamDriver(dut, "i_act", sched.act, c["valid_p"], rng),
               StreamDriver(dut, "i_wgt", sched.wgt, c["valid_p"], rng),
               StreamDriver(dut, "i_par", sched.par, c["valid_p"], rng)]
    monitor = StreamMonitor(dut, "o_res", c["ready_p"], rng)
    stamps: list[int] = []
    observed: set[str] = set()
    m, k, n = case.shape
    limit = cycle_limit_gemm(m, k, n, cfg.rows, cfg.cols)
    cycle = 0
    for cycle in range(limit):
        await RisingEdge(dut.clk)
        for agent in (*drivers, monitor):
            agent.drive()
        await ReadOnly()
        for d in drivers:
            if d.valid.value == 1 and d.ready.value == 0:
                observed.add("observed/input_wait")
        if monitor.valid.value == 1 and monitor.ready.value == 0:
            observed.add("observed/output_wait")
        before = len(monitor.beats)
        for agent in (*drivers, monitor):
            agent.sample(cycle)
        if len(monitor.beats) > before:
            stamps.append(cycle)
        if len(monitor.beats) == sched.out_beats:
            break
    else:
        return {"ok": False, "cycles": limit, "error": f"hang: {len(monitor.beats)} of {sched.out_beats} output rows "
                f"in {limit} cycles", "first": None, "observed": sorted(observed)}
    want = ref.out
    if (want == case.out_fmt.qmax).any():
        observed.add("observed/saturated_hi")
    if (want == case.out_fmt.qmin).any():
        observed.add("observed/saturated_lo")
    if ((ref.acc == (1 << (ACC_BITS - 1)) - 1) | (ref.acc == -(1 << (ACC_BITS - 1)))).any():
        observed.add("observed/acc_at_int32_limit")
    try:
        got = sched.assemble(monitor.beats)
    except ValueError as e:
        return {"ok": False, "cycles": cycle + 1, "error": str(e), "first": None, "observed": sorted(observed)}
    bad = got != want
    first = None
    if bad.any():
        # the first wrong output in the order the engine wrote them: tile by tile, row by row
        for t, tile in enumerate(sched.tiles):
            for r in range(cfg.rows):
                row = tile.m0 + r
                if row >= m:
                    continue
                for col, ch in enumerate(tile.channels):
                    if ch >= 0 and bad[row, ch] and first is None:
                        first = {"tile": t, "row": row, "col": ch, "array_row": r, "array_col": col,
                                 "expected": int(want[row, ch]), "got": int(got[row, ch]),
                                 "cycle": stamps[t * cfg.rows + r]}
        return {"ok": False, "cycles": cycle + 1, "first": first, "observed": sorted(observed),
                "error": f"{int(bad.sum())} of {m * n} outputs differ from the integer reference"}
    return {"ok": True, "cycles": cycle + 1, "error": None, "first": None, "observed": sorted(observed)}


@cocotb.test()
async def regress_gemm(dut):
    cases = torch.load(os.environ["QS_CASES"], weights_only=True)
    cfg = GemmConfig(**json.loads(os.environ["QS_CONFIG"]))
    Clock(dut.clk, 10, unit="ns").start()
    need_reset = True
    with open(os.environ["QS_RESULTS"], "a") as out:
        for c in cases:
            if need_reset or c["reset"]:
                await _reset(dut)
            res = await run_case(dut, cfg, c)
            need_reset = not res["ok"]
            out.write(json.dumps({"index": c["index"], **res}) + "\n")
            out.flush()

"""Stream-level simulation in Amaranth's own simulator: fast to start, for blocks and small arrays.

The cocotb testbenches (:mod:`qsilicon.sim.gemm`) are the real verification on Icarus and
Verilator; this runner drives the same components with the same packed beats, for unit tests
that need no external simulator.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from amaranth.sim import Simulator

from qsilicon.hw.config import GemmConfig
from qsilicon.hw.gemm import GemmEngine, schedule_gemm
from qsilicon.quant import GemmCase

__all__ = ["PysimResult", "pysim_gemm", "pysim_streams"]


def pysim_streams(
    dut,
    sources: Mapping[str, Sequence[int]],
    sink: str,
    n_out: int,
    *,
    valid_pattern: Sequence[int] = (1,),
    ready_pattern: Sequence[int] = (1,),
    max_cycles: int = 200_000,
    settings: Mapping[str, int] | None = None,
) -> tuple[list[int], int]:
    """Drive the stream ports named in ``sources`` with packed beats and collect ``n_out`` beats
    from the stream port ``sink``; ``settings`` holds constant values for configuration ports.

    Each source follows its own copy of ``valid_pattern`` (cycled per clock, ``0`` = idle);
    ``ready_pattern`` is the sink's backpressure.  Returns the collected beats and the cycle
    count from the first accepted source beat to the last delivered sink beat, inclusive.
    """
    ports = {name: getattr(dut, name) for name in sources}
    out_port = getattr(dut, sink)
    outs: list[int] = []
    span: dict[str, int] = {}

    async def bench(ctx):
        for name, value in (settings or {}).items():
            ctx.set(getattr(dut, name), value)
        idx = dict.fromkeys(sources, 0)
        vpats = {name: itertools.cycle(valid_pattern) for name in sources}
        rpat = itertools.cycle(ready_pattern)
        for cycle in range(max_cycles):
            for name, port in ports.items():
                beats, i = sources[name], idx[name]
                ctx.set(port.valid, bool(next(vpats[name])) and i < len(beats))
                if i < len(beats):
                    ctx.set(port.payload.as_value(), beats[i])
            ctx.set(out_port.ready, next(rpat))
            for name, port in ports.items():
                if ctx.get(port.valid) and ctx.get(port.ready):
                    idx[name] += 1
                    span.setdefault("first", cycle)
            if ctx.get(out_port.valid) and ctx.get(out_port.ready):
                outs.append(ctx.get(out_port.payload.as_value()))
            await ctx.tick()
            if len(outs) == n_out:
                span["last"] = cycle
                return
        raise TimeoutError(f"only {len(outs)} of {n_out} output beats after {max_cycles} cycles")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return outs, span["last"] - span.get("first", span["last"]) + 1


@dataclass(frozen=True)
class PysimResult:
    out: torch.Tensor
    cycles: int


def pysim_gemm(case: GemmCase, cfg: GemmConfig, **kwargs) -> PysimResult:
    """Run ``case`` on a :class:`GemmEngine` with the host schedule; ``kwargs`` go to
    :func:`pysim_streams`."""
    sched = schedule_gemm(case, cfg)
    outs, cycles = pysim_streams(
        GemmEngine(cfg), {"i_act": sched.act, "i_wgt": sched.wgt, "i_par": sched.par},
        "o_res", sched.out_beats, **kwargs,
    )
    return PysimResult(sched.assemble(outs), cycles)

"""The on-chip buffer: written and read back in Amaranth's simulator."""

import random

import pytest
from amaranth.sim import Simulator

from qsilicon.hw.blocks.buffer import Buffer


def test_write_then_read_with_one_cycle_latency():
    dut = Buffer(12, 40)
    rng = random.Random(0)
    values = [rng.randrange(1 << 12) for _ in range(40)]
    got = []

    async def bench(ctx):
        for addr, v in enumerate(values):
            ctx.set(dut.w_addr, addr)
            ctx.set(dut.w_data, v)
            ctx.set(dut.w_en, 1)
            await ctx.tick()
        ctx.set(dut.w_en, 0)
        ctx.set(dut.r_en, 1)
        for addr in reversed(range(40)):
            ctx.set(dut.r_addr, addr)
            await ctx.tick()
            got.append(ctx.get(dut.r_data))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got == list(reversed(values))


@pytest.mark.parametrize("args,msg", [((0, 4), "Width must be an integer from 1 to 1024, not 0"),
                                      ((8, 1), "Depth must be an integer from 2 to 2\\*\\*20, not 1")])
def test_rejects_bad_parameters(args, msg):
    with pytest.raises(ValueError, match=msg):
        Buffer(*args)

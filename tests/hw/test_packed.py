"""Packed multiplier lanes, exhaustively: every operand combination the issue asks for."""

import random

import pytest
from amaranth import Const, Elaboratable, Module, signed, unsigned
from amaranth.sim import Simulator

from qsilicon.hw.blocks.packed import PackedMul, lane_geometry


class _Lanes(Elaboratable):
    """Many copies of a lane, so one simulator settle checks many operand sets."""

    def __init__(self, n, packing, a_shape, w_shape):
        self.lanes = [PackedMul(packing, a_shape, w_shape) for _ in range(n)]

    def elaborate(self, platform):
        m = Module()
        for i, lane in enumerate(self.lanes):
            m.submodules[f"lane{i}"] = lane
        return m


def check_all(packing, a_shape, w_shape, cases, width=256):
    """``cases``: (activations, weights) tuples; returns the mismatches."""
    dut = _Lanes(width, packing, a_shape, w_shape)
    na, nw = lane_geometry(packing)
    bad = []

    async def bench(ctx):
        for i in range(0, len(cases), width):
            chunk = cases[i : i + width]
            for lane, (a, w) in zip(dut.lanes, chunk, strict=False):
                for j in range(na):
                    ctx.set(lane.a[j], a[j])
                for j in range(nw):
                    ctx.set(lane.w[j], w[j])
            for lane, (a, w) in zip(dut.lanes, chunk, strict=False):
                got = [ctx.get(lane.p[k]) for k in range(na * nw)]
                if got != [a[i] * w[j] for i in range(na) for j in range(nw)]:
                    bad.append((a, w, got))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    return bad


def rng_values(lo, hi, n, seed):
    r = random.Random(seed)
    return [lo, hi, 0, -1 if lo < 0 else 1, lo + 1, hi - 1] + [r.randint(lo, hi) for _ in range(n)]


def test_dsp2_every_int4_int4_int8_triple():
    cases = [((a,), (w0, w1)) for a in range(-128, 128) for w0 in range(-8, 8) for w1 in range(-8, 8)]
    assert len(cases) == 65536
    assert check_all("dsp2", signed(8), signed(8), cases) == []


def test_dsp2_every_int8_by_uint8_pair_in_each_position():
    """Signed row operand x unsigned column operands (the QuartDepth engine's weights x activations)."""
    others = rng_values(0, 255, 10, seed=7)
    low = [((a,), (w, others[(a + w) % len(others)])) for a in range(-128, 128) for w in range(256)]
    high = [((a,), (others[(a * 3 + w) % len(others)], w)) for a in range(-128, 128) for w in range(256)]
    assert check_all("dsp2", signed(8), unsigned(8), low + high) == []


@pytest.mark.parametrize("a_signed", [True, False], ids=["int8", "uint8"])
def test_dsp2_every_int8_pair_in_each_position(a_signed):
    """Every activation x weight pair in the low and in the high product, the other weight of the
    pair cycling through the boundaries and random values."""
    a_range = range(-128, 128) if a_signed else range(256)
    others = rng_values(-128, 127, 10, seed=int(a_signed))
    low = [((a,), (w, others[(a + w) % len(others)])) for a in a_range for w in range(-128, 128)]
    high = [((a,), (others[(a * 3 + w) % len(others)], w)) for a in a_range for w in range(-128, 128)]
    shape = signed(8) if a_signed else unsigned(8)
    assert check_all("dsp2", shape, signed(8), low + high) == []


@pytest.mark.parametrize("a_signed", [True, False], ids=["int4", "uint4"])
def test_dsp4_every_2x2_int4_block(a_signed):
    a_range = range(-8, 8) if a_signed else range(16)
    cases = [((a0, a1), (w0, w1)) for a0 in a_range for a1 in a_range for w0 in range(-8, 8) for w1 in range(-8, 8)]
    assert len(cases) == 65536
    shape = signed(4) if a_signed else unsigned(4)
    assert check_all("dsp4", shape, signed(4), cases) == []


@pytest.mark.parametrize("a_shape", [signed(8), unsigned(8), signed(4)], ids=["int8", "uint8", "int4"])
def test_lut_every_int4_weight_product(a_shape):
    n = a_shape.width
    lo, hi = (-(2 ** (n - 1)), 2 ** (n - 1) - 1) if a_shape.signed else (0, 2**n - 1)
    cases = [((a,), (w,)) for a in range(lo, hi + 1) for w in range(-8, 8)]
    assert check_all("lut", a_shape, signed(4), cases) == []


@pytest.mark.parametrize("args,msg", [
    (("dsp3", signed(8), signed(8)), "Packing must be one of none, dsp2, dsp4, lut, dot2, not 'dsp3'"),
    (("dsp4", signed(8), signed(4)), "dsp4 packing takes operands of up to 4 bits, not 8-bit activations"),
    (("lut", signed(8), unsigned(4)), "Weights must be signed"),
])
def test_lane_rejects_bad_parameters(args, msg):
    with pytest.raises(ValueError, match=msg):
        PackedMul(*args)


class _Dot2(Elaboratable):
    """Copies of the dot2 datapath of one PE: packed ports, one multiply, the field read."""

    def __init__(self, n):
        from amaranth import Signal

        self.a0 = [Signal(signed(8)) for _ in range(n)]
        self.a1 = [Signal(signed(8)) for _ in range(n)]
        self.w = [Signal(8) for _ in range(n)]
        self.dot = Signal()
        self.out = [Signal(signed(32)) for _ in range(n)]

    def elaborate(self, platform):
        from qsilicon.hw.blocks.packed import DOT2_SHIFT, dot2_col, dot2_field, dot2_row

        m = Module()
        s = DOT2_SHIFT
        for a0, a1, w, out in zip(self.a0, self.a1, self.w, self.out, strict=True):
            p = dot2_row(a0, a1, self.dot) * dot2_col(w, self.dot)
            m.d.comb += out.eq(dot2_field(Const(0, signed(32)), p[s : s + 17], p[s - 1], self.dot))
        return m


def _dot2_check(cases, dot, width=256):
    dut = _Dot2(width)
    bad = []

    async def bench(ctx):
        ctx.set(dut.dot, dot)
        for i in range(0, len(cases), width):
            chunk = cases[i : i + width]
            for j, (a0, a1, w0, w1) in enumerate(chunk):
                ctx.set(dut.a0[j], a0)
                ctx.set(dut.a1[j], a1)
                ctx.set(dut.w[j], ((w0 & 15) | ((w1 & 15) << 4)) if dot else w0 & 255)
            for j, (a0, a1, w0, w1) in enumerate(chunk):
                want = a0 * w0 + a1 * w1 if dot else a0 * w0
                if ctx.get(dut.out[j]) != want:
                    bad.append((a0, a1, w0, w1, ctx.get(dut.out[j])))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    return bad


def test_dot2_every_int4_weight_pair_with_edge_activations():
    acts = [-128, -127, -1, 0, 1, 126, 127, 85, -86]
    cases = [(a0, a1, w0, w1) for a0 in acts for a1 in acts for w0 in range(-8, 8) for w1 in range(-8, 8)]
    assert _dot2_check(cases, dot=1) == []


def test_dot2_every_int8_product():
    cases = [(a, 77, w, 5) for a in range(-128, 128) for w in range(-128, 128)]  # a1 and the pair ignored
    assert _dot2_check(cases, dot=0) == []

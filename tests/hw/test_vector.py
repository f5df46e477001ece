"""The element-wise vector unit against the integer-only ViT's operations, bit for bit."""

from pathlib import Path

import pytest
import torch

from qsilicon.hw.blocks.vector import OP_ADD, OP_GELU, OP_REQUANT, ElementwiseUnit, vector_in_layout, vector_out_layout
from qsilicon.hw.payload import pack, unpack
from qsilicon.quant import IntFormat, gelu_params, int_gelu, quantize_multiplier, requantize
from qsilicon.sim.pysim import pysim_streams

I8, I16 = IntFormat(8, True), IntFormat(16, True)
LANES = 4


def run_unit(op, a, b, m0, shift, gp=None, ready=(1, 1, 0, 1)):
    beats = [pack(vector_in_layout(LANES), {"a": a[i : i + LANES], "b": b[i : i + LANES],
                                            "last": int(i + LANES >= len(b))})
             for i in range(0, len(b), LANES)]
    settings = {"op": op, "m0": m0, "shift": shift, "gelu_b": gp.q_b if gp else 0, "gelu_one": gp.q_one if gp else 0}
    outs, _ = pysim_streams(ElementwiseUnit(LANES), {"i_x": beats}, "o_y", len(beats), settings=settings,
                            valid_pattern=(1, 1, 0), ready_pattern=ready)
    return [y for beat in outs for y in unpack(vector_out_layout(LANES), beat)["y"]]


def requant(v, m0, shift, fmt):
    out = requantize(torch.tensor(v).reshape(-1, 1), torch.tensor([m0]), torch.tensor([shift]), 0, fmt)
    return out.flatten().tolist()


@pytest.mark.parametrize("scale,s_out", [(0.02, 0.01), (0.05, 0.03), (0.1, 0.08)])
def test_gelu_every_int8_input(scale, s_out):
    gp = gelu_params(scale)
    m0, sh = (int(t) for t in quantize_multiplier(-gp.out_scale / s_out))
    b = list(range(-128, 128))
    expect = requant((-int_gelu(torch.tensor(b), gp)).tolist(), m0, sh, I8)
    assert run_unit(OP_GELU, [0] * len(b), b, m0, sh, gp) == expect


@pytest.mark.parametrize("real", [0.37, 1.0, 3.9, 0.0041])
def test_requant_every_int8_input(real):
    m0, sh = (int(t) for t in quantize_multiplier(real))
    b = list(range(-128, 128))
    assert run_unit(OP_REQUANT, [0] * len(b), b, m0, sh) == requant(b, m0, sh, I8)


def test_residual_add_saturates():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(-32768, 32768, (400,), generator=g).tolist() + [32767, -32768, 32700, -32700]
    b = torch.randint(-128, 128, (400,), generator=g).tolist() + [127, -128, 127, -128]
    m0, sh = (int(t) for t in quantize_multiplier(5.3))
    r = requant(b, m0, sh, I16)
    expect = [max(-32768, min(32767, x + y)) for x, y in zip(a, r, strict=True)]
    assert run_unit(OP_ADD, a, b, m0, sh) == expect
    assert expect[-4:] == [32767, -32768, 32767, -32768]  # both saturation bounds are reached


def test_gelu_of_the_trained_vit():
    """Block 0's GELU of the integer-only ViT on real traced activations: the unit's output is the
    model's next layer input."""
    from qsilicon.quant.datasets import fashion_mnist
    from qsilicon.quant.models.int_vit import IntViT, _rescale_params
    from qsilicon.quant.models.vit import load

    x, _ = fashion_mnist("train")
    xt, _ = fashion_mnist("test")
    model, _ = load(Path(__file__).resolve().parents[2] / "checkpoints" / "vit_fmnist.pt")
    iv = IntViT(model, x[:500], "w8a8")
    trace: dict = {}
    iv.logits(xt[:1], trace)
    blk = iv.blocks[0]
    m0, sh, negate = _rescale_params(blk["gelu"].out_scale, blk["s_gelu"])
    assert negate
    b = trace["b0.fc1.out"].flatten().tolist()
    got = run_unit(OP_GELU, [0] * len(b), b, m0, sh, blk["gelu"], ready=(1,))
    assert got == trace["b0.fc2.in"].flatten().tolist()


def test_rejects_bad_lanes():
    with pytest.raises(ValueError, match="Lanes must be an integer from 1 to 64, not 0"):
        ElementwiseUnit(0)


def test_backpressure_reaches_the_fifo_not_the_stages():
    """With o_y held not ready the unit takes exactly its FIFO's depth of beats (every one in flight
    has a place), then none; released, it sends them in order with their `last`, and with o_y
    always ready it takes a beat every cycle."""
    from amaranth.sim import Simulator

    from qsilicon.hw.blocks.vector import _OUT_DEPTH

    dut = ElementwiseUnit(1)
    got, taken = [], []

    async def bench(ctx):
        ctx.set(dut.op, OP_REQUANT)
        ctx.set(dut.m0, 1 << 14)
        ctx.set(dut.shift, 14)  # y = b
        ctx.set(dut.o_y.ready, 0)
        ctx.set(dut.i_x.valid, 1)
        n = 0
        for cycle in range(60):
            beat = pack(vector_in_layout(1), {"a": [0], "b": [n - 64], "last": n % 3 == 2})
            ctx.set(dut.i_x.payload.as_value(), beat)
            if cycle == 30:
                ctx.set(dut.o_y.ready, 1)
            await ctx.delay(1e-9)
            if ctx.get(dut.i_x.ready):
                taken.append(cycle)
                n += 1
            if ctx.get(dut.o_y.valid) and ctx.get(dut.o_y.ready):
                got.append(unpack(vector_out_layout(1), ctx.get(dut.o_y.payload.as_value())))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert [c for c in taken if c < 30] == list(range(_OUT_DEPTH))  # then the credits are spent
    assert taken[-20:] == list(range(40, 60))  # released: a beat a cycle
    assert [g["y"][0] for g in got] == [v - 64 for v in range(len(got))]
    assert [g["last"] for g in got] == [int(v % 3 == 2) for v in range(len(got))]

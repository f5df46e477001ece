"""The vector unit's row operations (LayerNorm, Shiftmax) against quant/, bit for bit."""

import pytest
import torch
from amaranth import signed
from amaranth.lib import data
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qsilicon.hw.blocks.rowunit import ROW_LN, ROW_SOFTMAX, RowUnit, ln_param_layout
from qsilicon.hw.payload import pack, unpack
from qsilicon.quant import IntFormat, int_layernorm, int_shiftmax, quantize_multiplier, requantize, shiftmax_params
from qsilicon.sim.pysim import pysim_streams

I8 = IntFormat(8, True)


def run_rows(op, x, settings, params=None, ready=(1,), valid=(1,), buf=0, buffered=True):
    """``x``: ``[lanes * tiles, n]`` rows; lane ``l`` of tile ``t`` is row ``t * lanes + l``.  With
    ``buf`` (the row buffer's depth) the rows are sent once and the unit reads passes 2 and 3 from
    its buffer (``buffered`` False: streamed three times to a unit that has a buffer)."""
    once = buf and buffered
    lanes = 4
    rows, n = x.shape
    assert rows % lanes == 0
    in_lay, out_lay = data.ArrayLayout(signed(16), lanes), data.ArrayLayout(signed(8), lanes)
    beats, pars = [], []
    for t in range(rows // lanes):
        tile = x[t * lanes : (t + 1) * lanes]
        for _ in range(1 if once else 3):
            beats += [pack(in_lay, tile[:, j].tolist()) for j in range(n)]
        if params is not None:
            pars += [pack(ln_param_layout(), {"gamma": int(g), "beta": int(b)}) for g, b in zip(*params, strict=True)]
    sources = {"i_x": beats} | ({"i_par": pars} if params is not None else {})
    outs, cycles = pysim_streams(RowUnit(lanes, buf_depth=buf), sources, "o_y", rows // lanes * n,
                                 settings={"op": op, "n": n} | ({"buffered": int(buffered)} if buf else {}) | settings,
                                 valid_pattern=valid, ready_pattern=ready)
    y = torch.zeros_like(x)
    for b, beat in enumerate(outs):
        t, j = divmod(b, n)
        y[t * lanes : (t + 1) * lanes, j] = torch.tensor(unpack(out_lay, beat))
    return y, cycles


def ref_ln(x, gq, bq, s_out):
    m0, sh = (int(v) for v in quantize_multiplier(2.0**-8 / s_out))
    y = int_layernorm(x, gq, bq, frac_bits=8)
    return requantize(y.reshape(-1, 1), torch.tensor([m0]), torch.tensor([sh]), 0, I8).reshape(x.shape), m0, sh


def check_ln(x, gq, bq, s_out, **kw):
    expect, m0, sh = ref_ln(x, gq, bq, s_out)
    got, _ = run_rows(ROW_LN, x, {"m0": m0, "shift": sh}, (gq, bq), **kw)
    assert torch.equal(got, expect)


def check_softmax(x, k, **kw):
    p = shiftmax_params(k)
    got, _ = run_rows(ROW_SOFTMAX, x, {"k": k, "q_b": p.q_b, "q_c": p.q_c}, **kw)
    assert torch.equal(got, int_shiftmax(x, p))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 24), k=st.integers(0, 7), seed=st.integers(0, 2**31))
def test_softmax_random_rows(n, k, seed):
    x = torch.randint(-128, 128, (8, n), generator=torch.Generator().manual_seed(seed))
    check_softmax(x, k, valid=(1, 1, 0), ready=(1, 0, 1))


def test_softmax_extremes():
    n = 9
    x = torch.stack([torch.full((n,), -128), torch.full((n,), 127), torch.full((n,), 0),
                     torch.tensor([-128] * 4 + [127] + [-128] * 4)])
    for k in (0, 2, 7):
        check_softmax(x, k)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 20), spread=st.sampled_from([1, 100, 32767]), seed=st.integers(0, 2**31))
def test_layernorm_random_rows(n, spread, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(-spread, spread + 1, (8, n), generator=g).clamp(-32768, 32767)
    gq = torch.randint(-600, 600, (n,), generator=g)
    bq = torch.randint(-300, 300, (n,), generator=g)
    check_ln(x, gq, bq, 0.02, valid=(1, 0, 1), ready=(1, 1, 0))


def test_layernorm_extremes():
    n = 6
    one_max = torch.full((n,), -32768)
    one_max[2] = 32767
    x = torch.stack([torch.full((n,), -32768), torch.full((n,), 32767), one_max, torch.zeros(n, dtype=torch.int64)])
    check_ln(x, torch.full((n,), 256), torch.arange(n) * 50 - 100, 0.01)
    check_ln(x, torch.full((n,), -32768), torch.full((n,), 32767), 0.5)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 64), spread=st.sampled_from([1, 100, 32767]), seed=st.integers(0, 2**31))
def test_layernorm_buffered_rows(n, spread, seed):
    """Rows sent once, passes 2 and 3 from the row buffer (rows up to its whole depth), with the
    input and the output stalling: the same bits as the reference."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(-spread, spread + 1, (12, n), generator=g).clamp(-32768, 32767)  # 3 tiles: bank 0 reused
    gq = torch.randint(-600, 600, (n,), generator=g)
    bq = torch.randint(-300, 300, (n,), generator=g)
    check_ln(x, gq, bq, 0.02, valid=(1, 0, 1), ready=(1, 1, 0), buf=64)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 64), k=st.integers(0, 7), seed=st.integers(0, 2**31))
def test_softmax_buffered_rows(n, k, seed):
    x = torch.randint(-128, 128, (12, n), generator=torch.Generator().manual_seed(seed))
    check_softmax(x, k, valid=(1, 1, 0), ready=(1, 0, 1), buf=64)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 80), seed=st.integers(0, 2**31))
def test_streamed_rows_on_a_buffered_unit(n, seed):
    """Rows longer than the buffer (or any rows with ``buffered`` low) stream three times through a
    unit that has a buffer: stage A waits for stage B, whose passes 2 and 3 the stream carries; three
    token blocks, stalls on both sides, the same bits."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(-3000, 3000, (12, n), generator=g)
    gq, bq = torch.randint(-600, 600, (n,), generator=g), torch.randint(-300, 300, (n,), generator=g)
    check_ln(x, gq, bq, 0.02, valid=(1, 0, 1), ready=(1, 1, 0), buf=64, buffered=False)
    check_softmax(x.clamp(-128, 127), 2, valid=(1, 1, 0), ready=(0, 1), buf=64, buffered=False)


def test_buffered_rows_overlap_pass_one():
    """A buffered unit takes the next tile's pass 1 while the current tile is in its divider and
    passes 2 and 3 (two banks): four tiles take one tile's pass 1 plus four times the rest, where a
    streamed unit takes four whole tiles."""
    g = torch.Generator().manual_seed(1)
    n = 48
    x = torch.randint(-3000, 3000, (16, n), generator=g)
    gq, bq = torch.randint(-600, 600, (n,), generator=g), torch.randint(-300, 300, (n,), generator=g)
    expect, m0, sh = ref_ln(x, gq, bq, 0.02)
    st = {"m0": m0, "shift": sh}
    got, cyc4 = run_rows(ROW_LN, x, st, (gq, bq), buf=64)
    assert torch.equal(got, expect)
    _, cyc1 = run_rows(ROW_LN, x[:4], st, (gq, bq), buf=64)
    _, cyc_stream = run_rows(ROW_LN, x, st, (gq, bq))
    rest = cyc1 - n  # the divider, passes 2 and 3 and the output of one tile
    assert cyc4 <= n + 4 * rest + 4 * 2
    assert cyc_stream >= cyc4 + 3 * n - 4 * 4  # the streamed unit has no overlap (4 cycles a tile less)
    # Shiftmax too, and the same bits with the input arriving a beat every third cycle
    p = shiftmax_params(3)
    y, _ = run_rows(ROW_SOFTMAX, x.clamp(-128, 127), {"k": 3, "q_b": p.q_b, "q_c": p.q_c}, buf=64, valid=(1, 0, 0))
    assert torch.equal(y, int_shiftmax(x.clamp(-128, 127), p))


def test_divider_iterates_over_the_quotient_bits_only():
    """A token block's LayerNorm takes its three passes plus 24 + 48 + 17 divider and 24 square-root
    iterations (8 fractional bits) and a few cycles of pipeline, not 3 x 64 + 32: rows of the
    widest range (the bounds' edge cases) give the reference's bits, and the second block costs
    at most that."""
    from qsilicon.hw.blocks.rowunit import _quotient_bits

    assert _quotient_bits(8) == (24, 48, 17)
    n = 10
    edge = torch.full((n,), -32768)
    edge[3] = 32767
    x = torch.stack([torch.full((n,), -32768), torch.full((n,), 32767), edge, (-1 - edge).flip(0)] * 2)
    gq, bq = torch.full((n,), 256), torch.arange(n) * 50 - 100
    expect, m0, sh = ref_ln(x, gq, bq, 0.01)
    got, cyc2 = run_rows(ROW_LN, x, {"m0": m0, "shift": sh}, (gq, bq))
    assert torch.equal(got, expect)
    _, cyc1 = run_rows(ROW_LN, x[:4], {"m0": m0, "shift": sh}, (gq, bq))
    assert cyc2 - cyc1 <= 3 * n + 24 + 48 + 17 + 24 + 20
    p = shiftmax_params(2)
    xs = x.clamp(-128, 127)
    got, cyc2 = run_rows(ROW_SOFTMAX, xs, {"k": 2, "q_b": p.q_b, "q_c": p.q_c})
    assert torch.equal(got, int_shiftmax(xs, p))
    _, cyc1 = run_rows(ROW_SOFTMAX, xs[:4], {"k": 2, "q_b": p.q_b, "q_c": p.q_c})
    assert cyc2 - cyc1 <= 3 * n + 17 + 20


def test_bad_parameters():
    with pytest.raises(ValueError, match="Lanes must be an integer from 1 to 64"):
        RowUnit(0)
    with pytest.raises(ValueError, match="output bits"):
        RowUnit(4, out_bits=9)
    for depth in (32, 100, 8192, True):
        with pytest.raises(ValueError, match="Row buffer depth must be 0 or a power of two from 64 to 4096"):
            RowUnit(4, buf_depth=depth)

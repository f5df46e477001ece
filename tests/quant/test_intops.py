"""The integer core against plain Python integers, exhaustively where the space is small."""

import itertools
from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qsilicon.quant import (
    M0_BITS,
    SHIFT_MAX,
    AccumulatorOverflowError,
    IntFormat,
    fold_zero_point,
    int_linear,
    quantize_multiplier,
    requantize,
    round_shift,
    saturate,
)

I32 = torch.int32


def py_round_half_up(num: int, den: int) -> int:
    """floor(num/den + 1/2) on exact rationals."""
    q = Fraction(num, den) + Fraction(1, 2)
    return q.numerator // q.denominator


def py_requant(acc: int, m0: int, shift: int, zp: int, fmt: IntFormat) -> int:
    return max(fmt.qmin, min(fmt.qmax, py_round_half_up(acc * m0, 2**shift) + zp))


def unit(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """M0/shift of an exact multiplier 1 (M0 = 2**15, shift = 15)."""
    return torch.full((n,), 2 ** (M0_BITS - 1), dtype=I32), torch.full((n,), M0_BITS - 1, dtype=I32)


@pytest.mark.parametrize(
    "a_fmt,w_fmt",
    [(IntFormat(4, True), IntFormat(4, True)), (IntFormat(8, True), IntFormat(4, True)),
     (IntFormat(4, False), IntFormat(4, True)), (IntFormat(8, False), IntFormat(4, True))],
    ids=["a4w4", "a8w4", "u4w4", "u8w4"],
)
def test_every_product(a_fmt, w_fmt):
    """Every activation x weight pair of the formats, as a K=1 layer, against Python's product."""
    a_vals = torch.arange(a_fmt.qmin, a_fmt.qmax + 1, dtype=I32)
    w_vals = torch.arange(w_fmt.qmin, w_fmt.qmax + 1, dtype=I32)
    m0, sh = unit(len(w_vals))
    out_fmt = IntFormat(16, True)
    r = int_linear(a_vals[:, None], w_vals[:, None], None, m0, sh, 0,
                   a_fmt=a_fmt, w_fmt=w_fmt, out_fmt=out_fmt)
    expect = torch.tensor([[a * w for w in w_vals.tolist()] for a in a_vals.tolist()], dtype=I32)
    assert torch.equal(r.acc, expect)
    assert torch.equal(r.out, expect)  # multiplier 1, no saturation at 16 bits
    # The extremes are really there: most negative x most negative.
    assert int(r.acc[0, 0]) == a_fmt.qmin * w_fmt.qmin


def test_saturation_bounds():
    for fmt in (IntFormat(4, True), IntFormat(8, True), IntFormat(4, False), IntFormat(8, False)):
        x = torch.tensor([fmt.qmin - 1, fmt.qmin, fmt.qmax, fmt.qmax + 1, -(2**31), 2**31 - 1])
        assert saturate(x, fmt).tolist() == [fmt.qmin, fmt.qmin, fmt.qmax, fmt.qmax, fmt.qmin, fmt.qmax]


def test_round_shift_exhaustive_small():
    xs = torch.arange(-300, 301)
    for s in range(0, 10):
        got = round_shift(xs, s).tolist()
        assert got == [py_round_half_up(x, 2**s) for x in xs.tolist()]
    # Ties go up, also for negative values.
    assert round_shift(torch.tensor([-5, -3, 3, 5]), 1).tolist() == [-2, -1, 2, 3]


def test_requantize_extremes_int32():
    fmt = IntFormat(8, True)
    acc = torch.tensor([[-(2**31), 2**31 - 1, 0, -1, 1]])
    m0 = torch.tensor([2**16 - 1] * 5)
    for s in (0, 1, 15, 31, SHIFT_MAX):
        sh = torch.full((5,), s)
        got = requantize(acc, m0, sh, 3, fmt)[0].tolist()
        assert got == [py_requant(a, 2**16 - 1, s, 3, fmt) for a in acc[0].tolist()]


@settings(max_examples=300, deadline=None)
@given(
    acc=st.integers(-(2**31), 2**31 - 1),
    m0=st.integers(0, 2**M0_BITS - 1),
    shift=st.integers(0, SHIFT_MAX),
    bits=st.sampled_from([4, 8]),
    signed=st.booleans(),
    data=st.data(),
)
def test_requantize_matches_rational(acc, m0, shift, bits, signed, data):
    fmt = IntFormat(bits, signed)
    zp = data.draw(st.integers(fmt.qmin, fmt.qmax))
    got = requantize(torch.tensor([[acc]]), torch.tensor([m0]), torch.tensor([shift]), zp, fmt)
    assert int(got) == py_requant(acc, m0, shift, zp, fmt)


@settings(max_examples=60, deadline=None)
@given(
    m=st.integers(1, 6), k=st.integers(1, 40), n=st.integers(1, 6),
    abits=st.sampled_from([4, 8]), wbits=st.sampled_from([4, 8]), a_signed=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_int_linear_matches_python(m, k, n, abits, wbits, a_signed, seed):
    g = torch.Generator().manual_seed(seed)
    a_fmt, w_fmt, o_fmt = IntFormat(abits, a_signed), IntFormat(wbits, True), IntFormat(abits, a_signed)
    x = torch.randint(a_fmt.qmin, a_fmt.qmax + 1, (m, k), generator=g)
    w = torch.randint(w_fmt.qmin, w_fmt.qmax + 1, (n, k), generator=g)
    b = torch.randint(-5000, 5000, (n,), generator=g)
    m0 = torch.randint(2**15, 2**16, (n,), generator=g)
    sh = torch.randint(10, 24, (n,), generator=g)
    zp = torch.randint(o_fmt.qmin, o_fmt.qmax + 1, (n,), generator=g)
    r = int_linear(x, w, b, m0, sh, zp, a_fmt=a_fmt, w_fmt=w_fmt, out_fmt=o_fmt)
    X, W, B = x.tolist(), w.tolist(), b.tolist()
    for i, j in itertools.product(range(m), range(n)):
        acc = sum(X[i][t] * W[j][t] for t in range(k)) + B[j]
        assert int(r.acc[i, j]) == acc
        assert int(r.out[i, j]) == py_requant(acc, int(m0[j]), int(sh[j]), int(zp[j]), o_fmt)


def test_zero_point_folding_identity():
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 256, (5, 33), generator=g)
    w = torch.randint(-8, 8, (7, 33), generator=g)
    b = torch.randint(-1000, 1000, (7,), generator=g)
    z = 131
    folded = fold_zero_point(b, w, z)
    direct = (x - z) @ w.T + b
    assert torch.equal((x @ w.T + folded).to(torch.int64), direct)


def test_overflow_names_layer_and_row():
    fmt8 = IntFormat(8, True)
    k = 2**31 // (128 * 128) + 1  # all (-128)*(-128) products: just over int32
    x = torch.full((2, k), -128)
    w = torch.zeros((3, k), dtype=torch.int64)
    w[2] = -128
    m0, sh = unit(3)
    with pytest.raises(AccumulatorOverflowError, match=r"layer 'blocks.0.fc1', output row 2 \(sample 0\)"):
        int_linear(x, w, None, m0, sh, 0, a_fmt=fmt8, w_fmt=fmt8, out_fmt=fmt8, layer="blocks.0.fc1")
    # One product less is exactly 2**31; a bias of -1 brings it to the largest int32.
    b = torch.tensor([0, 0, -1])
    r = int_linear(x[:, : k - 1], w[:, : k - 1], b, m0, sh, 0, a_fmt=fmt8, w_fmt=fmt8, out_fmt=fmt8)
    assert int(r.acc[0, 2]) == 2**31 - 1


def test_out_of_range_inputs_rejected():
    fmt4 = IntFormat(4, True)
    m0, sh = unit(1)
    with pytest.raises(ValueError, match=r"weights has values in \[8, 8\], outside int4"):
        int_linear(torch.zeros((1, 1), dtype=I32), torch.full((1, 1), 8), None, m0, sh, 0,
                   a_fmt=fmt4, w_fmt=fmt4, out_fmt=fmt4)
    with pytest.raises(ValueError, match="K must be at least 1"):
        int_linear(torch.zeros((1, 0), dtype=I32), torch.zeros((1, 0), dtype=I32), None, m0, sh, 0,
                   a_fmt=fmt4, w_fmt=fmt4, out_fmt=fmt4)
    with pytest.raises(TypeError, match="integer tensor"):
        int_linear(torch.zeros((1, 1)), torch.zeros((1, 1), dtype=I32), None, m0, sh, 0,
                   a_fmt=fmt4, w_fmt=fmt4, out_fmt=fmt4)
    with pytest.raises(ValueError, match="Integer width must be an integer from 2 to 32, not 33"):
        IntFormat(33)


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=1e-12, max_value=60000.0, allow_nan=False))
def test_quantize_multiplier_precision(real):
    m0, sh = quantize_multiplier(real)
    m0, sh = int(m0), int(sh)
    assert 0 <= sh <= SHIFT_MAX and 0 <= m0 < 2**M0_BITS
    approx = m0 / 2**sh
    if real >= 2.0 ** -(SHIFT_MAX - M0_BITS + 1):
        assert m0 >= 2 ** (M0_BITS - 1)
        assert abs(approx - real) <= real * 2.0**-M0_BITS
    else:
        assert abs(approx - real) <= 2.0 ** -(SHIFT_MAX + 1)


def test_quantize_multiplier_rejects():
    with pytest.raises(ValueError, match="too large"):
        quantize_multiplier(70000.0)
    with pytest.raises(ValueError, match="positive"):
        quantize_multiplier(0.0)

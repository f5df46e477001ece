"""The float fake-quant path against the integer path, and GEMM cases."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qsilicon.quant import (
    GemmCase,
    calibrate_activation,
    fake_quant_linear,
    quantize_activation,
    quantize_linear,
    random_gemm_case,
    ref_gemm,
)


@settings(max_examples=80, deadline=None)
@given(
    m=st.integers(1, 8), k=st.integers(1, 96), n=st.integers(1, 12),
    wbits=st.sampled_from([4, 8]), abits=st.sampled_from([4, 8]), a_signed=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_fake_quant_within_one_lsb(m, k, n, wbits, abits, a_signed, seed):
    """Integer outputs differ from the float model's by at most one output LSB.

    Why 1 LSB: the integer path replaces the real multiplier by M0 * 2**-shift (relative error
    <= 2**-16) and rounds ties up where the float path rounds half to even; either can move a
    value that lies within 2**-16 * |y| of a rounding boundary by one code, never more.
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=g, dtype=torch.float64) * 2 + (0 if a_signed else 1)
    if not a_signed:
        x = x.abs()
    w = torch.randn(n, k, generator=g, dtype=torch.float64) / k**0.5
    b = torch.randn(n, generator=g, dtype=torch.float64) * 0.1
    in_q = calibrate_activation(float(x.min()), float(x.max()), abits, a_signed)
    y = x @ w.T + b
    out_q = calibrate_activation(float(y.min()), float(y.max()), abits, a_signed)
    layer = quantize_linear(w, b, in_q, out_q, wbits)
    res = layer(quantize_activation(x, in_q))
    _, codes = fake_quant_linear(x, w, b, in_q, out_q, wbits)
    assert (res.out.to(torch.int64) - codes.to(torch.int64)).abs().max() <= 1


def test_fake_quant_mostly_identical():
    """On a realistic layer almost every output code is identical, not just within 1 LSB."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 128, generator=g, dtype=torch.float64)
    w = torch.randn(64, 128, generator=g, dtype=torch.float64) / 128**0.5
    in_q = calibrate_activation(float(x.min()), float(x.max()), 8, True)
    y = x @ w.T
    out_q = calibrate_activation(float(y.min()), float(y.max()), 8, True)
    res = quantize_linear(w, None, in_q, out_q, 8)(quantize_activation(x, in_q))
    _, codes = fake_quant_linear(x, w, None, in_q, out_q, 8)
    diff = (res.out.to(torch.int64) - codes.to(torch.int64)).abs()
    assert diff.max() <= 1 and diff.float().mean() < 1e-3


def test_random_case_covers_range_and_roundtrips(tmp_path):
    c = random_gemm_case(32, 70, 24, wbits=4, abits=8, seed=5)
    assert c.shape == (32, 70, 24)
    assert int(c.w.min()) == -8 and int(c.x.min()) == -128  # most negative values occur
    r = ref_gemm(c)
    assert (r.out == c.out_fmt.qmin).any() and (r.out == c.out_fmt.qmax).any()  # both saturate
    c.save(tmp_path / "c.pt")
    c2 = GemmCase.load(tmp_path / "c.pt")
    assert c2.a_fmt == c.a_fmt and torch.equal(ref_gemm(c2).out, r.out)
    with pytest.raises(ValueError, match="K must be a positive integer, not 0"):
        random_gemm_case(1, 0, 1, wbits=4, abits=4, seed=0)

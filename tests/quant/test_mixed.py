"""Row-wise mixed int4/int8 precision: assignment, grouping, and the integer path."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qsilicon.quant import (
    RATIOS8,
    IntFormat,
    assign_row_bits,
    calibrate_activation,
    fake_quant_mixed_linear,
    group_rows,
    int_mixed_linear,
    quantize_activation,
    quantize_linear_mixed,
    quantize_weight_mixed,
    row_sensitivity,
)


def layer_with_outlier_rows(n=32, k=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g, dtype=torch.float64)
    w[::5, 0] *= 25.0  # a few rows with one large weight: 4 bits crush their other weights
    x = torch.randn(512, k, generator=g, dtype=torch.float64) * torch.linspace(0.2, 3.0, k, dtype=torch.float64)
    return w, x


@pytest.mark.parametrize("ratio8", RATIOS8)
def test_share_of_8bit_rows(ratio8):
    w, x = layer_with_outlier_rows()
    bits = assign_row_bits(w, ratio8, (x**2).mean(0))
    assert set(bits.tolist()) <= {4, 8}
    assert int((bits == 8).sum()) == round(ratio8 * w.shape[0])


def test_sensitivity_beats_random_assignment():
    """Choosing 8-bit rows by the Hessian-weighted score gives a lower output error than any of
    20 random assignments with the same share."""
    w, x = layer_with_outlier_rows()
    h = (x**2).mean(0)
    y = x @ w.T

    def err(bits):
        return float(((x @ quantize_weight_mixed(w, bits).dequantize().T - y) ** 2).mean())

    best = err(assign_row_bits(w, 0.25, h))
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        bits = torch.full((w.shape[0],), 4, dtype=torch.int32)
        bits[torch.randperm(w.shape[0], generator=g)[:8]] = 8
        assert best < err(bits)
    assert (row_sensitivity(w, h) > 0).all()  # 8 bits always help
    assert err(assign_row_bits(w, 1.0, h)) < best < err(assign_row_bits(w, 0.0, h))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 20), k=st.integers(1, 30), m=st.integers(1, 5), ratio8=st.sampled_from(RATIOS8),
       seed=st.integers(0, 2**31))
def test_grouped_layer_equals_ungrouped(n, k, m, ratio8, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g, dtype=torch.float64)
    b = torch.randn(n, generator=g, dtype=torch.float64)
    x = torch.randn(m, k, generator=g, dtype=torch.float64)
    in_q = calibrate_activation(float(x.min()), float(x.max()), 8, True)
    y = x @ w.T + b
    out_q = calibrate_activation(float(y.min()), float(y.max()), 8, True)
    layer = quantize_linear_mixed(w, b, in_q, out_q, ratio8)
    grouped, grouping = layer.grouped()
    assert torch.equal(grouped.weight.bits[: grouping.n8], torch.full((grouping.n8,), 8, dtype=torch.int32))
    assert (grouped.weight.bits[grouping.n8 :] == 4).all()
    x_q = quantize_activation(x, in_q)
    ref, got = layer(x_q), grouped(x_q)
    assert torch.equal(grouping.ungroup(got.out), ref.out)
    assert torch.equal(grouping.ungroup(got.acc), ref.acc)
    # Folding the permutation into the next layer instead: identical next-layer accumulators.
    w_next = torch.randint(-8, 8, (3, n), generator=g)
    assert torch.equal(got.out.to(torch.int64) @ grouping.fold_into_next(w_next).T,
                       ref.out.to(torch.int64) @ w_next.T)
    # The float twin agrees within one output LSB.
    _, codes = fake_quant_mixed_linear(x, layer, b)
    assert (codes.to(torch.int64) - ref.out.to(torch.int64)).abs().max() <= 1


def test_rows_checked_against_their_own_width():
    bits = torch.tensor([8, 4])
    w = torch.tensor([[-128, 127], [-8, 8]])
    one = torch.ones(2, dtype=torch.int32)
    with pytest.raises(ValueError, match=r"row 1 is 4-bit but holds values in \[-8, 8\], outside int4"):
        int_mixed_linear(torch.ones((1, 2), dtype=torch.int32), w, bits, None, one, one, 0,
                         a_fmt=IntFormat(8, True), out_fmt=IntFormat(8, True), layer="blk.fc1")
    w[1, 1] = 7  # the full int4 range, -8 included, is accepted
    r = int_mixed_linear(torch.ones((1, 2), dtype=torch.int32), w, bits, None, one, one, 0,
                         a_fmt=IntFormat(8, True), out_fmt=IntFormat(32, True))
    assert r.acc.tolist() == [[-1, -1]]


@pytest.mark.parametrize("bad,msg", [(1.5, "from 0 to 1, not 1.5"), (-0.1, "not -0.1"), (True, "not True")])
def test_bad_ratio(bad, msg):
    with pytest.raises(ValueError, match=msg):
        assign_row_bits(torch.ones(2, 2), bad)


def test_bad_bits():
    with pytest.raises(ValueError, match="Row 1 has 6 bits: rows must be 4 or 8 bits"):
        group_rows(torch.tensor([8, 6]))

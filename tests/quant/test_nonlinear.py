"""Integer-only softmax, exp, sqrt, LayerNorm and GELU against their float definitions.

Tolerances (float-vs-integer comparisons only), and why:
* exp: 0.004 absolute at input scales <= 0.005 -- the i-exp polynomial's own error on
  (-ln 2, 0] (about 0.002) plus the rounding of its constants to the input grid;
* softmax: 0.006 absolute per probability (1.5 output LSB of 2**-8) at logit scales <= 0.01;
  the rows lose at most one LSB per entry to the floor division;
* shiftmax: 2 LSB of 2**-7 per probability for k >= 3, more at coarser logit grids (see the test);
* GELU: 0.025 absolute -- the i-erf polynomial's error (about 0.018) plus the constants' rounding;
* LayerNorm: (max|gamma| + 1) * 2**-frac_bits + 1e-3 -- two floor steps at 2**-frac_bits.
"""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qsilicon.quant.nonlinear import (
    RECIP_BITS,
    exp_params,
    gelu_params,
    int_exp,
    int_gelu,
    int_layernorm,
    int_reciprocal,
    int_shift_exp,
    int_shiftmax,
    int_softmax,
    int_sqrt,
    shiftmax_k,
    shiftmax_params,
)


def test_int_sqrt_exhaustive_16_bits_and_random_62_bits():
    n = torch.arange(0, 1 << 16)
    assert int_sqrt(n).tolist() == [math.isqrt(v) for v in n.tolist()]
    big = torch.randint(0, 2**62, (3000,), generator=torch.Generator().manual_seed(0))
    edges = torch.tensor([2**62 - 1, 2**61, (2**31 - 1) ** 2, (2**31 - 1) ** 2 - 1, 1, 2, 3, 4])
    for t in (big, edges):
        assert int_sqrt(t).tolist() == [math.isqrt(v) for v in t.tolist()]
    with pytest.raises(ValueError, match="non-negative"):
        int_sqrt(torch.tensor([-1]))


@pytest.mark.parametrize("scale", [0.001, 0.002, 0.005])
def test_int_exp_every_input(scale):
    p = exp_params(scale)
    q = torch.arange(-round(25 / scale), 1)
    got = int_exp(q, p).double() * p.out_scale
    assert (got - torch.exp(q.double() * scale)).abs().max() <= 0.004
    assert (got[1:] >= got[:-1]).all()  # monotone
    with pytest.raises(ValueError, match="non-positive"):
        int_exp(torch.tensor([1]), p)


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 8), n=st.integers(1, 200), scale=st.sampled_from([0.002, 0.005, 0.01]),
       spread=st.integers(1, 5000), seed=st.integers(0, 2**31))
def test_int_softmax_matches_float(rows, n, scale, spread, seed):
    x = torch.randint(-spread, spread + 1, (rows, n), generator=torch.Generator().manual_seed(seed))
    got = int_softmax(x, scale)
    ref = torch.softmax(x.double() * scale, dim=-1)
    assert (got.double() / 256 - ref).abs().max() <= 0.006
    assert (got.sum(-1) <= 256).all() and (got.sum(-1) >= 256 - n - 1).all()


def test_int_softmax_extremes():
    s = 0.005
    equal = int_softmax(torch.full((1, 10), 77), s)
    assert equal.tolist() == [[25] * 10]  # floor(256 / 10)
    assert torch.equal(int_softmax(torch.full((1, 10), -(2**31)), s), equal)  # all minimum: shift-invariant
    one_max = torch.full((1, 16), -(2**20))
    one_max[0, 5] = 2**20
    got = int_softmax(one_max, s)
    assert got[0, 5] == 255 and got.sum() == 255  # saturates at the top code; the rest underflow to 0
    assert int_softmax(torch.zeros((2, 1), dtype=torch.int64), s).tolist() == [[255], [255]]


@pytest.mark.parametrize("scale", [0.02, 0.05, 0.1])
def test_int_gelu_every_int8_input(scale):
    p = gelu_params(scale)
    q = torch.arange(-128, 128)
    got = int_gelu(q, p).double() * p.out_scale
    assert (got - torch.nn.functional.gelu(q.double() * scale)).abs().max() <= 0.025
    assert int_gelu(torch.tensor([0]), p).item() == 0


@pytest.mark.parametrize("frac_bits", [6, 8, 10])
def test_int_layernorm_matches_float(frac_bits):
    g = torch.Generator().manual_seed(frac_bits)
    x = torch.randint(-128, 128, (300, 192), generator=g)
    gamma = torch.randn(192, generator=g, dtype=torch.float64) * 0.5 + 1
    beta = torch.randn(192, generator=g, dtype=torch.float64) * 0.1
    gq, bq = (torch.round(t * 2**frac_bits).long() for t in (gamma, beta))
    got = int_layernorm(x, gq, bq, frac_bits=frac_bits).double() / 2**frac_bits
    ref = torch.nn.functional.layer_norm(x.double(), (192,), gq.double() / 2**frac_bits, bq.double() / 2**frac_bits)
    bound = (gq.abs().max().item() / 2**frac_bits + 1) * 2**-frac_bits + 1e-3
    assert (got - ref).abs().max() <= bound


def test_int_layernorm_extremes():
    gq, bq = torch.full((8,), 256), torch.arange(8)
    assert torch.equal(int_layernorm(torch.full((2, 8), -128), gq, bq), bq.expand(2, 8))  # no variance: beta
    one = torch.full((1, 8), -128)
    one[0, 3] = 127
    got = int_layernorm(one, gq, torch.zeros(8, dtype=torch.int64)).double() / 256
    ref = torch.nn.functional.layer_norm(one.double(), (8,))
    assert (got - ref).abs().max() <= 2 * 2**-8 + 1e-3


def test_bad_scales():
    with pytest.raises(ValueError, match=r"Input scale of int_exp must be in \(0, ln 2\), not 1.0"):
        exp_params(1.0)
    with pytest.raises(ValueError, match="Input scale of int_gelu must be positive, not 0"):
        gelu_params(0)
    with pytest.raises(TypeError, match="int_softmax input must be an integer tensor"):
        int_softmax(torch.zeros(3), 0.01)


def test_int_reciprocal_is_normalized_floor_division():
    x = torch.cat([torch.arange(1, 5000), torch.tensor([2**20, 2**20 + 1, 2**39 - 1, 3**20])])
    inv, sh = int_reciprocal(x)
    assert inv.tolist() == [(1 << s) // v for v, s in zip(x.tolist(), sh.tolist(), strict=True)]
    assert sh.tolist() == [v.bit_length() + RECIP_BITS - 1 for v in x.tolist()]
    assert (inv >= 2**15).all() and (inv <= 2**16).all()
    with pytest.raises(ValueError, match="positive"):
        int_reciprocal(torch.tensor([0]))


@pytest.mark.parametrize("k", range(8))
def test_int_shift_exp_every_int8_difference(k):
    p = shiftmax_params(k)
    q = torch.arange(-255, 1)
    got = int_shift_exp(q, p).double() * 0.3585 * p.scale**2
    assert (got - torch.exp(q.double() * p.scale)).abs().max() <= 0.004 + 0.6 * p.scale  # plus the q_b/q_c rounding
    assert (got[1:] >= got[:-1]).all()


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 8), n=st.integers(1, 100), k=st.integers(0, 7), seed=st.integers(0, 2**31))
def test_int_shiftmax_matches_float(rows, n, k, seed):
    """7-bit probabilities against the float softmax of the same int8 logits.  From k = 3 within
    2 LSB of 2**-7; coarser logit grids round the polynomial's constants q_b, q_c onto steps of
    ln 2 / 2**k, and exp is then off by up to 0.034 (k = 1, 2) or 0.125 (k = 0), so the bound
    there is 6 LSB (k = 2), 15 (k = 1), 40 (k = 0): measured worst cases 5.1, 13.9, 38.7 LSB."""
    p = shiftmax_params(k)
    x = torch.randint(-128, 128, (rows, n), generator=torch.Generator().manual_seed(seed))
    got = int_shiftmax(x, p)
    ref = torch.softmax(x.double() * p.scale, dim=-1)
    assert (got.double() / 128 - ref).abs().max() <= {0: 40, 1: 15, 2: 6}.get(k, 2) / 128
    assert (got.sum(-1) <= 128).all()


def test_int_shiftmax_extremes():
    p = shiftmax_params(3)
    for v in (-128, 0, 127):
        assert int_shiftmax(torch.full((1, 10), v), p).tolist() == [[12] * 10]  # all equal: floor(128 / 10)
    one_max = torch.full((1, 16), -128)
    one_max[0, 5] = 127
    got = int_shiftmax(one_max, p)
    assert got[0, 5] == 127 and got.sum() == 127  # saturates at the top code, the rest underflow to 0
    with pytest.raises(ValueError, match="int8 logits"):
        int_shiftmax(torch.tensor([[200]]), p)
    with pytest.raises(ValueError, match="from 0 to 7"):
        shiftmax_params(8)
    assert shiftmax_k(15.0) == 2 and shiftmax_k(1e-3) == 7 and shiftmax_k(1e3) == 0

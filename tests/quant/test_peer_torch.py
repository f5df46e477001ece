"""Peer check: our integer linear layer against PyTorch's own quantized linear
(``torch.ops.quantized.linear``, x86/fbgemm engine) on the same quantized inputs and parameters.

Documented difference: the accumulators are identical; the requantized outputs differ by at most
one LSB, because PyTorch requantizes in float (multiplier ``s_a * s_w / s_out`` in float32, float
bias, round half to even) while qsilicon uses the fixed-point ``M0 * 2**-shift`` with round half
up and an int32 bias.

Activations are drawn from 7 bits (0..127), PyTorch's own ``reduce_range`` for x86: fbgemm's AVX2
kernel (``vpmaddubsw``) adds pairs of uint8 x int8 products in saturating int16, so with 8-bit
activations and 8-bit weights its result depends on the CPU (exact with AVX512-VNNI, saturated on
AVX2-only machines). With 7-bit activations a pair is at most 2 * 127 * 128 < 2**15 on every CPU.
"""

import warnings

import pytest
import torch

from qsilicon.quant import IntFormat, fold_zero_point, int_linear, quantize_bias, quantize_multiplier

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # torch's quantized-dtype deprecation


@pytest.fixture(autouse=True)
def _engine():
    old = torch.backends.quantized.engine
    torch.backends.quantized.engine = "x86"
    yield
    torch.backends.quantized.engine = old


def torch_linear(xq: torch.Tensor, wq: torch.Tensor, bias: torch.Tensor, out_scale: float, out_zp: int):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        packed = torch.ops.quantized.linear_prepack(wq, bias.float())
        return torch.ops.quantized.linear(xq, packed, out_scale, out_zp).int_repr().to(torch.int64)


def torch_accumulators(xq: torch.Tensor, wq: torch.Tensor) -> torch.Tensor:
    """Read PyTorch's exact accumulators ``sum_k w[n,k] * (x[m,k] - z_a)`` through its uint8
    outputs: with output scale ``s_a * s_w * 2**j`` the output is ``round(acc / 2**j)``, and a
    per-channel bias re-centres each channel's window, so three passes (j = 14, 7, 0) narrow
    every accumulator down to its exact value."""
    s = xq.q_scale() * wq.q_scale()
    rows = []
    for m in range(xq.shape[0]):
        est = torch.zeros(wq.shape[0], dtype=torch.int64)
        for j in (14, 7, 0):
            y = torch_linear(xq[m : m + 1], wq, -est.double() * s, s * 2**j, 128)[0]
            assert ((y > 0) & (y < 255)).all(), "window saturated: the extraction is invalid"
            est = est + (y - 128) * 2**j
        rows.append(est)
    return torch.stack(rows)


def test_accumulators_identical():
    g = torch.Generator().manual_seed(11)
    m, k, n = 6, 64, 12
    s_a, s_w, z_a = 2.0**-3, 2.0**-5, 77  # powers of two keep PyTorch's float path exact
    x = torch.randint(0, 128, (m, k), generator=g)  # reduce_range: see the module docstring
    w = torch.randint(-128, 128, (n, k), generator=g)
    xq = torch._make_per_tensor_quantized_tensor(x.to(torch.uint8), s_a, z_a)
    wq = torch._make_per_tensor_quantized_tensor(w.to(torch.int8), s_w, 0)
    ours = int_linear(
        x, w, fold_zero_point(None, w, z_a), torch.ones(n, dtype=torch.int32), torch.zeros(n, dtype=torch.int32), 0,
        a_fmt=IntFormat(8, False), w_fmt=IntFormat(8, True), out_fmt=IntFormat(32, True),
    )
    theirs = torch_accumulators(xq, wq)
    assert theirs.abs().max() > 2**14  # the windows were really needed
    assert torch.equal(ours.acc.to(torch.int64), theirs)


@pytest.mark.parametrize("wbits", [4, 8])
def test_requantized_within_one_lsb(wbits):
    g = torch.Generator().manual_seed(wbits)
    m, k, n = 64, 96, 32
    qmax = 2 ** (wbits - 1) - 1
    x = torch.randint(0, 128, (m, k), generator=g)  # reduce_range: see the module docstring
    w = torch.randint(-qmax - 1, qmax + 1, (n, k), generator=g)  # int4 codes carried in qint8
    s_a, z_a = 0.0213, 61
    s_w = (torch.rand(n, generator=g, dtype=torch.float64) + 0.5) * 0.01
    bias = torch.randn(n, generator=g, dtype=torch.float64) * 2.0
    y = ((x - z_a).double() @ w.double().T) * s_a * s_w + bias
    out_scale, out_zp = float(y.max() - y.min()) / 230, 131  # a little saturation on each side
    xq = torch._make_per_tensor_quantized_tensor(x.to(torch.uint8), s_a, z_a)
    wq = torch._make_per_channel_quantized_tensor(w.to(torch.int8), s_w, torch.zeros(n, dtype=torch.int64), 0)
    theirs = torch_linear(xq, wq, bias, out_scale, out_zp)

    b_q = quantize_bias(bias, s_a, s_w)
    m0, sh = quantize_multiplier(s_a * s_w / out_scale)
    ours = int_linear(
        x, w, fold_zero_point(b_q, w, z_a), m0, sh, out_zp,
        a_fmt=IntFormat(8, False), w_fmt=IntFormat(wbits, True), out_fmt=IntFormat(8, False),
    ).out.to(torch.int64)
    diff = (ours - theirs).abs()
    spread = theirs.unique().numel()
    assert spread > 100  # outputs really use the range
    assert diff.max() <= 1
    assert diff.float().mean() < 0.02  # off-by-one only near rounding ties

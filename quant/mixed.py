"""Row-wise mixed precision (Quasar-ViT): each weight row (output channel) is int4 or int8.

A layer gets a share ``ratio8`` of 8-bit rows; which rows get 8 bits is decided by a
sensitivity score, the reduction of the layer's output error that 8 bits buy for the row
under the input's second moments (the diagonal of the layer Hessian ``X^T X / n`` of the
output MSE).  For the hardware, rows are grouped by precision (8-bit rows first) with a
permutation that :class:`RowGrouping` undoes exactly, or folds into the next layer's input
channels.  The arithmetic is :func:`~qsilicon.quant.intops.int_linear`'s, with each row's codes
checked against its own width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .intops import (
    INT_DTYPE,
    ActQuant,
    IntFormat,
    IntLinearResult,
    fold_zero_point,
    int_linear,
    quantize_bias,
    quantize_multiplier,
    quantize_weight,
)
from .linear import fake_quant_with_weight

__all__ = [
    "RATIOS8",
    "IntMixedLinear",
    "MixedWeightQuant",
    "RowGrouping",
    "assign_row_bits",
    "fake_quant_mixed_linear",
    "group_rows",
    "int_mixed_linear",
    "quantize_linear_mixed",
    "quantize_weight_mixed",
    "row_sensitivity",
]

#: The shares of 8-bit rows a layer may take (Quasar-ViT's search space).
RATIOS8 = (0.0, 0.25, 0.5, 0.75, 1.0)
_FMT = {4: IntFormat(4, True), 8: IntFormat(8, True)}


def _check_weight(w: torch.Tensor) -> torch.Tensor:
    if w.dim() != 2:
        raise ValueError(f"Weight must be 2-D [N, K], not of shape {tuple(w.shape)}")
    w64 = w.detach().to(torch.float64)
    if not torch.isfinite(w64).all():
        raise ValueError("Weight contains NaN or infinity")
    return w64


def _fake_quant_rows(w64: torch.Tensor, bits: int) -> torch.Tensor:
    return quantize_weight(w64, bits).dequantize()


def row_sensitivity(w: torch.Tensor, second_moment: torch.Tensor | None = None) -> torch.Tensor:
    """Per-row reduction of the expected output squared error when the row is quantized to 8
    instead of 4 bits: ``sum_k h_k * ((w - Q4(w))^2 - (w - Q8(w))^2)``.

    Parameters
    ----------
    w : ``[N, K]`` float weight.
    second_moment : ``[K]`` ``E[x_k^2]`` over calibration inputs (the Hessian diagonal of the
        output MSE); ``None`` weights every input channel equally.
    """
    w64 = _check_weight(w)
    h = torch.ones(w64.shape[1], dtype=torch.float64) if second_moment is None else second_moment.to(torch.float64)
    if h.shape != (w64.shape[1],) or (h < 0).any():
        raise ValueError(f"Second moments must be a non-negative vector of length {w64.shape[1]}")
    e4 = (w64 - _fake_quant_rows(w64, 4)) ** 2
    e8 = (w64 - _fake_quant_rows(w64, 8)) ** 2
    return (e4 - e8) @ h


def assign_row_bits(
    w: torch.Tensor, ratio8: float, second_moment: torch.Tensor | None = None
) -> torch.Tensor:
    """Bits per row (``[N]`` int32 of 4 and 8): the ``round(ratio8 * N)`` most sensitive rows
    get 8 bits (ties go to the lower row index)."""
    if not isinstance(ratio8, (int, float)) or isinstance(ratio8, bool) or not 0.0 <= ratio8 <= 1.0:
        raise ValueError(f"Share of 8-bit rows must be a number from 0 to 1, not {ratio8!r}")
    score = row_sensitivity(w, second_moment)
    n = score.numel()
    n8 = int(math.floor(ratio8 * n + 0.5))
    order = sorted(range(n), key=lambda i: (-float(score[i]), i))
    bits = torch.full((n,), 4, dtype=INT_DTYPE)
    bits[order[:n8]] = 8
    return bits


def _check_bits(bits: torch.Tensor, n: int) -> torch.Tensor:
    bits = torch.as_tensor(bits)
    if bits.shape != (n,):
        raise ValueError(f"Row bits must have shape ({n},), not {tuple(bits.shape)}")
    bad = ~((bits == 4) | (bits == 8))
    if bad.any():
        i = int(bad.nonzero()[0])
        raise ValueError(f"Row {i} has {int(bits[i])} bits: rows must be 4 or 8 bits")
    return bits.to(INT_DTYPE)


@dataclass(frozen=True)
class MixedWeightQuant:
    """Per-row symmetric weight quantization with a width per row.

    Members
    -------
    q : ``[N, K]`` codes (``INT_DTYPE``); row n lies in ``[-(2**(bits[n]-1) - 1), 2**(bits[n]-1) - 1]``.
    scale : ``[N]`` float64 scales.
    bits : ``[N]`` int32, 4 or 8.
    """

    q: torch.Tensor
    scale: torch.Tensor
    bits: torch.Tensor

    def dequantize(self) -> torch.Tensor:
        return self.q.to(torch.float64) * self.scale[:, None]


def quantize_weight_mixed(w: torch.Tensor, bits: torch.Tensor) -> MixedWeightQuant:
    """Quantize each row of ``w`` symmetrically to its own width."""
    w64 = _check_weight(w)
    bits = _check_bits(bits, w64.shape[0])
    qmax = (2 ** (bits.to(torch.int64) - 1) - 1).to(torch.float64)
    amax = w64.abs().amax(dim=1)
    scale = torch.where(amax > 0, amax / qmax, torch.ones_like(amax))
    q = torch.round(w64 / scale[:, None]).clamp(-qmax[:, None], qmax[:, None]).to(INT_DTYPE)
    return MixedWeightQuant(q, scale, bits)


def _check_rows(w_q: torch.Tensor, bits: torch.Tensor, layer: str) -> None:
    for b, fmt in _FMT.items():
        rows = (bits == b).nonzero().flatten()
        if rows.numel() == 0:
            continue
        sub = w_q[rows]
        bad = (sub < fmt.qmin) | (sub > fmt.qmax)
        if bad.any():
            r = int(rows[bad.any(dim=1).nonzero()[0]])
            raise ValueError(f"{layer}: row {r} is {b}-bit but holds values in "
                             f"[{int(w_q[r].min())}, {int(w_q[r].max())}], outside {fmt.name}")


def int_mixed_linear(
    x: torch.Tensor,
    w_q: torch.Tensor,
    bits: torch.Tensor,
    bias: torch.Tensor | None,
    m0: torch.Tensor,
    shift: torch.Tensor,
    zero_point: torch.Tensor | int,
    *,
    a_fmt: IntFormat,
    out_fmt: IntFormat,
    layer: str = "linear",
) -> IntLinearResult:
    """:func:`~qsilicon.quant.intops.int_linear` on a row-wise mixed int4/int8 weight: identical
    arithmetic; each row's codes are checked against its own width (full two's complement range,
    ``-2**(b-1)`` included)."""
    bits = _check_bits(bits, w_q.shape[0])
    _check_rows(w_q, bits, layer)
    return int_linear(x, w_q, bias, m0, shift, zero_point, a_fmt=a_fmt, w_fmt=_FMT[8], out_fmt=out_fmt,
                      layer=layer)


@dataclass(frozen=True)
class RowGrouping:
    """The permutation that puts 8-bit rows first (each group in ascending original order).

    Members
    -------
    perm : ``[N]`` int64; grouped row ``i`` is original row ``perm[i]``.
    n8 : number of 8-bit rows (the first ``n8`` grouped rows).
    """

    perm: torch.Tensor
    n8: int

    @property
    def inverse(self) -> torch.Tensor:
        inv = torch.empty_like(self.perm)
        inv[self.perm] = torch.arange(self.perm.numel())
        return inv

    def group(self, t: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """Per-row data (weights, bias, M0, shift, zero points) in grouped order."""
        return t.index_select(dim, self.perm)

    def ungroup(self, y: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """Outputs of the grouped layer back in original channel order."""
        return y.index_select(dim, self.inverse)

    def fold_into_next(self, w_next: torch.Tensor) -> torch.Tensor:
        """The next layer's ``[N', N]`` weight with its input channels in grouped order, so that
        it consumes the grouped outputs directly and the permutation costs nothing."""
        return w_next.index_select(1, self.perm)


def group_rows(bits: torch.Tensor) -> RowGrouping:
    bits = _check_bits(bits, torch.as_tensor(bits).numel())
    idx = torch.arange(bits.numel())
    perm = torch.cat([idx[bits == 8], idx[bits == 4]])
    return RowGrouping(perm, int((bits == 8).sum()))


@dataclass(frozen=True)
class IntMixedLinear:
    """A row-wise mixed-precision integer linear layer (see :func:`quantize_linear_mixed`)."""

    weight: MixedWeightQuant
    bias: torch.Tensor
    m0: torch.Tensor
    shift: torch.Tensor
    in_q: ActQuant
    out_q: ActQuant
    name: str = "linear"

    def __call__(self, x_q: torch.Tensor) -> IntLinearResult:
        return int_mixed_linear(
            x_q, self.weight.q, self.weight.bits, self.bias, self.m0, self.shift, self.out_q.zero_point,
            a_fmt=self.in_q.fmt, out_fmt=self.out_q.fmt, layer=self.name,
        )

    def grouped(self) -> tuple[IntMixedLinear, RowGrouping]:
        """The same layer with rows grouped by precision, and the grouping to undo it."""
        g = group_rows(self.weight.bits)
        w = MixedWeightQuant(g.group(self.weight.q), g.group(self.weight.scale), g.group(self.weight.bits))
        return IntMixedLinear(w, g.group(self.bias), g.group(self.m0), g.group(self.shift), self.in_q,
                              self.out_q, self.name), g


def quantize_linear_mixed(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    in_q: ActQuant,
    out_q: ActQuant,
    ratio8: float,
    second_moment: torch.Tensor | None = None,
    name: str = "linear",
) -> IntMixedLinear:
    """Quantize a float layer with a share ``ratio8`` of 8-bit rows chosen by sensitivity."""
    bits = assign_row_bits(weight, ratio8, second_moment)
    wq = quantize_weight_mixed(weight, bits)
    b = torch.zeros(weight.shape[0]) if bias is None else bias
    folded = fold_zero_point(quantize_bias(b, in_q.scale, wq.scale), wq.q, in_q.zero_point)
    m0, shift = quantize_multiplier(in_q.scale * wq.scale / out_q.scale)
    return IntMixedLinear(wq, folded, m0, shift, in_q, out_q, name)


def fake_quant_mixed_linear(
    x: torch.Tensor, layer: IntMixedLinear, bias: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Float twin of ``layer`` (built from ``bias`` by :func:`quantize_linear_mixed`): returns the
    dequantized output and its codes."""
    return fake_quant_with_weight(x, layer.weight.dequantize(), layer.weight.scale, bias, layer.in_q, layer.out_q)

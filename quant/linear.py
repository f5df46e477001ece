"""Quantized linear layers: float -> integer parameters and the fake-quant twin.

:class:`IntLinear` holds everything the hardware needs for one layer (integer weights, folded
bias, per-row ``M0``/``shift``, output zero point) and evaluates it with
:func:`~qsilicon.quant.intops.int_linear`.  :func:`fake_quant_linear` is the float model of
the same layer; it agrees with the integer path within one output LSB.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .intops import (
    ActQuant,
    IntLinearResult,
    WeightQuant,
    dequantize_activation,
    fold_zero_point,
    int_linear,
    quantize_activation,
    quantize_bias,
    quantize_multiplier,
    quantize_weight,
)

__all__ = ["IntLinear", "fake_quant_linear", "fake_quant_with_weight", "quantize_linear"]


@dataclass(frozen=True)
class IntLinear:
    """An integer linear layer, ready for :func:`int_linear` and for the GEMM engine.

    Members
    -------
    weight : WeightQuant
        Per-row symmetric weight codes and scales.
    bias : torch.Tensor
        ``[N]`` int32 bias in accumulator units, activation zero point folded in.
    m0, shift : torch.Tensor
        ``[N]`` requantization multipliers.
    in_q, out_q : ActQuant
        Input and output activation quantization.
    name : str
        Layer name for error messages.
    """

    weight: WeightQuant
    bias: torch.Tensor
    m0: torch.Tensor
    shift: torch.Tensor
    in_q: ActQuant
    out_q: ActQuant
    name: str = "linear"

    def __call__(self, x_q: torch.Tensor) -> IntLinearResult:
        return int_linear(
            x_q, self.weight.q, self.bias, self.m0, self.shift, self.out_q.zero_point,
            a_fmt=self.in_q.fmt, w_fmt=self.weight.fmt, out_fmt=self.out_q.fmt, layer=self.name,
        )


def quantize_linear(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    in_q: ActQuant,
    out_q: ActQuant,
    wbits: int,
    name: str = "linear",
) -> IntLinear:
    """Quantize a float ``[N, K]`` layer for integer inference between ``in_q`` and ``out_q``."""
    wq = quantize_weight(weight, wbits)
    b = torch.zeros(weight.shape[0]) if bias is None else bias
    b_q = quantize_bias(b, in_q.scale, wq.scale)
    folded = fold_zero_point(b_q, wq.q, in_q.zero_point)
    m0, shift = quantize_multiplier(in_q.scale * wq.scale / out_q.scale)
    return IntLinear(wq, folded, m0, shift, in_q, out_q, name)


def fake_quant_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    in_q: ActQuant,
    out_q: ActQuant,
    wbits: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The float (fake-quant) twin of :func:`quantize_linear` + :meth:`IntLinear.__call__`.

    Inputs, weights and bias are quantized and dequantized, the product is computed in
    float64 and the result is quantized to ``out_q`` with round half to even.

    Returns
    -------
    (y, codes) : the dequantized float output and its integer output codes.
    """
    wq = quantize_weight(weight, wbits)
    return fake_quant_with_weight(x, wq.dequantize(), wq.scale, bias, in_q, out_q)


def fake_quant_with_weight(
    x: torch.Tensor,
    w_deq: torch.Tensor,
    w_scale: torch.Tensor,
    bias: torch.Tensor | None,
    in_q: ActQuant,
    out_q: ActQuant,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fake-quant forward with an already quantized-dequantized weight ``w_deq`` (per-row scales
    ``w_scale``, which also quantize the bias)."""
    x_fq = dequantize_activation(quantize_activation(x, in_q), in_q)
    b = torch.zeros(w_deq.shape[0]) if bias is None else bias
    b_fq = quantize_bias(b, in_q.scale, w_scale).to(torch.float64) * in_q.scale * w_scale
    codes = quantize_activation(x_fq @ w_deq.T + b_fq, out_q)
    return dequantize_activation(codes, out_q), codes

"""Quantized linear layers: float -> integer parameters, the fake-quant twin, GEMM test cases.

:class:`IntLinear` holds everything the hardware needs for one layer (integer weights, folded
bias, per-row ``M0``/``shift``, output zero point) and evaluates it with
:func:`~qsilicon.quant.intops.int_linear`.  :func:`fake_quant_linear` is the float model of
the same layer; it agrees with the integer path within one output LSB.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .intops import (
    INT_DTYPE,
    M0_BITS,
    SHIFT_MAX,
    ActQuant,
    IntFormat,
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

__all__ = [
    "GemmCase", "IntLinear", "fake_quant_linear", "fake_quant_with_weight", "quantize_linear", "random_gemm_case",
    "ref_gemm",
]


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


# --------------------------------------------------------------------------- GEMM cases


@dataclass(frozen=True)
class GemmCase:
    """One integer GEMM problem: the unit the GEMM engine, its testbench and the CLI share.

    ``ref_gemm(case)`` is the golden result; ``qsilicon.sim.rtl_gemm(case, ...)`` the RTL's.
    """

    x: torch.Tensor  # [M, K] activation codes
    w: torch.Tensor  # [N, K] weight codes
    bias: torch.Tensor  # [N] int32, zero point folded in
    m0: torch.Tensor  # [N]
    shift: torch.Tensor  # [N]
    zero_point: torch.Tensor  # [N] output zero points
    a_fmt: IntFormat
    w_fmt: IntFormat
    out_fmt: IntFormat
    row_bits: torch.Tensor | None = None  # [N] 4/8 per row for a mixed-precision layer (w_fmt int8)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(M, K, N)``."""
        return self.x.shape[0], self.x.shape[1], self.w.shape[0]

    def save(self, path: str | Path) -> None:
        torch.save({
            "x": self.x, "w": self.w, "bias": self.bias, "m0": self.m0, "shift": self.shift,
            "zero_point": self.zero_point, "row_bits": self.row_bits,
            "fmts": [(f.bits, f.signed) for f in (self.a_fmt, self.w_fmt, self.out_fmt)],
        }, path)

    @classmethod
    def load(cls, path: str | Path) -> GemmCase:
        d = torch.load(path, weights_only=True)
        a, w, o = (IntFormat(int(b), bool(s)) for b, s in d.pop("fmts"))
        return cls(a_fmt=a, w_fmt=w, out_fmt=o, **d)


def ref_gemm(case: GemmCase) -> IntLinearResult:
    """The golden model of the GEMM engine: :func:`int_linear` on the case (with each row checked
    against its own width for a mixed-precision case)."""
    if case.row_bits is not None:
        from .mixed import int_mixed_linear

        return int_mixed_linear(case.x, case.w, case.row_bits, case.bias, case.m0, case.shift, case.zero_point,
                                a_fmt=case.a_fmt, out_fmt=case.out_fmt, layer="gemm")
    return int_linear(
        case.x, case.w, case.bias, case.m0, case.shift, case.zero_point,
        a_fmt=case.a_fmt, w_fmt=case.w_fmt, out_fmt=case.out_fmt, layer="gemm",
    )


def random_gemm_case(
    m: int, k: int, n: int, *, wbits: int, abits: int, seed: int,
    a_signed: bool = True, obits: int | None = None, ratio8: float | None = None,
) -> GemmCase:
    """A random GEMM case that exercises the whole integer range.

    Activations and weights are uniform over their full formats (the most negative value
    included), biases span a few accumulator standard deviations, and each row's multiplier is
    chosen so that its outputs spread over the output range with some saturation at both
    ends; output zero points are random.  With ``ratio8``, the case is a row-wise mixed layer:
    ``round(ratio8 * N)`` random rows are int8 and the others int4 (``wbits`` must be 8).
    """
    for what, v in (("M", m), ("K", k), ("N", n)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{what} must be a positive integer, not {v!r}")
    a_fmt, w_fmt = IntFormat(abits, a_signed), IntFormat(wbits, True)
    out_fmt = IntFormat(abits if obits is None else obits, a_signed)
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(a_fmt.qmin, a_fmt.qmax + 1, (m, k), generator=g, dtype=torch.int64)
    w = torch.randint(w_fmt.qmin, w_fmt.qmax + 1, (n, k), generator=g, dtype=torch.int64)
    row_bits = None
    if ratio8 is not None:
        if wbits != 8:
            raise ValueError(f"A mixed-precision case needs wbits=8 (int8 containers), not {wbits}")
        if not 0.0 <= ratio8 <= 1.0:
            raise ValueError(f"Share of 8-bit rows must be from 0 to 1, not {ratio8!r}")
        row_bits = torch.full((n,), 4, dtype=INT_DTYPE)
        row_bits[torch.randperm(n, generator=g)[: int(ratio8 * n + 0.5)]] = 8
        w4 = torch.randint(-8, 8, (n, k), generator=g, dtype=torch.int64)
        w = torch.where((row_bits == 4)[:, None], w4, w)
    acc = x.to(torch.float64) @ w.to(torch.float64).T
    std = acc.std(dim=0, unbiased=False) if m > 1 else acc.abs().mean(dim=0)
    std = torch.clamp(torch.nan_to_num(std, nan=1.0), min=1.0) + (k ** 0.5)
    bias = (torch.randn(n, generator=g, dtype=torch.float64) * std).round().to(torch.int64)
    # Target: about +-2.5 std over the output range, jittered per row.
    jitter = 2.0 ** (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1)
    real = (out_fmt.qmax - out_fmt.qmin) / (5.0 * std) * jitter
    real = real.clamp(2.0 ** -(SHIFT_MAX - M0_BITS + 4), 2.0**M0_BITS - 1)
    m0, shift = quantize_multiplier(real)
    zp = torch.randint(out_fmt.qmin, out_fmt.qmax + 1, (n,), generator=g, dtype=torch.int64)
    return GemmCase(
        x=x.to(INT_DTYPE), w=w.to(INT_DTYPE), bias=bias.to(INT_DTYPE), m0=m0, shift=shift,
        zero_point=zp.to(INT_DTYPE), a_fmt=a_fmt, w_fmt=w_fmt, out_fmt=out_fmt, row_bits=row_bits,
    )

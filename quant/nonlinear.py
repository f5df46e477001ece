"""Integer-only non-linear operations of a ViT (I-BERT style: Kim et al., ICML 2021).

Everything that runs on the device is integer arithmetic on ``int64`` tensors: additions,
multiplications, arithmetic shifts, integer division (floor) and comparisons.  Floats appear
only when the constants are derived from the quantization scales (at "compile time"), in the
``*Params`` dataclasses; the hardware vector unit receives those integers.

* :func:`int_exp`: ``exp`` of a non-positive input as ``exp(p) * 2**-z`` with ``x = p - z ln 2``,
  ``p`` in ``(-ln 2, 0]`` and ``exp(p)`` by the second-order polynomial
  ``0.3585 (p + 1.353)^2 + 0.344`` (I-BERT's i-exp);
* :func:`int_softmax`: max subtraction, :func:`int_exp`, sum, and an integer division to
  ``out_bits`` unsigned probabilities (scale ``2**-out_bits``);
* :func:`int_sqrt`: ``floor(sqrt(n))`` by integer Newton iterations;
* :func:`int_layernorm`: integer mean and variance, :func:`int_sqrt`, and a multiplication by the
  normalized reciprocal of the standard deviation (:func:`int_reciprocal`);
* :func:`int_shiftmax`: the softmax the accelerator runs (I-ViT's Shiftmax idea on I-BERT's
  polynomial): int8 logits whose scale is ``ln 2 / 2**k``, so that the ``ln 2`` range reduction of
  the exponent is a shift and a mask, and one normalized reciprocal of the row sum per row;
* :func:`int_gelu`: ``x/2 (1 + erf(x/sqrt 2))`` with I-BERT's i-erf polynomial
  ``sign(x) [a (min(|x|, -b) + b)^2 + 1]``, ``a = -0.2888``, ``b = -1.769``.

Rounding inside these functions is floor (arithmetic shift right, ``torch.div(...,
rounding_mode="floor")``), which is what a shifter and a divider give in hardware.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = [
    "RECIP_BITS", "ExpParams", "GeluParams", "ShiftmaxParams", "exp_params", "gelu_params", "int_exp", "int_gelu",
    "int_layernorm", "int_reciprocal", "int_shift_exp", "int_shiftmax", "int_softmax", "int_sqrt", "shiftmax_k",
    "shiftmax_params",
]

_I64 = torch.int64
# i-exp polynomial: exp(p) ~ A (p + B)^2 + C on (-ln 2, 0]
_EXP_A, _EXP_B, _EXP_C = 0.3585, 1.353, 0.344
# i-erf polynomial: erf(x) ~ sign(x) [A (min(|x|, -B) + B)^2 + 1]
_ERF_A, _ERF_B = -0.2888, -1.769
#: Largest right shift applied by :func:`int_exp` (``exp(-30 ln 2)`` is below any useful scale).
EXP_MAX_SHIFT = 30


def _int(t: torch.Tensor, what: str) -> torch.Tensor:
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise TypeError(f"{what} must be an integer tensor, not {t.dtype}")
    return t.to(_I64)


def _floordiv(a: torch.Tensor, b) -> torch.Tensor:
    return torch.div(a, b, rounding_mode="floor")


@dataclass(frozen=True)
class ExpParams:
    """Integer constants of :func:`int_exp` for an input scale ``scale``.

    Members
    -------
    q_ln2 : int
        ``round(ln 2 / scale)``.
    q_b, q_c : int
        ``round(B / scale)`` and ``round(C / (A scale^2))`` of the polynomial (constants are
        rounded to nearest on the host; only the device arithmetic is floor).
    out_scale : float
        Scale of the output: ``A * scale^2``.
    """

    q_ln2: int
    q_b: int
    q_c: int
    out_scale: float


def exp_params(scale: float) -> ExpParams:
    if not (math.isfinite(scale) and 0 < scale < math.log(2)):
        raise ValueError(f"Input scale of int_exp must be in (0, ln 2), not {scale!r}")
    return ExpParams(
        q_ln2=round(math.log(2) / scale),
        q_b=round(_EXP_B / scale),
        q_c=round(_EXP_C / (_EXP_A * scale * scale)),
        out_scale=_EXP_A * scale * scale,
    )


def int_exp(q: torch.Tensor, p: ExpParams) -> torch.Tensor:
    """``exp(q * scale)`` for ``q <= 0``, in units of ``p.out_scale`` (``int64``)."""
    q = _int(q, "int_exp input")
    if q.numel() and q.max() > 0:
        raise ValueError("int_exp takes non-positive inputs (subtract the maximum first)")
    z = torch.clamp(_floordiv(-q, p.q_ln2), max=EXP_MAX_SHIFT)
    q_p = q + z * p.q_ln2  # in (-q_ln2, 0] unless clamped
    q_p = torch.clamp(q_p, min=-p.q_ln2)
    poly = (q_p + p.q_b) ** 2 + p.q_c
    return torch.bitwise_right_shift(poly, z)


def int_softmax(q: torch.Tensor, scale: float, *, out_bits: int = 8, dim: int = -1) -> torch.Tensor:
    """Softmax of ``q * scale`` along ``dim`` as unsigned ``out_bits`` codes of scale
    ``2**-out_bits`` (the most probable entry of a one-hot row saturates at ``2**out_bits - 1``)."""
    if not 2 <= out_bits <= 16:
        raise ValueError(f"Softmax output bits must be from 2 to 16, not {out_bits}")
    q = _int(q, "int_softmax input")
    e = int_exp(q - q.amax(dim=dim, keepdim=True), exp_params(scale))
    total = e.sum(dim=dim, keepdim=True)
    out = _floordiv(e * (1 << out_bits), total)
    return out.clamp(max=(1 << out_bits) - 1)


def int_sqrt(n: torch.Tensor) -> torch.Tensor:
    """``floor(sqrt(n))`` for ``0 <= n < 2**62``, by integer Newton iterations from a power-of-two
    start above the root (the iteration count a hardware unrolling needs is ``bits/2 + 1``)."""
    n = _int(n, "int_sqrt input")
    if n.numel() and n.min() < 0:
        raise ValueError("int_sqrt takes non-negative inputs")
    if n.numel() and n.max() >= 2**62:
        raise ValueError("int_sqrt takes inputs below 2**62")
    bits = torch.zeros_like(n)
    v = n.clone()
    for _ in range(62):
        nz = v > 0
        bits = bits + nz.to(_I64)
        v = torch.bitwise_right_shift(v, 1)
    x = torch.bitwise_left_shift(torch.ones_like(n), _floordiv(bits + 1, 2))  # 2**ceil(bits/2) > sqrt(n)
    for _ in range(33):
        y = torch.bitwise_right_shift(x + _floordiv(n, torch.clamp(x, min=1)), 1)
        x = torch.where(y < x, y, x)
    return torch.where(n == 0, torch.zeros_like(n), x)


def int_layernorm(
    q: torch.Tensor, gamma_q: torch.Tensor, beta_q: torch.Tensor, *, frac_bits: int = 8, dim: int = -1,
) -> torch.Tensor:
    """LayerNorm of integer rows, ``gamma * (x - mean) / std + beta`` with integer ``gamma_q`` and
    ``beta_q`` in units of ``2**-frac_bits``; the output is in units of ``2**-frac_bits`` too.

    Everything carries ``frac_bits`` fractional bits: ``mean = floor(sum * 2**f / n)``,
    ``d = x * 2**f - mean``, ``std = max(int_sqrt(floor(sum(d^2) / n)), 1)``, then
    ``(d * inv) >> (sh - f)`` with ``(inv, sh) = int_reciprocal(std)`` (one division per row, a
    multiplication per element); the input scale cancels, as in floating point.
    """
    q = _int(q, "int_layernorm input")
    n = q.shape[dim]
    if not 0 <= frac_bits <= 16:
        raise ValueError(f"Fractional bits must be from 0 to 16, not {frac_bits}")
    mean = _floordiv(q.sum(dim=dim, keepdim=True) * (1 << frac_bits), n)
    d = q * (1 << frac_bits) - mean
    var = _floordiv((d * d).sum(dim=dim, keepdim=True), n)
    std = torch.clamp(int_sqrt(var), min=1)
    inv, sh = int_reciprocal(std)
    normed = torch.bitwise_right_shift(d * inv, sh - frac_bits)  # floor(d * 2**f / std), 16 bits of 1/std
    g = _int(gamma_q, "gamma")
    b = _int(beta_q, "beta")
    return torch.bitwise_right_shift(normed * g, frac_bits) + b


@dataclass(frozen=True)
class GeluParams:
    """Integer constants of :func:`int_gelu` for an input scale ``scale``.

    Members
    -------
    q_b : int
        ``round(B / (scale / sqrt 2))`` (negative).
    q_one : int
        ``round(1 / (A (scale / sqrt 2)^2))`` (negative, since ``A < 0``).
    out_scale : float
        Output scale: ``scale * A * (scale / sqrt 2)^2 / 2``.
    """

    q_b: int
    q_one: int
    out_scale: float


def gelu_params(scale: float) -> GeluParams:
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"Input scale of int_gelu must be positive, not {scale!r}")
    s_erf = scale / math.sqrt(2)
    return GeluParams(
        q_b=round(_ERF_B / s_erf),
        q_one=round(1 / (_ERF_A * s_erf * s_erf)),
        out_scale=scale * _ERF_A * s_erf * s_erf / 2,
    )


def int_gelu(q: torch.Tensor, p: GeluParams) -> torch.Tensor:
    """GELU of ``q * scale`` in units of ``p.out_scale`` (``int64``)."""
    q = _int(q, "int_gelu input")
    sign = torch.sign(q)
    clipped = torch.clamp(q.abs(), max=-p.q_b)
    erf_q = sign * ((clipped + p.q_b) ** 2 + p.q_one)  # erf in units of A (scale/sqrt2)^2
    return q * (erf_q + p.q_one)


#: Bits of a normalized reciprocal (:func:`int_reciprocal`).
RECIP_BITS = 16


def _bit_length(x: torch.Tensor) -> torch.Tensor:
    bits = torch.zeros_like(x)
    v = x.clone()
    for _ in range(63):
        bits = bits + (v > 0).to(_I64)
        v = torch.bitwise_right_shift(v, 1)
    return bits


def int_reciprocal(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalized reciprocal of positive integers: ``(inv, sh)`` with ``sh = bit_length(x) + 15`` and
    ``inv = floor(2**sh / x)``, so ``2**15 <= inv <= 2**16`` and ``y * inv >> sh ~ y / x`` with 16
    significant bits whatever the magnitude of ``x``.  One division per row in hardware (a
    restoring divider), then one multiplication per element."""
    x = _int(x, "int_reciprocal input")
    if x.numel() and x.min() < 1:
        raise ValueError("int_reciprocal takes positive inputs")
    if x.numel() and x.max() >= 2**40:
        raise ValueError("int_reciprocal takes inputs below 2**40")
    sh = _bit_length(x) + (RECIP_BITS - 1)
    return _floordiv(torch.bitwise_left_shift(torch.ones_like(x), sh), x), sh


@dataclass(frozen=True)
class ShiftmaxParams:
    """Integer constants of :func:`int_shiftmax` for int8 logits of scale ``ln 2 / 2**k``.

    Members
    -------
    k : int
        ``log2`` of ``q_ln2``: ``z = (-q) >> k``, ``p = q + (z << k)``.
    q_b, q_c : int
        ``round(B / scale)`` and ``round(C / (A scale^2))`` of the i-exp polynomial.
    """

    k: int
    q_b: int
    q_c: int

    @property
    def scale(self) -> float:
        return math.log(2) / 2**self.k


def shiftmax_params(k: int) -> ShiftmaxParams:
    if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= 7:
        raise ValueError(f"Shiftmax logit shift k must be an integer from 0 to 7, not {k!r}")
    scale = math.log(2) / 2**k
    return ShiftmaxParams(k, round(_EXP_B / scale), round(_EXP_C / (_EXP_A * scale * scale)))


def shiftmax_k(amax: float) -> int:
    """The finest logit scale ``ln 2 / 2**k`` (``k`` from 0 to 7) whose int8 range covers
    ``|logit| <= amax``."""
    if not (math.isfinite(amax) and amax > 0):
        raise ValueError(f"Logit range must be positive, not {amax!r}")
    return max(0, min(7, math.floor(math.log2(127 * math.log(2) / amax))))


def int_shift_exp(q: torch.Tensor, p: ShiftmaxParams) -> torch.Tensor:
    """``exp(q * p.scale)`` for ``q <= 0`` in units of ``A * scale^2``: ``z = (-q) >> k`` (capped at
    31), ``p = q + z * 2**k`` in ``(-2**k, 0]``, ``((p + q_b)^2 + q_c) >> z``."""
    q = _int(q, "int_shift_exp input")
    if q.numel() and q.max() > 0:
        raise ValueError("int_shift_exp takes non-positive inputs (subtract the maximum first)")
    z = torch.bitwise_right_shift(-q, p.k)
    r = q + torch.bitwise_left_shift(z, p.k)
    return torch.bitwise_right_shift((r + p.q_b) ** 2 + p.q_c, torch.clamp(z, max=31))


def int_shiftmax(q: torch.Tensor, p: ShiftmaxParams, *, out_bits: int = 7, dim: int = -1) -> torch.Tensor:
    """Softmax of int8 logits ``q`` (scale ``p.scale``) along ``dim`` as unsigned ``out_bits`` codes
    of scale ``2**-out_bits``: ``e = int_shift_exp(q - max)``, ``(inv, sh) =
    int_reciprocal(sum e)``, ``min((e * inv) >> (sh - out_bits), 2**out_bits - 1)``.  With the
    default 7 bits the probabilities are int8 operands of the next GEMM."""
    if not isinstance(out_bits, int) or not 2 <= out_bits <= 15:
        raise ValueError(f"Shiftmax output bits must be from 2 to 15, not {out_bits!r}")
    q = _int(q, "int_shiftmax input")
    if q.numel() and (q.min() < -128 or q.max() > 127):
        raise ValueError("int_shiftmax takes int8 logits (-128 to 127)")
    e = int_shift_exp(q - q.amax(dim=dim, keepdim=True), p)
    inv, sh = int_reciprocal(e.sum(dim=dim, keepdim=True))
    out = torch.bitwise_right_shift(e * inv, sh - out_bits)
    return out.clamp(max=(1 << out_bits) - 1)

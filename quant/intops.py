"""The integer semantics of qsilicon: the one definition every other package follows.

Every function here is pure and works on integer ``torch`` tensors.  The Amaranth
generators in ``qsilicon.hw`` implement exactly these functions, the cocotb testbenches in
``qsilicon.sim`` compare the RTL with them, and the float fake-quant path is compared with
them within quantization error.

Rounding rules (there are exactly two, and they never mix):

* **float -> integer** (quantizers: weights, activations, biases, multipliers):
  round half to even, as :func:`torch.round` and PyTorch's ``quantize_per_tensor`` do.
* **integer -> integer** (requantization of accumulators):
  round half up, i.e. ``(v + 2**(shift - 1)) >> shift`` with an arithmetic shift
  (``floor``), which is one adder and a shifter in hardware.

Requantization of an accumulator ``acc`` of output row (channel) ``n``::

    y = clamp(((acc * M0[n] + 2**(shift[n]-1)) >> shift[n]) + z_out[n], qmin, qmax)

with ``M0`` an unsigned :data:`M0_BITS`-bit integer and ``0 <= shift <= SHIFT_MAX``
(the rounding term is 0 when ``shift == 0``).  ``acc`` already contains the bias with the
activation zero point folded in (``bias' = bias - z_a * rowsum(W)``), so the MAC array only
ever multiplies raw integer codes.

Integer tensors returned by this module have dtype :data:`INT_DTYPE` (``torch.int32``);
intermediate arithmetic is done in ``int64`` so that it cannot wrap silently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = [
    "ACC_BITS",
    "INT_DTYPE",
    "M0_BITS",
    "SHIFT_MAX",
    "AccumulatorOverflowError",
    "ActQuant",
    "IntFormat",
    "IntLinearResult",
    "WeightQuant",
    "calibrate_activation",
    "check_accumulator",
    "dequantize_activation",
    "fold_zero_point",
    "int_linear",
    "quantize_activation",
    "quantize_bias",
    "quantize_multiplier",
    "quantize_weight",
    "requantize",
    "round_shift",
    "saturate",
]

#: Width of the MAC accumulators (two's complement).
ACC_BITS = 32
#: Width of the unsigned fixed-point requantization multiplier ``M0``.
M0_BITS = 16
#: Largest right shift of the requantizer.  With ``|acc| < 2**31`` and ``M0 < 2**16`` the
#: product fits in 48 bits; shifting further than 47 can only produce 0 (or the rounding of
#: -0.5), so larger shifts are folded into a smaller ``M0``.
SHIFT_MAX = 47
#: Dtype of every integer tensor this module returns.
INT_DTYPE = torch.int32

_ACC_MIN = -(2 ** (ACC_BITS - 1))
_ACC_MAX = 2 ** (ACC_BITS - 1) - 1


class AccumulatorOverflowError(ArithmeticError):
    """An accumulator left the int32 range: the hardware would wrap, the reference refuses."""


@dataclass(frozen=True)
class IntFormat:
    """A two's complement (``signed``) or unsigned integer format of ``bits`` bits.

    Parameters
    ----------
    bits : int
        Width, 2 to 32.
    signed : bool
        Two's complement when true, unsigned otherwise.
    """

    bits: int
    signed: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.bits, int) or isinstance(self.bits, bool) or not 2 <= self.bits <= 32:
            raise ValueError(f"Integer width must be an integer from 2 to 32, not {self.bits!r}")
        if not isinstance(self.signed, bool):
            raise TypeError(f"Signedness must be a bool, not {self.signed!r}")

    @property
    def qmin(self) -> int:
        """Most negative representable value."""
        return -(2 ** (self.bits - 1)) if self.signed else 0

    @property
    def qmax(self) -> int:
        """Most positive representable value."""
        return 2 ** (self.bits - 1) - 1 if self.signed else 2**self.bits - 1

    @property
    def name(self) -> str:
        return f"{'int' if self.signed else 'uint'}{self.bits}"

    def contains(self, t: torch.Tensor) -> bool:
        """Whether every element of ``t`` is representable."""
        return bool(t.numel() == 0 or (t.min() >= self.qmin and t.max() <= self.qmax))

    def check(self, t: torch.Tensor, what: str) -> None:
        """Raise ``ValueError`` naming ``what`` when ``t`` is not integer or out of range."""
        if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
            raise TypeError(f"{what} must be an integer tensor, not {t.dtype}")
        if not self.contains(t):
            raise ValueError(
                f"{what} has values in [{int(t.min())}, {int(t.max())}], outside {self.name} "
                f"[{self.qmin}, {self.qmax}]"
            )


def _as_int64(t: torch.Tensor | int, what: str) -> torch.Tensor:
    t = torch.as_tensor(t)
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise TypeError(f"{what} must be an integer tensor, not {t.dtype}")
    return t.to(torch.int64)


def saturate(x: torch.Tensor, fmt: IntFormat) -> torch.Tensor:
    """Clamp integers to ``fmt``'s range (saturation, never wrap-around)."""
    return _as_int64(x, "saturate input").clamp(fmt.qmin, fmt.qmax).to(INT_DTYPE)


def round_shift(x: torch.Tensor, shift: torch.Tensor | int) -> torch.Tensor:
    """``x / 2**shift`` rounded half up: ``(x + 2**(shift-1)) >> shift``; exact for ``shift = 0``.

    Works element-wise on ``int64`` tensors; ``shift`` broadcasts against ``x`` and must lie
    in ``[0, 62]``.
    """
    x = _as_int64(x, "round_shift input")
    shift = _as_int64(shift, "shift")
    if shift.numel() and (shift.min() < 0 or shift.max() > 62):
        raise ValueError(f"Shift must lie in [0, 62], got [{int(shift.min())}, {int(shift.max())}]")
    half = torch.bitwise_right_shift(torch.bitwise_left_shift(torch.ones_like(shift), shift), 1)
    return torch.bitwise_right_shift(x + half, shift)


# --------------------------------------------------------------------------- weights


@dataclass(frozen=True)
class WeightQuant:
    """Per-row symmetric weight quantization: ``w ~= q * scale[:, None]``.

    Members
    -------
    q : torch.Tensor
        ``[N, K]`` integer codes (``INT_DTYPE``) in ``[-(2**(b-1) - 1), 2**(b-1) - 1]``.
    scale : torch.Tensor
        ``[N]`` float64 scales, one per output row.
    fmt : IntFormat
        The signed weight format.
    """

    q: torch.Tensor
    scale: torch.Tensor
    fmt: IntFormat

    def dequantize(self) -> torch.Tensor:
        return self.q.to(torch.float64) * self.scale[:, None]


def quantize_weight(w: torch.Tensor, bits: int) -> WeightQuant:
    """Symmetric per-row quantization of a ``[N, K]`` float weight to ``bits`` (4 or 8 typical).

    The scale of row ``n`` is ``max|w[n]| / (2**(bits-1) - 1)`` (an all-zero row gets scale 1);
    codes use the narrow symmetric range, so ``-2**(bits-1)`` is never produced here, although
    the hardware and :func:`int_linear` accept it.
    """
    fmt = IntFormat(bits, True)
    if w.dim() != 2:
        raise ValueError(f"Weight must be 2-D [N, K], not of shape {tuple(w.shape)}")
    w64 = w.detach().to(torch.float64)
    if not torch.isfinite(w64).all():
        raise ValueError("Weight contains NaN or infinity")
    qmax = fmt.qmax
    amax = w64.abs().amax(dim=1)
    scale = torch.where(amax > 0, amax / qmax, torch.ones_like(amax))
    q = torch.round(w64 / scale[:, None]).clamp(-qmax, qmax).to(INT_DTYPE)
    return WeightQuant(q=q, scale=scale, fmt=fmt)


# --------------------------------------------------------------------------- activations


@dataclass(frozen=True)
class ActQuant:
    """Per-tensor affine activation quantization: ``x ~= (q - zero_point) * scale``.

    Members
    -------
    scale : float
        Positive step size.
    zero_point : int
        Integer code of the real value 0, inside ``fmt``'s range.
    fmt : IntFormat
        The activation format (int4/int8, signed or unsigned).
    """

    scale: float
    zero_point: int
    fmt: IntFormat

    def __post_init__(self) -> None:
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"Activation scale must be positive and finite, not {self.scale!r}")
        if not self.fmt.qmin <= self.zero_point <= self.fmt.qmax:
            raise ValueError(
                f"Zero point {self.zero_point} outside {self.fmt.name} [{self.fmt.qmin}, {self.fmt.qmax}]"
            )


def calibrate_activation(lo: float, hi: float, bits: int, signed: bool) -> ActQuant:
    """Affine parameters that map the real range ``[lo, hi]`` (widened to contain 0) onto
    ``bits``-bit codes, with an exactly representable zero."""
    fmt = IntFormat(bits, signed)
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"Calibration range must be finite, not [{lo}, {hi}]")
    if hi == lo:
        hi = lo + 1.0
    scale = (hi - lo) / (fmt.qmax - fmt.qmin)
    zp = int(torch.round(torch.tensor(fmt.qmin - lo / scale, dtype=torch.float64)))
    zp = max(fmt.qmin, min(fmt.qmax, zp))
    return ActQuant(scale=scale, zero_point=zp, fmt=fmt)


def quantize_activation(x: torch.Tensor, params: ActQuant) -> torch.Tensor:
    """``clamp(round(x / scale) + zero_point)`` with round half to even."""
    q = torch.round(x.detach().to(torch.float64) / params.scale) + params.zero_point
    return q.clamp(params.fmt.qmin, params.fmt.qmax).to(INT_DTYPE)


def dequantize_activation(q: torch.Tensor, params: ActQuant) -> torch.Tensor:
    """``(q - zero_point) * scale`` in float64."""
    return (_as_int64(q, "activation codes") - params.zero_point).to(torch.float64) * params.scale


# --------------------------------------------------------------------------- bias, multiplier


def quantize_bias(bias: torch.Tensor, act_scale: float, w_scale: torch.Tensor) -> torch.Tensor:
    """Bias in accumulator units: ``round(bias[n] / (act_scale * w_scale[n]))`` as int32."""
    q = torch.round(bias.detach().to(torch.float64) / (act_scale * w_scale.to(torch.float64)))
    if q.numel() and (q.min() < _ACC_MIN or q.max() > _ACC_MAX):
        raise ValueError("Quantized bias does not fit in int32: the weight or activation scale is too small")
    return q.to(INT_DTYPE)


def fold_zero_point(bias: torch.Tensor | None, w_q: torch.Tensor, act_zero_point: int) -> torch.Tensor:
    """Fold the activation zero point into the bias: ``bias' = bias - z_a * rowsum(W)``.

    Then ``sum_k W[n,k] * (x[k] - z_a) + bias[n] == sum_k W[n,k] * x[k] + bias'[n]``.
    """
    w = _as_int64(w_q, "weight codes")
    b = torch.zeros(w.shape[0], dtype=torch.int64) if bias is None else _as_int64(bias, "bias")
    if b.shape != (w.shape[0],):
        raise ValueError(f"Bias must have shape ({w.shape[0]},), not {tuple(b.shape)}")
    folded = b - int(act_zero_point) * w.sum(dim=1)
    if folded.numel() and (folded.min() < _ACC_MIN or folded.max() > _ACC_MAX):
        raise AccumulatorOverflowError("Folded bias does not fit in int32")
    return folded.to(INT_DTYPE)


def quantize_multiplier(real: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
    """Represent positive real multipliers as ``M0 * 2**-shift``.

    ``M0`` is normalised to ``[2**(M0_BITS-1), 2**M0_BITS)`` (relative error at most
    ``2**-M0_BITS``) unless the multiplier is below ``2**-(SHIFT_MAX - M0_BITS + 1)``, where
    ``shift = SHIFT_MAX`` and ``M0`` is smaller (possibly 0).  Rounding is half to even.

    Returns
    -------
    (M0, shift) : tuple of int32 tensors, shaped like ``real``.
    """
    r = torch.as_tensor(real, dtype=torch.float64)
    m0 = torch.empty(r.shape, dtype=torch.int64)
    sh = torch.empty(r.shape, dtype=torch.int64)
    for i, v in enumerate(r.reshape(-1).tolist()):
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"Requantization multiplier must be positive and finite, not {v!r}")
        mant, exp = math.frexp(v)  # v = mant * 2**exp, mant in [0.5, 1)
        m = round(mant * 2**M0_BITS)
        if m == 2**M0_BITS:
            m, exp = m // 2, exp + 1
        shift = M0_BITS - exp
        if shift < 0:
            raise ValueError(
                f"Requantization multiplier {v!r} is too large (must be < {2**M0_BITS}): "
                "the output scale is too small for this layer"
            )
        if shift > SHIFT_MAX:
            shift = SHIFT_MAX
            m = round(v * 2**SHIFT_MAX)
        m0.view(-1)[i], sh.view(-1)[i] = m, shift
    return m0.to(INT_DTYPE), sh.to(INT_DTYPE)


def _check_requant_params(m0: torch.Tensor, shift: torch.Tensor) -> None:
    if m0.numel() and m0.min() < 0:
        raise ValueError(f"M0 must be non-negative, got {int(m0.min())}")
    if shift.numel() and (shift.min() < 0 or shift.max() > SHIFT_MAX):
        raise ValueError(f"Shift must lie in [0, {SHIFT_MAX}], got [{int(shift.min())}, {int(shift.max())}]")
    if m0.numel() and m0.max() >= 2**M0_BITS:
        raise ValueError(f"M0 must be below 2**{M0_BITS}, got {int(m0.max())}")


def requantize(
    acc: torch.Tensor,
    m0: torch.Tensor,
    shift: torch.Tensor,
    zero_point: torch.Tensor | int,
    out_fmt: IntFormat,
) -> torch.Tensor:
    """Requantize int32 accumulators ``[..., N]`` with per-row ``M0``, ``shift``, zero point.

    ``y = clamp(round_half_up(acc * M0 / 2**shift) + zero_point, qmin, qmax)``.
    """
    acc = _as_int64(acc, "accumulators")
    m0 = _as_int64(m0, "M0")
    shift = _as_int64(shift, "shift")
    zp = _as_int64(zero_point, "zero point")
    _check_requant_params(m0, shift)
    if zp.numel() and (zp.min() < out_fmt.qmin or zp.max() > out_fmt.qmax):
        raise ValueError(f"Output zero point outside {out_fmt.name} [{out_fmt.qmin}, {out_fmt.qmax}]")
    if acc.numel() and (acc.min() < _ACC_MIN or acc.max() > _ACC_MAX):
        raise AccumulatorOverflowError("Accumulators outside int32 cannot be requantized")
    return saturate(round_shift(acc * m0, shift) + zp, out_fmt)


# --------------------------------------------------------------------------- linear layer


@dataclass(frozen=True)
class IntLinearResult:
    """What :func:`int_linear` returns.

    Members
    -------
    acc : torch.Tensor
        ``[M, N]`` int32 accumulators, bias (zero point folded in) included.
    out : torch.Tensor
        ``[M, N]`` requantized outputs (``INT_DTYPE``) in the output format.
    """

    acc: torch.Tensor
    out: torch.Tensor


def check_accumulator(acc: torch.Tensor, layer: str) -> None:
    """Raise :class:`AccumulatorOverflowError` naming ``layer``, the output row and the sample
    when an ``[M, N]`` accumulator leaves int32.

    Only the final value matters: two's complement partial sums that wrap and come back give
    the same final int32 value, so the hardware result is right whenever this check passes.
    """
    bad = (acc < _ACC_MIN) | (acc > _ACC_MAX)
    if bad.any():
        m, n = (int(i) for i in bad.nonzero()[0])
        raise AccumulatorOverflowError(
            f"accumulator overflow in layer {layer!r}, output row {n} (sample {m}): "
            f"value {int(acc[m, n])} is outside int32; lower the bit-widths, split K, or "
            "rescale the bias"
        )


def int_linear(
    x: torch.Tensor,
    w: torch.Tensor,
    bias: torch.Tensor | None,
    m0: torch.Tensor,
    shift: torch.Tensor,
    zero_point: torch.Tensor | int,
    *,
    a_fmt: IntFormat,
    w_fmt: IntFormat,
    out_fmt: IntFormat,
    layer: str = "linear",
) -> IntLinearResult:
    """Integer linear layer ``Y = X W^T + bias'`` followed by per-row requantization.

    Parameters
    ----------
    x : ``[M, K]`` activation codes in ``a_fmt`` (raw codes: the zero point is in the bias).
    w : ``[N, K]`` weight codes in ``w_fmt`` (the full range, ``-2**(b-1)`` included).
    bias : ``[N]`` int32 bias with the activation zero point folded in, or ``None``.
    m0, shift : ``[N]`` requantization multipliers (see :func:`quantize_multiplier`).
    zero_point : output zero point, scalar or ``[N]``.
    layer : name used in overflow errors.
    """
    if x.dim() != 2 or w.dim() != 2:
        raise ValueError(f"int_linear takes 2-D X [M, K] and W [N, K], not {tuple(x.shape)} and {tuple(w.shape)}")
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"Inner dimensions differ: X has K={x.shape[1]}, W has K={w.shape[1]}")
    if x.shape[1] == 0:
        raise ValueError("K must be at least 1")
    a_fmt.check(x, f"{layer}: activations")
    w_fmt.check(w, f"{layer}: weights")
    n = w.shape[0]
    b = torch.zeros(n, dtype=torch.int64) if bias is None else _as_int64(bias, "bias")
    if b.shape != (n,):
        raise ValueError(f"{layer}: bias must have shape ({n},), not {tuple(b.shape)}")
    IntFormat(ACC_BITS, True).check(b, f"{layer}: bias")
    # float64 matmul is exact here (|partial sums| < 2**53) and much faster than int64 matmul.
    if x.shape[1] * 2 ** (a_fmt.bits + w_fmt.bits) < 2**52:
        acc = (x.to(torch.float64) @ w.to(torch.float64).T).to(torch.int64)
    else:
        acc = x.to(torch.int64) @ w.to(torch.int64).T
    acc = acc + b
    check_accumulator(acc, layer)
    out = requantize(acc, m0, shift, zero_point, out_fmt)
    return IntLinearResult(acc=acc.to(INT_DTYPE), out=out)

"""Activation and weight quantizers of the post-training path, with their integer meaning.

Activations here are the outputs of ReLU convolutions (or the input image), so they are unsigned
with zero point 0: padding with 0 stays exact, and the requantizer's clamp at 0 *is* the ReLU.

* :class:`UniformAct`: ``bits``-bit codes ``v = clamp(floor(y / scale + 1/2), 0, 2**bits - 1)``
  (round half up, the integer requantizer's rule), value ``v * scale``.
* :class:`PolishedAct` (QuartDepth's activation polishing): each channel ``c`` is mapped through
  ``Phi(x) = log2(x + a_c) - log2(a_c)`` and ``Phi`` is quantized uniformly to 16 levels in
  ``[0, Phi(clip_c)]``.  In integers this is a requantization to an unsigned ``FINE_BITS``-bit
  *fine grid* shared by the tensor, then a per-channel **encoder** (15 thresholds on the fine
  grid: ``code = #{k : v >= T[c, k]}``) that stores 4 bits, and on the consumer's side a
  per-channel 16-entry **decode table** back to fine-grid integers ``D[c, code]`` that feed the MAC.
  Memory and buffers hold 4-bit codes; the multipliers see ``FINE_BITS``-bit values.

Weights: symmetric per output channel, ``q = round_half_even(w / s)`` in ``[-(2**(b-1)-1),
2**(b-1)-1]`` with ``s`` from min-max (RTN) or a per-channel clipping search.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["FINE_BITS", "LEVELS", "TIE_NUDGE", "PolishedAct", "UniformAct", "check_bits", "decode_table",
           "encode_thresholds", "fake_quant_weight", "mse_weight_scale", "round_half_up", "weight_scale"]

#: Levels of a polished activation (4-bit codes).
LEVELS = 16
#: Width of the fine grid that polished codes decode to (what the MAC multiplies).
FINE_BITS = 8


def check_bits(bits: int, what: str, allowed=(4, 8)) -> int:
    if not isinstance(bits, int) or isinstance(bits, bool) or bits not in allowed:
        raise ValueError(f"{what} bit-width must be one of {', '.join(map(str, allowed))}, not {bits!r}")
    return bits


#: Nudge of :func:`round_half_up`, in grid steps.  The integer requantizer sends exact ties
#: (``acc * M0 / 2**shift = k + 1/2``, common when ``M0`` has trailing zeros) up; float64 rounding
#: noise (about 1e-14 steps here) could put the float twin just below the tie.  Any non-tie value
#: lies at least ``2**-shift`` from a boundary, more than this nudge for ``shift < 30``.
TIE_NUDGE = 2.0**-31


def round_half_up(x: torch.Tensor) -> torch.Tensor:
    """``floor(x + 1/2)`` (ties up, see :data:`TIE_NUDGE`): the float twin of the requantizer's
    ``(v + 2**(s-1)) >> s``."""
    return torch.floor(x + (0.5 + TIE_NUDGE))


# --------------------------------------------------------------------------- activations


@dataclass(frozen=True)
class UniformAct:
    """Unsigned uniform activation quantizer with zero point 0."""

    bits: int
    scale: float

    def __post_init__(self) -> None:
        check_bits(self.bits, "Activation", (4, 8))
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"Activation scale must be positive and finite, not {self.scale!r}")

    @property
    def qmax(self) -> int:
        return 2**self.bits - 1

    @property
    def grid_scale(self) -> float:
        """Scale of the integers the MAC multiplies."""
        return self.scale

    @property
    def mac_bits(self) -> int:
        return self.bits

    @classmethod
    def from_range(cls, bits: int, hi: float) -> UniformAct:
        return cls(bits, max(float(hi), 1e-8) / (2**bits - 1))

    def codes(self, y: torch.Tensor) -> torch.Tensor:
        """Float pre-activations ``[B, C, H, W]`` -> integer codes (ReLU included)."""
        return round_half_up(y / self.scale).clamp(0, self.qmax)

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        return self.codes(y) * self.scale


@dataclass(frozen=True)
class PolishedAct:
    """Per-channel log-domain 4-bit activation quantizer on a shared fine grid (see module doc).

    Members
    -------
    scale : float
        Step of the unsigned ``FINE_BITS``-bit fine grid.
    thresholds : ``[C, 15]`` int64, non-decreasing per row: the encoder.
    table : ``[C, 16]`` int64 in ``[0, 2**FINE_BITS - 1]``, ``table[:, 0] == 0``: the decoder.
    """

    scale: float
    thresholds: torch.Tensor
    table: torch.Tensor

    bits = 4

    def __post_init__(self) -> None:
        c = self.table.shape[0]
        if self.table.shape != (c, LEVELS) or self.thresholds.shape != (c, LEVELS - 1):
            raise ValueError("A polished activation needs a [C, 16] table and [C, 15] thresholds")
        if (self.table < 0).any() or (self.table >= 2**FINE_BITS).any():
            raise ValueError(f"Decode table entries must be {FINE_BITS}-bit unsigned")
        if (self.thresholds.diff(dim=1) < 0).any():
            raise ValueError("Encoder thresholds must be non-decreasing per channel")

    @property
    def grid_scale(self) -> float:
        return self.scale

    @property
    def mac_bits(self) -> int:
        return FINE_BITS

    @classmethod
    def fit(cls, a: torch.Tensor, clip: torch.Tensor, scale: float | None = None) -> PolishedAct:
        """Levels ``L_k = a (2**(k*d) - 1)`` with ``d = Phi(clip) / 15`` per channel, rounded onto the
        fine grid (``scale`` = the largest clip / (2**FINE_BITS - 1) unless given); a value is
        encoded to the level whose ``Phi`` is nearest (thresholds at ``Phi`` midpoints)."""
        a = a.to(torch.float64).clamp(min=1e-8)
        clip = torch.maximum(clip.to(torch.float64), a * 1e-3)
        fmax = 2**FINE_BITS - 1
        if scale is None:
            scale = float(clip.max()) / fmax
        d = (torch.log2(clip + a) - torch.log2(a)) / (LEVELS - 1)
        k = torch.arange(LEVELS, dtype=torch.float64)
        levels = a[:, None] * (torch.exp2(k[None] * d[:, None]) - 1)
        mids = a[:, None] * (torch.exp2((k[1:] - 0.5)[None] * d[:, None]) - 1)
        table = round_half_up(levels / scale).clamp(0, fmax).to(torch.int64)
        thr = torch.ceil(mids / scale - 1e-9).clamp(1, fmax + 1).to(torch.int64)
        thr = torch.cummax(thr, dim=1).values
        return cls(scale, thr, table)

    def fine(self, y: torch.Tensor) -> torch.Tensor:
        return round_half_up(y / self.scale).clamp(0, 2**FINE_BITS - 1)

    def encode(self, v: torch.Tensor) -> torch.Tensor:
        """Fine-grid integers ``[B, C, H, W]`` -> 4-bit codes ``#{k : v >= T[c, k]}``."""
        return encode_thresholds(v, self.thresholds)

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        """4-bit codes -> fine-grid integers through the per-channel table."""
        return decode_table(code, self.table)

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(self.fine(y))).to(y.dtype) * self.scale


def encode_thresholds(v: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """``code[b, c, ...] = #{k : v[b, c, ...] >= thresholds[c, k]}`` for integers ``v`` in
    ``[0, 2**FINE_BITS)``: one sorted search over all channels (each channel's values and thresholds
    offset by ``c * 2**(FINE_BITS + 2)``)."""
    c, n = thresholds.shape
    off = (torch.arange(c, dtype=torch.int64) << (FINE_BITS + 2))
    bounds = (thresholds.to(torch.int64) + off[:, None]).reshape(-1)
    shape = [1, c] + [1] * (v.dim() - 2)
    vv = (v.to(torch.int64) + off.reshape(shape)).contiguous()
    return torch.bucketize(vv, bounds, right=True) - (torch.arange(c) * n).reshape(shape)


def decode_table(code: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """``table[c, code[b, c, ...]]``: codes ``[B, C, ...]`` through per-channel tables ``[C, L]``."""
    c, n = table.shape
    shape = [1, c] + [1] * (code.dim() - 2)
    flat = code.long() + (torch.arange(c) * n).reshape(shape)
    return table.to(torch.int64).reshape(-1)[flat]


# --------------------------------------------------------------------------- weights


def weight_scale(w: torch.Tensor, bits: int, clip: torch.Tensor | float = 1.0) -> torch.Tensor:
    """Per-output-channel symmetric scale of ``w`` ``[N, ...]``: ``clip * max|w| / (2**(b-1) - 1)``."""
    amax = w.detach().reshape(w.shape[0], -1).abs().amax(1).to(torch.float64)
    s = torch.as_tensor(clip, dtype=torch.float64) * amax / (2 ** (bits - 1) - 1)
    return torch.where(s > 0, s, torch.ones_like(s))


def fake_quant_weight(w: torch.Tensor, scale: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(codes, dequantized)`` of ``w`` ``[N, ...]`` on per-channel ``scale`` (round half to even)."""
    qmax = 2 ** (bits - 1) - 1
    s = scale.reshape(-1, *([1] * (w.dim() - 1))).to(torch.float64)
    q = torch.round(w.detach().to(torch.float64) / s).clamp(-qmax, qmax)
    return q.to(torch.int64), (q * s).to(w.dtype)


def mse_weight_scale(w: torch.Tensor, bits: int, grid=None) -> torch.Tensor:
    """Per-channel clipping ratio minimizing the weight's squared rounding error (0.5 to 1.0)."""
    grid = grid if grid is not None else [1.0 - 0.025 * i for i in range(21)]
    w2 = w.detach().reshape(w.shape[0], -1).to(torch.float64)
    best, best_s = None, None
    for r in grid:
        s = weight_scale(w2, bits, r)
        _, dq = fake_quant_weight(w2, s, bits)
        err = ((dq - w2) ** 2).sum(1)
        if best is None:
            best, best_s = err, s
        else:
            better = err < best
            best, best_s = torch.where(better, err, best), torch.where(better, s, best_s)
    return best_s


"""GEMM problems: the unit that the GEMM engine, its testbench and the CLI share.

:class:`GemmCase` holds one integer problem, :func:`ref_gemm` is its golden result (the integer
semantics of :mod:`qsilicon.quant.intops` and, for row-wise mixed layers,
:mod:`qsilicon.quant.mixed`), and :func:`random_gemm_case` makes cases over the whole range.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .intops import INT_DTYPE, M0_BITS, SHIFT_MAX, IntFormat, IntLinearResult, int_linear, quantize_multiplier
from .mixed import int_mixed_linear

__all__ = ["GemmCase", "random_gemm_case", "ref_gemm"]


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

    def state(self) -> dict:
        """The case as a dict of tensors and plain values (what :meth:`save` writes)."""
        return {
            "x": self.x, "w": self.w, "bias": self.bias, "m0": self.m0, "shift": self.shift,
            "zero_point": self.zero_point, "row_bits": self.row_bits,
            "fmts": [(f.bits, f.signed) for f in (self.a_fmt, self.w_fmt, self.out_fmt)],
        }

    @classmethod
    def from_state(cls, state: dict) -> GemmCase:
        d = dict(state)
        a, w, o = (IntFormat(int(b), bool(s)) for b, s in d.pop("fmts"))
        return cls(a_fmt=a, w_fmt=w, out_fmt=o, **d)

    def save(self, path: str | Path) -> None:
        torch.save(self.state(), path)

    @classmethod
    def load(cls, path: str | Path) -> GemmCase:
        return cls.from_state(torch.load(path, weights_only=True))


def ref_gemm(case: GemmCase) -> IntLinearResult:
    """The golden model of the GEMM engine: :func:`int_linear` on the case (with each row checked
    against its own width for a mixed-precision case)."""
    if case.row_bits is not None:
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

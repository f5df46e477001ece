"""Hardware configuration dataclasses.

This module must not import Amaranth: ``qsilicon.search`` reads these at search time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["SUPPORTED_BITS", "GemmConfig"]

#: Operand widths the PEs support.
SUPPORTED_BITS = (4, 8)
_MAX_DIM = 64


def _check_dim(name: str, v: object) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{name} must be a positive integer, not {v!r}")
    if v > _MAX_DIM:
        raise ValueError(f"{name} must be at most {_MAX_DIM}, not {v!r}")


def _check_bits(name: str, v: object) -> None:
    if v not in SUPPORTED_BITS or isinstance(v, bool):
        raise ValueError(f"{name} must be 4 or 8, not {v!r}")


@dataclass(frozen=True)
class GemmConfig:
    """Parameters of the GEMM engine (an ``rows x cols`` array of MAC PEs + requantizer).

    Parameters
    ----------
    rows : int
        Array rows R: output rows (activation rows, M) computed at once, 1 to 64.
    cols : int
        Array columns C: output channels (weight rows, N) computed at once, 1 to 64.
    wbits : int
        Weight width, 4 or 8 (signed).
    abits : int
        Activation width, 4 or 8; outputs use the same format.
    a_signed : bool
        Activations (and outputs) are two's complement when true, unsigned otherwise.
    """

    rows: int
    cols: int
    wbits: int = 8
    abits: int = 8
    a_signed: bool = True

    def __post_init__(self) -> None:
        _check_dim("Rows", self.rows)
        _check_dim("Cols", self.cols)
        _check_bits("Weight bits", self.wbits)
        _check_bits("Activation bits", self.abits)
        if not isinstance(self.a_signed, bool):
            raise TypeError(f"a_signed must be a bool, not {self.a_signed!r}")

    @property
    def obits(self) -> int:
        """Output width (the next layer's activation width)."""
        return self.abits

    @property
    def tag(self) -> str:
        """A short name usable in file and directory names."""
        return f"gemm_r{self.rows}c{self.cols}_w{self.wbits}a{self.abits}{'s' if self.a_signed else 'u'}"

    def to_dict(self) -> dict:
        return asdict(self)

"""Hardware configuration dataclasses.

This module must not import Amaranth: ``qsilicon.search`` reads these at search time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property

__all__ = ["ACCEL_LANES", "ACCEL_PACKINGS", "PACKINGS", "REQUANT_STAGES", "SUPPORTED_BITS", "AccelConfig", "GemmConfig"]

#: Operand widths the PEs support.
SUPPORTED_BITS = (4, 8)
#: Multiplier implementations (see :mod:`qsilicon.hw.blocks.packed`).
PACKINGS = ("none", "dsp2", "dsp4", "lut", "dot2")
#: Pipeline depths of the requantizer (:class:`~qsilicon.hw.blocks.Requantizer`).
REQUANT_STAGES = (3, 4, 5)
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
    packing : str
        Multiplier lanes: ``none`` (``a * w`` per PE, mapped by the synthesis tool), ``dsp2``
        (one wide multiply per PE pair along a row: 2 MACs per DSP48E2; even ``cols``), ``dsp4``
        (one per 2x2 PE block: 4 MACs per DSP48E2; W4A4 only, even ``rows`` and ``cols``) or
        ``lut`` (shift-and-add multipliers that stay in LUTs; 4-bit weights only) or ``dot2`` (a
        DSP48E2 per PE that takes two reduction steps of an int4 tile per cycle: row-wise mixed
        W8A8/W4A8 with signed activations only).
    mixed : bool
        Row-wise mixed precision (Quasar-ViT): the PEs take 8-bit weights and every tile says
        whether its rows are int8 or int4; int4 tiles carry their weights in half the bits.
        Needs ``wbits=8``.
    requant_stages : int
        Requantizer pipeline stages: 3; 4 with the shift registered apart from the rounding and
        saturation; 5 with the 32 x 16-bit product also split into registered partial products.
        Each stage adds one cycle per GEMM; the deeper forms raise the clock on slow fabrics
        (ECP5 and standard cells: ``bench/requant_depth.py``).
    """

    rows: int
    cols: int
    wbits: int = 8
    abits: int = 8
    a_signed: bool = True
    packing: str = "none"
    mixed: bool = False
    requant_stages: int = 3

    def __post_init__(self) -> None:
        _check_dim("Rows", self.rows)
        _check_dim("Cols", self.cols)
        _check_bits("Weight bits", self.wbits)
        _check_bits("Activation bits", self.abits)
        if not isinstance(self.a_signed, bool):
            raise TypeError(f"a_signed must be a bool, not {self.a_signed!r}")
        if self.packing not in PACKINGS:
            raise ValueError(f"Packing must be one of {', '.join(PACKINGS)}, not {self.packing!r}")
        if not isinstance(self.mixed, bool):
            raise TypeError(f"mixed must be a bool, not {self.mixed!r}")
        if self.mixed and self.wbits != 8:
            raise ValueError(f"Mixed-precision rows need 8-bit weight lanes (wbits=8), not wbits={self.wbits}")
        if self.packing == "dsp2" and self.cols % 2:
            raise ValueError(f"dsp2 packing needs an even number of columns, not {self.cols}")
        if self.packing == "dsp4":
            if (self.wbits, self.abits) != (4, 4):
                raise ValueError(f"dsp4 packing is for W4A4, not W{self.wbits}A{self.abits} (use dsp2)")
            if self.rows % 2 or self.cols % 2:
                raise ValueError(f"dsp4 packing needs even rows and columns, not {self.rows}x{self.cols}")
        if self.packing == "dot2" and not (self.mixed and self.abits == 8 and self.a_signed):
            raise ValueError("dot2 packing is for row-wise mixed int8/int4 weights with int8 activations "
                             "(mixed=True, abits=8, a_signed=True)")
        if self.requant_stages not in REQUANT_STAGES:
            raise ValueError(f"Requantizer stages must be 3, 4 or 5, not {self.requant_stages!r}")
        if self.packing == "lut" and self.wbits != 4:
            raise ValueError(f"lut packing is for 4-bit weights, not wbits={self.wbits} (use dsp2 or none)")

    @property
    def steps_per_beat4(self) -> int:
        """Reduction steps an int4 tile's operand beat carries (2 with ``dot2`` packing, else 1)."""
        return 2 if self.packing == "dot2" else 1

    @property
    def obits(self) -> int:
        """Output width (the next layer's activation width)."""
        return self.abits

    @property
    def tag(self) -> str:
        """A short name usable in file and directory names."""
        tag = f"gemm_r{self.rows}c{self.cols}_w{self.wbits}a{self.abits}{'s' if self.a_signed else 'u'}"
        if self.packing != "none":
            tag += f"_{self.packing}"
        tag += "_mixed" if self.mixed else ""
        return tag + (f"_rq{self.requant_stages}" if self.requant_stages != 3 else "")

    def to_dict(self) -> dict:
        return asdict(self)


#: Multiplier lanes of the ViT accelerator's array, and its vector-unit widths.
ACCEL_PACKINGS = ("none", "dsp2", "dot2")
ACCEL_LANES = (8, 16)


@dataclass(frozen=True)
class AccelConfig:
    """One design of the ViT accelerator (:class:`qsilicon.hw.vit.system.VitAccel`), the unit the
    search explores and the generator builds.

    Parameters
    ----------
    rows, cols : int
        The MAC array: ``rows`` tokens x ``cols`` output channels per tile; powers of two from
        ``lanes`` to 64.
    packing : str
        ``none`` (a DSP48E2 per PE), ``dsp2`` (two PEs per DSP48E2) or ``dot2`` (a DSP48E2 per PE
        that takes two reduction steps of an int4 row per cycle: int4 rows twice as fast).
    lanes : int
        8 or 16: the vector units' lanes and the memory word (``8 * lanes`` bits, the AXI4 data
        width): a word holds one feature of ``lanes`` tokens.
    wbuf_kib : int
        Weight buffer (a ring: the next column tile loads while the array works on this one), KiB,
        a power of two.
    abuf_kib : int
        Activation buffer (one GEMM's input), KiB, a power of two.
    clock_mhz : float
        The design clock (an assumption per point; see the search's notes).
    rowbuf : int
        0, or the row buffer of the LayerNorm unit: the longest row (elements) it holds, a power of
        two from 64 to 4096.  LayerNorm rows up to that length are read from memory once instead
        of three times (:class:`qsilicon.hw.blocks.rowunit.RowUnit`).
    """

    rows: int = 8
    cols: int = 8
    packing: str = "dsp2"
    lanes: int = 8
    wbuf_kib: int = 32
    abuf_kib: int = 32
    clock_mhz: float = 150.0
    rowbuf: int = 0

    def __post_init__(self) -> None:
        if self.packing not in ACCEL_PACKINGS:
            raise ValueError(f"packing must be one of {', '.join(ACCEL_PACKINGS)}, not {self.packing!r}")
        if self.lanes not in ACCEL_LANES or isinstance(self.lanes, bool):
            raise ValueError(f"lanes must be 8 or 16, not {self.lanes!r}")
        for name in ("rows", "cols"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not self.lanes <= v <= _MAX_DIM or v & (v - 1):
                raise ValueError(f"{name} must be a power of two from the lanes ({self.lanes}) to {_MAX_DIM}, "
                                 f"not {v!r}")
        for name in ("wbuf_kib", "abuf_kib"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1 or v & (v - 1):
                raise ValueError(f"{name} must be a power of two (KiB), not {v!r}")
        if isinstance(self.clock_mhz, bool) or not (isinstance(self.clock_mhz, (int, float))
                                                    and 0 < self.clock_mhz <= 1000):
            raise ValueError(f"clock_mhz must be in (0, 1000], not {self.clock_mhz!r}")
        if isinstance(self.rowbuf, bool) or not isinstance(self.rowbuf, int) or (
                self.rowbuf and not (64 <= self.rowbuf <= 4096 and self.rowbuf & (self.rowbuf - 1) == 0)):
            raise ValueError(f"rowbuf must be 0 (no row buffer) or a power of two from 64 to 4096, not {self.rowbuf!r}")
        self.gemm  # noqa: B018  (packing against the array checked by GemmConfig)

    @cached_property
    def gemm(self) -> GemmConfig:
        """The array: int8 activations, row-wise mixed int4/int8 weights in 8-bit lanes."""
        return GemmConfig(self.rows, self.cols, 8, 8, packing=self.packing, mixed=True)

    @property
    def abuf_words(self) -> int:
        """Depth of the activation buffer in words of ``rows`` bytes (one array beat of activations)."""
        return self.abuf_kib * 1024 // self.rows

    @property
    def wbuf_words(self) -> int:
        """Depth of the weight ring in words of ``cols`` bytes (one array beat of weights)."""
        return self.wbuf_kib * 1024 // self.cols

    @property
    def tag(self) -> str:
        """The design's name, e.g. ``r16c64_dsp2_l16_w64k_a8k_200mhz`` (``..._a8k_rb1024_200mhz`` with
        a row buffer)."""
        rb = f"rb{self.rowbuf}_" if self.rowbuf else ""
        return (f"r{self.rows}c{self.cols}_{self.packing}_l{self.lanes}_w{self.wbuf_kib}k_a{self.abuf_kib}k_{rb}"
                f"{self.clock_mhz:g}mhz")

    @classmethod
    def from_tag(cls, tag: str) -> AccelConfig:
        """The design of a :attr:`tag`; ``ValueError`` naming the expected form otherwise."""
        import re

        m = re.fullmatch(r"r(\d+)c(\d+)_(none|dsp2|dot2)_l(\d+)_w(\d+)k_a(\d+)k_(?:rb([1-9]\d*)_)?([0-9.]+)mhz",
                         tag.strip())
        if not m:
            raise ValueError(f"design tag {tag!r}: expected r<rows>c<cols>_<none|dsp2|dot2>_l<lanes>_w<KiB>k_a<KiB>k_"
                             "[rb<elements>_]<MHz>mhz, e.g. r16c64_dsp2_l16_w64k_a8k_200mhz")
        r, c, p, lanes, w, a, rb, f = m.groups()
        return cls(int(r), int(c), p, int(lanes), int(w), int(a), float(f), int(rb or 0))

    @property
    def word_bytes(self) -> int:
        """Bytes of a memory word (the AXI4 data width / 8)."""
        return self.lanes

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("gemm", None)
        return d

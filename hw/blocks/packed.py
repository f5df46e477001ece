"""Multiplier lanes that compute several narrow products with one wide multiplication.

The DSP48E2 of Zynq UltraScale+ multiplies a 27-bit (pre-adder ``A + D``) by an 18-bit (``B``)
operand into a 45-bit result.  Operands placed at a spacing inside those ports give several
products at once; the fields are separated and sign-corrected afterwards (the technique of AMD's
WP486 for INT8 and WP521 for INT4).  What fits, for products of a ``p``-bit result each:

* ``dsp2``: one activation times two weights, ``(w0 + w1 * 2**18) * a``: the 18-bit spacing holds
  any int8/uint8 x int8 (or narrower) product.  Two MACs per DSP for W8A8 and W4A8.  The column
  operands may also be unsigned 8-bit (int8 x uint8 products; the QuartDepth engine puts weights
  on the rows and activations on the columns).
* ``dsp4``: two activations times two weights (a 2x2 outer product),
  ``(w0 + w1 * 2**22) * (a0 + a1 * 2**11)``: four products at 0, 11, 22 and 33; 11-bit fields hold
  the 8-bit int4/uint4 x int4 products.  Four MACs per DSP for W4A4.  Wider operands do not fit
  (int8 x int4 products need 12-bit fields: the second weight would end past bit 27).

The product field at offset ``s`` of width ``f`` is recovered exactly: the low field is the
sign-extended ``P[0:f]``; the rest is ``(P >> f) + P[f-1]``, which undoes the borrow that a
negative low product took from the field above (and so on upwards).

* ``dot2`` (row-wise mixed precision, int8 activations): one DSP48E2 per PE, which for an int4 row
  computes a two-term dot product over two reduction steps,
  ``(a0 + a1 * 2**13) * (w1 + w0 * 2**13) = a0 w1 + (a0 w0 + a1 w1) * 2**13 + a1 w0 * 2**26``:
  the middle field is the sum of both products (13 bits hold ``[-2032, 2048]``; the low field
  ``a0 w1`` fits 13 bits too, and ``w1 + w0 * 2**13`` fits the 18-bit port).  An int8 row puts
  ``a * 2**13`` and ``w`` on the ports, so the same field holds the 16-bit product and the low
  field is zero.  The packed row operand depends only on the array row and the packed weight
  only on the column: they are formed once per row and column (:func:`dot2_row`, :func:`dot2_col`), not per
  PE.  Two MACs per DSP and per PE on int4 rows, one on int8 rows.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Shape, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = [
    "DOT2_SHIFT", "PACKINGS", "PackedMul", "check_lane", "dot2_col", "dot2_field", "dot2_row", "lane_geometry",
    "nibble_mul", "shift_add_mul",
]

#: Multiplier implementations of the MAC array: ``none`` (a plain ``a * w`` per PE, mapped as the
#: synthesis tool likes), ``dsp2``, ``dsp4``, ``dot2`` (packed, above) and ``lut`` (an explicit
#: shift-and-add multiplier per PE, which no tool maps to a DSP block).
PACKINGS = ("none", "dsp2", "dsp4", "lut", "dot2")
#: Offset of the product field of a ``dot2`` PE.
DOT2_SHIFT = 13

_DSP2_SPACING = 18
_DSP4_A_SPACING = 11
_DSP4_W_SPACING = 22


def lane_geometry(packing: str) -> tuple[int, int]:
    """``(activations, weights)`` a lane of ``packing`` takes: its share of the array."""
    return {"none": (1, 1), "lut": (1, 1), "dsp2": (1, 2), "dsp4": (2, 2), "dot2": (1, 1)}[packing]


def dot2_row(a0, a1, dot):
    """The ``dot2`` multiplier port of an array row (``x``): ``a0``, ``a1`` are the row's int8
    activations of reduction steps ``k`` and ``k + 1`` (``a1`` is used only when ``dot`` is set).
    ``x * dot2_col(w, dot)`` carries the PE's product (``dot`` 0) or its two-term dot product
    (``dot`` 1) in the field :func:`dot2_field` reads."""
    return Mux(dot, a0 + (a1 << DOT2_SHIFT), a0 << DOT2_SHIFT)


def dot2_col(w, dot):
    """The ``dot2`` multiplier port of an array column (``y``): ``w`` is the column's weight byte, an
    int8 weight, or (``dot`` set) two int4 weights, step ``k`` in the low nibble and step ``k + 1``
    in the high one."""
    return Mux(dot, w[4:8].as_signed() + (w[0:4].as_signed() << DOT2_SHIFT), w.as_signed())


def dot2_field(acc, q, carry, dot):
    """``acc`` plus the product (or dot product) in ``q = (x * y)[13:30]`` and ``carry = (x * y)[12]``.

    In a ``dot`` product the field is 13 bits wide (the cross product ``a1 w0`` sits above it) and
    a negative low field ``a0 w1`` borrowed one from it: ``sext(q[0:13]) + carry``.  In an int8
    product the low field is zero and the field is the whole 17-bit ``q``.  The borrow is the
    carry into one adder: ``({acc, 1} + {field, carry}) >> 1``."""
    field = Mux(dot, q[0:13].as_signed(), q.as_signed())
    return ((Cat(Const(1, 1), acc).as_signed() + Cat(carry, field).as_signed()) >> 1)


def shift_add_mul(a, w):
    """``a * w`` as a sum of shifted partial products over the bits of the signed ``w`` (the top
    bit weighs ``-2**(n-1)``), each selected by a mux: adders only, so the product stays in LUT
    logic on every target."""
    n = len(w)
    total = 0
    for i in range(n):
        shifted = a << i
        total = total + Mux(w[i], shifted if i < n - 1 else -shifted, 0)
    return total


def nibble_mul(a, w, pair, phase):
    """Products of a signed 8-bit ``a`` and an unsigned 8-bit ``w`` on two 5-bit x 4-bit multipliers
    (a precision-scalable multiplier; ``a = aH 2**4 + aL``, ``w = wH 2**4 + wL``):

    * ``pair`` 1: two W4A4 MACs, ``aL wL + aH wH`` (``aL``, ``aH`` signed 4-bit weights, ``wL``,
      ``wH`` unsigned 4-bit codes of two input channels);
    * ``pair`` 0: ``a * w`` over two cycles, ``phase`` 0 giving ``aL w`` (``aL`` unsigned) and
      ``phase`` 1 giving ``aH w 2**4``; their sum is the int8 x uint8 product.

    Each multiplier takes a weight nibble with a fifth (sign) bit, so one multiplier serves the
    unsigned low nibble of an int8 and the signed nibbles of int4."""
    lo_u = Cat(a[0:4], pair & a[3]).as_signed()  # aL: signed int4 in pair mode, else unsigned
    a_hi = Cat(a[4:8], a[7]).as_signed()
    x1 = Mux(phase, a_hi, lo_u)  # times wL
    x2 = Mux(pair | phase, a_hi, lo_u)  # times wH
    m1, m2 = x1 * w[0:4], x2 * w[4:8]
    part = Mux(pair, m1 + m2, m1 + (m2 << 4))
    return Mux(phase, part << 4, part)


def check_lane(packing: str, a_shape, w_shape) -> tuple[Shape, Shape]:
    """Validate a lane's parameters; return the operand shapes."""
    if packing not in PACKINGS:
        raise ValueError(f"Packing must be one of {', '.join(PACKINGS)}, not {packing!r}")
    a_shape, w_shape = Shape.cast(a_shape), Shape.cast(w_shape)
    if not w_shape.signed and packing not in ("none", "dsp2"):
        # shift-and-add weighs the top bit negative; dsp4's 11-bit fields are sized for int4 x int4.
        raise ValueError("Weights must be signed (unsigned column operands: none or dsp2 packing only)")
    if packing == "dot2" and (a_shape != signed(8) or w_shape != signed(8)):
        raise ValueError(f"dot2 packing takes int8 activations and int8/int4 weights, not {a_shape} x {w_shape}")
    limit = {"dsp2": 8, "dsp4": 4}.get(packing)
    if limit is not None and (a_shape.width > limit or w_shape.width > limit):
        raise ValueError(f"{packing} packing takes operands of up to {limit} bits, "
                         f"not {a_shape.width}-bit activations and {w_shape.width}-bit weights")
    return a_shape, w_shape


class PackedMul(wiring.Component):
    """One multiplier lane: the products of its activations and weights, combinationally.

    Parameters
    ----------
    packing : str
        One of :data:`PACKINGS`.
    a_shape : ShapeLike
        Activation shape.
    w_shape : ShapeLike
        Weight shape (signed).

    Members
    -------
    a : In(ArrayLayout(a_shape, na))
    w : In(ArrayLayout(w_shape, nw))
    p : Out(ArrayLayout(signed(pw), na * nw))
        ``p[i * nw + j] = a[i] * w[j]``; ``pw = len(a) + len(w) + 1``.
    """

    def __init__(self, packing: str, a_shape, w_shape) -> None:
        a_shape, w_shape = check_lane(packing, a_shape, w_shape)
        if packing == "dot2":
            raise ValueError("dot2 lanes are formed by the MAC array (dot2_row, dot2_col, dot2_field)")
        self._packing, self._a_shape, self._w_shape = packing, a_shape, w_shape
        na, nw = lane_geometry(packing)
        self._pw = a_shape.width + w_shape.width + 1
        super().__init__({
            "a": In(data.ArrayLayout(a_shape, na)),
            "w": In(data.ArrayLayout(w_shape, nw)),
            "p": Out(data.ArrayLayout(signed(self._pw), na * nw)),
        })

    @property
    def packing(self) -> str:
        return self._packing

    def elaborate(self, platform):
        m = Module()
        a, w, p = self.a, self.w, self.p
        if self._packing == "none":
            m.d.comb += p[0].eq(a[0] * w[0])
        elif self._packing == "lut":
            m.d.comb += p[0].eq(shift_add_mul(a[0], w[0]))
        elif self._packing == "dsp2":
            # 27-bit packed weight (the DSP48E2 pre-adder: D = w1 << 18, A = w0), 18-bit activation.
            x = Signal(signed(27))
            y = Signal(signed(18))
            prod = Signal(signed(45))
            m.d.comb += [x.eq((w[1] << _DSP2_SPACING) + w[0]), y.eq(a[0]), prod.eq(x * y)]
            lo, hi = self._split(m, prod, _DSP2_SPACING, 1)
            m.d.comb += [p[0].eq(lo[0]), p[1].eq(hi)]
        else:  # dsp4
            x = Signal(signed(27))
            y = Signal(signed(18))
            prod = Signal(signed(45))
            m.d.comb += [
                x.eq((w[1] << _DSP4_W_SPACING) + w[0]),
                y.eq((a[1] << _DSP4_A_SPACING) + a[0]),
                prod.eq(x * y),
            ]
            fields, top = self._split(m, prod, _DSP4_A_SPACING, 3)
            # Offsets 0, 11, 22, 33 hold a0*w0, a1*w0, a0*w1, a1*w1; p[i * 2 + j] = a[i] * w[j].
            m.d.comb += [p[0].eq(fields[0]), p[2].eq(fields[1]), p[1].eq(fields[2]), p[3].eq(top)]
        return m

    @staticmethod
    def _split(m: Module, prod, spacing: int, n: int):
        """Split ``prod`` into ``n`` signed fields of ``spacing`` bits and the signed rest."""
        fields = []
        rest = prod
        for i in range(n):
            f = Signal(signed(spacing), name=f"field{i}")
            r = Signal(signed(len(prod) - spacing * (i + 1) + 1), name=f"rest{i}")
            m.d.comb += [f.eq(rest[:spacing]), r.eq((rest >> spacing) + rest[spacing - 1])]
            fields.append(f)
            rest = r
        return fields, rest

"""Element-wise vector unit: GELU, requantization and residual add over ``lanes`` values a beat.

The operations are those of the integer-only ViT (:mod:`qsilicon.quant.nonlinear`,
:mod:`qsilicon.quant.models.int_vit`), bit for bit:

* ``OP_REQUANT``: ``y = requantize(b, M0, shift) -> int8``;
* ``OP_GELU``: ``y = requantize(-int_gelu(b), M0, shift) -> int8`` (the GELU output scale is
  negative, so the sign moves into the value, as the integer model does);
* ``OP_ADD``: ``y = sat16(a + requantize(b, M0, shift) -> int16)``, the residual add of a branch
  ``b`` into the int16 stream ``a``.

``requantize`` is :func:`qsilicon.quant.requantize` with zero point 0: round half up, arithmetic
shift, saturation.  The operation and its constants are configuration ports, static while a
tensor streams.  Five pipeline stages (a multiply or a shift each: the clock :mod:`qsilicon.hw.timing`
bounds) into an output FIFO of eight beats; the unit takes a beat only while the FIFO has room
for it and every beat in flight, so backpressure on ``o_y`` never stalls the stages.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from qsilicon.quant.intops import M0_BITS, SHIFT_MAX

__all__ = [
    "OP_ADD", "OP_GELU", "OP_REQUANT", "ElementwiseUnit", "requant_round", "saturate_expr",
    "vector_in_layout", "vector_out_layout",
]

OP_REQUANT, OP_GELU, OP_ADD = 0, 1, 2
_OUT_DEPTH = 8  # output FIFO: the four stages in flight and four more, so a stream without stalls never waits
_WIDE = 48  # |gelu| < 2**31 (the reference's requantization bound) times M0 < 2**16 fits


def requant_round(prod, shift):
    """``round_shift(v * m0, shift)`` of :func:`qsilicon.quant.requantize` (round half up, exact for
    ``shift = 0``) on the product ``prod = v * m0``, registered by the caller, as
    ``((2 prod >> shift) + 1) >> 1``, without saturation."""
    return (((prod << 1) >> shift) + 1) >> 1


def saturate_expr(v, bits: int):
    """``v`` clamped to the signed ``bits``-bit range."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return Mux(v < lo, lo, Mux(v > hi, hi, v))


def vector_in_layout(lanes: int) -> data.StructLayout:
    """``a``: int16 residual stream (``OP_ADD``), ``b``: int8 operand; ``last`` ends a row."""
    return data.StructLayout({"a": data.ArrayLayout(signed(16), lanes), "b": data.ArrayLayout(signed(8), lanes),
                              "last": 1})


def vector_out_layout(lanes: int) -> data.StructLayout:
    return data.StructLayout({"y": data.ArrayLayout(signed(16), lanes), "last": 1})


class ElementwiseUnit(wiring.Component):
    """``lanes`` element-wise lanes of :data:`OP_REQUANT`, :data:`OP_GELU` and :data:`OP_ADD`.

    Parameters
    ----------
    lanes : int
        Values per beat, 1 to 64.

    Members
    -------
    i_x : In(stream.Signature(vector_in_layout(lanes)))
    o_y : Out(stream.Signature(vector_out_layout(lanes)))
        int8 results (``OP_REQUANT``, ``OP_GELU``) sign-extended to 16 bits, or int16 (``OP_ADD``).
    op, m0, shift, gelu_b, gelu_one : In
        Configuration: the operation, the requantization multiplier and shift, and the GELU
        constants ``q_b`` and ``q_one`` of :class:`qsilicon.quant.GeluParams`.
    """

    def __init__(self, lanes: int) -> None:
        if not isinstance(lanes, int) or isinstance(lanes, bool) or not 1 <= lanes <= 64:
            raise ValueError(f"Lanes must be an integer from 1 to 64, not {lanes!r}")
        self._lanes = lanes
        super().__init__({
            "i_x": In(stream.Signature(vector_in_layout(lanes))),
            "o_y": Out(stream.Signature(vector_out_layout(lanes))),
            "op": In(2), "m0": In(unsigned(M0_BITS)), "shift": In(unsigned(SHIFT_MAX.bit_length())),
            "gelu_b": In(signed(24)), "gelu_one": In(signed(32)),
        })

    @property
    def lanes(self) -> int:
        return self._lanes

    def elaborate(self, platform):
        m = Module()
        L = self._lanes
        # Five stages, a multiply or a shift each (the ViT's clock: see qsilicon.hw.timing): 1 the
        # operands; 2 GELU's square (q_b + min(|b|, -q_b))^2 + q_one; 3 the value to requantize
        # (b, or -gelu(b) = -b * (erf + q_one)); 4 its product with M0; 5 round half up
        # ((2 v m0 >> s) + 1) >> 1, saturate, and the residual add, into an output FIFO.  The stages
        # never stall: a beat is taken only while the FIFO has room for it and every beat in
        # flight (`pending`), so o_y's ready reaches the FIFO and a counter, not the registers.
        lay = vector_out_layout(L)
        m.submodules.out_fifo = ofifo = fifo.SyncFIFOBuffered(width=lay.size, depth=_OUT_DEPTH)
        pending = Signal(range(_OUT_DEPTH + 1))
        take, sent = Signal(), Signal()
        v = [Signal(name=f"v{s}") for s in range(1, 5)]
        la = [Signal(name=f"l{s}") for s in range(1, 5)]
        a = [Signal(data.ArrayLayout(signed(16), L), name=f"a{s}") for s in range(1, 5)]
        b1 = Signal(data.ArrayLayout(signed(8), L))
        b2 = Signal(data.ArrayLayout(signed(8), L))
        out = Signal(lay)
        m.d.comb += [self.i_x.ready.eq(pending < _OUT_DEPTH), take.eq(self.i_x.valid & self.i_x.ready),
                     sent.eq(self.o_y.valid & self.o_y.ready),
                     self.o_y.valid.eq(ofifo.r_rdy), self.o_y.payload.eq(ofifo.r_data), ofifo.r_en.eq(self.o_y.ready),
                     ofifo.w_en.eq(v[3]), ofifo.w_data.eq(out), out.last.eq(la[3])]
        m.d.sync += [pending.eq(pending + take - sent), v[0].eq(take), la[0].eq(self.i_x.payload.last),
                     a[0].eq(self.i_x.payload.a), b1.eq(self.i_x.payload.b), b2.eq(b1),
                     *(v[s].eq(v[s - 1]) for s in range(1, 4)), *(la[s].eq(la[s - 1]) for s in range(1, 4)),
                     *(a[s].eq(a[s - 1]) for s in range(1, 4))]
        for i in range(L):
            # int_gelu: sign(b) * ((min(|b|, -q_b) + q_b)^2 + q_one), then b * (erf + q_one).
            mag = Mux(b1[i] < 0, -b1[i], b1[i])
            clipped = Mux(mag > -self.gelu_b, -self.gelu_b, mag)
            sq = (clipped + self.gelu_b) * (clipped + self.gelu_b) + self.gelu_one
            poly = Signal.like(sq, name=f"poly_{i}")
            erf = Mux(b2[i] < 0, -poly, Mux(b2[i] == 0, 0, poly))
            gelu = b2[i] * (erf + self.gelu_one)
            val = Signal(signed(_WIDE), name=f"val_{i}")
            prod = Signal.like(val * self.m0, name=f"prod_{i}")
            r = requant_round(prod, self.shift)
            r8, r16 = saturate_expr(r, 8), saturate_expr(r, 16)
            s16 = saturate_expr(a[3][i] + r16, 16)
            m.d.sync += [poly.eq(sq), val.eq(Mux(self.op == OP_GELU, -gelu, b2[i])), prod.eq(val * self.m0)]
            m.d.comb += out.y[i].eq(Mux(self.op == OP_ADD, s16, r8))
        return m

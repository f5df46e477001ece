"""An output-stationary array of multiply-accumulate PEs with a drain buffer."""

from __future__ import annotations

from amaranth import Array, Module, Mux, Shape, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from qsilicon.quant.intops import ACC_BITS

from .packed import DOT2_SHIFT, PackedMul, check_lane, dot2_col, dot2_field, dot2_row, lane_geometry, nibble_mul

__all__ = ["DRAINS", "MacArray", "acc_row_layout", "operand_layout"]

#: How finished tiles leave the array: ``"mux"`` (a rows-to-1 multiplexer) or ``"shift"`` (a shift register).
DRAINS = ("mux", "shift")


def operand_layout(rows: int, cols: int, a_shape: Shape, w_shape: Shape, pair: bool = False,
                   dot: bool = False) -> data.StructLayout:
    """One operand beat: a column of ``rows`` activations, a column of ``cols`` weights, and
    ``last`` on the final beat of a tile's reduction (and ``pair`` for arrays built with ``pair4``;
    for ``dot2`` arrays ``a1``, the activations of the next reduction step, and ``dot``: the
    weights are int4 pairs and the beat covers two steps)."""
    fields = {"a": data.ArrayLayout(a_shape, rows), "w": data.ArrayLayout(w_shape, cols), "last": 1}
    if pair:
        fields["pair"] = 1
    if dot:
        fields["a1"] = data.ArrayLayout(a_shape, rows)
        fields["dot"] = 1
    return data.StructLayout(fields)


def acc_row_layout(cols: int) -> data.StructLayout:
    """One row of a finished tile: ``cols`` int32 accumulators; ``last`` on the tile's last row."""
    return data.StructLayout({"data": data.ArrayLayout(signed(ACC_BITS), cols), "last": 1})


def _check_shape(name: str, shape: object) -> Shape:
    try:
        s = Shape.cast(shape)
    except TypeError:
        raise TypeError(f"{name} must be a shape, not {shape!r}") from None
    if not 2 <= s.width <= 16:
        raise ValueError(f"{name} width must be from 2 to 16 bits, not {s.width}")
    return s


class MacArray(wiring.Component):
    """``rows x cols`` MAC PEs; PE ``(r, c)`` accumulates ``a[r] * w[c]`` over a tile's beats.

    Activations are broadcast along rows and weights along columns; every accepted beat
    feeds all PEs in the same cycle, so a tile of K beats takes K cycles.  When a beat with
    ``last`` reaches the accumulators, the finished sums move into a drain buffer in the same
    cycle and the PEs start the next tile at once, while the buffer leaves a row per cycle on
    ``o_acc``.  The operand stream stalls only when a tile finishes before the
    previous one has left the drain buffer (tiles of ``rows`` beats or fewer, or output
    backpressure).  Accumulators are int32 and wrap, as the integer reference permits (it
    rejects results whose final value leaves int32).

    Latency: two register stages (operands, products) before accumulation.

    Products come from multiplier lanes (:class:`~qsilicon.hw.blocks.packed.PackedMul`): with
    ``packing="dsp2"`` one wide multiplication serves a PE pair along a row, with ``"dsp4"`` a 2x2
    block of PEs; ``"lut"`` builds shift-and-add multipliers; ``"none"`` leaves ``a * w`` to the
    synthesis tool.  ``"dot2"`` (int8 operands) gives every PE one 22 x 18-bit multiplication whose
    ports are packed per row and per column (:func:`~qsilicon.hw.blocks.packed.dot2_row`, ``dot2_col``): a
    beat with ``dot`` set carries two reduction steps (``a``, ``a1`` and an int4 weight pair per
    column) and each PE accumulates both products in that cycle.

    Parameters
    ----------
    rows, cols : int
        Array size (a multiple of the lane's share: even columns for ``dsp2``, even rows and
        columns for ``dsp4``).
    a_shape, w_shape : ShapeLike
        Operand shapes (signed or unsigned, 2 to 16 bits).
    packing : str
        One of :data:`~qsilicon.hw.blocks.packed.PACKINGS`.
    drain : str
        How the drain buffer delivers its rows (:data:`DRAINS`; the same rows in the same cycles
        either way).  ``"mux"``: the finished sums stay where they were loaded (the flip-flops'
        clock enable) and row ``i`` is read through a rows-to-1 multiplexer; ``"shift"``: the
        buffer shifts up a row per cycle and row 0 is read, which costs a 2-to-1 multiplexer in
        front of every drain bit (Yosys, xcup: about 61 against 45 LUTs a PE on an 8x8 dsp2
        array; the multiplexer's LUTs grow with ``rows / 2`` per output bit instead).
    pair4 : bool
        Precision-scalable PEs (:func:`~qsilicon.hw.blocks.packed.nibble_mul`: two 5-bit x 4-bit
        multipliers each; int8 x uint8 operands, packing ``none``): a beat with ``pair`` set takes
        each operand byte as two 4-bit halves and accumulates ``a[0:4] w[0:4] + a[4:8] w[4:8]``
        (signed 4-bit x unsigned 4-bit), two MACs per PE in one cycle; any other beat is an int8 x
        uint8 product over two cycles (the operand stream is not ready in the first).

    Members
    -------
    i_op : In(stream.Signature(operand_layout(...)))
        Operand beats.
    o_acc : Out(stream.Signature(acc_row_layout(cols)))
        Finished tiles, row 0 first, ``rows`` beats per tile.
    """

    def __init__(self, rows: int, cols: int, a_shape, w_shape, packing: str = "none", pair4: bool = False,
                 drain: str = "mux") -> None:
        for name, v in (("Rows", rows), ("Cols", cols)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        self._rows, self._cols = rows, cols
        self._a_shape = _check_shape("Activation shape", a_shape)
        self._w_shape = _check_shape("Weight shape", w_shape)
        check_lane(packing, self._a_shape, self._w_shape)
        na, nw = lane_geometry(packing)
        if rows % na or cols % nw:
            raise ValueError(f"{packing} packing needs rows divisible by {na} and cols by {nw}, "
                             f"not {rows}x{cols}")
        if pair4 and (packing != "none" or self._a_shape != signed(8) or self._w_shape != Shape(8, False)):
            raise ValueError("pair4 PEs take signed 8-bit x unsigned 8-bit operands with packing none, "
                             f"not {self._a_shape} x {self._w_shape} with packing {packing}")
        if drain not in DRAINS:
            raise ValueError(f"drain must be one of {', '.join(DRAINS)}, not {drain!r}")
        self._packing, self._pair4, self._drain = packing, bool(pair4), drain
        self._dot = packing == "dot2"
        super().__init__({
            "i_op": In(stream.Signature(operand_layout(rows, cols, self._a_shape, self._w_shape, self._pair4,
                                                       self._dot))),
            "o_acc": Out(stream.Signature(acc_row_layout(cols))),
        })

    @property
    def rows(self) -> int:
        return self._rows

    @property
    def cols(self) -> int:
        return self._cols

    @property
    def packing(self) -> str:
        return self._packing

    @property
    def pair4(self) -> bool:
        return self._pair4

    @property
    def drain(self) -> str:
        return self._drain

    def elaborate(self, platform):
        m = Module()
        R, C = self._rows, self._cols
        acc_shape = signed(ACC_BITS)

        # Stage 0: operand registers.  Stage 1: product registers (maps onto DSP pipelines).
        v0, l0, pair0 = Signal(name="v0"), Signal(name="l0"), Signal(name="pair0")
        phase = Signal(name="phase")  # pair4: second cycle of an int8 beat
        a0 = Signal(data.ArrayLayout(self._a_shape, R))
        w0 = Signal(data.ArrayLayout(self._w_shape, C))
        v1, l1 = Signal(name="v1"), Signal(name="l1")
        prod = [[Signal(signed(self._a_shape.width + self._w_shape.width + 1), name=f"p_{r}_{c}")
                 for c in range(C)] for r in range(R)]
        acc = [[Signal(acc_shape, name=f"acc_{r}_{c}") for c in range(C)] for r in range(R)]
        fresh = Signal(init=1)  # next accumulated beat starts a new tile

        drain = [Signal(data.ArrayLayout(acc_shape, C), name=f"drain_{r}") for r in range(R)]
        drain_full = Signal()
        drain_row = Signal(range(R))

        na, nw = lane_geometry(self._packing)
        lane_products = []
        if self._dot:
            # Stage 0 holds the packed ports (formed per row and per column); stage 1 the product's
            # field and the borrow bit; the field is read in the accumulate.
            s = DOT2_SHIFT
            x0 = [Signal(signed(22), name=f"x0_{r}") for r in range(R)]
            y0 = [Signal(signed(18), name=f"y0_{c}") for c in range(C)]
            dot0, dot1 = Signal(name="dot0"), Signal(name="dot1")
            pay = self.i_op.payload
            load_dot = [dot0.eq(pay.dot), dot1.eq(dot0)]
            load_dot += [x0[r].eq(dot2_row(pay.a[r], pay.a1[r], pay.dot)) for r in range(R)]
            load_dot += [y0[c].eq(dot2_col(pay.w[c], pay.dot)) for c in range(C)]
            prod = [[Signal(18, name=f"q_{r}_{c}") for c in range(C)] for r in range(R)]
            lane_products = [(r, c, (x0[r] * y0[c])[s - 1 : s + 17]) for r in range(R) for c in range(C)]
        elif self._pair4:
            lane_products = [(r, c, nibble_mul(a0[r], w0[c], pair0, phase)) for r in range(R) for c in range(C)]
        else:
            for r0 in range(0, R, na):
                for c0 in range(0, C, nw):
                    lane = PackedMul(self._packing, self._a_shape, self._w_shape)
                    m.submodules[f"lane_{r0}_{c0}"] = lane
                    m.d.comb += [lane.a[i].eq(a0[r0 + i]) for i in range(na)]
                    m.d.comb += [lane.w[j].eq(w0[c0 + j]) for j in range(nw)]
                    lane_products += [(r0 + i, c0 + j, lane.p[i * nw + j]) for i in range(na) for j in range(nw)]

        stall = Signal()
        m.d.comb += stall.eq(v1 & l1 & drain_full)
        if self._dot:
            load = [v0.eq(self.i_op.valid), l0.eq(self.i_op.payload.last), v1.eq(v0), l1.eq(l0)]
        else:
            load = [
                v0.eq(self.i_op.valid),
                l0.eq(self.i_op.payload.last),
                a0.eq(self.i_op.payload.a),
                w0.eq(self.i_op.payload.w),
                v1.eq(v0),
                l1.eq(l0),
            ]
        if self._pair4:  # an int8 beat stays in stage 0 for its second (high-nibble) cycle
            hold = Signal()
            m.d.comb += [hold.eq(v0 & ~pair0 & ~phase), self.i_op.ready.eq(~stall & ~hold)]
            with m.If(~stall & hold):
                m.d.sync += [phase.eq(1), v1.eq(1), l1.eq(0)]
            with m.Elif(~stall):
                m.d.sync += [*load, pair0.eq(self.i_op.payload.pair), phase.eq(0)]
        else:
            m.d.comb += self.i_op.ready.eq(~stall)
        with m.If(~stall):
            if self._dot:
                m.d.sync += load_dot
            if not self._pair4:
                m.d.sync += load
            for r, c, value in lane_products:
                m.d.sync += prod[r][c].eq(value)
            with m.If(v1):
                m.d.sync += fresh.eq(l1)
                # The sum is one expression (no combinational signal): Icarus never evaluates a
                # combinational block whose inputs keep their initial values.  The accumulator is
                # zeroed in front of the adder, not selected after it: the mux folds into the adder's
                # LUTs (Yosys, xcup, an 8x8 int8 array: about 60 instead of 92 LUTs a PE).
                if self._dot:  # q = prod[1:18], the borrow prod[0] enters as the adder's carry
                    sums = [[dot2_field(Mux(fresh, 0, acc[r][c]), prod[r][c][1:], prod[r][c][0], dot1)
                             for c in range(C)] for r in range(R)]
                else:
                    sums = [[Mux(fresh, 0, acc[r][c]) + prod[r][c] for c in range(C)] for r in range(R)]
                with m.If(l1):
                    m.d.sync += drain_full.eq(1)
                    for r in range(R):
                        for c in range(C):
                            m.d.sync += drain[r][c].eq(sums[r][c])
                with m.Else():
                    for r in range(R):
                        for c in range(C):
                            m.d.sync += acc[r][c].eq(sums[r][c])

        # Drain: row 0 first, read through a multiplexer or shifted out of the buffer.
        if self._drain == "mux":
            # padded to a power of two (row R - 1 repeated; drain_row never gets there), so that the
            # multiplexer's case statement covers every index (Verilator's CASEINCOMPLETE)
            rows_in = [row.as_value() for row in drain] + [drain[-1].as_value()] * ((1 << (R - 1).bit_length()) - R)
            head = Array(rows_in)[drain_row] if R > 1 else drain[0].as_value()
        else:
            head = drain[0].as_value()
        m.d.comb += [
            self.o_acc.valid.eq(drain_full),
            self.o_acc.payload.data.eq(head),
            self.o_acc.payload.last.eq(drain_row == R - 1),
        ]
        with m.If(self.o_acc.valid & self.o_acc.ready):
            if self._drain == "shift":
                for r in range(R - 1):
                    m.d.sync += drain[r].eq(drain[r + 1])
            with m.If(drain_row == R - 1):
                m.d.sync += [drain_row.eq(0), drain_full.eq(0)]
            with m.Else():
                m.d.sync += drain_row.eq(drain_row + 1)
        return m

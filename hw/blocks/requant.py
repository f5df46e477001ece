"""Per-channel requantization of accumulator rows (the ``requantize`` of ``qsilicon.quant``)."""

from __future__ import annotations

from amaranth import Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from qsilicon.hw.config import REQUANT_STAGES
from qsilicon.quant.intops import ACC_BITS, M0_BITS, SHIFT_MAX

from .mac_array import acc_row_layout

__all__ = ["Requantizer", "requant_params_layout", "result_row_layout"]

SHIFT_BITS = SHIFT_MAX.bit_length()
#: The rounding increment of the last stage (1: round half up, as ``quant/`` defines).  Nothing
#: changes it but the regression's planted-bug test, which builds a mutant with 0 and checks that
#: the regression fails it.
ROUND_INCREMENT = 1


def requant_params_layout(cols: int, out_shape: Shape) -> data.ArrayLayout:
    """Per-tile parameters, one entry per column: bias (zero point folded in), ``M0``,
    ``shift`` and output zero point."""
    return data.ArrayLayout(data.StructLayout({
        "bias": signed(ACC_BITS),
        "m0": unsigned(M0_BITS),
        "shift": unsigned(SHIFT_BITS),
        "zp": out_shape,
    }), cols)


def result_row_layout(cols: int, out_shape: Shape) -> data.StructLayout:
    """One row of requantized outputs; ``last`` on the tile's last row."""
    return data.StructLayout({"data": data.ArrayLayout(out_shape, cols), "last": 1})


class Requantizer(wiring.Component):
    """Requantizes rows of ``cols`` accumulators with per-column parameters.

    For each column: ``y = clamp(((acc + bias) * M0 + 2**(shift-1)) >> shift) + zp)``, with the
    sum wrapping at 32 bits and the rounding term 0 for ``shift = 0``: exactly
    :func:`qsilicon.quant.requantize`.  One parameter beat is taken per tile (before its first
    row) and used until the row marked ``last``.  Three pipeline stages (bias add, multiply,
    round/shift/saturate); four with ``stages=4`` (the shift registered apart from the rounding
    add and the saturation, which then compares the shifted product with bounds formed from the
    zero point: one carry chain on the path instead of three in a row); five with ``stages=5``
    (the 32 x 16-bit product also split into two registered 16-bit partial products and their
    sum).  The deeper forms are for slow fabrics (ECP5) and standard cells.  One row per cycle;
    backpressure from ``o_res`` stalls the pipeline.

    Parameters
    ----------
    cols : int
        Lanes.
    out_shape : ShapeLike
        Output format (its signedness and width define the saturation bounds).
    stages : int
        Pipeline stages, 3, 4 or 5 (:data:`~qsilicon.hw.config.REQUANT_STAGES`).

    Members
    -------
    i_acc : In(stream.Signature(acc_row_layout(cols)))
    i_par : In(stream.Signature(requant_params_layout(cols, out_shape)))
    o_res : Out(stream.Signature(result_row_layout(cols, out_shape)))
    """

    def __init__(self, cols: int, out_shape, stages: int = 3) -> None:
        if not isinstance(cols, int) or isinstance(cols, bool) or cols < 1:
            raise ValueError(f"Cols must be a positive integer, not {cols!r}")
        if stages not in REQUANT_STAGES:
            raise ValueError(f"A requantizer has 3, 4 or 5 stages, not {stages!r}")
        self._stages = stages
        self._cols = cols
        self._out_shape = Shape.cast(out_shape)
        if not 2 <= self._out_shape.width <= 16:
            raise ValueError(f"Output width must be from 2 to 16 bits, not {self._out_shape.width}")
        super().__init__({
            "i_acc": In(stream.Signature(acc_row_layout(cols))),
            "i_par": In(stream.Signature(requant_params_layout(cols, self._out_shape))),
            "o_res": Out(stream.Signature(result_row_layout(cols, self._out_shape))),
        })

    @property
    def cols(self) -> int:
        return self._cols

    @property
    def stages(self) -> int:
        return self._stages

    def elaborate(self, platform):
        m = Module()
        C, osh = self._cols, self._out_shape
        qmin = -(1 << (osh.width - 1)) if osh.signed else 0
        qmax = (1 << (osh.width - 1)) - 1 if osh.signed else (1 << osh.width) - 1
        par_layout = requant_params_layout(C, osh)

        par = Signal(par_layout)
        par_valid = Signal()

        en = Signal()  # the whole pipeline advances
        m.d.comb += en.eq(~self.o_res.valid | self.o_res.ready)

        m.d.comb += self.i_par.ready.eq(~par_valid)
        with m.If(self.i_par.valid & self.i_par.ready):
            m.d.sync += [par.eq(self.i_par.payload), par_valid.eq(1)]

        take = Signal()
        m.d.comb += [
            self.i_acc.ready.eq(en & par_valid),
            take.eq(self.i_acc.valid & self.i_acc.ready),
        ]
        with m.If(take & self.i_acc.payload.last):
            m.d.sync += par_valid.eq(0)

        if self._stages > 3:
            with m.If(en):
                self._deep(m, take, par, qmin, qmax)
            return m

        # Stage A: acc + bias (wrapping int32), parameters travel with the row.
        va, la = Signal(name="va"), Signal(name="la")
        sa = [Signal(signed(ACC_BITS), name=f"sum_{c}") for c in range(C)]
        pa = Signal(par_layout)
        # Stage B: product.
        vb, lb = Signal(name="vb"), Signal(name="lb")
        pb = [Signal(signed(ACC_BITS + M0_BITS + 1), name=f"prod_{c}") for c in range(C)]
        shb = [Signal(unsigned(SHIFT_BITS), name=f"shift_{c}") for c in range(C)]
        zpb = [Signal(osh, name=f"zp_{c}") for c in range(C)]

        with m.If(en):
            m.d.sync += [va.eq(take), la.eq(self.i_acc.payload.last), pa.eq(par),
                         vb.eq(va), lb.eq(la), self.o_res.valid.eq(vb), self.o_res.payload.last.eq(lb)]
            for c in range(C):
                m.d.sync += [
                    sa[c].eq(self.i_acc.payload.data[c] + par[c].bias),
                    pb[c].eq(sa[c] * pa[c].m0),
                    shb[c].eq(pa[c].shift),
                    zpb[c].eq(pa[c].zp),
                ]
                # Stage C: round half up, arithmetic shift, zero point, saturate.  Round half
                # up of p / 2**s is ((p >> (s - 1)) + 1) >> 1 for s >= 1, computed as
                # (((2 * p) >> s) + 1) >> 1, which is also exact for s = 0.  Written as one
                # expression: no combinational signals whose inputs may never change (Icarus
                # never evaluates those and leaves them X).
                y = ((((pb[c] << 1) >> shb[c]) + ROUND_INCREMENT) >> 1) + zpb[c]
                m.d.sync += self.o_res.payload.data[c].eq(Mux(y < qmin, qmin, Mux(y > qmax, qmax, y)))
        return m

    def _deep(self, m, take, par, qmin, qmax) -> None:
        """The 4- and 5-stage requantizers, inside ``m.If(en)``.

        A: ``acc + bias``.  B: the product; with 5 stages B is two 16-bit partial products (the
        sum's low half, unsigned, and its high half, signed, each times ``M0``: a hardware
        multiplier each) and B2 their sum.  C: ``t = (2 p) >> shift``, and from the zero point
        ``k = 2 zp + 1`` and the bounds below.  D: ``y = (t + k) >> 1`` (the zero point, a whole
        number, added inside the rounding); ``y > qmax`` exactly when ``t > 2 qmax + 1 - k`` and
        ``y < qmin`` exactly when ``t < 2 qmin - k``, so D compares ``t`` with the bounds beside
        the add, of which an unsaturated result needs only the low ``width + 1`` bits."""
        C, osh = self._cols, self._out_shape
        w, half = osh.width, ACC_BITS // 2
        par_layout = requant_params_layout(C, osh)
        va, la, pa = Signal(name="va"), Signal(name="la"), Signal(par_layout)
        sa = [Signal(signed(ACC_BITS), name=f"sum_{c}") for c in range(C)]
        m.d.sync += [va.eq(take), la.eq(self.i_acc.payload.last), pa.eq(par)]
        m.d.sync += [sa[c].eq(self.i_acc.payload.data[c] + par[c].bias) for c in range(C)]
        v, last = va, la
        shift = [pa[c].shift for c in range(C)]
        zp = [pa[c].zp for c in range(C)]

        def travel(tag):  # the row's valid, last, shift and zero point, one stage on
            nonlocal v, last, shift, zp
            nv, nl = Signal(name=f"v{tag}"), Signal(name=f"l{tag}")
            ns = [Signal(unsigned(SHIFT_BITS), name=f"shift{tag}_{c}") for c in range(C)]
            nz = [Signal(osh, name=f"zp{tag}_{c}") for c in range(C)]
            m.d.sync += [nv.eq(v), nl.eq(last), *(a.eq(b) for a, b in zip(ns + nz, shift + zp, strict=True))]
            v, last, shift, zp = nv, nl, ns, nz

        pb = [Signal(signed(ACC_BITS + M0_BITS + 1), name=f"prod_{c}") for c in range(C)]
        if self._stages == 5:
            lo_p = [Signal(unsigned(half + M0_BITS), name=f"plo_{c}") for c in range(C)]
            hi_p = [Signal(signed(half + M0_BITS + 1), name=f"phi_{c}") for c in range(C)]
            m.d.sync += [lo_p[c].eq(sa[c][:half] * pa[c].m0) for c in range(C)]
            m.d.sync += [hi_p[c].eq(sa[c][half:].as_signed() * pa[c].m0) for c in range(C)]
            travel("b")
            m.d.sync += [pb[c].eq((hi_p[c] << half) + lo_p[c]) for c in range(C)]
            travel("b2")
        else:
            m.d.sync += [pb[c].eq(sa[c] * pa[c].m0) for c in range(C)]
            travel("b")
        t = [Signal(signed(ACC_BITS + M0_BITS + 2), name=f"t_{c}") for c in range(C)]
        k = [Signal(signed(w + 3), name=f"k_{c}") for c in range(C)]
        hi = [Signal(signed(w + 4), name=f"hi_{c}") for c in range(C)]
        lo = [Signal(signed(w + 4), name=f"lo_{c}") for c in range(C)]
        for c in range(C):
            kk = (zp[c] << 1) + ROUND_INCREMENT
            m.d.sync += [t[c].eq((pb[c] << 1) >> shift[c]), k[c].eq(kk), hi[c].eq(2 * qmax + 1 - kk),
                         lo[c].eq(2 * qmin - kk)]
        travel("c")
        m.d.sync += [self.o_res.valid.eq(v), self.o_res.payload.last.eq(last)]
        for c in range(C):
            y = (t[c][: w + 1] + k[c][: w + 1])[1 : w + 1]
            m.d.sync += self.o_res.payload.data[c].eq(Mux(t[c] > hi[c], qmax, Mux(t[c] < lo[c], qmin, y)))

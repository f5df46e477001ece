"""Row operations of the vector unit: integer LayerNorm and Shiftmax over ``lanes`` rows at once.

A beat carries element ``j`` of ``lanes`` different rows (one row per lane: the token-blocked
layout of :mod:`qsilicon.hw.vit`, where a token tile stores feature ``j`` of its ``lanes`` tokens
together).  Every lane runs the same sequence, so one state machine drives all lanes:

* LayerNorm (:func:`qsilicon.quant.int_layernorm`, then requantization to int8 as the integer
  ViT does): pass 1 sums the row; a divider gives ``mean = floor(sum * 2**f / n)``; pass 2 sums
  ``(x * 2**f - mean)^2``; the divider gives the variance, a bit-serial square root ``std``, the
  divider again the normalized reciprocal (:func:`qsilicon.quant.int_reciprocal`); pass 3 emits
  ``requantize(((d * inv) >> (sh - f)) * gamma >> f + beta)`` with ``gamma, beta`` from ``i_par``.
* Shiftmax (:func:`qsilicon.quant.int_shiftmax`): pass 1 finds the row maximum; pass 2 sums
  ``int_shift_exp(x - max)``; the divider gives the reciprocal of the sum; pass 3 emits
  ``min((e * inv) >> (sh - out_bits), 2**out_bits - 1)``.

The row is streamed three times (the host's address generator re-reads it), so the unit keeps
only per-lane scalars; or, on a unit built with a row buffer (``buf_depth``) and with ``buffered``
high, once: pass 1 writes the ``lanes`` rows into the buffer (one block RAM word of ``16 * lanes``
bits per element) and passes 2 and 3 read them from there, an element a cycle.  A LayerNorm row
of int16 values, two memory words a beat, then costs two memory words per element instead of
six.  A buffered unit is two stages over two banks of ``buf_depth`` elements: pass 1 of the next
rows (stage A: sum, maximum, bank write) runs while the divider and passes 2 and 3 of the
current rows (stage B) read the other bank, so rows arrive as fast as memory sends them while
stage B keeps up.  Streamed rows on such a unit run one after another, as on a unit without a
buffer.  The divider is restoring, one quotient bit per cycle, and iterates only over the
quotient bits its operands' ranges allow (:func:`_quotient_bits`: 24, 48 and 17 cycles for the
mean, the variance and the reciprocal with 8 fractional bits, each after a cycle that loads it
from the dividend registered the cycle before); the square root gives one result bit per cycle
(24 cycles).  Passes 2 and 3 are pipelines with one
multiply, shift or add per stage, so that no register-to-register path holds more than one
multiplier or about fifteen LUTs (the clock :mod:`qsilicon.hw.timing` bounds): pass 2 reaches
its sums three cycles after its last element, pass 3 writes an output into a FIFO of eight six
cycles after taking its element, and takes one only while the FIFO has room for it and every
element in flight, so the pipelines never stall (``o_y``'s ready reaches the FIFO and a counter,
not the stage registers).  The unit takes the next rows' divider only when pass 3 has drained.
Configuration ports are static while rows stream; the unit starts each row in pass 1 by itself.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from qsilicon.quant.intops import M0_BITS, SHIFT_MAX
from qsilicon.quant.nonlinear import RECIP_BITS

from .vector import requant_round, saturate_expr

__all__ = ["ROW_LN", "ROW_SOFTMAX", "RowUnit", "ln_param_layout"]

ROW_LN, ROW_SOFTMAX = 0, 1
_DIV_BITS = 64
_OUT_DEPTH = 8  # output FIFO: pass 3's six stages in flight and two more, so a stream without stalls never waits
_MAX_N_BITS = 12  # rows of up to 4095 elements: sum((x * 2**f - mean)^2) < 2**64 for int16 inputs


def ln_param_layout() -> data.StructLayout:
    """LayerNorm's per-element parameters, ``gamma`` and ``beta`` in units of ``2**-frac_bits``."""
    return data.StructLayout({"gamma": signed(16), "beta": signed(16)})


def _quotient_bits(frac_bits: int) -> tuple[int, int, int]:
    """The quotient bits each division can produce (mean, variance, reciprocal), from the
    operands' ranges: the divider iterates that many times, not :data:`_DIV_BITS`.

    * mean: ``|sum(x) * 2**f| <= n * 2**(15 + f)`` for int16 ``x`` (plus ``n - 1``, the floor of a
      negative sum), so ``mean < 2**(16 + f)``;
    * variance: ``|x * 2**f - mean| < 2**(16 + f)`` (the mean lies within the row's range), so
      every square, and their mean, is below ``2**(32 + 2 f)``; its square root has ``16 + f``
      bits;
    * reciprocal: ``2**s / v`` with ``s = bit_length(v) + RECIP_BITS - 1`` is at most
      ``2**RECIP_BITS``.

    In each case the dividend is below ``divisor * 2**q``, so starting the restoring division with
    the dividend's top bits in the remainder skips only iterations that yield zero bits: the same
    quotient (with the cycle that loads the divider, LayerNorm takes 108 cycles a token block fewer
    than three 64-bit divisions and a 32-bit root, Shiftmax 46)."""
    return 16 + frac_bits, 32 + 2 * frac_bits, RECIP_BITS + 1


def _bit_length(v, width: int):
    bl = Const(0, 7)
    for i in range(width):
        bl = Mux(v[i], i + 1, bl)
    return bl


class RowUnit(wiring.Component):
    """``lanes`` rows of LayerNorm or Shiftmax.

    Parameters
    ----------
    lanes : int
        Rows processed together, 1 to 64.
    frac_bits : int
        LayerNorm's fractional bits (the integer ViT uses 8).
    out_bits : int
        Shiftmax output bits (the integer ViT uses 7).
    buf_depth : int
        0 (no row buffer) or the longest row the buffer holds, a power of two from 64 to 4096.

    Members
    -------
    i_x : In(stream.Signature(ArrayLayout(signed(16), lanes)))
        Element ``j`` of each lane's row; the row is sent three times (once with ``buffered``).
    i_par : In(stream.Signature(ln_param_layout()))
        LayerNorm only: ``gamma_j, beta_j`` for each element of pass 3.
    o_y : Out(stream.Signature(ArrayLayout(signed(8), lanes)))
        int8 LayerNorm outputs or unsigned ``out_bits`` probabilities.
    op, n : In
        :data:`ROW_LN` or :data:`ROW_SOFTMAX`; the row length (1 to 4095).
    m0, shift : In
        LayerNorm output requantization (from units of ``2**-frac_bits`` to the int8 scale).
    k, q_b, q_c : In
        Shiftmax constants (:class:`qsilicon.quant.ShiftmaxParams`).
    busy : Out(1)
        High from the first beat of a row until its last output has left ``o_y``.
    buffered : In(1)
        Only with a row buffer: the rows are sent once (``n`` at most ``buf_depth``); static while
        rows stream.
    step : Out(1)
        Only with a row buffer: passes 2 and 3 are reading the buffer (high while they ask for an
        element, also in the cycle before the first arrives): progress that no stream shows.
    """

    def __init__(self, lanes: int, *, frac_bits: int = 8, out_bits: int = 7, buf_depth: int = 0) -> None:
        if not isinstance(lanes, int) or isinstance(lanes, bool) or not 1 <= lanes <= 64:
            raise ValueError(f"Lanes must be an integer from 1 to 64, not {lanes!r}")
        if not 0 <= frac_bits <= 16:
            raise ValueError(f"Fractional bits must be from 0 to 16, not {frac_bits!r}")
        if not 2 <= out_bits <= 8:
            raise ValueError(f"Shiftmax output bits must be from 2 to 8 on the row unit, not {out_bits!r}")
        if isinstance(buf_depth, bool) or not isinstance(buf_depth, int) or (
                buf_depth and not (64 <= buf_depth <= 4096 and buf_depth & (buf_depth - 1) == 0)):
            raise ValueError(f"Row buffer depth must be 0 or a power of two from 64 to 4096, not {buf_depth!r}")
        self._lanes, self._f, self._ob, self._depth = lanes, frac_bits, out_bits, buf_depth
        self._qbits = _quotient_bits(frac_bits)
        extra = {"buffered": In(1), "step": Out(1)} if buf_depth else {}
        super().__init__({
            "i_x": In(stream.Signature(data.ArrayLayout(signed(16), lanes))),
            "i_par": In(stream.Signature(ln_param_layout())),
            "o_y": Out(stream.Signature(data.ArrayLayout(signed(8), lanes))),
            "op": In(1), "n": In(_MAX_N_BITS),
            "m0": In(unsigned(M0_BITS)), "shift": In(unsigned(SHIFT_MAX.bit_length())),
            "k": In(3), "q_b": In(signed(16)), "q_c": In(unsigned(24)),
            "busy": Out(1), **extra,
        })

    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def buf_depth(self) -> int:
        return self._depth

    def elaborate(self, platform):
        m = Module()
        L, f, ob = self._lanes, self._f, self._ob
        ln = self.op == ROW_LN
        x, x_valid = self.i_x.payload, self.i_x.valid
        D = self._depth
        if D:
            # two banks: stage A writes bank `wbank` while stage B reads bank `rbank`.  Passes 2 and 3
            # of buffered rows read the buffer: `bv` says the read port holds element `ra - 1`; the
            # port reads ahead while its word is free or being taken
            ab = D.bit_length() - 1
            m.submodules.rowbuf = buf = Memory(shape=unsigned(16 * L), depth=2 * D, init=[])
            wp, rp = buf.write_port(), buf.read_port(transparent_for=())
            from_buf, taken, b_ready = Signal(), Signal(), Signal()
            bv, ra = Signal(), Signal(range(D + 1))
            wbank, rbank = Signal(), Signal()
            x = Signal(data.ArrayLayout(signed(16), L))
            x_valid = Mux(from_buf, bv, self.i_x.valid)
            m.d.comb += [x.as_value().eq(Mux(from_buf, rp.data, self.i_x.payload.as_value())),
                         rp.addr.eq(Cat(ra[:ab], rbank)), rp.en.eq(~bv | taken), self.step.eq(taken)]
            with m.If(from_buf & rp.en):
                m.d.sync += [bv.eq(ra < self.n), ra.eq(Mux(ra < self.n, ra + 1, ra))]

        def take_x(cond):
            """Take element `cnt` of the rows: from the stream or, buffered, from the read port."""
            if not D:
                return [self.i_x.ready.eq(cond)]
            return [b_ready.eq(cond & ~from_buf), taken.eq(cond & from_buf)]

        def rows_end():
            """The last element of a pass: the read port starts again at element 0."""
            return [ra.eq(0), bv.eq(0)] if D else []

        cnt = Signal(_MAX_N_BITS)
        it = Signal(7)
        phase = Signal(2)  # what the divider computes: 0 mean, 1 variance, 2 reciprocal
        acc = [Signal(signed(66), name=f"acc{i}") for i in range(L)]
        mean = [Signal(signed(34), name=f"mean{i}") for i in range(L)]
        mx = [Signal(signed(16), name=f"max{i}", init=-(1 << 15)) for i in range(L)]
        inv = [Signal(unsigned(RECIP_BITS + 1), name=f"inv{i}") for i in range(L)]
        sh = [Signal(unsigned(7), name=f"sh{i}") for i in range(L)]
        neg = [Signal(name=f"neg{i}") for i in range(L)]
        dvd = [Signal(unsigned(_DIV_BITS), name=f"dvd{i}") for i in range(L)]
        dvs = [Signal(unsigned(41), name=f"dvs{i}") for i in range(L)]
        rem = [Signal(unsigned(42), name=f"rem{i}") for i in range(L)]
        quo = [Signal(unsigned(_DIV_BITS), name=f"quo{i}") for i in range(L)]
        root = [Signal(unsigned(64), name=f"root{i}") for i in range(L)]
        bit = Signal(unsigned(64))

        def exp_front(i):
            """int_shift_exp(x - max) up to its square: ``(t, z)`` with the result
            ``exp_square(t) >> min(z, 31)``."""
            nq = (mx[i] - x[i]).as_unsigned()[:9]  # -(x - max), 0..255 for int8 rows
            z = nq >> self.k
            r = (z << self.k)[:9].as_signed() - nq.as_signed()  # in (-2**k, 0]
            return r + self.q_b, Mux(z > 31, 31, z)[:5]

        def exp_square(t):
            return (t * t + self.q_c).as_unsigned()[:40]

        def reg(name, v):
            """A pipeline register as wide as ``v`` (so no stage changes a bit of the arithmetic)."""
            return Signal.like(v, name=name)

        def piped(name, v):
            """``v`` registered every cycle (pass 3's stages, which never stall)."""
            r = reg(name, v)
            m.d.sync += r.eq(v)
            return r

        def start_div(i, dividend, divisor, nxt):
            """Divide (``nxt``: 0 mean, 1 variance, 2 reciprocal): the dividend waits in ``quo`` for
            DIV_LOAD, which loads the divider (no operand arithmetic in front of its registers)."""
            return [quo[i].eq(dividend[:_DIV_BITS]), dvs[i].eq(divisor), phase.eq(nxt)]

        def recip_setup(i, v):
            s = _bit_length(v, 41) + (RECIP_BITS - 1)
            return [sh[i].eq(s), *start_div(i, Const(1, _DIV_BITS) << s, v, 2)]

        # Passes 2 and 3 are pipelines (a multiply or a shift per stage): pass 2 into `acc`, pass 3
        # into an output FIFO.  Neither ever stalls: pass 3 takes an element only while the FIFO has
        # room for it and for every element in flight (`pending` counts them until they leave o_y),
        # so o_y's ready drives the FIFO's read and a counter, not the pipeline's registers.  P2_END
        # and P3_END wait for the pipelines to drain.
        take2, take3 = Signal(), Signal()
        v2 = [Signal(name=f"p2_v{s}") for s in range(2)]
        v3 = [Signal(name=f"p3_v{s}") for s in range(6)]
        p2_busy, p3_busy = Signal(), Signal()
        m.submodules.out_fifo = ofifo = fifo.SyncFIFOBuffered(width=8 * L, depth=_OUT_DEPTH)
        pending = Signal(range(_OUT_DEPTH + 1))
        room = Signal()
        m.d.comb += [p2_busy.eq(Cat(*v2).any()), p3_busy.eq(Cat(*v3).any()), room.eq(pending < _OUT_DEPTH),
                     self.o_y.valid.eq(ofifo.r_rdy), self.o_y.payload.as_value().eq(ofifo.r_data),
                     ofifo.r_en.eq(self.o_y.ready), ofifo.w_en.eq(v3[5])]
        m.d.sync += [v2[0].eq(take2), v2[1].eq(v2[0]), v3[0].eq(take3), *(v3[s].eq(v3[s - 1]) for s in range(1, 6)),
                     pending.eq(pending + take3 - (self.o_y.valid & self.o_y.ready))]
        if not D:  # rows in flight, or outputs not yet sent
            busy_r = Signal()
            m.d.comb += self.busy.eq(busy_r | (pending != 0))
        # gamma and beta are one pair an element, the same for every lane
        g, b = self.i_par.payload.gamma, self.i_par.payload.beta
        gs = [Signal.like(g, name=f"p3_g{s}") for s in range(1, 4)]
        bs = [Signal.like(b, name=f"p3_b{s}") for s in range(1, 5)]
        m.d.sync += [gs[0].eq(g), *(gs[s].eq(gs[s - 1]) for s in range(1, 3)),
                     bs[0].eq(b), *(bs[s].eq(bs[s - 1]) for s in range(1, 4))]
        for i in range(L):
            d = (x[i] << f) - mean[i]
            t, z = exp_front(i)
            # pass 2: d (or t, z); d * d (or t * t + q_c); acc += d^2 (or the shifted square)
            d1, t1, z1 = reg(f"p2_d{i}", d), reg(f"p2_t{i}", t), reg(f"p2_z{i}", z)
            q2 = reg(f"p2_q{i}", Mux(ln, d1 * d1, exp_square(t1)))
            z2 = reg(f"p2_zz{i}", z1)
            with m.If(take2):
                m.d.sync += [d1.eq(d), t1.eq(t), z1.eq(z)]
            with m.If(v2[0]):
                m.d.sync += [q2.eq(Mux(ln, d1 * d1, exp_square(t1))), z2.eq(z1)]
            with m.If(v2[1]):
                m.d.sync += acc[i].eq(acc[i] + Mux(ln, q2, q2 >> z2))
            # pass 3, LayerNorm: d; d * inv; >> (sh - f); * gamma; >> f + beta; * m0; requantize.
            # Shiftmax: t, z; t * t + q_c; >> z; * inv; >> (sh - ob), saturate.
            e1, t3, z3 = piped(f"p3_d{i}", d), piped(f"p3_t{i}", t), piped(f"p3_z{i}", z)
            pm, sq, zz = piped(f"p3_pm{i}", e1 * inv[i]), piped(f"p3_sq{i}", exp_square(t3)), piped(f"p3_zz{i}", z3)
            nrm, ex = piped(f"p3_n{i}", pm >> (sh[i] - f)[:7]), piped(f"p3_e{i}", sq >> zz)
            pg, pe = piped(f"p3_pg{i}", nrm * gs[2]), piped(f"p3_pe{i}", ex * inv[i])
            p = pe >> (sh[i] - ob)[:7]
            y = piped(f"p3_y{i}", (pg >> f) + bs[3])
            prob = piped(f"p3_prob{i}", Mux(p > (1 << ob) - 1, (1 << ob) - 1, p))
            pr, prob6 = piped(f"p3_pr{i}", y * self.m0), piped(f"p3_prob6_{i}", prob)
            out = Mux(ln, saturate_expr(requant_round(pr, self.shift), 8), prob6)
            m.d.comb += ofifo.w_data[8 * i:8 * (i + 1)].eq(out)

        if D:
            # stage A: pass 1 into its own sums and maxima (and, buffered, bank `wbank`); `a_full`
            # holds them until stage B is back in P1 and takes them.  Streamed rows wait for stage
            # B: the stream then carries its passes 2 and 3 next.
            acc_a = [Signal(signed(16 + _MAX_N_BITS), name=f"acc_a{i}") for i in range(L)]
            mx_a = [Signal(signed(16), name=f"max_a{i}", init=-(1 << 15)) for i in range(L)]
            cnt_a, a_full, b_idle = Signal(_MAX_N_BITS), Signal(), Signal()
            a_take = Signal()
            xs = self.i_x.payload
            m.d.comb += [
                self.i_x.ready.eq(~a_full & (self.buffered | b_idle) | b_ready),
                a_take.eq(self.i_x.valid & ~a_full & (self.buffered | b_idle)),
                wp.addr.eq(Cat(cnt_a[:ab], wbank)), wp.data.eq(xs.as_value()), wp.en.eq(a_take & self.buffered),
                self.busy.eq((cnt_a != 0) | a_full | ~b_idle | (pending != 0)),
            ]
            with m.If(a_take):
                m.d.sync += cnt_a.eq(cnt_a + 1)
                for i in range(L):
                    m.d.sync += [acc_a[i].eq(acc_a[i] + xs[i]), mx_a[i].eq(Mux(xs[i] > mx_a[i], xs[i], mx_a[i]))]
                with m.If(cnt_a == self.n - 1):
                    m.d.sync += [cnt_a.eq(0), a_full.eq(1)]

        with m.FSM():
            if D:
                with m.State("P1"):
                    m.d.comb += b_idle.eq(1)
                    with m.If(a_full):
                        m.d.sync += [a_full.eq(0), rbank.eq(wbank), wbank.eq(~wbank)]
                        for i in range(L):
                            m.d.sync += [acc[i].eq(acc_a[i]), mx[i].eq(mx_a[i]), acc_a[i].eq(0),
                                         mx_a[i].eq(-(1 << 15))]
                        m.next = "P1_END"
            else:
                with m.State("P1"):
                    m.d.comb += self.i_x.ready.eq(1)
                    with m.If(self.i_x.valid):
                        m.d.sync += [busy_r.eq(1), cnt.eq(cnt + 1)]
                        for i in range(L):
                            m.d.sync += [acc[i].eq(acc[i] + x[i]), mx[i].eq(Mux(x[i] > mx[i], x[i], mx[i]))]
                        with m.If(cnt == self.n - 1):
                            m.d.sync += cnt.eq(0)
                            m.next = "P1_END"
            with m.State("P1_END"):
                for i in range(L):
                    a = acc[i] << f
                    m.d.sync += [neg[i].eq(a < 0), acc[i].eq(0)]
                    with m.If(ln):
                        m.d.sync += start_div(i, Mux(a < 0, -a + self.n - 1, a), self.n, 0)
                with m.If(ln):
                    m.next = "DIV_LOAD"
                with m.Else():
                    m.next = "P2"
            with m.State("DIV_LOAD"), m.Switch(phase):
                # the quotient has at most q bits (_quotient_bits): the dividend's bits above them go
                # straight into the remainder, and the divider iterates q times, not _DIV_BITS (the
                # iterations skipped would shift those bits in and give zero quotient bits)
                for ph, q in enumerate(self._qbits):
                    with m.Case(ph) if ph < 2 else m.Default():
                        for i in range(L):
                            m.d.sync += [dvd[i].eq(Cat(Const(0, _DIV_BITS - q), quo[i][:q])),
                                         rem[i].eq(quo[i][q:]), quo[i].eq(0)]
                        m.d.sync += it.eq(_DIV_BITS - q)
                m.next = "DIV"
            with m.State("DIV"):
                m.d.sync += it.eq(it + 1)
                for i in range(L):
                    r2 = Cat(dvd[i][-1], rem[i])
                    ge = r2 >= dvs[i]
                    m.d.sync += [rem[i].eq(Mux(ge, r2 - dvs[i], r2)), quo[i].eq(Cat(ge, quo[i])),
                                 dvd[i].eq(dvd[i] << 1)]
                with m.If(it == _DIV_BITS - 1):
                    m.next = "DIV_END"
            with m.State("DIV_END"), m.Switch(phase):
                with m.Case(0):
                    for i in range(L):
                        m.d.sync += mean[i].eq(Mux(neg[i], -quo[i], quo[i]))
                    m.next = "P2"
                with m.Case(1):
                    for i in range(L):
                        m.d.sync += [dvd[i].eq(quo[i]), root[i].eq(0)]
                    # the root of a variance below 2**(2 * r) has r bits: r iterations
                    r = self._qbits[1] // 2
                    m.d.sync += [bit.eq(1 << (2 * r - 2)), it.eq(32 - r)]
                    m.next = "SQRT"
                with m.Default():
                    for i in range(L):
                        m.d.sync += inv[i].eq(quo[i])
                    m.next = "P3"
            with m.State("P2"):
                if D:
                    m.d.comb += from_buf.eq(self.buffered)
                m.d.comb += [*take_x(1), take2.eq(x_valid)]
                with m.If(x_valid):
                    m.d.sync += cnt.eq(cnt + 1)
                    with m.If(cnt == self.n - 1):
                        m.d.sync += [cnt.eq(0), *rows_end()]
                        m.next = "P2_END"
            with m.State("P2_END"), m.If(~p2_busy):  # the pipeline's last sums are in acc
                for i in range(L):
                    with m.If(ln):
                        m.d.sync += start_div(i, acc[i].as_unsigned()[:_DIV_BITS], self.n, 1)
                    with m.Else():
                        m.d.sync += recip_setup(i, acc[i].as_unsigned()[:41])
                m.next = "DIV_LOAD"
            with m.State("SQRT"):
                # Bit-serial floor square root of dvd into root (dvd keeps the remainder).
                m.d.sync += [it.eq(it + 1), bit.eq(bit >> 2)]
                for i in range(L):
                    trial = root[i] + bit
                    ok = dvd[i] >= trial
                    m.d.sync += [dvd[i].eq(Mux(ok, dvd[i] - trial, dvd[i])),
                                 root[i].eq(Mux(ok, (root[i] >> 1) + bit, root[i] >> 1))]
                with m.If(it == 31):
                    m.next = "SQRT_END"
            with m.State("SQRT_END"):
                for i in range(L):
                    std = Mux(root[i] == 0, 1, root[i])
                    m.d.sync += recip_setup(i, std)
                m.next = "DIV_LOAD"
            with m.State("P3"):
                if D:
                    m.d.comb += from_buf.eq(self.buffered)
                take = room & x_valid & (~ln | self.i_par.valid)
                m.d.comb += [*take_x(take), self.i_par.ready.eq(take & ln), take3.eq(take)]
                with m.If(take):
                    m.d.sync += cnt.eq(cnt + 1)
                    with m.If(cnt == self.n - 1):
                        m.d.sync += [cnt.eq(0), *rows_end()]
                        for i in range(L):
                            m.d.sync += [acc[i].eq(0), mx[i].eq(-(1 << 15))]
                        m.next = "P3_END"
            # inv, sh and the configuration stay until the pipeline has emitted the rows' last outputs
            with m.State("P3_END"), m.If(~p3_busy):
                if not D:
                    m.d.sync += busy_r.eq(0)
                m.next = "P1"
        return m

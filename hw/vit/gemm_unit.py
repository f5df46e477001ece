"""The GEMM path of the ViT accelerator (:class:`~qsilicon.hw.vit.system.VitAccel`).

One GEMM descriptor computes ``Y = requant(X W^T + bias')`` for a layer (or an attention
product) on the ``rows x cols`` array:

* **activation buffer** (``ABUF``, block RAM, words of ``rows`` bytes): the layer's input ``X``
  is read once from memory (token-blocked words of ``lanes`` tokens, gathered into words of
  ``rows`` tokens) and then read by the array for every column tile.  With ``dot2`` packing it is
  two banks (even and odd words), so that an int4 tile's beat reads two reduction steps;
* **weight ring** (``WBUF``, block RAM, words of ``cols`` bytes): column tiles ("instances")
  stream in while the array works on earlier ones.  A *resident* instance is read by every token
  tile of the layer (the weights come from memory once); when a column tile is larger than the
  ring the compiler makes the layer *streamed*: the tile is loaded again for every token tile,
  and the ring frees each word as soon as it has been read (the re-read rule);
* **parameter buffer** (two entries): the requantizer's per-column bias, ``M0``, shift and
  zero point of an instance;
* **feature map** (``FMAP``, block RAM): where each output column goes.  Row-wise mixed layers
  are computed in precision groups (int8 rows first, then int4 rows, each group tiled by
  ``cols``); the feature map scatters the grouped columns back to the layer's own order;
* **output transposer**: ``lanes`` small banks turn the array's rows (one token, ``cols``
  channels) into token-blocked words (one channel, ``lanes`` tokens), of int8 values or, in
  *wide* mode (the classifier's logits), of int16 values over two words.

Weight sources (``wmode``): ``prepacked`` (linear layers: the compiler's per-tile byte stream,
int4 tiles two reduction steps per word: two beats, or one beat on a ``dot2`` array), ``kT``
(``q k^T``: the key tokens of a token-blocked tensor) and ``rows`` (``P V``: row-major ``V``).
Everything is counted with adders: no multiplier outside the array and the requantizer.
"""

from __future__ import annotations

import math

from amaranth import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..blocks import requant_params_layout
from ..blocks.axi import addr_pattern_layout, word_layout
from ..config import AccelConfig
from ..gemm import GemmEngine

__all__ = [
    "CAUSE_ABUF", "CAUSE_GEMM", "FMAP_ENTRIES", "GELU_FIELDS", "PAR_BITS_PER_COL", "W_KT", "W_PREPACKED", "W_ROWS",
    "GemmUnit",
    "gemm_desc_layout", "gemm_illegal", "param_words",
]

W_PREPACKED, W_KT, W_ROWS = 0, 1, 2
#: Output columns a feature map can place (the widest layer of a model).
FMAP_ENTRIES = 4096
#: Bits of one column's requantization parameters (bias 32, M0 16, shift 6, zero point 16).
PAR_BITS_PER_COL = 32 + 16 + 6 + 16
#: Error causes (the controller's STATUS register): an illegal GEMM descriptor, and an input that
#: does not fit the activation buffer.
CAUSE_GEMM, CAUSE_ABUF = 4, 5
_BEAT_FIFO = 4


#: Where the fused GELU's constants lie in a descriptor: the bits of the vector view's ``m0``,
#: ``shift``, ``gelu_b`` and ``gelu_one`` (:func:`~qsilicon.hw.vit.system.vector_desc_layout`), so
#: that the element-wise unit reads the same descriptor bits for a GELU descriptor and a fused
#: GEMM (no multiplexer in front of its multipliers' constants).
GELU_FIELDS = {"m0": (unsigned(16), 790), "shift": (unsigned(6), 806), "gelu_b": (signed(24), 855),
               "gelu_one": (signed(32), 879)}


def gemm_desc_layout() -> data.FlexibleLayout:
    """A GEMM descriptor (the ``gemm`` view of the controller's 128-byte descriptor).

    ``x_pitch``/``y_pitch`` are the byte distance between token blocks of ``X``/``Y`` (a word
    holds one feature of ``lanes`` tokens; ``Y`` is int16 ``block16`` in wide mode).
    ``mt`` counts token tiles of ``rows`` tokens, ``nt8``/``nt4`` the int8 and int4 column tiles,
    ``n_out`` the valid output columns.  ``p_stride`` 0 gives every tile the same parameters.
    ``gelu`` 1 sends every output word through the element-wise unit's GELU on its way to memory
    (``Y = requant(-gelu(requant(X W^T + bias')) M0 >> shift)``, the GELU descriptor's operation,
    with its constants ``m0``, ``shift``, ``gelu_b``, ``gelu_one``: :data:`GELU_FIELDS`); not with
    ``wide``.
    """
    base = data.StructLayout({
        "op": 4, "wmode": 2, "resident": 1, "wide": 1, "fmap": 1,
        "k": 16, "mt": 16, "nt8": 16, "nt4": 16, "n_out": 16,
        "x_base": 32, "x_pitch": 32, "w_base": 32, "w_pitch": 32, "p_base": 32, "p_stride": 32,
        "f_base": 32, "y_base": 32, "y_pitch": 32, "gelu": 1,
    })
    fields = {name: data.Field(f.shape, f.offset) for name, f in base}
    fields.update({name: data.Field(shape, at) for name, (shape, at) in GELU_FIELDS.items()})
    return data.FlexibleLayout(max(at + shape.width for shape, at in GELU_FIELDS.values()), fields)


def param_words(cols: int, lanes: int) -> int:
    """Memory words of one column tile's parameters."""
    return math.ceil(PAR_BITS_PER_COL * cols / (8 * lanes))


def _pattern(**fields):
    """An address pattern as one value (fields not given: counts 1, strides 0)."""
    parts = []
    for name, f in addr_pattern_layout():
        v = fields.get(name, 1 if name in ("n0", "n1", "n2") else 0)
        v = Value.cast(v) if isinstance(v, Value) else Const(v, f.shape.width)
        parts.append(v.as_unsigned()[: f.shape.width] if len(v) >= f.shape.width else v.as_unsigned())
    return Cat(*(p if len(p) == f.shape.width else Cat(p, Const(0, f.shape.width - len(p)))
                 for p, (_, f) in zip(parts, addr_pattern_layout(), strict=True)))


def _log2(v: int) -> int:
    return v.bit_length() - 1


def gemm_illegal(d, config: AccelConfig) -> Value:
    """1 when the GEMM descriptor ``d`` (a view of :func:`gemm_desc_layout`) cannot run on the design
    (the STATUS cause :data:`CAUSE_GEMM`): an empty shape, output columns outside the column tiles, a
    reserved weight mode, int4 tiles without prepacked weights, a resident column tile larger than
    the weight ring, more output columns than the feature map holds, a reduction longer than the
    activation buffer, an address or pitch off the memory word, or GELU on wide (int16) outputs.
    Pure logic of ``d``: the controller evaluates it while the descriptor's last word arrives and
    registers it."""
    L, C = config.lanes, config.cols
    lL, lC = _log2(L), _log2(C)
    DA, DW = config.abuf_words, config.wbuf_words
    nt = (d.nt8 + d.nt4)[:17]
    seg_max = Mux((d.wmode == W_PREPACKED) & (d.nt8 == 0), (d.k + 1) >> 1, d.k)
    misaligned = Cat(*(getattr(d, f)[:lL] for f in ("x_base", "w_base", "p_base", "f_base", "y_base",
                                                   "x_pitch", "y_pitch", "p_stride"))).any()
    return ((d.k == 0) | (d.mt == 0) | (nt == 0) | (d.n_out == 0) | (d.n_out > (nt << lC))
            | (d.n_out <= ((nt - 1) << lC)) | (d.wmode == 3)
            | ((d.wmode == W_KT) & ~d.resident) | ((d.wmode != W_PREPACKED) & (d.nt4 != 0))
            | (d.resident & (seg_max > DW)) | (d.fmap & (d.n_out > FMAP_ENTRIES))
            | (d.k > DA) | misaligned | (d.gelu & d.wide))


class GemmUnit(wiring.Component):
    """The GEMM path of one :class:`~qsilicon.hw.config.AccelConfig`.

    ``start`` (one cycle, with ``desc`` valid and staying so) begins a descriptor; ``busy`` is
    high until the last output word has been handed to ``o_word``.  The address generators of the
    four readers live in the controller: this unit drives their patterns (``*_cfg``) and start
    pulses and sees when the weight and parameter generators have issued their last burst.

    Members
    -------
    desc : In(gemm_desc_layout())
    start : In(1)
    busy : Out(1)
    overflow : Out(1)
        Sticky until ``start``: ``X`` did not fit the activation buffer.
    x_cfg, w_cfg, p_cfg, f_cfg : Out(addr_pattern_layout())
    x_start, w_start, p_start, f_start : Out(1)
    w_done, p_done, x_done : In(1)
        The weight, parameter and input (with the feature map) generators have issued their last
        burst.  Parameters and weights are asked for only once the input is: the input arrives first,
        whole, in one run of the read port.
    i_x, i_w, i_p, i_f : In(stream.Signature(8 * lanes))
    o_word : Out(stream.Signature(word_layout(8 * lanes)))
    beat : Out(1)
        An operand beat entered the array.
    """

    def __init__(self, config: AccelConfig) -> None:
        if not isinstance(config, AccelConfig):
            raise TypeError(f"Config must be an AccelConfig, not {config!r}")
        self._cfg = config
        W = 8 * config.lanes
        super().__init__({
            "desc": In(gemm_desc_layout()), "start": In(1), "busy": Out(1), "overflow": Out(1),
            "x_cfg": Out(addr_pattern_layout()), "w_cfg": Out(addr_pattern_layout()),
            "p_cfg": Out(addr_pattern_layout()), "f_cfg": Out(addr_pattern_layout()),
            "x_start": Out(1), "w_start": Out(1), "p_start": Out(1), "f_start": Out(1),
            "w_done": In(1), "p_done": In(1), "x_done": In(1),
            "i_x": In(stream.Signature(W)), "i_w": In(stream.Signature(W)), "i_p": In(stream.Signature(W)),
            "i_f": In(stream.Signature(W)), "o_word": Out(stream.Signature(word_layout(W))), "beat": Out(1),
        })

    @property
    def config(self) -> AccelConfig:
        return self._cfg

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        R, C, L = cfg.rows, cfg.cols, cfg.lanes
        W = 8 * L
        a, b = R // L, C // L
        lL, lC, la, lb = _log2(L), _log2(C), _log2(a), _log2(b)
        DA, DW = cfg.abuf_words, cfg.wbuf_words
        P = param_words(C, L)
        d = self.desc
        nt = Signal(17)
        m.d.comb += nt.eq(d.nt8 + d.nt4)
        seg8 = d.k  # WBUF words of an int8 column tile's instance, and of an int4 one
        seg4 = (d.k + 1) >> 1

        # ------------------------------------------------------------------ memories
        dot = cfg.packing == "dot2"
        if dot:  # word x in bank x % 2 at x // 2
            m.submodules.abuf0 = abuf0 = memory.Memory(shape=unsigned(8 * R), depth=DA // 2, init=[])
            m.submodules.abuf1 = abuf1 = memory.Memory(shape=unsigned(8 * R), depth=DA // 2, init=[])
            ab_w0, ab_r0 = abuf0.write_port(granularity=W), abuf0.read_port()
            ab_w1, ab_r1 = abuf1.write_port(granularity=W), abuf1.read_port()
            banks_a = [(ab_w0, ab_r0), (ab_w1, ab_r1)]
        else:
            m.submodules.abuf = abuf = memory.Memory(shape=unsigned(8 * R), depth=DA, init=[])
            ab_w = abuf.write_port(granularity=W)
            ab_r = abuf.read_port()
            banks_a = [(ab_w, ab_r)]
        m.submodules.wbuf = wbuf = memory.Memory(shape=unsigned(8 * C), depth=DW, init=[])
        wb_w = wbuf.write_port(granularity=W)
        wb_r = wbuf.read_port()
        fdepth = FMAP_ENTRIES // (L // 2)
        m.submodules.fmap = fmapm = memory.Memory(shape=unsigned(W), depth=fdepth, init=[])
        fm_w = fmapm.write_port()
        fm_r = fmapm.read_port()

        busy = self.busy
        starting = self.start
        m.d.comb += [self.x_start.eq(starting), self.f_start.eq(starting)]

        # ------------------------------------------------------------------ X: memory -> ABUF
        xc = self.x_cfg
        m.d.comb += [xc.base.eq(d.x_base), xc.run.eq(d.k), xc.n0.eq(a), xc.s0.eq(d.x_pitch), xc.n1.eq(d.mt),
                     xc.s1.eq(d.x_pitch << la), xc.n2.eq(1), xc.s2.eq(0)]
        x_w, x_i0, x_sb = Signal(16), Signal(range(a + 1)), Signal(17)
        x_base = Signal(range(DA + 65536 + 1))
        m.d.comb += self.i_x.ready.eq(~starting)
        with m.If(starting):
            m.d.sync += [x_w.eq(0), x_i0.eq(0), x_sb.eq(0), x_base.eq(0), self.overflow.eq(0)]
        with m.Elif(self.i_x.valid):
            x_at = x_base + x_w
            with m.If(x_at >= DA):
                m.d.sync += self.overflow.eq(1)
            for i, (wp, _) in enumerate(banks_a):
                en = Mux(x_at < DA, Const(1, a) << x_i0, 0)
                m.d.comb += [wp.addr.eq(x_at >> 1 if dot else x_at), wp.data.eq(Cat(*([self.i_x.payload] * a))),
                             wp.en.eq(Mux(x_at[0] == i, en, 0) if dot else en)]
            with m.If(x_w == d.k - 1):
                m.d.sync += x_w.eq(0)
                with m.If(x_i0 == a - 1):
                    m.d.sync += [x_i0.eq(0), x_sb.eq(x_sb + 1), x_base.eq(x_base + d.k)]
                with m.Else():
                    m.d.sync += x_i0.eq(x_i0 + 1)
            with m.Else():
                m.d.sync += x_w.eq(x_w + 1)

        # ------------------------------------------------------------------ FMAP: memory -> FMAP
        fwords = Signal(16)
        m.d.comb += fwords.eq(Mux(d.fmap, (d.n_out + (L // 2 - 1)) >> (lL - 1), 0))
        fc = self.f_cfg
        m.d.comb += [fc.base.eq(d.f_base), fc.run.eq(fwords), fc.n0.eq(1), fc.n1.eq(1), fc.n2.eq(1)]
        f_cnt = Signal(16)
        f_loaded = Signal()
        m.d.comb += [f_loaded.eq(f_cnt >= fwords), self.i_f.ready.eq(~starting),
                     fm_w.addr.eq(f_cnt), fm_w.data.eq(self.i_f.payload), fm_w.en.eq(self.i_f.valid & ~starting)]
        with m.If(starting):
            m.d.sync += f_cnt.eq(0)
        with m.Elif(self.i_f.valid):
            m.d.sync += f_cnt.eq(f_cnt + 1)

        # ------------------------------------------------------------------ column tiles (shared shape rules)
        def tile_state(prefix: str):
            """Counters that walk the instances in order: tile j, token tile m (streamed), the
            remaining output columns from tile j on."""
            j = Signal(17, name=f"{prefix}_j")
            mm = Signal(16, name=f"{prefix}_m")
            rem = Signal(17, name=f"{prefix}_rem")
            return j, mm, rem

        def units_of(rem):
            """Memory words that hold the valid columns of a kT / rows tile."""
            return Mux(rem >= C, b, (rem + (L - 1)) >> lL)

        def segw_of(j):
            """WBUF words of tile j's instance."""
            return Mux((d.wmode == W_PREPACKED) & (j >= d.nt8), seg4, seg8)

        def next_instance(j, mm, rem, extra=()):
            """Advance to the next instance; ``extra`` runs when the column tile changes."""
            stmts_tile = [j.eq(j + 1), mm.eq(0), rem.eq(rem - C), *extra]
            return stmts_tile

        # ------------------------------------------------------------------ weight and parameter issue
        ij, im, irem = tile_state("iss")
        p_addr, w_seg = Signal(32), Signal(32)
        units_i = units_of(irem)
        pcfg, wcfg = self.p_cfg, self.w_cfg
        m.d.comb += [pcfg.base.eq(p_addr), pcfg.run.eq(P), pcfg.n0.eq(1), pcfg.n1.eq(1), pcfg.n2.eq(1)]
        # every field in one expression: a constant part of a signal driven apart from the rest
        # becomes an `always @*` with nothing to read, which simulators never run
        kt, rows = d.wmode == W_KT, d.wmode == W_ROWS
        m.d.comb += wcfg.eq(_pattern(base=w_seg, run=Mux(kt, d.k, Mux(rows, units_i, segw_of(ij) << lb)),
                                     n0=Mux(kt, units_i, Mux(rows, d.k, 1)), s0=Mux(kt | rows, d.w_pitch, 0)))
        seg_bytes = Mux(d.wmode == W_KT, d.w_pitch << lb,
                        Mux(d.wmode == W_ROWS, C, (segw_of(ij) << lC)))
        issue_done = Signal()
        with m.FSM(name="issue"):
            with m.State("IDLE"), m.If(starting):
                m.d.sync += [ij.eq(0), im.eq(0), irem.eq(d.n_out), p_addr.eq(d.p_base), w_seg.eq(d.w_base),
                             issue_done.eq(0)]
                m.next = "PARAMS"
            with m.State("PARAMS"), m.If(self.x_done):
                m.d.comb += self.p_start.eq(1)
                m.next = "PARAMS_WAIT"
            with m.State("PARAMS_WAIT"), m.If(self.p_done):
                m.d.comb += self.w_start.eq(1)
                m.next = "WEIGHTS_WAIT"
            with m.State("WEIGHTS_WAIT"), m.If(self.w_done):
                last_m = d.resident | (im == d.mt - 1)
                with m.If(last_m):
                    m.d.sync += next_instance(ij, im, irem, [p_addr.eq(p_addr + d.p_stride),
                                                             w_seg.eq(w_seg + seg_bytes)])
                    with m.If(ij + 1 == nt):
                        m.d.sync += issue_done.eq(1)
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "PARAMS"
                with m.Else():
                    m.d.sync += im.eq(im + 1)
                    m.next = "PARAMS"

        # ------------------------------------------------------------------ PBUF fill
        pbuf = [Signal(P * W, name=f"pbuf{e}") for e in range(2)]
        pvalid = Signal(2)
        pf_e, pf_word = Signal(), Signal(range(P))
        m.d.comb += self.i_p.ready.eq(~starting & ~pvalid.bit_select(pf_e, 1))
        with m.If(starting):
            m.d.sync += [pf_e.eq(0), pf_word.eq(0)]
        with m.Elif(self.i_p.valid & self.i_p.ready):
            for e in range(2):
                with m.If(pf_e == e), m.Switch(pf_word):
                    for q in range(P):
                        with m.Case(q):
                            m.d.sync += pbuf[e][q * W : (q + 1) * W].eq(self.i_p.payload)
            with m.If(pf_word == P - 1):
                m.d.sync += [pf_word.eq(0), pf_e.eq(~pf_e)]
            with m.Else():
                m.d.sync += pf_word.eq(pf_word + 1)

        # ------------------------------------------------------------------ WBUF fill (the ring's writer)
        fj, fm, frem = tile_state("fill")
        wf_start, avail, freed = Signal(32), Signal(32), Signal(32)
        wf_word, wf_lane = Signal(16), Signal(range(b + 1))
        units_f = units_of(frem)
        q_f = Mux(d.wmode == W_ROWS, units_f, b)  # lanes written per WBUF word (row-major fill)
        segw_f = segw_of(fj)
        target = (wf_start + wf_word)[:32]
        space = (target - freed)[:32] < DW
        m.d.comb += self.i_w.ready.eq(busy & space & (fj < nt))
        m.d.comb += [wb_w.addr.eq(target[: _log2(DW)]), wb_w.data.eq(Cat(*([self.i_w.payload] * b))),
                     wb_w.en.eq(Mux(self.i_w.valid & self.i_w.ready, Const(1, b) << wf_lane, 0))]
        fill_tile_done = Signal()
        with m.If(starting):
            m.d.sync += [fj.eq(0), fm.eq(0), frem.eq(d.n_out), wf_start.eq(0), avail.eq(0), wf_word.eq(0),
                         wf_lane.eq(0)]
        with m.Elif(self.i_w.valid & self.i_w.ready):
            with m.If(d.wmode == W_KT):
                with m.If(wf_word == d.k - 1):
                    m.d.sync += [wf_word.eq(0), wf_lane.eq(wf_lane + 1)]
                    with m.If(wf_lane == units_f - 1):
                        m.d.comb += fill_tile_done.eq(1)
                        m.d.sync += avail.eq(wf_start + d.k)
                with m.Else():
                    m.d.sync += wf_word.eq(wf_word + 1)
            with m.Else():
                with m.If(wf_lane == q_f - 1):
                    m.d.sync += [wf_lane.eq(0), wf_word.eq(wf_word + 1), avail.eq(target + 1)]
                    with m.If(wf_word == segw_f - 1):
                        m.d.comb += fill_tile_done.eq(1)
                with m.Else():
                    m.d.sync += wf_lane.eq(wf_lane + 1)
            with m.If(fill_tile_done):
                m.d.sync += [wf_start.eq(wf_start + segw_f), wf_word.eq(0), wf_lane.eq(0)]
                with m.If(d.resident | (fm == d.mt - 1)):
                    m.d.sync += next_instance(fj, fm, frem)
                with m.Else():
                    m.d.sync += fm.eq(fm + 1)

        # ------------------------------------------------------------------ operand beats (the ring's reader)
        bj, bm, _ = tile_state("beat")
        bk = Signal(16)
        b_start, b_abase = Signal(32), Signal(range(DA + 65536 + 1))
        beats_done = Signal()
        w4 = bj >= d.nt8
        segw_b = segw_of(bj)
        if dot:
            # an int4 tile (only linear layers have them) takes ceil(K / 2) beats of a whole WBUF word
            # and two ABUF words, xa (step k) and xa + 1 (step k + 1)
            kb = Mux(w4, seg4, d.k)
            wk = bk
        else:
            kb = d.k
            wk = Mux(w4, bk >> 1, bk)
            half = bk[0] & w4
        last_rep = ~d.resident | (bm == d.mt - 1)
        cred = Signal(range(_BEAT_FIFO + 1), init=_BEAT_FIFO)
        wpos = (b_start + wk)[:32]
        can = busy & ~beats_done & (x_sb > bm) & ((wpos - avail)[31]) & (cred != 0)
        v1, half1, w41, last1 = Signal(), Signal(), Signal(), Signal()
        if dot:  # bank 0 holds the even word of the pair
            xa = (b_abase + Mux(w4, bk << 1, bk))[: _log2(DA)]
            odd1 = Signal()
            m.d.comb += [ab_r0.addr.eq((xa + xa[0]) >> 1), ab_r1.addr.eq(xa >> 1), ab_r0.en.eq(can),
                         ab_r1.en.eq(can),
                         wb_r.addr.eq(wpos[: _log2(DW)]), wb_r.en.eq(can)]
            m.d.sync += [v1.eq(can), w41.eq(w4), last1.eq(bk == kb - 1), odd1.eq(xa[0])]
        else:
            m.d.comb += [ab_r.addr.eq(b_abase + bk), wb_r.addr.eq(wpos[: _log2(DW)]), ab_r.en.eq(can),
                         wb_r.en.eq(can)]
            m.d.sync += [v1.eq(can), half1.eq(half), w41.eq(w4), last1.eq(bk == d.k - 1)]
        with m.If(starting):
            m.d.sync += [bj.eq(0), bm.eq(0), bk.eq(0), b_start.eq(0), b_abase.eq(0), beats_done.eq(0), freed.eq(0)]
        with m.Elif(can):
            with m.If(last_rep):
                m.d.sync += freed.eq(Mux(bk == kb - 1, b_start + segw_b, wpos))
            with m.If(bk == kb - 1):
                m.d.sync += bk.eq(0)
                with m.If(~d.resident | (bm == d.mt - 1)):
                    m.d.sync += b_start.eq(b_start + segw_b)
                with m.If(bm == d.mt - 1):
                    m.d.sync += [bm.eq(0), bj.eq(bj + 1), b_abase.eq(0)]
                    with m.If(bj + 1 == nt):
                        m.d.sync += beats_done.eq(1)
                with m.Else():
                    m.d.sync += [bm.eq(bm + 1), b_abase.eq(b_abase + d.k)]
            with m.Else():
                m.d.sync += bk.eq(bk + 1)

        AW = 8 * R * (2 if dot else 1)
        m.submodules.beats = beats = fifo.SyncFIFOBuffered(width=AW + 8 * C + 2, depth=_BEAT_FIFO)
        if dot:  # every beat takes the whole WBUF word (an int4 one: step k low, k + 1 high)
            wdata = wb_r.data
            adata = Cat(Mux(odd1, ab_r1.data, ab_r0.data), Mux(odd1, ab_r0.data, ab_r1.data))
        else:
            wdata = Mux(w41, Mux(half1, wb_r.data[4 * C :], wb_r.data[: 4 * C]), wb_r.data)
            adata = ab_r.data
        m.d.comb += [beats.w_en.eq(v1), beats.w_data.eq(Cat(adata, wdata, w41, last1))]

        m.submodules.engine = eng = GemmEngine(cfg.gemm, signed(16))
        head = beats.r_data
        m.d.comb += [
            eng.i_act.valid.eq(beats.r_rdy), eng.i_wgt.valid.eq(beats.r_rdy),
            eng.i_act.payload.data.eq(head[: 8 * R]), eng.i_act.payload.last.eq(head[AW + 8 * C + 1]),
            eng.i_wgt.payload.data.eq(head[AW : AW + 8 * C]), eng.i_wgt.payload.w4.eq(head[AW + 8 * C]),
        ]
        if dot:
            m.d.comb += eng.i_act.payload.data1.eq(head[8 * R : AW])
        pop = beats.r_rdy & eng.i_act.ready
        m.d.comb += [beats.r_en.eq(pop), self.beat.eq(pop)]
        m.d.sync += cred.eq(cred - can + pop)

        # ------------------------------------------------------------------ parameter beats
        pj, pm = Signal(17), Signal(16)
        pe = Signal()
        par_done = Signal()
        par_lay = requant_params_layout(C, signed(16))
        m.d.comb += [eng.i_par.valid.eq(busy & ~par_done & pvalid.bit_select(pe, 1)),
                     eng.i_par.payload.eq(Mux(pe, pbuf[1], pbuf[0])[: par_lay.size])]
        with m.If(starting):
            m.d.sync += [pj.eq(0), pm.eq(0), pe.eq(0), par_done.eq(0)]
        with m.Elif(eng.i_par.valid & eng.i_par.ready):
            with m.If(~d.resident | (pm == d.mt - 1)):
                m.d.sync += pe.eq(~pe)
            with m.If(pm == d.mt - 1):
                m.d.sync += [pm.eq(0), pj.eq(pj + 1)]
                with m.If(pj + 1 == nt):
                    m.d.sync += par_done.eq(1)
            with m.Else():
                m.d.sync += pm.eq(pm + 1)
        # pvalid: set by the fill, cleared when an instance's last parameter beat is taken
        clear = Signal(2)
        setv = Signal(2)
        with m.If(eng.i_par.valid & eng.i_par.ready & (~d.resident | (pm == d.mt - 1))):
            m.d.comb += clear.eq(Mux(pe, 2, 1))
        with m.If(self.i_p.valid & self.i_p.ready & (pf_word == P - 1) & ~starting):
            m.d.comb += setv.eq(Mux(pf_e, 2, 1))
        m.d.sync += pvalid.eq(Mux(starting, 0, (pvalid & ~clear) | setv))

        # ------------------------------------------------------------------ outputs: the transposer
        # `lanes` banks of `a` rows per half, two halves: row r of a tile goes to bank r % lanes; a
        # word is one column of `lanes` rows (int8 values, or int16 values over two words in wide mode)
        res = eng.o_res
        vals = res.payload.data
        narrow = [Mux(vals[c] < -128, -128, Mux(vals[c] > 127, 127, vals[c]))[:16] for c in range(C)]
        store = Mux(d.wide, vals.as_value(), Cat(*narrow))
        o = self.o_word
        emit_done = Signal()
        banks = []
        for lane in range(L):
            mem = memory.Memory(shape=unsigned(16 * C), depth=2 * a, init=[])
            m.submodules[f"tbank{lane}"] = mem
            banks.append((mem.write_port(), mem.read_port()))
        full = Signal(2)
        wt_row, wt_half = Signal(range(R)), Signal()
        set_full, clr_full = Signal(2), Signal(2)
        for lane, (wp, _) in enumerate(banks):
            m.d.comb += [wp.addr.eq(Cat(wt_row[lL:], wt_half) if a > 1 else wt_half), wp.data.eq(store),
                         wp.en.eq(res.valid & res.ready & (wt_row[:lL] == lane))]
        m.d.comb += res.ready.eq(busy & ~full.bit_select(wt_half, 1))
        with m.If(starting):
            m.d.sync += [wt_row.eq(0), wt_half.eq(0)]
        with m.Elif(res.valid & res.ready):
            with m.If(wt_row == R - 1):
                m.d.sync += [wt_row.eq(0), wt_half.eq(~wt_half)]
                m.d.comb += set_full.eq(Mux(wt_half, 2, 1))
            with m.Else():
                m.d.sync += wt_row.eq(wt_row + 1)
        m.d.sync += full.eq(Mux(starting, 0, (full & ~clr_full) | set_full))

        ej, em, erem = tile_state("emit")
        ei, ec, ew = Signal(range(a + 1)), Signal(range(C + 1)), Signal()
        e_half = Signal()
        blk = Signal(32)  # byte address of the current output block
        v_cols = Mux(erem >= C, C, erem)
        s1_v, s1_c, s1_w, s1_addr, s1_last, s1_sel, s1_feat = (
            Signal(name="s1_v"), Signal(range(C)), Signal(name="s1_w"), Signal(32), Signal(name="s1_last"),
            Signal(range(L // 2)), Signal(16))
        entry = fm_r.data.word_select(s1_sel, 16)
        s1_skip = d.fmap & entry[15]  # a padding column of a precision group: not written
        advance = ~s1_v | s1_skip | o.ready
        col = (ej << lC) + ec
        last_word = (ej + 1 == nt) & (em == d.mt - 1) & (ei == a - 1) & (ec == v_cols - 1) & (ew == d.wide)
        go = busy & ~emit_done & full.bit_select(e_half, 1) & f_loaded & advance
        for _, rp in banks:
            m.d.comb += [rp.addr.eq(Cat(ei[:la], e_half) if a > 1 else e_half), rp.en.eq(advance)]
        m.d.comb += [fm_r.addr.eq(col >> (lL - 1)), fm_r.en.eq(advance)]
        with m.If(advance):
            m.d.sync += [s1_v.eq(go), s1_c.eq(ec), s1_w.eq(ew), s1_addr.eq(blk), s1_sel.eq(col[: lL - 1]),
                         s1_feat.eq(col), s1_last.eq(last_word)]
        with m.If(starting):
            m.d.sync += [ej.eq(0), em.eq(0), erem.eq(d.n_out), ei.eq(0), ec.eq(0), ew.eq(0), e_half.eq(0),
                         emit_done.eq(0), blk.eq(d.y_base)]
        with m.Elif(go):
            with m.If(ew != d.wide):
                m.d.sync += ew.eq(1)
            with m.Elif(ec == v_cols - 1):
                m.d.sync += [ew.eq(0), ec.eq(0), blk.eq(blk + d.y_pitch)]
                with m.If(ei == a - 1):
                    m.d.sync += [ei.eq(0), e_half.eq(~e_half)]
                    m.d.comb += clr_full.eq(Mux(e_half, 2, 1))
                    with m.If(em == d.mt - 1):
                        m.d.sync += [*next_instance(ej, em, erem), blk.eq(d.y_base)]
                        with m.If(ej + 1 == nt):
                            m.d.sync += emit_done.eq(1)
                    with m.Else():
                        m.d.sync += em.eq(em + 1)
                with m.Else():
                    m.d.sync += ei.eq(ei + 1)
            with m.Else():
                m.d.sync += [ew.eq(0), ec.eq(ec + 1)]

        feat = Mux(d.fmap, entry[:15], s1_feat)
        lanes16 = [rp.data.word_select(s1_c, 16) for _, rp in banks]
        narrow_word = Cat(*(v[:8] for v in lanes16))
        wide_word = Mux(s1_w, Cat(*lanes16[L // 2 :]), Cat(*lanes16[: L // 2]))
        m.d.comb += [o.valid.eq(s1_v & ~s1_skip), o.payload.data.eq(Mux(d.wide, wide_word, narrow_word)),
                     o.payload.addr.eq(s1_addr + Mux(d.wide, (feat << (lL + 1)) + (s1_w << lL), feat << lL)),
                     o.payload.last.eq(s1_last)]

        # ------------------------------------------------------------------ busy
        finished = emit_done & ~s1_v & issue_done
        with m.If(starting):
            m.d.sync += busy.eq(1)
        with m.Elif(busy & finished):
            m.d.sync += busy.eq(0)
        return m

"""The QuartDepth engine: a programmable W4A4/W4A8 convolution accelerator with decoupled load,
compute and store units, on-chip buffers, fused pre/post-ops, one AXI4 master and AXI4-Lite control.

Operation
---------
The host writes a program (:mod:`~qsilicon.hw.depth.isa`, 32-byte instructions) and the memory
image (:mod:`~qsilicon.hw.depth.compiler`), writes the program's address to ``PROG_ADDR`` and 1 to
``CTRL``.  The dispatcher fetches instructions in order, checks them (an illegal one raises the
sticky error bit and stops the run once the units are idle), honours ``barrier`` and queues each
on its unit (four deep).  Units:

* **load**: an address generator's bursts on AXI read client 0; words are unpacked (bytes, or 4-bit
  codes zero- or sign-extended to bytes) into ``nbytes``-byte words of ``act``, ``wgt``, ``par`` or
  ``tab``.
* **compute**: walks output tiles (``px`` pixels of a row x ``co`` channels) and, per tile, every
  (input channel, ky, kx) beat: fetches a row word of ``act`` (padding, stride, nearest 2x
  upsampling and the two concatenated segments are address arithmetic and lane selection), the
  channel's decode table from ``tab`` and the beat's weights from ``wgt``; feeds the
  :class:`~qsilicon.hw.blocks.mac_array.MacArray` (rows = output channels, columns = pixels,
  signed 8-bit weights x unsigned 8-bit operands, int32 accumulation; with ``nibble`` packing a
  ``pair`` COMPUTE takes each byte as two 4-bit weights / codes of two input channels and every PE
  does both MACs in the cycle); drains each channel row
  through the post-op pipeline (bias, requantization ``round_half_up(acc M0 / 2**shift)``,
  clamp to u4/u8/s16, which is also the ReLU, optional residual add of an ``act`` row with
  saturation, polished encode by 15 thresholds, or with ``pair_out`` two channels' u4 codes packed
  into one row's bytes) into ``out``.
* **store**: packs ``out`` rows (u4/u8/s16) onto the AXI4 write channels.

The units synchronise with the instructions' token flags; all memories are
``amaranth.lib.memory`` blocks with one read and one write port.

Registers (AXI4-Lite, 32 bits, byte offsets)
--------------------------------------------
======  ==========  ==========================================================================
0x00    CTRL        write bit 0 = 1: start (ignored while busy)
0x04    STATUS      bit 0 busy, bit 1 done, bit 2 error; bits 11:8 cause (1 unknown opcode,
                    2 illegal field, 3 read response, 4 write response); read-only
0x08    PROG_ADDR   byte address of the first instruction (32-byte aligned)
0x0C    CYCLES      cycles of the last run; read-only
0x10    INSNS       instructions dispatched (END included); read-only
0x14    PC          address of the instruction being dispatched (or that stopped the run)
0x18    INFO        co in bits 7:0, px in 15:8, max_width in 23:16, packing in 31:24 (0 none,
                    1 dsp2, 2 nibble)
0x1C    BEATS       MAC-array beats (co x px MACs each)
0x20    LD_BUSY     cycles the load unit worked
0x24    CP_BUSY     cycles the compute unit worked
0x28    ST_BUSY     cycles the store unit worked
0x2C    RD_WORDS    64-bit words read by the load unit
0x30    WR_WORDS    64-bit words written by the store unit
======  ==========  ==========================================================================

``irq`` is high from the end of a run until the next start.  ``o_tag``/``o_cp_busy``/``o_mac``
expose the running COMPUTE's tag and the array's activity for per-layer measurements.
"""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, fifo, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import Out

from ..blocks.axi import (
    AddrGen,
    AxiLiteRegs,
    AxiReadMux,
    AxiWriter,
    axi4_lite_signature,
    axi4_signature,
    join_axi_master,
)
from ..blocks.mac_array import MacArray
from .isa import (
    FIELDS,
    FMT_S16,
    FMT_U4,
    FMT_U8,
    INSN_BYTES,
    MEM_ACT,
    MEM_PAR,
    MEM_TAB,
    MEM_WGT,
    MODE_BYTES,
    MODE_NIBBLE_S,
    OP_COMPUTE,
    OP_END,
    OP_LOAD,
    OP_STORE,
    PACKINGS,
    PAR_BYTES,
    TAB_BYTES,
    EngineConfig,
)

__all__ = ["ERR_FIELD", "ERR_OPCODE", "ERR_READ", "ERR_WRITE", "REGS", "DepthEngine", "insn_layout"]

REGS = {"CTRL": 0x00, "STATUS": 0x04, "PROG_ADDR": 0x08, "CYCLES": 0x0C, "INSNS": 0x10, "PC": 0x14, "INFO": 0x18,
        "BEATS": 0x1C, "LD_BUSY": 0x20, "CP_BUSY": 0x24, "ST_BUSY": 0x28, "RD_WORDS": 0x2C, "WR_WORDS": 0x30}
ERR_OPCODE, ERR_FIELD, ERR_READ, ERR_WRITE = 1, 2, 3, 4
W = 64  # memory word bits


def _layout(fields) -> data.StructLayout:
    return data.StructLayout({n: (b if isinstance(b, int) else _layout(b)) for n, b in fields})


def insn_layout(op: int) -> data.StructLayout:
    """The instruction's fields as an Amaranth layout (the bits :func:`~qsilicon.hw.depth.isa.encode` writes)."""
    return _layout(FIELDS[op])


def _view(op: int, value) -> data.View:
    lay = insn_layout(op)
    return data.View(lay, value[: lay.size])


def _pattern(m, gen: AddrGen, p) -> None:
    m.d.comb += [gen.cfg.base.eq(p.base), gen.cfg.run.eq(p.run), gen.cfg.n0.eq(p.n0), gen.cfg.s0.eq(p.s0),
                 gen.cfg.n1.eq(p.n1), gen.cfg.s1.eq(p.s1), gen.cfg.n2.eq(1), gen.cfg.s2.eq(0)]


class DepthEngine(wiring.Component):
    """The engine for an :class:`~qsilicon.hw.depth.isa.EngineConfig`.

    Members
    -------
    m_axi : Out(axi4_signature(32, 64))
    s_axil : Out(axi4_lite_signature(6))
    irq : Out(1)
    o_tag, o_cp_busy, o_mac : Out
        Tag of the COMPUTE running, compute unit busy, MAC-array beat taken (observation only).
    """

    def __init__(self, cfg: EngineConfig | None = None) -> None:
        cfg = EngineConfig() if cfg is None else cfg
        if not isinstance(cfg, EngineConfig):
            raise TypeError(f"cfg must be an EngineConfig, not {cfg!r}")
        self._cfg = cfg
        super().__init__({"m_axi": Out(axi4_signature(32, W)), "s_axil": Out(axi4_lite_signature(6)),
                          "irq": Out(1), "o_tag": Out(8), "o_cp_busy": Out(1), "o_mac": Out(1)})

    @property
    def cfg(self) -> EngineConfig:
        return self._cfg

    def elaborate(self, platform):  # noqa: C901 (one controller, read top to bottom)
        m = Module()
        cfg = self._cfg
        CO, PX, MW = cfg.co, cfg.px, cfg.max_width
        IB = 8 * INSN_BYTES

        m.submodules.regs = regs = AxiLiteRegs(len(REGS))
        m.submodules.rmux = rmux = AxiReadMux(2, data_width=W, depth=32)
        m.submodules.writer = writer = AxiWriter(data_width=W, depth=32)
        m.submodules.g_ld = g_ld = AddrGen(8)
        m.submodules.g_st = g_st = AddrGen(8)
        # rows = output channels (int8 weights), columns = pixels (uint8 operands)
        nibble = cfg.packing == "nibble"
        # the shift drain: the engine's ASIC results (bench/asic_depth.py) were measured with it
        m.submodules.mac = mac = MacArray(CO, PX, signed(8), unsigned(8), packing="none" if nibble else cfg.packing,
                                          pair4=nibble, drain="shift")
        queues = {}
        for op in (OP_LOAD, OP_COMPUTE, OP_STORE):
            queues[op] = q = fifo.SyncFIFOBuffered(width=IB, depth=4)
            m.submodules[f"q{op}"] = q

        # ------------------------------------------------------------------ memories
        def mem(name, width, depth, gran=None):
            mm = Memory(shape=unsigned(width), depth=depth, init=[])
            m.submodules[name] = mm
            return mm, mm.read_port(), mm.write_port(granularity=gran)

        act, act_r, act_w = mem("act", 8 * MW, cfg.act_depth)
        act_res = act.read_port()  # residual operands of the post-op pipeline
        wgt, wgt_r, wgt_w = mem("wgt", 8 * CO, cfg.wgt_depth)
        par, par_r, par_w = mem("par", 8 * PAR_BYTES, cfg.par_depth)
        tab, tab_r, tab_w = mem("tab", 8 * TAB_BYTES, cfg.tab_depth)
        out, out_r, out_w = mem("out", 16 * MW, cfg.out_depth, gran=16)

        # ------------------------------------------------------------------ bus wiring
        wiring.connect(m, wiring.flipped(self.s_axil), regs.bus)
        join_axi_master(m, self.m_axi, rmux, writer)
        wiring.connect(m, g_ld.o_burst, rmux.i_burst_0)
        wiring.connect(m, g_st.o_burst, writer.i_burst)

        # ------------------------------------------------------------------ status and tokens
        busy, done, error = Signal(), Signal(), Signal()
        cause = Signal(4)
        pc, cycles, insns = Signal(32), Signal(32), Signal(32)
        beats, ld_busy_c, cp_busy_c, st_busy_c, rd_words, wr_words = (Signal(32, name=n) for n in (
            "beats", "ld_busy_c", "cp_busy_c", "st_busy_c", "rd_words", "wr_words"))
        reg = regs.reg_i
        m.d.comb += [
            reg[1].eq(Cat(busy, done, error, Const(0, 5), cause)), reg[2].eq(regs.reg_o[2]), reg[3].eq(cycles),
            reg[4].eq(insns), reg[5].eq(pc),
            reg[6].eq(Cat(Const(CO, 8), Const(PX, 8), Const(MW, 8), Const(PACKINGS.index(cfg.packing), 8))),
            reg[7].eq(beats), reg[8].eq(ld_busy_c), reg[9].eq(cp_busy_c), reg[10].eq(st_busy_c),
            reg[11].eq(rd_words), reg[12].eq(wr_words), self.irq.eq(done),
        ]
        with m.If(busy):
            m.d.sync += cycles.eq(cycles + 1)
        tok = {n: Signal(8, name=f"tok_{n}") for n in ("ld2cp", "cp2ld", "cp2st", "st2cp")}
        inc = {n: Signal(name=f"inc_{n}") for n in tok}
        dec = {n: Signal(name=f"dec_{n}") for n in tok}
        for n, t in tok.items():
            m.d.sync += t.eq(t + inc[n] - dec[n])
        start = Signal()

        # ------------------------------------------------------------------ dispatcher
        ibits = Signal(IB)
        words = Signal(3)
        op = ibits[:4]
        lv = ibits
        L, C, S = _view(OP_LOAD, lv), _view(OP_COMPUTE, lv), _view(OP_STORE, lv)
        nb_max = Array([Const(MW, 8), Const(CO, 8), Const(PAR_BYTES, 8), Const(TAB_BYTES, 8)])

        def seg_ok(seg):
            return (seg.ch == 0) | ((seg.in_w >= 1) & (seg.in_w <= MW) & ~(seg.up & (C.stride != 1)))

        ld_ok = (~L.pop_prev & ~L.push_prev & (L.mode <= MODE_NIBBLE_S) & (L.nbytes >= 1)
                 & (L.nbytes <= nb_max[L.mem]))
        cp_ok = (((C.k == 1) | (C.k == 3)) & ((C.stride == 1) | (C.stride == 2)) & (C.fmt <= FMT_S16)
                 & (~C.encode | (C.fmt == FMT_U8)) & (C.n_co >= 1) & (C.n_co <= CO) & (C.out_w >= 1)
                 & (C.out_w <= MW) & (C.out_h >= 1) & seg_ok(C.seg0) & seg_ok(C.seg1) & (C.seg0.ch != 0)
                 & ~(C.pair & (C.decode | Const(not nibble)))
                 & ~(C.pair_out & ((C.fmt != FMT_U4) | C.encode | C.res)))
        st_ok = ~S.pop_next & ~S.push_next & (S.fmt <= FMT_S16) & (S.width >= 1) & (S.width <= MW)
        legal = Mux(op == OP_LOAD, ld_ok, Mux(op == OP_COMPUTE, cp_ok, Mux(op == OP_STORE, st_ok, 1)))
        unit_idle = Signal()  # every queue empty and every unit idle (set below)
        fetch, fdata = rmux.i_burst_1, rmux.o_data_1
        m.d.comb += [fetch.payload.addr.eq(pc), fetch.payload.beats.eq(INSN_BYTES // 8)]
        axi_err = rmux.error | writer.error
        for q in queues.values():
            m.d.comb += q.w_data.eq(ibits)

        with m.FSM(name="dispatch"):
            with m.State("IDLE"), m.If(regs.wrote[0] & regs.reg_o[0][0]):
                m.d.sync += [busy.eq(1), done.eq(0), error.eq(0), cause.eq(0), cycles.eq(0), insns.eq(0),
                             pc.eq(Cat(Const(0, 5), regs.reg_o[2][5:])), beats.eq(0), ld_busy_c.eq(0),
                             cp_busy_c.eq(0), st_busy_c.eq(0), rd_words.eq(0), wr_words.eq(0)]
                m.d.sync += [t.eq(0) for t in tok.values()]
                m.d.comb += [rmux.clear.eq(1), writer.clear.eq(1), start.eq(1)]
                m.next = "FETCH"
            with m.State("FETCH"):
                m.d.comb += fetch.valid.eq(1)
                with m.If(fetch.ready):
                    m.d.sync += words.eq(0)
                    m.next = "FETCH_DATA"
            with m.State("FETCH_DATA"):
                m.d.comb += fdata.ready.eq(1)
                with m.If(fdata.valid):
                    m.d.sync += [ibits.eq(Cat(ibits[W:], fdata.payload)), words.eq(words + 1)]
                    with m.If(words == INSN_BYTES // 8 - 1):
                        m.next = "DECODE"
                with m.If(axi_err):
                    m.next = "AXI_ERROR"
            with m.State("DECODE"):
                with m.If(op > OP_STORE):
                    m.d.sync += cause.eq(ERR_OPCODE)
                    m.next = "DRAIN_ERROR"
                with m.Elif(~legal):
                    m.d.sync += cause.eq(ERR_FIELD)
                    m.next = "DRAIN_ERROR"
                with m.Elif(op == OP_END), m.If(unit_idle):
                    m.d.sync += [busy.eq(0), done.eq(1), insns.eq(insns + 1)]
                    m.next = "IDLE"
                with m.Elif(~L.barrier | unit_idle):
                    for op_, q in queues.items():
                        with m.If(op == op_):
                            m.d.comb += q.w_en.eq(1)
                            with m.If(q.w_rdy):
                                m.d.sync += [pc.eq(pc + INSN_BYTES), insns.eq(insns + 1)]
                                m.next = "FETCH"
                with m.If(axi_err):
                    m.next = "AXI_ERROR"
            with m.State("DRAIN_ERROR"), m.If(unit_idle | axi_err):
                m.d.sync += [busy.eq(0), done.eq(1), error.eq(1)]
                m.next = "IDLE"
            with m.State("AXI_ERROR"):
                m.d.sync += [busy.eq(0), done.eq(1), error.eq(1), cause.eq(Mux(rmux.error, ERR_READ, ERR_WRITE))]
                m.next = "IDLE"

        # ------------------------------------------------------------------ load unit
        lq = queues[OP_LOAD]
        li = Signal(insn_layout(OP_LOAD))
        _pattern(m, g_ld, li.dram)
        ld_busy = Signal()
        lw, l0, l1 = Signal(16), Signal(16), Signal(16)  # word in run, run index i0, i1
        lcount = Signal(16)  # words written to the on-chip memory
        WB = max(MW, CO, PAR_BYTES, TAB_BYTES)  # widest on-chip word (bytes)
        lpos = Signal(7)
        lreg = Signal(8 * (WB + 16))
        lin = rmux.o_data_0
        # unpacker (each value one signal: Amaranth re-emits an expression wherever it is used)
        w_in = lin.payload
        nib, elems, merged, word = Signal(128), Signal(128), Signal(8 * (WB + 16)), Signal(8 * WB)
        newpos, emit, run_end = Signal(8), Signal(), Signal()
        m.d.comb += [
            nib.eq(Cat(*(Cat(w_in[4 * i : 4 * i + 4], Mux(li.mode == MODE_NIBBLE_S, w_in[4 * i + 3].replicate(4),
                                                          Const(0, 4))) for i in range(16)))),
            elems.eq(Mux(li.mode == MODE_BYTES, w_in, nib)),  # 8 or 16 bytes
            newpos.eq(lpos + Mux(li.mode == MODE_BYTES, 8, 16)),
            merged.eq(lreg | (elems << (lpos * 8))[: 8 * (WB + 16)]),
            run_end.eq(lw == li.dram.run - 1),
            emit.eq((newpos >= li.nbytes) | (run_end & li.flush & (newpos != 0))),
            word.eq(Cat(*(Mux(i < li.nbytes, merged[8 * i : 8 * i + 8], 0) for i in range(WB)))),
        ]
        lq_view = _view(OP_LOAD, lq.r_data)
        with m.FSM(name="load"):
            with m.State("IDLE"):
                ok = lq.r_rdy & (~lq_view.pop_next | (tok["cp2ld"] != 0))
                with m.If(ok):
                    m.d.comb += [lq.r_en.eq(1), dec["cp2ld"].eq(lq_view.pop_next)]
                    m.d.sync += [li.eq(lq_view), lw.eq(0), l0.eq(0), l1.eq(0), lcount.eq(0), lpos.eq(0),
                                 lreg.eq(0)]
                    m.next = "START"
            with m.State("START"):
                m.d.sync += ld_busy.eq(1)
                m.d.comb += g_ld.start.eq(1)
                with m.If((li.dram.run == 0) | (li.dram.n0 == 0) | (li.dram.n1 == 0)):
                    m.next = "FINISH"
                with m.Else():
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += lin.ready.eq(1)
                with m.If(lin.valid):
                    m.d.sync += rd_words.eq(rd_words + 1)
                    with m.If(emit):
                        m.d.sync += [lreg.eq(0), lpos.eq(0), lcount.eq(lcount + 1)]
                    with m.Else():
                        m.d.sync += [lreg.eq(merged), lpos.eq(newpos)]
                    for mid, port in ((MEM_ACT, act_w), (MEM_WGT, wgt_w), (MEM_PAR, par_w), (MEM_TAB, tab_w)):
                        m.d.comb += [port.addr.eq(li.sram + lcount), port.data.eq(word[: len(port.data)])]
                        m.d.comb += port.en.eq(Mux(emit & (li.mem == mid), -1, 0))
                    with m.If(run_end):
                        m.d.sync += lw.eq(0)
                        with m.If(l0 == li.dram.n0 - 1):
                            m.d.sync += [l0.eq(0), l1.eq(l1 + 1)]
                            with m.If(l1 == li.dram.n1 - 1):
                                m.next = "FINISH"
                        with m.Else():
                            m.d.sync += l0.eq(l0 + 1)
                    with m.Else():
                        m.d.sync += lw.eq(lw + 1)
            with m.State("FINISH"), m.If(g_ld.done):
                m.d.comb += inc["ld2cp"].eq(li.push_next)
                m.d.sync += ld_busy.eq(0)
                m.next = "IDLE"
        with m.If(ld_busy):
            m.d.sync += ld_busy_c.eq(ld_busy_c + 1)

        # ------------------------------------------------------------------ compute unit: operand fetch
        cq = queues[OP_COMPUTE]
        ci = Signal(insn_layout(OP_COMPUTE))
        cq_view = _view(OP_COMPUTE, cq.r_data)
        issuing = Signal()
        t, ox0 = Signal(8), Signal(8)
        sg = Signal()
        ch = Signal(11)
        cg = Signal(12)
        ky, kx = Signal(2), Signal(2)
        wptr = Signal(16)
        cbase = Signal(16)
        segv = Signal(ci.seg0.shape())  # the segment being fetched
        m.d.comb += segv.eq(Mux(sg, ci.seg1.as_value(), ci.seg0.as_value()))
        pad = Mux(ci.k == 3, 1, 0)
        oy = ci.oy0 + t
        # rows: upsampled p = oy + ky - pad in [0, 2 in_h), source p >> 1; else p = oy * s + ky - pad
        p_row = Signal(signed(11))
        m.d.comb += p_row.eq(Mux(segv.up, oy, Mux(ci.stride == 2, oy << 1, oy)) + ky - pad)
        row_lim = Mux(segv.up, segv.in_h << 1, segv.in_h)
        row_ok = (p_row >= 0) & (p_row < row_lim)
        src_row = Mux(segv.up, p_row >> 1, p_row)
        act_addr = (cbase + src_row - segv.row0)[: (cfg.act_depth - 1).bit_length()]
        lane_col, lane_ok = [], []
        for j in range(PX):
            q = Signal(signed(10), name=f"q{j}")
            m.d.comb += q.eq(Mux(segv.up, ox0 + j, Mux(ci.stride == 2, (ox0 + j) << 1, ox0 + j)) + kx - pad)
            lim = Mux(segv.up, segv.in_w << 1, segv.in_w)
            lane_ok.append((q >= 0) & (q < lim))
            lane_col.append(Mux(segv.up, q >> 1, q)[: (MW - 1).bit_length()])
        seg_last = Mux(sg, 1, ci.seg1.ch == 0)
        k_last = (kx == ci.k - 1) & (ky == ci.k - 1)
        tile_last = k_last & (ch == segv.ch - 1) & seg_last

        # pipeline: stage 1 (memories read), stage 2 (operand register = MAC input)
        op_valid = Signal()
        adv = ~op_valid | mac.i_op.ready
        s1_valid, s1_last, s1_row_ok = Signal(), Signal(), Signal()
        s1_col = [Signal((MW - 1).bit_length(), name=f"s1_col{j}") for j in range(PX)]
        s1_ok = [Signal(name=f"s1_ok{j}") for j in range(PX)]
        s1_dec = Signal()
        # the buffers are read only for beats being issued (and the tables only when decoding)
        m.d.comb += [act_r.addr.eq(act_addr), act_r.en.eq(adv & issuing), tab_r.addr.eq(ci.tab + cg),
                     tab_r.en.eq(adv & issuing & ci.decode), wgt_r.addr.eq(ci.wgt + wptr), wgt_r.en.eq(adv & issuing)]
        with m.If(adv):
            m.d.sync += [s1_valid.eq(issuing), s1_last.eq(tile_last), s1_row_ok.eq(row_ok), s1_dec.eq(ci.decode)]
            m.d.sync += [s1_col[j].eq(lane_col[j]) for j in range(PX)]
            m.d.sync += [s1_ok[j].eq(lane_ok[j]) for j in range(PX)]
        row_bytes = Array(act_r.data[8 * i : 8 * i + 8] for i in range(MW))
        table = Array(tab_r.data[8 * i : 8 * i + 8] for i in range(16))
        opa = Signal(data.ArrayLayout(signed(8), CO))
        opw = Signal(data.ArrayLayout(unsigned(8), PX))
        op_last = Signal()
        with m.If(adv):
            m.d.sync += [op_valid.eq(s1_valid), op_last.eq(s1_last), opa.as_value().eq(wgt_r.data)]
            for j in range(PX):
                v = Signal(8, name=f"v{j}")
                m.d.comb += v.eq(row_bytes[s1_col[j]])
                m.d.sync += opw[j].eq(Mux(s1_row_ok & s1_ok[j], Mux(s1_dec, table[v[:4]], v), 0))
        m.d.comb += [mac.i_op.valid.eq(op_valid), mac.i_op.payload.a.eq(opa), mac.i_op.payload.w.eq(opw),
                     mac.i_op.payload.last.eq(op_last)]
        if nibble:
            m.d.comb += mac.i_op.payload.pair.eq(ci.pair)
        with m.If(mac.i_op.valid & mac.i_op.ready):
            m.d.sync += beats.eq(beats + 1)
        m.d.comb += [self.o_mac.eq(mac.i_op.valid & mac.i_op.ready), self.o_tag.eq(ci.tag)]

        # issue counters
        with m.If(adv & issuing):
            with m.If(~k_last):
                m.d.sync += wptr.eq(wptr + 1)
                with m.If(kx == ci.k - 1):
                    m.d.sync += [kx.eq(0), ky.eq(ky + 1)]
                with m.Else():
                    m.d.sync += kx.eq(kx + 1)
            with m.Else():
                m.d.sync += [kx.eq(0), ky.eq(0)]
                with m.If(ch != segv.ch - 1):
                    m.d.sync += [ch.eq(ch + 1), cg.eq(cg + 1), cbase.eq(cbase + segv.band), wptr.eq(wptr + 1)]
                with m.Elif(~seg_last):
                    m.d.sync += [sg.eq(1), ch.eq(0), cg.eq(cg + 1), cbase.eq(ci.seg1.base), wptr.eq(wptr + 1)]
                with m.Else():  # tile done
                    m.d.sync += [sg.eq(0), ch.eq(0), cg.eq(0), cbase.eq(ci.seg0.base), wptr.eq(0)]
                    with m.If(ox0 + PX >= ci.out_w):
                        m.d.sync += [ox0.eq(0), t.eq(t + 1)]
                        with m.If(t == ci.out_h - 1):
                            m.d.sync += issuing.eq(0)
                    with m.Else():
                        m.d.sync += ox0.eq(ox0 + PX)

        # ------------------------------------------------------------------ compute unit: post-ops
        drow = Signal(range(CO))
        dt, dox0 = Signal(8), Signal(8)
        ddone = Signal()
        acc = mac.o_acc
        m.d.comb += [acc.ready.eq(1), par_r.addr.eq(ci.par + drow), par_r.en.eq(acc.valid)]
        p1v, p2v, p3v, p4v, p5v = (Signal(name=f"p{i}v") for i in range(1, 6))
        meta_l = data.StructLayout({"co": range(CO), "t": 8, "ox0": 8})
        p1m, p2m, p3m, p4m, p5m = (Signal(meta_l, name=f"p{i}m") for i in range(1, 6))
        p1a = Signal(data.ArrayLayout(signed(32), PX))
        p2s = Signal(data.ArrayLayout(signed(32), PX))
        p2_m0, p2_shift, p3_shift = Signal(16), Signal(6), Signal(6)
        p3p = Signal(data.ArrayLayout(signed(49), PX))
        p4y = Signal(data.ArrayLayout(signed(17), PX))
        p5y = Signal(data.ArrayLayout(signed(17), PX))
        thr_l = data.ArrayLayout(8, 15)
        p2thr, p3thr, p4thr, p5thr = (Signal(thr_l, name=f"p{i}thr") for i in (2, 3, 4, 5))
        qv, qm, qthr = Signal(name="qv"), Signal(meta_l, name="qm"), Signal(thr_l, name="qthr")  # stage 3b
        qt = Signal(data.ArrayLayout(signed(50), PX))
        m.d.sync += [p1v.eq(acc.valid), p2v.eq(p1v), p3v.eq(p2v), qv.eq(p3v), p4v.eq(qv), p5v.eq(p4v)]
        with m.If(acc.valid):
            m.d.sync += [p1a.eq(acc.payload.data), p1m.co.eq(drow), p1m.t.eq(dt), p1m.ox0.eq(dox0)]
            with m.If(acc.payload.last):
                m.d.sync += drow.eq(0)
                with m.If(dox0 + PX >= ci.out_w):
                    m.d.sync += [dox0.eq(0), dt.eq(dt + 1)]
                    with m.If(dt == ci.out_h - 1):
                        m.d.sync += ddone.eq(1)
                with m.Else():
                    m.d.sync += dox0.eq(dox0 + PX)
            with m.Else():
                m.d.sync += drow.eq(drow + 1)
        pr = par_r.data
        bias, m0, shift = pr[0:32].as_signed(), pr[32:48], pr[48:54]
        m.d.sync += [p2m.eq(p1m), p2_m0.eq(m0), p2_shift.eq(shift), p3_shift.eq(p2_shift), p2thr.eq(pr[56:176]),
                     p3thr.eq(p2thr), qthr.eq(p3thr), p4thr.eq(qthr), p5thr.eq(p4thr), p3m.eq(p2m), qm.eq(p3m),
                     p4m.eq(qm), p5m.eq(p4m)]
        for j in range(PX):
            m.d.sync += [p2s[j].eq((p1a[j] + bias)[:32].as_signed()),
                         p3p[j].eq(p2s[j] * p2_m0)]
        lo = Mux(ci.fmt == FMT_S16, -(1 << 15), 0)
        hi = Mux(ci.fmt == FMT_S16, (1 << 15) - 1, Mux(ci.fmt == FMT_U8, 255, 15))
        for j in range(PX):
            # requant_round's rule (hw/blocks/vector.py; round half up: ((2 v M0 >> shift) + 1) >> 1), over
            # three stages: the product, the shift (stage 3b), the rounding increment and the clamp
            m.d.sync += qt[j].eq((p3p[j] << 1) >> p3_shift)
            r = Signal(signed(50), name=f"rq{j}")
            m.d.comb += r.eq((qt[j] + 1) >> 1)
            m.d.sync += p4y[j].eq(Mux(r < lo, lo, Mux(r > hi, hi, r)))
        # stage 5: residual add.  The act row of this channel and output row is addressed in stage 3,
        # read during stage 3b and its lanes registered beside the requantized values (p4res), so the
        # SRAM's clock-to-out stays out of the adder's path.
        nblk = MW // PX
        m.d.comb += [act_res.addr.eq(ci.res_base + p3m.co * ci.out_h + p3m.t), act_res.en.eq(p3v & ci.res)]
        res_blocks = Array(act_res.data[8 * PX * b : 8 * PX * (b + 1)] for b in range(nblk))
        p4res = Signal(8 * PX)
        m.d.sync += p4res.eq(Mux(ci.res, res_blocks[(qm.ox0 // PX)[: max(1, (nblk - 1).bit_length())]], 0))
        for j in range(PX):
            s_ = Signal(signed(18), name=f"res_sum{j}")
            m.d.comb += s_.eq(p4y[j] + p4res[8 * j : 8 * j + 8])
            m.d.sync += p5y[j].eq(Mux(s_ < lo, lo, Mux(s_ > hi, hi, s_)))
        # stage 6: encode and write.  pair_out: an even channel's u4 codes wait in ``pend`` and go out
        # with the odd channel's (the drain delivers a tile's channels in order), or alone if last.
        lanes = []
        for j in range(PX):
            code = sum((p5y[j] >= p5thr[i]).as_unsigned() for i in range(15))
            lanes.append(Mux(ci.encode, code, p5y[j])[:16])
        pend = Signal(4 * PX)
        odd = p5m.co[0]  # co >= 4
        codes4 = Cat(*(p5y[j][:4] for j in range(PX)))
        paired = Cat(*(Cat(Mux(odd, pend[4 * j : 4 * j + 4], p5y[j][:4]), Mux(odd, p5y[j][:4], 0), Const(0, 8))
                       for j in range(PX)))
        with m.If(p5v & ci.pair_out & ~odd):
            m.d.sync += pend.eq(codes4)
        block = Mux(ci.pair_out, paired, Cat(*lanes))
        out_row = Mux(ci.pair_out, p5m.co >> 1, p5m.co)
        writes = ~ci.pair_out | odd | (p5m.co == ci.n_co - 1)
        lane_en = Cat(*((p5m.ox0 + j < ci.out_w) & (p5m.co < ci.n_co) for j in range(PX)))
        blk = (p5m.ox0 // PX)[: max(1, (nblk - 1).bit_length())]
        m.d.comb += [out_w.addr.eq(ci.out + out_row * ci.out_h + p5m.t), out_w.data.eq(block.replicate(nblk)),
                     out_w.en.eq(Mux(p5v & writes, (lane_en << (blk * PX))[:MW], 0))]
        cp_busy = Signal()
        cci_ok = cq.r_rdy & (~cq_view.pop_prev | (tok["ld2cp"] != 0)) & (~cq_view.pop_next | (tok["st2cp"] != 0))
        with m.FSM(name="compute"):
            with m.State("IDLE"), m.If(cci_ok):
                m.d.comb += [cq.r_en.eq(1), dec["ld2cp"].eq(cq_view.pop_prev), dec["st2cp"].eq(cq_view.pop_next)]
                m.d.sync += [ci.eq(cq_view), t.eq(0), ox0.eq(0), sg.eq(0), ch.eq(0), cg.eq(0), ky.eq(0),
                             kx.eq(0), wptr.eq(0), cbase.eq(cq_view.seg0.base), issuing.eq(1), cp_busy.eq(1),
                             drow.eq(0), dt.eq(0), dox0.eq(0), ddone.eq(0)]
                m.next = "RUN"
            with m.State("RUN"), m.If(ddone & ~p1v & ~p2v & ~p3v & ~qv & ~p4v & ~p5v):
                m.d.comb += [inc["cp2ld"].eq(ci.push_prev), inc["cp2st"].eq(ci.push_next)]
                m.d.sync += cp_busy.eq(0)
                m.next = "IDLE"
        with m.If(cp_busy):
            m.d.sync += cp_busy_c.eq(cp_busy_c + 1)
        m.d.comb += self.o_cp_busy.eq(cp_busy)

        # ------------------------------------------------------------------ store unit
        sq = queues[OP_STORE]
        si = Signal(insn_layout(OP_STORE))
        sq_view = _view(OP_STORE, sq.r_data)
        _pattern(m, g_st, si.dram)
        st_busy = Signal()
        sidx = Signal(16)
        s0c, s1c = Signal(16), Signal(16)
        sj = Signal(16)
        m.d.comb += out_r.addr.eq(si.out + sidx)
        orow = out_r.data
        lane_on = [Signal(name=f"st_on{i}") for i in range(MW)]
        for i in range(MW):
            m.d.comb += lane_on[i].eq(i < si.width)
        u4 = [Cat(*(Mux(lane_on[16 * j + i], orow[16 * (16 * j + i) : 16 * (16 * j + i) + 4], 0) for i in range(16)))
              for j in range(MW // 16)] if MW >= 16 else []
        u8 = [Cat(*(Mux(lane_on[8 * j + i], orow[16 * (8 * j + i) : 16 * (8 * j + i) + 8], 0) for i in range(8)))
              for j in range(MW // 8)]
        s16 = [Cat(*(Mux(lane_on[4 * j + i], orow[16 * (4 * j + i) : 16 * (4 * j + i) + 16], 0) for i in range(4)))
               for j in range(MW // 4)]

        def pick(words_, j):
            n = len(words_)
            return Mux(j < n, Array(words_ + [Const(0, W)] * ((1 << (n - 1).bit_length()) - n))
                       [j[: max(1, (n - 1).bit_length())]], 0)

        sword = Mux(si.fmt == FMT_U4, pick(u4, sj), Mux(si.fmt == FMT_U8, pick(u8, sj), pick(s16, sj)))
        with m.FSM(name="store"):
            with m.State("IDLE"):
                ok = sq.r_rdy & (~sq_view.pop_prev | (tok["cp2st"] != 0))
                with m.If(ok):
                    m.d.comb += [sq.r_en.eq(1), dec["cp2st"].eq(sq_view.pop_prev)]
                    m.d.sync += [si.eq(sq_view), sidx.eq(0), s0c.eq(0), s1c.eq(0), sj.eq(0), st_busy.eq(1)]
                    m.next = "START"
            with m.State("START"):
                m.d.comb += g_st.start.eq(1)
                with m.If((si.dram.run == 0) | (si.dram.n0 == 0) | (si.dram.n1 == 0)):
                    m.next = "FINISH"
                with m.Else():
                    m.next = "READ"
            with m.State("READ"):
                m.d.comb += out_r.en.eq(1)
                m.next = "EMIT"
            with m.State("EMIT"):
                m.d.comb += [writer.i_data.valid.eq(1), writer.i_data.payload.eq(sword)]
                with m.If(writer.i_data.ready):
                    m.d.sync += [sj.eq(sj + 1), wr_words.eq(wr_words + 1)]
                    with m.If(sj == si.dram.run - 1):
                        m.d.sync += [sj.eq(0), sidx.eq(sidx + 1)]
                        m.next = "READ"
                        with m.If(s0c == si.dram.n0 - 1):
                            m.d.sync += [s0c.eq(0), s1c.eq(s1c + 1)]
                            with m.If(s1c == si.dram.n1 - 1):
                                m.next = "FINISH"
                        with m.Else():
                            m.d.sync += s0c.eq(s0c + 1)
            with m.State("FINISH"), m.If(g_st.done & writer.idle):
                m.d.comb += inc["st2cp"].eq(si.push_prev)
                m.d.sync += st_busy.eq(0)
                m.next = "IDLE"
        with m.If(st_busy):
            m.d.sync += st_busy_c.eq(st_busy_c + 1)

        m.d.comb += unit_idle.eq(~lq.r_rdy & ~cq.r_rdy & ~sq.r_rdy & ~ld_busy & ~cp_busy & ~st_busy & rmux.idle
                                 & writer.idle & ~start)
        return m

"""The ViT accelerator, built whole for one :class:`~qsilicon.hw.config.AccelConfig`: top module
``vit_accel``.

A descriptor-driven system on one AXI4 memory port (``8 * lanes`` bits) with AXI4-Lite control
registers and an interrupt:

* the controller fetches 128-byte descriptors (:func:`descriptor_layout`) one after another,
  checks each (an illegal one stops the run with a sticky error code), runs it, and writes its
  cycle count into a log (``LOG_ADDR``) before fetching the next;
* GEMM descriptors run on :class:`~qsilicon.hw.vit.gemm_unit.GemmUnit`: the ``rows x cols``
  array with its activation buffer, weight ring, parameter and feature-map buffers and output
  transposer;
* vector descriptors run on the row unit (LayerNorm, Shiftmax: ``lanes`` tokens at a time), the
  element-wise unit (GELU, residual add) and a ``lanes x lanes`` byte transposer (token-blocked
  ``V`` to row-major), each fed by up to three address-pattern readers and writing through an
  address-pattern writer;
* five readers share the read channels (:class:`~qsilicon.hw.blocks.axi.AxiReadMux`, fixed
  priority: :data:`CLIENTS`); every write goes through one coalescing writer
  (:class:`~qsilicon.hw.blocks.axi.AxiWordWriter`).

Tensors are token-blocked (:mod:`qsilicon.hw.vit.compiler`): a memory word holds one feature of
``lanes`` consecutive tokens.

Registers (AxiLite, 32 bits, byte offsets)
-------------------------------------------
======  ==========  ===========================================================================
0x00    CTRL        write bit 0 = 1: start (ignored while busy)
0x04    STATUS      bit 0 busy, bit 1 done, bit 2 error; bits 11:8 the cause: 1 illegal opcode,
                    2 read response, 3 write response, 4 illegal GEMM descriptor, 5 input larger
                    than the activation buffer, 6 illegal vector descriptor, 7 no progress for
                    ``WATCHDOG`` cycles; read-only
0x08    PROG_ADDR   byte address of the first descriptor (128-byte aligned)
0x0C    CYCLES      cycles of the last run (start to done); read-only
0x10    OPS         descriptors completed in the last run; read-only
0x14    PC          address of the descriptor being run (or that stopped it); read-only
0x18    INFO        lanes 7:0, rows 15:8, cols 23:16, packing 25:24 (0 none, 1 dsp2, 2 dot2), row buffer
                    29:26 (log2 of its depth; 0: none); read-only
0x1C    LOG_ADDR    where descriptor ``i`` writes its cycle count (word ``i``); 0 = no log
0x20    WATCHDOG    cycles without any memory beat or unit progress that stop a run (0: 2**20); keep it
                    above 300 (the row unit's divider and square root run that long between passes)
0x24    RD_WORDS    memory words read in the last run; read-only
0x28    WR_WORDS    memory words written in the last run; read-only
0x2C    MAC_BEATS   operand beats that entered the array in the last run; read-only
0x30    INFO2       weight buffer KiB 15:0, activation buffer KiB 31:16; read-only
======  ==========  ===========================================================================

``irq`` is high from the end of a run until the next start.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, ResetInserter, Shape, Signal, signed
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from ..blocks.axi import (
    AddrGen,
    AxiLiteRegs,
    AxiReadMux,
    AxiWordWriter,
    BurstWords,
    addr_pattern_layout,
    axi4_lite_signature,
    axi4_signature,
)
from ..blocks.rowunit import ROW_LN, ROW_SOFTMAX, RowUnit
from ..blocks.transpose import Transposer
from ..blocks.vector import OP_ADD, OP_GELU, ElementwiseUnit
from ..config import ACCEL_PACKINGS, AccelConfig
from .gemm_unit import CAUSE_ABUF, GELU_FIELDS, GemmUnit, gemm_desc_layout, gemm_illegal

__all__ = [
    "CAUSE_ABUF", "CAUSE_GEMM", "CAUSE_OPCODE", "CAUSE_READ", "CAUSE_STALL", "CAUSE_VECTOR", "CAUSE_WRITE",
    "DESC_BYTES", "OPCODES", "OP_ADD_RES", "OP_END", "OP_GELU_Q", "OP_GEMM", "OP_LN", "OP_SOFTMAX", "OP_TRANSPOSE",
    "REGS", "VitAccel", "decode_info", "descriptor_layout", "info_words", "vector_desc_layout",
]

OP_END, OP_GEMM, OP_LN, OP_SOFTMAX, OP_GELU_Q, OP_ADD_RES, OP_TRANSPOSE = range(7)
OPCODES = {"end": OP_END, "gemm": OP_GEMM, "layernorm": OP_LN, "softmax": OP_SOFTMAX, "gelu": OP_GELU_Q,
           "add": OP_ADD_RES, "transpose": OP_TRANSPOSE}
REGS = {"CTRL": 0x00, "STATUS": 0x04, "PROG_ADDR": 0x08, "CYCLES": 0x0C, "OPS": 0x10, "PC": 0x14, "INFO": 0x18,
        "LOG_ADDR": 0x1C, "WATCHDOG": 0x20, "RD_WORDS": 0x24, "WR_WORDS": 0x28, "MAC_BEATS": 0x2C, "INFO2": 0x30}
CAUSE_OPCODE, CAUSE_READ, CAUSE_WRITE, CAUSE_GEMM, CAUSE_VECTOR, CAUSE_STALL = 1, 2, 3, 4, 6, 7
#: Bytes per descriptor.
DESC_BYTES = 128
#: The read clients, in priority order: a GEMM's input first (it gates every token tile), then its
#: feature map, its parameters, its weights; a vector operation's three readers in the same order.
CLIENTS = {"rd0": 0, "fm": 1, "rd2": 2, "rd1": 3, "fetch": 4}
#: Words a GEMM with a fused GELU has inside the element-wise unit at most (its output FIFO).
FUSE_DEPTH = 8
#: The watchdog's limit when the WATCHDOG register is 0.
WATCHDOG_DEFAULT = 1 << 20


def info_words(cfg: AccelConfig) -> tuple[int, int]:
    """The ``INFO`` and ``INFO2`` words of a design (read-only registers: what it was built as)."""
    info = (cfg.lanes | (cfg.rows << 8) | (cfg.cols << 16) | (ACCEL_PACKINGS.index(cfg.packing) << 24)
            | (cfg.rowbuf.bit_length() - 1 if cfg.rowbuf else 0) << 26)
    return info, cfg.wbuf_kib | (cfg.abuf_kib << 16)


def decode_info(info: int, info2: int) -> dict:
    """The design an accelerator reports in ``INFO`` and ``INFO2``: every
    :class:`~qsilicon.hw.config.AccelConfig` field but the clock (``packing`` None for a code no
    design has)."""
    rb, pk = (info >> 26) & 15, (info >> 24) & 3
    return {"rows": (info >> 8) & 0xFF, "cols": (info >> 16) & 0xFF,
            "packing": ACCEL_PACKINGS[pk] if pk < len(ACCEL_PACKINGS) else None, "lanes": info & 0xFF,
            "wbuf_kib": info2 & 0xFFFF, "abuf_kib": info2 >> 16, "rowbuf": 1 << rb if rb else 0}


def vector_desc_layout() -> data.StructLayout:
    """A vector descriptor: the patterns of the three readers and the writer, the row length ``k``
    (LayerNorm, Shiftmax), ``r0_words`` memory words per beat of reader 0 (2: int16 values), the
    units' constants, and ``buf``: LayerNorm or Shiftmax rows read once, passes 2 and 3 from the
    row unit's buffer (designs with ``rowbuf``, rows of at most ``rowbuf`` elements)."""
    return data.StructLayout({
        "op": 4, "r0_words": 2, "k": 16,
        "rd0": addr_pattern_layout(), "rd1": addr_pattern_layout(), "rd2": addr_pattern_layout(),
        "wr": addr_pattern_layout(),
        "m0": 16, "shift": 6, "sm_k": 3, "q_b": signed(16), "q_c": 24, "gelu_b": signed(24), "gelu_one": signed(32),
        "buf": 1,
    })


def descriptor_layout() -> data.UnionLayout:
    """One descriptor: its ``op`` (the first 4 bits of both views) decides the view.  A fused
    GEMM's GELU constants are the vector view's own bits (:data:`~.gemm_unit.GELU_FIELDS`)."""
    vec, gemm = vector_desc_layout(), gemm_desc_layout()
    for name in GELU_FIELDS:
        if (Shape.cast(vec[name].shape), vec[name].offset) != (Shape.cast(gemm[name].shape), gemm[name].offset):
            raise AssertionError(f"the GEMM view's {name} is not the vector view's")
    return data.UnionLayout({"vec": vec, "gemm": gemm})


class _Gearbox(wiring.Component):
    """Words in, beats of ``n`` words out (word 0 in the low bits)."""

    def __init__(self, width: int, max_words: int) -> None:
        self._w, self._max = width, max_words
        super().__init__({"i": In(stream.Signature(width)), "o": Out(stream.Signature(width * max_words)),
                          "n": In(range(max_words + 1))})

    def elaborate(self, platform):
        m = Module()
        w = self._w
        cnt = Signal(range(self._max + 1))
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        take = self.i.valid & (~self.o.valid | self.o.ready)
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(take):
            with m.Switch(cnt):
                for c in range(self._max):
                    with m.Case(c):
                        m.d.sync += self.o.payload[c * w : (c + 1) * w].eq(self.i.payload)
            with m.If(cnt + 1 >= self.n):
                m.d.sync += [cnt.eq(0), self.o.valid.eq(1)]
            with m.Else():
                m.d.sync += cnt.eq(cnt + 1)
        return m


class VitAccel(wiring.Component):
    """The whole ViT accelerator of one design point.

    Parameters
    ----------
    config : AccelConfig

    Members
    -------
    m_axi : Out(axi4_signature(32, 8 * lanes))
    s_axil : Out(axi4_lite_signature(6))
        The slave port (the signature is written from the slave side).
    irq : Out(1)
    """

    def __init__(self, config: AccelConfig) -> None:
        if not isinstance(config, AccelConfig):
            raise TypeError(f"Config must be an AccelConfig, not {config!r}")
        self._cfg = config
        super().__init__({"m_axi": Out(axi4_signature(32, 8 * config.lanes)), "s_axil": Out(axi4_lite_signature(6)),
                          "irq": Out(1)})

    @property
    def config(self) -> AccelConfig:
        return self._cfg

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        L = cfg.lanes
        W = 8 * L
        wb = L

        # After an error the bus is brought to rest, then everything but the registers is reset
        # (`soft`): the next run starts from a clean datapath.
        soft, halt = Signal(), Signal()  # halt: draining after an error, the address generators held in reset
        gen_rst = Signal()
        m.d.comb += gen_rst.eq(soft | halt)
        m.submodules.regs = regs = AxiLiteRegs(len(REGS))
        rmux = AxiReadMux(5, data_width=W, depth=32, priority=True)
        writer = AxiWordWriter(data_width=W, depth=32)
        gens = {name: AddrGen(wb) for name in ("rd0", "rd1", "rd2", "wr", "fm")}
        gemm, rows, ew = GemmUnit(cfg), RowUnit(L, buf_depth=cfg.rowbuf), ElementwiseUnit(L)
        gb0, bw, tr = _Gearbox(W, 2), BurstWords(wb), Transposer(L)
        # a GELU fused into a GEMM: the addresses of the words inside the element-wise unit (it holds
        # at most FUSE_DEPTH: its output FIFO's depth, `pending`)
        fa = fifo.SyncFIFOBuffered(width=32, depth=FUSE_DEPTH)
        for name, part in [("rmux", rmux), ("writer", writer), ("gemm", gemm), ("rows", rows), ("ew", ew),
                           ("gb0", gb0), ("bw", bw), ("fuse_addr", fa), ("transposer", tr)]:
            m.submodules[name] = ResetInserter(soft)(part)
        for name, g in gens.items():
            m.submodules[f"g_{name}"] = ResetInserter(gen_rst)(g)

        # ------------------------------------------------------------------ bus wiring
        wiring.connect(m, wiring.flipped(self.s_axil), regs.bus)
        for name in ("araddr", "arlen", "arsize", "arburst", "arvalid", "rready"):
            m.d.comb += getattr(self.m_axi, name).eq(getattr(rmux.axi, name))
        for name in ("arready", "rdata", "rresp", "rlast", "rvalid"):
            m.d.comb += getattr(rmux.axi, name).eq(getattr(self.m_axi, name))
        for name in ("awaddr", "awlen", "awsize", "awburst", "awvalid", "wdata", "wstrb", "wlast", "wvalid", "bready"):
            m.d.comb += getattr(self.m_axi, name).eq(getattr(writer.axi, name))
        for name in ("awready", "wready", "bresp", "bvalid"):
            m.d.comb += getattr(writer.axi, name).eq(getattr(self.m_axi, name))
        for name, i in CLIENTS.items():
            if name != "fetch":
                wiring.connect(m, gens[name].o_burst, getattr(rmux, f"i_burst_{i}"))
        wiring.connect(m, gens["wr"].o_burst, bw.i_burst)
        m.d.comb += bw.gen_done.eq(gens["wr"].done)

        # ------------------------------------------------------------------ controller
        desc = Signal(descriptor_layout())
        vd, gd = desc.vec, desc.gemm
        desc_bits = Signal(8 * DESC_BYTES)
        desc_words = DESC_BYTES // wb
        words = Signal(range(desc_words + 1))
        pc = Signal(32)
        busy, done, error = Signal(), Signal(), Signal()
        cause = Signal(4)
        cycles, ops, op_cycles = Signal(32), Signal(32), Signal(32)
        rd_words, wr_words, mac_beats = Signal(32), Signal(32), Signal(32)
        op = vd.op
        m.d.comb += desc.as_value().eq(desc_bits[: descriptor_layout().size])
        reg, reg_o = regs.reg_i, regs.reg_o
        idx = {name: i for i, name in enumerate(REGS)}
        info, info2 = (Const(v, 32) for v in info_words(cfg))
        m.d.comb += [
            reg[idx["STATUS"]].eq(Cat(busy, done, error, Const(0, 5), cause)),
            reg[idx["PROG_ADDR"]].eq(reg_o[idx["PROG_ADDR"]]), reg[idx["CYCLES"]].eq(cycles),
            reg[idx["OPS"]].eq(ops), reg[idx["PC"]].eq(pc), reg[idx["INFO"]].eq(info),
            reg[idx["LOG_ADDR"]].eq(reg_o[idx["LOG_ADDR"]]), reg[idx["WATCHDOG"]].eq(reg_o[idx["WATCHDOG"]]),
            reg[idx["RD_WORDS"]].eq(rd_words), reg[idx["WR_WORDS"]].eq(wr_words),
            reg[idx["MAC_BEATS"]].eq(mac_beats),
            reg[idx["INFO2"]].eq(info2),
            self.irq.eq(done),
        ]
        log_addr = reg_o[idx["LOG_ADDR"]]
        wd_reg = reg_o[idx["WATCHDOG"]]
        with m.If(busy):
            m.d.sync += cycles.eq(cycles + 1)
        with m.If(busy & self.m_axi.rvalid & self.m_axi.rready):
            m.d.sync += rd_words.eq(rd_words + 1)
        with m.If(busy & self.m_axi.wvalid & self.m_axi.wready):
            m.d.sync += wr_words.eq(wr_words + 1)
        with m.If(gemm.beat):
            m.d.sync += mac_beats.eq(mac_beats + 1)

        fetch, fdata = rmux.i_burst_4, rmux.o_data_4
        m.d.comb += [fetch.payload.addr.eq(pc), fetch.payload.beats.eq(desc_words)]
        is_gemm = op == OP_GEMM
        for name in ("rd0", "rd1", "rd2"):
            m.d.comb += gens[name].cfg.eq(Mux(is_gemm, {"rd0": gemm.x_cfg, "rd1": gemm.w_cfg, "rd2": gemm.p_cfg}[name],
                                              getattr(vd, name)))
        m.d.comb += [gens["wr"].cfg.eq(vd.wr), gens["fm"].cfg.eq(gemm.f_cfg)]
        m.d.comb += [gemm.desc.eq(gd), gemm.w_done.eq(gens["rd1"].done), gemm.p_done.eq(gens["rd2"].done),
                     gemm.x_done.eq(gens["rd0"].done & gens["fm"].done & ~gemm.x_start)]
        vec_start = Signal()
        m.d.comb += [
            gens["rd0"].start.eq(vec_start | gemm.x_start), gens["rd1"].start.eq(vec_start | gemm.w_start),
            gens["rd2"].start.eq(vec_start | gemm.p_start), gens["wr"].start.eq(vec_start),
            gens["fm"].start.eq(gemm.f_start),
        ]
        gens_done = Cat(*(g.done for g in gens.values())).all()
        axi_err = rmux.error | writer.error

        # Legality, registered while the descriptor's last word arrives (DECODE reads the flags, so
        # the checks' comparators and carry chains end at flip-flops instead of running on into the
        # controller's decisions and the units' start).  The fields lie in the words before the
        # last: the checks see the shifted words, the same bits DECODE's descriptor holds.
        nxt = descriptor_layout()(Cat(desc_bits[W:], fdata.payload)[: descriptor_layout().size])
        nop, nvd = nxt.vec.op, nxt.vec
        # vector descriptors: rows of 1..4095, int16 beats for LayerNorm, int8 for Shiftmax
        n_vec_bad = ((nop == OP_LN) & (nvd.r0_words != 2)) | ((nop == OP_SOFTMAX) & (nvd.r0_words != 1)) \
            | ((nop == OP_LN) | (nop == OP_SOFTMAX)) & ((nvd.k == 0) | (nvd.k > 4095)) \
            | ((nop == OP_ADD_RES) & (nvd.r0_words != 2)) | ((nop == OP_TRANSPOSE) & (nvd.r0_words != 1))
        # the row buffer: LayerNorm and Shiftmax rows it holds, on a design that has one
        if cfg.rowbuf:
            n_vec_bad = n_vec_bad | nvd.buf & (~((nop == OP_LN) | (nop == OP_SOFTMAX)) | (nvd.k > cfg.rowbuf))
        else:
            n_vec_bad = n_vec_bad | nvd.buf
        vec_bad, gemm_bad = Signal(), Signal()

        # watchdog: any memory beat, array beat or unit handshake is progress
        progress = (self.m_axi.rvalid & self.m_axi.rready) | (self.m_axi.wvalid & self.m_axi.wready) | gemm.beat \
            | (rows.i_x.valid & rows.i_x.ready) | (ew.i_x.valid & ew.i_x.ready) | (rows.o_y.valid & rows.o_y.ready)
        if cfg.rowbuf:
            progress = progress | rows.step  # passes 2 and 3 reading the row buffer
        stall = Signal(32)
        limit = Mux(wd_reg == 0, WATCHDOG_DEFAULT, wd_reg)

        log_word = Signal()  # the writer takes the cycle log word instead of the datapath's
        units_idle = ~gb0.o.valid & ~bw.busy & ~rows.busy & ~tr.busy
        fuse = is_gemm & gd.gelu
        op_done = Mux(is_gemm, ~gemm.busy & (fa.level == 0), units_idle) & gens_done & rmux.idle & writer.idle

        def stop(c):
            """An error: record it and bring the bus to rest before the datapath is reset."""
            return [error.eq(1), cause.eq(c)]

        with m.FSM():
            with m.State("IDLE"), m.If(regs.wrote[0] & reg_o[0][0]):
                m.d.sync += [busy.eq(1), done.eq(0), error.eq(0), cause.eq(0), cycles.eq(0), ops.eq(0),
                             rd_words.eq(0), wr_words.eq(0), mac_beats.eq(0),
                             pc.eq(Cat(Const(0, 7), reg_o[idx["PROG_ADDR"]][7:]))]
                m.d.comb += [rmux.clear.eq(1), writer.clear.eq(1)]
                m.next = "FETCH"
            with m.State("FETCH"):
                m.d.comb += fetch.valid.eq(1)
                with m.If(fetch.ready):
                    m.d.sync += words.eq(0)
                    m.next = "FETCH_DATA"
            with m.State("FETCH_DATA"):
                m.d.comb += fdata.ready.eq(1)
                with m.If(fdata.valid):
                    m.d.sync += [desc_bits.eq(Cat(desc_bits[W:], fdata.payload)), words.eq(words + 1)]
                    with m.If(words == desc_words - 1):
                        m.d.sync += [vec_bad.eq(n_vec_bad), gemm_bad.eq(gemm_illegal(nxt.gemm, cfg))]
                        m.next = "DECODE"
                with m.If(axi_err):
                    m.next = "AXI_ERROR"
            with m.State("DECODE"):
                m.d.sync += [op_cycles.eq(1), stall.eq(0)]
                with m.If(op == OP_END):
                    m.d.sync += [busy.eq(0), done.eq(1)]
                    m.next = "IDLE"
                with m.Elif(op > OP_TRANSPOSE):
                    m.d.sync += stop(CAUSE_OPCODE)
                    m.next = "DRAIN"
                with m.Elif(is_gemm):
                    with m.If(gemm_bad):
                        m.d.sync += stop(CAUSE_GEMM)
                        m.next = "DRAIN"
                    with m.Else():
                        m.d.comb += gemm.start.eq(1)
                        m.next = "RUN"
                with m.Elif(vec_bad):
                    m.d.sync += stop(CAUSE_VECTOR)
                    m.next = "DRAIN"
                with m.Else():
                    m.d.comb += vec_start.eq(1)
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.sync += [op_cycles.eq(op_cycles + 1), stall.eq(Mux(progress, 0, stall + 1))]
                with m.If(axi_err):
                    m.next = "AXI_ERROR"
                with m.Elif(gemm.overflow):
                    m.d.sync += stop(CAUSE_ABUF)
                    m.next = "DRAIN"
                with m.Elif(stall >= limit):
                    m.d.sync += stop(CAUSE_STALL)
                    m.next = "DRAIN"
                with m.Elif(op_done):
                    with m.If(log_addr == 0):
                        m.d.sync += [pc.eq(pc + DESC_BYTES), ops.eq(ops + 1)]
                        m.next = "FETCH"
                    with m.Else():
                        m.next = "LOG"
            with m.State("LOG"):
                m.d.comb += log_word.eq(1)
                with m.If(writer.i_word.ready):
                    m.next = "LOG_WAIT"
            with m.State("LOG_WAIT"):
                with m.If(axi_err):
                    m.next = "AXI_ERROR"
                with m.Elif(writer.idle):
                    m.d.sync += [pc.eq(pc + DESC_BYTES), ops.eq(ops + 1)]
                    m.next = "FETCH"
            with m.State("AXI_ERROR"):
                m.d.sync += stop(Mux(rmux.error, CAUSE_READ, CAUSE_WRITE))
                m.next = "DRAIN"
            with m.State("DRAIN"):
                # no new bursts (the generators are reset at once), the ones in flight finish
                m.d.comb += [writer.hold.eq(1), halt.eq(1)]
                with m.If(rmux.quiet & writer.quiet):
                    m.d.comb += soft.eq(1)
                    m.d.sync += [busy.eq(0), done.eq(1)]
                    m.next = "IDLE"

        # ------------------------------------------------------------------ GEMM data
        r0, r1, r2, r4 = (getattr(rmux, f"o_data_{CLIENTS[n]}") for n in ("rd0", "rd1", "rd2", "fm"))
        m.d.comb += [gemm.i_x.payload.eq(r0.payload), gemm.i_w.payload.eq(r1.payload),
                     gemm.i_p.payload.eq(r2.payload), gemm.i_f.payload.eq(r4.payload),
                     gemm.i_f.valid.eq(r4.valid), r4.ready.eq(gemm.i_f.ready)]

        # ------------------------------------------------------------------ vector datapath
        m.d.comb += gb0.n.eq(vd.r0_words)
        is_ln, is_sm = op == OP_LN, op == OP_SOFTMAX
        is_gelu, is_add, is_tr = op == OP_GELU_Q, op == OP_ADD_RES, op == OP_TRANSPOSE
        word = gb0.o.payload
        lanes16 = Cat(*(Mux(is_ln, word[16 * i : 16 * i + 16], word[8 * i : 8 * i + 8].as_signed())[:16]
                        for i in range(L)))
        m.d.comb += [
            rows.i_x.payload.as_value().eq(lanes16), rows.i_par.payload.as_value().eq(r2.payload[:32]),
            rows.op.eq(Mux(is_ln, ROW_LN, ROW_SOFTMAX)), rows.n.eq(vd.k), rows.m0.eq(vd.m0),
            rows.shift.eq(vd.shift), rows.k.eq(vd.sm_k), rows.q_b.eq(vd.q_b), rows.q_c.eq(vd.q_c),
            *([rows.buffered.eq(vd.buf)] if cfg.rowbuf else []),
            ew.i_x.payload.a.as_value().eq(gb0.o.payload[: 16 * L]),
            ew.i_x.payload.b.as_value().eq(Mux(is_gemm, gemm.o_word.payload.data, r1.payload)),
            ew.i_x.payload.last.eq(is_gemm & gemm.o_word.payload.last),
            ew.op.eq(Mux(is_add, OP_ADD, OP_GELU)), ew.m0.eq(vd.m0), ew.shift.eq(vd.shift),
            ew.gelu_b.eq(vd.gelu_b), ew.gelu_one.eq(vd.gelu_one),
        ]
        with m.If(is_gemm):
            m.d.comb += [gemm.i_x.valid.eq(r0.valid), r0.ready.eq(gemm.i_x.ready),
                         gemm.i_w.valid.eq(r1.valid), r1.ready.eq(gemm.i_w.ready),
                         gemm.i_p.valid.eq(r2.valid), r2.ready.eq(gemm.i_p.ready)]
        with m.Else():
            wiring.connect(m, r0, gb0.i)
        with m.If(is_ln | is_sm):
            m.d.comb += [rows.i_x.valid.eq(gb0.o.valid), gb0.o.ready.eq(rows.i_x.ready),
                         rows.i_par.valid.eq(r2.valid), r2.ready.eq(rows.i_par.ready)]
        with m.Elif(is_gelu):
            m.d.comb += [ew.i_x.valid.eq(r1.valid), r1.ready.eq(ew.i_x.ready)]
        with m.Elif(is_add):
            m.d.comb += [ew.i_x.valid.eq(r1.valid & gb0.o.valid), r1.ready.eq(ew.i_x.ready & gb0.o.valid),
                         gb0.o.ready.eq(ew.i_x.ready & r1.valid)]
        with m.Elif(fuse):  # the GEMM's words into the unit, their addresses into the FIFO beside it
            m.d.comb += [ew.i_x.valid.eq(gemm.o_word.valid & fa.w_rdy), fa.w_data.eq(gemm.o_word.payload.addr),
                         fa.w_en.eq(gemm.o_word.valid & fa.w_rdy & ew.i_x.ready)]

        # the lanes x lanes byte transposer: `lanes` words (features) in, `lanes` words (tokens) out,
        # a word a cycle (the next tile fills the slots the current one has emitted)
        out_word, out_valid = Signal(W), Signal()
        out_ready = bw.i_data.ready
        half = Signal()
        ew_y = ew.o_y.payload.y
        m.d.comb += tr.i.payload.as_value().eq(gb0.o.payload[:W])
        with m.If(is_tr):
            m.d.comb += [tr.i.valid.eq(gb0.o.valid), gb0.o.ready.eq(tr.i.ready),
                         out_word.eq(tr.o.payload.as_value()), out_valid.eq(tr.o.valid), tr.o.ready.eq(out_ready)]
        with m.Elif(is_ln | is_sm):
            m.d.comb += [out_word.eq(rows.o_y.payload.as_value()), out_valid.eq(rows.o_y.valid),
                         rows.o_y.ready.eq(out_ready)]
        with m.Elif(is_gelu):
            m.d.comb += [out_word.eq(Cat(*(ew_y[i][:8] for i in range(L)))), out_valid.eq(ew.o_y.valid),
                         ew.o_y.ready.eq(out_ready)]
        with m.Elif(is_add):
            lo = Cat(*(ew_y[i] for i in range(L // 2)))
            hi = Cat(*(ew_y[i] for i in range(L // 2, L)))
            m.d.comb += [out_word.eq(Mux(half, hi, lo)), out_valid.eq(ew.o_y.valid),
                         ew.o_y.ready.eq(out_ready & half)]
            with m.If(ew.o_y.valid & out_ready):
                m.d.sync += half.eq(~half)
        m.d.comb += [bw.i_data.valid.eq(out_valid & ~is_gemm), bw.i_data.payload.eq(out_word)]

        # ------------------------------------------------------------------ the writer's one input
        wi = writer.i_word
        with m.If(log_word):
            m.d.comb += [wi.valid.eq(1), wi.payload.addr.eq(log_addr + (ops << (wb.bit_length() - 1))),
                         wi.payload.data.eq(op_cycles), wi.payload.last.eq(1)]
        with m.Elif(fuse):
            m.d.comb += [wi.valid.eq(ew.o_y.valid & fa.r_rdy), wi.payload.addr.eq(fa.r_data),
                         wi.payload.data.eq(Cat(*(ew_y[i][:8] for i in range(L)))),
                         wi.payload.last.eq(ew.o_y.payload.last), ew.o_y.ready.eq(wi.ready & fa.r_rdy),
                         fa.r_en.eq(wi.ready & ew.o_y.valid), gemm.o_word.ready.eq(ew.i_x.ready & fa.w_rdy)]
        with m.Elif(is_gemm):
            m.d.comb += [wi.valid.eq(gemm.o_word.valid), wi.payload.eq(gemm.o_word.payload),
                         gemm.o_word.ready.eq(wi.ready)]
        with m.Else():
            m.d.comb += [wi.valid.eq(bw.o_word.valid), wi.payload.eq(bw.o_word.payload),
                         bw.o_word.ready.eq(wi.ready)]
        return m

"""The ViT encoder-block accelerator: a descriptor-driven sequencer over the GEMM engine, the row
unit (LayerNorm, Shiftmax) and the element-wise unit (GELU, residual add), on one AXI4 memory
port with AXI4-Lite control registers.

Operation
---------
The host writes a program of 128-byte descriptors (:func:`descriptor_layout`, one operation each,
ending with :data:`OP_END`) and the tensors into memory, writes the program's address to
``PROG_ADDR`` and 1 to ``CTRL``.  For each descriptor the engine starts four address generators
(three readers, one writer; :class:`~qsilicon.hw.blocks.axi.AddrGen`), routes their word streams
through the unit the opcode names, waits until every result is written and acknowledged, then
writes the operation's cycle count into the descriptor's last word and fetches the next one.
Operations therefore see the memory writes of the ones before them.

Tensors use the token-blocked layout (:mod:`qsilicon.hw.vit.program`): a memory word holds one
feature of ``lanes`` consecutive tokens, which is both an activation beat of the GEMM engine
and a beat of the vector units (one token per lane).

Registers (AXI4-Lite, 32 bits, byte offsets)
--------------------------------------------
======  =========  =============================================================================
0x00    CTRL       write bit 0 = 1: start (ignored while busy)
0x04    STATUS     bit 0 busy, bit 1 done, bit 2 error; bits 11:8 error cause (1 illegal opcode,
                   2 read response, 3 write response); read-only
0x08    PROG_ADDR  byte address of the first descriptor (128-byte aligned)
0x0C    CYCLES     cycles of the last run (start to done); read-only
0x10    OPS        operations completed in the last run; read-only
0x14    PC         address of the descriptor being executed (or that stopped it); read-only
0x18    INFO       lanes in bits 7:0, descriptor bytes in bits 15:8; read-only
======  =========  =============================================================================

``irq`` is high from the end of a run until the next start.
"""

from __future__ import annotations

import math

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..blocks import requant_params_layout, result_row_layout
from ..blocks.axi import (
    AddrGen,
    AxiLiteRegs,
    AxiReadMux,
    AxiWriter,
    addr_pattern_layout,
    axi4_lite_signature,
    axi4_signature,
    join_axi_master,
)
from ..blocks.rowunit import ROW_LN, ROW_SOFTMAX, RowUnit
from ..blocks.vector import OP_ADD, OP_GELU, ElementwiseUnit
from ..config import GemmConfig
from ..gemm import GemmEngine

__all__ = [
    "DESC_BYTES", "OPCODES", "OP_ADD_RES", "OP_END", "OP_GELU_Q", "OP_GEMM", "OP_LN", "OP_SOFTMAX", "REGS",
    "VitBlockEngine", "descriptor_layout", "param_words",
]

OP_END, OP_GEMM, OP_LN, OP_SOFTMAX, OP_GELU_Q, OP_ADD_RES = 0, 1, 2, 3, 4, 5
OPCODES = {"end": OP_END, "gemm": OP_GEMM, "layernorm": OP_LN, "softmax": OP_SOFTMAX, "gelu": OP_GELU_Q,
           "add": OP_ADD_RES}
REGS = {"CTRL": 0x00, "STATUS": 0x04, "PROG_ADDR": 0x08, "CYCLES": 0x0C, "OPS": 0x10, "PC": 0x14, "INFO": 0x18}
ERR_OPCODE, ERR_READ, ERR_WRITE = 1, 2, 3


def gemm_config(lanes: int) -> GemmConfig:
    return GemmConfig(lanes, lanes, 8, 8, True)


def param_words(lanes: int) -> int:
    """Memory words of one GEMM parameter beat (per-column bias, M0, shift, zero point)."""
    return math.ceil(requant_params_layout(lanes, signed(8)).size / (8 * lanes))


def descriptor_layout() -> data.StructLayout:
    """One operation.  ``rd0``/``rd1``/``rd2``/``wr`` are the address patterns of the three
    readers and the writer; ``k`` is the GEMM reduction length or the row length of a row
    operation; ``r0_words``/``r2_words`` how many memory words make one beat of readers 0 and 2;
    ``transpose`` writes GEMM results feature-major (the token-blocked layout) instead of one
    word per output row.  The remaining fields are the vector units' constants."""
    return data.StructLayout({
        "op": 4, "transpose": 1, "r0_words": 2, "r2_words": 5, "k": 16,
        "rd0": addr_pattern_layout(), "rd1": addr_pattern_layout(), "rd2": addr_pattern_layout(),
        "wr": addr_pattern_layout(),
        "m0": 16, "shift": 6, "sm_k": 3, "q_b": signed(16), "q_c": 24, "gelu_b": signed(24), "gelu_one": signed(32),
    })


#: Bytes per descriptor; the last 8 receive the operation's cycle count.
DESC_BYTES = 128


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


class VitBlockEngine(wiring.Component):
    """The encoder-block accelerator with ``lanes`` x ``lanes`` MACs and ``lanes``-wide vector units.

    Parameters
    ----------
    lanes : int
        8 or 16: the MAC array size, the vector lanes, and the memory word (``8 * lanes``
        bits, the AXI4 data width).

    Members
    -------
    m_axi : Out(axi4_signature(32, 8 * lanes))
    s_axil : Out(axi4_lite_signature(5))
        The slave port (the signature is written from the slave side).
    irq : Out(1)
    """

    def __init__(self, lanes: int = 8) -> None:
        if lanes not in (8, 16):
            raise ValueError(f"Lanes must be 8 or 16, not {lanes!r}")
        self._lanes = lanes
        super().__init__({"m_axi": Out(axi4_signature(32, 8 * lanes)), "s_axil": Out(axi4_lite_signature(5)),
                          "irq": Out(1)})

    @property
    def lanes(self) -> int:
        return self._lanes

    def elaborate(self, platform):
        m = Module()
        L = self._lanes
        W = 8 * L
        wb = W // 8
        pw = param_words(L)
        cfg = gemm_config(L)

        m.submodules.regs = regs = AxiLiteRegs(len(REGS))
        m.submodules.rmux = rmux = AxiReadMux(4, data_width=W, depth=32)
        m.submodules.writer = writer = AxiWriter(data_width=W, depth=32)
        gens = []
        for name in ("g_rd0", "g_rd1", "g_rd2", "g_wr"):
            g = AddrGen(wb)
            m.submodules[name] = g
            gens.append(g)
        g_rd0, g_rd1, g_rd2, g_wr = gens
        m.submodules.gemm = gemm = GemmEngine(cfg)
        m.submodules.rows = rows = RowUnit(L)
        m.submodules.ew = ew = ElementwiseUnit(L)
        m.submodules.gb0 = gb0 = _Gearbox(W, 2)
        m.submodules.gb2 = gb2 = _Gearbox(W, pw)

        # ------------------------------------------------------------------ bus wiring
        wiring.connect(m, wiring.flipped(self.s_axil), regs.bus)
        join_axi_master(m, self.m_axi, rmux, writer)
        for i, g in enumerate((g_rd0, g_rd1, g_rd2)):
            wiring.connect(m, g.o_burst, getattr(rmux, f"i_burst_{i}"))

        # ------------------------------------------------------------------ controller
        desc = Signal(descriptor_layout())
        desc_bits = Signal(8 * DESC_BYTES)
        desc_words = DESC_BYTES // wb
        words = Signal(range(desc_words + 1))
        pc = Signal(32)
        busy, done, error = Signal(), Signal(), Signal()
        cause = Signal(4)
        cycles, ops, op_cycles = Signal(32), Signal(32), Signal(32)
        wb_mode = Signal()
        op = desc.op
        m.d.comb += desc.as_value().eq(desc_bits[: descriptor_layout().size])
        reg = regs.reg_i
        m.d.comb += [
            reg[1].eq(Cat(busy, done, error, Const(0, 5), cause)), reg[2].eq(regs.reg_o[2]),
            reg[3].eq(cycles), reg[4].eq(ops), reg[5].eq(pc), reg[6].eq(Cat(Const(L, 8), Const(DESC_BYTES, 8))),
            self.irq.eq(done),
        ]
        with m.If(busy):
            m.d.sync += cycles.eq(cycles + 1)
        fetch = rmux.i_burst_3
        fdata = rmux.o_data_3
        m.d.comb += [fetch.payload.addr.eq(pc), fetch.payload.beats.eq(desc_words)]
        for i, g in enumerate(gens):
            m.d.comb += g.cfg.eq([desc.rd0, desc.rd1, desc.rd2, desc.wr][i])
        ops_done = (g_rd0.done & g_rd1.done & g_rd2.done & g_wr.done & rmux.idle & writer.idle
                    & ~gb0.o.valid & ~gb2.o.valid)
        axi_err = rmux.error | writer.error

        with m.FSM():
            with m.State("IDLE"), m.If(regs.wrote[0] & regs.reg_o[0][0]):
                m.d.sync += [busy.eq(1), done.eq(0), error.eq(0), cause.eq(0), cycles.eq(0), ops.eq(0),
                             pc.eq(Cat(Const(0, 7), regs.reg_o[2][7:]))]
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
                        m.next = "DECODE"
                with m.If(axi_err):
                    m.next = "AXI_ERROR"
            with m.State("DECODE"):
                with m.If(op == OP_END):
                    m.d.sync += [busy.eq(0), done.eq(1)]
                    m.next = "IDLE"
                with m.Elif(op > OP_ADD_RES):
                    m.d.sync += [busy.eq(0), done.eq(1), error.eq(1), cause.eq(ERR_OPCODE)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += [g.start.eq(1) for g in gens]
                    m.d.sync += op_cycles.eq(1)
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.sync += op_cycles.eq(op_cycles + 1)
                with m.If(axi_err):
                    m.next = "AXI_ERROR"
                with m.Elif(ops_done):
                    m.next = "WRITEBACK"
            with m.State("WRITEBACK"):
                m.d.comb += [wb_mode.eq(1), writer.i_data.valid.eq(1), writer.i_data.payload.eq(op_cycles)]
                with m.If(writer.i_data.ready):
                    m.next = "WRITEBACK_ADDR"
            with m.State("WRITEBACK_ADDR"):
                m.d.comb += [wb_mode.eq(1), writer.i_burst.valid.eq(1),
                             writer.i_burst.payload.addr.eq(pc + DESC_BYTES - wb), writer.i_burst.payload.beats.eq(1)]
                with m.If(writer.i_burst.ready):
                    m.next = "WRITEBACK_WAIT"
            with m.State("WRITEBACK_WAIT"):
                m.d.comb += wb_mode.eq(1)
                with m.If(axi_err):
                    m.next = "AXI_ERROR"
                with m.Elif(writer.idle):
                    m.d.sync += [pc.eq(pc + DESC_BYTES), ops.eq(ops + 1)]
                    m.next = "FETCH"
            with m.State("AXI_ERROR"):
                m.d.sync += [busy.eq(0), done.eq(1), error.eq(1), cause.eq(Mux(rmux.error, ERR_READ, ERR_WRITE))]
                m.next = "IDLE"

        # ------------------------------------------------------------------ datapath
        r0, r1, r2 = rmux.o_data_0, rmux.o_data_1, rmux.o_data_2
        wiring.connect(m, r0, gb0.i)
        wiring.connect(m, r2, gb2.i)
        m.d.comb += [gb0.n.eq(desc.r0_words), gb2.n.eq(desc.r2_words)]
        is_gemm, is_ln, is_sm = op == OP_GEMM, op == OP_LN, op == OP_SOFTMAX
        is_gelu, is_add = op == OP_GELU_Q, op == OP_ADD_RES

        # GEMM operands; the activation stream's `last` comes from a counter of K.
        kcnt = Signal(16)
        m.d.comb += [
            gemm.i_act.payload.data.eq(gb0.o.payload[:W]), gemm.i_act.payload.last.eq(kcnt == desc.k - 1),
            gemm.i_wgt.payload.eq(r1.payload),
            gemm.i_par.payload.eq(gb2.o.payload[: requant_params_layout(L, signed(8)).size]),
        ]
        with m.If(gemm.i_act.valid & gemm.i_act.ready):
            m.d.sync += kcnt.eq(Mux(kcnt == desc.k - 1, 0, kcnt + 1))
        with m.If(busy & (op != OP_GEMM)):
            m.d.sync += kcnt.eq(0)

        # Row unit: int16 beats of two words (LayerNorm) or int8 beats of one word (Shiftmax).
        word = gb0.o.payload
        lanes16 = Cat(*(Mux(is_ln, word[16 * i : 16 * i + 16], word[8 * i : 8 * i + 8].as_signed())[:16]
                        for i in range(L)))
        m.d.comb += [
            rows.i_x.payload.as_value().eq(lanes16), rows.i_par.payload.as_value().eq(gb2.o.payload[:32]),
            rows.op.eq(Mux(is_ln, ROW_LN, ROW_SOFTMAX)), rows.n.eq(desc.k), rows.m0.eq(desc.m0),
            rows.shift.eq(desc.shift), rows.k.eq(desc.sm_k), rows.q_b.eq(desc.q_b), rows.q_c.eq(desc.q_c),
        ]
        # Element-wise unit: a = int16 residual (two words), b = int8 branch (reader 1).
        m.d.comb += [
            ew.i_x.payload.a.as_value().eq(gb0.o.payload[: 16 * L]), ew.i_x.payload.b.as_value().eq(r1.payload),
            ew.op.eq(Mux(is_add, OP_ADD, OP_GELU)), ew.m0.eq(desc.m0), ew.shift.eq(desc.shift),
            ew.gelu_b.eq(desc.gelu_b), ew.gelu_one.eq(desc.gelu_one),
        ]

        with m.If(is_gemm):
            m.d.comb += [gemm.i_act.valid.eq(gb0.o.valid), gb0.o.ready.eq(gemm.i_act.ready),
                         gemm.i_wgt.valid.eq(r1.valid), r1.ready.eq(gemm.i_wgt.ready),
                         gemm.i_par.valid.eq(gb2.o.valid), gb2.o.ready.eq(gemm.i_par.ready)]
        with m.Elif(is_ln | is_sm):
            m.d.comb += [rows.i_x.valid.eq(gb0.o.valid), gb0.o.ready.eq(rows.i_x.ready),
                         rows.i_par.valid.eq(gb2.o.valid), gb2.o.ready.eq(rows.i_par.ready)]
        with m.Elif(is_gelu):
            m.d.comb += [ew.i_x.valid.eq(r1.valid), r1.ready.eq(ew.i_x.ready)]
        with m.Elif(is_add):
            m.d.comb += [ew.i_x.valid.eq(r1.valid & gb0.o.valid), r1.ready.eq(ew.i_x.ready & gb0.o.valid),
                         gb0.o.ready.eq(ew.i_x.ready & r1.valid)]

        # Results to words: GEMM rows (one word each) or transposed tiles, row-unit beats, GELU
        # beats (int8 lanes), residual beats (int16 lanes, two words).
        res_lay = result_row_layout(L, signed(8))
        tile = [Signal(W, name=f"tile{r}") for r in range(L)]
        trow, tcol = Signal(range(L + 1)), Signal(range(L + 1))
        emitting = Signal()
        half = Signal()
        out_word = Signal(W)
        out_valid = Signal()
        out_ready = writer.i_data.ready & ~wb_mode
        res = gemm.o_res
        ew_y = ew.o_y.payload.y
        with m.If(is_gemm & desc.transpose):
            with m.If(~emitting):
                m.d.comb += res.ready.eq(1)
                with m.If(res.valid):
                    with m.Switch(trow):
                        for r in range(L):
                            with m.Case(r):
                                m.d.sync += tile[r].eq(res.payload.as_value()[: res_lay.size - 1])
                    m.d.sync += trow.eq(trow + 1)
                    with m.If(res.payload.last):
                        m.d.sync += [trow.eq(0), tcol.eq(0), emitting.eq(1)]
            with m.Else():
                col = Signal(W)
                with m.Switch(tcol):
                    for c in range(L):
                        with m.Case(c):
                            m.d.comb += col.eq(Cat(*(tile[r][8 * c : 8 * c + 8] for r in range(L))))
                m.d.comb += [out_word.eq(col), out_valid.eq(1)]
                with m.If(out_ready):
                    m.d.sync += tcol.eq(tcol + 1)
                    with m.If(tcol == L - 1):
                        m.d.sync += emitting.eq(0)
        with m.Elif(is_gemm):
            m.d.comb += [out_word.eq(res.payload.as_value()[:W]), out_valid.eq(res.valid), res.ready.eq(out_ready)]
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
        with m.If(~wb_mode):
            m.d.comb += [writer.i_data.valid.eq(out_valid), writer.i_data.payload.eq(out_word),
                         writer.i_burst.valid.eq(g_wr.o_burst.valid), writer.i_burst.payload.eq(g_wr.o_burst.payload),
                         g_wr.o_burst.ready.eq(writer.i_burst.ready)]
        return m

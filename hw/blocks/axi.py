"""AXI4 memory master and AXI4-Lite control registers, shared by the accelerators.

* :func:`axi4_signature` / :func:`axi4_lite_signature`: the bus ports (AMBA AXI4 / AXI4-Lite
  signal names, lower case, no IDs: every transaction uses ID 0, so responses come back in
  order).  In Verilog a port ``m_axi`` becomes ``m_axi__araddr`` and so on.
* :class:`AddrGen`: a four-level address pattern (a contiguous run of words inside three nested
  loops with byte strides) cut into INCR bursts of at most 16 beats that never cross a
  ``16 * word`` boundary (so never a 4 KiB one).
* :class:`AxiReadMux`: several read clients on one AXI4 read channel.  Each client has a word
  FIFO and issues a burst only when its FIFO has room for the whole burst (credits), so the R
  channel never waits on a client and clients cannot block each other.
* :class:`AxiWriter`: bursts from an address pattern and a word stream onto the write channels;
  ``idle`` once every burst has its write response.
* :class:`AxiWordWriter`: addressed words onto the write channels, consecutive addresses coalesced
  into bursts, address and data channels pipelined (one beat per cycle even for scattered words);
  :class:`BurstWords` gives the words of an address pattern their addresses, a word a cycle even
  when every burst is one word.
* :class:`AxiLiteRegs`: 32-bit registers on an AXI4-Lite slave port.

Any response other than OKAY raises the sticky ``error`` output of the mux and the writer.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = [
    "MAX_BURST", "AddrGen", "AxiLiteRegs", "AxiReadMux", "AxiWordWriter", "AxiWriter", "BurstWords",
    "addr_pattern_layout", "axi4_lite_signature", "axi4_signature", "burst_layout", "coalesce_words",
    "join_axi_master", "pattern_bursts", "word_layout",
]

#: Longest burst issued (beats).
MAX_BURST = 16


def axi4_signature(addr_width: int = 32, data_width: int = 64) -> wiring.Signature:
    """An AXI4 master port (directions as seen by the master)."""
    strb = data_width // 8
    return wiring.Signature({
        "awaddr": Out(addr_width), "awlen": Out(8), "awsize": Out(3), "awburst": Out(2), "awvalid": Out(1),
        "awready": In(1),
        "wdata": Out(data_width), "wstrb": Out(strb), "wlast": Out(1), "wvalid": Out(1), "wready": In(1),
        "bresp": In(2), "bvalid": In(1), "bready": Out(1),
        "araddr": Out(addr_width), "arlen": Out(8), "arsize": Out(3), "arburst": Out(2), "arvalid": Out(1),
        "arready": In(1),
        "rdata": In(data_width), "rresp": In(2), "rlast": In(1), "rvalid": In(1), "rready": Out(1),
    })


def axi4_lite_signature(addr_width: int = 8) -> wiring.Signature:
    """An AXI4-Lite slave port with 32-bit data (directions as seen by the slave)."""
    return wiring.Signature({
        "awaddr": In(addr_width), "awvalid": In(1), "awready": Out(1),
        "wdata": In(32), "wstrb": In(4), "wvalid": In(1), "wready": Out(1),
        "bresp": Out(2), "bvalid": Out(1), "bready": In(1),
        "araddr": In(addr_width), "arvalid": In(1), "arready": Out(1),
        "rdata": Out(32), "rresp": Out(2), "rvalid": Out(1), "rready": In(1),
    })


def join_axi_master(m: Module, port, rmux, writer) -> None:
    """Drive one AXI4 master ``port`` from an :class:`AxiReadMux` (read channels) and an
    :class:`AxiWriter` (write channels)."""
    for name in ("araddr", "arlen", "arsize", "arburst", "arvalid", "rready"):
        m.d.comb += getattr(port, name).eq(getattr(rmux.axi, name))
    for name in ("arready", "rdata", "rresp", "rlast", "rvalid"):
        m.d.comb += getattr(rmux.axi, name).eq(getattr(port, name))
    for name in ("awaddr", "awlen", "awsize", "awburst", "awvalid", "wdata", "wstrb", "wlast", "wvalid", "bready"):
        m.d.comb += getattr(port, name).eq(getattr(writer.axi, name))
    for name in ("awready", "wready", "bresp", "bvalid"):
        m.d.comb += getattr(writer.axi, name).eq(getattr(port, name))


def addr_pattern_layout() -> data.StructLayout:
    """``run`` contiguous words from each of ``n0 x n1 x n2`` start addresses
    ``base + i0 * s0 + i1 * s1 + i2 * s2`` (``i2`` outermost; byte strides, modulo 2**32)."""
    return data.StructLayout({
        "base": unsigned(32), "run": unsigned(16),
        "n0": unsigned(16), "s0": unsigned(32), "n1": unsigned(16), "s1": unsigned(32),
        "n2": unsigned(16), "s2": unsigned(32),
    })


def burst_layout() -> data.StructLayout:
    """One burst: byte address and number of beats (1 to :data:`MAX_BURST`)."""
    return data.StructLayout({"addr": unsigned(32), "beats": unsigned(5)})


def pattern_bursts(pattern: dict, word_bytes: int = 8) -> list[tuple[int, int]]:
    """Host model of :class:`AddrGen`: the ``(address, beats)`` bursts of ``pattern``."""
    out = []
    for i2 in range(pattern["n2"]):
        for i1 in range(pattern["n1"]):
            for i0 in range(pattern["n0"]):
                start = (pattern["base"] + i0 * pattern["s0"] + i1 * pattern["s1"] + i2 * pattern["s2"]) % 2**32
                off = 0
                while off < pattern["run"]:
                    addr = (start + off * word_bytes) % 2**32
                    beats = min(pattern["run"] - off, MAX_BURST - (addr // word_bytes) % MAX_BURST)
                    out.append((addr, beats))
                    off += beats
    return out


def coalesce_words(words: list[tuple[int, bool]], word_bytes: int = 8) -> list[tuple[int, int]]:
    """Host model of :class:`AxiWordWriter`: the ``(address, beats)`` bursts of ``(address, last)``
    words."""
    out, start, count = [], None, 0
    for addr, last in words:
        window = start is not None and addr // (MAX_BURST * word_bytes) == start // (MAX_BURST * word_bytes)
        if start is not None and addr == start + count * word_bytes and count < MAX_BURST and window:
            count += 1
        else:
            if start is not None:
                out.append((start, count))
            start, count = addr, 1
        if last:
            out.append((start, count))
            start, count = None, 0
    if start is not None:
        out.append((start, count))
    return out


class AddrGen(wiring.Component):
    """Cuts an :func:`addr_pattern_layout` pattern into bursts.

    ``start`` (one cycle) loads ``cfg``; bursts then appear on ``o_burst`` in order; ``done`` is
    high when the last one has been taken (and before the first start).  A pattern with a zero
    count or run is empty.
    """

    def __init__(self, word_bytes: int = 8) -> None:
        if word_bytes not in (4, 8, 16, 32, 64):
            raise ValueError(f"Word bytes must be 4, 8, 16, 32 or 64, not {word_bytes!r}")
        self._wb = word_bytes
        super().__init__({
            "cfg": In(addr_pattern_layout()), "start": In(1), "done": Out(1, init=1),
            "o_burst": Out(stream.Signature(burst_layout())),
        })

    def elaborate(self, platform):
        m = Module()
        wb = self._wb
        lw = (wb - 1).bit_length()
        c = Signal(addr_pattern_layout())
        a1, a2, cur = Signal(32), Signal(32), Signal(32)
        off, i0, i1, i2 = Signal(16), Signal(16), Signal(16), Signal(16)
        addr = (cur + (off << lw))[:32]
        # Beats to the next 16-word boundary: only the address's 4 word-index bits matter, so a 4-bit
        # sum replaces the 32-bit one on this path (the burst decision is the block's critical path).
        # (Expressions, not combinational signals: Icarus skips blocks whose inputs never change.)
        to_edge = MAX_BURST - (cur[lw : lw + 4] + off[:4])[:4]
        left = (c.run - off)[:16]
        beats = Mux(left < to_edge, left, to_edge)
        m.d.comb += [self.o_burst.payload.addr.eq(addr), self.o_burst.payload.beats.eq(beats)]

        with m.If(self.start):
            empty = (self.cfg.run == 0) | (self.cfg.n0 == 0) | (self.cfg.n1 == 0) | (self.cfg.n2 == 0)
            m.d.sync += [c.eq(self.cfg), a1.eq(self.cfg.base), a2.eq(self.cfg.base), cur.eq(self.cfg.base),
                         off.eq(0), i0.eq(0), i1.eq(0), i2.eq(0), self.done.eq(empty),
                         self.o_burst.valid.eq(~empty)]
        with m.Elif(self.o_burst.valid & self.o_burst.ready):
            with m.If(to_edge < left):  # off + beats < run, without the adder
                m.d.sync += off.eq(off + beats)
            with m.Else():
                m.d.sync += off.eq(0)
                with m.If(i0 + 1 < c.n0):
                    m.d.sync += [i0.eq(i0 + 1), cur.eq(cur + c.s0)]
                with m.Elif(i1 + 1 < c.n1):
                    m.d.sync += [i0.eq(0), i1.eq(i1 + 1), a1.eq(a1 + c.s1), cur.eq(a1 + c.s1)]
                with m.Elif(i2 + 1 < c.n2):
                    m.d.sync += [i0.eq(0), i1.eq(0), i2.eq(i2 + 1), a2.eq(a2 + c.s2), a1.eq(a2 + c.s2),
                                 cur.eq(a2 + c.s2)]
                with m.Else():
                    m.d.sync += [self.done.eq(1), self.o_burst.valid.eq(0)]
        return m


class AxiReadMux(wiring.Component):
    """``clients`` burst-request / word-stream pairs sharing the read channels of ``axi``, granted
    round-robin or (``priority``) lowest index first.

    Members
    -------
    axi : Out(axi4_signature(...))
        Only the read channels are driven (the write channels are left to :class:`AxiWriter`).
    i_burst : In(stream.Signature(burst_layout())) per client (``i_burst_<n>``)
    o_data : Out(stream.Signature(data_width)) per client (``o_data_<n>``)
    idle : Out(1)
        No burst in flight and every client FIFO empty.
    quiet : Out(1)
        No burst in flight (the bus side is at rest; the FIFOs may hold words).
    error : Out(1)
        Sticky: a read response was not OKAY.
    clear : In(1)
        Clears ``error``.
    """

    def __init__(self, clients: int, *, data_width: int = 64, depth: int = 32, priority: bool = False) -> None:
        if depth < MAX_BURST:
            raise ValueError(f"Client FIFO depth must be at least {MAX_BURST}, not {depth}")
        self._n, self._dw, self._depth, self._priority = clients, data_width, depth, priority
        members = {"axi": Out(axi4_signature(32, data_width)), "idle": Out(1), "quiet": Out(1), "error": Out(1),
                   "clear": In(1)}
        for i in range(clients):
            members[f"i_burst_{i}"] = In(stream.Signature(burst_layout()))
            members[f"o_data_{i}"] = Out(stream.Signature(data_width))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        n, depth, axi = self._n, self._depth, self.axi
        size = (self._dw // 8 - 1).bit_length()
        m.submodules.order = order = fifo.SyncFIFOBuffered(width=max(1, (n - 1).bit_length()), depth=8)
        fifos = []
        for i in range(n):
            f = fifo.SyncFIFOBuffered(width=self._dw, depth=depth)
            m.submodules[f"fifo{i}"] = f
            fifos.append(f)
        credit = [Signal(range(depth + 1), init=depth, name=f"credit{i}") for i in range(n)]
        rr = Signal(range(n))
        inflight = Signal(16)

        # AR: one request register; round-robin over clients whose FIFO has room for the burst.
        issue = [Signal(name=f"issue{i}") for i in range(n)]
        for i in range(n):
            req = getattr(self, f"i_burst_{i}")
            eligible = req.valid & (credit[i] >= req.payload.beats)
            prior = 0
            for j in range(n):  # a client wins if it is eligible and no client before it is
                if j == i or (self._priority and j > i):
                    continue
                rj = getattr(self, f"i_burst_{j}")
                # fixed priority: lower indices first; else round-robin from `rr`
                before = 1 if self._priority else Mux(j >= rr, Mux(i >= rr, j < i, 1), Mux(i >= rr, 0, j < i))
                prior = prior | (before & rj.valid & (credit[j] >= rj.payload.beats))
            m.d.comb += issue[i].eq(eligible & ~prior & (~axi.arvalid | axi.arready) & order.w_rdy)
            m.d.comb += req.ready.eq(issue[i])
        any_issue = Cat(*issue).any()
        with m.If(axi.arvalid & axi.arready):
            m.d.sync += axi.arvalid.eq(0)
        m.d.comb += [order.w_en.eq(any_issue), axi.rready.eq(order.r_rdy)]
        for i in range(n):
            req = getattr(self, f"i_burst_{i}")
            with m.If(issue[i]):
                m.d.sync += [axi.araddr.eq(req.payload.addr), axi.arlen.eq(req.payload.beats - 1),
                             axi.arvalid.eq(1), rr.eq((i + 1) % n)]
                m.d.comb += order.w_data.eq(i)
        m.d.comb += [axi.arsize.eq(size), axi.arburst.eq(1)]

        # R: route beats to the client at the head of the order FIFO.
        beat = axi.rvalid & axi.rready
        with m.If(beat & axi.rlast):
            m.d.comb += order.r_en.eq(1)
        with m.If(beat & (axi.rresp != 0)):
            m.d.sync += self.error.eq(1)
        with m.If(self.clear):
            m.d.sync += self.error.eq(0)
        for i in range(n):
            f, out = fifos[i], getattr(self, f"o_data_{i}")
            req = getattr(self, f"i_burst_{i}")
            m.d.comb += [f.w_data.eq(axi.rdata), f.w_en.eq(beat & (order.r_data == i)),
                         out.payload.eq(f.r_data), out.valid.eq(f.r_rdy), f.r_en.eq(out.ready)]
            popped = out.valid & out.ready
            m.d.sync += credit[i].eq(credit[i] + popped - Mux(issue[i], req.payload.beats, 0))
        m.d.sync += inflight.eq(inflight + Mux(any_issue, 1, 0) - Mux(order.r_en, 1, 0))
        m.d.comb += self.idle.eq((inflight == 0) & ~axi.arvalid & ~Cat(*(f.r_rdy for f in fifos)).any())
        m.d.comb += self.quiet.eq((inflight == 0) & ~axi.arvalid)
        return m


class AxiWriter(wiring.Component):
    """Writes a word stream to the bursts of an address pattern.

    A burst's address is sent once its data are all in the writer's FIFO, then its beats follow.
    ``idle`` is high when no burst is pending and every write response has arrived.
    """

    def __init__(self, *, data_width: int = 64, depth: int = 32) -> None:
        self._dw, self._depth = data_width, depth
        super().__init__({
            "axi": Out(axi4_signature(32, data_width)),
            "i_burst": In(stream.Signature(burst_layout())),
            "i_data": In(stream.Signature(data_width)),
            "idle": Out(1), "error": Out(1), "clear": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        axi = self.axi
        m.submodules.buf = buf = fifo.SyncFIFOBuffered(width=self._dw, depth=self._depth)
        m.d.comb += [buf.w_data.eq(self.i_data.payload), buf.w_en.eq(self.i_data.valid),
                     self.i_data.ready.eq(buf.w_rdy)]
        m.d.comb += [axi.awsize.eq((self._dw // 8 - 1).bit_length()), axi.awburst.eq(1),
                     axi.wstrb.eq(2 ** (self._dw // 8) - 1), axi.bready.eq(1)]
        left = Signal(5)
        pending = Signal(16)
        aw_fire = axi.awvalid & axi.awready
        b_fire = axi.bvalid & axi.bready
        m.d.sync += pending.eq(pending + aw_fire - b_fire)
        with m.If(b_fire & (axi.bresp != 0)):
            m.d.sync += self.error.eq(1)
        with m.If(self.clear):
            m.d.sync += self.error.eq(0)
        m.d.comb += [axi.wdata.eq(buf.r_data), axi.wlast.eq(left == 1)]
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.idle.eq(~self.i_burst.valid & (pending == 0))
                with m.If(self.i_burst.valid & (buf.level >= self.i_burst.payload.beats)):
                    m.d.comb += self.i_burst.ready.eq(1)
                    m.d.sync += [axi.awaddr.eq(self.i_burst.payload.addr), axi.awlen.eq(self.i_burst.payload.beats - 1),
                                 axi.awvalid.eq(1), left.eq(self.i_burst.payload.beats)]
                    m.next = "ADDR"
            with m.State("ADDR"), m.If(axi.awready):
                m.d.sync += axi.awvalid.eq(0)
                m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += [axi.wvalid.eq(1), buf.r_en.eq(axi.wready)]
                with m.If(axi.wready):
                    m.d.sync += left.eq(left - 1)
                    with m.If(left == 1):
                        m.next = "IDLE"
        return m


def word_layout(data_width: int) -> data.StructLayout:
    """A word to write: byte ``addr`` (word aligned), ``data``, and ``last`` on the final word of an
    operation (it closes the open burst)."""
    return data.StructLayout({"addr": unsigned(32), "data": unsigned(data_width), "last": 1})


class AxiWordWriter(wiring.Component):
    """Writes a stream of addressed words onto the write channels, coalescing consecutive
    addresses into INCR bursts.

    A word extends the open burst when its address is the next word's, the burst has fewer than
    :data:`MAX_BURST` beats and the address stays inside the burst's ``16 * word`` window (so no
    burst crosses a 4 KiB boundary); otherwise the open burst is closed and a new one begins.
    ``last`` closes the burst after its word.  A burst's address is issued once all its words are in
    the data FIFO, and the address and data channels run independently: one beat per cycle even
    when every burst is a single word (scattered outputs).  ``idle`` is high when every word is
    written and every response has arrived.

    Members
    -------
    axi : Out(axi4_signature(...))
        Only the write channels are driven.
    i_word : In(stream.Signature(word_layout(data_width)))
    idle, error : Out(1)
        ``error`` is sticky: a write response was not OKAY.
    quiet : Out(1)
        No burst issued without its data sent and its response back (the bus side is at rest).
    hold : In(1)
        Issue no new burst (to bring the bus to rest before a reset).
    clear : In(1)
        Clears ``error``.
    """

    def __init__(self, *, data_width: int = 64, depth: int = 32) -> None:
        if data_width not in (32, 64, 128, 256, 512):
            raise ValueError(f"Data width must be 32, 64, 128, 256 or 512 bits, not {data_width!r}")
        if depth < 2 * MAX_BURST:
            raise ValueError(f"FIFO depth must be at least {2 * MAX_BURST}, not {depth!r}")
        self._dw, self._depth = data_width, depth
        super().__init__({
            "axi": Out(axi4_signature(32, data_width)),
            "i_word": In(stream.Signature(word_layout(data_width))),
            "idle": Out(1), "quiet": Out(1), "hold": In(1), "error": Out(1), "clear": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        axi, w = self.axi, self.i_word
        lw = (self._dw // 8 - 1).bit_length()
        m.submodules.buf = buf = fifo.SyncFIFOBuffered(width=self._dw, depth=self._depth)
        m.submodules.bursts = bursts = fifo.SyncFIFOBuffered(width=32 + 5, depth=4)
        m.submodules.lens = lens = fifo.SyncFIFOBuffered(width=5, depth=4)
        m.d.comb += [axi.awsize.eq(lw), axi.awburst.eq(1), axi.wstrb.eq(2 ** (self._dw // 8) - 1), axi.bready.eq(1)]

        # Coalescer: the open burst (start, count) of words already pushed into the data FIFO.
        start, count, open_ = Signal(32), Signal(5), Signal()
        nxt = (start + (count << lw))[:32]
        window = start[lw + 4 :] == w.payload.addr[lw + 4 :]
        extends = open_ & (w.payload.addr == nxt) & (count < MAX_BURST) & window
        # a word that breaks the open burst and is also the last one would need two burst entries in
        # one cycle: the open burst is closed first, the word is taken the cycle after
        close_only = w.valid & open_ & ~extends & w.payload.last
        take = w.valid & buf.w_rdy & bursts.w_rdy & ~close_only
        m.d.comb += [w.ready.eq(take), buf.w_data.eq(w.payload.data), buf.w_en.eq(take)]

        def push(addr, beats):
            return [bursts.w_en.eq(1), bursts.w_data.eq(Cat(addr, beats[:5]))]

        with m.If(close_only & bursts.w_rdy):
            m.d.comb += push(start, count)
            m.d.sync += open_.eq(0)
        with m.Elif(take):
            with m.If(extends):
                m.d.sync += count.eq(count + 1)
                with m.If(w.payload.last):
                    m.d.comb += push(start, count + 1)
                    m.d.sync += open_.eq(0)
            with m.Elif(open_):  # a break: close the open burst, open one with this word
                m.d.comb += push(start, count)
                m.d.sync += [start.eq(w.payload.addr), count.eq(1)]
            with m.Elif(w.payload.last):
                m.d.comb += push(w.payload.addr, Const(1, 5))
            with m.Else():
                m.d.sync += [start.eq(w.payload.addr), count.eq(1), open_.eq(1)]

        # AW: the head burst goes out once its words are in the FIFO beyond those already promised.
        committed = Signal(range(self._depth + 1))
        head_addr, head_beats = bursts.r_data[:32], bursts.r_data[32:]
        aw_go = (bursts.r_rdy & (buf.level - committed >= head_beats) & lens.w_rdy & (~axi.awvalid | axi.awready)
                 & ~self.hold)
        with m.If(axi.awvalid & axi.awready):
            m.d.sync += axi.awvalid.eq(0)
        with m.If(aw_go):
            m.d.comb += [bursts.r_en.eq(1), lens.w_en.eq(1), lens.w_data.eq(head_beats)]
            m.d.sync += [axi.awaddr.eq(head_addr), axi.awlen.eq(head_beats - 1), axi.awvalid.eq(1)]
        # W: the promised words, burst by burst, with no idle cycle between bursts.
        left = Signal(5)
        sending = Signal()
        m.d.comb += [axi.wvalid.eq(sending), axi.wdata.eq(buf.r_data), axi.wlast.eq(left == 1)]
        beat = sending & axi.wready
        m.d.comb += buf.r_en.eq(beat)
        with m.If(~sending | (beat & (left == 1))):
            m.d.comb += lens.r_en.eq(lens.r_rdy)
            m.d.sync += [left.eq(lens.r_data), sending.eq(lens.r_rdy)]
        with m.Elif(beat):
            m.d.sync += left.eq(left - 1)
        m.d.sync += committed.eq(committed + Mux(aw_go, head_beats, 0) - beat)
        # B: count outstanding responses.
        pending = Signal(16)
        aw_fire = axi.awvalid & axi.awready
        b_fire = axi.bvalid & axi.bready
        m.d.sync += pending.eq(pending + aw_fire - b_fire)
        with m.If(b_fire & (axi.bresp != 0)):
            m.d.sync += self.error.eq(1)
        with m.If(self.clear):
            m.d.sync += self.error.eq(0)
        m.d.comb += self.quiet.eq(~lens.r_rdy & ~sending & ~axi.awvalid & (pending == 0))
        m.d.comb += self.idle.eq(~open_ & ~w.valid & ~bursts.r_rdy & ~lens.r_rdy & ~sending & ~axi.awvalid
                                 & (pending == 0) & ~buf.r_rdy)
        return m


class BurstWords(wiring.Component):
    """Addressed words from a burst stream (:class:`AddrGen`) and a data stream: each data word gets
    the next address of the current burst; ``last`` marks the final word once the generator is done.
    The next burst is taken in the cycle the current one's last word goes out, so one-word bursts
    (scattered rows) pass a word a cycle.

    Members
    -------
    i_burst : In(stream.Signature(burst_layout()))
    i_data : In(stream.Signature(data_width))
    gen_done : In(1)
        The address generator has handed out its last burst.
    o_word : Out(stream.Signature(word_layout(data_width)))
    busy : Out(1)
        A burst is held whose words have not all gone out.
    """

    def __init__(self, word_bytes: int) -> None:
        self._wb = word_bytes
        super().__init__({
            "i_burst": In(stream.Signature(burst_layout())), "i_data": In(stream.Signature(8 * word_bytes)),
            "gen_done": In(1), "o_word": Out(stream.Signature(word_layout(8 * word_bytes))), "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        addr, left = Signal(32), Signal(5)
        o = self.o_word
        fire = o.valid & o.ready
        m.d.comb += [self.busy.eq(left != 0), o.valid.eq((left != 0) & self.i_data.valid), o.payload.addr.eq(addr),
                     o.payload.data.eq(self.i_data.payload),
                     o.payload.last.eq((left == 1) & self.gen_done & ~self.i_burst.valid),
                     self.i_data.ready.eq((left != 0) & o.ready)]
        with m.If(fire):
            m.d.sync += [addr.eq(addr + self._wb), left.eq(left - 1)]
        # the next burst is taken as the current one's last word goes out: a word a cycle even
        # when every burst is one word (scattered outputs)
        with m.If(((left == 0) | ((left == 1) & fire)) & self.i_burst.valid):
            m.d.comb += self.i_burst.ready.eq(1)
            m.d.sync += [addr.eq(self.i_burst.payload.addr), left.eq(self.i_burst.payload.beats)]
        return m


class AxiLiteRegs(wiring.Component):
    """``count`` 32-bit registers at byte offsets ``4 * i`` on an AXI4-Lite slave port.

    ``reg_o[i]`` holds what the host last wrote; reads return ``reg_i[i]`` (the design decides
    what each register shows); ``wrote[i]`` pulses for one cycle after a write to register ``i``.
    """

    def __init__(self, count: int) -> None:
        if not 1 <= count <= 64:
            raise ValueError(f"Register count must be from 1 to 64, not {count!r}")
        self._count = count
        aw = (4 * count - 1).bit_length()
        super().__init__({
            "bus": Out(axi4_lite_signature(aw)),
            "reg_o": Out(data.ArrayLayout(32, count)), "reg_i": In(data.ArrayLayout(32, count)),
            "wrote": Out(count),
        })

    def elaborate(self, platform):
        m = Module()
        bus, n = self.bus, self._count
        m.d.sync += self.wrote.eq(0)
        # Write: take address and data together, answer OKAY.
        with m.If(bus.bvalid & bus.bready):
            m.d.sync += bus.bvalid.eq(0)
        take_w = bus.awvalid & bus.wvalid & ~bus.bvalid
        m.d.comb += [bus.awready.eq(take_w), bus.wready.eq(take_w)]
        with m.If(take_w):
            m.d.sync += bus.bvalid.eq(1)
            idx = bus.awaddr[2:]
            for i in range(n):
                with m.If(idx == i):
                    for byte in range(4):
                        with m.If(bus.wstrb[byte]):
                            m.d.sync += self.reg_o[i][8 * byte : 8 * byte + 8].eq(bus.wdata[8 * byte : 8 * byte + 8])
                    m.d.sync += self.wrote[i].eq(1)
        # Read.
        with m.If(bus.rvalid & bus.rready):
            m.d.sync += bus.rvalid.eq(0)
        take_r = bus.arvalid & ~bus.rvalid
        m.d.comb += bus.arready.eq(take_r)
        with m.If(take_r):
            m.d.sync += [bus.rvalid.eq(1), bus.rdata.eq(0)]
            for i in range(n):
                with m.If(bus.araddr[2:] == i):
                    m.d.sync += bus.rdata.eq(self.reg_i[i])
        return m

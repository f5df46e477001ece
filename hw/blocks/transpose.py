"""A ``lanes x lanes`` byte transposer that takes and emits a word a cycle.

Words of ``lanes`` bytes come in by tiles of ``lanes`` words; for each tile the transposer emits
``lanes`` words, word ``j`` holding byte ``j`` of the tile's words in order (the token-blocked
layout's feature words in, token rows out: :mod:`qsilicon.hw.vit`).

One ``lanes x lanes`` byte register array holds a tile, in place: while a tile drains, the next
one fills the slots already drained, in the other orientation.  A tile written by rows (word ``w``
into row ``w``) drains by columns, and column ``c`` once emitted takes word ``c`` of the next tile;
that tile, written by columns, drains by rows, and so on.  After the first tile the transposer
takes a word and emits one in the same cycle, so ``n`` tiles take ``(n + 1) x lanes`` cycles
without stalls, where a load-then-emit array takes ``2 n x lanes``.  A word is taken only into a
slot that has been emitted (or is emitted in that cycle), so stalls on either side never lose or
reorder a byte.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Transposer"]


class Transposer(wiring.Component):
    """``lanes x lanes`` byte transposer, a word in and a word out a cycle.

    Members
    -------
    i : In(stream.Signature(ArrayLayout(unsigned(8), lanes)))
        Words of a tile, ``lanes`` to a tile.
    o : Out(stream.Signature(ArrayLayout(unsigned(8), lanes)))
        The transposed words: word ``j`` of a tile is byte ``j`` of its input words (byte ``f``
        from input word ``f``).
    busy : Out(1)
        The array holds a word not yet emitted.
    """

    def __init__(self, lanes: int) -> None:
        if not isinstance(lanes, int) or isinstance(lanes, bool) or not 2 <= lanes <= 64:
            raise ValueError(f"Transposer lanes must be an integer from 2 to 64, not {lanes!r}")
        self._lanes = lanes
        word = data.ArrayLayout(unsigned(8), lanes)
        super().__init__({"i": In(stream.Signature(word)), "o": Out(stream.Signature(word)), "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        L = self._lanes
        t = [[Signal(8, name=f"t{r}_{c}") for c in range(L)] for r in range(L)]  # row r, column c
        have = Signal()  # a whole tile is draining
        ddir = Signal()  # how the draining tile was written: 0 by rows (drains by columns), 1 by columns
        fdir = Signal()  # how the filling tile is written
        o_cnt = Signal(range(L))  # the draining tile's next word
        i_cnt = Signal(range(L + 1))  # words of the filling tile taken

        col = Signal(8 * L)
        row = Signal(8 * L)
        with m.Switch(o_cnt):
            for j in range(L):
                with m.Case(j):
                    m.d.comb += [col.eq(Cat(*(t[f][j] for f in range(L)))), row.eq(Cat(*t[j]))]
        fire_o = Signal()
        m.d.comb += [self.o.valid.eq(have), self.o.payload.as_value().eq(Mux(ddir, row, col)),
                     fire_o.eq(have & self.o.ready), self.busy.eq(have | (i_cnt != 0))]

        # slot i_cnt is free once the draining tile has emitted it (or emits it now)
        free = ~have | (i_cnt < o_cnt) | ((i_cnt == o_cnt) & fire_o)
        m.d.comb += self.i.ready.eq((i_cnt < L) & free)
        fire_i = self.i.valid & self.i.ready
        word = self.i.payload
        with m.If(fire_i):
            for a in range(L):
                for b in range(L):
                    # by rows: word a into row a (byte b to column b); by columns: word b into
                    # column b (byte a to row a)
                    with m.If(~fdir & (i_cnt == a)):
                        m.d.sync += t[a][b].eq(word[b])
                    with m.Elif(fdir & (i_cnt == b)):
                        m.d.sync += t[a][b].eq(word[a])

        full = (i_cnt == L) | (fire_i & (i_cnt == L - 1))  # the filling tile is whole after this cycle
        drained = ~have | (fire_o & (o_cnt == L - 1))  # nothing drains after this cycle
        with m.If(fire_o):
            m.d.sync += o_cnt.eq(o_cnt + 1)
        with m.If(fire_i):
            m.d.sync += i_cnt.eq(i_cnt + 1)
        with m.If(drained):
            with m.If(full):  # the filled tile drains next; the one after fills the other way
                m.d.sync += [have.eq(1), ddir.eq(fdir), fdir.eq(~fdir), o_cnt.eq(0), i_cnt.eq(0)]
            with m.Else():
                m.d.sync += [have.eq(0), o_cnt.eq(0)]
        return m

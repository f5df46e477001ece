"""On-chip buffer: a simple dual-port memory (one write port, one synchronous read port)."""

from __future__ import annotations

from amaranth import Module, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Buffer"]


class Buffer(wiring.Component):
    """``depth`` words of ``width`` bits, written and read in the same cycle through separate
    ports; the read data appears one cycle after the address (block-RAM timing).

    Parameters
    ----------
    width : int
        Word width in bits, 1 to 1024.
    depth : int
        Number of words, 2 to 2**20.

    Members
    -------
    w_addr, w_data, w_en : In
        Write port.
    r_addr, r_en : In
        Read port address and enable.
    r_data : Out(width)
        Read data, valid the cycle after ``r_en``.
    """

    def __init__(self, width: int, depth: int) -> None:
        if not isinstance(width, int) or isinstance(width, bool) or not 1 <= width <= 1024:
            raise ValueError(f"Width must be an integer from 1 to 1024, not {width!r}")
        if not isinstance(depth, int) or isinstance(depth, bool) or not 2 <= depth <= 2**20:
            raise ValueError(f"Depth must be an integer from 2 to 2**20, not {depth!r}")
        self._width, self._depth = width, depth
        abits = (depth - 1).bit_length()
        super().__init__({
            "w_addr": In(unsigned(abits)), "w_data": In(unsigned(width)), "w_en": In(1),
            "r_addr": In(unsigned(abits)), "r_en": In(1), "r_data": Out(unsigned(width)),
        })

    @property
    def width(self) -> int:
        return self._width

    @property
    def depth(self) -> int:
        return self._depth

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = memory.Memory(shape=unsigned(self._width), depth=self._depth, init=[])
        wr = mem.write_port()
        rd = mem.read_port(domain="sync")
        m.d.comb += [
            wr.addr.eq(self.w_addr), wr.data.eq(self.w_data), wr.en.eq(self.w_en),
            rd.addr.eq(self.r_addr), rd.en.eq(self.r_en), self.r_data.eq(rd.data),
        ]
        return m

"""cocotb testbench of the ViT block accelerator: an AXI4 memory model and an AXI4-Lite host.

Run through :func:`qsilicon.sim.vit.rtl_vit_block`, which passes in the environment:
``QS_MEM`` (the memory image file), ``QS_PROG`` (the program's byte address), ``QS_DUMP``
(where to write the memory after the run), ``QS_RESULT`` (JSON: cycles, status, operations),
``QS_READY_P`` (probability that the memory accepts or returns a beat in a cycle), ``QS_SEED``
and ``QS_MAX_CYCLES``.  The test fails unless the engine reports done without error; the
comparison with the integer model is made by the caller on the dumped memory.
"""

from __future__ import annotations

import json
import os
import random
from collections import deque

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

REG_CTRL, REG_STATUS, REG_PROG, REG_CYCLES, REG_OPS = 0x00, 0x04, 0x08, 0x0C, 0x10


class AxiMemory:
    """AXI4 slave memory (INCR bursts, in-order responses); reads and writes proceed in parallel.
    ``ready_p`` < 1 stalls AR/R/AW/W handshakes at random."""

    def __init__(self, dut, mem: bytearray, ready_p: float, rng: random.Random):
        self.dut, self.mem, self.p, self.rng = dut, mem, ready_p, rng
        self.wb = len(dut.m_axi__wdata.value) // 8
        self.reads: deque = deque()  # [addr, beats left]
        self.writes: deque = deque()  # [addr, beats left]
        self.bresp = 0
        self.errors: list[str] = []

    def _go(self) -> bool:
        return self.p >= 1.0 or self.rng.random() < self.p

    def drive(self) -> None:
        d = self.dut
        d.m_axi__arready.value = int(self._go())
        d.m_axi__awready.value = int(self._go())
        d.m_axi__wready.value = int(bool(self.writes) and self._go())
        if self.reads and self._go():
            addr, left = self.reads[0]
            d.m_axi__rvalid.value = 1
            d.m_axi__rdata.value = int.from_bytes(self.mem[addr : addr + self.wb], "little")
            d.m_axi__rlast.value = int(left == 1)
            d.m_axi__rresp.value = 0
        else:
            d.m_axi__rvalid.value = 0
        d.m_axi__bvalid.value = int(self.bresp > 0)
        d.m_axi__bresp.value = 0

    def sample(self) -> None:
        d = self.dut
        if d.m_axi__arvalid.value == 1 and d.m_axi__arready.value == 1:
            addr, beats = int(d.m_axi__araddr.value), int(d.m_axi__arlen.value) + 1
            if addr % self.wb or addr + beats * self.wb > len(self.mem):
                self.errors.append(f"read burst {addr:#x} x {beats} outside memory or unaligned")
                addr = 0
            self.reads.append([addr, beats])
        if d.m_axi__rvalid.value == 1 and d.m_axi__rready.value == 1:
            r = self.reads[0]
            r[0] += self.wb
            r[1] -= 1
            if r[1] == 0:
                self.reads.popleft()
        if d.m_axi__awvalid.value == 1 and d.m_axi__awready.value == 1:
            addr, beats = int(d.m_axi__awaddr.value), int(d.m_axi__awlen.value) + 1
            if addr % self.wb or addr + beats * self.wb > len(self.mem):
                self.errors.append(f"write burst {addr:#x} x {beats} outside memory or unaligned")
            self.writes.append([addr, beats])
        if d.m_axi__wvalid.value == 1 and d.m_axi__wready.value == 1:
            w = self.writes[0]
            data = int(d.m_axi__wdata.value).to_bytes(self.wb, "little")
            if w[0] >= 0 and w[0] + self.wb <= len(self.mem):
                self.mem[w[0] : w[0] + self.wb] = data
            w[0] += self.wb
            w[1] -= 1
            if (w[1] == 0) != (d.m_axi__wlast.value == 1):
                self.errors.append("wlast does not mark the burst's last beat")
            if w[1] == 0:
                self.writes.popleft()
                self.bresp += 1
        if d.m_axi__bvalid.value == 1 and d.m_axi__bready.value == 1:
            self.bresp -= 1


class AxiLiteHost:
    """A sequential AXI4-Lite master stepped by the same clock loop."""

    def __init__(self, dut):
        self.dut = dut
        self.queue: deque = deque()  # ("w", addr, data) or ("r", addr, None)
        self.busy = None
        self.result = None

    def drive(self) -> None:
        d = self.dut
        if self.busy is None and self.queue:
            self.busy = [*self.queue.popleft(), False]
        kind = self.busy[0] if self.busy else None
        d.s_axil__awvalid.value = int(kind == "w" and not self.busy[3])
        d.s_axil__wvalid.value = int(kind == "w" and not self.busy[3])
        d.s_axil__awaddr.value = self.busy[1] if kind == "w" else 0
        d.s_axil__wdata.value = self.busy[2] if kind == "w" else 0
        d.s_axil__wstrb.value = 0xF
        d.s_axil__bready.value = 1
        d.s_axil__arvalid.value = int(kind == "r" and not self.busy[3])
        d.s_axil__araddr.value = self.busy[1] if kind == "r" else 0
        d.s_axil__rready.value = 1

    def sample(self) -> None:
        d = self.dut
        if not self.busy:
            return
        if self.busy[0] == "w":
            if d.s_axil__awvalid.value == 1 and d.s_axil__awready.value == 1:
                self.busy[3] = True
            if d.s_axil__bvalid.value == 1:
                self.busy = None
        else:
            if d.s_axil__arvalid.value == 1 and d.s_axil__arready.value == 1:
                self.busy[3] = True
            if d.s_axil__rvalid.value == 1:
                self.result = int(d.s_axil__rdata.value)
                self.busy = None


async def start_engine(dut) -> tuple[bytearray, AxiMemory, AxiLiteHost]:
    """Load ``QS_MEM``, start the clock, reset, and queue the host's ``PROG_ADDR`` and ``CTRL``
    writes (an engine with the shared register map's first three registers)."""
    with open(os.environ["QS_MEM"], "rb") as f:
        mem = bytearray(f.read())
    rng = random.Random(int(os.environ.get("QS_SEED", "0")))
    memory = AxiMemory(dut, mem, float(os.environ.get("QS_READY_P", "1")), rng)
    host = AxiLiteHost(dut)
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    host.queue.extend([("w", REG_PROG, int(os.environ["QS_PROG"])), ("w", REG_CTRL, 1)])
    return mem, memory, host


async def read_registers(dut, host: AxiLiteHost, regs: dict[str, int]) -> dict[str, int]:
    """``{name: value}`` of the registers at ``regs`` (byte offsets), read one after another."""
    out = {}
    for name, reg in regs.items():
        host.queue.append(("r", reg, None))
        while host.queue or host.busy is not None:
            await RisingEdge(dut.clk)
            host.drive()
            await ReadOnly()
            host.sample()
        out[name] = host.result
    return out


@cocotb.test()
async def vit_block_runs(dut):
    mem, memory, host = await start_engine(dut)
    status = None
    polling = False
    max_cycles = int(os.environ.get("QS_MAX_CYCLES", "2000000"))
    for _ in range(max_cycles):
        await RisingEdge(dut.clk)
        memory.drive()
        host.drive()
        await ReadOnly()
        memory.sample()
        host.sample()
        if memory.errors:
            break
        if not host.queue and host.busy is None:
            if host.result is not None and polling == "status":
                status = host.result
                host.result = None
                if status & 2:  # done
                    break
                polling = False
            if not polling and int(dut.irq.value) == 1:
                host.queue.append(("r", REG_STATUS, None))
                polling = "status"
    regs = await read_registers(dut, host, {"cycles": REG_CYCLES, "ops": REG_OPS})
    with open(os.environ["QS_DUMP"], "wb") as f:
        f.write(mem)
    with open(os.environ["QS_RESULT"], "w") as f:
        json.dump({"status": status, "errors": memory.errors, **regs}, f)
    assert not memory.errors, memory.errors[0]
    assert status is not None, f"the engine did not finish in {max_cycles} cycles"
    assert not status & 4, f"the engine stopped with error cause {(status >> 8) & 15}"

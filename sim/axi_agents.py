"""cocotb agents shared by the accelerators' testbenches: an AXI4 slave memory (random stalls,
injected SLVERR responses and long stalls) and a sequential AXI4-Lite host, both stepped by the
testbench's one clock loop (``drive`` after the rising edge, ``sample`` in the read-only phase).
"""

from __future__ import annotations

import json
import os
import random
from collections import deque

from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

__all__ = ["AxiLiteHost", "AxiMemory", "EngineBench", "bus_faults", "read_registers", "run_cases", "start_engine",
           "stop_check"]

#: The register offsets every accelerator shares: control, status, program address; instructions
#: (depth engine) or descriptors (ViT) run, the program counter.
REG_CTRL, REG_STATUS, REG_PROG, REG_COUNT, REG_PC = 0x00, 0x04, 0x08, 0x10, 0x14


class AxiMemory:
    """AXI4 slave memory (INCR bursts, in-order responses); reads and writes proceed in parallel.
    ``ready_p`` < 1 stalls AR/R/AW/W handshakes at random.

    Faults (``faults``, for the error tests): ``read_error`` = n answers the n-th read burst with
    SLVERR (or ``error_resp``: 3 for DECERR), ``write_error`` = n the n-th write burst; ``stall`` =
    (first cycle, cycles) holds every handshake of the slave for that long; ``decerr_outside``
    answers a burst outside the memory with DECERR (else it is an error of the design)."""

    def __init__(self, dut, mem: bytearray, ready_p: float, rng: random.Random, faults: dict | None = None):
        self.dut, self.mem, self.p, self.rng = dut, mem, ready_p, rng
        self.wb = len(dut.m_axi__wdata.value) // 8
        self.reads: deque = deque()  # [addr, beats left, resp]
        self.writes: deque = deque()  # [addr, beats left, resp]
        self.bresp: deque = deque()  # responses of finished write bursts
        self.errors: list[str] = []
        self.faults = faults or {}
        self.n_reads = self.n_writes = self.cycle = 0
        self.written: dict[int, int] | None = None  # a dict: each written word's address -> its cycle
        self._last: dict[str, int] = {}
        self._handles: dict = {}

    def _go(self) -> bool:
        return self.p >= 1.0 or self.rng.random() < self.p

    def reset(self) -> None:
        """Drop every transaction in flight (the slave's side of a system reset)."""
        self.reads.clear()
        self.writes.clear()
        self.bresp.clear()

    @staticmethod
    def quiet(dut) -> None:
        """Drive the slave's side of the bus idle (no response, nothing accepted): before a reset
        ends, so that the design never sees a response of an earlier run's transaction."""
        for name in ("arready", "awready", "wready", "rvalid", "bvalid"):
            getattr(dut, f"m_axi__{name}").value = 0

    def _set(self, name: str, value: int) -> None:
        """Drive ``m_axi__<name>`` (only when it changes: a write through the simulator's interface
        costs more than the comparison)."""
        if self._last.get(name) != value:
            self._last[name] = value
            self._h(name).value = value

    def drive(self) -> None:
        self.cycle += 1
        first, length = self.faults.get("stall", (0, 0))
        if first <= self.cycle < first + length:
            for name in ("arready", "awready", "wready", "rvalid", "bvalid"):
                self._set(name, 0)
            return
        self._set("arready", int(self._go()))
        self._set("awready", int(self._go()))
        self._set("wready", int(bool(self.writes) and self._go()))
        if self.reads and self._go():
            addr, left, resp = self.reads[0]
            self._set("rvalid", 1)
            self._set("rdata", int.from_bytes(self.mem[addr : addr + self.wb], "little"))
            self._set("rlast", int(left == 1))
            self._set("rresp", resp)
        else:
            self._set("rvalid", 0)
        self._set("bvalid", int(bool(self.bresp)))
        self._set("bresp", self.bresp[0] if self.bresp else 0)

    def _h(self, name: str):
        h = self._handles.get(name)
        if h is None:
            h = self._handles[name] = getattr(self.dut, f"m_axi__{name}")
        return h

    def sample(self) -> None:
        d, last, h = self.dut, self._last, self._h
        # (a handshake needs the side this model drives high: that is known without asking)
        if last.get("arready") and h("arvalid").value == 1:
            addr, beats = int(d.m_axi__araddr.value), int(d.m_axi__arlen.value) + 1
            resp = self.faults.get("error_resp", 2) if self.faults.get("read_error") == self.n_reads else 0
            if addr % self.wb or addr + beats * self.wb > len(self.mem):
                if not (self.faults.get("decerr_outside") and addr % self.wb == 0):
                    self.errors.append(f"read burst {addr:#x} x {beats} outside memory or unaligned")
                addr, resp = 0, 3
            self.reads.append([addr, beats, resp])
            self.n_reads += 1
        if last.get("rvalid") and h("rready").value == 1:
            r = self.reads[0]
            r[0] += self.wb
            r[1] -= 1
            if r[1] == 0:
                self.reads.popleft()
        if last.get("awready") and h("awvalid").value == 1:
            addr, beats = int(d.m_axi__awaddr.value), int(d.m_axi__awlen.value) + 1
            resp = self.faults.get("error_resp", 2) if self.faults.get("write_error") == self.n_writes else 0
            if addr % self.wb or addr + beats * self.wb > len(self.mem):
                if not (self.faults.get("decerr_outside") and addr % self.wb == 0):
                    self.errors.append(f"write burst {addr:#x} x {beats} outside memory or unaligned")
                addr, resp = -len(self.mem) - beats * self.wb, 3  # (its data is dropped below)
            self.writes.append([addr, beats, resp])
            self.n_writes += 1
        if last.get("wready") and h("wvalid").value == 1:
            w = self.writes[0]
            data = int(d.m_axi__wdata.value).to_bytes(self.wb, "little")
            if w[0] >= 0 and w[0] + self.wb <= len(self.mem):
                self.mem[w[0] : w[0] + self.wb] = data
                if self.written is not None:
                    self.written[w[0]] = self.cycle
            w[0] += self.wb
            w[1] -= 1
            if (w[1] == 0) != (d.m_axi__wlast.value == 1):
                self.errors.append("wlast does not mark the burst's last beat")
            if w[1] == 0:
                self.writes.popleft()
                self.bresp.append(w[2])
        if last.get("bvalid") and h("bready").value == 1:
            self.bresp.popleft()


class AxiLiteHost:
    """A sequential AXI4-Lite master stepped by the same clock loop."""

    @staticmethod
    def quiet(dut) -> None:
        """Drive the master's side idle (no request; responses accepted): what an idle host drives."""
        for name in ("awvalid", "wvalid", "arvalid"):
            getattr(dut, f"s_axil__{name}").value = 0
        dut.s_axil__bready.value = 1
        dut.s_axil__rready.value = 1

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
        state = (kind, self.busy[1:] if self.busy else None)
        if state == getattr(self, "_driven", None) and (kind is None or self.busy[3]):
            return  # idle, or waiting for a response: the signals hold what they had
        self._driven = (kind, list(self.busy[1:]) if self.busy else None)
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
    memory = AxiMemory(dut, mem, float(os.environ.get("QS_READY_P", "1")), rng,
                       json.loads(os.environ.get("QS_FAULTS", "{}")))
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


class EngineBench:
    """An accelerator with the shared register map on the AXI4 memory model and the AXI4-Lite host,
    run program after program in one simulation (the regressions' testbenches): reset with the bus
    idle, start a program, wait for the interrupt within a cycle limit, read registers."""

    def __init__(self, dut) -> None:
        self.dut = dut
        self.host = AxiLiteHost(dut)

    async def reset(self) -> None:
        await RisingEdge(self.dut.clk)
        AxiMemory.quiet(self.dut)  # (else the last run's pending responses reach the design)
        AxiLiteHost.quiet(self.dut)
        self.host.queue.clear()
        self.host.busy = None
        self.dut.rst.value = 1
        for _ in range(3):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0

    async def step(self, memory: AxiMemory) -> None:
        await RisingEdge(self.dut.clk)
        memory.drive()
        self.host.drive()
        await ReadOnly()
        memory.sample()
        self.host.sample()

    async def reg(self, memory: AxiMemory, offset: int) -> int:
        self.host.queue.append(("r", offset, None))
        while self.host.queue or self.host.busy is not None:
            await self.step(memory)
        return self.host.result

    async def run(self, mem: bytearray, pa: int, ready_p: float, rng: random.Random, faults: dict, limit: int, *,
                  reset_at: int | None = None, setup: tuple = ()):
        """Write the ``setup`` registers (``(offset, value)``), start the program at ``pa``;
        ``(memory model, registers or None if reset at cycle reset_at, cycles)``; raises
        TimeoutError without an interrupt within ``limit`` cycles (naming the status, the PC and
        the count of instructions or descriptors, the bursts seen)."""
        memory = AxiMemory(self.dut, mem, ready_p, rng, faults)
        memory.written = {}
        self.host.queue.extend([*(("w", off, v) for off, v in setup), ("w", REG_PROG, pa), ("w", REG_CTRL, 1)])
        for cycle in range(limit):
            await self.step(memory)
            if memory.errors:
                raise AssertionError(memory.errors[0])
            if reset_at is not None and cycle == reset_at:
                memory.reset()
                await self.reset()
                return memory, None, cycle
            if not self.host.queue and self.host.busy is None and int(self.dut.irq.value) == 1:
                regs = {name: await self.reg(memory, off) for name, off in
                        (("STATUS", REG_STATUS), ("PC", REG_PC), ("COUNT", REG_COUNT))}
                return memory, regs, cycle + 1
        regs = {name: await self.reg(memory, off) for name, off in
                (("STATUS", REG_STATUS), ("PC", REG_PC), ("COUNT", REG_COUNT))}
        raise TimeoutError(f"hang: no interrupt within {limit} cycles (STATUS {regs['STATUS']:#x}, PC "
                           f"{regs['PC']:#x}, {regs['COUNT']} instructions or descriptors; {memory.n_reads} read and "
                           f"{memory.n_writes} write bursts)")


def bus_faults(f: dict) -> dict:
    """The :class:`AxiMemory` faults of a regression case's fault (``qsilicon.sim.regress``): a
    SLVERR/DECERR answer to the n-th read or write burst, or a long stall; ``{}`` for the others."""
    kind = f["kind"]
    if kind.startswith(("read_", "write_")):
        return {f"{kind.split('_')[0]}_error": f["n"], "error_resp": f["resp"]}
    if kind == "stall":
        return {"stall": (f["first"], f["length"])}
    return {}


def stop_check(regs: dict, memory: AxiMemory, f: dict, expect: int, read_cause: int,
               write_cause: int) -> tuple[int, int, str | None]:
    """``(cause the run stopped with, 0 without error; the cause expected; what is wrong or None)``.
    A bus error of the case that fired (the memory saw that many bursts) must stop the run with its
    cause; one that did not fire changes nothing (``expect`` stays)."""
    status = regs["STATUS"]
    error = bool(status & 4)
    cause = (status >> 8) & 15 if error else 0
    kind = f["kind"]
    if kind.startswith("read_") and memory.n_reads > f["n"]:
        expect = read_cause
    if kind.startswith("write_") and memory.n_writes > f["n"]:
        expect = write_cause
    wrong = None
    if cause != expect or error != bool(expect):
        wrong = f"status {status:#x}: error {int(error)} cause {cause}, expected cause {expect} ({kind})"
    return cause, expect, wrong


async def run_cases(dut, run_case) -> None:
    """A regression testbench's loop: ``QS_CASES`` one after another through ``await
    run_case(bench, case)`` (a result dict), one JSON line each to ``QS_RESULTS``; a right case after
    a fault (other than a stall) also hits ``outcome/correct_after_fault``."""
    import torch

    cases = torch.load(os.environ["QS_CASES"], weights_only=True)
    Clock(dut.clk, 10, unit="ns").start()
    bench = EngineBench(dut)
    after_fault = False
    with open(os.environ["QS_RESULTS"], "a") as out:
        for c in cases:
            res = await run_case(bench, c)
            if after_fault and res["ok"] and c["fault"]["kind"] == "none":
                res["observed"].append("outcome/correct_after_fault")
            after_fault = c["fault"]["kind"] not in ("none", "stall")
            out.write(json.dumps({"index": c["index"], **res}) + "\n")
            out.flush()

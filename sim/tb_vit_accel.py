"""cocotb testbench of the ViT accelerator (:class:`qsilicon.hw.vit.system.VitAccel`): the host
driver :class:`~qsilicon.hw.vit.driver.VitHost` on a bus made of the AXI4 slave memory and the
AXI4-Lite host of :mod:`qsilicon.sim.axi_agents`.

Run through :func:`qsilicon.sim.vit_accel.rtl_vit`, which passes in the environment: ``QS_MEM``
(the memory image), ``QS_LAYOUT`` (the program layout, JSON), ``QS_INPUTS`` (int8 patch codes of
the images, ``.npy`` ``[N, patches, patch_dim]``), ``QS_RESULT`` (where the per-image results go,
JSON), ``QS_DUMP`` (a directory for the memory after each image, optional), ``QS_READY_P``,
``QS_SEED``, ``QS_FAULTS`` (JSON, see :class:`~qsilicon.sim.axi_agents.AxiMemory`),
``QS_MAX_CYCLES`` (per image) and ``QS_WATCHDOG``.  Every run must finish (the interrupt) within
its cycle limit, with or without an error (a run after an error starts afresh); the fault
``reset_at`` resets the whole system that many cycles into the first run instead.  The comparison
with the integer model is the caller's.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import cocotb
import numpy as np
import torch
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from qsilicon.hw.vit.compiler import ProgramLayout
from qsilicon.hw.vit.driver import VitHost
from qsilicon.hw.vit.system import REGS
from qsilicon.sim.axi_agents import AxiLiteHost, AxiMemory


class CocotbBus:
    """The :class:`~qsilicon.hw.vit.driver.Bus` of the testbench: memory is the slave model's
    bytes, registers go through the AXI4-Lite host, time goes by in one clock loop."""

    def __init__(self, dut, memory: AxiMemory, max_cycles: int, reset_at: int | None = None) -> None:
        self.dut, self.memory, self.host = dut, memory, AxiLiteHost(dut)
        self.max_cycles = max_cycles
        self.reset_at = reset_at  # a reset of the whole system that many cycles into the first run
        self.trace = [] if os.environ.get("QS_TRACE") else None

    async def _cycle(self) -> None:
        await RisingEdge(self.dut.clk)
        self.memory.drive()
        self.host.drive()
        await ReadOnly()
        self.memory.sample()
        self.host.sample()
        if self.trace is not None:  # QS_TRACE: per cycle the array's beat, read/write beats and the descriptor
            d = self.dut
            self.trace.append((int(d.gemm.beat.value), int(d.m_axi__rvalid.value) & int(d.m_axi__rready.value),
                               int(d.m_axi__wvalid.value) & int(d.m_axi__wready.value), int(d.pc.value)))
        if self.memory.errors:
            raise AssertionError(self.memory.errors[0])

    async def _idle(self) -> None:
        while self.host.queue or self.host.busy is not None:
            await self._cycle()

    async def write_memory(self, addr: int, data: bytes) -> None:
        self.memory.mem[addr : addr + len(data)] = data

    async def read_memory(self, addr: int, n: int) -> bytes:
        return bytes(self.memory.mem[addr : addr + n])

    async def write_reg(self, offset: int, value: int) -> None:
        self.host.queue.append(("w", offset, value))
        await self._idle()

    async def read_reg(self, offset: int) -> int:
        self.host.queue.append(("r", offset, None))
        await self._idle()
        return self.host.result

    async def wait_irq(self) -> None:
        for cycle in range(self.max_cycles):
            await self._cycle()
            if int(self.dut.irq.value) == 1:
                return
            if cycle == self.reset_at:
                self.reset_at = None
                await RisingEdge(self.dut.clk)
                self.dut.rst.value = 1
                self.memory.reset()  # a system reset: the slave drops its transactions too
                for _ in range(3):
                    await self._cycle()
                await RisingEdge(self.dut.clk)
                self.dut.rst.value = 0
                return
        raise AssertionError(f"no interrupt within {self.max_cycles} cycles: the accelerator hangs")


@cocotb.test()
async def vit_accel_runs(dut):
    layout = ProgramLayout.from_dict(json.loads(os.environ["QS_LAYOUT"]))
    codes = torch.from_numpy(np.load(os.environ["QS_INPUTS"]).astype(np.int64))
    mem = bytearray(layout.image_bytes)
    rng = random.Random(int(os.environ.get("QS_SEED", "0")))
    memory = AxiMemory(dut, mem, float(os.environ.get("QS_READY_P", "1")), rng,
                       json.loads(os.environ.get("QS_FAULTS", "{}")))
    bus = CocotbBus(dut, memory, int(os.environ.get("QS_MAX_CYCLES", "5000000")), memory.faults.get("reset_at"))
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    host = VitHost(layout)
    with open(os.environ["QS_MEM"], "rb") as f:
        await host.load(bus, f.read())
    await bus.write_reg(REGS["WATCHDOG"], int(os.environ.get("QS_WATCHDOG", "0")))
    dump = os.environ.get("QS_DUMP")
    results = []
    try:
        for i in range(codes.shape[0]):
            results.append((await host.infer(bus, codes[i])).to_dict())
            if dump:
                Path(dump, f"image{i}.bin").write_bytes(bytes(mem))
    finally:
        Path(os.environ["QS_RESULT"]).write_text(json.dumps(results))
        if bus.trace is not None:
            np.save(os.environ["QS_TRACE"], np.array(bus.trace, dtype=np.int64))

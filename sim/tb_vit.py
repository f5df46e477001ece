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

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from qsilicon.sim.axi_agents import read_registers, start_engine

REG_CTRL, REG_STATUS, REG_PROG, REG_CYCLES, REG_OPS = 0x00, 0x04, 0x08, 0x0C, 0x10


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

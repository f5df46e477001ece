"""cocotb testbench of the QuartDepth engine: the AXI4 memory model and AXI4-Lite host of
:mod:`qsilicon.sim.axi_agents`, plus a monitor of the compute unit's activity per instruction tag.

Run through :func:`qsilicon.sim.depth.rtl_depth`, which passes ``QS_MEM``, ``QS_PROG``, ``QS_DUMP``,
``QS_RESULT``, ``QS_READY_P``, ``QS_SEED``, ``QS_MAX_CYCLES`` and ``QS_EXPECT_ERROR`` (1: the run must
stop with the error bit) in the environment.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from qsilicon.sim.axi_agents import read_registers, start_engine

REGS = {"STATUS": 0x04, "CYCLES": 0x0C, "INSNS": 0x10, "PC": 0x14, "BEATS": 0x1C, "LD_BUSY": 0x20, "CP_BUSY": 0x24,
        "ST_BUSY": 0x28, "RD_WORDS": 0x2C, "WR_WORDS": 0x30}


@cocotb.test()
async def depth_engine_runs(dut):
    mem, memory, host = await start_engine(dut)
    busy_by_tag: dict = defaultdict(int)
    beats_by_tag: dict = defaultdict(int)
    first_by_tag: dict = {}  # cycle (from start) of each tag's first compute beat
    max_cycles = int(os.environ.get("QS_MAX_CYCLES", "5000000"))
    finished = False
    for cycle in range(max_cycles):
        await RisingEdge(dut.clk)
        memory.drive()
        host.drive()
        await ReadOnly()
        memory.sample()
        host.sample()
        if int(dut.o_cp_busy.value):
            tag = int(dut.o_tag.value)
            first_by_tag.setdefault(tag, cycle)
            busy_by_tag[tag] += 1
            beats_by_tag[tag] += int(dut.o_mac.value)
        if memory.errors:
            break
        if not host.queue and host.busy is None and int(dut.irq.value) == 1:
            finished = True
            break
    end_cycle = cycle
    regs = await read_registers(dut, host, REGS)
    with open(os.environ["QS_DUMP"], "wb") as f:
        f.write(mem)
    with open(os.environ["QS_RESULT"], "w") as f:
        json.dump({"finished": finished, "errors": memory.errors, "regs": regs,
                   "busy_by_tag": busy_by_tag, "beats_by_tag": beats_by_tag,
                   "first_by_tag": first_by_tag, "end_cycle": end_cycle}, f)
    assert not memory.errors, memory.errors[0]
    assert finished, f"the engine did not finish in {max_cycles} cycles"
    expect_error = os.environ.get("QS_EXPECT_ERROR", "0") == "1"
    assert bool(regs["STATUS"] & 4) == expect_error, (
        f"error bit {bool(regs['STATUS'] & 4)} (cause {(regs['STATUS'] >> 8) & 15}), expected {expect_error}")

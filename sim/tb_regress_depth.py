"""cocotb regression testbench of the QuartDepth engine: random programs streamed through one
simulation, each checked against the instruction-set simulator, some with injected faults.

Run by :func:`qsilicon.sim.regress.regress`: ``QS_CASES`` (a ``torch.save`` list of case dicts:
program seed and length, synchronisation, fault, ready probability, seed), ``QS_CONFIG`` (the
:class:`~qsilicon.hw.depth.isa.EngineConfig`, JSON), ``QS_RESULTS`` (one JSON line per case).

Every case is a fresh memory image and a reset; the engine must raise its interrupt within the
case's cycle limit.  Expected outcomes: without a fault (or with a long stall) the memory equals
the ISS's; a bus error that fired stops the run with its cause (3 read, 4 write), one that did not
fire changes nothing; an illegal instruction stops the run at its address with cause 1 or 2 after
everything before it has run (the memory equals the ISS's of the program cut there); a program
without END that runs off the end of memory stops with cause 3; a reset in the middle of a run is
followed by the same program from the start, which must then be right.
"""

from __future__ import annotations

import json
import os
import random

import cocotb

from qsilicon.hw.depth.engine import ERR_FIELD, ERR_OPCODE, ERR_READ, ERR_WRITE
from qsilicon.hw.depth.isa import (
    FMT_S16,
    FMT_U4,
    FMT_U8,
    INSN_BYTES,
    MEMS,
    OP_COMPUTE,
    OP_END,
    OP_LOAD,
    OP_STORE,
    EngineConfig,
    decode,
    encode,
)
from qsilicon.hw.depth.iss import run_program
from qsilicon.sim.axi_agents import EngineBench, bus_faults, run_cases, stop_check
from qsilicon.sim.depth import random_program

FMT = {FMT_U4: "u4", FMT_U8: "u8", FMT_S16: "s16"}
MODES = ("bytes", "nibble_u", "nibble_s")


def program(mem: bytes, pa: int) -> list[dict]:
    out, pc = [], pa
    while pc + INSN_BYTES <= len(mem):
        i = decode(bytes(mem[pc : pc + INSN_BYTES]))
        out.append(i)
        if i["op"] == OP_END:
            break
        pc += INSN_BYTES
    return out


def program_bins(insns: list[dict]) -> set[str]:
    b = set()
    for i in insns:
        if i["barrier"] and i["op"] != OP_END:
            b.add("hazard/barrier")
        for flag, name in (("pop_prev", "waits_prev"), ("pop_next", "waits_next")):
            if i[flag] and i["op"] != OP_END:
                b.add(f"hazard/{('load', 'compute', 'store')[i['op'] - OP_LOAD]}_{name}")
        if i["op"] == OP_LOAD:
            b.add(f"load/{MEMS[i['mem']]}:{MODES[i['mode']]}" if MEMS[i["mem"]] != "par" else "load/par:bytes")
            if i["flush"]:
                b.add("load/flush")
        elif i["op"] == OP_COMPUTE:
            b |= {f"compute/k{i['k']}", f"compute/stride{i['stride']}", f"compute/fmt_{FMT[i['fmt']]}"}
            for flag, name in (("decode", "decode"), ("encode", "encode"), ("res", "residual"), ("pair", "pair"),
                               ("pair_out", "pair_out")):
                if i[flag]:
                    b.add(f"compute/{name}")
            if i["seg0"]["up"] or (i["seg1"]["ch"] and i["seg1"]["up"]):
                b.add("compute/upsample")
            if i["seg1"]["ch"]:
                b.add("compute/two_segments")
        elif i["op"] == OP_STORE:
            b.add(f"store/{FMT[i['fmt']]}")
    return b


def first_difference(insns: list[dict], want: bytes, got: bytes, written: dict) -> dict | None:
    diff = next((a for a in range(len(want)) if want[a] != got[a]), None)
    if diff is None:
        return None
    where = {"address": hex(diff), "expected": want[diff], "got": got[diff], "cycle": written.get(diff - diff % 8)}
    for n, i in enumerate(insns):  # the STORE that writes it (the last one in program order)
        if i["op"] != OP_STORE:
            continue
        p = i["dram"]
        for i1 in range(p["n1"]):
            for i0 in range(p["n0"]):
                a = (p["base"] + i0 * p["s0"] + i1 * p["s1"]) % 2**32
                if a <= diff < a + 8 * p["run"]:
                    where.update(store=n, row=i0, channel=i1, byte=diff - a)
    return where


def read_srams(dut, cfg: EngineConfig) -> dict:
    """The engine's on-chip memories as the ISS holds them (a reset does not clear them: the next
    program starts from what the last one left, as the ISS then must)."""
    import numpy as np

    out = {}
    for name, depth, n, bits, signed in (("act", cfg.act_depth, cfg.max_width, 8, False),
                                         ("wgt", cfg.wgt_depth, cfg.co, 8, True),
                                         ("par", cfg.par_depth, 32, 8, False), ("tab", cfg.tab_depth, 16, 8, False),
                                         ("out", cfg.out_depth, cfg.max_width, 16, True)):
        handle = getattr(dut, name)
        words = np.zeros((depth, n), np.int64)
        for a in range(depth):
            v = int(handle[a].value)
            row = [(v >> (bits * j)) & ((1 << bits) - 1) for j in range(n)]
            words[a] = row
        if signed:
            words = np.where(words >= 1 << (bits - 1), words - (1 << bits), words)
        out[name] = words.astype(np.uint8) if name == "par" else words
    return out


async def run_case(bench: EngineBench, cfg: EngineConfig, c: dict, sram: dict | None) -> tuple[dict, dict | None]:
    """One case; returns its result and the on-chip memories the engine holds after it (what the
    ISS left, when the case ran whole and right; ``None`` when only the engine knows)."""
    mem, pa = random_program(cfg, c["prog_seed"], c["n"], c["sync"])
    f = c["fault"]
    kind = f["kind"]
    insns = program(mem, pa)
    observed = program_bins(insns)
    expect_cause, expect_pc = 0, None
    want = bytearray(mem)
    faults = bus_faults(f)
    if kind.startswith("illegal"):
        at = min(int(f["at"] * (len(insns) - 1)), len(insns) - 2)
        bad = bytes([4 + at % 12]) + bytes(INSN_BYTES - 1) if kind == "illegal_opcode" else \
            encode({"op": OP_COMPUTE, "k": 2, "stride": 1})
        want[pa + at * INSN_BYTES : pa + (at + 1) * INSN_BYTES] = encode({"op": OP_END})
        mem[pa + at * INSN_BYTES : pa + (at + 1) * INSN_BYTES] = bad
        expect_cause = ERR_OPCODE if kind == "illegal_opcode" else ERR_FIELD
        expect_pc = pa + at * INSN_BYTES
        insns = insns[:at]
    elif kind == "truncated":  # the program without END at the very end of memory
        body = bytes(mem[pa : pa + (len(insns) - 1) * INSN_BYTES])
        mem += bytes(-len(mem) % INSN_BYTES)  # (instructions are 32-byte aligned)
        pa = len(mem)
        mem += body
        want = bytearray(mem)
        faults = {"decerr_outside": True}
        expect_cause = ERR_READ
    # reset first: after a bus error the engine raises its interrupt at once, and units that had
    # instructions queued may still be writing the on-chip memories until the reset stops them
    await bench.reset()
    if sram is None:
        sram = read_srams(bench.dut, cfg)
    original = bytes(want)
    if kind != "truncated":
        run_program(want, pa, cfg, strict=False, sram=sram)
    if kind == "illegal_opcode" or kind == "illegal_field":
        want[expect_pc : expect_pc + INSN_BYTES] = mem[expect_pc : expect_pc + INSN_BYTES]
    rng = random.Random(c["seed"])
    limit = 200_000 + (f.get("length", 0) if kind == "stall" else 0)
    image = bytearray(mem)
    try:
        memory, regs, cycles = await bench.run(image, pa, c["ready_p"], rng, faults, limit,
                                               reset_at=f["at"] if kind == "reset" else None)
        if regs is None:  # reset in the middle of the run: the same program again, from the start
            image, want, sram = bytearray(mem), bytearray(original), read_srams(bench.dut, cfg)
            run_program(want, pa, cfg, strict=False, sram=sram)
            memory, regs, more = await bench.run(image, pa, c["ready_p"], rng, {}, limit)
            cycles += more
            observed.add("outcome/completed_after_reset")
    except (TimeoutError, AssertionError) as e:
        return {"ok": False, "cycles": limit, "error": str(e), "first": None, "observed": sorted(observed)}, None
    cause, expect_cause, wrong = stop_check(regs, memory, f, expect_cause, ERR_READ, ERR_WRITE)
    observed.add({0: "outcome/completed", ERR_READ: "outcome/stopped_read", ERR_WRITE: "outcome/stopped_write",
                  ERR_OPCODE: "outcome/stopped_opcode", ERR_FIELD: "outcome/stopped_field"}.get(cause,
                                                                                                 "outcome/completed"))
    res = {"ok": True, "cycles": cycles, "error": None, "first": None}
    if wrong:
        res.update(ok=False, error=wrong)
    elif expect_pc is not None and regs["PC"] != expect_pc:
        res.update(ok=False, error=f"stopped at PC {regs['PC']:#x}, expected the illegal instruction at {expect_pc:#x}")
    elif kind != "truncated" and expect_cause not in (ERR_READ, ERR_WRITE) and bytes(image) != bytes(want):
        res.update(ok=False, error="the memory differs from the ISS's",
                   first=first_difference(insns, bytes(want), bytes(image), memory.written))
    whole = res["ok"] and (kind in ("none", "stall", "reset") or (kind.startswith(("read_", "write_"))
                                                                 and not expect_cause))
    return {**res, "observed": sorted(observed)}, sram if whole else None


@cocotb.test()
async def regress_depth(dut):
    cfg = EngineConfig(**json.loads(os.environ["QS_CONFIG"]))
    sram = None  # the engine's on-chip memories, when the ISS knows them

    async def one(bench, c):
        nonlocal sram
        res, sram = await run_case(bench, cfg, c, sram)
        return res

    await run_cases(dut, one)

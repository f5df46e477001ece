"""cocotb regression testbench of the whole ViT accelerator: windows of a compiled program's
descriptors over random activations, streamed through one simulation, each checked against the
ViT instruction-set simulator (:mod:`qsilicon.hw.vit.iss`), some with injected faults.

Run by :func:`qsilicon.sim.regress.regress`: ``QS_CASES`` (a ``torch.save`` list of case dicts:
the model's shape, precision and seed, the window, the data seed, fault, ready probability, seed),
``QS_CONFIG`` (the :class:`~qsilicon.hw.config.AccelConfig`, JSON), ``QS_RESULTS`` (one JSON line
per case).

A case compiles a random small integer ViT (cached per model), fills every activation tensor of
its image with random bytes, ends the program after the window's last descriptor and starts it at
the window's first (no cycle log).  Expected outcomes: without a fault (or with a long stall) the
memory equals the ISS's; a bus error that fired stops the run with its cause, one that did not fire
changes nothing; an illegal descriptor stops the run at it (cause 1 or 4) after the descriptors
before it, whose results must be right; a writer pattern with no words trips the watchdog (cause 7);
a window without END at the end of memory stops with cause 2 once its descriptors have run;
a reset in the middle is followed by the same window from the start, which must then be right.
"""

from __future__ import annotations

import json
import os
import random

import cocotb
import torch

from qsilicon.hw.config import AccelConfig
from qsilicon.hw.payload import pack, unpack
from qsilicon.hw.vit.compiler import compile_vit, region_size
from qsilicon.hw.vit.iss import run_program
from qsilicon.hw.vit.system import (
    CAUSE_GEMM,
    CAUSE_OPCODE,
    CAUSE_READ,
    CAUSE_STALL,
    CAUSE_WRITE,
    DESC_BYTES,
    REGS,
    descriptor_layout,
)
from qsilicon.quant.models.int_vit import IntViT
from qsilicon.quant.models.vit import ViT, ViTConfig
from qsilicon.sim.axi_agents import EngineBench, bus_faults, run_cases, stop_check

OUTCOME = {0: "completed", CAUSE_READ: "stopped_read", CAUSE_WRITE: "stopped_write", CAUSE_OPCODE: "stopped_opcode",
           CAUSE_GEMM: "stopped_gemm", CAUSE_STALL: "stopped_watchdog"}
_programs: dict = {}


def program(cfg: AccelConfig, spec: dict):
    """The compiled program of the case's random ViT (cached: cases share models)."""
    key = (cfg, tuple(sorted(spec.items())))
    if key not in _programs:
        torch.manual_seed(spec["seed"])
        model = ViT(ViTConfig(patch=spec["patch"], dim=spec["dim"], depth=1, heads=spec["heads"], mlp=spec["mlp"],
                              head_dim=16)).eval()
        prec = spec["precision"]
        ratio = int(prec[5:]) / 100 if prec.startswith("mixed") else 0.5
        iv = IntViT(model, torch.rand(16, 1, 28, 28), "mixed" if prec.startswith("mixed") else prec, ratio)
        if len(_programs) > 64:
            _programs.clear()
        _programs[key] = compile_vit(iv, cfg)
    return _programs[key]


def _patch(image: bytearray, at: int, view: str, **fields) -> None:
    lay = descriptor_layout()
    d = unpack(lay, int.from_bytes(image[at : at + DESC_BYTES], "little"))
    d[view].update(fields)
    image[at : at + DESC_BYTES] = pack(lay, {view: d[view]}).to_bytes(DESC_BYTES, "little")


def first_difference(prog, want: bytes, got: bytes, written: dict) -> dict | None:
    diff = next((a for a in range(len(want)) if want[a] != got[a]), None)
    if diff is None:
        return None
    where = {"address": hex(diff), "expected": want[diff], "got": got[diff],
             "cycle": written.get(diff - diff % prog.memory.lanes)}
    for name, r in prog.tensors.items():  # the tensor, token and feature it belongs to
        if r.addr <= diff < r.addr + region_size(r):
            off = diff - r.addr
            where["tensor"] = name
            if r.kind in ("block8", "block16"):
                width = 2 if r.kind == "block16" else 1
                block, rest = divmod(off, r.pitch * r.lanes * width)
                where["feature"], lane = divmod(rest, r.lanes * width)
                where["token"] = block * r.lanes + lane // width
    return where


async def run_case(bench: EngineBench, cfg: AccelConfig, c: dict) -> dict:
    prog = program(cfg, c["model"])
    ops = prog.ops
    start = min(int(c["start"] * len(ops)), len(ops) - 1)
    stop = min(start + c["window"], len(ops))
    window = ops[start:stop]
    observed = {f"descriptor/{o.model}" for o in window}
    rng = random.Random(c["data_seed"])
    mem = bytearray(prog.memory.data)
    for r in (prog.input, *prog.tensors.values()):
        mem[r.addr : r.addr + region_size(r)] = rng.randbytes(region_size(r))
    pa = prog.program + start * DESC_BYTES
    mem[prog.program + stop * DESC_BYTES : prog.program + (stop + 1) * DESC_BYTES] = bytes(DESC_BYTES)  # END
    f = c["fault"]
    kind = f["kind"]
    setup, expect_cause, expect_ops = [(REGS["LOG_ADDR"], 0), (REGS["WATCHDOG"], 0)], 0, None
    want = bytearray(mem)
    faults = bus_faults(f)
    if kind.startswith("illegal"):
        gemms = [i for i, o in enumerate(window) if o.kind == "gemm"]
        if kind == "illegal_gemm" and gemms:
            k = gemms[int(f["at"] * len(gemms))]
            _patch(mem, pa + k * DESC_BYTES, "gemm", k=0)
            expect_cause = CAUSE_GEMM
        else:
            k = min(int(f["at"] * len(window)), len(window) - 1)
            _patch(mem, pa + k * DESC_BYTES, "vec", op=15)
            expect_cause = CAUSE_OPCODE
        want[pa + k * DESC_BYTES : pa + (k + 1) * DESC_BYTES] = bytes(DESC_BYTES)  # the ISS stops there
        expect_ops, observed = k, {f"descriptor/{o.model}" for o in window[: k + 1]}
    elif kind == "watchdog":
        vec = [i for i, o in enumerate(window) if o.kind != "gemm"]
        if vec:  # a writer pattern with no words: results go nowhere, no progress
            k = vec[0]
            _patch(mem, pa + k * DESC_BYTES, "vec", wr={"base": 0, "run": 0, "n0": 1, "s0": 0, "n1": 1, "s1": 0,
                                                          "n2": 1, "s2": 0})
            setup[1] = (REGS["WATCHDOG"], 2000)
            expect_cause, expect_ops = CAUSE_STALL, k
            want[pa + k * DESC_BYTES : pa + (k + 1) * DESC_BYTES] = bytes(DESC_BYTES)
    elif kind == "truncated":  # the window without END at the very end of memory: the fetch runs off it
        body = bytes(mem[pa : pa + (stop - start) * DESC_BYTES])
        mem += bytes(-len(mem) % DESC_BYTES)  # (descriptors are 128-byte aligned)
        pa = len(mem)
        mem += body
        want = bytearray(mem)
        faults = {"decerr_outside": True}
        expect_cause = CAUSE_READ
    original = bytes(want)
    if kind != "truncated":
        run_program(want, pa, cfg)
    if expect_ops is not None:  # the ISS ran up to the bad descriptor, which the memory keeps
        at = pa + expect_ops * DESC_BYTES
        want[at : at + DESC_BYTES] = mem[at : at + DESC_BYTES]
    limit = 300_000 + (f.get("length", 0) if kind == "stall" else 0)
    rng = random.Random(c["seed"])
    image = bytearray(mem)
    await bench.reset()
    try:
        memory, regs, cycles = await bench.run(image, pa, c["ready_p"], rng, faults, limit, setup=tuple(setup),
                                               reset_at=f["at"] if kind == "reset" else None)
        if regs is None:  # reset in the middle of the window: the same window again, from the start
            image, want = bytearray(mem), bytearray(original)
            run_program(want, pa, cfg)
            memory, regs, more = await bench.run(image, pa, c["ready_p"], rng, {}, limit, setup=tuple(setup))
            cycles += more
            observed.add("outcome/completed_after_reset")
    except (TimeoutError, AssertionError) as e:
        return {"ok": False, "cycles": limit, "error": str(e), "first": None, "observed": sorted(observed)}
    cause, expect_cause, wrong = stop_check(regs, memory, f, expect_cause, CAUSE_READ, CAUSE_WRITE)
    observed.add(f"outcome/{OUTCOME.get(cause, 'completed')}")
    res = {"ok": True, "cycles": cycles, "error": None, "first": None}
    if wrong:
        res.update(ok=False, error=wrong)
    elif expect_ops is not None and regs["COUNT"] != expect_ops:
        res.update(ok=False, error=f"{regs['COUNT']} descriptors completed, expected {expect_ops} before the bad one")
    elif kind == "truncated" and regs["COUNT"] != stop - start:
        res.update(ok=False, error=f"{regs['COUNT']} descriptors completed before the fetch ran off memory, "
                   f"expected {stop - start}")
    elif expect_cause not in (CAUSE_READ, CAUSE_WRITE) and bytes(image) != bytes(want):
        res.update(ok=False, error="the memory differs from the ISS's",
                   first=first_difference(prog, bytes(want), bytes(image), memory.written))
    return {**res, "observed": sorted(observed)}


@cocotb.test()
async def regress_vit(dut):
    cfg = AccelConfig(**json.loads(os.environ["QS_CONFIG"]))
    await run_cases(dut, lambda bench, c: run_case(bench, cfg, c))

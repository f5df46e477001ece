"""Instruction-set simulator of the QuartDepth engine: runs a program on a memory image, instruction
by instruction, with the arithmetic of :mod:`qsilicon.quant` (``requantize``, the polished encoder
and decoder), so its results are the engine's results bit for bit for any race-free program.

It also checks what the hardware cannot: token discipline (a pop that program order cannot satisfy
would deadlock the engine) and, with ``strict=True``, compute reads outside the rows a LOAD put in
the band (stale data).  It counts external-memory traffic and MAC-array beats per ``tag``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import torch

from qsilicon.quant.intops import IntFormat, requantize, saturate
from qsilicon.quant.ptq.quantizers import encode_thresholds

from .isa import (
    FMT_BITS,
    INSN_BYTES,
    MEM_ACT,
    MEM_PAR,
    MEM_WGT,
    MODE_BYTES,
    MODE_NIBBLE_S,
    OP_COMPUTE,
    OP_END,
    OP_LOAD,
    OP_STORE,
    WORD_BYTES,
    EngineConfig,
    check,
    decode,
)

__all__ = ["SRAMS", "DeadlockError", "IssStats", "StaleReadError", "compute_accesses", "load_words", "program_accesses",
           "run_program"]


class DeadlockError(RuntimeError):
    """A token pop that no earlier instruction can satisfy."""


class StaleReadError(RuntimeError):
    """A COMPUTE reads act rows outside the band its LOAD filled."""


@dataclass
class IssStats:
    insns: int = 0
    dram_read: int = 0  # bytes
    dram_written: int = 0
    beats: dict = field(default_factory=lambda: defaultdict(int))  # tag -> MAC-array beats
    read_by_tag: dict = field(default_factory=lambda: defaultdict(int))
    written_by_tag: dict = field(default_factory=lambda: defaultdict(int))
    #: on-chip memory -> [reads, writes]: the engine's read enables (act's two ports together)
    #: and write cycles, for the memories' access power
    sram: dict = field(default_factory=lambda: {m: [0, 0] for m in SRAMS})

    def access_rates(self, cycles: int) -> dict[str, tuple[float, float]]:
        """Reads and writes per cycle of each on-chip memory over a run of ``cycles``."""
        return {m: (r / cycles, w / cycles) for m, (r, w) in self.sram.items()}


SRAMS = ("act", "wgt", "par", "tab", "out")


def load_words(i: dict) -> int:
    """Words a LOAD writes into its on-chip memory: ``ceil(nbytes / e)`` DRAM words make one
    (``e`` = 8 bytes or 16 nibbles each; the excess of the last is dropped), each run ending a
    partial word when ``flush`` is set."""
    p = i["dram"]
    per_word = -(-i["nbytes"] // (8 if i["mode"] == MODE_BYTES else 16))
    runs = p["n0"] * p["n1"]
    return runs * -(-p["run"] // per_word) if i.get("flush") else runs * p["run"] // per_word


def compute_accesses(i: dict, cfg: EngineConfig) -> dict[str, tuple[int, int]]:
    """``{memory: (reads, writes)}`` of one COMPUTE as the engine's enables issue them: an act and
    a wgt read per beat (a table read too when decoding), an act read per residual row, a
    parameter read per drained row of the array, an out write per output row (channel pairs
    share one with ``pair_out``)."""
    tiles = i["out_h"] * -(-i["out_w"] // cfg.px)
    beats = tiles * (i["seg0"]["ch"] + i["seg1"]["ch"]) * i["k"] * i["k"]
    return {"act": (beats + (tiles * cfg.co if i.get("res") else 0), 0), "wgt": (beats, 0),
            "tab": (beats if i.get("decode") else 0, 0), "par": (tiles * cfg.co, 0),
            "out": (0, tiles * (-(-i["n_co"] // 2) if i.get("pair_out") else i["n_co"]))}


def program_accesses(insns, cfg: EngineConfig) -> dict[str, list[int]]:
    """``{memory: [reads, writes]}`` of the on-chip memories over a whole program (its instruction
    dictionaries), counted from the instructions' fields alone: what :func:`run_program` counts
    while executing, without the data."""
    sram = {m: [0, 0] for m in SRAMS}
    for i in insns:
        if i["op"] == OP_LOAD:
            sram[("act", "wgt", "par", "tab")[i["mem"]]][1] += load_words(i)
        elif i["op"] == OP_COMPUTE:
            for m, (r, w) in compute_accesses(i, cfg).items():
                sram[m][0] += r
                sram[m][1] += w
        elif i["op"] == OP_STORE:
            sram["out"][0] += i["dram"]["n0"] * i["dram"]["n1"]
    return sram


def _pattern_runs(p: dict):
    for i1 in range(p["n1"]):
        for i0 in range(p["n0"]):
            yield (p["base"] + i0 * p["s0"] + i1 * p["s1"]) % 2**32


class _Machine:
    def __init__(self, cfg: EngineConfig, mem: bytearray, strict: bool) -> None:
        self.cfg, self.mem, self.strict = cfg, mem, strict
        self.act = np.zeros((cfg.act_depth, cfg.max_width), np.int64)
        self.wgt = np.zeros((cfg.wgt_depth, cfg.co), np.int64)
        self.par = np.zeros((cfg.par_depth, 32), np.uint8)
        self.tab = np.zeros((cfg.tab_depth, 16), np.int64)
        self.out = np.zeros((cfg.out_depth, cfg.max_width), np.int64)
        self.filled = np.zeros(cfg.act_depth, bool)
        self.stats = IssStats()

    def _words(self, addr: int, n: int) -> np.ndarray:
        if addr % WORD_BYTES or addr + n * WORD_BYTES > len(self.mem):
            raise IndexError(f"DRAM access {addr:#x} x {n} words outside the {len(self.mem)}-byte image")
        return np.frombuffer(bytes(self.mem[addr : addr + n * WORD_BYTES]), np.uint8)

    # ------------------------------------------------------------------ LOAD
    def load(self, i: dict) -> None:
        cfg, p = self.cfg, i["dram"]
        nb, mem_id = i["nbytes"], i["mem"]
        words = []
        reg, pos = [], 0
        for start in _pattern_runs(p):
            raw = self._words(start, p["run"])
            self.stats.dram_read += len(raw)
            self.stats.read_by_tag[i["tag"]] += len(raw)
            for w in range(p["run"]):
                b = raw[w * 8 : (w + 1) * 8].astype(np.int64)
                if i["mode"] == MODE_BYTES:
                    elems = list(b)
                else:
                    nib = np.stack([b & 15, b >> 4], 1).reshape(-1)
                    if i["mode"] == MODE_NIBBLE_S:
                        nib = np.where(nib >= 8, nib + 240, nib)  # sign-extended to a byte
                    elems = list(nib)
                reg += elems
                pos += len(elems)
                if pos >= nb:
                    words.append(reg[:nb])
                    reg, pos = [], 0
            if i["flush"] and pos:
                words.append(reg)
                reg, pos = [], 0
        depth = cfg.depth(mem_id)
        self.stats.sram[("act", "wgt", "par", "tab")[mem_id]][1] += len(words)
        for n, wd in enumerate(words):
            a = (i["sram"] + n) % depth
            row = np.zeros(cfg.word_bytes(mem_id), np.int64)
            row[: len(wd)] = wd
            if mem_id == MEM_ACT:
                self.act[a] = row
                self.filled[a] = True
            elif mem_id == MEM_WGT:
                self.wgt[a] = np.where(row >= 128, row - 256, row)
            elif mem_id == MEM_PAR:
                self.par[a] = row.astype(np.uint8)
            else:
                self.tab[a] = row

    # ------------------------------------------------------------------ COMPUTE
    def _gather(self, i: dict, seg: dict, rows: np.ndarray, cols: np.ndarray, k: int):
        """``[ch, k, k, out_h, out_w]`` operands of one segment (zero where padded)."""
        cfg, s, pad = self.cfg, i["stride"], k // 2
        ch = seg["ch"]
        out = np.zeros((ch, k, k, len(rows), len(cols)), np.int64)
        ok = np.zeros((k, k, len(rows), len(cols)), bool)
        for ky in range(k):
            if seg["up"]:
                pr = rows + ky - pad
                rv = (pr >= 0) & (pr < 2 * seg["in_h"])
                r = pr >> 1
            else:
                r = rows * s + ky - pad
                rv = (r >= 0) & (r < seg["in_h"])
            for kx in range(k):
                if seg["up"]:
                    pc = cols + kx - pad
                    cv = (pc >= 0) & (pc < 2 * seg["in_w"])
                    c = pc >> 1
                else:
                    c = cols * s + kx - pad
                    cv = (c >= 0) & (c < seg["in_w"])
                rel = r - seg["row0"]
                addr = (seg["base"] + np.arange(ch)[:, None] * seg["band"] + rel[None, :]) % cfg.act_depth  # [ch, H]
                if self.strict:
                    bad = rv[None, :] & ((rel[None, :] < 0) | (rel[None, :] >= seg["band"]) | ~self.filled[addr])
                    if bad.any():
                        raise StaleReadError(f"COMPUTE tag {i['tag']} reads act rows outside its band "
                                             f"(row0 {seg['row0']}, band {seg['band']})")
                vals = self.act[addr][:, :, np.where(cv, c, 0)]  # [ch, H, W]
                ok[ky, kx] = rv[:, None] & cv[None, :]
                out[:, ky, kx] = vals * ok[ky, kx]
        return out, np.broadcast_to(ok, out.shape)

    def compute(self, i: dict) -> None:
        cfg, k = self.cfg, i["k"]
        rows = i["oy0"] + np.arange(i["out_h"])
        cols = np.arange(i["out_w"])
        parts = [self._gather(i, i[s], rows, cols, k) for s in ("seg0", "seg1") if i[s]["ch"]]
        x = np.concatenate([v for v, _ in parts], 0)  # [cin, k, k, H, W]
        cin = x.shape[0]  # operand rows: channels, or channel pairs
        beats = cin * k * k
        if i["decode"]:  # through the channel's table; padding stays 0
            valid = np.concatenate([ok for _, ok in parts], 0)
            tab = self.tab[(i["tab"] + np.arange(cin)) % cfg.tab_depth]  # [cin, 16]
            x = np.where(valid, tab[np.arange(cin)[:, None, None, None, None], x & 15], 0)
        waddr = (i["wgt"] + np.arange(cin * k * k)) % cfg.wgt_depth
        w = self.wgt[waddr].reshape(cin, k, k, cfg.co)  # [cin, ky, kx, co]
        if i["pair"]:  # bytes = two 4-bit codes / two signed 4-bit weights of channels 2i, 2i + 1
            x = np.stack([x & 15, x >> 4], 1).reshape(2 * cin, *x.shape[1:])
            wb = w & 255
            w = np.stack([wb & 15, wb >> 4], 1).reshape(2 * cin, *w.shape[1:])
            w = np.where(w >= 8, w - 16, w)
        acc = np.einsum("ijkhw,ijkc->chw", x, w, optimize=True)[: i["n_co"]]
        par = self.par[(i["par"] + np.arange(i["n_co"])) % cfg.par_depth]
        bias = par[:, 0:4].copy().view("<i4").astype(np.int64)[:, 0]
        m0 = par[:, 4:6].copy().view("<u2").astype(np.int64)[:, 0]
        shift = par[:, 6].astype(np.int64) & 63  # the 6-bit field the hardware reads
        acc = ((acc + bias[:, None, None] + 2**31) % 2**32) - 2**31  # int32 wrap, as the accumulators
        bits, signed = FMT_BITS[i["fmt"]]
        y = requantize(torch.from_numpy(acc).permute(1, 2, 0), torch.from_numpy(m0), torch.from_numpy(shift), 0,
                       IntFormat(bits, signed)).permute(2, 0, 1).to(torch.int64)
        if i["res"]:  # residual add: act rows laid out like the output (channel, row), saturated again
            raddr = (i["res_base"] + np.arange(i["n_co"])[:, None] * i["out_h"] + np.arange(i["out_h"])[None, :])
            r = torch.from_numpy(self.act[raddr % cfg.act_depth][:, :, : i["out_w"]])
            y = saturate(y + r, IntFormat(bits, signed))
        if i["encode"]:
            thr = torch.from_numpy(par[:, 7:22].astype(np.int64))
            y = encode_thresholds(y[None], thr)[0]
        y = y.numpy()
        if i["pair_out"]:  # channels 2i, 2i + 1 -> low and high nibbles of row i
            if len(y) % 2:
                y = np.concatenate([y, np.zeros_like(y[:1])])
            y = y[0::2] | (y[1::2] << 4)
        for co in range(len(y)):
            for t in range(i["out_h"]):
                self.out[(i["out"] + co * i["out_h"] + t) % cfg.out_depth, : i["out_w"]] = y[co, t]
        tiles = i["out_h"] * -(-i["out_w"] // cfg.px)
        self.stats.beats[i["tag"]] += tiles * beats
        for m, (r, w) in compute_accesses(i, cfg).items():
            self.stats.sram[m][0] += r
            self.stats.sram[m][1] += w

    # ------------------------------------------------------------------ STORE
    def store(self, i: dict) -> None:
        cfg, p = self.cfg, i["dram"]
        bits, _ = FMT_BITS[i["fmt"]]
        per = 64 // bits
        for n, start in enumerate(_pattern_runs(p)):
            self.stats.sram["out"][0] += 1
            row = self.out[(i["out"] + n) % cfg.out_depth].copy()
            row[i["width"] :] = 0
            lanes = np.zeros(p["run"] * per, np.int64)
            m = min(len(lanes), cfg.max_width)
            lanes[:m] = row[:m]
            lanes &= (1 << bits) - 1
            words = lanes.reshape(p["run"], per)
            out = bytearray()
            for wd in words:
                v = sum(int(e) << (bits * j) for j, e in enumerate(wd))
                out += v.to_bytes(8, "little")
            self._words(start, p["run"])  # bounds check
            self.mem[start : start + len(out)] = out
            self.stats.dram_written += len(out)
            self.stats.written_by_tag[i["tag"]] += len(out)


#: The on-chip memories of the ISS's state (:func:`run_program`'s ``sram``).
SRAMS = ("act", "wgt", "par", "tab", "out")


def run_program(mem: bytearray, prog_addr: int, cfg: EngineConfig, *, strict: bool = True,
                max_insns: int = 1_000_000, sram: dict | None = None) -> IssStats:
    """Execute the program at ``prog_addr`` on ``mem`` (modified in place) until END.

    ``sram``: the on-chip memories to start from (:data:`SRAMS`: arrays of words, bytes as the
    engine holds them: ``act``/``tab``/``par`` unsigned, ``wgt`` signed, ``out`` the values), for a
    run that follows another on the same engine (its memories are not cleared by a reset); default
    all zero; the memories the program leaves are written back into it.

    Raises :class:`~qsilicon.hw.depth.isa.IllegalInstruction` where the engine would stop with its
    error bit, :class:`DeadlockError` for an unsatisfiable token pop."""
    m = _Machine(cfg, mem, strict)
    for name in SRAMS if sram else ():
        getattr(m, name)[...] = sram[name]
    try:
        return _run(m, mem, prog_addr, cfg, max_insns)
    finally:
        if sram is not None:
            sram.update({name: getattr(m, name).copy() for name in SRAMS})


def _run(m: _Machine, mem: bytearray, prog_addr: int, cfg: EngineConfig, max_insns: int) -> IssStats:
    tokens = {"ld2cp": 0, "cp2ld": 0, "cp2st": 0, "st2cp": 0}
    links = {OP_LOAD: (None, ("ld2cp", "cp2ld")), OP_COMPUTE: (("cp2ld", "ld2cp"), ("cp2st", "st2cp")),
             OP_STORE: (("st2cp", "cp2st"), None)}
    pc = prog_addr
    for _ in range(max_insns):
        i = decode(mem[pc : pc + INSN_BYTES])
        check(i, cfg)
        m.stats.insns += 1
        if i["op"] == OP_END:
            return m.stats
        prev, nxt = links[i["op"]]
        # links: (counter this unit pushes to, counter it pops from) for each neighbour
        for flag, link in (("pop_prev", prev), ("pop_next", nxt)):
            if i[flag]:
                name = link[1]
                if tokens[name] == 0:
                    raise DeadlockError(f"instruction at {pc:#x} pops '{name}' before any instruction pushed it")
                tokens[name] -= 1
        {OP_LOAD: m.load, OP_COMPUTE: m.compute, OP_STORE: m.store}[i["op"]](i)
        for flag, link in (("push_prev", prev), ("push_next", nxt)):
            if i[flag]:
                tokens[link[0]] += 1
        pc += INSN_BYTES
    raise RuntimeError(f"no END within {max_insns} instructions")

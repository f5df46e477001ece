"""Instruction-set simulator of the ViT accelerator: runs a program's descriptors on a memory
image with :mod:`qsilicon.quant`'s integer operations, as the gateware does, and counts the
memory traffic and array beats of every descriptor.

It is the compiler's first check (its image must hold what the integer model computes) and the
RTL's second one (the RTL's memory after a run must equal the ISS's, byte for byte, outside the
cycle log): the datapath's arithmetic, its gathers and scatters and what it computes on padding
rows all agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from amaranth import signed

from qsilicon.quant import int_gelu, int_layernorm, int_shiftmax, requantize, shiftmax_params
from qsilicon.quant.intops import IntFormat
from qsilicon.quant.nonlinear import GeluParams

from ..blocks import requant_params_layout
from ..blocks.axi import pattern_bursts
from ..config import AccelConfig
from ..payload import unpack
from .gemm_unit import FMAP_ENTRIES, W_KT, W_PREPACKED, W_ROWS, param_words
from .system import (
    DESC_BYTES,
    OP_ADD_RES,
    OP_END,
    OP_GELU_Q,
    OP_GEMM,
    OP_LN,
    OP_SOFTMAX,
    OP_TRANSPOSE,
    descriptor_layout,
)

__all__ = ["IssError", "IssStats", "run_program"]

_I8, _I16 = IntFormat(8, True), IntFormat(16, True)


class IssError(RuntimeError):
    """A descriptor the hardware would reject (the STATUS cause it would report is in the text)."""


@dataclass
class IssStats:
    """Per descriptor: memory words read and written, and operand beats into the array."""

    ops: int = 0
    read_words: list[int] = field(default_factory=list)
    write_words: list[int] = field(default_factory=list)
    mac_beats: list[int] = field(default_factory=list)


class _Mem:
    def __init__(self, image: bytearray, wb: int) -> None:
        self.b = np.frombuffer(image, dtype=np.uint8)
        self.wb = wb
        self.reads = 0
        self.writes = 0

    def word(self, addr: int) -> int:
        self.reads += 1
        return int.from_bytes(self.b[addr : addr + self.wb].tobytes(), "little")

    def words(self, pattern: dict) -> list[int]:
        out = []
        for addr, beats in pattern_bursts(pattern, self.wb):
            out += [self.word(addr + i * self.wb) for i in range(beats)]
        return out

    def addresses(self, pattern: dict) -> list[int]:
        return [addr + i * self.wb for addr, beats in pattern_bursts(pattern, self.wb) for i in range(beats)]

    def put(self, addr: int, value: int) -> None:
        self.writes += 1
        self.b[addr : addr + self.wb] = np.frombuffer(value.to_bytes(self.wb, "little"), dtype=np.uint8)


def _lanes(word: int, n: int, bits: int) -> list[int]:
    mask, half = (1 << bits) - 1, 1 << (bits - 1)
    out = []
    for i in range(n):
        v = (word >> (bits * i)) & mask
        out.append(v - (1 << bits) if v >= half else v)
    return out


def _pack(values, bits: int) -> int:
    mask = (1 << bits) - 1
    return sum((int(v) & mask) << (bits * i) for i, v in enumerate(values))


def run_program(image: bytearray, prog_addr: int, cfg: AccelConfig, *, max_ops: int = 100_000) -> IssStats:
    """Run the program at ``prog_addr`` on ``image`` (modified in place) until its END."""
    L = cfg.lanes
    mem = _Mem(image, L)
    lay = descriptor_layout()
    stats = IssStats()
    pc = prog_addr
    for _ in range(max_ops):
        raw = int.from_bytes(image[pc : pc + DESC_BYTES], "little")
        d = unpack(lay, raw)
        op = d["vec"]["op"]
        r0, w0 = mem.reads, mem.writes
        beats = 0
        if op == OP_END:
            return stats
        if op == OP_GEMM:
            beats = _gemm(mem, d["gemm"], cfg)
        elif op in (OP_LN, OP_SOFTMAX, OP_GELU_Q, OP_ADD_RES, OP_TRANSPOSE):
            _vector(mem, d["vec"], L, cfg.rowbuf, pc)
        else:
            raise IssError(f"descriptor at {pc:#x}: illegal opcode {op} (STATUS cause 1)")
        stats.ops += 1
        stats.read_words.append(mem.reads - r0 + DESC_BYTES // L)
        stats.write_words.append(mem.writes - w0)
        stats.mac_beats.append(beats)
        pc += DESC_BYTES
    raise IssError(f"no END after {max_ops} descriptors")


def _vector(mem: _Mem, d: dict, L: int, rowbuf: int, pc: int) -> None:
    op = d["op"]
    if d["buf"] and (op not in (OP_LN, OP_SOFTMAX) or d["k"] > rowbuf):
        raise IssError(f"descriptor at {pc:#x}: rows of {d['k']} through the row buffer of a design with rowbuf "
                       f"{rowbuf} (STATUS cause 6)")
    passes = 1 if d["buf"] else 3  # a buffered row is read once
    out_addrs = mem.addresses(d["wr"])
    outs: list[int] = []
    if op in (OP_LN, OP_SOFTMAX):
        n = d["k"]
        per = 2 * n if op == OP_LN else n
        words = mem.words(d["rd0"])
        par = mem.words(d["rd2"]) if op == OP_LN else []
        for blk in range(len(words) // (passes * per)):
            row = words[blk * passes * per : blk * passes * per + per]
            if op == OP_LN:
                x = torch.tensor([_lanes(row[2 * f], L // 2, 16) + _lanes(row[2 * f + 1], L // 2, 16)
                                  for f in range(n)]).T  # [L tokens, n]
                gb = par[blk * n : (blk + 1) * n]
                g = torch.tensor(_lanes_list(gb, 0))
                bta = torch.tensor(_lanes_list(gb, 16))
                y = int_layernorm(x, g, bta, frac_bits=8)
                q = requantize(y.reshape(-1, 1), torch.tensor([d["m0"]]), torch.tensor([d["shift"]]), 0, _I8)
                q = q.reshape(L, n)
            else:
                x = torch.tensor([_lanes(w, L, 8) for w in row]).T
                p = shiftmax_params(d["sm_k"])
                if (p.q_b, p.q_c) != (d["q_b"], d["q_c"]):
                    raise IssError("Shiftmax constants do not match their k")
                q = int_shiftmax(x, p, out_bits=7)
            outs += [_pack(q[:, f], 8) for f in range(n)]
    elif op == OP_GELU_Q:
        for w in mem.words(d["rd1"]):
            outs.append(_pack(_gelu_q(torch.tensor(_lanes(w, L, 8)), d), 8))
    elif op == OP_ADD_RES:
        aw, bw = mem.words(d["rd0"]), mem.words(d["rd1"])
        for i, w in enumerate(bw):
            a = torch.tensor(_lanes(aw[2 * i], L // 2, 16) + _lanes(aw[2 * i + 1], L // 2, 16))
            b = torch.tensor(_lanes(w, L, 8))
            r = requantize(b.reshape(-1, 1), torch.tensor([d["m0"]]), torch.tensor([d["shift"]]), 0, _I16)
            s = (a + r.reshape(-1).to(torch.int64)).clamp(-(2**15), 2**15 - 1)
            outs += [_pack(s[: L // 2], 16), _pack(s[L // 2 :], 16)]
    else:  # transpose
        words = mem.words(d["rd0"])
        for g in range(0, len(words), L):
            tile = [_lanes(w, L, 8) for w in words[g : g + L]]
            outs += [_pack([tile[f][i] for f in range(L)], 8) for i in range(L)]
    if len(outs) != len(out_addrs):
        raise IssError(f"the writer's pattern has {len(out_addrs)} words, the operation makes {len(outs)} "
                       "(the RTL would wait: STATUS cause 7)")
    for addr, v in zip(out_addrs, outs, strict=True):
        mem.put(addr, v)


def _gelu_q(b: torch.Tensor, d: dict) -> torch.Tensor:
    """The element-wise unit's GELU on int8 values ``b`` (any shape) with a descriptor's constants
    (a GELU descriptor's, or a GEMM's whose outputs it is fused into): int8 values."""
    g = -int_gelu(b, GeluParams(d["gelu_b"], d["gelu_one"], 1.0))
    return requantize(g.reshape(-1, 1), torch.tensor([d["m0"]]), torch.tensor([d["shift"]]), 0, _I8).reshape(b.shape)


def _lanes_list(words: list[int], shift: int) -> list[int]:
    return [_lanes(w >> shift, 1, 16)[0] for w in words]


def _gemm(mem: _Mem, d: dict, cfg: AccelConfig) -> int:
    L, R, C = cfg.lanes, cfg.rows, cfg.cols
    a, b = R // L, C // L
    K, mt, nt8, nt4, n_out = d["k"], d["mt"], d["nt8"], d["nt4"], d["n_out"]
    nt = nt8 + nt4
    wbuf_words = cfg.wbuf_words
    if K == 0 or mt == 0 or nt == 0 or n_out == 0 or n_out > nt * C or n_out <= (nt - 1) * C:
        raise IssError("illegal GEMM descriptor (STATUS cause 4): empty shape or output columns outside the tiles")
    if d["wmode"] not in (W_PREPACKED, W_KT, W_ROWS) or (d["wmode"] == W_KT and not d["resident"]) \
            or (d["wmode"] != W_PREPACKED and nt4):
        raise IssError("illegal GEMM descriptor (STATUS cause 4): weight mode")
    if d["gelu"] and d["wide"]:
        raise IssError("illegal GEMM descriptor (STATUS cause 4): GELU on wide (int16) outputs")
    if d["fmap"] and n_out > FMAP_ENTRIES:
        raise IssError("illegal GEMM descriptor (STATUS cause 4): more output columns than the feature map holds")
    seg = K if (d["wmode"] != W_PREPACKED or nt8) else -(-K // 2)
    if d["resident"] and seg > wbuf_words:
        raise IssError("illegal GEMM descriptor (STATUS cause 4): a resident column tile larger than the weight ring")
    if mt * K > cfg.abuf_words:
        raise IssError("the input does not fit the activation buffer (STATUS cause 5)")
    # X [mt * R, K] from token blocks of `x_pitch` bytes
    x = np.zeros((mt * R, K), dtype=np.int64)
    for blk in range(mt * a):
        for k in range(K):
            x[blk * L : (blk + 1) * L, k] = _lanes(mem.word(d["x_base"] + blk * d["x_pitch"] + k * L), L, 8)
    fmap = []
    if d["fmap"]:
        for q in range(-(-n_out // (L // 2))):
            fmap += _lanes(mem.word(d["f_base"] + q * L), L // 2, 16)
        fmap = [f & 0xFFFF for f in fmap]
    par_lay = requant_params_layout(C, signed(16))
    P = param_words(C, L)
    w_seg = d["w_base"]
    reps = 1 if d["resident"] else mt
    for j in range(nt):
        valid = min(C, n_out - j * C)
        units = b if valid >= C else -(-valid // L)
        w = np.zeros((C, K), dtype=np.int64)  # (lanes a kT / rows tile leaves alone only feed unwritten columns)
        for _ in range(reps):  # a streamed tile is read again for every token tile
            praw = 0
            for q in range(P):
                praw |= mem.word(d["p_base"] + j * d["p_stride"] + q * L) << (8 * L * q)
            if d["wmode"] == W_PREPACKED:
                w4 = j >= nt8
                nw = -(-K // 2) if w4 else K
                words = [sum(mem.word(w_seg + (i * b + lane) * L) << (8 * L * lane) for lane in range(b))
                         for i in range(nw)]
                for k in range(K):
                    if w4:
                        beat = words[k // 2] >> (4 * C * (k % 2))
                        w[:, k] = _lanes(beat, C, 4)
                    else:
                        w[:, k] = _lanes(words[k], C, 8)
            elif d["wmode"] == W_KT:
                for u in range(units):
                    for k in range(K):
                        w[u * L : (u + 1) * L, k] = _lanes(mem.word(w_seg + u * d["w_pitch"] + k * L), L, 8)
            else:  # rows
                for k in range(K):
                    for u in range(units):
                        w[u * L : (u + 1) * L, k] = _lanes(mem.word(w_seg + k * d["w_pitch"] + u * L), L, 8)
        pars = unpack(par_lay, praw)
        bias = torch.tensor([p["bias"] for p in pars], dtype=torch.int64)
        m0 = torch.tensor([p["m0"] for p in pars], dtype=torch.int64)
        sh = torch.tensor([p["shift"] for p in pars], dtype=torch.int64)
        acc = torch.from_numpy(x @ w.T) + bias
        acc = ((acc + 2**31) % 2**32) - 2**31  # the accumulators wrap at 32 bits
        y = requantize(acc, m0, sh, 0, _I16)
        if not d["wide"]:
            y = y.clamp(-128, 127)
        if d["gelu"]:
            y = _gelu_q(y, d)
        for c in range(valid):
            feat = j * C + c
            if d["fmap"]:
                if fmap[feat] & 0x8000:
                    continue
                feat = fmap[feat]
            for blk in range(mt * a):
                vals = y[blk * L : (blk + 1) * L, c]
                base = d["y_base"] + blk * d["y_pitch"]
                if d["wide"]:
                    mem.put(base + 2 * feat * L, _pack(vals[: L // 2], 16))
                    mem.put(base + 2 * feat * L + L, _pack(vals[L // 2 :], 16))
                else:
                    mem.put(base + feat * L, _pack(vals, 8))
        if d["wmode"] == W_PREPACKED:
            w_seg += (K if j < nt8 else -(-K // 2)) * C
        elif d["wmode"] == W_KT:
            w_seg += b * d["w_pitch"]
        else:
            w_seg += C
    return mt * (nt8 * K + nt4 * -(-K // cfg.gemm.steps_per_beat4))  # dot2: an int4 beat, two steps

"""Host side of the ViT block accelerator: tensor layouts, the memory image and the program of
one encoder block of an :class:`~qsilicon.quant.models.int_vit.IntViT`.

Layouts (``L`` = lanes, a memory word is ``L`` bytes; tensors of ``T`` tokens use ``ceil(T/L)``
token tiles):

* ``block8`` (int8, ``F`` features, pitch ``P >= F``): token ``m``, feature ``f`` at byte
  ``(m // L) * P * L + f * L + m % L``.  A word is feature ``f`` of a token tile: a GEMM
  activation beat, and one element of ``L`` rows for the vector units.
* ``block16`` (int16, the residual stream): the same with two bytes per value (two words per
  feature, little-endian).
* ``rows8`` (int8, row-major with pitch ``P``): token ``m``, feature ``f`` at ``m * P + f``; the
  layout of ``V``, whose rows are the weight beats of the ``A V`` product.
* Prepacked weights: for each tile of ``L`` output channels, ``K`` words (word ``k`` holds
  ``W[n0 + c, k]`` for the ``L`` channels); parameters: one GEMM parameter beat per channel tile.

The program is the block as the integer model computes it (:meth:`IntViT.block`): LayerNorm, the
Q, K and V projections, per head ``Q K^T`` (requantized to int8 logits), Shiftmax and ``P V``,
the output projection, the residual add, LayerNorm, the MLP with GELU, the residual add.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from amaranth import signed

from qsilicon.quant import quantize_multiplier
from qsilicon.quant.models.int_vit import LN_FRAC, PROB_BITS, IntViT, _rescale_params

from ..blocks import requant_params_layout
from ..payload import pack
from .engine import (
    DESC_BYTES,
    OP_ADD_RES,
    OP_END,
    OP_GELU_Q,
    OP_GEMM,
    OP_LN,
    OP_SOFTMAX,
    descriptor_layout,
    param_words,
)

__all__ = ["BlockProgram", "Memory", "Region", "build_block_program", "pattern"]

_ALIGN = 128
_EMPTY = {"base": 0, "run": 0, "n0": 1, "s0": 0, "n1": 1, "s1": 0, "n2": 1, "s2": 0}
_OP_NAMES = {OP_GEMM: "gemm", OP_LN: "layernorm", OP_SOFTMAX: "softmax", OP_GELU_Q: "gelu", OP_ADD_RES: "add"}


def pattern(base: int, run: int, n0: int = 1, s0: int = 0, n1: int = 1, s1: int = 0, n2: int = 1, s2: int = 0) -> dict:
    if not 0 <= run < 2**16 or not all(0 < n < 2**16 for n in (n0, n1, n2)):
        raise ValueError(f"Address pattern out of range: run {run}, counts {n0}, {n1}, {n2} (16 bits each)")
    return {"base": base, "run": run, "n0": n0, "s0": s0 % 2**32, "n1": n1, "s1": s1 % 2**32, "n2": n2,
            "s2": s2 % 2**32}


@dataclass
class Region:
    """A tensor region: ``kind`` is ``block8``, ``block16`` or ``rows8``."""

    addr: int
    kind: str
    tokens: int
    features: int
    pitch: int


@dataclass
class Memory:
    """A byte image with named, 128-byte aligned regions."""

    lanes: int
    data: bytearray = field(default_factory=bytearray)
    regions: dict = field(default_factory=dict)

    def alloc(self, name: str, size: int) -> int:
        if name in self.regions:
            raise ValueError(f"Region {name!r} allocated twice")
        addr = -(-len(self.data) // _ALIGN) * _ALIGN
        self.data.extend(bytes(addr + size - len(self.data)))
        self.regions[name] = (addr, size)
        return addr

    def tiles(self, tokens: int) -> int:
        return -(-tokens // self.lanes)

    def tensor(self, name: str, kind: str, tokens: int, features: int, pitch: int | None = None,
               value: torch.Tensor | None = None) -> Region:
        L, mt = self.lanes, self.tiles(tokens)
        pitch = features if pitch is None else pitch
        size = {"block8": mt * pitch * L, "block16": 2 * mt * pitch * L, "rows8": mt * L * pitch}[kind]
        t = Region(self.alloc(name, size), kind, tokens, features, pitch)
        if value is not None:
            self.write_tensor(t, value)
        return t

    def _index(self, t: Region) -> np.ndarray:
        """Byte offset of every (token, feature) element (of its low byte for int16)."""
        L = self.lanes
        m = np.arange(t.tokens)[:, None]
        f = np.arange(t.features)[None, :]
        if t.kind == "rows8":
            return t.addr + m * t.pitch + f
        e = 2 if t.kind == "block16" else 1
        return t.addr + e * ((m // L) * t.pitch * L + f * L + m % L)

    def write_tensor(self, t: Region, value: torch.Tensor) -> None:
        v = value.to(torch.int64).numpy()
        if v.shape != (t.tokens, t.features):
            raise ValueError(f"Tensor shape {tuple(v.shape)} is not {(t.tokens, t.features)}")
        buf = np.frombuffer(self.data, dtype=np.uint8)
        idx = self._index(t)
        if t.kind == "block16":
            u = (v & 0xFFFF).astype(np.uint16)
            buf[idx] = (u & 0xFF).astype(np.uint8)
            buf[idx + 1] = (u >> 8).astype(np.uint8)
        else:
            buf[idx] = (v & 0xFF).astype(np.uint8)

    def read_tensor(self, t: Region, image: bytes | None = None) -> torch.Tensor:
        buf = np.frombuffer(self.data if image is None else image, dtype=np.uint8)
        idx = self._index(t)
        if t.kind == "block16":
            v = (buf[idx].astype(np.int64) | (buf[idx + 1].astype(np.int64) << 8))
            v = np.where(v >= 2**15, v - 2**16, v)
        else:
            v = buf[idx].astype(np.int64)
            v = np.where(v >= 128, v - 256, v)
        return torch.from_numpy(v)

    def write_words(self, name: str, words: list[int]) -> int:
        wb = self.lanes
        addr = self.alloc(name, len(words) * wb)
        for i, w in enumerate(words):
            self.data[addr + i * wb : addr + (i + 1) * wb] = w.to_bytes(wb, "little")
        return addr


@dataclass
class BlockProgram:
    """One encoder block on the accelerator: the memory image, where the program starts, the
    tensors to read back and what the integer model says they hold."""

    memory: Memory
    program: int
    ops: list[tuple[str, str, int]]  # (name, kind, descriptor address)
    outputs: dict[str, list[Region]]
    expected: dict[str, torch.Tensor]
    macs: dict[str, int]

    def read(self, image: bytes) -> dict[str, torch.Tensor]:
        """The intermediates in ``image`` (a memory dump after the run), shaped like
        :meth:`IntViT.block`'s for one image."""
        out = {}
        for name, tensors in self.outputs.items():
            vals = [self.memory.read_tensor(t, image) for t in tensors]
            out[name] = vals[0] if len(vals) == 1 else torch.stack(vals)
        return out

    def op_cycles(self, image: bytes) -> list[tuple[str, str, int]]:
        """``(name, kind, cycles)`` of every operation, from the descriptors' write-back words."""
        wb = self.memory.lanes
        return [(name, kind, int.from_bytes(image[a + DESC_BYTES - wb : a + DESC_BYTES], "little"))
                for name, kind, a in self.ops]


def _weight_words(w: torch.Tensor, lanes: int) -> list[int]:
    n, k = w.shape
    nt = -(-n // lanes)
    wp = torch.zeros((nt * lanes, k), dtype=torch.int64)
    wp[:n] = w
    words = []
    for j in range(nt):
        blk = (wp[j * lanes : (j + 1) * lanes] & 0xFF).T.tolist()  # [k][c]
        words += [int.from_bytes(bytes(col), "little") for col in blk]
    return words


def _param_words(bias, m0, shift, lanes: int) -> list[int]:
    lay = requant_params_layout(lanes, signed(8))
    n = len(bias)
    pw = param_words(lanes)
    words = []
    for j in range(-(-n // lanes)):
        cols = [{"bias": int(bias[c]), "m0": int(m0[c]), "shift": int(shift[c]), "zp": 0} if c < n
                else {"bias": 0, "m0": 0, "shift": 0, "zp": 0} for c in range(j * lanes, (j + 1) * lanes)]
        raw = pack(lay, cols)
        words += [(raw >> (8 * lanes * i)) & ((1 << (8 * lanes)) - 1) for i in range(pw)]
    return words


def build_block_program(iv: IntViT, index: int, t: torch.Tensor, lanes: int = 8) -> BlockProgram:
    """The program and memory image of encoder block ``index`` of ``iv`` on the residual stream
    ``t`` (``[tokens, dim]`` int16, one image)."""
    if lanes not in (8, 16):
        raise ValueError(f"Lanes must be 8 or 16, not {lanes!r}")
    cfg = iv.model.cfg
    if not 0 <= index < len(iv.blocks):
        raise ValueError(f"Block must be from 0 to {len(iv.blocks) - 1}, not {index}")
    T, D, H, MLP, dh = t.shape[0], cfg.dim, cfg.heads_at(index), cfg.mlp_at(index), cfg.hd
    E = H * dh  # width of Q, K, V and of the attention output
    L = lanes
    if dh % L or D % L or MLP % L:
        raise ValueError(f"Head dim {dh}, dim {D} and MLP {MLP} must be multiples of the lanes ({L})")
    blk = iv.blocks[index]
    mem = Memory(L)
    mt = mem.tiles(T)
    tp = mt * L
    wb, pw = L, param_words(L)
    n_desc = 24 + 3 * H
    prog = mem.alloc("program", n_desc * DESC_BYTES)
    descs: list[tuple[str, dict]] = []

    def op(name: str, **fields) -> None:
        d = {"op": 0, "transpose": 0, "r0_words": 1, "r2_words": 1, "k": 0, "rd0": _EMPTY, "rd1": _EMPTY,
             "rd2": _EMPTY, "wr": _EMPTY, "m0": 0, "shift": 0, "sm_k": 0, "q_b": 0, "q_c": 0, "gelu_b": 0,
             "gelu_one": 0}
        d.update(fields)
        descs.append((name, d))

    macs: dict[str, int] = {}

    def linear(name: str, x: Region, lin, rows: slice, out: Region) -> None:
        w = lin.w[rows]
        n, k = w.shape
        nt = n // L
        wa = mem.write_words(f"{name}.w", _weight_words(w, L))
        pa = mem.write_words(f"{name}.p", _param_words(lin.bias[rows], lin.m0[rows], lin.shift[rows], L))
        if out.kind == "rows8":
            wr = pattern(out.addr, 1, L, out.pitch, mt, L * out.pitch, nt, L)
        else:
            wr = pattern(out.addr, L, mt, out.pitch * L, nt, L * wb)
        op(name, op=OP_GEMM, k=k, transpose=int(out.kind != "rows8"), r2_words=pw,
           rd0=pattern(x.addr, k, mt, x.pitch * L, nt, 0), rd1=pattern(wa, k, mt, 0, nt, k * wb),
           rd2=pattern(pa, pw, mt, 0, nt, pw * wb), wr=wr)
        macs[name] = T * n * k

    def layernorm(name: str, x: Region, params, s_out: float, out: Region) -> None:
        g, b = params
        if g.abs().max() >= 2**15 or b.abs().max() >= 2**15:
            raise ValueError(f"{name}: LayerNorm gamma/beta do not fit int16")
        gb = mem.write_words(f"{name}.gb",
                             [(int(gi) & 0xFFFF) | ((int(bi) & 0xFFFF) << 16) for gi, bi in zip(g, b, strict=True)])
        m0, sh = (int(v) for v in quantize_multiplier(2.0**-LN_FRAC / s_out))
        op(name, op=OP_LN, k=D, r0_words=2, rd0=pattern(x.addr, 2 * D, 3, 0, mt, 2 * D * L),
           rd2=pattern(gb, D, mt, 0), wr=pattern(out.addr, D, mt, D * L), m0=m0, shift=sh)

    def add(name: str, res: Region, branch: Region, s_branch: float, out: Region) -> None:
        m0, sh, neg = _rescale_params(s_branch, iv.s_res)
        assert not neg
        op(name, op=OP_ADD_RES, r0_words=2, rd0=pattern(res.addr, 2 * mt * D), rd1=pattern(branch.addr, mt * D),
           wr=pattern(out.addr, 2 * mt * D), m0=m0, shift=sh)

    # ---------------------------------------------------------------- tensors
    x_in = mem.tensor("in", "block16", T, D, value=t)
    ln1 = mem.tensor("ln1", "block8", T, D)
    q = mem.tensor("q", "block8", T, E)
    k = mem.tensor("k", "block8", T, E)
    v = mem.tensor("v", "rows8", T, E)
    logits = [mem.tensor(f"logits{h}", "block8", T, T, pitch=tp) for h in range(H)]
    probs = [mem.tensor(f"probs{h}", "block8", T, T) for h in range(H)]
    av = mem.tensor("av", "block8", T, E)
    proj = mem.tensor("proj", "block8", T, D)
    res1 = mem.tensor("res1", "block16", T, D)
    ln2 = mem.tensor("ln2", "block8", T, D)
    fc1 = mem.tensor("fc1", "block8", T, MLP)
    gelu = mem.tensor("gelu", "block8", T, MLP)
    fc2 = mem.tensor("fc2", "block8", T, D)
    out = mem.tensor("out", "block16", T, D)

    # ---------------------------------------------------------------- program
    layernorm("ln1", x_in, blk["ln1"], blk["s_ln1"], ln1)
    qkv = blk["qkv"]
    linear("q", ln1, qkv, slice(0, E), q)
    linear("k", ln1, qkv, slice(E, 2 * E), k)
    linear("v", ln1, qkv, slice(2 * E, 3 * E), v)
    m0l, shl, _ = blk["logit"]
    sm = blk["shiftmax"]
    p_qk = mem.write_words("qk.p", _param_words([0] * L, [m0l] * L, [shl] * L, L))
    m0a, sha, _ = _rescale_params(2.0**-PROB_BITS * qkv.s_out, blk["s_av"])
    p_av = mem.write_words("av.p", _param_words([0] * L, [m0a] * L, [sha] * L, L))
    for h in range(H):
        op(f"qk{h}", op=OP_GEMM, k=dh, transpose=1, r2_words=pw,
           rd0=pattern(q.addr + h * dh * L, dh, mt, E * L, mt, 0),
           rd1=pattern(k.addr + h * dh * L, dh, mt, 0, mt, E * L),
           rd2=pattern(p_qk, pw, mt, 0, mt, 0), wr=pattern(logits[h].addr, L, mt, tp * L, mt, L * wb))
        macs[f"qk{h}"] = T * T * dh
        op(f"softmax{h}", op=OP_SOFTMAX, k=T, rd0=pattern(logits[h].addr, T, 3, 0, mt, tp * L),
           wr=pattern(probs[h].addr, T, mt, T * L), sm_k=sm.k, q_b=sm.q_b, q_c=sm.q_c)
        op(f"av{h}", op=OP_GEMM, k=T, transpose=1, r2_words=pw,
           rd0=pattern(probs[h].addr, T, mt, T * L, dh // L, 0),
           rd1=pattern(v.addr + h * dh, 1, T, E, mt, 0, dh // L, L),
           rd2=pattern(p_av, pw, mt, 0, dh // L, 0), wr=pattern(av.addr + h * dh * L, L, mt, E * L, dh // L, L * wb))
        macs[f"av{h}"] = T * T * dh
    linear("proj", av, blk["proj"], slice(None), proj)
    add("add1", x_in, proj, blk["proj"].s_out, res1)
    layernorm("ln2", res1, blk["ln2"], blk["s_ln2"], ln2)
    linear("fc1", ln2, blk["fc1"], slice(None), fc1)
    gp = blk["gelu"]
    m0g, shg, neg = _rescale_params(gp.out_scale, blk["s_gelu"])
    assert neg
    op("gelu", op=OP_GELU_Q, rd1=pattern(fc1.addr, mt * MLP), wr=pattern(gelu.addr, mt * MLP), m0=m0g, shift=shg,
       gelu_b=gp.q_b, gelu_one=gp.q_one)
    linear("fc2", gelu, blk["fc2"], slice(None), fc2)
    add("add2", res1, fc2, blk["fc2"].s_out, out)
    op("end", op=OP_END)

    if len(descs) > n_desc:
        raise AssertionError("program region too small")
    lay = descriptor_layout()
    ops = []
    for i, (name, d) in enumerate(descs):
        a = prog + i * DESC_BYTES
        mem.data[a : a + DESC_BYTES] = pack(lay, d).to_bytes(DESC_BYTES, "little")
        if d["op"] != OP_END:
            ops.append((name, _OP_NAMES[d["op"]], a))

    expected = {name: val[0] for name, val in iv.block(index, t[None]).items()}
    outputs = {"ln1": [ln1], "q": [q], "k": [k], "v": [v], "logits": logits, "probs": probs, "av": [av],
               "proj": [proj], "res1": [res1], "ln2": [ln2], "fc1": [fc1], "gelu": [gelu], "fc2": [fc2], "out": [out]}
    return BlockProgram(mem, prog, ops, outputs, expected, macs)


"""Host side of the ViT accelerator: the compiler from an integer ViT to a program and a memory
image for one :class:`~qsilicon.hw.config.AccelConfig`.

Layouts (``L`` = lanes = bytes of a memory word; every tensor has ``T_pad`` token rows, the
model's tokens rounded up to a multiple of the array's rows; padding rows hold whatever the
operations compute from zeros and are never read back):

* ``block8`` (int8, ``F`` features, pitch ``P >= F``): token ``t``, feature ``f`` at byte
  ``(t // L) * P * L + f * L + t % L``.  A word is one feature of a block of ``L`` tokens: a beat
  of the vector units (a token per lane) and a ``1/a`` share of an array beat (``a = rows / L``);
* ``block16`` (int16, the residual stream): the same with two bytes per value (two words per
  feature, little-endian);
* ``rows8`` (``V``, int8 row-major, pitch ``P``): token ``t``, feature ``f`` at ``t * P + f``;
* weights: per column tile of ``cols`` output channels (int8 tiles of the row-wise mixed layer
  first, then int4 tiles), ``K`` words of ``cols`` bytes (int8) or ``ceil(K/2)`` words holding two
  int4 beats each; parameters: one requantizer beat per tile; feature maps: the original output
  feature of every grouped column (bit 15: a padding column, not written).

The program is the integer model's forward pass (:class:`~qsilicon.quant.models.int_vit.IntViT`):
the patch embedding (patches at tokens 1..16, token 0 a zero patch whose embedding the class-token
table cancels exactly), per block LayerNorm, the qkv projection, ``V`` to row-major, per head
``Q K^T``, Shiftmax and ``P V``, the output projection, the residual add, LayerNorm, the MLP (its
GELU fused into the first layer's GEMM: the element-wise unit applies it to the GEMM's output
words on their way to memory, so the pre-GELU tensor is never stored) and the residual add, then
the final LayerNorm of the class token and the classifier (int16 logits).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from amaranth import signed

from qsilicon.quant import group_rows, quantize_multiplier, requantize
from qsilicon.quant.intops import IntFormat
from qsilicon.quant.models.int_vit import LN_FRAC, PROB_BITS, IntViT, _rescale_params

from ..blocks import requant_params_layout
from ..config import AccelConfig
from ..payload import pack
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

__all__ = [
    "CompileError", "Memory", "OpInfo", "ProgramLayout", "Region", "VitProgram", "compile_vit", "pattern",
    "region_read", "region_size", "region_write",
]

_ALIGN = 128
_EMPTY = {"base": 0, "run": 0, "n0": 1, "s0": 0, "n1": 1, "s1": 0, "n2": 1, "s2": 0}
_KIND = {OP_END: "end", OP_GEMM: "gemm", OP_LN: "layernorm", OP_SOFTMAX: "softmax", OP_GELU_Q: "gelu",
         OP_ADD_RES: "add", OP_TRANSPOSE: "transpose"}
_I16 = IntFormat(16, True)


class CompileError(ValueError):
    """A model the design cannot run; the message names the tensor or limit and the fix."""


def pattern(base: int, run: int, n0: int = 1, s0: int = 0, n1: int = 1, s1: int = 0, n2: int = 1, s2: int = 0) -> dict:
    if not 0 <= run < 2**16 or not all(0 < n < 2**16 for n in (n0, n1, n2)):
        raise CompileError(f"address pattern out of range: run {run}, counts {n0}, {n1}, {n2} (16 bits each); the "
                           "tensor is too large for one descriptor")
    return {"base": base, "run": run, "n0": n0, "s0": s0 % 2**32, "n1": n1, "s1": s1 % 2**32, "n2": n2,
            "s2": s2 % 2**32}


@dataclass
class Region:
    """A tensor in memory: ``kind`` is ``block8``, ``block16``, ``rows8`` or ``rows16``."""

    addr: int
    kind: str
    tokens: int
    features: int
    pitch: int
    lanes: int = 8

    def feature(self, f: int) -> int:
        """Byte address of feature ``f`` of the first token block (a slice's base)."""
        return self.addr + f * {"block8": 1, "block16": 2}[self.kind] * self.lanes

    @property
    def block_pitch(self) -> int:
        """Bytes from one token block to the next (block layouts)."""
        return self.pitch * self.lanes * (2 if self.kind == "block16" else 1)


def _index(t: Region, tokens: int) -> np.ndarray:
    """Byte offset of every (token, feature) element (of its low byte for int16)."""
    L = t.lanes
    m = np.arange(tokens)[:, None]
    f = np.arange(t.features)[None, :]
    if t.kind == "rows8":
        return t.addr + m * t.pitch + f
    e = 2 if t.kind == "block16" else 1
    return t.addr + e * ((m // L) * t.pitch * L + f * L + m % L)


def region_write(buf: bytearray, t: Region, value: torch.Tensor) -> None:
    """``value`` ``[tokens, features]`` (tokens up to the region's) into ``buf`` at ``t``."""
    v = value.to(torch.int64).numpy()
    if v.ndim != 2 or v.shape[1] != t.features or v.shape[0] > t.tokens:
        raise ValueError(f"Tensor shape {tuple(v.shape)} does not fit {(t.tokens, t.features)}")
    b = np.frombuffer(buf, dtype=np.uint8)
    idx = _index(t, v.shape[0])
    if t.kind == "block16":
        u = (v & 0xFFFF).astype(np.uint16)
        b[idx] = (u & 0xFF).astype(np.uint8)
        b[idx + 1] = (u >> 8).astype(np.uint8)
    else:
        b[idx] = (v & 0xFF).astype(np.uint8)


def region_read(buf: bytes, t: Region, tokens: int | None = None) -> torch.Tensor:
    """The first ``tokens`` (default all) token rows of ``t`` in ``buf``."""
    b = np.frombuffer(buf, dtype=np.uint8)
    idx = _index(t, t.tokens if tokens is None else tokens)
    if t.kind == "block16":
        v = b[idx].astype(np.int64) | (b[idx + 1].astype(np.int64) << 8)
        v = np.where(v >= 2**15, v - 2**16, v)
    else:
        v = b[idx].astype(np.int64)
        v = np.where(v >= 128, v - 256, v)
    return torch.from_numpy(v)


def region_size(t: Region) -> int:
    """Bytes a region takes (a whole number of words)."""
    if t.kind in ("block8", "block16"):
        size = (t.tokens // t.lanes) * t.pitch * t.lanes * (2 if t.kind == "block16" else 1)
    else:
        size = t.tokens * t.pitch
    return -(-size // t.lanes) * t.lanes


@dataclass(frozen=True)
class ProgramLayout:
    """What the host needs to run a compiled program: where things are (JSON-serializable)."""

    lanes: int
    program: int
    log: int
    ops: int
    input: Region
    logits: Region
    classes: int
    patch_tokens: int
    image_bytes: int
    #: Tokens before the patches (class token, distillation token): zero patches in the input.
    prefix: int = 1
    #: The design the program was compiled for (``AccelConfig.tag``; "" in layouts written before
    #: it was recorded): the host checks it against the accelerator's ``INFO`` registers.
    design: str = ""

    def to_dict(self) -> dict:
        return {"lanes": self.lanes, "program": self.program, "log": self.log, "ops": self.ops,
                "input": asdict(self.input), "logits": asdict(self.logits), "classes": self.classes,
                "patch_tokens": self.patch_tokens, "image_bytes": self.image_bytes, "prefix": self.prefix,
                "design": self.design}

    @classmethod
    def from_dict(cls, d: dict) -> ProgramLayout:
        return cls(**{**d, "input": Region(**d["input"]), "logits": Region(**d["logits"])})


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

    def tensor(self, name: str, kind: str, tokens: int, features: int, pitch: int | None = None) -> Region:
        L = self.lanes
        pitch = features if pitch is None else pitch
        if kind in ("block8", "block16") and tokens % L:
            raise ValueError(f"{name}: {tokens} tokens is not a multiple of the lanes {L}")
        t = Region(0, kind, tokens, features, pitch, L)
        t.addr = self.alloc(name, region_size(t))
        return t

    def write(self, t: Region, value: torch.Tensor, image: bytearray | None = None) -> None:
        """``value`` ``[tokens, features]`` (``tokens`` up to the region's) into the region."""
        region_write(self.data if image is None else image, t, value)

    def read(self, t: Region, image: bytes | None = None, tokens: int | None = None) -> torch.Tensor:
        return region_read(self.data if image is None else image, t, tokens)

    def words(self, name: str, words: list[int]) -> int:
        """``words`` (integers of ``lanes`` bytes, little-endian) in a new region; its address."""
        wb = self.lanes
        addr = self.alloc(name, len(words) * wb)
        for i, w in enumerate(words):
            self.data[addr + i * wb : addr + (i + 1) * wb] = w.to_bytes(wb, "little")
        return addr


@dataclass(frozen=True)
class OpInfo:
    """One descriptor: ``name`` (``b0.qkv``, ``b1.softmax2`` ...), ``kind`` (the unit:
    ``gemm``, ``layernorm``, ``softmax``, ``gelu``, ``add``, ``transpose``), ``model`` (what the
    latency model calls it: ``embed``, ``qkv``, ``qk``, ``av``, ``proj``, ``fc1``, ``fc2``,
    ``head``, ``ln``, ``softmax``, ``gelu``, ``add``, ``transpose``) and its shape numbers."""

    name: str
    kind: str
    model: str
    index: int
    shape: dict = field(default_factory=dict)


@dataclass
class VitProgram:
    """A compiled integer ViT: the memory image, the program, where the input goes and the
    logits come from, every intermediate tensor and what the descriptors are."""

    config: AccelConfig
    memory: Memory
    program: int
    log: int
    ops: list[OpInfo]
    input: Region
    logits: Region
    classes: int
    tokens: int
    patch_tokens: int
    tensors: dict[str, Region]
    s_in: float
    iv: IntViT

    @property
    def image_bytes(self) -> int:
        return len(self.memory.data)

    @property
    def prefix(self) -> int:
        return self.tokens - self.patch_tokens

    def layout(self) -> ProgramLayout:
        return ProgramLayout(self.memory.lanes, self.program, self.log, len(self.ops), self.input, self.logits,
                             self.classes, self.patch_tokens, self.image_bytes, self.prefix, self.config.tag)

    def input_codes(self, images: torch.Tensor) -> torch.Tensor:
        """int8 patch codes ``[B, patches, patch_dim]`` of float images, as the integer model makes them."""
        q = torch.round(self.iv.model.patches(images) / self.s_in).long().clamp(-128, 127)
        return q

    def with_input(self, codes: torch.Tensor) -> bytearray:
        """The memory image with one image's patch codes ``[patches, patch_dim]`` after the prefix
        tokens (zero patches)."""
        image = bytearray(self.memory.data)
        rows = torch.zeros((self.tokens, codes.shape[-1]), dtype=torch.int64)
        rows[self.prefix :] = codes
        self.memory.write(self.input, rows, image)
        return image

    def read_logits(self, image: bytes) -> torch.Tensor:
        """The class token's int16 logits ``[classes]`` from a memory image after a run."""
        return self.memory.read(self.logits, image, tokens=1)[0, : self.classes]

    def read_tensor(self, name: str, image: bytes) -> torch.Tensor:
        """An intermediate tensor's real tokens ``[tokens, features]``."""
        return self.memory.read(self.tensors[name], image, tokens=self.tokens)

    def op_cycles(self, image: bytes) -> list[int]:
        """Every descriptor's cycles, from the log the run wrote."""
        wb = self.memory.lanes
        at = [self.log + i * wb for i in range(len(self.ops))]
        return [int.from_bytes(image[x : x + 4], "little") for x in at]

    def expected(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """What the integer model says every intermediate and the logits of one image are."""
        iv = self.iv
        out = {}
        t = iv.embed_tokens(images[None])
        out["res0"] = t[0]
        for i in range(len(iv.blocks)):
            inter = iv.block(i, t)
            t = inter["out"]
            for k in ("ln1", "proj", "res1", "ln2", "fc1", "gelu", "fc2", "out", "av"):
                out[f"b{i}.{k}"] = inter[k][0]
            out[f"b{i}.qkv"] = torch.cat([inter["q"][0], inter["k"][0], inter["v"][0]], dim=-1)
            for h in range(inter["probs"].shape[1]):
                out[f"b{i}.logits{h}"] = inter["logits"][0, h]
                out[f"b{i}.probs{h}"] = inter["probs"][0, h]
        out["logits"] = iv.classify(t)[0]
        return out


def _tiles(n: int, c: int) -> int:
    return -(-n // c)


def compile_vit(iv: IntViT, cfg: AccelConfig, *, fuse_gelu: bool = True) -> VitProgram:
    """The program and memory image of the whole integer ViT ``iv`` on the design ``cfg``.
    ``fuse_gelu`` False writes the pre-GELU tensor (``b<i>.fc1``) and a GELU descriptor after it
    instead of fusing the GELU into the GEMM (same results, more cycles and memory traffic)."""
    if not isinstance(cfg, AccelConfig):
        raise TypeError(f"Config must be an AccelConfig, not {cfg!r}")
    mc = iv.model.cfg
    L, R, C = cfg.lanes, cfg.rows, cfg.cols
    a, b = R // L, C // L
    D, dh = mc.dim, mc.hd
    patches = mc.patches
    T = patches + mc.prefix
    Tp = -(-T // R) * R  # token rows of every tensor
    mt = Tp // R
    blocks_l = Tp // L
    abuf_words, wbuf_words = cfg.abuf_words, cfg.wbuf_words
    for what, v in ((f"block {i} attention width (heads x head dim)", mc.heads_at(i) * dh) for i in range(mc.depth)):
        if v % L:
            raise CompileError(f"{what} {v} is not a multiple of the lanes ({L}): V cannot be transposed; "
                               "choose a design with lanes 8 or heads x head dim a multiple of 16")
    mem = Memory(L)
    P = param_words(C, L)
    par_lay = requant_params_layout(C, signed(16))
    n_ops = 6 + 2 * mc.distilled + mc.depth * (13 + 3 * max(mc.heads_at(i) for i in range(mc.depth)))
    prog = mem.alloc("program", n_ops * DESC_BYTES)
    descs: list[tuple[OpInfo, dict]] = []

    def emit(name: str, model: str, view: str, shape: dict | None = None, **fields) -> None:
        if view == "vec":
            d = {"op": 0, "r0_words": 1, "k": 0, "rd0": _EMPTY, "rd1": _EMPTY, "rd2": _EMPTY, "wr": _EMPTY,
                 "m0": 0, "shift": 0, "sm_k": 0, "q_b": 0, "q_c": 0, "gelu_b": 0, "gelu_one": 0, "buf": 0}
        else:
            d = {"op": OP_GEMM, "wmode": W_PREPACKED, "resident": 1, "wide": 0, "fmap": 0, "k": 0, "mt": 0, "nt8": 0,
                 "nt4": 0, "n_out": 0, "x_base": 0, "x_pitch": 0, "w_base": 0, "w_pitch": 0, "p_base": 0,
                 "p_stride": 0, "f_base": 0, "y_base": 0, "y_pitch": 0, "gelu": 0, "m0": 0, "shift": 0, "gelu_b": 0,
                 "gelu_one": 0}
        d.update(fields)
        info = OpInfo(name, _KIND[d["op"]], model, len(descs), shape or {})
        descs.append((info, {view: d}))

    def par_words(bias, m0, shift) -> list[int]:
        cols = [{"bias": int(bias[c]), "m0": int(m0[c]), "shift": int(shift[c]), "zp": 0} if c < len(bias)
                else {"bias": 0, "m0": 0, "shift": 0, "zp": 0} for c in range(C)]
        raw = pack(par_lay, cols)
        return [(raw >> (8 * L * i)) & ((1 << (8 * L)) - 1) for i in range(P)]

    def const_params(name: str, m0: int, sh: int) -> int:
        return mem.words(name, par_words([0] * C, [m0] * C, [sh] * C))

    def linear(name: str, model: str, lin, x: Region, y: Region, *, tiles: int = mt, wide: bool = False,
               gelu: dict | None = None) -> None:
        """A linear layer of the integer model: rows grouped by precision, tiled by ``cols``; ``gelu``
        (the GELU descriptor's constants) fuses the GELU that follows it into its output path."""
        w, bits = lin.w.to(torch.int64), lin.bits
        n, k = w.shape
        if n > FMAP_ENTRIES:
            raise CompileError(f"{name}: {n} output features, more than the feature map's {FMAP_ENTRIES}")
        g = group_rows(bits)
        n8, n4 = g.n8, n - g.n8
        nt8, nt4 = _tiles(n8, C), _tiles(n4, C)
        order = g.perm.tolist()  # grouped column -> original feature
        # int8 tiles padded to whole tiles when int4 tiles follow (the padding columns are not written)
        cols = order[:n8] + ([-1] * (nt8 * C - n8) if n4 else []) + order[n8:]
        n_out = len(cols)
        permuted = cols != list(range(n))
        weights, params = [], []
        for j in range(nt8 + nt4):
            idx = cols[j * C : (j + 1) * C]
            idx = idx + [-1] * (C - len(idx))
            blk = torch.zeros((C, k), dtype=torch.int64)
            for c, f in enumerate(idx):
                if f >= 0:
                    blk[c] = w[f]
            if j < nt8:
                for kk in range(k):
                    weights.append(int.from_bytes(bytes((blk[:, kk] & 0xFF).tolist()), "little"))
            else:
                nib = (blk & 0xF).T.tolist()  # [k][c]
                for kk in range(0, k, 2):
                    lo = sum(v << (4 * c) for c, v in enumerate(nib[kk]))
                    hi = sum(v << (4 * c) for c, v in enumerate(nib[kk + 1])) if kk + 1 < k else 0
                    weights.append(lo | (hi << (4 * C)))
            params += par_words([int(lin.bias[f]) if f >= 0 else 0 for f in idx],
                                [int(lin.m0[f]) if f >= 0 else 0 for f in idx],
                                [int(lin.shift[f]) if f >= 0 else 0 for f in idx])
        # the weights as memory words of L bytes (a WBUF word is `b` memory words)
        raw = []
        for wd in weights:
            raw += [(wd >> (8 * L * i)) & ((1 << (8 * L)) - 1) for i in range(b)]
        w_addr = mem.words(f"{name}.w", raw)
        p_addr = mem.words(f"{name}.p", params)
        f_addr = 0
        if permuted:
            entries = [f if f >= 0 else 0x8000 for f in cols]
            entries += [0x8000] * (-len(entries) % (L // 2))
            f_addr = mem.words(f"{name}.f", [sum(e << (16 * i) for i, e in enumerate(entries[q : q + L // 2]))
                                             for q in range(0, len(entries), L // 2)])
        seg8, seg4 = k, -(-k // 2)
        resident = int(max(seg8 if nt8 else 0, seg4 if nt4 else 0) <= wbuf_words)
        if tiles * k > abuf_words:
            raise CompileError(f"{name}: its input ({tiles * R} tokens x {k} features) does not fit the activation "
                               f"buffer ({cfg.abuf_kib} KiB); choose a larger abuf_kib")
        shape = {"m": tiles * R, "k": k, "n": n, "n8": n8, "resident": resident, **({"gelu": 1} if gelu else {})}
        emit(name, model, "gemm", shape,
             wmode=W_PREPACKED, resident=resident, wide=int(wide), fmap=int(permuted), k=k, mt=tiles, nt8=nt8,
             nt4=nt4, n_out=n_out, x_base=x.addr, x_pitch=x.block_pitch, w_base=w_addr, w_pitch=0, p_base=p_addr,
             p_stride=P * L, f_base=f_addr, y_base=y.addr, y_pitch=y.block_pitch,
             **({"gelu": 1, **gelu} if gelu else {}))

    def layernorm(name: str, x: Region, params, s_out: float, y: Region, nblocks: int = blocks_l) -> None:
        gam, bet = params
        if gam.abs().max() >= 2**15 or bet.abs().max() >= 2**15:
            raise CompileError(f"{name}: LayerNorm gamma/beta do not fit int16")
        gb = mem.words(f"{name}.gb", [(int(gi) & 0xFFFF) | ((int(bi) & 0xFFFF) << 16)
                                      for gi, bi in zip(gam, bet, strict=True)])
        m0, sh = (int(v) for v in quantize_multiplier(2.0**-LN_FRAC / s_out))
        buf = int(cfg.rowbuf >= D)  # rows the row buffer holds are read once, else three times
        emit(name, "ln", "vec", {"blocks": nblocks, "dim": D}, op=OP_LN, k=D, r0_words=2, buf=buf,
             rd0=pattern(x.addr, 2 * D, 1 if buf else 3, 0, nblocks, x.block_pitch), rd2=pattern(gb, D, nblocks, 0),
             wr=pattern(y.addr, D, nblocks, y.block_pitch), m0=m0, shift=sh)

    def add(name: str, res: Region, branch: Region, s_branch: float, y: Region) -> None:
        m0, sh, neg = _rescale_params(s_branch, iv.s_res)
        assert not neg
        emit(name, "add", "vec", {"words": blocks_l * D}, op=OP_ADD_RES, r0_words=2,
             rd0=pattern(res.addr, 2 * blocks_l * D), rd1=pattern(branch.addr, blocks_l * D),
             wr=pattern(y.addr, 2 * blocks_l * D), m0=m0, shift=sh)

    tensors: dict[str, Region] = {}

    def tensor(name: str, kind: str, features: int, pitch: int | None = None, tokens: int = Tp) -> Region:
        t = mem.tensor(name, kind, tokens, features, pitch)
        tensors[name] = t
        return t

    # ---------------------------------------------------------------- embedding and class token
    pd = mc.patch_dim
    x_in = tensor("input", "block8", pd)
    emb = tensor("embed", "block8", D)
    res = tensor("res0", "block16", D)
    lin = iv.embed
    # the prefix tokens are zero patches: their embedding is requant(bias), which the table cancels
    e0 = requantize(lin.bias.to(torch.int64)[None], lin.m0, lin.shift, 0, IntFormat(8, True))
    m0e, she, _ = _rescale_params(lin.s_out, iv.s_res)
    r0 = requantize(e0.reshape(-1, 1).to(torch.int64), torch.tensor([m0e]), torch.tensor([she]), 0, _I16).reshape(-1)
    table = iv.cls_pos[0].clone()
    table[: mc.prefix] = table[: mc.prefix] - r0
    if table[: mc.prefix].abs().max() > _I16.qmax:
        raise CompileError("the prefix tokens' table cannot cancel the zero patch's embedding in int16")
    clspos = tensor("clspos", "block16", D)
    mem.write(clspos, table)
    linear("embed", "embed", lin, x_in, emb)
    add("add0", clspos, emb, lin.s_out, res)

    # ---------------------------------------------------------------- blocks
    for i, blk in enumerate(iv.blocks):
        H, MLP = mc.heads_at(i), mc.mlp_at(i)
        E = H * dh
        p = f"b{i}."
        ln1 = tensor(p + "ln1", "block8", D)
        qkv = tensor(p + "qkv", "block8", 3 * E)
        vrows = tensor(p + "vrows", "rows8", E)
        logits = [tensor(f"{p}logits{h}", "block8", T) for h in range(H)]
        probs = [tensor(f"{p}probs{h}", "block8", T) for h in range(H)]
        av = tensor(p + "av", "block8", E)
        proj = tensor(p + "proj", "block8", D)
        res1 = tensor(p + "res1", "block16", D)
        ln2 = tensor(p + "ln2", "block8", D)
        gelu = tensor(p + "gelu", "block8", MLP)
        fc2 = tensor(p + "fc2", "block8", D)
        out = tensor(p + "out", "block16", D)

        layernorm(p + "ln1", res, blk["ln1"], blk["s_ln1"], ln1)
        linear(p + "qkv", "qkv", blk["qkv"], ln1, qkv)
        emit(p + "vtrans", "transpose", "vec", {"words": blocks_l * E}, op=OP_TRANSPOSE, r0_words=1,
             rd0=pattern(qkv.feature(2 * E), E, blocks_l, qkv.block_pitch),
             wr=pattern(vrows.addr, 1, L, E, E // L, L, blocks_l, L * E))
        m0l, shl, _ = blk["logit"]
        sm = blk["shiftmax"]
        p_qk = const_params(p + "qk.p", m0l, shl)
        m0a, sha, _ = _rescale_params(2.0**-PROB_BITS * blk["qkv"].s_out, blk["s_av"])
        p_av = const_params(p + "av.p", m0a, sha)
        if dh > wbuf_words:
            raise CompileError(f"{p}qk: a column tile of keys ({dh} x {C} bytes) does not fit the weight buffer "
                               f"({cfg.wbuf_kib} KiB); choose a larger wbuf_kib")
        av_resident = int(wbuf_words >= T)
        sm_buf = int(cfg.rowbuf >= T)  # Shiftmax rows (one per token) the row buffer holds are read once
        for h in range(H):
            emit(f"{p}qk{h}", "qk", "gemm", {"m": Tp, "k": dh, "n": T, "resident": 1}, wmode=W_KT, k=dh, mt=mt,
                 nt8=_tiles(T, C), n_out=T, x_base=qkv.feature(h * dh), x_pitch=qkv.block_pitch,
                 w_base=qkv.feature(E + h * dh), w_pitch=qkv.block_pitch, p_base=p_qk, p_stride=0,
                 y_base=logits[h].addr, y_pitch=logits[h].block_pitch)
            emit(f"{p}softmax{h}", "softmax", "vec", {"blocks": blocks_l, "tokens": T}, op=OP_SOFTMAX, k=T,
                 buf=sm_buf, rd0=pattern(logits[h].addr, T, 1 if sm_buf else 3, 0, blocks_l, logits[h].block_pitch),
                 wr=pattern(probs[h].addr, T, blocks_l, probs[h].block_pitch), sm_k=sm.k, q_b=sm.q_b, q_c=sm.q_c)
            emit(f"{p}av{h}", "av", "gemm", {"m": Tp, "k": T, "n": dh, "resident": av_resident}, wmode=W_ROWS,
                 resident=av_resident, k=T, mt=mt,
                 nt8=_tiles(dh, C), n_out=dh, x_base=probs[h].addr, x_pitch=probs[h].block_pitch,
                 w_base=vrows.addr + h * dh, w_pitch=E, p_base=p_av, p_stride=0, y_base=av.feature(h * dh),
                 y_pitch=av.block_pitch)
        linear(p + "proj", "proj", blk["proj"], av, proj)
        add(p + "add1", res, proj, blk["proj"].s_out, res1)
        layernorm(p + "ln2", res1, blk["ln2"], blk["s_ln2"], ln2)
        gp = blk["gelu"]
        m0g, shg, neg = _rescale_params(gp.out_scale, blk["s_gelu"])
        assert neg
        gelu_c = {"m0": m0g, "shift": shg, "gelu_b": gp.q_b, "gelu_one": gp.q_one}
        if fuse_gelu:  # fc1's output words go through the element-wise unit on their way to memory
            linear(p + "fc1", "fc1", blk["fc1"], ln2, gelu, gelu=gelu_c)
        else:
            fc1 = tensor(p + "fc1", "block8", MLP)
            linear(p + "fc1", "fc1", blk["fc1"], ln2, fc1)
            emit(p + "gelu", "gelu", "vec", {"words": blocks_l * MLP}, op=OP_GELU_Q,
                 rd1=pattern(fc1.addr, blocks_l * MLP), wr=pattern(gelu.addr, blocks_l * MLP), **gelu_c)
        linear(p + "fc2", "fc2", blk["fc2"], gelu, fc2)
        add(p + "add2", res1, fc2, blk["fc2"].s_out, out)
        res = out

    # ---------------------------------------------------------------- classifier (the class token's block)
    lnf = tensor("lnf", "block8", D, tokens=R)
    layernorm("lnf", res, iv.lnf, iv.s_lnf, lnf, nblocks=a)
    nc = mc.classes
    logit = tensor("logits", "block16", nc, tokens=R)
    if mc.distilled:
        if D % L:
            raise CompileError(f"the distilled classifier needs dim ({D}) a multiple of the lanes ({L})")
        # the classifier reads the class and distillation tokens' features side by side as one
        # token of 2 D features: the first L tokens to rows (token-major bytes: the two tokens'
        # rows are the 2 D bytes at the start), then words t .. t + L - 1 of those bytes through the
        # transposer for every word t, whose lane 0 is then word t's bytes one feature per word
        words = 2 * D // L
        rows = tensor("lnf.rows", "rows8", D, tokens=max(L, -(-(2 * D + L * L) // D)))
        emit("lnf.rows", "transpose", "vec", {"words": D}, op=OP_TRANSPOSE, r0_words=1,
             rd0=pattern(lnf.addr, D), wr=pattern(rows.addr, 1, L, D, D // L, L))
        pair = tensor("lnf.pair", "block8", 2 * D, tokens=R)
        emit("lnf.pair", "transpose", "vec", {"words": words * L}, op=OP_TRANSPOSE, r0_words=1,
             rd0=pattern(rows.addr, L, words, L), wr=pattern(pair.addr, words * L))
        lnf = pair
    linear("head", "head", iv.head, lnf, logit, tiles=1, wide=True)
    emit("end", "end", "vec", op=OP_END)

    if len(descs) > n_ops:
        raise AssertionError("program region too small")
    lay = descriptor_layout()
    for info, d in descs:
        at = prog + info.index * DESC_BYTES
        mem.data[at : at + DESC_BYTES] = pack(lay, d).to_bytes(DESC_BYTES, "little")
    log = mem.alloc("log", max(1, len(descs)) * L)
    return VitProgram(cfg, mem, prog, log, [info for info, _ in descs[:-1]], x_in, logit, nc, T, patches, tensors,
                      iv.s_in, iv)


def gemm_tiles(shape: dict, cfg: AccelConfig) -> int:
    """Token tiles x column tiles of a compiled GEMM (for reports)."""
    m, n, n8 = shape["m"], shape["n"], shape.get("n8", shape["n"])
    return (m // cfg.rows) * (math.ceil(n8 / cfg.cols) + math.ceil((n - n8) / cfg.cols))

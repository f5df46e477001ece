"""The QuartDepth compiler: an integer-quantized CNN (:class:`~qsilicon.quant.ptq.export.IntGraph`) ->
the engine's instruction stream and an external-memory image.

Memory image (byte addresses, 64-bit words): the program (32-byte instructions), then every tensor
in channel-row-major layout (``[C][H][row]``, a row padded to whole words; 4-bit codes two to a byte,
low nibble first; int16 output little endian), then per layer and output-channel group the weights
(one beat per (input channel, ky, kx): ``co`` weights, 4-bit packed or 8-bit), the per-channel
parameters (32-byte words, see :mod:`~qsilicon.hw.depth.isa`) and the decode tables of the layer's
input channels.

Schedule.  A layer is cut into jobs: output-channel groups of ``co`` (outer loop) x bands of ``T``
output rows (inner loop), ``T`` the largest that fits half of ``act`` and ``out``.  A job is LOADs
(the band's input rows of each concatenated input, and, unless the slot already holds them, the
group's weights and parameters), one COMPUTE, one STORE.  Job ``j`` uses half ``j % 2`` of every
buffer; tokens let the load of job ``j + 1`` and the store of job ``j - 1`` run while job ``j``
computes.  The first instruction of a layer (its decode-table load, or its first load) carries the
barrier: a layer starts when the previous one is stored.

Fusion.  Concatenation, nearest 2x upsampling and the polished-code decode happen in the compute
unit's operand fetch, and bias, requantization, ReLU (the clamp at 0) and the polished encode in its
post-op pipeline, so only 4/8-bit codes cross the memory bus.  ``fuse=False`` materialises every
upsampled tensor first (an identity 1x1 convolution on the engine that writes the 2x tensor to
memory), the unfused baseline of ``bench/fusion.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from qsilicon.quant.ptq.export import IntGraph
from qsilicon.quant.ptq.graph import INPUT

from .isa import (
    FIELDS,
    FMT_S16,
    FMT_U4,
    FMT_U8,
    INSN_BYTES,
    MEM_ACT,
    MEM_PAR,
    MEM_TAB,
    MEM_WGT,
    MODE_BYTES,
    MODE_NIBBLE_S,
    MODE_NIBBLE_U,
    OP_COMPUTE,
    OP_END,
    OP_LOAD,
    OP_STORE,
    PAR_BYTES,
    TAB_BYTES,
    WORD_BYTES,
    EngineConfig,
    check,
    decode,
    encode,
)

__all__ = ["CompileError", "DepthProgram", "LayerInfo", "TensorPlace", "compile_graph"]


class CompileError(ValueError):
    """The network does not fit the engine configuration (the message names the limit)."""


@dataclass(frozen=True)
class TensorPlace:
    """Where a tensor lives: ``[slots][height][row]``, a slot being a channel, or for a ``paired``
    tensor (4-bit codes of W4A4 layers on a ``nibble`` engine) a channel pair, a byte per pixel
    holding channel ``2i`` in its low nibble and ``2i + 1`` in its high nibble."""

    name: str
    base: int
    channels: int
    height: int
    width: int
    bits: int
    paired: bool = False

    @property
    def slots(self) -> int:
        return -(-self.channels // 2) if self.paired else self.channels

    @property
    def row_words(self) -> int:
        return math.ceil(self.width * (8 if self.paired else self.bits) / 64)

    @property
    def row_bytes(self) -> int:
        return self.row_words * WORD_BYTES

    @property
    def nbytes(self) -> int:
        return self.slots * self.height * self.row_bytes


@dataclass(frozen=True)
class LayerInfo:
    tag: int
    name: str
    macs: int  # true multiply-accumulates of the layer
    jobs: int
    band_rows: int
    pair: bool = False  # W4A4 on the nibble multipliers: two input channels per beat


@dataclass
class DepthProgram:
    """A compiled network: ``memory`` (program + weights + tensor space), where things are, and the
    instructions (decoded, for inspection)."""

    cfg: EngineConfig
    memory: bytearray
    prog_addr: int
    tensors: dict[str, TensorPlace]
    layers: list[LayerInfo]
    insns: list[dict] = field(default_factory=list)
    input: str = INPUT
    output: str = "out"

    def with_input(self, codes: torch.Tensor) -> bytearray:
        """A copy of the memory image with ``codes`` (``[1 or C, H, W]`` uint8 image codes) written in."""
        t = self.tensors[self.input]
        codes = codes.reshape(t.channels, t.height, t.width)
        if codes.min() < 0 or codes.max() >= 2**t.bits:
            raise ValueError(f"input codes must be unsigned {t.bits}-bit")
        mem = bytearray(self.memory)
        _write_tensor(mem, t, codes)
        return mem

    def read(self, mem: bytes | bytearray, name: str | None = None) -> torch.Tensor:
        """Tensor ``name`` (default the output) from a memory image, ``[1, C, H, W]`` int64."""
        t = self.tensors[name or self.output]
        raw = np.frombuffer(bytes(mem[t.base : t.base + t.nbytes]), np.uint8).reshape(t.slots, t.height, -1)
        if t.paired:
            v = np.stack([raw & 15, raw >> 4], 1).reshape(2 * t.slots, t.height, -1)[: t.channels]
        elif t.bits == 4:
            v = np.stack([raw & 15, raw >> 4], -1).reshape(t.channels, t.height, -1)
        elif t.bits == 8:
            v = raw
        else:
            v = raw.copy().view("<i2")
        return torch.from_numpy(v[:, :, : t.width].astype(np.int64))[None]


def _write_tensor(mem: bytearray, t: TensorPlace, codes: torch.Tensor) -> None:
    v = codes.to(torch.int64).numpy()
    if t.paired:
        v = np.concatenate([v, np.zeros((2 * t.slots - t.channels, *v.shape[1:]), np.int64)])
        v = (v[0::2] & 15) | ((v[1::2] & 15) << 4)
    rows = np.zeros((t.slots, t.height, t.row_bytes * 8 // (8 if t.paired else t.bits)), np.int64)
    rows[:, :, : t.width] = v
    if t.paired:
        data = rows.astype(np.uint8).tobytes()
    elif t.bits == 4:
        b = (rows[..., 0::2] & 15) | ((rows[..., 1::2] & 15) << 4)
        data = b.astype(np.uint8).tobytes()
    elif t.bits == 8:
        data = rows.astype(np.uint8).tobytes()
    else:
        data = rows.astype("<i2").tobytes()
    mem[t.base : t.base + t.nbytes] = data


@dataclass
class _Layer:
    name: str
    inputs: tuple  # ((tensor, upsample), ...)
    output: str
    w: torch.Tensor
    w_bits: int
    bias: torch.Tensor
    m0: torch.Tensor
    shift: torch.Tensor
    stride: int
    decode: bool | None = None  # None: decode where an input is polished


def _pack_values(vals: np.ndarray, bits: int) -> bytes:
    """Integers (two's complement when negative) ``bits`` wide, little-endian within words."""
    vals = vals.astype(np.int64) & ((1 << bits) - 1)
    if bits == 4:
        if len(vals) % 2:
            vals = np.append(vals, 0)
        return ((vals[0::2]) | (vals[1::2] << 4)).astype(np.uint8).tobytes()
    return vals.astype(np.uint8).tobytes()


def _align(n: int, a: int = 64) -> int:
    return -(-n // a) * a


def compile_graph(g: IntGraph, cfg: EngineConfig | None = None, *, height: int = 64, width: int = 64,
                  fuse: bool = True) -> DepthProgram:
    """Lower ``g`` (input ``[1, C, height, width]``) to a program for an engine of ``cfg`` (default
    :class:`EngineConfig()`)."""
    cfg = EngineConfig() if cfg is None else cfg
    layers = [_Layer(n.name, tuple(n.inputs), n.output, n.w, n.w_bits, n.bias, n.m0, n.shift, n.stride)
              for n in g.nodes]
    kinds = {t: v for t, v in g.tensors.items()}
    # ---------------------------------------------------------------- shapes and formats
    shape = {INPUT: (g.nodes[0].w.shape[1], height, width)}
    for n in g.nodes:
        c = sum(shape[t][0] for t, _ in n.inputs)
        if c != n.w.shape[1]:
            raise CompileError(f"{n.name}: inputs have {c} channels, the weights expect {n.w.shape[1]}")
        hs = {(shape[t][1] * (2 if up else 1), shape[t][2] * (2 if up else 1)) for t, up in n.inputs}
        if len(hs) != 1:
            raise CompileError(f"{n.name}: concatenated inputs have different sizes {sorted(hs)}")
        h, w = hs.pop()
        k = n.kernel
        shape[n.output] = (n.w.shape[0], (h + 2 * (k // 2) - k) // n.stride + 1, (w + 2 * (k // 2) - k) // n.stride + 1)
    if not fuse:
        new, done = [], {}
        for L in layers:
            ins = []
            for t, up in L.inputs:
                if up:
                    if t not in done:
                        c = shape[t][0]
                        name = f"{t}_up"
                        eye = torch.eye(c, dtype=torch.int64)[:, :, None, None]
                        new.append(_Layer(f"{name}", ((t, True),), name, eye, 4, torch.zeros(c, dtype=torch.int64),
                                          torch.full((c,), 1 << 15, dtype=torch.int64),
                                          torch.full((c,), 15, dtype=torch.int64), 1, decode=False))
                        shape[name] = (c, 2 * shape[t][1], 2 * shape[t][2])
                        kinds[name] = kinds[t]
                        done[t] = name
                    ins.append((done[t], False))
                else:
                    ins.append((t, up))
            L.inputs = tuple(ins)
            new.append(L)
        layers = new

    def bits(t):
        k = kinds[t]
        return 16 if k.kind == "output" else (4 if k.kind == "polished" else k.bits)

    # W4A4 layers on the nibble multipliers take two input channels per beat; their inputs are
    # stored paired, so every consumer of a paired tensor must be such a layer.
    def pairable(L):
        return cfg.packing == "nibble" and L.w_bits == 4 and all(
            t != INPUT and kinds[t].kind == "uniform" and kinds[t].bits == 4 for t, _ in L.inputs)

    consumers: dict[str, list] = {}
    for L in layers:
        for t, _ in L.inputs:
            consumers.setdefault(t, []).append(L)
    paired = {t: bool(consumers.get(t)) and all(pairable(L) for L in consumers[t]) for t in shape}

    for t, (c, h, w) in shape.items():
        if w > cfg.max_width:
            raise CompileError(f"tensor {t} is {w} pixels wide; the engine's rows hold {cfg.max_width} "
                               "(raise max_width)")
        if h > 255 or c > 2047:
            raise CompileError(f"tensor {t} ({c}x{h}x{w}) exceeds the instruction fields (255 rows, 2047 channels)")
    # ---------------------------------------------------------------- schedule
    act_half, out_half, wgt_half = cfg.act_depth // 2, cfg.out_depth // 2, cfg.wgt_depth // 2
    par_half = cfg.par_depth // 2
    insns: list[dict] = []
    infos: list[LayerInfo] = []
    blobs: list[tuple[bytes, list]] = []  # (data, [(insn, key)] that need its address)
    job = 0
    slot_group: dict[int, tuple] = {}
    for tag, L in enumerate(layers):
        k, s = L.w.shape[-1], L.stride
        if k not in (1, 3):
            raise CompileError(f"{L.name}: kernel {k}x{k}; the engine runs 1x1 and 3x3")
        if s not in (1, 2):
            raise CompileError(f"{L.name}: stride {s}; the engine runs strides 1 and 2")
        if len(L.inputs) > 2:
            raise CompileError(f"{L.name}: {len(L.inputs)} concatenated inputs; the engine takes two")
        if any(up for _, up in L.inputs) and s != 1:
            raise CompileError(f"{L.name}: an upsampled input needs stride 1")
        n_out, cin = L.w.shape[0], L.w.shape[1]
        pair = pairable(L) and all(paired[t] for t, _ in L.inputs)
        pair_out = paired[L.output]

        def slots(t, pair=pair):  # operand rows of an input: channels, or channel pairs
            return -(-shape[t][0] // 2) if pair else shape[t][0]

        beats = sum(slots(t) for t, _ in L.inputs) * k * k
        if beats > wgt_half:
            raise CompileError(f"{L.name}: {beats} weight words per group; half the weight buffer holds {wgt_half} "
                               "(raise wgt_depth)")
        if not pair and cin > cfg.tab_depth:
            raise CompileError(f"{L.name}: {cin} input channels; the decode-table memory holds {cfg.tab_depth}")
        oc, oh, ow = shape[L.output]
        okind = kinds[L.output]
        fmt = FMT_S16 if okind.kind == "output" else (FMT_U8 if okind.kind == "polished" or okind.bits == 8 else FMT_U4)
        enc = okind.kind == "polished"
        if L.decode is False:  # a copy (unfused upsampling): codes in, the same codes out
            fmt, enc = (FMT_U4 if bits(L.output) == 4 else FMT_U8), False
        in_kinds = [kinds[t] for t, _ in L.inputs]
        in_bits = {bits(t) for t, _ in L.inputs}
        if 16 in in_bits or len(in_bits) > 1:
            raise CompileError(f"{L.name}: inputs of {sorted(in_bits)} bits cannot be concatenated")
        polished = any(x.kind == "polished" for x in in_kinds)
        dec = polished if L.decode is None else L.decode
        pad = k // 2

        def rows_needed(oy0, T, t, up, k=k, s=s, pad=pad):
            _, ih, _ = shape[t]
            if up:
                lo, hi = max(0, oy0 - pad), min(2 * ih - 1, oy0 + T - 1 - pad + k - 1)
                return lo >> 1, hi >> 1
            lo, hi = max(0, oy0 * s - pad), min(ih - 1, (oy0 + T - 1) * s - pad + k - 1)
            return lo, hi

        def footprint(T, L=L, oh=oh, rows_needed=rows_needed, slots=slots):
            worst = 0
            for oy0 in range(0, oh, T):
                tt = min(T, oh - oy0)
                worst = max(worst, sum(slots(t) * (rows_needed(oy0, tt, t, up)[1] - rows_needed(oy0, tt, t, up)[0]
                                                   + 1) for t, up in L.inputs))
            return worst

        T = min(oh, out_half // cfg.co, 255)
        while T > 0 and footprint(T) > act_half:
            T -= 1
        if T == 0:
            raise CompileError(f"{L.name}: one output row needs {footprint(1)} act words; half the act buffer "
                               f"holds {act_half} (raise act_depth)")
        groups = -(-n_out // cfg.co)
        first = True
        # decode tables of the input channels (identity rows for uniform 4-bit inputs)
        if dec:
            tabs = []
            for t, _ in L.inputs:
                kt = kinds[t]
                c = shape[t][0]
                tabs.append(kt.table.to(torch.int64).numpy() if kt.kind == "polished"
                            else np.tile(np.arange(16), (c, 1)))
            tab = np.concatenate(tabs, 0).astype(np.uint8)
            ins = {"op": OP_LOAD, "mem": MEM_TAB, "mode": MODE_BYTES, "nbytes": TAB_BYTES, "sram": 0, "tag": tag,
                   "barrier": 1, "dram": {"run": cin * TAB_BYTES // WORD_BYTES, "n0": 1, "n1": 1}}
            blobs.append((tab.tobytes(), [(ins, "base")]))
            insns.append(ins)
            first = False
        for gi in range(groups):
            co0 = gi * cfg.co
            n_co = min(cfg.co, n_out - co0)
            # weights: beat (ci, ky, kx) -> co weights; paired: beat (channel pair, ky, kx) -> co bytes
            wg = np.zeros((cin, k, k, cfg.co), np.int64)
            wg[..., :n_co] = L.w[co0 : co0 + n_co].permute(1, 2, 3, 0).numpy()
            wbits = L.w_bits
            if pair:  # each segment padded to whole pairs (a zero weight for the missing channel)
                parts, c0 = [], 0
                for t, _ in L.inputs:
                    c = shape[t][0]
                    seg = np.concatenate([wg[c0 : c0 + c], np.zeros((c % 2, k, k, cfg.co), np.int64)])
                    parts.append((seg[0::2] & 15) | ((seg[1::2] & 15) << 4))
                    c0 += c
                wg, wbits = np.concatenate(parts), 8
            wpb = math.ceil(cfg.co * wbits / 64)
            per_word = 64 // wbits
            words = np.zeros((beats, wpb * per_word), np.int64)
            words[:, : cfg.co] = wg.reshape(beats, cfg.co)
            wblob = _pack_values(words.reshape(-1), wbits)
            par = np.zeros((cfg.co, PAR_BYTES), np.uint8)
            for c in range(n_co):
                oc_ = co0 + c
                par[c, 0:4] = np.frombuffer(int(L.bias[oc_]).to_bytes(4, "little", signed=True), np.uint8)
                par[c, 4:6] = np.frombuffer(int(L.m0[oc_]).to_bytes(2, "little"), np.uint8)
                par[c, 6] = int(L.shift[oc_])
                if enc:
                    par[c, 7:22] = okind.thresholds[oc_].to(torch.int64).clamp(0, 255).numpy()
            wblob_refs, pblob_refs = [], []
            for oy0 in range(0, oh, T):
                tt = min(T, oh - oy0)
                slot = job % 2
                loads = []
                off = slot * act_half
                segs = []
                for t, up in L.inputs:
                    _, pl_h, pl_w = shape[t]
                    pl_c = slots(t)
                    lo, hi = rows_needed(oy0, tt, t, up)
                    band = hi - lo + 1
                    segs.append({"ch": pl_c, "up": int(up), "in_h": pl_h, "in_w": pl_w, "row0": lo, "band": band,
                                 "base": off})
                    mode = MODE_NIBBLE_U if bits(t) == 4 and not paired[t] else MODE_BYTES
                    loads.append({"op": OP_LOAD, "mem": MEM_ACT, "mode": mode,
                                  "flush": 1, "nbytes": pl_w, "sram": off, "tag": tag,
                                  "dram": {"tensor": (t, lo), "n0": band, "n1": pl_c}})
                    off += pl_c * band
                if slot_group.get(slot) != (tag, gi):
                    ld_w = {"op": OP_LOAD, "mem": MEM_WGT, "mode": MODE_NIBBLE_S if wbits == 4 else MODE_BYTES,
                            "nbytes": cfg.co, "sram": slot * wgt_half, "tag": tag,
                            "dram": {"run": len(wblob) // WORD_BYTES, "n0": 1, "n1": 1}}
                    ld_p = {"op": OP_LOAD, "mem": MEM_PAR, "mode": MODE_BYTES, "nbytes": PAR_BYTES,
                            "sram": slot * par_half, "tag": tag,
                            "dram": {"run": cfg.co * PAR_BYTES // WORD_BYTES, "n0": 1, "n1": 1}}
                    wblob_refs.append((ld_w, "base"))
                    pblob_refs.append((ld_p, "base"))
                    loads += [ld_w, ld_p]
                    slot_group[slot] = (tag, gi)
                if first:
                    loads[0]["barrier"] = 1
                    first = False
                if job >= 2:
                    loads[0]["pop_next"] = 1
                loads[-1]["push_next"] = 1
                insns += loads
                seg1 = segs[1] if len(segs) > 1 else {"ch": 0}
                insns.append({"op": OP_COMPUTE, "tag": tag, "k": k, "stride": s, "decode": int(dec), "encode": int(enc),
                              "fmt": fmt, "n_co": n_co, "oy0": oy0, "out_h": tt, "out_w": ow,
                              "wgt": slot * wgt_half, "par": slot * par_half, "tab": 0, "out": slot * out_half,
                              "seg0": segs[0], "seg1": seg1, "pop_prev": 1, "pop_next": int(job >= 2),
                              "push_prev": 1, "push_next": 1, "pair": int(pair), "pair_out": int(pair_out)})
                st_fmt = FMT_U8 if pair_out else (FMT_U4 if enc else fmt)
                insns.append({"op": OP_STORE, "tag": tag, "fmt": st_fmt, "width": ow,
                              "out": slot * out_half,
                              "pop_prev": 1, "push_prev": 1,
                              "dram": {"tensor": (L.output, oy0, co0 // 2 if pair_out else co0), "n0": tt,
                                       "n1": -(-n_co // 2) if pair_out else n_co}})
                job += 1
            blobs.append((wblob, wblob_refs))
            blobs.append((par.tobytes(), pblob_refs))
        infos.append(LayerInfo(tag, L.name, oh * ow * n_out * cin * k * k, groups * -(-oh // T), T, pair))
    insns.append({"op": OP_END})
    # ---------------------------------------------------------------- memory image
    addr = _align(len(insns) * INSN_BYTES)
    places = {}
    for t, (c, h, w) in shape.items():
        places[t] = TensorPlace(t, addr, c, h, w, bits(t), paired[t])
        addr = _align(addr + places[t].nbytes)
    blob_at = []
    for data, refs in blobs:
        blob_at.append(addr)
        for ins, key in refs:
            ins["dram"][key] = addr
        addr = _align(addr + len(data))
    mem = bytearray(addr)
    for (data, _), a in zip(blobs, blob_at, strict=True):
        mem[a : a + len(data)] = data
    for ins in insns:  # tensor rows
        d = ins.get("dram")
        if d is not None and "tensor" in d:
            ref = d.pop("tensor")
            t = places[ref[0]]
            if ins["op"] == OP_LOAD:
                d.update(base=t.base + ref[1] * t.row_bytes, run=t.row_words, s0=t.row_bytes,
                         s1=t.height * t.row_bytes)
            else:
                d.update(base=t.base + ref[2] * t.height * t.row_bytes + ref[1] * t.row_bytes, run=t.row_words,
                         s0=t.row_bytes, s1=t.height * t.row_bytes)
    for n, ins in enumerate(insns):
        check({**_defaults(ins["op"]), **ins}, cfg)
        mem[n * INSN_BYTES : (n + 1) * INSN_BYTES] = encode(ins)
    return DepthProgram(cfg, mem, 0, places, infos, insns, output=g.output)


def _defaults(op: int) -> dict:
    """Every field of ``op`` at 0 (what :func:`check` sees for fields an instruction leaves out)."""
    return decode(encode({"op": op})) if op in FIELDS else {}

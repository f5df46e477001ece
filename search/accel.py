"""The searched accelerator's models: the workload of a ViT on a design, its cycles and its resources.

A design is a :class:`~qsilicon.hw.config.AccelConfig`, the generator's
(:class:`~qsilicon.hw.vit.system.VitAccel`); a model is a list of :class:`Op`, one per
descriptor the compiler (:mod:`qsilicon.hw.vit.compiler`) writes for it, with the same names.
Everything here is pure Python so that the search evaluates thousands of designs per second.

Latency (:func:`predict`): every descriptor's cycles from the hardware's own structure, with
coefficients fitted to RTL runs of whole models (``search/data/vit_system_model.json``, written
by ``python -m qsilicon.search.vit_latency`` from ``bench/vit_system_cycles.py``'s data):

* a GEMM is bound by the array (``tiles x max(K, rows + 1)`` cycles), by the one read port (the
  input once, every column tile's weights and parameters, once per layer when the tile stays in
  the weight ring and once per token tile when it streams, the feature map) or by the output
  transposer (a column of ``lanes`` tokens per cycle); before the array starts it waits for the
  first token tile of the input and the first column tile, and after its last beat the array
  drains and the last tile leaves the transposer;
* LayerNorm and Shiftmax: the row unit's three passes over every token block (int16 rows are two
  words a beat) and its dividers and square root per block; LayerNorm and Shiftmax rows a design's
  row buffer holds (``rowbuf``) are read once through the row unit's two stages and have their own
  coefficients (``layernorm_rb``, ``softmax_rb``, with the read port's bound :data:`RB_WORDS`);
  the residual adds and the ``V`` transpose: their words through the port; GELU is fused into the
  first MLP layer's GEMM (its output words pass the element-wise unit's pipeline on their way out);
* the controller (:func:`control_cycles`): every descriptor's fetch (128 bytes) and cycle-log
  write, and the start and the end of the run.

The memory port moves one word of ``lanes`` bytes per cycle; a board whose DRAM is slower than
that (bytes per cycle at the clock) slows every memory-bound term in proportion.

Resources (:func:`resources`): the GEMM engine's Yosys-calibrated model
(:mod:`qsilicon.search.resources`), the row and element-wise units as synthesized, the block RAMs
of the activation buffer, the weight ring and the feature map (Yosys's mapping rule), and the
system around them (readers, writer, controller, transposer, parameter buffer) fitted to Yosys
synthesis of whole generated tops (``data/vit_system_resources.json``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from qsilicon.hw.config import ACCEL_LANES as LANES
from qsilicon.hw.config import ACCEL_PACKINGS as PACKINGS
from qsilicon.hw.config import AccelConfig

from . import resources as res

__all__ = [
    "LANES", "PACKINGS", "RB_WORDS", "AccelConfig", "Op", "Prediction", "block_shapes", "coef_kind", "control_cycles",
    "fits",
    "fixed_resources", "gemm_terms", "int_vit_workload", "op_terms", "predict", "resources", "subnet_workload",
    "utilization", "vit_workload", "workload_macs",
]

DATA = Path(__file__).resolve().parent / "data"
UNITS = DATA / "vit_units.json"
MODEL = DATA / "vit_system_model.json"
SYSTEM_RESOURCES = DATA / "vit_system_resources.json"
#: Bits of one column's requantizer parameters (bias 32, M0 16, shift 6, zero point 16).
PARAM_BITS_PER_COL = 32 + 16 + 6 + 16
DESC_BYTES = 128
#: Entries of the feature map; its memory is ``FMAP_ENTRIES * 16`` bits.
FMAP_ENTRIES = 4096


class Op(NamedTuple):
    """One descriptor of a workload.

    ``kind`` is the unit (``gemm``, ``layernorm``, ``softmax``, ``gelu``, ``add``,
    ``transpose``), ``model`` what the compiler calls it (``embed``, ``qkv``, ``qk``, ``av``,
    ``proj``, ``fc1``, ``fc2``, ``head``, ``ln``, ...).  GEMMs: ``m`` token rows (a multiple of the
    array's rows), reduction ``k``, ``n`` output columns of which ``n8`` have int8 weights,
    ``wmode`` (``prepacked`` weights, the keys of ``kT``, the ``rows`` of V), ``wide`` (int16
    outputs), ``gelu`` (the GELU that follows fused into its output path: the element-wise unit
    applies it to the output words on their way to memory).  Vector operations: ``blocks`` token
    blocks, row length ``k``, ``words``.
    """

    name: str
    kind: str
    model: str
    m: int = 0
    k: int = 0
    n: int = 0
    n8: int = 0
    wmode: str = "prepacked"
    wide: bool = False
    blocks: int = 0
    words: int = 0
    count: int = 1  # identical descriptors (one per attention head)
    gelu: bool = False


def block_shapes(subnet, space) -> list[tuple[int, int, int, int, int, tuple]]:
    """``(tokens, dim, heads, head_dim, mlp, ratio8 of qkv/proj/fc1/fc2)`` per block of a
    supernet subnet."""
    tokens = (space.image // space.patch) ** 2 + 1
    return [(tokens, subnet.dim, subnet.heads[i], space.head_dim, subnet.mlp[i], tuple(subnet.ratio8[4 * i:4 * i + 4]))
            for i in range(subnet.depth)]


def _n8(n: int, r8: float) -> int:
    return int(math.floor(n * r8 + 0.5))


def vit_workload(blocks, cfg: AccelConfig, *, patches: int, patch_dim: int, classes: int, embed_r8: float = 1.0,
                 head_r8: float = 1.0, distilled: bool = False, fuse_gelu: bool = True) -> list[Op]:
    """The descriptors the compiler writes for a ViT on ``cfg``: the patch embedding, the class
    token's add, the blocks (:func:`block_shapes`; the GELU fused into the first MLP layer, or
    with ``fuse_gelu`` False a descriptor of its own, as the compiler's option), the final
    LayerNorm and the classifier (``distilled``: the two transposes that put the class and
    distillation tokens side by side and a classifier on both)."""
    if not blocks:
        raise ValueError("a workload needs at least one block")
    L, R = cfg.lanes, cfg.rows
    tokens = blocks[0][0]
    tp = -(-tokens // R) * R
    nb = tp // L
    dim = blocks[0][1]
    ops = [Op("embed", "gemm", "embed", tp, patch_dim, dim, _n8(dim, embed_r8)),
           Op("add0", "add", "add", words=nb * dim)]
    for b, (t, d, h, hd, mlp, r8) in enumerate(blocks):
        if len(r8) != 4 or any(not 0 <= r <= 1 for r in r8):
            raise ValueError(f"block {b}: ratio8 needs 4 shares in [0, 1] (qkv, proj, fc1, fc2), not {r8!r}")
        if t != tokens or d != dim:
            raise ValueError("every block must have the same tokens and dim")
        e = h * hd
        p = f"b{b}."
        ops += [Op(p + "ln1", "layernorm", "ln", blocks=nb, k=d),
                Op(p + "qkv", "gemm", "qkv", tp, d, 3 * e, _n8(3 * e, r8[0])),
                Op(p + "vtrans", "transpose", "transpose", words=nb * e),
                Op(p + "qk", "gemm", "qk", tp, hd, t, t, "kT", count=h),
                Op(p + "softmax", "softmax", "softmax", blocks=nb, k=t, count=h),
                Op(p + "av", "gemm", "av", tp, t, hd, hd, "rows", count=h),
                Op(p + "proj", "gemm", "proj", tp, e, d, _n8(d, r8[1])),
                Op(p + "add1", "add", "add", words=nb * d),
                Op(p + "ln2", "layernorm", "ln", blocks=nb, k=d),
                Op(p + "fc1", "gemm", "fc1", tp, d, mlp, _n8(mlp, r8[2]), gelu=fuse_gelu),
                *([] if fuse_gelu else [Op(p + "gelu", "gelu", "gelu", words=nb * mlp)]),
                Op(p + "fc2", "gemm", "fc2", tp, mlp, d, _n8(d, r8[3])),
                Op(p + "add2", "add", "add", words=nb * d)]
    ops.append(Op("lnf", "layernorm", "ln", blocks=R // L, k=dim))
    if distilled:
        ops += [Op("lnf.rows", "transpose", "transpose", words=dim), Op("lnf.pair", "transpose", "transpose",
                                                                         words=2 * dim)]
    k = 2 * dim if distilled else dim
    ops.append(Op("head", "gemm", "head", R, k, classes, _n8(classes, head_r8), wide=True))
    return ops


def subnet_workload(subnet, space, cfg: AccelConfig) -> list[Op]:
    """:func:`vit_workload` of a supernet subnet (embedding and classifier int8, as exported)."""
    return vit_workload(block_shapes(subnet, space), cfg, patches=(space.image // space.patch) ** 2,
                        patch_dim=space.patch ** 2, classes=space.classes)


def fits(cfg: AccelConfig, ops: list[Op]) -> str | None:
    """Why the design cannot run the workload (a GEMM input larger than the activation buffer, a
    column tile of keys larger than the weight ring), or ``None`` when it can."""
    abuf_words, wbuf_words = cfg.abuf_words, cfg.wbuf_words
    for o in ops:
        if o.name == "lnf.rows" and o.words % cfg.lanes:
            return f"the distilled classifier needs dim ({o.words}) a multiple of the lanes ({cfg.lanes})"
        if o.model == "qkv" and (o.n // 3) % cfg.lanes:
            return (f"{o.name}: the attention width ({o.n // 3}) is not a multiple of the lanes ({cfg.lanes}): "
                    "V cannot be transposed")
        if o.kind != "gemm":
            continue
        if (o.m // cfg.rows) * o.k > abuf_words:
            return f"{o.name}: its input ({o.m} tokens x {o.k}) does not fit the {cfg.abuf_kib} KiB activation buffer"
        if o.wmode == "kT" and o.k > wbuf_words:
            return f"{o.name}: a column tile of keys does not fit the {cfg.wbuf_kib} KiB weight buffer"
    return None


def int_vit_workload(iv, cfg: AccelConfig, *, fuse_gelu: bool = True) -> list[Op]:
    """:func:`vit_workload` of an integer ViT (:class:`~qsilicon.quant.models.int_vit.IntViT`), with
    every layer's int8 rows counted from its quantized weights."""
    mc = iv.model.cfg
    tokens = mc.patches + mc.prefix

    def n8(lin) -> int:
        return int((lin.bits == 8).sum())

    ops = vit_workload([(tokens, mc.dim, mc.heads_at(i), mc.hd, mc.mlp_at(i), (0.0,) * 4) for i in range(mc.depth)],
                       cfg, patches=mc.patches, patch_dim=mc.patch_dim, classes=mc.classes, distilled=mc.distilled,
                       fuse_gelu=fuse_gelu)
    layers = {"embed": iv.embed, "head": iv.head}
    for i, blk in enumerate(iv.blocks):
        for name in ("qkv", "proj", "fc1", "fc2"):
            layers[f"b{i}.{name}"] = blk[name]
    return [o._replace(n8=n8(layers[o.name])) if o.name in layers else o for o in ops]


def workload_macs(ops: list[Op]) -> int:
    """Useful multiply-accumulates (real tokens are not known here: padded rows count)."""
    return sum(o.m * o.k * o.n * o.count for o in ops if o.kind == "gemm")


# --------------------------------------------------------------------------- latency


@dataclass(frozen=True)
class GemmTerms:
    """What a GEMM descriptor moves and computes on a design (counts, in words and cycles)."""

    compute: int  # array cycles: tiles x max(K, rows + 1)
    read: int  # words through the read port: input, weights, parameters, feature map
    emit: int  # transposer cycles (a column of a token block per cycle, padding columns included)
    write: int  # words written
    startup: int  # words read before the first beat: the first token tile and column tile
    tail: int  # cycles after the last beat: drain and the last tile's columns
    beats: int  # operand beats into the array
    resident: bool


@dataclass(frozen=True)
class _Layout:
    """How a GEMM descriptor is cut on a design (what the compiler and the GEMM unit do)."""

    a: int  # memory words per array beat of activations (rows / lanes)
    b: int  # memory words per WBUF word (cols / lanes)
    P: int  # memory words of one column tile's parameters
    mt: int  # token tiles
    nt: int  # column tiles
    seg: tuple  # WBUF words of every column tile
    src: tuple  # memory words of every column tile's weights
    n_out: int  # output columns (padding columns of a precision group included)
    fmap: bool
    resident: bool
    beats: tuple = ()  # operand beats of every column tile's pass (K; ceil(K / 2) for dot2 int4 tiles)


@lru_cache(maxsize=65536)
def _layout(cfg: AccelConfig, o: Op) -> _Layout:
    L, R, C = cfg.lanes, cfg.rows, cfg.cols
    b = C // L
    dw = cfg.wbuf_words
    k, n, n8 = o.k, o.n, o.n8
    if o.wmode == "prepacked":
        n4 = n - n8
        nt8, nt4 = -(-n8 // C), -(-n4 // C)
        n_out = nt8 * C + n4 if n4 and n8 else n
        seg = (k,) * nt8 + (-(-k // 2),) * nt4
        beats = seg if cfg.packing == "dot2" else (k,) * (nt8 + nt4)
        return _Layout(R // L, b, math.ceil(PARAM_BITS_PER_COL * C / (8 * L)), o.m // R, nt8 + nt4, seg,
                       tuple(s * b for s in seg), n_out, 0 < n8 < n, max(seg) <= dw, beats)
    nt = -(-n // C)
    src = tuple(k * min(b, -(-min(C, n - j * C) // L)) for j in range(nt))
    return _Layout(R // L, b, math.ceil(PARAM_BITS_PER_COL * C / (8 * L)), o.m // R, nt, (k,) * nt, src, n, False,
                   o.wmode == "kT" or k <= dw, (k,) * nt)


def gemm_terms(cfg: AccelConfig, o: Op) -> GemmTerms:
    g = _layout(cfg, o)
    R, C, k = cfg.rows, cfg.cols, o.k
    reps = 1 if g.resident else g.mt
    x_words = g.mt * g.a * k
    f_words = -(-2 * g.n_out // cfg.lanes) if g.fmap else 0
    read = x_words + reps * (sum(g.src) + g.nt * g.P) + f_words
    width = 2 if o.wide else 1
    last = g.n_out - (g.nt - 1) * C
    return GemmTerms(compute=g.mt * sum(max(kb, R + 1) for kb in g.beats), read=read,
                     emit=g.n_out * g.a * g.mt * width, write=o.n * g.a * g.mt * width,
                     startup=x_words + f_words + g.P + g.src[0], tail=R + g.a * last * width,
                     beats=g.mt * sum(g.beats), resident=g.resident)


def gemm_replay(cfg: AccelConfig, o: Op, p: dict, slowdown: float = 1.0) -> float:
    """Cycles of one GEMM descriptor by replaying the GEMM unit's schedule tile by tile.

    The read port delivers in one run the input and the feature map, then every column tile's
    parameters and weights in order (one word per cycle, ``slowdown`` cycles a word on a slower
    memory); a tile's parameters wait for a free entry (the tile two before took its own), a
    resident tile's weights for room in the ring.  A token tile's beats start when the input is in
    and, for a column tile's first pass, when its first weights are; it cannot end before its last
    weight word.  Its sums drain into a transposer half that the tile two before has emptied; a
    half's columns go out one word per cycle.  ``p``: read latency ``lat``, drain-to-emission
    ``pipe``, the write tail ``tail``, the descriptor's fixed cycles ``one`` and, with a fused GELU,
    the element-wise unit's pipeline ``gelu``."""
    g = _layout(cfg, o)
    return _replay(g, cfg.rows, cfg.cols, cfg.lanes, o.k, cfg.wbuf_words, 2 if o.wide else 1,
                   p["lat"], p["pipe"], p["tail"] + p["one"] + _fused_gelu(p, o), slowdown)


def _fused_gelu(p: dict, o: Op) -> float:
    """The cycles a GELU fused into GEMM descriptor ``o`` adds (``p``: the model's GEMM constants)."""
    return p.get("gelu", 0.0) if o.gelu else 0.0


@lru_cache(maxsize=1 << 17)
def _replay(g: _Layout, R: int, C: int, L: int, k: int, dw: int, width: int, lat: float, pipe: float, fixed: float,
            slowdown: float, jump: bool = True) -> float:
    """:func:`gemm_replay` on what it depends on (designs that differ only in what does not change
    the schedule, e.g. the clock, or none and dsp2 packing, share the result); ``jump`` False replays every
    token tile (the reference the shortcut is tested against)."""
    f_words = -(-2 * g.n_out // L) if g.fmap else 0
    x_end = lat + (g.mt * g.a * k + f_words) * slowdown
    q = max(1, dw // max(g.seg))
    t_port = x_end
    starts, ends, par_taken, freed = [], [], [], []
    beat_end = drain_ok = 0.0
    emit_end = [0.0, 0.0]
    emit_last = 0.0
    t = 0
    for j in range(g.nt):
        emit = g.a * min(C, g.n_out - j * C) * width
        kb = g.beats[j]  # the tile's beats (one per reduction step, or per two on a dot2 int4 tile)
        mm = 0
        while mm < g.mt:
            first = mm == 0 or not g.resident
            if jump and not first and mm + 4 < g.mt and beat_end >= x_end:
                # A resident tile's later passes follow a max-plus recurrence without constants
                # (beat_end >= x_end from here on): once two passes shift every state variable by the
                # same amount, every later pair of passes does too.  Jump over whole pairs.
                state = (beat_end, drain_ok, emit_end[t % 2], emit_end[1 - t % 2], emit_last)
                for _ in range(2):
                    start = beat_end
                    end = max(start + kb, drain_ok)
                    d_start = max(end, emit_end[t % 2])
                    drain_ok = d_start + R + 1
                    beat_end = end
                    emit_last = max(d_start + R + pipe, emit_last) + emit
                    emit_end[t % 2] = emit_last
                    t += 1
                mm += 2
                after = (beat_end, drain_ok, emit_end[t % 2], emit_end[1 - t % 2], emit_last)
                shift = after[0] - state[0]
                if all(abs(b - a - shift) < 1e-9 for a, b in zip(state, after, strict=True)):
                    pairs = (g.mt - 1 - mm) // 2
                    if pairs > 0:
                        beat_end += pairs * shift
                        drain_ok += pairs * shift
                        emit_end[0] += pairs * shift
                        emit_end[1] += pairs * shift
                        emit_last += pairs * shift
                        t += 2 * pairs
                        mm += 2 * pairs
                continue
            if first:
                i = len(starts)
                st = t_port
                if i >= 2:
                    st = max(st, par_taken[i - 2])
                if g.resident and i >= q:
                    st = max(st, freed[i - q])
                elif not g.resident and i >= 1:  # streamed: the ring holds `dw` words ahead of the reader
                    st = max(st, beat_end - dw * g.b * slowdown)
                starts.append(st)
                t_port = st + (g.P + g.src[j]) * slowdown
                ends.append(t_port + lat)
            start = max(beat_end, x_end, (starts[-1] + (g.P + g.b) * slowdown + lat) if first else 0.0)
            end = max(start + kb, drain_ok, ends[-1] + 1 if first else 0.0)
            d_start = max(end, emit_end[t % 2])
            drain_ok = d_start + R + 1
            beat_end = end
            emit_last = max(d_start + R + pipe, emit_last) + emit
            emit_end[t % 2] = emit_last
            if mm == g.mt - 1 or not g.resident:
                par_taken.append(start)
                freed.append(end)
            t += 1
            mm += 1
    return emit_last + fixed


def op_terms(cfg: AccelConfig, o: Op) -> dict[str, float]:
    """The model's features of one vector descriptor (the fit's ``x``): its cycles from decode to
    done, as the accelerator's cycle log counts them (the fetch and the log write are the run's,
    :func:`control_cycles`)."""
    if o.kind == "gemm":
        raise ValueError("GEMM descriptors are replayed (gemm_replay), not a linear model")
    if o.kind in ("layernorm", "softmax"):
        return {"beats": o.blocks * o.k, "blocks": o.blocks, "one": 1.0}
    return {"words": o.words, "one": 1.0}


def control_cycles(cfg: AccelConfig, ops: list[Op], model: dict | None = None, slowdown: float = 1.0) -> float:
    """The controller's cycles around the descriptors: start to the first fetch and the end to
    the interrupt (``one``), and per descriptor its 128-byte fetch (``fetch`` a word, one word of
    ``lanes`` bytes per cycle, ``slowdown`` on a slower memory) and the cycle-log write (``desc``)."""
    run = (model or _model())["run"]
    n = sum(o.count for o in ops) + 1  # and the END descriptor
    return run["one"] + n * (run["desc"] + run["fetch"] * slowdown * DESC_BYTES / cfg.lanes)


@dataclass(frozen=True)
class Prediction:
    """Predicted time of a workload on a design: total cycles (and per descriptor kind), FPS,
    memory traffic and the GEMMs bound by memory rather than the array."""

    cycles: int
    fps: float
    dram_bytes: int
    memory_bound_ops: int
    per_op: tuple = ()
    shares: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"cycles": self.cycles, "fps": self.fps, "dram_bytes": self.dram_bytes,
                "memory_bound_ops": self.memory_bound_ops, "shares": self.shares,
                "per_op": [{"op": n, "kind": k, "cycles": c, "bound": b} for n, k, c, b in self.per_op]}


@lru_cache(maxsize=1)
def _model() -> dict:
    return json.loads(MODEL.read_text())


def coef_kind(cfg: AccelConfig, o: Op) -> str:
    """The latency model's coefficient set of a descriptor: its kind, or ``layernorm_rb`` /
    ``softmax_rb`` for rows that the design's row buffer holds (read once, as the compiler emits
    them)."""
    if o.kind in ("layernorm", "softmax") and 0 < o.k <= cfg.rowbuf:
        return o.kind + "_rb"
    return o.kind


#: Buffered row operations (a row unit of two stages): memory words a beat of pass 1, and through
#: the read port a beat of a token block in all (LayerNorm: int16 rows, two words a beat, and a
#: word of gamma and beta in pass 3; Shiftmax: int8 rows).
RB_WORDS = {"layernorm_rb": (2, 3), "softmax_rb": (1, 1)}


def rb_first(kind: str, o: Op) -> float:
    """Pass 1 of a buffered descriptor's first token block (no earlier block to hide it behind):
    the part of its cycles the model takes from the read port, not from the fit."""
    return RB_WORDS[kind][0] * o.k if kind in RB_WORDS else 0.0


def op_cycles(cfg: AccelConfig, o: Op, model: dict | None = None, slowdown: float = 1.0) -> float:
    """Cycles of one descriptor (of one, when ``o.count`` > 1)."""
    model = model or _model()
    if o.kind == "gemm":
        return gemm_replay(cfg, o, model["gemm"], slowdown)
    kind = coef_kind(cfg, o)
    return _vector_cycles(_coefficients(model)[1][kind], o, RB_WORDS.get(kind), slowdown)


def _coefficients(model: dict) -> tuple[tuple, dict]:
    """The GEMM replay's parameters (lat, pipe, tail, one; a fused GELU's ``gelu`` is added apart) and
    every vector kind's (per beat or word, per block, fixed), as hashable tuples."""
    g = model["gemm"]
    vec = {kind: (c.get("beats", c.get("words", 0.0)), c.get("blocks", 0.0), c.get("one", 0.0))
           for kind, c in model.items() if kind not in ("gemm", "run")}
    return (g["lat"], g["pipe"], g["tail"], g["one"]), vec


def _vector_cycles(coef: tuple, o: Op, rb: tuple | None = None, slowdown: float = 1.0) -> float:
    """One vector descriptor's cycles: the model's sum over :func:`op_terms`' features.  Buffered
    rows (``rb``: :data:`RB_WORDS`) go through two stages: pass 1 of the first token block, then a
    block every ``max(stage B, read port)`` cycles (stage B: the fitted ``a * k + b``, the divider
    and passes 2 and 3 from the buffer; the port: a word a cycle, ``slowdown`` cycles on a slower
    memory), the last block's stage B."""
    a, b, one = coef
    if rb is not None:
        stage_b = a * o.k + b
        return one + rb[0] * o.k * slowdown + (o.blocks - 1) * max(stage_b, rb[1] * o.k * slowdown) + stage_b
    return ((a * o.blocks * o.k + b * o.blocks) if o.kind in ("layernorm", "softmax") else a * o.words) + one


def predict(cfg: AccelConfig, ops: list[Op], dram_gbps: float, *, detail: bool = False,
            model: dict | None = None) -> Prediction:
    """Cycles of ``ops`` on ``cfg`` with external memory of ``dram_gbps`` GB/s (0: no limit)."""
    model = model or _model()
    bytes_per_cycle = dram_gbps * 1e9 / (cfg.clock_mhz * 1e6) if dram_gbps > 0 else math.inf
    slowdown = max(1.0, cfg.lanes / bytes_per_cycle)
    total, traffic, mem_bound = 0.0, 0, 0
    per, shares = [], {}
    shape = (cfg.rows, cfg.cols, cfg.lanes, cfg.wbuf_kib, cfg.packing)
    gp, vec = _coefficients(model)
    for o in ops:
        kind = o.kind
        if kind == "gemm":
            c, words, bound = _gemm_predict(shape, o[3:9], gp, slowdown)  # (m, k, n, n8, wmode, wide)
            c = (c + _fused_gelu(model["gemm"], o)) * o.count
            traffic += words * o.count
            if bound != "compute":
                mem_bound += o.count
        else:
            bound = "compute"
            ck = coef_kind(cfg, o)
            c = _vector_cycles(vec[ck], o, RB_WORDS.get(ck), slowdown) * o.count
        total += c
        shares[kind] = shares.get(kind, 0.0) + c
        if detail:
            per.append((o.name, kind, round(c), bound))
    traffic *= cfg.lanes
    control = control_cycles(cfg, ops, model, slowdown)
    total += control
    shares["control"] = control
    cycles = round(total)
    return Prediction(cycles, cfg.clock_mhz * 1e6 / cycles, round(traffic), mem_bound, tuple(per),
                      {k: round(v / total, 4) for k, v in shares.items()})


@lru_cache(maxsize=1 << 17)
def _gemm_predict(shape: tuple, gemm: tuple, gp: tuple, slowdown: float) -> tuple[float, int, str]:
    """One GEMM descriptor ``gemm`` (m, k, n, n8, wmode, wide) on a design ``shape`` (rows, cols,
    lanes, wbuf_kib, packing: all its schedule depends on): its cycles, the words it moves and what
    bounds it.  Cached: a search meets the same pairs again and again across subnets, blocks and
    clocks."""
    cfg = AccelConfig(rows=shape[0], cols=shape[1], lanes=shape[2], wbuf_kib=shape[3], packing=shape[4])
    o = Op("", "gemm", "", *gemm)
    cycles = gemm_replay(cfg, o, dict(zip(("lat", "pipe", "tail", "one"), gp, strict=True)), slowdown)
    t = gemm_terms(cfg, o)
    bound = "compute"
    if t.read * slowdown > t.compute or t.emit > t.compute:
        bound = "memory" if t.read * slowdown >= t.emit else "output"
    return cycles, t.read + t.write, bound


def gemm_busy_share(cfg: AccelConfig, ops: list[Op], dram_gbps: float = 0.0) -> float:
    """Share of the predicted cycles in which the array takes an operand beat."""
    p = predict(cfg, ops, dram_gbps)
    return sum(gemm_terms(cfg, o).beats * o.count for o in ops if o.kind == "gemm") / p.cycles


__all__ += ["gemm_busy_share"]


# --------------------------------------------------------------------------- resources


@lru_cache(maxsize=1)
def _units() -> dict:
    return json.loads(UNITS.read_text())


@lru_cache(maxsize=1)
def _system() -> dict:
    return json.loads(SYSTEM_RESOURCES.read_text())["model"]


@lru_cache(maxsize=1)
def clock_bound_mhz() -> float:
    """The clock every generated design defends on the ZCU102's UltraScale+ (speed grade -2) by its
    logic depth (:mod:`qsilicon.hw.timing`): the lowest bound over the whole tops synthesized for
    the resource model (``bench/calibrate_system.py``).  Their critical paths are the element-wise
    unit's GELU product and the GEMM unit's descriptor decode, whose depth varies with the design's
    fields (not monotonically with the array); a point is not synthesized itself, so the bound is
    measured on those tops only (``qsilicon synth design`` measures one).  A search point's clock
    may not exceed it."""
    bounds = [p["clock_bound_mhz"] for p in json.loads(SYSTEM_RESOURCES.read_text())["points"]
              if "clock_bound_mhz" in p]
    if not bounds:
        raise ValueError(f"{SYSTEM_RESOURCES} has no clock bounds: run python bench/calibrate_system.py")
    return min(bounds)


def memories(cfg: AccelConfig) -> dict[str, tuple[int, int, int]]:
    """The design's block-RAM candidates: ``name: (count, width, depth)``.  The activation buffer and
    the weight ring are written a memory word (``lanes`` bytes) at a time, so Yosys maps each word
    lane as a memory of its own (``rows / lanes`` and ``cols / lanes`` of them); a ``dot2`` design's
    activation buffer is two banks of half the depth; a row buffer (``rowbuf``) is one memory of
    ``lanes`` int16 values a word and two banks of ``rowbuf`` words (the row unit's two stages)."""
    L, R, C = cfg.lanes, cfg.rows, cfg.cols
    banks = 2 if cfg.packing == "dot2" else 1
    mems = {"abuf": (banks * R // L, 8 * L, cfg.abuf_words // banks),
            "wbuf": (C // L, 8 * L, cfg.wbuf_words), "fmap": (1, 8 * L, FMAP_ENTRIES * 2 // L)}
    if cfg.rowbuf:
        mems["rowbuf"] = (1, 16 * L, 2 * cfg.rowbuf)
    return mems


def system_features(cfg: AccelConfig) -> dict[str, float]:
    """What the LUTs and FFs around the engine and the units scale with."""
    L, R, C = cfg.lanes, cfg.rows, cfg.cols
    P = math.ceil(PARAM_BITS_PER_COL * C / (8 * L))
    return {"one": 1.0, "word_bits": 8 * L, "par_bits": 2 * P * 8 * L, "transpose": 16 * C * L,
            "beat_bits": 8 * ((2 if cfg.packing == "dot2" else 1) * R + C)}


def fixed_resources(cfg: AccelConfig) -> dict:
    """The parts of :func:`resources` that are not fitted to whole-system synthesis: the GEMM
    engine's model, the units as synthesized, the memories' block RAMs (and LUTRAM LUTs)."""
    e = res.estimate(cfg.gemm)
    u = _units()["xcup"]
    # the row unit with a buffer: its logic as synthesized (at 1024 elements; the depth changes only an
    # address counter), its block RAMs by the memory rule below
    row = u[f"rowunit_rb{cfg.lanes}" if cfg.rowbuf else f"rowunit{cfg.lanes}"]
    vec = u[f"vector{cfg.lanes}"]
    bram, lutram = 0.0, 0
    for count, width, depth in memories(cfg).values():
        b = res.buffer_resources(width, depth)
        bram += count * b.bram36_equivalent
        lutram += count * b.lutram
    # a RAM64M8 / RAM32M16 primitive is the 8 LUTs of a slice; the whole tops synthesize exactly the
    # parts' DSP48E2 (every synthesized design, data/vit_system_resources.json)
    return {"lut": e.lut + row["lut"] + vec["lut"] + 8 * lutram, "ff": e.ff + row["ff"] + vec["ff"],
            "dsp": e.dsp + row["dsp"] + vec["dsp"], "bram36": bram}


@lru_cache(maxsize=4096)
def resources(cfg: AccelConfig) -> dict:
    """LUT, FF, DSP and BRAM36-equivalents of the whole design on Zynq UltraScale+."""
    r = fixed_resources(cfg)
    sysm = _system()
    f = system_features(cfg)
    lut = r["lut"] + sum(sysm["lut"].get(k, 0.0) * v for k, v in f.items())
    ff = r["ff"] + sum(sysm["ff"].get(k, 0.0) * v for k, v in f.items())
    return {"lut": round(lut), "ff": round(ff), "dsp": r["dsp"], "bram36": r["bram36"]}


def utilization(cfg: AccelConfig, board) -> dict:
    """Share of the board's LUT, FF, DSP and BRAM36 each resource takes."""
    r = resources(cfg)
    return {"lut": r["lut"] / board.luts, "ff": r["ff"] / board.ffs, "dsp": r["dsp"] / board.dsps,
            "bram36": r["bram36"] / board.bram36 if board.bram36 else math.inf}

"""The searched accelerator: a model-adaptive ViT accelerator for one board (Quasar-ViT style).

A design is a :class:`AccelConfig`: the GEMM engine's array (``rows`` tokens x ``cols`` output
channels, row-wise mixed int4/int8 weights, ``packing`` of the multipliers), the row unit and
element-wise unit (``lanes``), a double-buffered weight buffer and an activation buffer (KiB),
and the clock.  A model is a list of :class:`Op` (:func:`vit_workload`).  Everything here is pure
Python so that the search evaluates thousands of designs per second.

Latency, per operation (``op_cycles``):

* GEMM compute: :func:`qsilicon.search.latency.gemm_cycles`, which equals the GEMM engine's RTL
  cycle count (``tests/search/test_latency.py``, 24 shapes x configurations);
* weight traffic: a layer's weights (int8 rows 8 bits, int4 rows 4 bits) and requantization
  parameters stream from DRAM at the board's bandwidth into one half of the weight buffer while
  the array works on the other half.  When one column tile (``cols x K`` bytes) fits in a half,
  the weights are read once per layer; otherwise they are re-read for every token tile.  The
  layer takes ``max(compute, memory)`` plus the first tile's load, which nothing overlaps;
* activations live in the activation buffer; a layer whose input and output do not both fit
  streams them through DRAM too;
* LayerNorm, Shiftmax, GELU and residual adds: the block accelerator's fitted cycle model
  (:mod:`qsilicon.search.vit_latency`, checked against its RTL within 3% per block);
* a per-operation sequencer cost (descriptor fetch), from the same fit.

Resources (``resources``): the GEMM engine's Yosys-calibrated model
(:mod:`qsilicon.search.resources`), the buffers' block RAMs (``buffer_resources``), and the row
unit and element-wise unit as synthesized by Yosys for xcup (``data/vit_units.json``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from qsilicon.hw.config import AccelConfig

from . import resources as res
from .latency import PARAM_BITS_PER_COL, gemm_cycles
from .vit_latency import load_model

__all__ = ["AccelConfig", "Op", "Prediction", "block_shapes", "predict", "resources", "vit_workload"]

UNITS = Path(__file__).resolve().parent / "data" / "vit_units.json"


@dataclass(frozen=True)
class Op:
    """One operation of a workload.  ``kind`` is ``gemm`` (weights from DRAM: ``n8`` int8 rows,
    the rest int4), ``matmul`` (two on-chip int8 operands: q k^T, attention x V) or one of the
    block accelerator's vector kinds with their model features."""

    name: str
    kind: str
    m: int = 0
    k: int = 0
    n: int = 0
    n8: int = 0
    features: tuple = ()
    count: int = 1  # identical operations (one per attention head)


def block_shapes(subnet, space) -> list[tuple[int, int, int, int, int, tuple]]:
    """``(tokens, dim, heads, head_dim, mlp, ratio8 of qkv/proj/fc1/fc2)`` per block of a
    supernet subnet."""
    tokens = (space.image // space.patch) ** 2 + 1
    return [(tokens, subnet.dim, subnet.heads[i], space.head_dim, subnet.mlp[i], tuple(subnet.ratio8[4 * i:4 * i + 4]))
            for i in range(subnet.depth)]


def _n8(n: int, r8: float) -> int:
    return int(round(n * r8))


def vit_workload(blocks, *, patches: int = 0, patch_dim: int = 0, classes: int = 0, lanes: int = 8) -> list[Op]:
    """The operations of a ViT: the patch embedding (``patches x patch_dim -> dim``, int8), the
    blocks (``block_shapes``), the classifier (int8).  ``lanes`` sets the vector ops' tiling."""
    ops: list[Op] = []
    if not blocks:
        raise ValueError("a workload needs at least one block")
    dim = blocks[0][1]
    if patches:
        ops.append(Op("embed", "gemm", patches, patch_dim, dim, dim))
    for b, (t, d, h, hd, mlp, r8) in enumerate(blocks):
        if len(r8) != 4 or any(not 0 <= r <= 1 for r in r8):
            raise ValueError(f"block {b}: ratio8 needs 4 shares in [0, 1] (qkv, proj, fc1, fc2), not {r8!r}")
        mt = math.ceil(t / lanes)
        e = h * hd
        p = f"b{b}."
        ops.append(Op(p + "ln1", "layernorm", features=(mt * d, mt, 1.0)))
        ops.append(Op(p + "qkv", "gemm", t, d, 3 * e, _n8(3 * e, r8[0])))
        ops.append(Op(f"{p}qk", "matmul", t, hd, t, t, count=h))
        ops.append(Op(f"{p}softmax", "softmax", features=(mt * t, mt, 1.0), count=h))
        ops.append(Op(f"{p}av", "matmul", t, t, hd, hd, count=h))
        ops += [Op(p + "proj", "gemm", t, e, d, _n8(d, r8[1])), Op(p + "add1", "add", features=(3 * mt * d, 1.0)),
                Op(p + "ln2", "layernorm", features=(mt * d, mt, 1.0)),
                Op(p + "fc1", "gemm", t, d, mlp, _n8(mlp, r8[2])),
                Op(p + "gelu", "gelu", features=(mt * mlp, 1.0)),
                Op(p + "fc2", "gemm", t, mlp, d, _n8(d, r8[3])), Op(p + "add2", "add", features=(3 * mt * d, 1.0))]
    if classes:
        ops.append(Op("head", "gemm", 1, dim, classes, classes))
    return ops


def subnet_workload(subnet, space, lanes: int = 8) -> list[Op]:
    """:func:`vit_workload` of a supernet subnet on Fashion-MNIST-sized images."""
    return vit_workload(block_shapes(subnet, space), patches=(space.image // space.patch) ** 2,
                        patch_dim=space.patch ** 2, classes=space.classes, lanes=lanes)


def workload_macs(ops: list[Op]) -> int:
    return sum(o.m * o.k * o.n for o in ops if o.kind in ("gemm", "matmul"))


# --------------------------------------------------------------------------- latency


@dataclass(frozen=True)
class Prediction:
    """Predicted time of a workload on a design: total cycles (and per op), FPS, traffic, bound."""

    cycles: int
    fps: float
    dram_bytes: int
    memory_bound_ops: int
    per_op: tuple = ()

    def to_dict(self) -> dict:
        return {"cycles": self.cycles, "fps": self.fps, "dram_bytes": self.dram_bytes,
                "memory_bound_ops": self.memory_bound_ops,
                "per_op": [{"op": n, "kind": k, "cycles": c, "bound": b} for n, k, c, b in self.per_op]}


@lru_cache(maxsize=1)
def _vec_model() -> dict:
    return load_model()


@lru_cache(maxsize=65536)
def _vec_cycles(kind: str, features: tuple) -> int:
    return round(sum(a * f for a, f in zip(_vec_model()[kind], features, strict=True)))


def predict(cfg: AccelConfig, ops: list[Op], dram_gbps: float, *, detail: bool = False) -> Prediction:
    """Cycles of ``ops`` on ``cfg`` with external memory of ``dram_gbps`` GB/s."""
    vec = _vec_model()
    rows, cols, gemm = cfg.rows, cfg.cols, cfg.gemm
    bytes_per_cycle = dram_gbps * 1e9 / (cfg.clock_mhz * 1e6) if dram_gbps > 0 else math.inf
    half_w = cfg.wbuf_kib * 512  # bytes in one half of the weight buffer
    abuf = cfg.abuf_kib * 1024
    param_bytes = PARAM_BITS_PER_COL / 8
    total, traffic, mem_bound = 0, 0, 0
    per = []
    seq = round(vec["block"][0])
    for o in ops:
        bound = "compute"
        kind = o.kind
        if kind == "gemm" or kind == "matmul":
            c = gemm_cycles(gemm, o.m, o.k, o.n, o.n8)
            if kind == "gemm":
                wbytes = o.k * (o.n8 + (o.n - o.n8) / 2) + o.n * param_bytes
                reread = 1 if cols * o.k <= half_w else -(-o.m // rows)
                act = 0 if o.m * (o.k + o.n) <= abuf else o.m * (o.k + o.n)
                b = wbytes * reread + act
                mem = b / bytes_per_cycle
                first = min(cols, o.n) * o.k / bytes_per_cycle
                if mem > c:
                    bound, mem_bound = "memory", mem_bound + 1
                c = math.ceil(max(c + first, mem))  # the first tile waits for its weights
                traffic += b
        else:
            c = _vec_cycles(kind, o.features)
        c = (c + seq) * o.count
        total += c
        if detail:
            per.append((o.name if o.count == 1 else f"{o.name} (x{o.count})", kind, c, bound))
    total += round(vec["block"][1])
    return Prediction(total, cfg.clock_mhz * 1e6 / total, round(traffic), mem_bound, tuple(per))


# --------------------------------------------------------------------------- resources


@lru_cache(maxsize=1)
def _units() -> dict:
    return json.loads(UNITS.read_text())


@lru_cache(maxsize=4096)
def resources(cfg: AccelConfig) -> dict:
    """LUT, FF, DSP and BRAM36-equivalents of the design on Zynq UltraScale+."""
    e = res.estimate(cfg.gemm)
    u = _units()["xcup"]
    lut = e.lut + u[f"rowunit{cfg.lanes}"]["lut"] + u[f"vector{cfg.lanes}"]["lut"]
    ff = e.ff + u[f"rowunit{cfg.lanes}"]["ff"] + u[f"vector{cfg.lanes}"]["ff"]
    dsp = e.dsp + u[f"rowunit{cfg.lanes}"]["dsp"] + u[f"vector{cfg.lanes}"]["dsp"]
    wbuf = res.buffer_resources(cfg.cols * 8, max(2, cfg.wbuf_kib * 1024 // cfg.cols))
    abuf = res.buffer_resources(cfg.rows * 8, max(2, cfg.abuf_kib * 1024 // cfg.rows))
    bram = wbuf.bram36_equivalent + abuf.bram36_equivalent
    lut += 8 * (wbuf.lutram + abuf.lutram)  # a RAM64M8 / RAM32M16 primitive is the 8 LUTs of a slice
    return {"lut": lut, "ff": ff, "dsp": dsp, "bram36": bram}


def utilization(cfg: AccelConfig, board) -> dict:
    """Share of the board's LUT, FF, DSP and BRAM36 each resource takes."""
    r = resources(cfg)
    return {"lut": r["lut"] / board.luts, "ff": r["ff"] / board.ffs, "dsp": r["dsp"] / board.dsps,
            "bram36": r["bram36"] / board.bram36 if board.bram36 else math.inf}


__all__ += ["subnet_workload", "utilization", "workload_macs"]

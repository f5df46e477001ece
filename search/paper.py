"""Paper comparison, on paper: DeiT-shaped ViTs with a Quasar-ViT-like precision mix on the ZCU102.

Quasar-ViT (Li et al., 2024, arXiv:2407.18175) reports 101.5, 159.6 and 251.6 FPS on the
AMD/Xilinx ZCU102 for its searched models of 80.4%, 78.6% and 74.9% ImageNet top-1 accuracy,
which sit at DeiT-Base, DeiT-Small and DeiT-Tiny scale.  :func:`compare` searches the hardware
space exhaustively for each DeiT shape (224x224 images, 16x16 patches: 197 tokens; head_dim 64;
MLP 4x; 12 blocks) with every linear layer's rows ``ratio8`` int8 and the rest int4, under the
board's resources times ``util_cap``, and reports the best predicted FPS.  These are predictions
of the latency model (``search/accel.py``), not measurements, and the searched Quasar-ViT models
are not exactly DeiT-shaped.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from .accel import (
    AccelConfig,
    clock_bound_mhz,
    fits,
    gemm_busy_share,
    predict,
    utilization,
    vit_workload,
    workload_macs,
)

__all__ = ["DEIT", "PAPER_FPS", "DeitShape", "best_design", "compare"]

#: Quasar-ViT's published FPS on the ZCU102 (abstract of arXiv:2407.18175), by model scale.
PAPER_FPS = {"deit-tiny": 251.6, "deit-small": 159.6, "deit-base": 101.5}
PAPER_TOP1 = {"deit-tiny": 74.9, "deit-small": 78.6, "deit-base": 80.4}


@dataclass(frozen=True)
class DeitShape:
    dim: int
    heads: int
    depth: int = 12
    head_dim: int = 64
    tokens: int = 197
    patches: int = 196
    patch_dim: int = 3 * 16 * 16
    classes: int = 1000

    def workload(self, cfg: AccelConfig, ratio8: float = 0.5, fuse_gelu: bool = True):
        if not 0 <= ratio8 <= 1:
            raise ValueError(f"ratio8 must be in [0, 1], not {ratio8!r}")
        blocks = [(self.tokens, self.dim, self.heads, self.head_dim, 4 * self.dim, (ratio8,) * 4)] * self.depth
        return vit_workload(blocks, cfg, patches=self.patches, patch_dim=self.patch_dim, classes=self.classes,
                            fuse_gelu=fuse_gelu)


DEIT = {"deit-tiny": DeitShape(192, 3), "deit-small": DeitShape(384, 6), "deit-base": DeitShape(768, 12)}

#: The hardware grid of the comparison (a superset of the default search space's).
GRID = {"rows": (8, 16, 32, 64), "cols": (8, 16, 32, 64), "packing": ("none", "dsp2", "dot2"), "lanes": (8, 16),
        "wbuf_kib": (32, 64, 128, 256, 512), "abuf_kib": (256, 512, 1024), "rowbuf": (0, 1024)}


def best_design(shape: DeitShape, board, *, clock_mhz: float, util_cap: float, ratio8: float,
                packings: tuple = GRID["packing"], rowbufs: tuple = GRID["rowbuf"], fuse_gelu: bool = True) -> dict:
    """The highest predicted FPS over :data:`GRID` (its packings limited to ``packings``, its row
    buffers to ``rowbufs``; ``fuse_gelu`` False: GELU as a descriptor of its own) within
    ``util_cap`` of every resource.  ``mac_util`` is the workload's MACs over the design's peak in
    the predicted cycles (one MAC per PE and cycle; two on ``dot2``, its int4 rows' peak)."""
    bound = clock_bound_mhz()
    if clock_mhz > bound:
        raise ValueError(f"clock {clock_mhz:g} MHz: the generated designs' logic depth defends {bound:g} MHz on "
                         "UltraScale+ -2 (qsilicon.hw.timing); give a clock up to it")
    best = None
    grid = {**GRID, "packing": tuple(p for p in GRID["packing"] if p in packings),
            "rowbuf": tuple(r for r in GRID["rowbuf"] if r in rowbufs)}
    for rows, cols, packing, lanes, wb, ab, rb in itertools.product(*grid.values()):
        if rows < lanes or cols < lanes:
            continue
        cfg = AccelConfig(rows, cols, packing, lanes, wb, ab, clock_mhz, rb)
        util = utilization(cfg, board)
        if max(util.values()) > util_cap:
            continue
        ops = shape.workload(cfg, ratio8, fuse_gelu)
        if fits(cfg, ops) is not None:
            continue
        p = predict(cfg, ops, board.dram_gbps)
        if best is None or p.fps > best["fps"]:
            macs = workload_macs(ops)
            peak = rows * cols * (2 if packing == "dot2" else 1) * p.cycles
            best = {"config": cfg.to_dict(), "fps": p.fps, "cycles": p.cycles, "util": util,
                    "memory_bound_ops": p.memory_bound_ops, "dram_bytes": p.dram_bytes,
                    "macs": macs, "mac_util": round(macs / peak, 4),
                    "gemm_share": round(gemm_busy_share(cfg, ops, board.dram_gbps), 4), "cycle_share": p.shares}
    if best is None:
        raise ValueError(f"no design of the grid fits {util_cap:.0%} of {board.name} and holds the model")
    return best


def compare(board, *, clock_mhz: float = 150.0, util_cap: float = 0.8, ratio8: float = 0.5,
            packings: tuple = GRID["packing"], rowbufs: tuple = GRID["rowbuf"], fuse_gelu: bool = True) -> list[dict]:
    rows = []
    for name, shape in DEIT.items():
        b = best_design(shape, board, clock_mhz=clock_mhz, util_cap=util_cap, ratio8=ratio8, packings=packings,
                        rowbufs=rowbufs, fuse_gelu=fuse_gelu)
        rows.append({"model": name, "predicted_fps": b["fps"], "quasar_vit_fps": PAPER_FPS[name],
                     "quasar_vit_top1": PAPER_TOP1[name], **b})
    return rows

"""Cycle counts of the ViT block accelerator's operations on Verilator, for the latency model.

    python bench/vit_block_cycles.py [--quick]

Builds integer ViTs of many shapes (untrained weights: the engine has no data-dependent timing),
runs block 0 of each on the RTL at 8 (and a few at 16) lanes and writes every operation's cycles
with its shape to ``search/data/vit_block_cycles.json`` (the calibration and validation data of
``qsilicon.search.latency.vit_op_cycles``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from qsilicon.hw.vit.program import build_block_program
from qsilicon.quant.models.int_vit import IntViT
from qsilicon.quant.models.vit import ViT, ViTConfig
from qsilicon.sim.vit import rtl_vit_block

ROOT = Path(__file__).resolve().parents[1]

# (image, patch, dim, heads, mlp, lanes): tokens = (image / patch)^2 + 1
SHAPES = [
    (28, 7, 64, 4, 128, 8), (28, 7, 32, 2, 64, 8), (28, 7, 48, 3, 72, 8), (28, 7, 64, 2, 96, 8),
    (28, 7, 32, 4, 32, 8), (28, 14, 48, 2, 48, 8), (32, 8, 64, 3, 128, 8), (24, 4, 32, 2, 64, 8),
    (28, 4, 48, 3, 96, 8), (20, 4, 64, 4, 64, 8), (28, 7, 64, 4, 128, 16), (28, 7, 32, 2, 64, 16),
    (24, 4, 48, 3, 96, 16),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="the first 4 shapes only")
    args = ap.parse_args()
    torch.set_num_threads(2)
    rows = []
    for image, patch, dim, heads, mlp, lanes in SHAPES[:4] if args.quick else SHAPES:
        torch.manual_seed(0)
        cfg = ViTConfig(image=image, patch=patch, dim=dim, depth=1, heads=heads, mlp=mlp, head_dim=16)
        model = ViT(cfg).eval()
        calib = torch.rand(64, 1, image, image)
        iv = IntViT(model, calib, "w8a8")
        t = iv.embed_tokens(calib[:1])[0]
        prog = build_block_program(iv, 0, t, lanes=lanes)
        res = rtl_vit_block(prog)
        assert res.ok, res.mismatches
        shape = {"tokens": t.shape[0], "dim": dim, "heads": heads, "head_dim": 16, "mlp": mlp, "lanes": lanes}
        for name, kind, cycles in res.op_cycles:
            rows.append({**shape, "op": name, "kind": kind, "cycles": cycles})
        rows.append({**shape, "op": "block", "kind": "block", "cycles": res.cycles})
        print(f"{shape}: {res.cycles} cycles", file=sys.stderr, flush=True)
    out = ROOT / "search" / "data" / "vit_block_cycles.json"
    out.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"wrote {len(rows)} rows to {out}")


if __name__ == "__main__":
    main()

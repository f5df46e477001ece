"""Synthesize GEMM-engine configurations with Yosys (``synth_xilinx -family xcup``) and store
their resource counts as the resource model's calibration data.

Usage: python bench/calibrate_resources.py [--out search/data/resource_calibration.json]
(about 15-20 minutes on 2 cores; results are cached, so a rerun of unchanged designs is quick).
The configurations are split into a training set (the model's coefficients are fitted on it)
and a held-out set (only used to measure the model's error).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from qsilicon.hw.blocks.buffer import Buffer
from qsilicon.hw.config import GemmConfig
from qsilicon.hw.gemm import GemmEngine
from qsilicon.hw.synth import synthesize

# (rows, cols, wbits, abits, packing, mixed)
TRAIN = [
    (2, 2, 8, 8, "none", False), (4, 4, 8, 8, "none", False), (8, 8, 8, 8, "none", False),
    (4, 8, 8, 8, "none", False), (2, 2, 4, 4, "none", False), (4, 4, 4, 4, "none", False),
    (8, 8, 4, 4, "none", False), (4, 4, 4, 8, "none", False), (8, 4, 8, 4, "none", False),
    (2, 2, 8, 8, "dsp2", False), (4, 4, 8, 8, "dsp2", False), (8, 8, 8, 8, "dsp2", False),
    (4, 8, 4, 8, "dsp2", False), (8, 4, 8, 8, "dsp2", True),
    (2, 2, 4, 4, "dsp4", False), (4, 4, 4, 4, "dsp4", False), (8, 8, 4, 4, "dsp4", False),
    (2, 2, 4, 8, "lut", False), (4, 4, 4, 8, "lut", False), (8, 8, 4, 4, "lut", False),
    (4, 4, 8, 8, "none", True), (2, 4, 8, 4, "dsp2", False),
    (2, 2, 8, 8, "dot2", True), (4, 4, 8, 8, "dot2", True), (8, 8, 8, 8, "dot2", True), (4, 8, 8, 8, "dot2", True),
]
HELD_OUT = [
    (6, 6, 8, 8, "none", False), (2, 8, 4, 8, "none", False), (6, 4, 8, 8, "dsp2", False),
    (2, 8, 8, 8, "dsp2", True), (6, 6, 4, 4, "dsp4", False), (2, 8, 4, 4, "dsp4", False),
    (6, 4, 4, 8, "lut", False), (4, 2, 4, 4, "lut", False), (3, 5, 8, 4, "none", False),
    (8, 2, 4, 8, "dsp2", False), (6, 4, 8, 8, "dot2", True), (2, 8, 8, 8, "dot2", True),
]


# (width, depth) of on-chip buffers: LUTRAM, BRAM18 and BRAM36 mappings, cascades.
BUFFERS = [
    (8, 16), (40, 16), (8, 32), (32, 64), (64, 64), (200, 64), (4, 128), (16, 128), (64, 128), (16, 256),
    (256, 256), (36, 512), (72, 512), (90, 512), (128, 512), (100, 700), (18, 1024), (54, 1024), (64, 1024),
    (9, 2048), (27, 2048), (32, 2048), (8, 4096), (64, 4096), (1, 65536), (16, 65536),
]
BUFFERS_HELD_OUT = [(48, 300), (12, 3000), (130, 100), (24, 48), (80, 2048), (7, 8192), (300, 1024), (20, 96)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).parents[1] / "search" / "data" / "resource_calibration.json"))
    args = ap.parse_args()
    rows = []
    for split, configs in (("train", TRAIN), ("held_out", HELD_OUT)):
        for r, c, w, a, packing, mixed in configs:
            cfg = GemmConfig(r, c, w, a, True, packing, mixed)
            t = time.perf_counter()
            res = synthesize(GemmEngine(cfg), "gemm_engine", "xcup")
            print(f"{split:<8} {cfg.tag:<34} {res.counts} ({time.perf_counter() - t:.0f} s)", flush=True)
            rows.append({"split": split, "config": cfg.to_dict(), "counts": res.counts, "tool": res.tool})
    buffers = []
    for split, configs in (("train", BUFFERS), ("held_out", BUFFERS_HELD_OUT)):
        for width, depth in configs:
            res = synthesize(Buffer(width, depth), "buffer", "xcup")
            ram = {k: v for k, v in res.cells.items() if "RAM" in k}
            print(f"{split:<8} buffer {width:>4} x {depth:<6} {ram}", flush=True)
            buffers.append({"split": split, "width": width, "depth": depth, "cells": ram, "tool": res.tool})
    doc = {"target": "xcup", "script": "synth_xilinx -family xcup -flatten", "component": "gemm_engine",
           "configs": rows, "buffers": buffers}
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

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
]
HELD_OUT = [
    (6, 6, 8, 8, "none", False), (2, 8, 4, 8, "none", False), (6, 4, 8, 8, "dsp2", False),
    (2, 8, 8, 8, "dsp2", True), (6, 6, 4, 4, "dsp4", False), (2, 8, 4, 4, "dsp4", False),
    (6, 4, 4, 8, "lut", False), (4, 2, 4, 4, "lut", False), (3, 5, 8, 4, "none", False),
    (8, 2, 4, 8, "dsp2", False),
]


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
    doc = {"target": "xcup", "script": "synth_xilinx -family xcup -flatten", "component": "gemm_engine",
           "configs": rows}
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

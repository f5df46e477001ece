"""Utilization of the GEMM engine on Verilator, streams never stalling.

Prints a table and writes JSON (default bench/results/gemm_utilization.json).
Utilization = M*N*K / (R*C*cycles), cycles from the first accepted input beat to the last
delivered output beat.  Usage: python bench/gemm_utilization.py [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from qsilicon.hw.config import GemmConfig
from qsilicon.quant import random_gemm_case, ref_gemm
from qsilicon.sim.gemm import rtl_gemm

SHAPES = [  # (M, K, N): 8x8 array
    (32, 64, 16),    # 8 tiles, K = 64: the target point
    (64, 64, 64),    # 64 tiles
    (64, 256, 64),
    (50, 77, 29),    # ragged: padding wastes PEs
    (64, 8, 64),     # K = rows: drain exactly hidden
    (64, 4, 64),     # K < rows: drain-bound
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "gemm_utilization.json"))
    args = ap.parse_args()
    cfg = GemmConfig(8, 8, 8, 8)
    rows = []
    print(f"{'M x K x N':<14} {'tiles':>5} {'cycles':>7} {'ideal':>7} {'util':>7} {'bit-exact':>9} {'wall s':>7}")
    for i, (m, k, n) in enumerate(SHAPES):
        case = random_gemm_case(m, k, n, wbits=8, abits=8, seed=500 + i)
        log = Path(tempfile.gettempdir()) / "qsilicon-bench-sim.log"
        rtl_gemm(case, cfg, sim="verilator", log_file=log)  # warm the build cache
        t = time.perf_counter()
        res = rtl_gemm(case, cfg, sim="verilator", log_file=log)
        wall = time.perf_counter() - t
        exact = bool(torch.equal(res.out, ref_gemm(case).out))
        tiles = -(-m // 8) * -(-n // 8)
        rows.append({"m": m, "k": k, "n": n, "tiles": tiles, "cycles": res.cycles, "ideal_cycles": res.ideal_cycles,
                     "utilization": round(res.utilization, 4), "bit_exact": exact, "wall_s": round(wall, 2)})
        print(f"{m}x{k}x{n:<8} {tiles:>5} {res.cycles:>7} {res.ideal_cycles:>7} {100 * res.utilization:>6.1f}% "
              f"{str(exact):>9} {wall:>7.1f}")
    doc = {"bench": "gemm_utilization", "array": cfg.to_dict(), "sim": "verilator", "python": platform.python_version(),
           "results": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

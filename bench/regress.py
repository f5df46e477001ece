"""Constrained-random regressions at scale: at least 10,000 cases per accelerator.

    python bench/regress.py [--cases 10000] [--jobs 2] [--seed 1] [--accel gemm mpgemm depth vit]

Runs ``qsilicon.sim.regress.regress`` for each accelerator (Verilator, ``--jobs`` simulations side
by side) and prints and writes (``bench/results/regress.json``) per accelerator: cases, failures,
functional coverage (bins hit / total, the bins missed), wall time and simulated cycles.  Any
failing case is kept under ``out/bench-regress/<accel>/failures`` for ``qsilicon verify ACCEL --case``.
Measured on this machine's 2 cores; the simulator builds are cached after the first run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "regress.json"


def main() -> None:
    from qsilicon.sim.regress import ACCELS, regress

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--accel", nargs="+", default=list(ACCELS), choices=list(ACCELS))
    args = ap.parse_args()
    doc = json.loads(OUT.read_text()) if OUT.exists() else {"rows": {}}
    doc.update({"machine": f"{platform.machine()}, {os.cpu_count()} cores", "sim": "verilator", "jobs": args.jobs})
    print(f"{'accel':<8} {'cases':>7} {'failing':>8} {'coverage':>12} {'wall':>8} {'cycles':>12}")
    for name in args.accel:
        out = ROOT / "out" / "bench-regress" / name
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.monotonic()
        rep = regress(name, args.cases, args.seed, jobs=args.jobs, out_dir=out,
                      on_build=lambda tag: print(f"  building {tag}", file=sys.stderr, flush=True))
        wall = time.monotonic() - t0
        cov = rep.coverage
        row = {"cases": rep.cases, "failures": rep.failures, "seed": rep.seed,
               "coverage": {"bins": cov["bins"], "total": cov["total"], "missed": cov["missed"],
                            "groups": {g: f"{c['hit']}/{c['total']}" for g, c in cov["groups"].items()}},
               "wall_s": round(wall, 1), "cycles": sum(c["cycles"] for c in rep.configs.values()),
               "configs": list(rep.configs), "failure_files": rep.failure_files}
        doc["rows"][name] = row
        print(f"{name:<8} {rep.cases:>7} {rep.failures:>8} {cov['bins']:>5}/{cov['total']:<6} {wall / 60:>6.1f} min "
              f"{row['cycles']:>12}", flush=True)
        OUT.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()

"""How fast the search's analytic models evaluate candidates, on one core.

A candidate is a random (subnet, accelerator design) of the default joint space on the ZCU102;
evaluating it builds the subnet's workload, predicts its latency (every GEMM, LayerNorm,
Shiftmax, GELU and add), estimates LUT/FF/DSP/BRAM and checks the board constraints
(:func:`qsilicon.search.joint.evaluate`).  Accuracy (a supernet forward pass, ~0.1-0.3 s per new
subnet on 2,000 images, cached) and Optuna's own bookkeeping are measured apart.

    python bench/search_speed.py [--candidates 20000]   ->  bench/results/search_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import tempfile
import time
from pathlib import Path

from qsilicon.boards import get_board
from qsilicon.search.joint import evaluate, load_space, sample_candidate

OUT = Path(__file__).resolve().parent / "results" / "search_speed.json"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--candidates", type=int, default=20000)
    ap.add_argument("--optuna-trials", type=int, default=200)
    args = ap.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    board, space = get_board("zcu102"), load_space()
    rng = random.Random(0)
    cands = [sample_candidate(space, rng) for _ in range(args.candidates)]
    evaluate(cands[0], space, board)  # load the model files once
    t = time.perf_counter()
    feasible = sum(evaluate(c, space, board)["feasible"] for c in cands)
    dt = time.perf_counter() - t
    rate = args.candidates / dt
    print(f"analytic models: {args.candidates} candidates in {dt:.2f} s on one core = {rate:,.0f} candidates/s "
          f"({feasible} feasible)")

    # Optuna's overhead per trial (NSGA-II sampler + SQLite storage), analytic objective only
    import optuna
    from optuna.samplers import NSGAIISampler

    from qsilicon.search.joint import CONSTRAINTS, _sqlite_wal, _suggest

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        storage = optuna.storages.RDBStorage(f"sqlite:///{tmp}/s.db")
        _sqlite_wal(storage.engine)
        study = optuna.create_study(storage=storage, directions=["maximize", "minimize"],
                                    sampler=NSGAIISampler(population_size=24, seed=0))

        def objective(trial):
            ev = evaluate(_suggest(trial, space), space, board)
            for key, v in zip(CONSTRAINTS, ev["violations"], strict=True):
                trial.set_constraint(key, v)
            return ev["fps"], ev["max_util"]

        t = time.perf_counter()
        study.optimize(objective, n_trials=args.optuna_trials)
        ot = (time.perf_counter() - t) / args.optuna_trials
    print(f"Optuna NSGA-II + SQLite (WAL): {1e3 * ot:.1f} ms per trial ({args.optuna_trials} trials)")
    doc = {"candidates": args.candidates, "seconds": dt, "candidates_per_second_per_core": rate,
           "target": 5000, "feasible": feasible, "optuna_ms_per_trial": 1e3 * ot,
           "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()}}
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()

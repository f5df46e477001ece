"""Fit and check of the ViT accelerator's latency model (:func:`qsilicon.search.accel.predict`)
against whole-model RTL runs.

``bench/vit_system_cycles.py`` runs integer ViTs of several shapes on generated designs
(Verilator) and records every descriptor's cycles (``data/vit_system_cycles.json``, each run
marked ``train`` or ``held_out``).  Each kind's coefficients are a least-squares fit (relative
errors) of its descriptors' cycles on :func:`~qsilicon.search.accel.op_terms` over the training
runs; the run overhead (start to the first fetch, the last descriptor to the interrupt) is the
mean remainder.  ``python -m qsilicon.search.vit_latency`` refits (rewriting
``data/vit_system_model.json``) and prints the errors per run, per kind of descriptor and per
descriptor on both splits.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from qsilicon.hw.config import AccelConfig

from .accel import MODEL, Op, op_cycles, op_terms, predict, vit_workload

__all__ = ["CYCLES", "errors", "fit", "load_runs", "run_workload"]

DATA = Path(__file__).resolve().parent / "data"
CYCLES = DATA / "vit_system_cycles.json"
KINDS = ("gemm", "layernorm", "softmax", "gelu", "add", "transpose")


def run_workload(row: dict) -> tuple[AccelConfig, list[Op]]:
    """The design and workload of a recorded run (a random ViT of ``row["model"]``, every layer
    with the int8 share ``row["ratio8"]``)."""
    image, patch, dim, depth, heads, mlp = row["model"]
    cfg = AccelConfig.from_tag(row["design"])
    tokens = (image // patch) ** 2 + 1
    r = row["ratio8"]
    blocks = [(tokens, dim, heads[i], 16, mlp[i], (r,) * 4) for i in range(depth)]
    return cfg, vit_workload(blocks, cfg, patches=tokens - 1, patch_dim=patch * patch, classes=10, embed_r8=r,
                             head_r8=r)


def load_runs(path: Path = CYCLES) -> list[dict]:
    """One entry per recorded run: design, split, workload, every descriptor's measured cycles
    (keyed by the workload's op name; per-head descriptors as a list) and the run's total."""
    runs: dict[tuple, dict] = {}
    for row in json.loads(Path(path).read_text()):
        key = (row["design"], json.dumps(row["model"]), row["ratio8"])
        run = runs.setdefault(key, {"row": row, "split": row["split"], "ops": {}, "total": None})
        if row["op"] == "total":
            run["total"] = row["cycles"]
        else:
            name = re.sub(r"^(b\d+\.(?:qk|softmax|av))\d+$", r"\1", row["op"])
            run["ops"].setdefault(name, []).append(row["cycles"])
    out = []
    for run in runs.values():
        cfg, ops = run_workload(run["row"])
        names = {o.name for o in ops}
        if set(run["ops"]) != names:
            raise ValueError(f"{run['row']['design']}: recorded descriptors {sorted(set(run['ops']) ^ names)} do not "
                             "match the workload")
        out.append({**run, "cfg": cfg, "workload": ops})
    return out


def _lstsq(x: list[list[float]], y: list[float]) -> list[float]:
    import numpy as np

    a, b = np.array(x, dtype=float), np.array(y, dtype=float)
    w = 1.0 / np.maximum(b, 1.0)  # relative errors: every descriptor counts by its share, not its size
    return np.linalg.lstsq(a * w[:, None], b * w, rcond=None)[0].tolist()


def fit(runs: list[dict]) -> dict:
    train = [r for r in runs if r["split"] == "train"]
    model: dict = {}
    for kind in KINDS:
        x, y, names = [], [], None
        for run in train:
            for o in run["workload"]:
                if o.kind != kind:
                    continue
                t = op_terms(run["cfg"], o)
                names = list(t)
                for c in run["ops"][o.name]:
                    x.append([t[k] for k in names])
                    y.append(c)
        coef = _lstsq(x, y)
        model[kind] = {k: round(v, 6) for k, v in zip(names, coef, strict=True)}
    rest = [run["total"] - sum(op_cycles(run["cfg"], o, model) * o.count for o in run["workload"]) for run in train]
    model["run"] = {"one": round(sum(rest) / len(rest), 3)}
    return model


def errors(runs: list[dict], model: dict) -> list[dict]:
    """Per run: total measured and predicted, and per kind of descriptor (summed over the run)."""
    out = []
    for run in runs:
        cfg, ops = run["cfg"], run["workload"]
        p = predict(cfg, ops, 0.0, model=model)
        kinds = {}
        for o in ops:
            meas = sum(run["ops"][o.name])
            pred = op_cycles(cfg, o, model) * o.count
            m_, p_ = kinds.get(o.kind, (0, 0.0))
            kinds[o.kind] = (m_ + meas, p_ + pred)
        out.append({"design": cfg.tag, "model": run["row"]["model"], "ratio8": run["row"]["ratio8"],
                    "split": run["split"], "measured": run["total"], "predicted": p.cycles,
                    "error": abs(p.cycles - run["total"]) / run["total"],
                    "kinds": {k: {"measured": m_, "predicted": round(p_), "error": abs(p_ - m_) / m_}
                              for k, (m_, p_) in kinds.items()}})
    return out


def main() -> None:
    runs = load_runs()
    model = fit(runs)
    MODEL.write_text(json.dumps(model, indent=1) + "\n")
    for split in ("train", "held_out"):
        errs = [e for e in errors(runs, model) if e["split"] == split]
        if not errs:
            continue
        print(f"{split}: {len(errs)} runs, max total error {100 * max(e['error'] for e in errs):.2f}%")
        for e in errs:
            worst = max(e["kinds"].items(), key=lambda kv: kv[1]["error"])
            print(f"  {e['design']:<36} {e['measured']:>8} measured {e['predicted']:>8} predicted "
                  f"{100 * e['error']:5.2f}%  worst kind {worst[0]} {100 * worst[1]['error']:.2f}%")
    print(f"wrote {MODEL}")


if __name__ == "__main__":
    main()

"""Fit and check of the ViT accelerator's latency model (:func:`qsilicon.search.accel.predict`)
against whole-model RTL runs.

``bench/vit_system_cycles.py`` runs integer ViTs of several shapes on generated designs
(Verilator) and records every descriptor's cycles (``data/vit_system_cycles.json``, each run
marked ``train`` or ``held_out``).  GEMM descriptors are replayed tile by tile
(:func:`~qsilicon.search.accel.gemm_replay`), its timing constants fitted by Nelder-Mead (a fused
GELU's cycles measured: fc1 with and without it on the same training pairs);
every vector kind's coefficients are a least-squares fit (relative errors) of its descriptors'
cycles on :func:`~qsilicon.search.accel.op_terms` (buffered rows, ``layernorm_rb`` and
``softmax_rb``: the fit is their row unit's stage B, once the first block's pass 1 is taken off;
the read port's bound is structural, :data:`~qsilicon.search.accel.RB_WORDS`); both on the
training runs only.  The
controller's cycles (:func:`~qsilicon.search.accel.control_cycles`: descriptor fetches, cycle-log
writes, start and end) are a least-squares fit of what the descriptors leave of each run.
``python -m qsilicon.search.vit_latency`` refits (rewriting
``data/vit_system_model.json``) and prints the errors per run, per kind of descriptor and per
descriptor on both splits.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from qsilicon.hw.config import AccelConfig

from .accel import (
    DESC_BYTES,
    MODEL,
    RB_WORDS,
    Op,
    coef_kind,
    control_cycles,
    op_cycles,
    op_terms,
    predict,
    rb_first,
    vit_workload,
)

__all__ = ["CYCLES", "errors", "fit", "load_runs", "run_workload"]

DATA = Path(__file__).resolve().parent / "data"
CYCLES = DATA / "vit_system_cycles.json"
KINDS = ("gemm", "layernorm", "softmax", "gelu", "add", "transpose")
#: The vector descriptors' coefficient sets (:func:`~qsilicon.search.accel.coef_kind`).
COEF_KINDS = ("layernorm", "layernorm_rb", "softmax", "softmax_rb", "gelu", "add", "transpose")


def run_workload(row: dict) -> tuple[AccelConfig, list[Op]]:
    """The design and workload of a recorded run (a random ViT of ``row["model"]``, every layer
    with the int8 share ``row["ratio8"]``; its GELU fused unless ``row["fuse_gelu"]`` is false)."""
    image, patch, dim, depth, heads, mlp = row["model"]
    cfg = AccelConfig.from_tag(row["design"])
    tokens = (image // patch) ** 2 + 1
    r = row["ratio8"]
    blocks = [(tokens, dim, heads[i], 16, mlp[i], (r,) * 4) for i in range(depth)]
    return cfg, vit_workload(blocks, cfg, patches=tokens - 1, patch_dim=patch * patch, classes=10, embed_r8=r,
                             head_r8=r, fuse_gelu=row.get("fuse_gelu", True))


def load_runs(path: Path = CYCLES) -> list[dict]:
    """One entry per recorded run: design, split, workload, every descriptor's measured cycles
    (keyed by the workload's op name; per-head descriptors as a list) and the run's total."""
    runs: dict[tuple, dict] = {}
    for row in json.loads(Path(path).read_text()):
        key = (row["design"], json.dumps(row["model"]), row["ratio8"], row.get("fuse_gelu", True))
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


GEMM_PARAMS = ("lat", "pipe", "tail", "one")


def _fused_gelu(train: list[dict]) -> float:
    """The cycles a fused GELU adds to its GEMM (the element-wise unit's pipeline after the last
    word): measured, not fitted, as fc1's cycles with the GELU fused less its cycles without, on the
    training runs recorded both ways (same design, model and int8 share)."""
    plain = {(r["row"]["design"], json.dumps(r["row"]["model"]), r["row"]["ratio8"]): r for r in train
             if not r["row"].get("fuse_gelu", True)}
    diffs = []
    for run in train:
        other = plain.get((run["row"]["design"], json.dumps(run["row"]["model"]), run["row"]["ratio8"]))
        if not run["row"].get("fuse_gelu", True) or other is None:
            continue
        diffs += [c - c0 for o in run["workload"] if o.gelu
                  for c, c0 in zip(run["ops"][o.name], other["ops"][o.name], strict=True)]
    if not diffs:
        raise ValueError("no training run is recorded both with GELU fused and without: the fused GELU's cycles "
                         "need one such pair (bench/vit_system_cycles.py)")
    if max(diffs) - min(diffs) > 1:
        raise ValueError(f"a fused GELU adds {min(diffs)} to {max(diffs)} cycles to its GEMM: not a constant")
    return sum(diffs) / len(diffs)


def _fit_gemm(train: list[dict], gelu: float) -> dict:
    """The GEMM replay's timing constants: Nelder-Mead on the squared relative errors (``gelu``: a
    fused GELU's cycles, measured)."""
    import numpy as np
    from scipy.optimize import minimize

    from .accel import gemm_replay

    rows = [(run["cfg"], o, c) for run in train for o in run["workload"] if o.kind == "gemm"
            for c in run["ops"][o.name]]
    y = np.array([c for _, _, c in rows], dtype=float)

    def loss(x):
        p = {**dict(zip(GEMM_PARAMS, x, strict=True)), "gelu": gelu}
        pred = np.array([gemm_replay(cfg, o, p) for cfg, o, _ in rows])
        return float(np.mean(((pred - y) / y) ** 2))

    res = minimize(loss, [3.0, 5.0, 5.0, 10.0], method="Nelder-Mead",
                   options={"maxiter": 3000, "xatol": 1e-4, "fatol": 1e-10})
    return {**{k: round(float(v), 6) for k, v in zip(GEMM_PARAMS, res.x, strict=True)}, "gelu": round(gelu, 6)}


def fit(runs: list[dict]) -> dict:
    train = [r for r in runs if r["split"] == "train"]
    model: dict = {"gemm": _fit_gemm(train, _fused_gelu(train))}
    for kind in COEF_KINDS:
        x, y, names, seen = [], [], None, []
        for run in train:
            for o in run["workload"]:
                if o.kind == "gemm" or coef_kind(run["cfg"], o) != kind:
                    continue
                t = op_terms(run["cfg"], o)
                names = list(t)
                seen.append(o)
                for c in run["ops"][o.name]:
                    x.append([t[k] for k in names])
                    y.append(c - rb_first(kind, o))
        if not x:
            raise ValueError(f"no training run has {kind} descriptors: the fit needs one (bench/vit_system_cycles.py)")
        coef = _lstsq(x, y)
        model[kind] = {k: round(v, 6) for k, v in zip(names, coef, strict=True)}
        if kind in RB_WORDS:
            # buffered rows: the linear fit holds where stage B, not the read port, sets the pace
            c = model[kind]
            port = [o.name for o in seen if o.blocks > 1 and RB_WORDS[kind][1] * o.k > c["beats"] * o.k + c["blocks"]]
            if port:
                raise ValueError(f"{kind}: training descriptors {port} are bound by the read port; the fit needs rows "
                                 "stage B bounds (bench/vit_system_cycles.py)")
    # the controller: what the descriptors' own cycles leave of each run, linear in the descriptors
    # (a fixed part and the fetch of DESC_BYTES / lanes words each) plus a constant
    x, y = [], []
    for run in train:
        n = sum(o.count for o in run["workload"]) + 1
        x.append([1.0, n, n * DESC_BYTES / run["cfg"].lanes])
        y.append(run["total"] - sum(sum(c) for c in run["ops"].values()))
    one, desc, fetch = _lstsq(x, y)
    model["run"] = {"one": round(one, 3), "desc": round(desc, 4), "fetch": round(fetch, 4)}
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
            m_, p_ = kinds.get(coef_kind(cfg, o), (0, 0.0))
            kinds[coef_kind(cfg, o)] = (m_ + meas, p_ + pred)
        kinds["control"] = (run["total"] - sum(sum(c) for c in run["ops"].values()), control_cycles(cfg, ops, model))
        out.append({"design": cfg.tag, "model": run["row"]["model"], "ratio8": run["row"]["ratio8"],
                    "fuse_gelu": run["row"].get("fuse_gelu", True), "split": run["split"], "measured": run["total"],
                    "predicted": p.cycles,
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

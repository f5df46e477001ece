"""Latency model of the QuartDepth engine, per layer, from a compiled program (pure Python).

The compiler fixes every instruction, so the model reads its features off the program without
executing it: per layer (instruction tag) the MAC-array beats of its COMPUTE instructions
(``out_h * ceil(out_w / px) * cin * k * k`` each), the number of COMPUTE instructions (each pays
the post-op pipeline's fill and the token hand-shakes), the words its LOADs and STOREs move over
the AXI port, and the words of the layer's first job (loaded before any compute can start, as the
barrier between layers stops overlap).  A layer's cycles are linear in these features, with
coefficients fitted by least squares to per-layer spans measured on the RTL
(``data/depth_layer_cycles.json``, written by ``bench/depth_layer_cycles.py``; the span of a layer
runs from its first compute beat to the next layer's, see :meth:`RtlRun.layer_cycles`).

``python -m qsilicon.search.depth_latency`` refits on the training runs and prints the error on
every layer and total of the held-out runs (the whole network, and one reduced network).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from qsilicon.hw.depth.isa import OP_COMPUTE, OP_LOAD, OP_STORE

__all__ = ["FEATURES", "DepthPrediction", "fit", "layer_features", "load_model", "predict_program"]

DATA = Path(__file__).resolve().parent / "data"
CYCLES = DATA / "depth_layer_cycles.json"
MODEL = DATA / "depth_latency_model.json"
FEATURES = ("beats", "computes", "load_words", "store_words", "first_load_words", "one")
#: Runs held out of the fit (network label, input size).
HELD_OUT = (("whole", 64), ("reduced-16-32", 32))


def _words(dram: dict) -> int:
    return dram["n0"] * dram["n1"] * dram["run"]


def layer_features(prog) -> dict[int, dict[str, float]]:
    """Features of every layer (tag) of a compiled :class:`DepthProgram`."""
    px = prog.cfg.px
    feats: dict[int, dict[str, float]] = defaultdict(lambda: dict.fromkeys(FEATURES, 0.0))
    tag, seen_compute = None, set()
    for i in prog.insns:
        if i["op"] not in (OP_LOAD, OP_COMPUTE, OP_STORE):
            continue
        tag = i.get("tag", tag)
        f = feats[tag]
        f["one"] = 1.0
        if i["op"] == OP_LOAD:
            w = _words(i["dram"])
            f["load_words"] += w
            if tag not in seen_compute:
                f["first_load_words"] += w
        elif i["op"] == OP_STORE:
            f["store_words"] += _words(i["dram"])
        else:
            seen_compute.add(tag)
            cin = i["seg0"]["ch"] + i["seg1"]["ch"]
            f["beats"] += i["out_h"] * -(-i["out_w"] // px) * cin * i["k"] * i["k"]
            f["computes"] += 1
    return dict(feats)


def load_model(path: Path = MODEL) -> dict:
    return json.loads(path.read_text())


@dataclass(frozen=True)
class DepthPrediction:
    cycles: int
    per_layer: tuple  # (layer name, cycles)


def _predict_features(f: dict, model: dict) -> int:
    return round(sum(model["coef"][k] * f[k] for k in FEATURES))


def predict_program(prog, model: dict | None = None) -> DepthPrediction:
    """Predicted cycles of every layer of ``prog`` and their sum."""
    model = model or load_model()
    feats = layer_features(prog)
    per = tuple((info.name, _predict_features(feats[info.tag], model)) for info in prog.layers)
    return DepthPrediction(sum(c for _, c in per), per)


def fit(rows: list[dict]) -> dict:
    """Least-squares coefficients (every layer weighted by its relative error)."""
    import numpy as np

    a = np.array([[r["features"][k] for k in FEATURES] for r in rows], dtype=float)
    b = np.array([r["measured"] for r in rows], dtype=float)
    w = 1.0 / np.maximum(b, 1.0)
    coef = np.linalg.lstsq(a * w[:, None], b * w, rcond=None)[0]
    return {"features": list(FEATURES), "coef": {k: float(c) for k, c in zip(FEATURES, coef, strict=True)}}


def split(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    held = [r for r in rows if (r["network"], r["size"]) in HELD_OUT]
    return [r for r in rows if (r["network"], r["size"]) not in HELD_OUT], held


def errors(rows: list[dict], model: dict) -> tuple[list[dict], list[dict]]:
    """Per-layer and per-run (total) errors."""
    layers, runs = [], defaultdict(lambda: [0, 0])
    for r in rows:
        p = _predict_features(r["features"], model)
        layers.append({**{k: r[k] for k in ("network", "size", "config", "layer", "measured")}, "predicted": p,
                       "error": abs(p - r["measured"]) / r["measured"]})
        key = (r["network"], r["size"], r["config"])
        runs[key][0] += r["measured"]
        runs[key][1] += p
    totals = [{"network": n, "size": s, "config": c, "measured": m, "predicted": p, "error": abs(p - m) / m}
              for (n, s, c), (m, p) in runs.items()]
    return layers, totals


def main() -> None:
    rows = json.loads(CYCLES.read_text())
    train, held = split(rows)
    model = fit(train)
    MODEL.write_text(json.dumps(model, indent=1) + "\n")
    for label, part in (("training", train), ("held-out", held)):
        layers, totals = errors(part, model)
        print(f"{label}: {len(layers)} layers, max error {100 * max(e['error'] for e in layers):.2f}%, "
              f"mean {100 * sum(e['error'] for e in layers) / len(layers):.2f}%")
        for e in layers:
            print(f"  {e['network']:<14} {e['size']:>3} {e['config']:<40} {e['layer']:<6} {e['measured']:>9} "
                  f"{e['predicted']:>9} {100 * e['error']:6.2f}%")
        for t in totals:
            print(f"  total {t['network']:<14} {t['size']:>3} {t['config']:<40} {t['measured']:>9} {t['predicted']:>9} "
                  f"{100 * t['error']:6.2f}%")


if __name__ == "__main__":
    main()

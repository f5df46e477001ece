"""Fit and check of the ViT accelerator's resource model (:func:`qsilicon.search.accel.resources`)
against Yosys synthesis of whole generated tops (``bench/calibrate_system.py``).

The model adds to the GEMM engine's fitted model and the units' synthesized counts the block RAMs
of the design's three large memories (Yosys's mapping rule, exact) and the LUTs and FFs of
everything else (readers, writer, controller, transposer banks, parameter buffer, FIFOs), linear in
:func:`~qsilicon.search.accel.system_features`, fitted on the training designs.
``python -m qsilicon.search.system_resources`` refits and prints the errors of every design.
"""

from __future__ import annotations

import json
from pathlib import Path

from qsilicon.hw.config import AccelConfig

from . import accel
from . import resources as res

__all__ = ["DATA", "errors", "fit", "measured"]

DATA = accel.SYSTEM_RESOURCES
FEATURES = {"lut": ("one", "word_bits", "transpose", "par_bits"), "ff": ("one", "word_bits", "par_bits", "beat_bits")}


def measured(counts: dict) -> dict:
    return {"lut": counts["lut"], "ff": counts["ff"], "dsp": counts["dsp"],
            "bram36": counts["bram36"] + counts["bram18"] / 2}


def fit(points: list[dict]) -> dict:
    train = [p for p in points if p["split"] == "train"]
    model = {}
    for kind, names in FEATURES.items():
        x, y = [], []
        for p in train:
            cfg = AccelConfig.from_tag(p["design"])
            f = accel.system_features(cfg)
            x.append([f[n] for n in names])
            y.append(measured(p["counts"])[kind] - accel.fixed_resources(cfg)[kind])
        coef = res._lstsq(x, y, ridge=1e-3)
        model[kind] = {n: round(float(c), 6) for n, c in zip(names, coef, strict=True)}
    return model


def errors(points: list[dict]) -> list[dict]:
    """Every design's measured counts and the model's (as stored in :data:`DATA`)."""
    accel._system.cache_clear()
    accel.resources.cache_clear()
    out = []
    for p in points:
        cfg = AccelConfig.from_tag(p["design"])
        m, est = measured(p["counts"]), accel.resources(cfg)
        out.append({"design": p["design"], "split": p["split"], "measured": m, "model": est,
                    "error": {k: (est[k] - m[k]) / m[k] if m[k] else float(est[k] != m[k]) for k in m}})
    return out


def main() -> None:
    doc = json.loads(Path(DATA).read_text())
    doc["model"] = fit(doc["points"])
    doc["features"] = {k: list(v) for k, v in FEATURES.items()}
    Path(DATA).write_text(json.dumps(doc, indent=1) + "\n")
    for e in errors(doc["points"]):
        err, mod, mea = e["error"], e["model"], e["measured"]
        print(f"{e['split']:<8} {e['design']:<36} LUT {100 * err['lut']:+6.1f}%  FF {100 * err['ff']:+6.1f}%  "
              f"DSP {mod['dsp'] - mea['dsp']:+d}  BRAM36 {mod['bram36'] - mea['bram36']:+g}")
    print(f"wrote {DATA}")


if __name__ == "__main__":
    main()

"""The ViT accelerator's resource model against Yosys synthesis of whole generated tops
(``bench/calibrate_system.py`` -> ``search/data/vit_system_resources.json``)."""

import json
import math
from pathlib import Path

from qsilicon.hw.config import AccelConfig
from qsilicon.search import accel
from qsilicon.search import system_resources as sr


def _doc() -> dict:
    return json.loads(sr.DATA.read_text())


def test_stored_model_is_the_fit_of_the_stored_points():
    doc = _doc()
    fitted = sr.fit(doc["points"])
    for kind, coef in doc["model"].items():
        assert set(coef) == set(fitted[kind]), kind
        for name, v in coef.items():
            assert math.isclose(v, fitted[kind][name], rel_tol=1e-6, abs_tol=1e-6), (kind, name)


def test_held_out_designs_dsp_and_bram_exact_lut_and_ff_within_10_percent():
    doc = _doc()
    assert len({p["tool"] for p in doc["points"]}) == 1, "every design synthesized by one Yosys version"
    errs = sr.errors(doc["points"])
    held = [e for e in errs if e["split"] == "held_out"]
    assert len(held) >= 3 and len({e["design"].split("_")[0] for e in held}) >= 3, "three array shapes held out"
    for e in errs:  # DSP and block RAM are counted, not fitted: exact on every design
        assert e["model"]["dsp"] == e["measured"]["dsp"], e
        assert e["model"]["bram36"] == e["measured"]["bram36"], e
    for e in held:
        assert abs(e["error"]["lut"]) <= 0.10 and abs(e["error"]["ff"]) <= 0.10, e


def test_the_paper_comparisons_chosen_designs_synthesized_whole():
    """bench/paper_comparison.py --synth: the designs it chose, synthesized whole (1,024-PE arrays,
    up to 1 MiB of activation buffer: deeper memories than any calibration design), against the
    model: DSP48E2 and BRAM36 exact, LUT and FF within 5%."""
    doc = json.loads((Path(sr.__file__).resolve().parents[1] / "bench" / "results" / "paper_comparison.json")
                     .read_text())
    rows = [r for r in doc["rows"] if r["clock_mhz"] == 200.0]
    assert {r["model"] for r in rows} == {"deit-tiny", "deit-small", "deit-base"}
    for r in rows:
        cfg = AccelConfig(**r["config"])
        syn = r["synthesized"]
        assert syn["netlist"] == cfg.tag.rsplit("_", 1)[0]
        est = accel.resources(cfg)
        assert est["dsp"] == syn["counts"]["dsp"] and est["bram36"] == syn["counts"]["bram36"], (cfg.tag, est, syn)
        for k in ("lut", "ff"):
            assert abs(est[k] - syn["counts"][k]) <= 0.05 * syn["counts"][k], (cfg.tag, k, est[k], syn["counts"][k])

"""The resource model against its synthesis calibration data (Yosys, xcup)."""

import json
import subprocess
import sys

import pytest

from qsilicon.hw.config import GemmConfig
from qsilicon.search import resources
from qsilicon.search.resources import dsp_count, errors, estimate, fit, load_calibration

CAL = load_calibration()


def test_enough_configurations():
    assert sum(s == "train" for s, _, _ in CAL) >= 20
    assert sum(s == "held_out" for s, _, _ in CAL) >= 10
    doc = json.loads(resources.CALIBRATION.read_text())
    assert all(row["tool"].startswith("Yosys 0.70") for row in doc["configs"])


@pytest.mark.parametrize("split,cfg,counts", CAL, ids=[f"{s}-{c.tag}" for s, c, _ in CAL])
def test_dsp_exact(split, cfg, counts):
    assert dsp_count(cfg) == counts.get("dsp", 0)


def test_held_out_error_within_10_percent():
    err = errors(CAL, json.loads(resources.MODEL.read_text()))
    assert err["held_out"]["lut_mape"] <= 10.0 and err["held_out"]["ff_mape"] <= 10.0, err
    assert err["held_out"]["dsp_mismatches"] == 0 and err["train"]["dsp_mismatches"] == 0


def test_stored_model_is_the_fit_of_the_stored_data():
    """The committed coefficients are reproduced by refitting the committed calibration data:
    a change of either without the other fails here."""
    stored = json.loads(resources.MODEL.read_text())
    refit = fit(CAL)
    for res in ("lut", "ff"):
        for k, v in stored[res].items():
            assert refit[res][k] == pytest.approx(v, rel=1e-6, abs=1e-6), (res, k)


def test_model_is_pure_python():
    """The search imports the model without Amaranth."""
    code = ("import sys; import qsilicon.search.resources as r; from qsilicon.hw.config import GemmConfig; "
            "r.estimate(GemmConfig(8, 8, 8, 8)); assert 'amaranth' not in sys.modules, 'amaranth imported'")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_estimate_grows_with_the_array():
    small, big = estimate(GemmConfig(4, 4, 8, 8)), estimate(GemmConfig(8, 8, 8, 8))
    assert big.lut > small.lut and big.ff > small.ff and big.dsp > small.dsp
    assert estimate(GemmConfig(8, 8, 8, 8, packing="dsp2")).dsp == 32 + 16
    assert estimate(GemmConfig(8, 8, 4, 4, packing="dsp4")).dsp == 16 + 16


BUFFERS = resources.load_buffer_calibration()


def test_buffer_calibration_covers_all_mappings():
    assert sum(s == "held_out" for s, *_ in BUFFERS) >= 8
    kinds = {("bram36" if e.bram36 else "bram18" if e.bram18 else "lutram") for *_, e in BUFFERS}
    assert kinds == {"bram36", "bram18", "lutram"}


@pytest.mark.parametrize("split,width,depth,synth", BUFFERS, ids=[f"{s}-{w}x{d}" for s, w, d, _ in BUFFERS])
def test_buffer_mapping_exact(split, width, depth, synth):
    """BRAM36, BRAM18 and LUTRAM counts of every synthesized buffer, held-out ones included."""
    assert resources.buffer_resources(width, depth) == synth


def test_buffer_rejects_nonsense():
    with pytest.raises(ValueError, match="width >= 1 and depth >= 2, not 0 x 16"):
        resources.buffer_resources(0, 16)


def test_estimate_refuses_deeper_requantizers():
    with pytest.raises(ValueError, match="fitted on 3-stage requantizers, not 5 .*--requant-stages 5"):
        estimate(GemmConfig(8, 8, 8, 8, requant_stages=5))

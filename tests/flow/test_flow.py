"""``qsilicon flow``: config checking before any work, and a small flow end to end (search, Verilog
and build files, Verilator on the chosen design, report)."""

import json
import subprocess
import sys
import time

import pytest

CLI = [sys.executable, "-m", "qsilicon.flow"]


def _flow(tmp_path, text, out=None):
    cfg = tmp_path / "flow.yaml"
    cfg.write_text(text)
    t = time.time()
    r = subprocess.run([*CLI, "flow", str(cfg), "-o", str(out or tmp_path / "out")], capture_output=True, text=True,
                       timeout=1200)
    return r, time.time() - t


@pytest.mark.parametrize("text,msg", [
    ("board: zcu102\nsearch: {trials: [1]", "not valid YAML"),
    ("board: zcu102\nsearch: {trails: 10}", "unknown key search.trails (expected one of search.images, search.pick,"),
    ("board: zcu102\nsearch: {trials: -3}", "search.trials = -3: expected a positive number of trials"),
    ("board: zcu102\nsearch: {pick: best}", "search.pick = 'best': expected 'knee' or a trial number"),
    ("board: zcu102\nverify: {sim: icarus}", "verify.sim = 'icarus': expected 'verilator'"),
    ("board: zcu102\nverify: {images: 0}", "verify.images = 0: expected a number of test images in [1, 100]"),
    ("board: zcu102\nverify: {block: 0}", "unknown key verify.block (expected one of verify.image, verify.images"),
    ("board: ulx3s", "calibrated for Zynq UltraScale+"),
    ("board: zcu999", "zcu999"),
    ("board: zcu102\nsearch: {space: other.yaml}", "not found"),
    ("board: zcu102\nsearch: {space: small.yaml}", "differs from the supernet's"),
    ("board: zcu102\nmodel: 3", "model: expected a mapping"),
    ("- a list", "expected a mapping of sections"),
])
def test_bad_config_is_one_line_before_any_work(tmp_path, text, msg):
    (tmp_path / "small.yaml").write_text("model: {depths: [2], dims: [32], heads: [2]}\n")
    r, _ = _flow(tmp_path, text)
    assert r.returncode == 2, r.stdout + r.stderr
    assert msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "== 1/" not in r.stdout and not (tmp_path / "out").exists()


SMALL_FLOW = """\
board: zcu102
search:
  space: space.yaml
  trials: 16
  images: 300
quantize: {calib_images: 300, test_images: 300}
verify: {image: 3, images: 1}
"""
SMALL_SPACE = """\
model: ../vit_space.yaml
hardware: {rows: [8], cols: [8, 16], packing: [dsp2], lanes: [8], wbuf_kib: [16], abuf_kib: [16], clock_mhz: [150]}
"""


def test_small_flow_end_to_end(tmp_path):
    from qsilicon.flow.pipeline import ROOT

    d = tmp_path / "cfg"
    d.mkdir()
    (d / "space.yaml").write_text(SMALL_SPACE.replace("../vit_space.yaml", str(ROOT / "configs" / "vit_space.yaml")))
    out = tmp_path / "out"
    r, _ = _flow(d, SMALL_FLOW, out)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "flow: PASS" in r.stdout
    res = json.loads((out / "flow.json").read_text())
    v = res["verify"]  # the whole chosen subnet on the whole chosen design
    assert res["pass"] and v["bit_exact"] and v["memory_equal_to_iss"] and v["images"] == 1
    assert v["design"] == f"r8c{res['chosen']['hw']['cols']}_dsp2_l8_w16k_a16k_150mhz" and v["cycle_error"] < 0.05
    report = (out / "report.md").read_text()
    assert "![Pareto front](search/pareto.png)" in report and "**bit-exact**" in report and "whole image" in report
    for f in ("search/pareto.png", "latency_breakdown.png", "design/zcu102/vit_accel.v", "design/design.json",
              "design/zcu102/build_system.tcl", "design/zcu102/vit_accel_wrapper.v"):
        assert (out / f).exists(), f
    pareto = json.loads((out / "search" / "pareto.json").read_text())
    assert pareto["trials"] == 16 and pareto["knee"]["number"] == res["chosen"]["number"]

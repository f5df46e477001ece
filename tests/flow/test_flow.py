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
    ("board: zcu102\nverify: {block: 2}", "verify.block = 2: expected a block every subnet of the space has (0..1"),
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
verify: {block: 0, image: 3}
"""
SMALL_SPACE = """\
model: ../vit_space.yaml
hardware: {rows: [4], cols: [4, 8], packing: [dsp2], lanes: [8], wbuf_kib: [16], abuf_kib: [16], clock_mhz: [150]}
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
    assert res["pass"] and len(res["verify"]) == 4
    for v in res["verify"]:  # bit-exact, and the latency model's GEMM cycles equal the RTL's
        assert v["bit_exact"] and v["predicted_cycles"] == v["rtl_cycles"]
    report = (out / "report.md").read_text()
    assert "![Pareto front](search/pareto.png)" in report and "bit-exact" in report
    for f in ("search/pareto.png", "latency_breakdown.png", "design/gemm_engine.v", "design/design.json",
              "design/zcu102/top.v"):
        assert (out / f).exists(), f
    pareto = json.loads((out / "search" / "pareto.json").read_text())
    assert pareto["trials"] == 16 and pareto["knee"]["number"] == res["chosen"]["number"]

"""Constrained-random regressions (``qsilicon regress``): about 200 cases per accelerator pass with
their coverage, a planted bug (a mutant requantizer without its rounding increment) fails the
regression, and its saved case replays alone, naming the first mismatch; the command line around
them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import qsilicon.hw.blocks.requant as requant
from qsilicon.flow.cli import main
from qsilicon.sim.regress import ACCELS, Coverage, load_case, regress, replay

QS = [sys.executable, "-m", "qsilicon.flow"]


def _check(rep, cases, full_groups):
    assert rep.cases == cases and rep.failures == 0, rep.failure_files[:3]
    cov = rep.coverage
    assert cov["total"] > 20 and cov["bins"] / cov["total"] >= 0.9, cov["missed"]
    for g in full_groups:
        c = cov["groups"][g]
        assert c["hit"] == c["total"], (g, cov["missed"])
    assert sum(c["cases"] for c in rep.configs.values()) == cases


def test_gemm_regression(tmp_path):
    rep = regress("gemm", 200, 1, jobs=2, out_dir=tmp_path)
    _check(rep, 200, ["config", "format_x_packing", "m", "k", "n", "sequence", "requant_stages", "observed"])
    assert not list((tmp_path / "failures").iterdir())


def test_mpgemm_regression(tmp_path):
    rep = regress("mpgemm", 200, 1, jobs=2, out_dir=tmp_path)
    _check(rep, 200, ["config", "m", "k", "n", "rows_x_packing", "requant_stages", "observed"])


def test_depth_engine_regression_with_faults(tmp_path):
    rep = regress("depth", 200, 1, jobs=2, out_dir=tmp_path)
    _check(rep, 200, ["config", "sync", "hazard", "store", "fault", "outcome", "backpressure"])
    # every fault ran, and each kind of stop was seen, as was a right run after a fault
    counts = rep.coverage["groups"]["outcome"]["counts"]
    assert counts["correct_after_fault"] >= 5 and counts["completed_after_reset"] >= 1


def test_vit_system_regression_with_faults(tmp_path):
    rep = regress("vit", 200, 1, jobs=2, out_dir=tmp_path)
    _check(rep, 200, ["descriptor", "precision", "shape", "window", "fault", "outcome"])


def test_a_planted_rounding_bug_fails_the_regression_and_replays(tmp_path, monkeypatch):
    """The mutant generator: the requantizer's rounding increment 1 -> 0 (one flipped bit of the
    rounding term).  The regression fails; a failing case, replayed alone, fails again and names
    its first mismatch; the same case passes on the real generator."""
    cfg = ACCELS["gemm"].pool()[0]
    monkeypatch.setattr(requant, "ROUND_INCREMENT", 0)
    rep = regress("gemm", 40, 7, out_dir=tmp_path, pool=[cfg])
    assert rep.failures >= 5, "the regression did not catch the mutant"
    path = tmp_path / "failures" / sorted(p.name for p in (tmp_path / "failures").iterdir())[0]
    acc, cfg2, case, record = load_case(path)
    assert acc.name == "gemm" and cfg2 == cfg and record["result"]["ok"] is False
    first = record["result"]["first"]
    assert first["expected"] != first["got"] and {"tile", "row", "col", "cycle"} <= set(first)
    res, _ = replay(path)
    assert not res.ok and res.first == first  # the same first mismatch, at the same cycle
    monkeypatch.setattr(requant, "ROUND_INCREMENT", 1)
    res, _ = replay(path)
    assert res.ok


def test_coverage_refuses_undeclared_bins():
    cov = Coverage({"a": ["x", "y"]})
    cov.hit("a", "x")
    assert cov.to_dict()["bins"] == 1 and cov.missed() == ["a/y"]
    with pytest.raises(KeyError, match="a/z is not declared"):
        cov.hit("a", "z")


def test_cli_regress_and_replay_with_waves(tmp_path, capsys, monkeypatch):
    out = tmp_path / "reg"
    assert main(["regress", "gemm", "--cases", "12", "--seed", "3", "-o", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["cases"] == 12 and doc["failures"] == 0 and doc["seed"] == 3
    assert {"bins", "total"} <= set(doc["coverage"])
    assert json.loads((out / "report.json").read_text())["cases"] == 12
    # a failing case, replayed on Icarus with a VCD waveform
    monkeypatch.setattr(requant, "ROUND_INCREMENT", 0)
    bad = tmp_path / "bad"
    assert main(["regress", "gemm", "--cases", "6", "--seed", "7", "-o", str(bad)]) == 1
    capsys.readouterr()
    case = next((bad / "failures").iterdir())
    w = tmp_path / "waves"
    assert main(["verify", "gemm", "--case", str(case), "--sim", "icarus", "--waves", "-o", str(w), "--json"]) == 1
    rep = json.loads(capsys.readouterr().out)
    assert rep["pass"] is False and rep["first_mismatch"]["expected"] != rep["first_mismatch"]["got"]
    vcd = (w / "waves.vcd").read_text(errors="replace")
    assert "$enddefinitions" in vcd and "o_res__valid" in vcd
    # and on Verilator, an FST (its first block is the header block, type 0)
    w2 = tmp_path / "waves2"
    assert main(["verify", "gemm", "--case", str(case), "--waves", "-o", str(w2)]) == 1
    fst = (w2 / "waves.fst").read_bytes()
    assert len(fst) > 1000 and fst[0] == 0


@pytest.mark.parametrize("args,msg", [
    (["regress", "npu"], "invalid choice: 'npu'"),
    (["regress", "gemm", "--cases", "0"], "--cases must be a positive integer, not 0"),
    (["regress", "depth", "--sim", "icarus"], "depth regressions run on verilator, not icarus"),
    (["verify", "gemm", "--rows", "2"], "verify gemm needs --cols, --abits, --m, --k, --n, --wbits"),
    (["verify", "gemm", "--case", "README.md"], "not a case file written by 'qsilicon regress'"),
    (["verify", "gemm", "--case", "nope.pt"], "no such file"),
    (["verify", "depth", "--waves"], "--waves needs -o DIR (where the waveform goes)"),
])
def test_regress_bad_input(args, msg, tmp_path):
    p = subprocess.run([*QS, *args, "-o", str(tmp_path / "o")] if args[0] == "regress" else [*QS, *args],
                       capture_output=True, text=True)
    assert p.returncode == 2 and msg in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not (tmp_path / "o").exists()


def test_verify_refuses_a_case_of_another_accelerator(tmp_path):
    from qsilicon.sim.regress import save_case

    acc = ACCELS["gemm"]
    import random

    case = acc.generate(random.Random(0), acc.pool()[0])
    save_case(tmp_path / "c.pt", acc, acc.pool()[0], {**case, "index": 0})
    p = subprocess.run([*QS, "verify", "depth", "--case", str(tmp_path / "c.pt")], capture_output=True, text=True)
    assert p.returncode == 2 and "is a case of gemm, not depth: run 'qsilicon verify gemm --case" in p.stderr
    assert torch.load(tmp_path / "c.pt", weights_only=True)["accel"] == "gemm"


def test_rtl_line_and_toggle_coverage(tmp_path):
    """Verilator's own coverage of the RTL beside the functional bins (a coverage build)."""
    cfg = ACCELS["gemm"].pool()[0]
    rep = regress("gemm", 24, 2, out_dir=tmp_path, pool=[cfg], rtl_coverage=True)
    assert rep.failures == 0
    line, toggle = rep.rtl_coverage["line"], rep.rtl_coverage["toggle"]
    assert line["total"] > 100 and line["hit"] / line["total"] >= 0.95
    assert toggle["total"] > 1000 and 0.5 < toggle["hit"] / toggle["total"] <= 1.0


def test_verify_writes_a_waveform_of_a_normal_run(tmp_path, capsys):
    """``--waves -o DIR`` on a plain ``verify`` (not a replay): Icarus writes a VCD."""
    out = tmp_path / "w"
    args = ["verify", "gemm", "--rows", "2", "--cols", "2", "--wbits", "4", "--abits", "4", "--m", "3", "--k", "5",
            "--n", "3", "--sim", "icarus"]
    assert main([*args, "--waves", "-o", str(out)]) == 0
    assert "$enddefinitions" in (out / "waves.vcd").read_text(errors="replace")
    assert (out / "qsilicon.json").exists()
    capsys.readouterr()
    assert main([*args, "-o", str(tmp_path / "x")]) == 2
    assert "-o goes with --waves" in capsys.readouterr().err and not (tmp_path / "x").exists()

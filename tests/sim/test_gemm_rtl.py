"""The generated Verilog in cocotb on Icarus and Verilator, bit for bit against the reference."""

import pytest
import torch

from qsilicon.hw.config import GemmConfig
from qsilicon.quant import random_gemm_case, ref_gemm
from qsilicon.sim.gemm import rtl_gemm
from qsilicon.sim.runner import SimulationError

# (sim, rows, cols, wbits, abits, a_signed, [(M, K, N), ...])
FAST = [
    ("icarus", 2, 2, 4, 4, True, [(3, 5, 3), (1, 1, 1)]),
    ("icarus", 3, 2, 8, 8, False, [(4, 9, 1)]),
    ("verilator", 4, 4, 4, 8, True, [(9, 13, 7), (4, 1, 4), (5, 70, 1)]),
    ("verilator", 8, 8, 8, 8, True, [(17, 33, 9)]),
]
SLOW = [
    ("verilator", 8, 8, 4, 4, False, [(24, 100, 20)]),
    ("verilator", 16, 8, 8, 4, True, [(40, 64, 24)]),
    ("verilator", 2, 16, 4, 4, True, [(7, 3, 33)]),
    ("icarus", 4, 4, 8, 8, True, [(6, 20, 6)]),
]


def _id(p):
    sim, r, c, w, a, s, _ = p
    return f"{sim}-r{r}c{c}-w{w}a{a}{'s' if s else 'u'}"


def _check(sim, rows, cols, wbits, abits, a_signed, shapes):
    cfg = GemmConfig(rows, cols, wbits, abits, a_signed)
    for i, (m, k, n) in enumerate(shapes):
        case = random_gemm_case(m, k, n, wbits=wbits, abits=abits, a_signed=a_signed, seed=1000 + i)
        got = rtl_gemm(case, cfg, sim=sim, valid_p=0.75, ready_p=0.6, seed=i)
        assert torch.equal(got.out, ref_gemm(case).out)


@pytest.mark.parametrize("params", FAST, ids=_id)
def test_rtl_gemm_random_stalls(params):
    _check(*params)


@pytest.mark.slow
@pytest.mark.parametrize("params", SLOW, ids=_id)
def test_rtl_gemm_random_stalls_slow(params):
    _check(*params)


MIXED = [
    # sim, GemmConfig kwargs, ratio8, (M, K, N)
    ("verilator", dict(rows=4, cols=4, wbits=8, abits=8, packing="dsp2", mixed=True), 0.5, (9, 21, 13)),
    ("verilator", dict(rows=8, cols=8, wbits=8, abits=8, packing="dsp2", mixed=True), 0.25, (16, 40, 20)),
    ("icarus", dict(rows=2, cols=2, wbits=8, abits=8, a_signed=False, packing="dsp2", mixed=True), 0.75, (3, 5, 5)),
    ("verilator", dict(rows=4, cols=4, wbits=4, abits=4, packing="dsp4"), None, (7, 9, 6)),
    ("verilator", dict(rows=4, cols=2, wbits=4, abits=8, packing="lut"), None, (5, 11, 3)),
    ("verilator", dict(rows=4, cols=4, wbits=8, abits=8, packing="dot2", mixed=True), 0.5, (9, 21, 13)),
    ("icarus", dict(rows=2, cols=2, wbits=8, abits=8, packing="dot2", mixed=True), 0.25, (3, 6, 5)),
    ("icarus", dict(rows=2, cols=3, wbits=4, abits=4, a_signed=False, requant_stages=4), None, (5, 7, 4)),
]


@pytest.mark.parametrize("sim,kwargs,ratio8,shape", MIXED,
                         ids=[f"{m[0]}-{GemmConfig(**m[1]).tag}" for m in MIXED])
def test_rtl_mixed_and_packed_layers(sim, kwargs, ratio8, shape):
    """Random row-wise mixed-precision (and packed) layers with idle cycles and backpressure."""
    cfg = GemmConfig(**kwargs)
    case = random_gemm_case(*shape, wbits=cfg.wbits, abits=cfg.abits, a_signed=cfg.a_signed, seed=shape[2],
                            ratio8=ratio8)
    got = rtl_gemm(case, cfg, sim=sim, valid_p=0.8, ready_p=0.7, seed=2)
    assert torch.equal(got.out, ref_gemm(case).out)


def test_utilization_8x8_at_least_90_percent():
    """8 output tiles, K = 64, streams never stall: array fill and drain are hidden."""
    cfg = GemmConfig(8, 8, 8, 8)
    case = random_gemm_case(32, 64, 16, wbits=8, abits=8, seed=7)
    got = rtl_gemm(case, cfg, sim="verilator")
    assert torch.equal(got.out, ref_gemm(case).out)
    assert got.ideal_cycles == 512
    assert got.utilization >= 0.90, f"{got.cycles} cycles"


def test_mismatch_is_detected():
    """The checker is not vacuous: when the model sees a different bias than the RTL, the
    cocotb test fails and so does the run."""
    cfg = GemmConfig(2, 2, 4, 4)
    case = random_gemm_case(2, 4, 2, wbits=4, abits=4, seed=3)
    bad = type(case)(**{**case.__dict__, "bias": case.bias + 1000})
    assert not torch.equal(ref_gemm(bad).out, ref_gemm(case).out)
    with pytest.raises(SimulationError, match="1 of 1 cocotb tests failed on icarus"):
        _run_with_model_case(cfg, case, bad)


def _run_with_model_case(cfg, rtl_case, model_case):
    """Run the RTL on ``rtl_case`` while the testbench's model sees ``model_case``."""
    import json
    import tempfile
    from pathlib import Path

    from qsilicon.sim.gemm import build_gemm

    simulation = build_gemm(cfg, "icarus")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rtl_case.save(tmp / "case.pt")
        model_case.save(tmp / "model.pt")
        env = {"QS_CASE": str(tmp / "case.pt"), "QS_MODEL_CASE": str(tmp / "model.pt"),
               "QS_CONFIG": json.dumps(cfg.to_dict()), "QS_RESULT": str(tmp / "r.json")}
        simulation.run("qsilicon.sim.tb_gemm", env, tmp / "results.xml")

"""The whole GEMM engine (array + requantizer + host schedule) in Amaranth's simulator."""

import pytest
import torch

from qsilicon.hw.config import GemmConfig
from qsilicon.hw.gemm import GemmEngine, schedule_gemm
from qsilicon.quant import random_gemm_case, ref_gemm
from qsilicon.sim.pysim import pysim_gemm

CASES = [
    # rows, cols, wbits, abits, a_signed, M, K, N
    (2, 2, 4, 4, True, 3, 5, 3),
    (2, 3, 4, 8, True, 5, 7, 1),   # N = 1
    (3, 2, 8, 8, False, 4, 9, 5),  # unsigned activations, K not a multiple of anything
    (4, 4, 8, 4, True, 4, 1, 4),   # K = 1: drain-bound
    (1, 1, 4, 4, False, 2, 3, 2),
]


IDS = [f"r{c[0]}c{c[1]}w{c[2]}a{c[3]}{'s' if c[4] else 'u'}_{c[5]}x{c[6]}x{c[7]}" for c in CASES]


@pytest.mark.parametrize("rows,cols,wbits,abits,a_signed,m,k,n", CASES, ids=IDS)
def test_engine_matches_reference_with_backpressure(rows, cols, wbits, abits, a_signed, m, k, n):
    cfg = GemmConfig(rows, cols, wbits, abits, a_signed)
    case = random_gemm_case(m, k, n, wbits=wbits, abits=abits, a_signed=a_signed, seed=rows * 100 + k)
    got = pysim_gemm(case, cfg, valid_pattern=(1, 1, 1, 0), ready_pattern=(1, 0, 1, 1, 0))
    assert torch.equal(got.out, ref_gemm(case).out)


def test_engine_streams_without_stalls():
    cfg = GemmConfig(2, 2, 4, 4)
    case = random_gemm_case(4, 8, 4, wbits=4, abits=4, seed=9)
    got = pysim_gemm(case, cfg)
    assert torch.equal(got.out, ref_gemm(case).out)
    tiles = 4
    # operands, products, accumulate, then the last tile drains 2 rows through 3 requant stages
    assert got.cycles == tiles * 8 + 2 + cfg.rows + 3


def test_schedule_rejects_mismatched_case():
    case = random_gemm_case(2, 2, 2, wbits=8, abits=8, seed=0)
    with pytest.raises(ValueError, match="Case weights are int8; the engine takes int4"):
        schedule_gemm(case, GemmConfig(2, 2, 4, 8))
    with pytest.raises(ValueError, match="Case activations are int8; the engine takes uint8"):
        schedule_gemm(case, GemmConfig(2, 2, 8, 8, a_signed=False))


@pytest.mark.parametrize("kwargs,msg", [
    ({"rows": 0, "cols": 2}, "Rows must be a positive integer, not 0"),
    ({"rows": 2, "cols": 65}, "Cols must be at most 64, not 65"),
    ({"rows": 2, "cols": 2, "wbits": 5}, "Weight bits must be 4 or 8, not 5"),
    ({"rows": 2, "cols": 2, "abits": 3}, "Activation bits must be 4 or 8, not 3"),
])
def test_config_rejects_bad_parameters(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        GemmConfig(**kwargs)


def test_engine_rejects_non_config():
    with pytest.raises(TypeError, match="Config must be a GemmConfig"):
        GemmEngine({"rows": 2})

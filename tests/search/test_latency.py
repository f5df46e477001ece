"""The latency model against RTL cycle counts (cocotb on Verilator) and its board terms."""

import pytest

from qsilicon.boards import get_board
from qsilicon.hw.config import GemmConfig
from qsilicon.quant import random_gemm_case
from qsilicon.search.latency import gemm_cycles, gemm_latency
from qsilicon.sim.gemm import rtl_gemm

# (config, [(M, K, N, ratio8), ...]): 24 (shape, configuration) pairs, configurations the RTL
# tests build anyway, shapes with full and partial tiles, K above, at and below the array rows.
PAIRS = [
    (GemmConfig(8, 8, 8, 8), [(32, 64, 16, None), (64, 8, 64, None), (17, 33, 9, None), (8, 3, 8, None),
                              (50, 77, 29, None), (1, 1, 1, None), (64, 130, 8, None)]),
    (GemmConfig(4, 4, 4, 8), [(9, 13, 7, None), (4, 1, 4, None), (5, 70, 1, None), (16, 4, 16, None),
                              (12, 5, 12, None), (33, 20, 3, None)]),
    (GemmConfig(4, 4, 4, 4, packing="dsp4"), [(7, 9, 6, None), (8, 64, 16, None), (4, 2, 4, None),
                                              (20, 31, 9, None)]),
    (GemmConfig(4, 4, 8, 8, packing="dsp2", mixed=True), [(9, 21, 13, 0.5), (16, 40, 20, 0.25), (5, 3, 11, 1.0),
                                                          (12, 17, 10, 0.0), (8, 6, 9, 0.75), (3, 50, 4, 0.5),
                                                          (10, 10, 10, 0.5)]),
    (GemmConfig(4, 4, 8, 8, packing="dsp2", mixed=True, requant_stages=5), [(9, 21, 13, 0.5), (4, 1, 4, 1.0),
                                                                            (7, 30, 5, 0.0)]),
]
CASES = [(cfg, shape) for cfg, shapes in PAIRS for shape in shapes]


def test_at_least_20_pairs():
    assert len(CASES) >= 20


@pytest.mark.parametrize("cfg,shape", CASES, ids=[f"{c.tag}-{s[0]}x{s[1]}x{s[2]}" for c, s in CASES])
def test_cycles_match_rtl(cfg, shape):
    m, k, n, ratio8 = shape
    case = random_gemm_case(m, k, n, wbits=cfg.wbits, abits=cfg.abits, seed=m + k + n, ratio8=ratio8)
    n8 = None if case.row_bits is None else int((case.row_bits == 8).sum())
    rtl = rtl_gemm(case, cfg, sim="verilator")
    assert gemm_cycles(cfg, m, k, n, n8) == rtl.cycles


def test_board_latency_terms():
    zcu = get_board("zcu102")
    cfg = GemmConfig(8, 8, 8, 8)
    lat = gemm_latency(cfg, zcu, 64, 64, 64)
    assert lat.compute_cycles == gemm_cycles(cfg, 64, 64, 64) and lat.bound == "compute"
    assert lat.seconds == pytest.approx(lat.compute_cycles / 125e6)
    # A wide array on a board with little bandwidth becomes memory-bound.
    pynq = get_board("pynq-z2")
    wide = gemm_latency(GemmConfig(64, 64, 8, 8), pynq, 64, 512, 64)
    assert wide.bound == "memory" and wide.memory_cycles > wide.compute_cycles
    # int4 tiles of a mixed layer stream half the weight bits.
    mixed = GemmConfig(8, 8, 8, 8, packing="dsp2", mixed=True)
    all8 = gemm_latency(mixed, zcu, 8, 256, 64, n8=64).traffic_bytes
    all4 = gemm_latency(mixed, zcu, 8, 256, 64, n8=0).traffic_bytes
    assert all4 < all8


def test_bad_input():
    with pytest.raises(ValueError, match="K must be a positive integer, not 0"):
        gemm_cycles(GemmConfig(2, 2), 1, 0, 1)
    with pytest.raises(ValueError, match="needs the number of int8 rows from 0 to N=4, not 5"):
        gemm_cycles(GemmConfig(2, 2, 8, 8, mixed=True), 1, 1, 4, n8=5)

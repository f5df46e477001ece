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


@pytest.mark.parametrize("stages", [3, 4, 5])
def test_engine_streams_without_stalls(stages):
    cfg = GemmConfig(2, 2, 4, 4, requant_stages=stages)
    case = random_gemm_case(4, 8, 4, wbits=4, abits=4, seed=9)
    got = pysim_gemm(case, cfg)
    assert torch.equal(got.out, ref_gemm(case).out)
    tiles = 4
    # operands, products, accumulate, then the last tile drains 2 rows through the requant stages
    assert got.cycles == tiles * 8 + 2 + cfg.rows + stages


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
    ({"rows": 2, "cols": 2, "requant_stages": 6}, "Requantizer stages must be 3, 4 or 5, not 6"),
])
def test_config_rejects_bad_parameters(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        GemmConfig(**kwargs)


def test_engine_rejects_non_config():
    with pytest.raises(TypeError, match="Config must be a GemmConfig"):
        GemmEngine({"rows": 2})


PACKED = [
    # rows, cols, wbits, abits, a_signed, packing, mixed, ratio8, (M, K, N)
    (2, 4, 8, 8, True, "dsp2", False, None, (5, 9, 7)),
    (2, 2, 4, 8, False, "dsp2", False, None, (3, 6, 5)),
    (4, 4, 4, 4, True, "dsp4", False, None, (5, 7, 6)),
    (2, 2, 4, 4, False, "dsp4", False, None, (3, 5, 3)),
    (3, 2, 4, 8, True, "lut", False, None, (4, 5, 3)),
    (2, 4, 8, 8, True, "dsp2", True, 0.5, (5, 9, 11)),
    (2, 3, 8, 4, True, "none", True, 0.25, (4, 6, 9)),
    (2, 2, 8, 8, False, "dsp2", True, 0.0, (3, 4, 5)),
    (2, 2, 8, 8, True, "none", True, 1.0, (3, 4, 5)),
    (2, 3, 8, 8, True, "dot2", True, 0.5, (5, 9, 7)),   # odd K: the last int4 beat has one step
    (3, 2, 8, 8, True, "dot2", True, 0.0, (4, 8, 5)),
    (2, 2, 8, 8, True, "dot2", True, 1.0, (3, 1, 3)),
]


@pytest.mark.parametrize("rows,cols,wbits,abits,a_signed,packing,mixed,ratio8,shape", PACKED,
                         ids=[f"{p[5]}{'-mixed' + str(p[7]) if p[6] else ''}-w{p[2]}a{p[3]}{'s' if p[4] else 'u'}"
                              for p in PACKED])
def test_packed_and_mixed_engines(rows, cols, wbits, abits, a_signed, packing, mixed, ratio8, shape):
    cfg = GemmConfig(rows, cols, wbits, abits, a_signed, packing, mixed)
    case = random_gemm_case(*shape, wbits=wbits, abits=abits, a_signed=a_signed, seed=rows + cols, ratio8=ratio8)
    got = pysim_gemm(case, cfg, valid_pattern=(1, 1, 0), ready_pattern=(1, 0, 1, 1))
    assert torch.equal(got.out, ref_gemm(case).out)


def test_mixed_schedule_groups_rows_and_halves_int4_weights():
    cfg = GemmConfig(2, 4, 8, 8, packing="dsp2", mixed=True)
    case = random_gemm_case(2, 3, 10, wbits=8, abits=8, seed=1, ratio8=0.5)
    sched = schedule_gemm(case, cfg)
    w4_tiles = [t for t in sched.tiles if t.w4]
    w8_tiles = [t for t in sched.tiles if not t.w4]
    assert len(w8_tiles) == 2 and len(w4_tiles) == 2  # 5 int8 rows and 5 int4 rows, 4 columns each
    bits = case.row_bits.tolist()
    assert all(bits[ch] == 4 for t in w4_tiles for ch in t.channels if ch >= 0)
    assert all(bits[ch] == 8 for t in w8_tiles for ch in t.channels if ch >= 0)
    # An int4 tile's weight beats use only the low half of the data field.
    k = case.shape[1]
    first_w4 = sched.tiles.index(w4_tiles[0])
    assert all((beat >> 16) & 0xFFFF == 0 for beat in sched.wgt[first_w4 * k : (first_w4 + 1) * k])


@pytest.mark.parametrize("kwargs,msg", [
    ({"packing": "dsp2", "cols": 3}, "dsp2 packing needs an even number of columns, not 3"),
    ({"packing": "dsp4", "wbits": 8}, "dsp4 packing is for W4A4, not W8A4"),
    ({"packing": "dsp4", "rows": 3}, "dsp4 packing needs even rows and columns, not 3x2"),
    ({"packing": "lut", "wbits": 8}, "lut packing is for 4-bit weights, not wbits=8"),
    ({"mixed": True, "wbits": 4}, "Mixed-precision rows need 8-bit weight lanes"),
    ({"packing": "dsp8"}, "Packing must be one of none, dsp2, dsp4, lut, dot2, not 'dsp8'"),
    ({"packing": "dot2", "wbits": 8, "abits": 8}, "dot2 packing is for row-wise mixed int8/int4 weights"),
    ({"packing": "dot2", "wbits": 8, "abits": 8, "mixed": True, "a_signed": False}, "dot2 packing is for row-wise"),
])
def test_packing_validation(kwargs, msg):
    base = {"rows": 2, "cols": 2, "wbits": 4, "abits": 4}
    with pytest.raises(ValueError, match=msg):
        GemmConfig(**{**base, **kwargs})


def test_mixed_case_needs_mixed_engine():
    case = random_gemm_case(2, 2, 2, wbits=8, abits=8, seed=0, ratio8=0.5)
    with pytest.raises(ValueError, match="Case has mixed-precision rows; the engine is not mixed"):
        schedule_gemm(case, GemmConfig(2, 2, 8, 8))
    with pytest.raises(ValueError, match="the case has no row bits"):
        schedule_gemm(random_gemm_case(2, 2, 2, wbits=8, abits=8, seed=0), GemmConfig(2, 2, 8, 8, mixed=True))


def test_dot2_int4_tiles_take_half_the_beats():
    cfg = GemmConfig(2, 2, 8, 8, packing="dot2", mixed=True)
    case = random_gemm_case(2, 7, 4, wbits=8, abits=8, seed=3, ratio8=0.5)
    sched = schedule_gemm(case, cfg)
    assert len(sched.act) == len(sched.wgt) == sum(4 if t.w4 else 7 for t in sched.tiles)
    got = pysim_gemm(case, cfg)
    assert torch.equal(got.out, ref_gemm(case).out)
    # the same problem on a "none" array: every int4 tile's 7 steps take 7 beats, not 4
    slow = pysim_gemm(case, GemmConfig(2, 2, 8, 8, packing="none", mixed=True))
    assert torch.equal(slow.out, got.out)
    assert slow.cycles - got.cycles == 3 * sum(t.w4 for t in sched.tiles)


def test_dot2_extreme_products():
    """int8 tiles at -128 x -128 and int4 pairs at -128 x -8 twice: the 13-bit field's ends."""
    cfg = GemmConfig(2, 2, 8, 8, packing="dot2", mixed=True)
    case = random_gemm_case(2, 6, 4, wbits=8, abits=8, seed=5, ratio8=0.5)
    bits = case.row_bits
    case.x.fill_(-128)
    case.w[bits == 8] = -128
    case.w[bits == 4] = -8
    got = pysim_gemm(case, cfg)
    assert torch.equal(got.out, ref_gemm(case).out)


@pytest.mark.parametrize("stages", [4, 5])
@pytest.mark.parametrize("kwargs,ratio8,shape", [
    (dict(rows=3, cols=2, wbits=8, abits=8, a_signed=False), None, (4, 9, 5)),
    (dict(rows=2, cols=3, wbits=8, abits=8, packing="dot2", mixed=True), 0.5, (5, 9, 7)),
    (dict(rows=4, cols=4, wbits=8, abits=4, a_signed=True), None, (4, 1, 4)),  # K = 1: drain-bound
], ids=["u8", "dot2-mixed", "k1"])
def test_deeper_requantizers_with_backpressure(kwargs, ratio8, shape, stages):
    """4- and 5-stage requantizers in the whole engine: bit-exact with idle cycles and stalls."""
    cfg = GemmConfig(**kwargs, requant_stages=stages)
    assert cfg.tag.endswith(f"_rq{stages}")
    case = random_gemm_case(*shape, wbits=cfg.wbits, abits=cfg.abits, a_signed=cfg.a_signed, seed=stages,
                            ratio8=ratio8)
    got = pysim_gemm(case, cfg, valid_pattern=(1, 1, 0), ready_pattern=(1, 0, 1, 1, 0))
    assert torch.equal(got.out, ref_gemm(case).out)

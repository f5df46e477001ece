"""MAC array and requantizer against the integer reference, in Amaranth's simulator."""

import itertools
import random

import pytest
import torch
from amaranth import signed, unsigned

from qsilicon.hw.blocks import (
    MacArray,
    Requantizer,
    acc_row_layout,
    operand_layout,
    requant_params_layout,
    result_row_layout,
)
from qsilicon.hw.payload import pack, unpack
from qsilicon.quant import M0_BITS, SHIFT_MAX, IntFormat, requantize
from qsilicon.sim.pysim import pysim_streams


def shape_of(fmt: IntFormat):
    return signed(fmt.bits) if fmt.signed else unsigned(fmt.bits)


def chunks(seq, n):
    return [seq[i : i + n] for i in range(0, len(seq), n)]


def values(fmt: IntFormat) -> list[int]:
    return list(range(fmt.qmin, fmt.qmax + 1))


@pytest.mark.parametrize("a_fmt,w_fmt", [
    (IntFormat(4, True), IntFormat(4, True)),
    (IntFormat(8, True), IntFormat(4, True)),
    (IntFormat(8, False), IntFormat(4, True)),
    (IntFormat(4, True), IntFormat(8, True)),
    (IntFormat(4, False), IntFormat(8, True)),
], ids=["a4w4", "a8w4", "u8w4", "a4w8", "u4w8"])
def test_every_product(a_fmt, w_fmt):
    """Every (activation, weight) pair of the formats passes through a PE of the array."""
    a_vals, w_vals = values(a_fmt), values(w_fmt)
    rows, cols = 16, 16
    arr = MacArray(rows, cols, shape_of(a_fmt), shape_of(w_fmt))
    lay = operand_layout(rows, cols, shape_of(a_fmt), shape_of(w_fmt))
    beats, expect = [], []
    for a_blk in chunks(a_vals, rows):
        for w_blk in chunks(w_vals, cols):
            a = list(a_blk) + [0] * (rows - len(a_blk))
            w = list(w_blk) + [0] * (cols - len(w_blk))
            beats.append(pack(lay, {"a": a, "w": w, "last": 1}))  # K = 1: one product per PE
            expect.extend([[a[r] * w[c] for c in range(cols)] for r in range(rows)])
    outs, _ = pysim_streams(arr, {"i_op": beats}, "o_acc", len(expect), ready_pattern=(1, 1, 0))
    got = [unpack(acc_row_layout(cols), b)["data"] for b in outs]
    assert got == expect
    assert a_fmt.qmin * w_fmt.qmin in itertools.chain.from_iterable(got)


def test_accumulators_wrap_like_int32():
    """Partial sums that leave int32 and come back give the right final value (the reference's
    guarantee that only the final value must fit)."""
    rows = cols = 1
    lay = operand_layout(rows, cols, signed(8), signed(8))
    k = 2**31 // (128 * 128) + 4
    seq = [(-128, -128)] * k + [(127, -128)] * 8  # exceeds 2**31 - 1, then returns below it
    beats = [pack(lay, {"a": [a], "w": [w], "last": int(i == len(seq) - 1)}) for i, (a, w) in enumerate(seq)]
    total = sum(a * w for a, w in seq)
    assert total <= 2**31 - 1 < max(itertools.accumulate(a * w for a, w in seq))
    outs, cycles = pysim_streams(MacArray(rows, cols, signed(8), signed(8)), {"i_op": beats}, "o_acc", 1)
    assert unpack(acc_row_layout(cols), outs[0])["data"] == [total]


def test_back_to_back_tiles_do_not_stall():
    """Tiles of K >= rows beats stream without a single stall: cycles = tiles*K + latency."""
    rows, cols, k, tiles = 4, 3, 6, 5
    lay = operand_layout(rows, cols, signed(4), signed(4))
    rng = random.Random(0)
    beats, expect = [], []
    for _ in range(tiles):
        A = [[rng.randint(-8, 7) for _ in range(rows)] for _ in range(k)]
        W = [[rng.randint(-8, 7) for _ in range(cols)] for _ in range(k)]
        beats += [pack(lay, {"a": A[i], "w": W[i], "last": int(i == k - 1)}) for i in range(k)]
        expect += [[sum(A[i][r] * W[i][c] for i in range(k)) for c in range(cols)] for r in range(rows)]
    outs, cycles = pysim_streams(MacArray(rows, cols, signed(4), signed(4)), {"i_op": beats}, "o_acc", len(expect))
    assert [unpack(acc_row_layout(cols), b)["data"] for b in outs] == expect
    # 2 register stages + accumulate, then the last tile drains `rows` rows.
    assert cycles == tiles * k + 2 + rows


@pytest.mark.parametrize("packing,rows,cols", [("none", 5, 3), ("dsp2", 4, 4), ("dot2", 3, 2)])
def test_mux_and_shift_drains_agree(packing, rows, cols):
    """Both drains deliver the same rows in the same cycles: tiles shorter than ``rows`` (the
    operand stream stalls on the full drain buffer), longer ones, output backpressure, and the
    extreme operands."""
    dot = packing == "dot2"
    a_shape, w_shape = signed(8), signed(8)
    lay = operand_layout(rows, cols, a_shape, w_shape, dot=dot)
    rng = random.Random(rows * 7 + cols)
    lo_a, hi_a = -128, 127
    lo_w, hi_w = -128, 127
    beats, expect = [], []
    for k in (1, 2, rows + 3, 1, rows):
        A = [[rng.choice([lo_a, hi_a, rng.randint(lo_a, hi_a)]) for _ in range(rows)] for _ in range(k)]
        W = [[rng.choice([lo_w, hi_w, rng.randint(lo_w, hi_w)]) for _ in range(cols)] for _ in range(k)]
        fields = [{"a": A[i], "w": W[i], "last": int(i == k - 1)} for i in range(k)]
        if dot:  # int8 weights: one reduction step a beat (dot 0, a1 unused)
            fields = [{**f, "a1": [0] * rows, "dot": 0} for f in fields]
        beats += [pack(lay, f) for f in fields]
        expect += [[sum(A[i][r] * W[i][c] for i in range(k)) for c in range(cols)] for r in range(rows)]
    runs = {}
    for drain in ("mux", "shift"):
        arr = MacArray(rows, cols, a_shape, w_shape, packing, drain=drain)
        assert arr.drain == drain
        outs, cycles = pysim_streams(arr, {"i_op": beats}, "o_acc", len(expect), ready_pattern=(1, 0, 1, 1, 0))
        rows_out = [unpack(acc_row_layout(cols), b) for b in outs]
        assert [r["data"] for r in rows_out] == expect
        assert [r["last"] for r in rows_out] == [int(i % rows == rows - 1) for i in range(len(expect))]
        runs[drain] = cycles
    assert runs["mux"] == runs["shift"]
    with pytest.raises(ValueError, match="drain must be one of mux, shift, not 'fifo'"):
        MacArray(rows, cols, a_shape, w_shape, packing, drain="fifo")


def _nib(v: int) -> tuple[int, int]:
    """Low and high nibble of a byte as signed 4-bit values."""
    lo, hi = v & 15, (v >> 4) & 15
    return lo - 16 * (lo >= 8), hi - 16 * (hi >= 8)


def test_pair4_array_mixes_w4a4_pairs_and_int8_beats():
    """Precision-scalable PEs: pair beats accumulate two signed-4 x unsigned-4 products in one
    cycle, int8 x uint8 beats take two cycles; tiles mixing both, with every extreme operand byte."""
    rows, cols, k, tiles = 4, 3, 8, 6
    lay = operand_layout(rows, cols, signed(8), unsigned(8), pair=True)
    rng = random.Random(1)
    beats, expect, n_int8 = [], [], 0
    corners = [-128, 127, -8, 7, 0, -1]
    for t in range(tiles):
        A = [[rng.choice(corners + [rng.randint(-128, 127)]) for _ in range(rows)] for _ in range(k)]
        W = [[rng.choice([0, 255, 15, 240, rng.randint(0, 255)]) for _ in range(cols)] for _ in range(k)]
        P = [int(t % 3 == 0 or rng.random() < 0.5) if t % 3 != 1 else 0 for _ in range(k)]
        n_int8 += k - sum(P)
        beats += [pack(lay, {"a": A[i], "w": W[i], "last": int(i == k - 1), "pair": P[i]}) for i in range(k)]

        def prod(a, w, pair):
            if not pair:
                return a * w
            (al, ah), (wl, wh) = _nib(a), (w & 15, w >> 4)
            return al * wl + ah * wh

        expect += [[sum(prod(A[i][r], W[i][c], P[i]) for i in range(k)) for c in range(cols)] for r in range(rows)]
    arr = MacArray(rows, cols, signed(8), unsigned(8), pair4=True)
    outs, cycles = pysim_streams(arr, {"i_op": beats}, "o_acc", len(expect))
    assert [unpack(acc_row_layout(cols), b)["data"] for b in outs] == expect
    assert 0 < n_int8 < tiles * k
    assert cycles == tiles * k + n_int8 + 2 + rows  # one extra cycle per int8 beat, no other stall
    with pytest.raises(ValueError, match="pair4 PEs take signed 8-bit x unsigned 8-bit"):
        MacArray(rows, cols, signed(4), signed(4), pair4=True)


@pytest.mark.parametrize("stages", [3, 4, 5])
@pytest.mark.parametrize("out_fmt", [IntFormat(8, True), IntFormat(8, False), IntFormat(4, True), IntFormat(4, False)],
                         ids=lambda f: f.name)
def test_requantizer_matches_reference(out_fmt, stages):
    cols, rows_per_tile, tiles = 4, 3, 40
    rng = random.Random(out_fmt.bits * 2 + out_fmt.signed)
    osh = shape_of(out_fmt)
    extremes_acc = [-(2**31), 2**31 - 1, 0, -1, 1]
    acc_beats, par_beats, expect = [], [], []
    for _ in range(tiles):
        bias = [rng.choice([0, rng.randint(-(2**20), 2**20), -(2**31), 2**31 - 1]) for _ in range(cols)]
        m0 = [rng.choice([0, 2**M0_BITS - 1, rng.randint(2**15, 2**16 - 1)]) for _ in range(cols)]
        sh = [rng.choice([0, 1, SHIFT_MAX, rng.randint(0, SHIFT_MAX)]) for _ in range(cols)]
        zp = [rng.randint(out_fmt.qmin, out_fmt.qmax) for _ in range(cols)]
        lanes = zip(bias, m0, sh, zp, strict=True)
        par_beats.append(pack(requant_params_layout(cols, osh),
                              [{"bias": b, "m0": m, "shift": s, "zp": z} for b, m, s, z in lanes]))
        for r in range(rows_per_tile):
            acc = [rng.choice(extremes_acc + [rng.randint(-(2**31), 2**31 - 1)]) for _ in range(cols)]
            acc_beats.append(pack(acc_row_layout(cols), {"data": acc, "last": int(r == rows_per_tile - 1)}))
            # The hardware adds the bias with int32 wrap-around; the reference takes the sum.
            total = torch.tensor([[((a + b + 2**31) % 2**32) - 2**31 for a, b in zip(acc, bias, strict=True)]])
            expect.append(requantize(total, torch.tensor(m0), torch.tensor(sh), torch.tensor(zp), out_fmt)[0].tolist())
    outs, _ = pysim_streams(Requantizer(cols, osh, stages), {"i_acc": acc_beats, "i_par": par_beats}, "o_res",
                            len(expect), valid_pattern=(1, 0, 1), ready_pattern=(1, 1, 0, 1, 0))
    got = [unpack(result_row_layout(cols, osh), b) for b in outs]
    assert [g["data"] for g in got] == expect
    assert [g["last"] for g in got] == [int(i % rows_per_tile == rows_per_tile - 1) for i in range(len(got))]


@pytest.mark.parametrize("stages", [3, 4, 5])
@pytest.mark.parametrize("out_fmt", [IntFormat(8, True), IntFormat(8, False), IntFormat(4, True), IntFormat(4, False)],
                         ids=lambda f: f.name)
def test_requantizer_rounding_and_saturation_boundaries(out_fmt, stages):
    """Every accumulator around the saturation bounds and every rounding tie, for the extreme and
    middle zero points and shifts 0 to 3 (M0 = 1): where the 4-stage requantizer's bounds, formed
    from the zero point, and its narrow add must agree with the reference value for value."""
    cols, w = 4, out_fmt.bits
    osh = shape_of(out_fmt)
    accs = list(range(-(2 ** (w + 3)), 2 ** (w + 3) + 1))
    zps = sorted({out_fmt.qmin, out_fmt.qmax, 0, (out_fmt.qmin + out_fmt.qmax) // 2} & set(values(out_fmt)))
    acc_beats, par_beats, expect = [], [], []
    for zp in zps:
        par_beats.append(pack(requant_params_layout(cols, osh),
                              [{"bias": 0, "m0": 1, "shift": s, "zp": zp} for s in range(cols)]))
        for i, a in enumerate(accs):
            acc_beats.append(pack(acc_row_layout(cols), {"data": [a] * cols, "last": int(i == len(accs) - 1)}))
        ref = requantize(torch.tensor(accs).unsqueeze(1).expand(-1, cols), torch.ones(cols, dtype=torch.int64),
                         torch.arange(cols), torch.full((cols,), zp), out_fmt)
        expect += ref.tolist()
    outs, _ = pysim_streams(Requantizer(cols, osh, stages), {"i_acc": acc_beats, "i_par": par_beats}, "o_res",
                            len(expect))
    got = [unpack(result_row_layout(cols, osh), b)["data"] for b in outs]
    assert got == expect
    flat = list(itertools.chain.from_iterable(expect))
    assert out_fmt.qmin in flat and out_fmt.qmax in flat  # both bounds reached


def test_requantizer_rejects_bad_stages():
    with pytest.raises(ValueError, match="A requantizer has 3, 4 or 5 stages, not 6"):
        Requantizer(4, signed(8), 6)


@pytest.mark.parametrize("args,exc,msg", [
    ((0, 4, signed(4), signed(4)), ValueError, "Rows must be a positive integer, not 0"),
    ((2, -1, signed(4), signed(4)), ValueError, "Cols must be a positive integer, not -1"),
    ((2, 2, signed(1), signed(4)), ValueError, "Activation shape width must be from 2 to 16 bits, not 1"),
    ((2, 2, signed(4), "x"), TypeError, "Weight shape must be a shape, not 'x'"),
])
def test_mac_array_rejects_bad_parameters(args, exc, msg):
    with pytest.raises(exc, match=msg):
        MacArray(*args)

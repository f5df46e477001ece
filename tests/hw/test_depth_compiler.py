"""QuartDepth engine host side: ISA encoding and rules, the compiler and the instruction-set simulator
against the integer graph (bit for bit), fusion, and the errors for what does not fit."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from qsilicon.hw.depth.compiler import CompileError, compile_graph
from qsilicon.hw.depth.isa import (
    FIELDS,
    INSN_BYTES,
    OP_COMPUTE,
    OP_END,
    OP_LOAD,
    EngineConfig,
    IllegalInstruction,
    check,
    decode,
    encode,
    isa_table,
)
from qsilicon.hw.depth.iss import DeadlockError, StaleReadError, run_program
from qsilicon.quant.ptq.toy import reduced_depth_graph

SMALL = EngineConfig(co=8, px=4, max_width=16, act_depth=128, out_depth=32, wgt_depth=512, par_depth=16,
                     tab_depth=64)


@pytest.fixture(scope="module")
def toy():
    return reduced_depth_graph(seed=0)


def _run_iss(prog, ig, img, cfg):
    mem = prog.with_input(ig.image_codes(img)[0])
    stats = run_program(mem, prog.prog_addr, cfg)
    return mem, stats


def test_encode_decode_round_trip_and_field_overflow():
    insn = {"op": OP_COMPUTE, "k": 3, "stride": 2, "n_co": 5, "tag": 200, "wgt": 65535,
            "seg0": {"ch": 2047, "in_w": 64, "base": 12345}, "seg1": {"ch": 0}}
    d = decode(encode(insn))
    assert d["k"] == 3 and d["stride"] == 2 and d["tag"] == 200 and d["wgt"] == 65535
    assert d["seg0"]["ch"] == 2047 and d["seg0"]["base"] == 12345 and d["seg1"]["ch"] == 0
    assert len(encode(insn)) == INSN_BYTES
    with pytest.raises(ValueError, match="does not fit"):
        encode({"op": OP_COMPUTE, "k": 4})
    assert "COMPUTE" in isa_table() and all(f"| {op} |" in isa_table() for op in FIELDS)


@pytest.mark.parametrize("bad, msg", [
    ({"op": OP_COMPUTE, "k": 2}, "kernel"),
    ({"op": OP_COMPUTE, "stride": 3}, "stride"),
    ({"op": OP_COMPUTE, "fmt": 0, "encode": 1}, "encode needs u8"),
    ({"op": OP_COMPUTE, "n_co": 9}, "n_co"),
    ({"op": OP_COMPUTE, "seg0": {"ch": 0}}, "seg0 has no channels"),
    ({"op": OP_COMPUTE, "stride": 2, "seg1": {"ch": 1, "up": 1, "in_w": 4}}, "upsample"),
    ({"op": OP_LOAD, "mem": 1, "nbytes": 9}, "nbytes"),
    ({"op": OP_LOAD, "mode": 3}, "mode"),
    ({"op": OP_LOAD, "pop_prev": 1}, "does not exist"),
    ({"op": 7}, "unknown opcode"),
    ({"op": OP_COMPUTE, "pair": 1}, "pair needs an engine with nibble packing"),
    ({"op": OP_COMPUTE, "pair_out": 1}, "pair_out needs the u4 format"),
])
def test_illegal_instructions_are_named(bad, msg):
    good = {OP_COMPUTE: {"op": OP_COMPUTE, "k": 3, "stride": 1, "fmt": 1, "n_co": 8, "out_h": 1, "out_w": 4,
                         "seg0": {"ch": 1, "in_w": 4, "in_h": 4}, "seg1": {"ch": 0}},
            OP_LOAD: {"op": OP_LOAD, "mem": 0, "mode": 0, "nbytes": 16}}
    base = good.get(bad["op"], {})
    insn = decode(encode({**base, **bad})) if bad["op"] in FIELDS else bad
    if base:
        check(decode(encode(base)), SMALL)  # the legal one passes
    with pytest.raises(IllegalInstruction, match=msg):
        check(insn, SMALL)


@pytest.mark.parametrize("cfg", [EngineConfig(), SMALL], ids=["default", "small"])
def test_compiled_toy_network_is_bit_exact_in_the_iss(toy, cfg):
    ig, x = toy
    prog = compile_graph(ig, cfg, height=16, width=16)
    ref = ig.run(x[:2][:1], keep=True)
    mem, stats = _run_iss(prog, ig, x[:1], cfg)
    for t, v in ref.items():
        assert torch.equal(prog.read(mem, t), v), t  # every intermediate tensor, not only the output
    assert stats.dram_written == sum(p.nbytes for n, p in prog.tensors.items() if n != "img")
    assert sum(stats.beats.values()) > 0


@pytest.mark.parametrize("widths", [(8, 16), (5, 7)], ids=["even", "odd-channels"])
def test_nibble_engine_runs_w4a4_layers_in_channel_pairs(widths):
    """Uniform W4A4 layers on the nibble engine: paired tensors, half the beats, bit-exact in the ISS
    (odd channel counts leave a pair half empty); the same network on packing none is unpaired."""
    ig, x = reduced_depth_graph(seed=2, widths=widths, method="rtn", abits=4)
    nib = dataclasses.replace(SMALL, packing="nibble")
    beats = {}
    for cfg in (SMALL, nib):
        prog = compile_graph(ig, cfg, height=16, width=16)
        mem, stats = _run_iss(prog, ig, x[:1], cfg)
        for t, v in ig.run(x[:1], keep=True).items():
            assert torch.equal(prog.read(mem, t), v), (cfg.packing, t)
        beats[cfg.packing] = {layer.name: stats.beats[layer.tag] for layer in prog.layers}
        assert [layer.pair for layer in prog.layers] == [cfg is nib and 0 < i < 4 for i in range(5)]
        assert {n for n, p in prog.tensors.items() if p.paired} == ({"s0", "s1", "t1"} if cfg is nib else set())
    for name in ("d0a", "d0b", "u0"):  # channel pairs: half the beats (rounded up per segment)
        assert beats["nibble"][name] * 2 >= beats["none"][name] > beats["nibble"][name] * 1.5
    assert beats["nibble"]["stem"] == beats["none"]["stem"] and beats["nibble"]["head"] == beats["none"]["head"]
    # unfused upsampling: the identity copy of a paired tensor runs in pairs too
    cfg = dataclasses.replace(nib, act_depth=256)
    prog = compile_graph(ig, cfg, height=16, width=16, fuse=False)
    mem, _ = _run_iss(prog, ig, x[:1], cfg)
    assert torch.equal(prog.read(mem), ig.forward(x[:1])) and any(p.pair and p.name.endswith("_up")
                                                                   for p in prog.layers)


def test_iss_counts_the_engines_memory_accesses():
    """Reads and writes of each on-chip memory (the access power's input): operands, weights and
    tables once per beat (tables only when decoding), parameters once per drained row, ``out``
    written once per channel row (a pair per row with pair_out) and read once per stored row,
    each load's words written once."""
    ig, x = reduced_depth_graph(seed=2, widths=(5, 7), method="rtn", abits=4)
    for cfg in (SMALL, dataclasses.replace(SMALL, packing="nibble")):
        prog = compile_graph(ig, cfg, height=16, width=16)
        _, stats = _run_iss(prog, ig, x[:1], cfg)
        beats = sum(stats.beats.values())
        computes = [i for i in prog.insns if i["op"] == OP_COMPUTE]
        tiles = [i["out_h"] * -(-i["out_w"] // cfg.px) for i in computes]
        s = stats.sram
        assert s["act"][0] == s["wgt"][0] == beats and s["tab"][0] == 0  # uniform codes: no decode
        assert s["par"][0] == sum(tiles) * cfg.co
        rows = [-(-i["n_co"] // 2) if i["pair_out"] else i["n_co"] for i in computes]
        assert s["out"][1] == sum(t * r for t, r in zip(tiles, rows, strict=True))
        stores = [i for i in prog.insns if i["op"] == 3]
        assert s["out"][0] == sum(i["dram"]["n0"] * i["dram"]["n1"] for i in stores)
        loaded = sum(i["dram"]["n0"] * i["dram"]["n1"] for i in prog.insns if i["op"] == OP_LOAD and i["mem"] == 0)
        assert s["act"][1] == loaded  # one act row per (channel or pair, input row)
        assert (cfg.packing == "nibble") == any(i["pair_out"] for i in computes)
    ig, x = reduced_depth_graph(seed=0)  # polished: decode tables read with every beat of the decoding layers
    prog = compile_graph(ig, SMALL, height=16, width=16)
    _, stats = _run_iss(prog, ig, x[:1], SMALL)
    assert stats.sram["tab"][0] == sum(stats.beats[layer.tag] for layer in prog.layers
                                       if any(i["op"] == OP_COMPUTE and i["tag"] == layer.tag and i["decode"]
                                              for i in prog.insns)) > 0


def test_access_counts_from_the_instructions_equal_the_iss():
    """The search's energy model counts the memories' accesses from the instruction fields alone
    (no data): equal to what the ISS counts while executing, on compiled programs (polished and
    uniform codes, int8 and nibble engines) and on random legal programs."""
    from qsilicon.hw.depth.isa import INSN_BYTES, OP_END, decode
    from qsilicon.hw.depth.iss import program_accesses
    from qsilicon.sim.depth import random_program

    for seed, method in ((0, "quartdepth"), (2, "rtn")):
        ig, x = reduced_depth_graph(seed=seed, widths=(5, 7), method=method, abits=4)
        for cfg in (SMALL, dataclasses.replace(SMALL, packing="nibble")):
            prog = compile_graph(ig, cfg, height=16, width=16)
            _, stats = _run_iss(prog, ig, x[:1], cfg)
            assert program_accesses(prog.insns, cfg) == stats.sram
    nibble = dataclasses.replace(SMALL, packing="nibble")
    for seed in range(6):
        cfg = nibble if seed % 2 else SMALL
        mem, pa = random_program(cfg, seed)
        insns, pc = [], pa
        while (i := decode(mem[pc : pc + INSN_BYTES]))["op"] != OP_END:
            insns.append(i)
            pc += INSN_BYTES
        stats = run_program(bytearray(mem), pa, cfg, strict=False)  # random bands: stale reads are allowed
        assert program_accesses(insns, cfg) == stats.sram
        assert stats.sram["act"][1] > 0 and stats.sram["out"][0] > 0


def test_paired_tensor_round_trip():
    from qsilicon.hw.depth.compiler import TensorPlace, _write_tensor

    t = TensorPlace("x", 0, channels=5, height=3, width=9, bits=4, paired=True)
    assert t.slots == 3 and t.row_bytes == 16 and t.nbytes == 3 * 3 * 16
    codes = torch.randint(0, 16, (5, 3, 9))
    mem = bytearray(t.nbytes)
    _write_tensor(mem, t, codes)
    assert mem[0] == codes[0, 0, 0] | codes[1, 0, 0] << 4 and mem[2 * 48] == codes[4, 0, 0]  # high nibble empty
    prog = compile_graph(*reduced_depth_graph(seed=0)[:1], SMALL, height=16, width=16)
    prog.tensors["x"] = t
    assert torch.equal(prog.read(mem, "x")[0], codes)


def test_small_buffers_force_bands_and_groups(toy):
    ig, _ = toy
    big = compile_graph(ig, EngineConfig(), height=16, width=16)
    small = compile_graph(ig, SMALL, height=16, width=16)
    assert all(b.band_rows == min(8, 16 // ig.nodes[i].stride) for i, b in enumerate(big.layers))  # out_depth / co
    assert sum(b.jobs for b in small.layers) > sum(b.jobs for b in big.layers)
    assert max(b.band_rows for b in small.layers) < 16


def test_unfused_upsampling_is_equal_and_costs_traffic(toy):
    ig, x = toy
    cfg = EngineConfig(co=8, px=4, max_width=16, act_depth=256, par_depth=16)
    with pytest.raises(CompileError, match="u0: one output row needs 72 act words"):  # the 2x tensor is bigger
        compile_graph(ig, SMALL, height=16, width=16, fuse=False)
    fused = compile_graph(ig, cfg, height=16, width=16)
    unfused = compile_graph(ig, cfg, height=16, width=16, fuse=False)
    assert any(layer.name.endswith("_up") for layer in unfused.layers)
    m1, s1 = _run_iss(fused, ig, x[:1], cfg)
    m2, s2 = _run_iss(unfused, ig, x[:1], cfg)
    assert torch.equal(fused.read(m1), unfused.read(m2))
    assert torch.equal(fused.read(m1), ig.forward(x[:1]))
    assert s2.dram_read + s2.dram_written > s1.dram_read + s1.dram_written


def test_real_network_w4a8_is_bit_exact_in_the_iss():
    ig, x = reduced_depth_graph(seed=3, widths=(16, 32, 48), size=32, method="rtn", abits=8)
    assert {t.kind for t in ig.tensors.values()} == {"uniform", "output"}
    cfg = EngineConfig(co=8, px=8, max_width=32, act_depth=512, par_depth=16)
    prog = compile_graph(ig, cfg, height=32, width=32)
    mem, _ = _run_iss(prog, ig, x[:1], cfg)
    assert torch.equal(prog.read(mem), ig.forward(x[:1]))


def test_what_does_not_fit_is_named(toy):
    ig, _ = toy
    with pytest.raises(CompileError, match="max_width"):
        compile_graph(ig, SMALL, height=32, width=32)
    with pytest.raises(CompileError, match="act_depth"):
        compile_graph(ig, EngineConfig(co=8, px=4, max_width=16, act_depth=16, par_depth=16), height=16, width=16)
    with pytest.raises(CompileError, match="wgt_depth"):
        compile_graph(ig, EngineConfig(co=8, px=4, max_width=16, wgt_depth=64, par_depth=16), height=16, width=16)
    with pytest.raises(ValueError, match="co must be one of"):
        EngineConfig(co=5)


def test_iss_catches_deadlock_and_stale_reads(toy):
    ig, x = toy
    prog = compile_graph(ig, SMALL, height=16, width=16)
    mem = prog.with_input(ig.image_codes(x[:1])[0])
    first_compute = next(i for i, ins in enumerate(prog.insns) if ins["op"] == OP_COMPUTE)
    # drop the compute's "data ready" token from the loads before it: it can never start
    bad = bytearray(mem)
    for i in range(first_compute):
        d = decode(bad[i * INSN_BYTES : (i + 1) * INSN_BYTES])
        d["push_next"] = 0
        bad[i * INSN_BYTES : (i + 1) * INSN_BYTES] = encode(d)
    with pytest.raises(DeadlockError, match="ld2cp"):
        run_program(bad, 0, SMALL)
    # make the compute believe its band starts one row later: it reads rows no LOAD wrote
    bad = bytearray(mem)
    d = decode(bad[first_compute * INSN_BYTES : (first_compute + 1) * INSN_BYTES])
    d["seg0"]["band"] -= 1
    d["seg0"]["row0"] += 1
    bad[first_compute * INSN_BYTES : (first_compute + 1) * INSN_BYTES] = encode(d)
    with pytest.raises(StaleReadError):
        run_program(bad, 0, SMALL)
    # an END-only program is fine; an unknown opcode is illegal
    assert run_program(bytearray(encode({"op": OP_END})), 0, SMALL).insns == 1
    with pytest.raises(IllegalInstruction, match="opcode"):
        run_program(bytearray(b"\x0f" + bytes(31)), 0, SMALL)


def test_area_table_counts_gate_equivalents():
    from qsilicon.hw.synth import GE_PER_CELL, area_estimate

    a = area_estimate({"$_NAND_": 1000, "$_XOR_": 500, "$_DFF_P_": 100, "$_SDFFE_PP0P_": 10, "$mem_v2": 3}, 8192)
    ge = 1000 * GE_PER_CELL["$_NAND_"] + 500 * GE_PER_CELL["$_XOR_"] + 100 * GE_PER_CELL["dff"] \
        + 10 * GE_PER_CELL["dff_en_or_reset"]
    assert a["kGE"] == round(ge / 1e3, 1) and a["sram_bits"] == 8192 and a["total_mm2"] > a["logic_mm2"] > 0

"""The QuartDepth engine's RTL (cocotb on Verilator, AXI4 memory model with stalls, AXI4-Lite host):
compiled networks bit-exact against the integer graph and the instruction-set simulator, random
legal programs equal to the ISS, illegal instructions stopping with the sticky error bit."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from qsilicon.hw.depth.compiler import compile_graph
from qsilicon.hw.depth.isa import INSN_BYTES, OP_COMPUTE, OP_END, OP_LOAD, EngineConfig, decode, encode
from qsilicon.hw.depth.iss import run_program
from qsilicon.quant.ptq.toy import reduced_depth_graph
from qsilicon.sim.depth import random_program, rtl_run

SMALL = EngineConfig(co=8, px=4, max_width=16, act_depth=128, out_depth=32, wgt_depth=512, par_depth=16,
                     tab_depth=64)
CKPT = Path(__file__).resolve().parents[2] / "checkpoints" / "depth_synth.pt"


def _check_network(ig, img, cfg, height, width, ready_p, seed):
    prog = compile_graph(ig, cfg, height=height, width=width)
    mem = prog.with_input(ig.image_codes(img)[0])
    iss = bytearray(mem)
    run_program(iss, prog.prog_addr, cfg)
    rtl = rtl_run(cfg, mem, prog.prog_addr, ready_p=ready_p, seed=seed)
    ref = ig.run(img, keep=True)
    for t, v in ref.items():
        assert torch.equal(prog.read(rtl.memory, t), v), f"{t} differs from the integer graph"
    assert rtl.memory == bytes(iss), "the RTL's memory image differs from the ISS's"
    assert rtl.regs["INSNS"] == len(prog.insns)
    assert rtl.regs["BEATS"] == sum(rtl.beats_by_tag.values())
    print(f"\n{cfg.tag}: {rtl.cycles} cycles, {rtl.regs['BEATS']} MAC beats")
    for layer in prog.layers:
        busy = rtl.busy_by_tag.get(layer.tag, 0)
        print(f"  {layer.name:<6} {busy:>8} cycles  PE utilization {layer.macs / (busy * cfg.macs):6.1%}")
    return prog, rtl


@pytest.mark.parametrize("method, abits, packing", [
    ("polish", 4, "none"), ("rtn", 8, "none"), ("rtn", 4, "nibble"),
    pytest.param("polish", 4, "dsp2", marks=pytest.mark.slow),  # another build; the lane is tested exhaustively
], ids=["w4a4-polished", "w4a8", "w4a4-uniform-nibble", "w4a4-dsp2"])
def test_reduced_network_bit_exact_on_verilator_with_stalls(method, abits, packing):
    widths = (5, 7) if packing == "nibble" else (8, 16)  # odd channel counts: half-empty pairs
    ig, x = reduced_depth_graph(seed=0, widths=widths, method=method, abits=abits)
    cfg = SMALL if packing == "none" else dataclasses.replace(SMALL, packing=packing)
    prog, rtl = _check_network(ig, x[:1], cfg, 16, 16, ready_p=0.6, seed=5)
    assert rtl.cycles > rtl.regs["BEATS"]  # bubbles between tiles and AXI stalls cost cycles
    assert rtl.regs["RD_WORDS"] * 8 >= sum(p.nbytes for p in prog.tensors.values() if p.name != "out") // 2
    if packing == "nibble":  # the hidden W4A4 layers ran in pairs, the 8-bit edge layers did not
        assert [layer.pair for layer in prog.layers] == [False, True, True, True, False]
        assert any(p.paired for p in prog.tensors.values())


def test_nibble_engine_random_programs_with_pairs_agree_with_the_iss():
    cfg = dataclasses.replace(SMALL, packing="nibble")
    pairs = 0
    for seed in range(4):
        mem, pa = random_program(cfg, 100 + seed)
        pairs += sum(1 for i in range(0, pa + 40 * INSN_BYTES, INSN_BYTES)
                     if mem[i] & 15 == OP_COMPUTE and decode(bytes(mem[i : i + INSN_BYTES]))["pair"])
        iss = bytearray(mem)
        run_program(iss, pa, cfg, strict=False)
        rtl = rtl_run(cfg, mem, pa, ready_p=0.7, seed=seed)
        diff = [i for i in range(len(iss)) if iss[i] != rtl.memory[i]]
        assert not diff, f"seed {seed}: {len(diff)} bytes differ, first at {diff[0]:#x}"
    assert pairs >= 4


def test_random_legal_programs_agree_with_the_iss():
    wrote = 0
    for seed in range(5):
        mem, pa = random_program(SMALL, seed)
        iss = bytearray(mem)
        run_program(iss, pa, SMALL, strict=False)
        rtl = rtl_run(SMALL, mem, pa, ready_p=0.7, seed=seed)
        diff = [i for i in range(len(iss)) if iss[i] != rtl.memory[i]]
        assert not diff, f"seed {seed}: {len(diff)} bytes differ, first at {diff[0]:#x}"
        wrote += sum(1 for a, b in zip(mem, iss, strict=True) if a != b)
    assert wrote > 300  # the programs did store results (a few hundred bytes over the seeds)


@pytest.mark.parametrize("bad, cause", [({"op": 9}, 1), ({"op": OP_COMPUTE, "k": 2, "stride": 1}, 2),
                                        ({"op": OP_LOAD, "mem": 1, "nbytes": 60}, 2)])
def test_illegal_instruction_sets_the_sticky_error_and_stops(bad, cause):
    good = {"op": OP_LOAD, "mem": 0, "nbytes": 8, "dram": {"base": 256, "run": 1, "n0": 1, "n1": 1}}
    mem = bytearray(512)
    raw = [encode(good), (encode(bad) if bad["op"] != 9 else bytes([9]) + bytes(31)), encode(good),
           encode({"op": OP_END})]
    for i, r in enumerate(raw):
        mem[i * INSN_BYTES : (i + 1) * INSN_BYTES] = r
    rtl = rtl_run(SMALL, mem, 0, expect_error=True)
    assert rtl.error_cause == cause
    assert rtl.regs["INSNS"] == 1 and rtl.regs["PC"] == INSN_BYTES  # stopped at the bad one


@pytest.mark.slow
def test_whole_depth_network_bit_exact_on_verilator():
    """The trained 64x64 network (270k parameters), W4A4 polished, on the default engine."""
    from qsilicon.quant.depth_data import depth_split
    from qsilicon.quant.models.depthnet import load_depth
    from qsilicon.quant.ptq import fold_depthnet, method_config, quantize_graph
    from qsilicon.quant.ptq.export import export_graph

    model, _ = load_depth(CKPT)
    xc, dc = depth_split("calib", 16)
    ig = export_graph(quantize_graph(fold_depthnet(model), xc, dc, method_config("polish", 4, 4)))
    xt, _ = depth_split("test", 1)
    _, rtl = _check_network(ig, xt[:1], EngineConfig(), 64, 64, ready_p=1.0, seed=0)
    assert rtl.regs["BEATS"] / rtl.cycles > 0.9

"""The ViT accelerator's GEMM unit in Amaranth's simulator, its readers and writer modelled in
Python: every GEMM descriptor of a compiled model gives the memory the ISS gives."""

from __future__ import annotations

import random

import pytest
import torch
from amaranth.sim import Simulator

from qsilicon.hw.blocks.axi import addr_pattern_layout, pattern_bursts
from qsilicon.hw.config import AccelConfig
from qsilicon.hw.payload import pack, unpack
from qsilicon.hw.vit.gemm_unit import GemmUnit, gemm_desc_layout
from qsilicon.hw.vit.iss import _gemm, _Mem
from qsilicon.hw.vit.system import DESC_BYTES, OP_GEMM, descriptor_layout


def run_gemm_unit(cfg: AccelConfig, desc: dict, image: bytearray, *, valid_p=1.0, ready_p=1.0, seed=0,
                  max_cycles=200_000) -> int:
    """Run one GEMM descriptor on the unit; the words it writes go into ``image``; cycles."""
    dut = GemmUnit(cfg)
    L = cfg.lanes
    rng = random.Random(seed)
    state = {"cycles": None}

    def words_of(cfg_bits):
        pat = unpack(addr_pattern_layout(), cfg_bits)
        return [int.from_bytes(image[a + i * L : a + (i + 1) * L], "little")
                for a, beats in pattern_bursts(pat, L) for i in range(beats)]

    async def bench(ctx):
        queues = {"x": [], "w": [], "p": [], "f": []}
        ports = {"x": dut.i_x, "w": dut.i_w, "p": dut.i_p, "f": dut.i_f}
        cfgs = {"x": dut.x_cfg, "w": dut.w_cfg, "p": dut.p_cfg, "f": dut.f_cfg}
        starts = {"x": dut.x_start, "w": dut.w_start, "p": dut.p_start, "f": dut.f_start}
        ctx.set(dut.desc.as_value(), pack(gemm_desc_layout(), desc))
        ctx.set(dut.w_done, 1)
        ctx.set(dut.p_done, 1)
        ctx.set(dut.x_done, 1)
        ctx.set(dut.start, 1)
        started = False
        for cycle in range(max_cycles):
            for name in queues:
                if ctx.get(starts[name]):
                    queues[name] += words_of(ctx.get(cfgs[name].as_value()))
            for name, port in ports.items():
                offer = bool(queues[name]) and (valid_p >= 1 or rng.random() < valid_p)
                ctx.set(port.valid, offer)
                if queues[name]:
                    ctx.set(port.payload, queues[name][0])
            ctx.set(dut.o_word.ready, ready_p >= 1 or rng.random() < ready_p)
            await ctx.delay(1e-9)
            for name, port in ports.items():
                if ctx.get(port.valid) and ctx.get(port.ready):
                    queues[name].pop(0)
            if ctx.get(dut.o_word.valid) and ctx.get(dut.o_word.ready):
                a = ctx.get(dut.o_word.payload.addr)
                image[a : a + L] = ctx.get(dut.o_word.payload.data).to_bytes(L, "little")
            await ctx.tick()
            ctx.set(dut.start, 0)
            if started and not ctx.get(dut.busy):
                assert not any(queues.values()), {k: len(v) for k, v in queues.items()}
                state["cycles"] = cycle
                return
            started = started or ctx.get(dut.busy)
        raise TimeoutError(f"the GEMM unit did not finish in {max_cycles} cycles")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return state["cycles"]


def _model_program(cfg: AccelConfig):
    from qsilicon.hw.vit.compiler import compile_vit
    from qsilicon.quant.models.int_vit import IntViT
    from qsilicon.quant.models.vit import ViT, ViTConfig

    torch.manual_seed(0)
    model = ViT(ViTConfig(dim=32, depth=1, heads=2, mlp=64, head_dim=16)).eval()
    calib = torch.rand(64, 1, 28, 28)
    iv = IntViT(model, calib, "mixed", 0.5)
    prog = compile_vit(iv, cfg, fuse_gelu=False)  # the unit alone: a fused GELU is the system's (element-wise unit)
    return prog, prog.with_input(prog.input_codes(torch.rand(1, 1, 28, 28))[0])


@pytest.mark.parametrize("cfg,which", [
    (AccelConfig(8, 8, "dsp2", 8, 8, 8), ("embed", "b0.qkv", "b0.qk0", "b0.av0", "b0.fc2", "head")),
    (AccelConfig(16, 32, "none", 8, 1, 8), ("b0.qkv", "b0.av1", "b0.fc1")),   # streamed column tiles (1 KiB ring)
])
def test_gemm_descriptors_match_the_iss(cfg, which):
    from qsilicon.hw.vit.iss import run_program

    prog, image = _model_program(cfg)
    lay = descriptor_layout()
    ran = 0
    # run the ISS descriptor by descriptor; the GEMMs named in `which` also on the unit, from the same memory
    for info in prog.ops:
        at = prog.program + info.index * DESC_BYTES
        d = unpack(lay, int.from_bytes(image[at : at + DESC_BYTES], "little"))
        if d["vec"]["op"] == OP_GEMM and info.name in which:
            rtl = bytearray(image)
            run_gemm_unit(cfg, d["gemm"], rtl, valid_p=0.8, ready_p=0.7, seed=info.index)
            _gemm(_Mem(image, cfg.lanes), d["gemm"], cfg)
            assert rtl == image, info.name
            ran += 1
        else:
            one = bytearray(image)
            one[at + DESC_BYTES : at + 2 * DESC_BYTES] = bytes(DESC_BYTES)  # END after this descriptor
            run_program(one, at, cfg)
            nxt = slice(at + DESC_BYTES, at + 2 * DESC_BYTES)
            one[nxt] = image[nxt]  # the program itself is left as it was
            image[:] = one
    assert ran == len(which)

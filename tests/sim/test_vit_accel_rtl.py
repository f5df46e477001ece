"""The whole ViT accelerator on Verilator: errors stop it with a sticky cause and never hang, the run
after an error (or a reset) is right; bigger designs run the trained model bit-exact (slow)."""

from __future__ import annotations

import pytest
import torch

from qsilicon.hw.config import AccelConfig
from qsilicon.hw.payload import pack, unpack
from qsilicon.hw.vit.compiler import compile_vit
from qsilicon.hw.vit.iss import run_program
from qsilicon.hw.vit.system import (
    CAUSE_ABUF,
    CAUSE_GEMM,
    CAUSE_OPCODE,
    CAUSE_READ,
    CAUSE_STALL,
    CAUSE_VECTOR,
    CAUSE_WRITE,
    DESC_BYTES,
    descriptor_layout,
)
from qsilicon.quant.models.int_vit import IntViT
from qsilicon.quant.models.vit import ViT, ViTConfig
from qsilicon.sim.runner import SimulationError
from qsilicon.sim.vit_accel import rtl_vit

SMALL = AccelConfig(8, 8, "dsp2", 8, 8, 8, 100.0)


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    model = ViT(ViTConfig(dim=32, depth=1, heads=2, mlp=64, head_dim=16)).eval()
    iv = IntViT(model, torch.rand(64, 1, 28, 28), "mixed", 0.5)
    prog = compile_vit(iv, SMALL)
    images = torch.rand(2, 1, 28, 28)
    return iv, prog, images, prog.input_codes(images), iv.logits(images)


def _patched(prog, name: str, **fields) -> tuple[bytes, int]:
    """The program's image with descriptor ``name``'s fields changed."""
    info = next(o for o in prog.ops if o.name == name)
    image = bytearray(prog.memory.data)
    at = prog.program + info.index * DESC_BYTES
    lay = descriptor_layout()
    d = unpack(lay, int.from_bytes(image[at : at + DESC_BYTES], "little"))
    view = "gemm" if info.kind == "gemm" else "vec"
    d[view].update(fields)
    image[at : at + DESC_BYTES] = pack(lay, {view: d[view]}).to_bytes(DESC_BYTES, "little")
    return bytes(image), info.index


def _ok(res, expect) -> bool:
    return not res.error and res.status & 2 and res.logits == expect.tolist()


@pytest.mark.parametrize("fault,cause", [({"read_error": 30}, CAUSE_READ), ({"write_error": 12}, CAUSE_WRITE)])
def test_axi_error_responses_stop_the_run_and_the_next_run_is_right(small, fault, cause):
    _, prog, _, codes, expect = small
    run = rtl_vit(prog, codes, faults=fault, max_cycles=200_000).results
    assert run[0].error and run[0].cause == cause and run[0].ops < len(prog.ops)
    assert _ok(run[1], expect[1])


def test_illegal_descriptors_stop_with_their_cause_at_their_descriptor(small):
    _, prog, _, codes, expect = small
    cases = [("b0.add2", {"op": 15}, CAUSE_OPCODE), ("b0.qkv", {"k": 0}, CAUSE_GEMM),
             ("b0.fc1", {"n_out": 10_000}, CAUSE_GEMM), ("b0.proj", {"mt": 40}, CAUSE_ABUF),
             ("b0.fc1", {"wide": 1}, CAUSE_GEMM),  # GELU fused into int16 outputs
             ("b0.ln1", {"buf": 1}, CAUSE_VECTOR)]  # rows through a row buffer this design does not have
    for name, fields, cause in cases:
        image, index = _patched(prog, name, **fields)
        res = rtl_vit(prog, codes[:1], image=image, max_cycles=200_000).results[0]
        assert res.error and res.cause == cause and res.ops == index, (name, res)


def test_gelu_fused_into_fc1_same_results_fewer_cycles(small):
    """GELU fused into fc1's GEMM (the compiler's default) and as its own descriptor after fc1
    (``fuse_gelu=False``): the same logits and, where both programs write, the same memory (the
    ISS's); the fused fc1 takes a few cycles more than the plain one (the element-wise unit's
    pipeline), the GELU descriptor it replaces far more."""
    iv, prog, _, codes, expect = small
    plain = compile_vit(iv, SMALL, fuse_gelu=False)
    runs = [rtl_vit(p, codes[:1], dump=True) for p in (prog, plain)]
    for p, run in zip((prog, plain), runs, strict=True):
        assert _ok(run.results[0], expect[0])
        image = p.with_input(codes[0])
        run_program(image, p.program, SMALL)
        log = range(p.log, p.log + len(p.ops) * SMALL.lanes)
        assert all(image[a] == run.images[0][a] for a in range(len(image)) if a not in log)
    assert len(plain.ops) == len(prog.ops) + 1
    assert torch.equal(prog.read_tensor("b0.gelu", runs[0].images[0]), plain.read_tensor("b0.gelu", runs[1].images[0]))
    fused, sep = ({o.name: c for o, c in zip(p.ops, r.results[0].op_cycles, strict=True)}
                  for p, r in zip((prog, plain), runs, strict=True))
    assert 0 < fused["b0.fc1"] - sep["b0.fc1"] < 16 < sep["b0.gelu"]
    assert runs[0].results[0].cycles < runs[1].results[0].cycles


def test_a_program_that_would_hang_trips_the_watchdog(small):
    """A writer pattern with no words leaves the row unit's results nowhere: no progress, and the
    watchdog (2,000 idle cycles here) stops the run with cause 7; a long memory stall below the
    limit does not."""
    _, prog, _, codes, expect = small
    image, index = _patched(prog, "b0.ln2", wr={"base": 0, "run": 0, "n0": 1, "s0": 0, "n1": 1, "s1": 0, "n2": 1,
                                                 "s2": 0})
    res = rtl_vit(prog, codes[:1], image=image, watchdog=2000, max_cycles=200_000).results[0]
    assert res.error and res.cause == CAUSE_STALL and res.ops == index
    res = rtl_vit(prog, codes[:1], faults={"stall": (3000, 1500)}, watchdog=2000, max_cycles=200_000).results[0]
    assert _ok(res, expect[0])


def test_reset_in_the_middle_of_a_run_then_a_right_run(small):
    _, prog, _, codes, expect = small
    run = rtl_vit(prog, codes, faults={"reset_at": 4000}, max_cycles=200_000).results
    assert not run[0].status & 2  # never done: reset
    assert _ok(run[1], expect[1])


def test_random_backpressure_same_result_more_cycles(small):
    _, prog, _, codes, expect = small
    fast = rtl_vit(prog, codes[:1]).results[0]
    slow = rtl_vit(prog, codes[:1], ready_p=0.6, seed=3).results[0]
    assert _ok(fast, expect[0]) and _ok(slow, expect[0]) and slow.cycles > fast.cycles


@pytest.mark.slow
@pytest.mark.parametrize("tag", ["r16c32_dsp2_l16_w8k_a8k_200mhz", "r16c64_none_l8_w1k_a8k_100mhz",
                                 "r32c64_dsp2_l16_w64k_a16k_200mhz"])
def test_trained_vit_whole_on_bigger_designs(tag):
    """The trained Fashion-MNIST ViT (4 blocks, mixed rows) on larger arrays, 16 lanes, and weight
    tiles streamed through a 1 KiB ring: two images bit-exact, the memory equal to the ISS's."""
    from qsilicon.quant.datasets import fashion_mnist
    from qsilicon.quant.models.vit import load

    x, _ = fashion_mnist("train")
    xt, _ = fashion_mnist("test")
    model, _ = load("checkpoints/vit_fmnist.pt")
    iv = IntViT(model, x[:1000], "mixed", 0.5)
    cfg = AccelConfig.from_tag(tag)
    prog = compile_vit(iv, cfg)
    codes = prog.input_codes(xt[:2])
    run = rtl_vit(prog, codes, dump=True)
    expect = iv.logits(xt[:2])
    log = range(prog.log, prog.log + len(prog.ops) * cfg.lanes)
    for i, res in enumerate(run.results):
        assert _ok(res, expect[i])
        image = prog.with_input(codes[i])
        run_program(image, prog.program, cfg)
        assert all(image[a] == run.images[i][a] for a in range(len(image)) if a not in log)


def _whole_run(iv, cfg, images):
    """One image through the whole model on ``cfg``'s RTL: logits bit-exact, memory equal to the
    ISS's, the counters equal to the ISS's counts (the RTL's also hold the END descriptor's fetch and
    the cycle log's word per descriptor), cycles within 3% of the latency model's."""
    from qsilicon.search.accel import int_vit_workload, predict

    prog = compile_vit(iv, cfg)
    codes = prog.input_codes(images)
    run = rtl_vit(prog, codes, dump=True)
    res = run.results[0]
    assert _ok(res, iv.logits(images)[0])
    image = prog.with_input(codes[0])
    stats = run_program(image, prog.program, cfg)
    log = range(prog.log, prog.log + len(prog.ops) * cfg.lanes)
    assert all(image[a] == run.images[0][a] for a in range(len(image)) if a not in log)
    assert res.mac_beats == sum(stats.mac_beats)
    assert res.rd_words == sum(stats.read_words) + DESC_BYTES // cfg.lanes, (res.rd_words, sum(stats.read_words))
    assert res.wr_words == sum(stats.write_words) + len(prog.ops), (res.wr_words, sum(stats.write_words))
    pred = predict(cfg, int_vit_workload(iv, cfg), 0.0).cycles
    assert abs(res.cycles - pred) <= 0.03 * res.cycles, (cfg.tag, res.cycles, pred)
    return prog, res


def test_dot2_design_runs_int4_rows_two_steps_a_beat():
    """A dot2 array: int4 rows take half the beats; the whole model bit-exact (logits and memory equal
    to the ISS's), its array beats the ISS's count, its cycles within 3% of the latency model's and
    fewer than on the same array with plain lanes."""
    torch.manual_seed(0)
    model = ViT(ViTConfig(dim=32, depth=1, heads=2, mlp=64, head_dim=16)).eval()
    iv = IntViT(model, torch.rand(64, 1, 28, 28), "mixed", 0.25)
    images = torch.rand(1, 1, 28, 28)
    cycles = {}
    for packing in ("dot2", "none"):
        _, res = _whole_run(iv, AccelConfig(8, 8, packing, 8, 8, 8, 100.0), images)
        cycles[packing] = (res.cycles, res.mac_beats)
    assert cycles["dot2"][1] < cycles["none"][1] and cycles["dot2"][0] < cycles["none"][0], cycles


def test_row_buffer_reads_rows_once():
    """A design with a row buffer: LayerNorm and Shiftmax rows are read once (passes 2 and 3 from
    the buffer, pass 1 of the next token block beside them); the whole model bit-exact (logits and
    memory equal to the ISS's), the words read equal to the ISS's count, every LayerNorm and
    Shiftmax descriptor faster than on the same design without the buffer (LayerNorm by 20%, the
    final one, of one token block, by 15%); the
    program refused by the host on the design without the buffer (its INFO registers);
    rows longer than the buffer stop the run as an illegal vector descriptor."""
    torch.manual_seed(0)
    model = ViT(ViTConfig(dim=64, depth=1, heads=2, mlp=64, head_dim=16)).eval()
    iv = IntViT(model, torch.rand(64, 1, 28, 28), "mixed", 0.5)
    images = torch.rand(1, 1, 28, 28)
    runs = {rowbuf: _whole_run(iv, AccelConfig(8, 8, "dsp2", 8, 8, 8, 100.0, rowbuf), images) for rowbuf in (64, 0)}
    (prog, buffered), (_, streamed) = runs[64], runs[0]
    ln = [o.index for o in prog.ops if o.kind == "layernorm"]
    sm = [o.index for o in prog.ops if o.kind == "softmax"]
    assert len(ln) == 3 and len(sm) == 2
    # (Shiftmax rows of 17 tokens: the divider, ~70 cycles a token block, is most of either; the final
    # LayerNorm has one token block, the class token's, so no block of it overlaps another's)
    assert all(buffered.op_cycles[i] < 0.8 * streamed.op_cycles[i] for i in ln[:-1]), \
        [(buffered.op_cycles[i], streamed.op_cycles[i]) for i in ln]
    assert buffered.op_cycles[ln[-1]] < 0.85 * streamed.op_cycles[ln[-1]], \
        [(buffered.op_cycles[i], streamed.op_cycles[i]) for i in ln]
    assert all(buffered.op_cycles[i] < streamed.op_cycles[i] for i in sm), \
        [(buffered.op_cycles[i], streamed.op_cycles[i]) for i in sm]
    assert buffered.rd_words < streamed.rd_words
    image, index = _patched(prog, "b0.ln2", k=65)  # longer than the 64-element buffer
    res = rtl_vit(prog, prog.input_codes(images), image=image, max_cycles=200_000).results[0]
    assert res.error and res.cause == CAUSE_VECTOR and res.ops == index
    # the program on the design without the buffer: the host reads INFO/INFO2 and refuses to load it
    with pytest.raises(SimulationError, match="ValueError: the program was compiled for r8c8_dsp2_l8_w8k_a8k_rb64, "
                                              "the accelerator is r8c8_dsp2_l8_w8k_a8k "):
        rtl_vit(prog, prog.input_codes(images), design=AccelConfig(8, 8, "dsp2", 8, 8, 8, 100.0))

"""A whole encoder block of the trained ViT on the accelerator's RTL (Verilator, AXI4 memory
model, AXI4-Lite control): every intermediate ``torch.equal`` to the integer-only model."""

from pathlib import Path

import pytest
import torch

from qsilicon.hw.vit.program import build_block_program
from qsilicon.quant.datasets import fashion_mnist
from qsilicon.quant.models.int_vit import IntViT
from qsilicon.quant.models.vit import load
from qsilicon.sim.vit import rtl_vit_block

CHECKPOINT = Path(__file__).resolve().parents[2] / "checkpoints" / "vit_fmnist.pt"


def _int_vit(precision):
    x, _ = fashion_mnist("train")
    xt, _ = fashion_mnist("test")
    model, _ = load(CHECKPOINT)
    return IntViT(model, x[:500], precision, 0.5), xt


def test_block0_w8a8_bit_exact_with_memory_stalls():
    iv, xt = _int_vit("w8a8")
    prog = build_block_program(iv, 0, iv.embed_tokens(xt[:1])[0])
    res = rtl_vit_block(prog, ready_p=0.8, seed=3)
    for name, want in prog.expected.items():
        assert torch.equal(res.got[name], want), name
    assert res.ok and len(res.op_cycles) == len(prog.ops) == 23
    assert all(c > 0 for _, _, c in res.op_cycles) and res.cycles > sum(c for _, _, c in res.op_cycles)


def test_a_corrupted_weight_is_caught():
    """Change one int8 weight of the Q projection in the memory image only: the RTL's q differs
    from the model, and so does everything downstream of it."""
    iv, xt = _int_vit("w8a8")
    prog = build_block_program(iv, 1, iv.embed_tokens(xt[1:2])[0])
    addr, _ = prog.memory.regions["q.w"]
    prog.memory.data[addr] ^= 0x40
    res = rtl_vit_block(prog)
    assert not res.ok
    assert res.mismatches["ln1"] == 0 and res.mismatches["k"] == 0 and res.mismatches["q"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["w8a8", "w4a8", "mixed"])
def test_every_block_every_precision(precision):
    iv, xt = _int_vit(precision)
    t = iv.embed_tokens(xt[2:3])[0]
    for i in range(len(iv.blocks)):
        prog = build_block_program(iv, i, t)
        res = rtl_vit_block(prog)
        assert res.ok, (i, res.mismatches)
        t = res.got["out"]
    ref = iv.embed_tokens(xt[2:3])
    for i in range(len(iv.blocks)):
        ref = iv._block(i, ref)
    assert torch.equal(t, ref[0])


def test_bad_program_requests():
    iv, xt = _int_vit("w8a8")
    with pytest.raises(ValueError, match="Block must be from 0 to 3"):
        build_block_program(iv, 4, iv.embed_tokens(xt[:1])[0])
    with pytest.raises(ValueError, match="Lanes must be 8 or 16"):
        build_block_program(iv, 0, iv.embed_tokens(xt[:1])[0], lanes=4)

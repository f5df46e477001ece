"""The ViT block accelerator's latency model against RTL cycle counts."""

import json
import math

import pytest
import torch

from qsilicon.search import vit_latency as vl


def test_stored_model_is_the_fit_of_the_stored_data():
    rows = json.loads(vl.CYCLES.read_text())
    train, _ = vl.split(rows)
    fitted, stored = vl.fit(train), vl.load_model()
    for kind, coef in stored.items():
        assert all(math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9) for a, b in zip(coef, fitted[kind], strict=True))


def test_held_out_errors():
    """Held-out shapes (odd-numbered in the data): every block within 3%, operations within 2% on
    average, and every operation of 300 cycles or more within 5%."""
    rows = json.loads(vl.CYCLES.read_text())
    _, held = vl.split(rows)
    errs = vl.errors(held, vl.load_model())
    ops = [e for e in errs if e["kind"] != "block"]
    assert len(ops) >= 20 and len({e["shape"] for e in errs}) >= 5
    assert max(e["error"] for e in errs if e["kind"] == "block") <= 0.03
    assert sum(e["error"] for e in ops) / len(ops) <= 0.02
    assert all(e["error"] <= 0.05 for e in ops if e["measured"] >= 300), [e for e in ops if e["error"] > 0.05]


def test_a_new_shape_on_the_rtl():
    """A block shape absent from the data (10 tokens, dim 48, 3 heads, MLP 96) on Verilator: the
    predicted block total within 3% of the measured one."""
    from qsilicon.hw.vit.program import build_block_program
    from qsilicon.quant.models.int_vit import IntViT
    from qsilicon.quant.models.vit import ViT, ViTConfig
    from qsilicon.sim.vit import rtl_vit_block

    torch.manual_seed(1)
    cfg = ViTConfig(image=12, patch=4, dim=48, depth=1, heads=3, mlp=96, head_dim=16)
    calib = torch.rand(16, 1, 12, 12)
    iv = IntViT(ViT(cfg).eval(), calib, "w8a8")
    res = rtl_vit_block(build_block_program(iv, 0, iv.embed_tokens(calib[:1])[0]))
    assert res.ok
    total, per = vl.vit_block_cycles(10, 48, 3, 16, 96, 8)
    assert [n for n, _, _ in per] == [n for n, _, _ in res.op_cycles]
    assert abs(total - res.cycles) / res.cycles <= 0.03, (total, res.cycles)


def test_bad_shapes():
    with pytest.raises(ValueError, match="lanes must be 8 or 16"):
        vl.block_ops(17, 64, 4, 16, 128, 4)
    with pytest.raises(ValueError, match="mlp 72 is not a multiple of the lanes"):
        vl.block_ops(17, 48, 3, 16, 72, 16)

"""The fast fixture: a tiny ViT of a different shape trained on scikit-learn's digits in seconds,
its integer-only twin, and one of its encoder blocks on the accelerator's RTL."""

import pytest
import torch

from qsilicon.hw.vit.program import build_block_program
from qsilicon.quant.datasets import digits
from qsilicon.quant.models.int_vit import IntViT
from qsilicon.quant.models.vit import ViT, ViTConfig, evaluate, fake_quantize, train
from qsilicon.sim.vit import rtl_vit_block

CFG = ViTConfig(image=8, patch=2, dim=32, depth=2, heads=2, mlp=64, classes=10, head_dim=16, block_heads=(2, 3),
                block_mlp=(64, 48))


@pytest.fixture(scope="module")
def tiny():
    x, y = digits("train")
    xt, yt = digits("test")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = ViT(CFG)
    train(model, x, y, epochs=12, seed=0, batch=64, log=lambda *_: None)
    return model, x, xt, yt


def test_tiny_vit_learns_and_integer_twin_tracks_fake_quant(tiny):
    """200 test images, so one image is 0.5 points: the integer model must stay within 2 points
    (4 images) of fake-quant on this small split; the 1-point bound is checked on 2,000
    Fashion-MNIST images in test_vit.py."""
    model, x, xt, yt = tiny
    fp = evaluate(model, xt, yt)
    assert fp > 85.0, fp
    fq = evaluate(fake_quantize(model, x[:500], "w8a8"), xt, yt)
    iv = IntViT(model, x[:500], "w8a8")
    assert abs(iv.accuracy(xt, yt) - fq) <= 2.0


def test_tiny_vit_block_on_rtl(tiny):
    """Dim 32, 3 heads of 16 (attention wider than the embedding), MLP 48: another program for the
    same accelerator, bit-exact."""
    model, x, xt, _ = tiny
    iv = IntViT(model, x[:500], "w8a8")
    t = iv._block(0, iv.embed_tokens(xt[:1]))[0]
    prog = build_block_program(iv, 1, t)
    res = rtl_vit_block(prog)
    assert res.ok, res.mismatches
    assert torch.equal(res.got["out"], prog.expected["out"]) and len(prog.ops) == 11 + 3 * 3  # 3 heads


def test_digits_split():
    x, y = digits("train")
    xt, yt = digits("test")
    assert x.shape == (1597, 1, 8, 8) and xt.shape == (200, 1, 8, 8) and set(yt.tolist()) == set(range(10))
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    with pytest.raises(ValueError, match="'train' or 'test'"):
        digits("val")

"""The fast fixture: a tiny ViT of a different shape trained on scikit-learn's digits in seconds,
its integer-only twin, and the whole model on a generated accelerator's RTL."""

import pytest
import torch

from qsilicon.quant.datasets import digits
from qsilicon.quant.models.int_vit import IntViT
from qsilicon.quant.models.vit import ViT, ViTConfig, evaluate, fake_quantize, train

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


def test_tiny_vit_whole_on_rtl(tiny):
    """Dim 32, blocks of 2 and 3 heads of 16 (attention wider than the embedding), MLPs of 64 and 48,
    8x8 images of 2x2 patches: the whole model compiles for a small design and runs bit-exact on its
    RTL for two images (logits ``torch.equal``, the memory after each run byte-equal to the ISS's),
    the cycles within 5% of the latency model's."""
    from qsilicon.hw.config import AccelConfig
    from qsilicon.hw.vit.compiler import compile_vit
    from qsilicon.hw.vit.iss import run_program
    from qsilicon.search.accel import int_vit_workload, predict
    from qsilicon.sim.vit_accel import rtl_vit

    model, x, xt, _ = tiny
    iv = IntViT(model, x[:500], "mixed", 0.5)
    cfg = AccelConfig(8, 8, "dsp2", 8, 8, 8, 100.0)
    prog = compile_vit(iv, cfg)
    codes = prog.input_codes(xt[:2])
    run = rtl_vit(prog, codes, dump=True)
    expect = iv.logits(xt[:2])
    log = range(prog.log, prog.log + len(prog.ops) * cfg.lanes)
    for i, res in enumerate(run.results):
        assert not res.error and res.ops == len(prog.ops)
        assert torch.equal(torch.tensor(res.logits), expect[i].to(torch.int64))
        image = prog.with_input(codes[i])
        run_program(image, prog.program, cfg)
        assert all(image[a] == run.images[i][a] for a in range(len(image)) if a not in log)
        assert res.op_cycles and sum(res.op_cycles) < res.cycles
    pred = predict(cfg, int_vit_workload(iv, cfg), 0.0).cycles
    assert abs(pred - run.results[0].cycles) / run.results[0].cycles < 0.05


def test_digits_split():
    x, y = digits("train")
    xt, yt = digits("test")
    assert x.shape == (1597, 1, 8, 8) and xt.shape == (200, 1, 8, 8) and set(yt.tolist()) == set(range(10))
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    with pytest.raises(ValueError, match="'train' or 'test'"):
        digits("val")

"""The Fashion-MNIST ViT: data, deterministic training, the committed checkpoint, fake-quant."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from qsilicon.quant.datasets import fashion_mnist
from qsilicon.quant.models.vit import ViT, ViTConfig, evaluate, fake_quantize, load, train

CHECKPOINT = Path(__file__).resolve().parents[2] / "checkpoints" / "vit_fmnist.pt"


@pytest.fixture(scope="module")
def data():
    x, y = fashion_mnist("train")
    xt, yt = fashion_mnist("test")
    return x, y, xt, yt


def test_dataset(data):
    x, y, xt, yt = data
    assert x.shape == (60000, 1, 28, 28) and xt.shape == (10000, 1, 28, 28)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert torch.bincount(y).tolist() == [6000] * 10 and torch.bincount(yt).tolist() == [1000] * 10
    with pytest.raises(FileNotFoundError, match="apt-get install -y dataset-fashion-mnist"):
        fashion_mnist("train", root=Path("/nonexistent"))


def test_training_learns_and_is_deterministic(data):
    x, y, xt, yt = data
    cfg = ViTConfig(dim=32, depth=1, heads=2, mlp=64)
    models = []
    for _ in range(2):
        torch.manual_seed(3)
        m = ViT(cfg)
        train(m, x[:5000], y[:5000], epochs=2, seed=3, log=lambda *_: None)
        models.append(m)
    assert all(torch.equal(a, b) for a, b in zip(models[0].state_dict().values(), models[1].state_dict().values(),
                                                  strict=True))
    assert evaluate(models[0], xt[:1000], yt[:1000]) > 55.0  # chance is 10%


def test_checkpoint_and_fake_quant(data):
    x, _, xt, yt = data
    model, meta = load(CHECKPOINT)
    assert meta["dataset"] == "fashion-mnist" and meta["test_accuracy"] > 85.0
    xs, ys = xt[:2000], yt[:2000]
    fp32 = evaluate(model, xs, ys)
    w8a8 = evaluate(fake_quantize(model, x[:1000], "w8a8"), xs, ys)
    mixed = evaluate(fake_quantize(model, x[:1000], "mixed", 0.5), xs, ys)
    assert fp32 > 85.0
    assert abs(w8a8 - fp32) <= 1.0
    assert mixed > 80.0
    with pytest.raises(ValueError, match="Precision must be one of fp32, w8a8, w4a8, mixed, not 'w2a2'"):
        fake_quantize(model, x[:10], "w2a2")


def test_cli_eval_json():
    p = subprocess.run([sys.executable, "-m", "qsilicon.flow", "eval", "vit", "--precision", "w4a8", "--limit", "500",
                        "--json"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["precision"] == "w4a8" and r["images"] == 500 and 0 <= r["accuracy"] <= 100
    bad = subprocess.run([sys.executable, "-m", "qsilicon.flow", "eval", "vit", "--precision", "w8a8", "--ratio8",
                          "0.5"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--ratio8 goes with --precision mixed" in bad.stderr


@pytest.mark.parametrize("precision", ["w8a8", "w4a8", "mixed"])
def test_integer_only_within_one_point_of_fake_quant(data, precision):
    """The integer-only ViT (integer softmax, LayerNorm, GELU, requantization everywhere) is
    within 1 percentage point of its fake-quant twin on 2,000 test images."""
    from qsilicon.quant.models.int_vit import IntViT

    x, _, xt, yt = data
    model, _ = load(CHECKPOINT)
    xs, ys = xt[:2000], yt[:2000]
    iv = IntViT(model, x[:1000], precision, 0.5)
    integer = iv.accuracy(xs, ys)
    fake = evaluate(fake_quantize(model, x[:1000], precision, 0.5), xs, ys)
    assert abs(integer - fake) <= 1.0, (integer, fake)
    logits = iv.logits(xs[:4])
    assert logits.dtype == torch.int64 and logits.shape == (4, 10)

"""The Quasar-ViT supernet: search space and subnet specs, entanglement, training steps, export."""

import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from qsilicon.quant.datasets import digits
from qsilicon.quant.models.int_vit import IntViT
from qsilicon.quant.models.vit import ViT, evaluate, fake_quantize, train
from qsilicon.quant.supernet import (
    SearchSpace,
    Subnet,
    SuperViT,
    export_subnet,
    kendall_tau,
    load_supernet,
    save_supernet,
    train_supernet,
)

ROOT = Path(__file__).resolve().parents[2]
TINY = SearchSpace(depths=(1, 2), dims=(16, 32), heads=(1, 2), mlp_ratios=(1.0, 2.0), image=8, patch=2)


def test_default_space_is_the_yaml():
    assert SearchSpace.from_yaml(ROOT / "configs" / "vit_space.yaml") == SearchSpace()


@pytest.mark.parametrize("bad,msg", [
    ({"dims": [64, 32]}, "dims must be a non-empty increasing list"),
    ({"mlp_ratios": [1.3]}, "is not a multiple of 8"),
    ({"ratios8": [0, 1.5]}, "ratios8 must be an increasing list in"),
    ({"heads": []}, "heads must be a non-empty"),
    ({"depth": [2]}, "unknown key 'depth'"),
])
def test_space_errors_name_the_key(bad, msg):
    with pytest.raises(ValueError, match=msg):
        SearchSpace.from_dict(bad)


def test_subnet_spec_round_trip_and_errors():
    sp = SearchSpace()
    rng = random.Random(0)
    for _ in range(20):
        s = sp.sample(rng)
        assert Subnet.parse(s.spec, sp) == s
    assert Subnet.parse("largest", sp) == sp.largest()
    s = Subnet.parse("depth=2,dim=48,heads=3,mlp=72,r8=0.5", sp)
    assert s.heads == (3, 3) and s.mlp == (72, 72) and s.ratio8 == (0.5,) * 8
    for spec, msg in [("depth=5,dim=48,heads=3,mlp=72,r8=0.5", "depth 5 is not in the space"),
                      ("depth=2,dim=48,heads=3,mlp=64,r8=0.5", "subnet mlp"),
                      ("depth=2,dim=48,heads=3,mlp=72", "missing r8="),
                      ("depth=2,dim=48,heads=3,mlp=72,r8=0.3", "subnet r8"),
                      ("depth=two,dim=48,heads=3,mlp=72,r8=1", "values must be numbers")]:
        with pytest.raises(ValueError, match=msg):
            Subnet.parse(spec, sp)


@pytest.mark.parametrize("layer_scale", [False, True])
def test_weight_entanglement_slices_one_store(layer_scale):
    """A subnet's float forward is a plain ViT made of the leading slices of the one weight store
    (layer scales folded): same logits up to float summation order (1e-5)."""
    torch.manual_seed(0)
    sv = SuperViT(TINY, layer_scale=layer_scale).eval()
    for b in sv.blocks:
        if layer_scale:
            torch.nn.init.normal_(b.g1, 1.0, 0.3)
    s = Subnet(2, 16, (1, 2), (32, 16), (1.0,) * 8)
    vit = export_subnet(sv, s, quant=False).model
    img = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(sv(img, s, quant=False), vit(img), atol=1e-5)
    assert torch.equal(vit.blocks[1].fc1.weight, sv.blocks[1].fc1.weight[:16, :16].detach())
    assert torch.equal(vit.blocks[0].qkv.weight[16:32], sv.blocks[0].qkv.weight[32:48, :16].detach())  # k of head 0


def test_mixed_precision_entanglement_shares_the_weight():
    sv = SuperViT(TINY)
    lin = sv.blocks[0].fc1
    w8, _, q8, s8, b8 = lin.quantized(slice(0, 32), 32, 1.0)
    w4, _, q4, s4, b4 = lin.quantized(slice(0, 32), 32, 0.0)
    assert (b8 == 8).all() and (b4 == 4).all() and q8.abs().max() <= 127 and q4.abs().max() <= 7
    # both precisions are quantized from the same weight: each within half a step of it
    assert ((w8 - lin.weight[:32]).abs() <= s8[:, None] / 2 + 1e-7).all()
    assert ((w4 - lin.weight[:32]).abs() <= s4[:, None] / 2 + 1e-7).all()
    half = lin.quantized(slice(0, 32), 32, 0.5)[4]
    assert int((half == 8).sum()) == 16
    assert SuperViT(TINY, entangle=False).blocks[0].fc1.weight4 is not None


def test_tiny_supernet_trains_exports_and_matches_its_integer_twin(tmp_path):
    """The real flow at a small scale: a ViT of the largest shape trained on digits seeds the
    store, a few sandwich epochs train every subnet, export matches its integer twin."""
    x, y = digits("train")
    xt, yt = digits("test")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        vit = ViT(TINY.largest().vit_config(TINY))
        train(vit, x, y, epochs=12, seed=0, batch=64, log=lambda *_: None)
        sv = SuperViT(TINY)
    sv.load_vit(vit)
    before = sv.accuracy(TINY.smallest(), xt, yt)
    train_supernet(sv, x, y, epochs=4, seed=0, batch=64, lr=1e-3, log=lambda *_: None)
    assert sv.accuracy(TINY.largest(), xt, yt) > 80.0
    assert sv.accuracy(TINY.smallest(), xt, yt) > before + 10
    save_supernet(sv, tmp_path / "sn.pt", {"test": True})
    sv2, meta = load_supernet(tmp_path / "sn.pt")
    assert meta == {"test": True}
    s = Subnet(2, 32, (2, 1), (32, 64), (1.0, 0.5, 0.25, 0.0, 0.75, 0.5, 1.0, 0.0))
    assert sv2.accuracy(s, xt, yt) == sv.accuracy(s, xt, yt)
    ex = export_subnet(sv2, s)
    # The exported float model with fake-quantized activations is the subnet's forward.
    fq = fake_quantize(ex.model, x[:500], "mixed", keep_weights=True)
    iv = IntViT(ex.model, x[:500], "mixed", weights=ex.weights)
    fq_acc, int_acc = evaluate(fq, xt, yt), iv.accuracy(xt, yt)
    assert abs(fq_acc - int_acc) <= 2.0  # 200 images: 1 image is 0.5 points (see test_digits_fixture)
    bits = ex.weights["b0.qkv"][2]
    assert int((bits == 8).sum()) == round(1.0 * bits.numel()) and int((ex.weights["b0.fc2"][2] == 8).sum()) == 0
    for name, (q, scale, b) in ex.weights.items():
        lim = torch.where(b == 8, 127, 7)[:, None]
        assert (q.abs() <= lim).all() and (scale > 0).all(), name
    # The exported integer subnet runs whole on a generated design's RTL, bit-exact (blocks of 2 and 1
    # heads, MLPs of 32 and 64, int4 rows and mixed layers: the feature map scatters grouped columns).
    from qsilicon.hw.config import AccelConfig
    from qsilicon.hw.vit.compiler import compile_vit
    from qsilicon.sim.vit_accel import rtl_vit

    prog = compile_vit(iv, AccelConfig(8, 8, "dsp2", 8, 8, 8, 100.0))
    res = rtl_vit(prog, prog.input_codes(xt[:1])).results[0]
    assert not res.error and res.logits == iv.logits(xt[:1])[0].tolist()


def test_kendall_tau():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    with pytest.raises(ValueError):
        kendall_tau([1], [1])


def test_cli_supernet_bad_input(tmp_path):
    def run(*a):
        return subprocess.run([sys.executable, "-m", "qsilicon.flow", *a], capture_output=True, text=True)

    p = run("supernet", "eval", "--subnet", "largest", "--checkpoint", str(tmp_path / "none.pt"))
    assert p.returncode == 2 and "run 'qsilicon supernet train' first" in p.stderr
    bad = tmp_path / "space.yaml"
    bad.write_text("dims: [64, 32]\n")
    p = run("supernet", "train", "--space", str(bad), "-o", str(tmp_path / "x.pt"))
    assert p.returncode == 2 and "dims must be a non-empty increasing list" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize("spec", ["smallest", "depth=3,dim=48,heads=4-3-2,mlp=96-72-48,r8=0.5",
                                  "depth=4,dim=64,heads=4,mlp=128,r8=0.25"])
def test_committed_supernet_exports_within_one_point(spec):
    """The committed supernet (bench/supernet.py): an exported subnet's integer-only model is within
    1 point of its fake-quant twin on 2,000 Fashion-MNIST test images (the integer-ViT bound)."""
    from qsilicon.quant.datasets import fashion_mnist

    sv, meta = load_supernet(ROOT / "checkpoints" / "supernet_fmnist.pt")
    assert meta["init"] == "vit_fmnist.pt"
    x, _ = fashion_mnist("train")
    xt, yt = fashion_mnist("test")
    xs, ys = xt[:2000], yt[:2000]
    ex = export_subnet(sv, Subnet.parse(spec, sv.space))
    fq = evaluate(fake_quantize(ex.model, x[:1000], "mixed", keep_weights=True), xs, ys)
    integer = IntViT(ex.model, x[:1000], "mixed", weights=ex.weights).accuracy(xs, ys)
    assert abs(fq - integer) <= 1.0, (fq, integer)
    assert integer > 80.0

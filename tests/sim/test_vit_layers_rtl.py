"""Linear layers of the trained Fashion-MNIST ViT, with the integer model's real activations, run
on the GEMM engine's RTL: bit-exact with the integer-only model's own layer outputs."""

from pathlib import Path

import pytest
import torch

from qsilicon.hw.config import GemmConfig
from qsilicon.quant import ref_gemm
from qsilicon.quant.datasets import fashion_mnist
from qsilicon.quant.models.int_vit import IntViT
from qsilicon.quant.models.vit import load
from qsilicon.sim.gemm import rtl_gemm

CHECKPOINT = Path(__file__).resolve().parents[2] / "checkpoints" / "vit_fmnist.pt"


@pytest.mark.parametrize("precision,cfg,layers", [
    ("w8a8", GemmConfig(8, 8, 8, 8, packing="dsp2"), ["b0.qkv", "b2.proj"]),
    ("mixed", GemmConfig(8, 8, 8, 8, packing="dsp2", mixed=True), ["b0.fc1", "b3.fc2"]),
], ids=["w8a8", "mixed"])
def test_vit_layers_on_rtl(precision, cfg, layers):
    x, _ = fashion_mnist("train")
    xt, _ = fashion_mnist("test")
    model, _ = load(CHECKPOINT)
    iv = IntViT(model, x[:500], precision, 0.5)
    trace: dict = {}
    iv.logits(xt[:2], trace)
    for name in layers:
        case = iv.gemm_case(name, trace[f"{name}.in"])
        layer_out = trace[f"{name}.out"].reshape(case.shape[0], case.shape[2])
        assert torch.equal(ref_gemm(case).out.to(torch.int64), layer_out)
        assert torch.equal(rtl_gemm(case, cfg, sim="verilator", valid_p=0.9, ready_p=0.8).out.to(torch.int64),
                           layer_out)


def test_unknown_layer():
    x, _ = fashion_mnist("train")
    model, _ = load(CHECKPOINT)
    with pytest.raises(ValueError, match="Unknown layer 'b9.fc1'"):
        IntViT(model, x[:100], "w8a8").linear_layer("b9.fc1")

"""The library baseline of the ablation: PyTorch's own FX post-training quantization flow
(``torch.ao.quantization.quantize_fx.prepare_fx``: conv-BN-ReLU fusion, observers, fake-quant),
configured to the same precision as ours: per-channel symmetric ``wbits`` weights (min-max
observer), unsigned ``abits`` activations (PyTorch's default histogram observer, which searches the
clipping range by its own L2 criterion), first and last layers 8-bit."""

from __future__ import annotations

import copy

import torch

__all__ = ["torch_fx_ptq"]


def _qconfig(wbits: int, abits: int):
    """Fake-quantizers: per-channel symmetric weights, unsigned per-tensor activations."""
    from torch.ao.quantization import FakeQuantize, HistogramObserver, PerChannelMinMaxObserver, QConfig

    act = FakeQuantize.with_args(observer=HistogramObserver, quant_min=0, quant_max=2**abits - 1,
                                 dtype=torch.quint8, qscheme=torch.per_tensor_affine)
    wq = 2 ** (wbits - 1) - 1
    wt = FakeQuantize.with_args(observer=PerChannelMinMaxObserver, quant_min=-wq, quant_max=wq, dtype=torch.qint8,
                                qscheme=torch.per_channel_symmetric, ch_axis=0)
    return QConfig(activation=act, weight=wt)


@torch.no_grad()
def torch_fx_ptq(model: torch.nn.Module, calib: torch.Tensor, wbits: int, abits: int, *, first: str = "stem",
                 before_last: str = "up.2", last: str = "head", batch: int = 32) -> torch.nn.Module:
    """A fake-quantized copy of ``model`` calibrated on ``calib`` (observers see float activations,
    then are frozen)."""
    from torch.ao.quantization import (
        QConfig,
        QConfigMapping,
        disable_fake_quant,
        disable_observer,
        enable_fake_quant,
    )
    from torch.ao.quantization.quantize_fx import prepare_fx

    m = copy.deepcopy(model).eval()
    mapping = (QConfigMapping().set_global(_qconfig(wbits, abits))
               .set_module_name(first, _qconfig(8, 8)).set_module_name(last, _qconfig(8, 8))
               # the last layer's input is the output of the one before: 8-bit activations there
               .set_module_name(before_last, QConfig(_qconfig(8, 8).activation, _qconfig(wbits, abits).weight)))
    pm = prepare_fx(m, mapping, example_inputs=(calib[:1],))
    pm.apply(disable_fake_quant)
    for i in range(0, len(calib), batch):
        pm(calib[i : i + batch])
    pm.apply(disable_observer)
    pm.apply(enable_fake_quant)
    return pm.eval()

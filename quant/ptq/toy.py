"""A reduced depth network, quantized on the spot: what fast tests and ``qsilicon verify depth``
(without ``--model``) run through the compiler and the engine.

Random weights (seeded; batch-norm statistics perturbed so the folded biases are not trivial),
calibrated on random images, QuartDepth activation polishing at W4A4 (first/last layers W8A8): the
integer graph has every tensor kind the engine handles (8-bit input, polished 4-bit codes, a
uniform 8-bit tensor before the head, the int16 output), strided and upsampled convolutions and
a skip concatenation.
"""

from __future__ import annotations

import torch

from ..models.depthnet import DepthConfig, DepthNet
from .export import IntGraph, export_graph
from .graph import fold_depthnet
from .pipeline import method_config, quantize_graph

__all__ = ["reduced_depth_graph"]


def reduced_depth_graph(seed: int = 0, widths: tuple = (8, 16), size: int = 16, method: str = "polish",
                        abits: int = 4, calib: int = 8) -> tuple[IntGraph, torch.Tensor]:
    """``(integer graph, images [calib, 3, size, size])`` of a random ``widths`` depth network."""
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = DepthNet(DepthConfig(widths)).eval()
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.copy_(torch.rand(mod.num_features, generator=g) * 0.4 - 0.2)
            mod.running_var.copy_(torch.rand(mod.num_features, generator=g) * 1.5 + 0.5)
    x = torch.floor(torch.rand(calib, 3, size, size, generator=g) * 256).clamp(max=255) / 255
    qg = quantize_graph(fold_depthnet(model), x, None, method_config(method, 4, abits, seed=seed))
    return export_graph(qg), x

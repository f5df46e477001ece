"""A CNN as a list of convolution nodes: what post-training quantization, the integer export and the
QuartDepth compiler work on.

Each :class:`ConvNode` reads the channel concatenation of one or more named tensors (each optionally
2x nearest-upsampled first), convolves (square kernel, stride, "same" padding ``k // 2``), adds a bias
and applies ReLU or not, and writes one named tensor.  Batch norm is folded into the weights and the
bias (:func:`fold_depthnet`), so the graph has no other operators: concatenation and nearest upsampling
are data movement, exact on integers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["INPUT", "ConvNode", "channels", "consumers", "fold_conv_bn", "fold_depthnet", "im2col", "run_graph",
           "upsample2x"]

INPUT = "img"


def upsample2x(v: torch.Tensor) -> torch.Tensor:
    """Nearest 2x upsampling of ``[B, C, H, W]`` (float or integer: pure data movement)."""
    return v.repeat_interleave(2, -2).repeat_interleave(2, -1)


@dataclass
class ConvNode:
    name: str
    inputs: tuple[tuple[str, bool], ...]  # (tensor, upsample 2x before concatenation)
    output: str
    weight: torch.Tensor  # [N, C, k, k]
    bias: torch.Tensor  # [N]
    stride: int = 1
    relu: bool = True

    @property
    def kernel(self) -> int:
        return self.weight.shape[-1]

    def gather(self, env: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = []
        for t, up in self.inputs:
            v = env[t]
            parts.append(upsample2x(v) if up else v)
        return parts[0] if len(parts) == 1 else torch.cat(parts, 1)

    def conv(self, x: torch.Tensor, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None):
        w = self.weight if weight is None else weight
        b = self.bias if bias is None else bias
        return F.conv2d(x, w.to(x.dtype), b.to(x.dtype), self.stride, self.kernel // 2)


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> tuple[torch.Tensor, torch.Tensor]:
    w = conv.weight.detach().to(torch.float64)
    b = (conv.bias.detach().to(torch.float64) if conv.bias is not None
         else torch.zeros(w.shape[0], dtype=torch.float64))
    if bn is not None:
        g = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
        w = w * g[:, None, None, None]
        b = (b - bn.running_mean.double()) * g + bn.bias.detach().double()
    return w.float(), b.float()


def fold_depthnet(model) -> list[ConvNode]:
    """The :class:`~qsilicon.quant.models.depthnet.DepthNet` as folded conv nodes, in execution order:
    ``stem``, ``d{i}a`` (stride 2) / ``d{i}b``, ``u{j}`` (upsampled deeper tensor ++ skip), ``head``."""
    nodes = []

    def cbr(name, seq, inputs, out):
        w, b = fold_conv_bn(seq[0], seq[1])
        nodes.append(ConvNode(name, inputs, out, w, b, seq[0].stride[0], True))

    cbr("stem", model.stem, ((INPUT, False),), "s0")
    for i, d in enumerate(model.down):
        cbr(f"d{i}a", d[0], ((f"s{i}", False),), f"t{i + 1}")
        cbr(f"d{i}b", d[1], ((f"t{i + 1}", False),), f"s{i + 1}")
    deep = f"s{len(model.down)}"
    for j, u in enumerate(model.up):
        skip = f"s{len(model.down) - 1 - j}"
        cbr(f"u{j}", u, ((deep, True), (skip, False)), f"u{j}")
        deep = f"u{j}"
    w, b = fold_conv_bn(model.head, None)
    nodes.append(ConvNode("head", ((deep, False),), "out", w, b, 1, False))
    return nodes


def consumers(nodes: list[ConvNode]) -> dict[str, list[tuple[ConvNode, int]]]:
    """``tensor -> [(node, channel offset of the tensor in the node's input)]``."""
    out: dict[str, list] = {}
    for n in nodes:
        off = 0
        for t, _ in n.inputs:
            out.setdefault(t, []).append((n, off))
            off += channels(nodes, t)
    return out


def channels(nodes: list[ConvNode], tensor: str) -> int:
    """Channels of a named tensor."""
    for n in nodes:
        if n.output == tensor:
            return n.weight.shape[0]
    if tensor == INPUT:
        return nodes[0].weight.shape[1]
    raise KeyError(tensor)


def run_graph(nodes: list[ConvNode], img: torch.Tensor, *, weights: dict | None = None,
              quant: dict | None = None, capture_inputs: set | None = None, stop_after: str | None = None):
    """Run the graph on float images; ``weights[name] = (w, b)`` overrides a node's parameters,
    ``quant[tensor]`` (a callable on pre-activations, ReLU included) quantizes a tensor where it is
    produced (``quant["img"]`` applies to the input).  Returns ``(env, captured)``, ``captured[name]``
    the float input of each node named in ``capture_inputs``."""
    weights, quant, capture_inputs = weights or {}, quant or {}, capture_inputs or set()
    env = {INPUT: quant[INPUT](img) if INPUT in quant else img}
    captured = {}
    for n in nodes:
        x = n.gather(env)
        if n.name in capture_inputs:
            captured[n.name] = x
        w, b = weights.get(n.name, (None, None))
        y = n.conv(x, w, b)
        if n.output in quant:
            env[n.output] = quant[n.output](y)
        else:
            env[n.output] = F.relu(y) if n.relu else y
        if n.name == stop_after:
            break
    return env, captured


def im2col(x: torch.Tensor, node: ConvNode) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[C k k, B Ho Wo]`` columns of ``node``'s convolution (zero padding)."""
    k = node.kernel
    cols = F.unfold(x, k, padding=k // 2, stride=node.stride)  # [B, C k k, L]
    return cols.permute(1, 0, 2).reshape(cols.shape[1], -1)

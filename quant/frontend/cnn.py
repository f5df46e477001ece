"""A captured CNN graph -> the conv-node graph (:mod:`qsilicon.quant.ptq.graph`) that QuartDepth's
post-training quantization, the integer export and the depth engine's compiler work on.

Recognised: convolutions (square odd kernel, "same" padding ``k // 2``, any stride, no dilation or
groups), batch norm after a convolution (folded into it), ReLU, nearest 2x upsampling, channel
concatenation of such tensors (a U-Net's skips) and identity residual adds before a ReLU (one
convolution over its input and the skip side by side, the skip's weights the identity).  Every
tensor a layer reads must come out of a ReLU (the engine's activations are unsigned); the last
convolution may have a ReLU or not.  timm models with train-time branches (RepVGG, MobileOne) are
reparameterized by the source loader before capture.  Strided or projected skips, pooling,
depthwise convolutions and the rest are an :class:`UnsupportedModelError` naming the node and its
source line.  The mapped graph is run beside the captured program on random images and must agree
to float32 round-off (:data:`RTOL`).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import torch

from ..ptq.graph import INPUT, ConvNode, run_graph
from .errors import UnsupportedModelError
from .errors import unsupported as _bad
from .source import ImportedSource
from .walk import GraphWalker, captured_outputs, operator_census

__all__ = ["RTOL", "CnnImport", "import_cnn"]

aten = torch.ops.aten

#: Tolerance of the numerical check relative to the largest output: batch norm is folded into the
#: weights (a different float32 rounding of the same product), ~1e-6 relative per layer.
RTOL = 1e-4
SUPPORTED = ("conv2d (square odd kernel, padding k // 2, no groups or dilation)", "batch_norm after a convolution",
             "relu", "nearest 2x upsampling", "cat along channels", "identity residual add before a ReLU",
             "and dropout in eval / contiguous / clone")
_PASS = {aten.dropout.default, aten.contiguous.default, aten.clone.default, aten.alias.default, aten.detach.default,
         operator.getitem}


@dataclass
class CnnImport:
    nodes: list[ConvNode]
    spec: str
    input_shape: tuple[int, ...]
    operators: dict[str, int]
    max_abs_diff: float
    max_abs_out: float

    def to_dict(self) -> dict:
        return {"source": self.spec, "family": "cnn", "input_shape": list(self.input_shape),
                "layers": [{"name": n.name, "inputs": [list(i) for i in n.inputs], "output": n.output,
                            "kernel": n.kernel, "stride": n.stride, "in": n.weight.shape[1], "out": n.weight.shape[0],
                            "relu": n.relu} for n in self.nodes],
                "parameters": sum(n.weight.numel() + n.bias.numel() for n in self.nodes), "operators": self.operators,
                "check": {"images": 4, "max_abs_diff": self.max_abs_diff, "max_abs_out": self.max_abs_out,
                          "rtol": RTOL}}


class _Mapper(GraphWalker):
    def __init__(self, ep: torch.export.ExportedProgram) -> None:
        super().__init__(ep)
        self.pending: dict[int, dict] = {}  # conv index -> weight, bias, stride, inputs, node
        self.nodes: list[ConvNode] = []
        self.convs = 0

    def param(self, node, arg) -> torch.Tensor | None:
        if arg is None:
            return None
        t = self.tag.get(arg)
        if not (t and t[0] == "param"):
            raise _bad(node, "a computed value where a parameter is expected")
        return self.value(t[1])

    def finish(self, idx: int, relu: bool, consumer) -> str:
        """Close the pending convolution ``idx`` (with or without ReLU): its output tensor name."""
        p = self.pending.pop(idx, None)
        if p is None:
            raise _bad(consumer, "a convolution's output used twice before its ReLU")
        if not relu and consumer is not None:
            raise _bad(consumer, f"convolution {p['node'].name!r} without ReLU feeds another layer",
                       "the depth engine's activations are unsigned: only the last layer may have no ReLU")
        name = f"c{len(self.nodes)}"
        self.nodes.append(ConvNode(name, p["inputs"], name, p["w"].float(), p["b"].float(), p["stride"], relu))
        return name

    def tensor_inputs(self, node, tag) -> tuple[tuple[str, bool], ...]:
        if tag is None:
            raise _bad(node, "a layer on a value the importer does not know")
        if tag[0] == "conv":
            return ((self.finish(tag[1], False, node), False),)
        if tag[0] == "t":
            return ((tag[1], False),)
        if tag[0] == "up":
            return ((tag[1], True),)
        if tag[0] == "cat":
            return tag[1]
        raise _bad(node, f"a layer on a {tag[0]}")

    def run(self) -> None:
        self.walk(("t", INPUT))

    def visit(self, node):
        t = node.target
        if t is aten.dropout.default and len(node.args) > 2 and node.args[2]:
            raise _bad(node, "dropout in training mode (export the model in eval mode)")
        if t in _PASS:
            src = self.arg(node)
            if t is operator.getitem and src and src[0] == "bn":
                return src[1] if node.args[1] == 0 else ("unused",)
            return src
        if t is aten.conv2d.default:
            return self.conv(node)
        if t in (aten.batch_norm.default, aten._native_batch_norm_legit_no_training.default):
            return self.batch_norm(node)
        if t in (aten.relu.default, aten.relu_.default):
            src = self.arg(node)
            if not (src and src[0] == "conv"):
                raise _bad(node, "a ReLU other than after a convolution")
            return ("t", self.finish(src[1], True, None))
        if t in (aten.upsample_nearest2d.vec, aten.upsample_nearest2d.default):
            src = self.arg(node)
            shape_in, shape_out = node.args[0].meta["val"].shape, node.meta["val"].shape
            if tuple(shape_out[2:]) != (2 * shape_in[2], 2 * shape_in[3]):
                raise _bad(node, f"nearest upsampling from {tuple(shape_in[2:])} to {tuple(shape_out[2:])}",
                           "the engine upsamples by exactly 2")
            if not (src and src[0] == "t"):
                raise _bad(node, "upsampling of a value that is not a ReLU activation")
            return ("up", src[1])
        if t in (aten.add.Tensor, aten.add_.Tensor):
            return self.residual(node)
        if t is aten.cat.default:
            dim = node.args[1] if len(node.args) > 1 else 0
            if dim not in (1, -3):
                raise _bad(node, f"a concatenation along dimension {dim}", "the engine concatenates channels")
            parts = []
            for a in node.args[0]:
                tag = self.tag.get(a)
                if not (tag and tag[0] in ("t", "up")):
                    raise _bad(node, "a concatenation of values that are not ReLU activations (or their upsampling)")
                parts.append((tag[1], tag[0] == "up"))
            return ("cat", tuple(parts))
        raise _bad(node, f"unsupported operator {t}", f"the depth engine runs {', '.join(SUPPORTED)}")

    def conv(self, node):
        a = list(node.args) + [None] * (7 - len(node.args))
        x, w, b, stride, padding, dilation, groups = a[:7]
        stride, padding, dilation = stride or [1, 1], padding or [0, 0], dilation or [1, 1]
        groups = groups or 1
        wt = self.param(node, w)
        k = wt.shape[-1]
        if isinstance(padding, str) or wt.shape[-2] != k or k % 2 == 0 or list(padding) != [k // 2] * 2 or \
                list(dilation) != [1, 1] or groups != 1 or stride[0] != stride[1]:
            raise _bad(node, f"convolution with kernel {tuple(wt.shape[-2:])}, stride {tuple(stride)}, padding "
                             f"{padding}, dilation {tuple(dilation)}, groups {groups}",
                       "the engine runs square odd kernels with padding k // 2, no dilation, no groups")
        inputs = self.tensor_inputs(node, self.arg(node))
        bt = self.param(node, b)
        idx = self.convs
        self.convs += 1
        self.pending[idx] = {"w": wt.double(), "b": torch.zeros(wt.shape[0], dtype=torch.float64) if bt is None
                             else bt.double(), "stride": int(stride[0]), "inputs": inputs, "node": node}
        return ("conv", idx)

    def residual(self, node):
        """``conv(...) + x`` before the ReLU, ``x`` a ReLU activation of the same shape (an identity
        skip): one convolution over its inputs and ``x`` side by side, ``x``'s weights the identity
        at the kernel's centre.  Exact in float; the skip and the inputs share a scale once
        concatenated."""
        a, b = self.arg(node), self.arg(node, 1)
        if node.kwargs.get("alpha", 1) != 1:
            raise _bad(node, "an add with alpha")
        for conv, skip, skip_node in ((a, b, node.args[1]), (b, a, node.args[0])):
            if conv and conv[0] == "conv" and conv[1] in self.pending and skip and skip[0] == "t":
                p = self.pending[conv[1]]
                if tuple(skip_node.meta["val"].shape) != tuple(node.meta["val"].shape):
                    break
                n, c, k = p["w"].shape[0], skip_node.meta["val"].shape[1], p["w"].shape[-1]
                eye = torch.zeros((n, c, k, k), dtype=torch.float64)
                eye[torch.arange(n), torch.arange(n), k // 2, k // 2] = 1.0
                p["w"] = torch.cat([p["w"], eye], 1)
                p["inputs"] = p["inputs"] + ((skip[1], False),)
                return conv
        raise _bad(node, "an add other than an identity skip (a ReLU activation of the same shape) onto a "
                         "convolution before its ReLU", "strided or projected skips do not map onto the depth engine")

    def batch_norm(self, node):
        src = self.arg(node)
        if not (src and src[0] == "conv") or src[1] not in self.pending:
            raise _bad(node, "a batch norm other than right after a convolution")
        if node.target is aten.batch_norm.default:
            _, w, b, mean, var, training, _, eps = (list(node.args) + [None] * 9)[:8]
            if training:
                raise _bad(node, "batch norm in training mode (export the model in eval mode)")
        else:
            _, w, b, mean, var, _, eps = node.args[:7]
        p = self.pending[src[1]]
        n = p["w"].shape[0]
        g = (self.param(node, w).double() if w is not None else torch.ones(n, dtype=torch.float64)) / \
            torch.sqrt(self.param(node, var).double() + float(eps))
        beta = self.param(node, b).double() if b is not None else torch.zeros(n, dtype=torch.float64)
        p["w"] = p["w"] * g[:, None, None, None]
        p["b"] = (p["b"] - self.param(node, mean).double()) * g + beta
        return ("conv", src[1]) if node.target is aten.batch_norm.default else ("bn", ("conv", src[1]))

    def output(self, node):
        outs = node.args[0]
        while isinstance(outs, (list, tuple)) and len(outs) == 1 and isinstance(outs[0], (list, tuple)):
            outs = outs[0]
        if len(outs) != 1:
            raise _bad(node, f"{len(outs)} outputs (the engine's program has one output tensor)")
        t = self.tag.get(outs[0])
        if t and t[0] == "conv":
            self.finish(t[1], False, None)
        elif not (t and t[0] == "t" and self.nodes and t[1] == self.nodes[-1].output):
            raise _bad(node, "the output is not the last convolution's")
        if self.pending:
            raise _bad(node, f"{len(self.pending)} convolutions whose output is not used")
        used = {t for n in self.nodes for t, _ in n.inputs}
        dead = [n.output for n in self.nodes[:-1] if n.output not in used]
        if dead:
            raise _bad(node, f"layers whose output is not used ({', '.join(dead)})")


def import_cnn(src: ImportedSource, *, check_images: int = 4, seed: int = 0) -> CnnImport:
    """Map the exported program of ``src`` to conv nodes and check them numerically."""
    mp = _Mapper(src.program)
    mp.run()
    if not mp.nodes:
        raise UnsupportedModelError(f"{src.spec}: no convolution found")
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((check_images, *src.input_shape), generator=g)
    ref = captured_outputs(src, x)
    with torch.no_grad():
        env, _ = run_graph(mp.nodes, x.reshape(-1, *src.input_shape[1:]))
        got = env[mp.nodes[-1].output]
    if got.shape != ref.shape:
        raise UnsupportedModelError(f"{src.spec}: the mapped graph's output {tuple(got.shape)} differs from the "
                                    f"captured one's {tuple(ref.shape)}")
    diff, scale = float((ref - got).abs().max()), float(ref.abs().max())
    if not diff <= RTOL * max(1.0, scale):
        raise UnsupportedModelError(f"{src.spec}: the mapped CNN differs from the captured graph (max |diff| "
                                    f"{diff:.3g} on outputs up to {scale:.3g})")
    return CnnImport(mp.nodes, src.spec, tuple(src.input_shape), operator_census(src.program), diff, scale)

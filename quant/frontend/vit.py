"""A captured Vision Transformer graph -> :class:`~qsilicon.quant.models.vit.ViT`.

The mapper walks the ATen graph in order and gives every value a meaning: the input image, the
patch embedding (a convolution with stride equal to its kernel), the prefix tokens (class token,
DeiT's distillation token), the residual stream (after ``n`` residual adds), a LayerNorm of it,
the qkv projection, attention (``scaled_dot_product_attention``, or ``q k^T`` with the
``1/sqrt(d)`` scale, softmax and ``@ v``), the output projection, the MLP with GELU, the final
LayerNorm, the prefix tokens' features and the classifiers.  Layout operations (views,
reshapes, transposes, permutes, unbinds, ``contiguous``, dropout in eval mode) carry the meaning
of their input.  Anything else, or an operation on values it does not fit (a LayerNorm of an
attention output, a convolution inside a block), is an :class:`UnsupportedModelError` naming
the node and its source line.

The layout between the recognised operations (which chunk of qkv is ``q``, how heads are split)
is not derived symbolically: the ViT built from the extracted parameters is run beside the
captured program on random images and must agree to float32 round-off (see :data:`RTOL`).
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

import torch
from torch import nn

from ..models.vit import ViT, ViTConfig
from .errors import UnsupportedModelError
from .errors import unsupported as _unsupported
from .source import ImportedSource
from .walk import GraphWalker, captured_outputs, operator_census

__all__ = ["RTOL", "SUPPORTED", "VitImport", "import_vit"]

aten = torch.ops.aten

#: The numerical check's tolerance, relative to the largest logit: the two graphs run the same
#: float32 operations in a different order (a fused attention kernel against softmax and two
#: matrix products), whose round-off is ~1e-6 relative; 1e-4 leaves room for deep models.
RTOL = 1e-4

_LAYOUT = {
    aten.view.default, aten.reshape.default, aten._unsafe_view.default, aten.transpose.int, aten.permute.default,
    aten.unflatten.int, aten.flatten.using_ints, aten.unsqueeze.default, aten.squeeze.dim, aten.squeeze.dims,
    aten.contiguous.default, aten.clone.default, aten.alias.default, aten.detach.default, aten.unbind.int,
    aten.split.Tensor, aten.split_with_sizes.default, aten.chunk.default, aten.expand.default, aten.t.default,
    operator.getitem, aten.select.int, aten.slice.Tensor, aten.dropout.default,
}
#: What the ViT accelerator runs, by the names a user sees in the error.
SUPPORTED = ("conv2d (patch embedding, stride = kernel)", "cat (prefix tokens)", "add (position embedding, residual)",
             "layer_norm", "linear", "scaled_dot_product_attention (or matmul, softmax, matmul)", "gelu",
             "select (class / distillation token)", "div by 2 (DeiT's two classifiers)",
             "and layout operations (view, reshape, transpose, permute, unbind, dropout in eval)")


@dataclass
class VitImport:
    """An imported ViT: the model, the source's names of its parameters, and the check."""

    model: ViT
    spec: str
    param_map: dict[str, str]
    operators: dict[str, int]
    max_abs_diff: float
    max_abs_logit: float

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return {"source": self.spec, "family": "vit", "config": asdict(self.model.cfg),
                "parameters": sum(p.numel() for p in self.model.parameters()), "operators": self.operators,
                "check": {"images": 4, "max_abs_diff": self.max_abs_diff, "max_abs_logit": self.max_abs_logit,
                          "rtol": RTOL}, "param_map": self.param_map}


class _Mapper(GraphWalker):
    def __init__(self, ep: torch.export.ExportedProgram) -> None:
        super().__init__(ep)
        self.embed = None  # (weight, bias, patch)
        self.prefix: list[str] = []
        self.pos = None
        self.lns: dict[int, tuple] = {}  # stream index -> (weight, bias, eps)
        self.blocks: dict[int, dict] = {}
        self.heads: dict[int, tuple] = {}  # token -> (weight, bias)
        self.gelu = None
        self.used: dict[str, str] = {}

    # ---------------------------------------------------------------- values
    def param(self, node, arg, what: str, ours: str) -> torch.Tensor | None:
        if arg is None:
            return None
        t = self.tag.get(arg)
        if not (isinstance(t, tuple) and t[0] == "param"):
            raise _unsupported(node, f"the {what} is computed, not a parameter")
        self.used[ours] = t[1]
        return self.value(t[1])

    def blk(self, i: int) -> dict:
        return self.blocks.setdefault(i, {})

    def run(self) -> None:
        self.walk(("input",))

    def visit(self, node):
        t = node.target
        if t is aten.dropout.default and len(node.args) > 2 and node.args[2]:
            raise _unsupported(node, "dropout in training mode (export the model in eval mode)")
        if t is aten.select.int:
            src = self.arg(node)
            if src and src[0] == "ln" and node.args[1] == 1:
                return ("token", src[1], node.args[2])
            if src and src[0] == "stream" and node.args[1] == 1:  # a token picked before the final LayerNorm
                return ("stream_token", src[1], node.args[2])
            return src
        if t in _LAYOUT:
            return self.arg(node)
        handler = {
            aten.conv2d.default: self.conv, aten.cat.default: self.cat, aten.add.Tensor: self.add,
            aten.layer_norm.default: self.layer_norm, aten.linear.default: self.linear,
            aten.scaled_dot_product_attention.default: self.sdpa, aten.gelu.default: self.gelu_op,
            aten.mul.Tensor: self.mul, aten.matmul.default: self.matmul, aten.softmax.int: self.softmax,
            aten._softmax.default: self.softmax, aten.div.Tensor: self.div,
        }.get(t)
        if handler is None:
            raise _unsupported(node, f"unsupported operator {t}", f"the ViT accelerator runs {', '.join(SUPPORTED)}")
        return handler(node)

    # ---------------------------------------------------------------- operators
    def conv(self, node):
        x, w, b = node.args[0], node.args[1], node.args[2] if len(node.args) > 2 else None
        stride = node.args[3] if len(node.args) > 3 else [1, 1]
        padding = node.args[4] if len(node.args) > 4 else [0, 0]
        dilation = node.args[5] if len(node.args) > 5 else [1, 1]
        groups = node.args[6] if len(node.args) > 6 else 1
        if self.tag.get(x) != ("input",) or self.embed is not None:
            raise _unsupported(node, "a convolution other than the patch embedding (CNNs map to the depth engine)")
        wt = self.param(node, w, "patch embedding's weight", "embed.weight")
        p = wt.shape[-1]
        if wt.shape[-2] != p or list(stride) != [p, p] or any(padding) or list(dilation) != [1, 1] or groups != 1:
            raise _unsupported(node, f"patch embedding with kernel {tuple(wt.shape[-2:])}, stride {tuple(stride)}, "
                                     f"padding {tuple(padding)}: the accelerator takes square patches, stride = "
                                     "kernel, no padding")
        bt = self.param(node, b, "patch embedding's bias", "embed.bias")
        self.embed = (wt, bt, p)
        return ("embed",)

    def cat(self, node):
        parts = [self.tag.get(a) for a in node.args[0]]
        dim = node.args[1] if len(node.args) > 1 else 0
        if dim not in (1, -2) or not parts or parts[-1] != ("embed",) or \
                not all(p and p[0] == "param" for p in parts[:-1]) or self.prefix:
            raise _unsupported(node, "a concatenation other than prefix tokens before the patches")
        self.prefix = [p[1] for p in parts[:-1]]
        if len(self.prefix) not in (1, 2):
            raise _unsupported(node, f"{len(self.prefix)} prefix tokens (the accelerator takes a class token and "
                                     "optionally a distillation token)")
        return ("tokens",)

    def add(self, node):
        a, b = (self.tag.get(x) if isinstance(x, torch.fx.Node) else ("const", x) for x in node.args[:2])
        if node.kwargs.get("alpha", 1) != 1:
            raise _unsupported(node, "add with alpha")
        for u, v, arg in ((a, b, node.args[1]), (b, a, node.args[0])):
            if u == ("tokens",) and v and v[0] == "param" and self.pos is None:
                self.pos = self.param(node, arg, "position embedding", "pos")
                return ("stream", 0)
            if u and u[0] == "stream" and v and v[0] in ("proj", "fc2"):
                blk, n = v[1], u[1]
                if n != 2 * blk + (1 if v[0] == "fc2" else 0):
                    raise _unsupported(node, "a residual add out of the pre-norm block order")
                return ("stream", n + 1)
            if u and u[0] == "logits" and v and v[0] == "logits":
                return ("logit_sum",)
        raise _unsupported(node, f"an add of {a and a[0]} and {b and b[0]} (the accelerator adds the position "
                                 "embedding and the residual branches)")

    def layer_norm(self, node):
        src = self.arg(node)
        if src and src[0] == "stream_token":  # LayerNorm is per token: the same as normalizing all, then picking
            n, tok = src[1], src[2]
            self.layer_norm_params(node, n)
            return ("token", n, tok)
        if not (src and src[0] == "stream"):
            raise _unsupported(node, f"a LayerNorm of {src and src[0]} (the accelerator normalizes the residual "
                                     "stream)")
        self.layer_norm_params(node, src[1])
        return ("ln", src[1])

    def layer_norm_params(self, node, n: int) -> None:
        shape = node.args[1]
        if len(shape) != 1:
            raise _unsupported(node, "a LayerNorm over more than the feature dimension")
        w = self.param(node, node.args[2] if len(node.args) > 2 else None, "LayerNorm weight", f"ln{n}.weight")
        b = self.param(node, node.args[3] if len(node.args) > 3 else None, "LayerNorm bias", f"ln{n}.bias")
        d = shape[0]
        eps = node.args[4] if len(node.args) > 4 else 1e-5
        p = (torch.ones(d) if w is None else w, torch.zeros(d) if b is None else b, float(eps))
        if n in self.lns and not all(torch.equal(a, c) for a, c in zip(self.lns[n][:2], p[:2], strict=True)):
            raise _unsupported(node, "two different LayerNorms of one residual stream")
        self.lns[n] = p

    def linear(self, node):
        src = self.arg(node)
        kind = src and src[0]
        if kind == "ln" and src[1] % 2 == 0:
            role, blk = "qkv", src[1] // 2
        elif kind == "ln":
            role, blk = "fc1", src[1] // 2
        elif kind == "attn":
            role, blk = "proj", src[1]
        elif kind == "gelu":
            role, blk = "fc2", src[1]
        elif kind == "token":
            role, blk = "head", src[2]
            if src[1] != max(self.lns, default=-1):
                raise _unsupported(node, "a classifier on a LayerNorm other than the final one")
        else:
            raise _unsupported(node, f"a linear layer on {kind} (the accelerator's linear layers are qkv, the output "
                                     "projection, the MLP and the classifier)")
        ours = f"b{blk}.{role}" if role != "head" else f"head{blk}"
        w = self.param(node, node.args[1], f"{role} weight", f"{ours}.weight")
        b = self.param(node, node.args[2] if len(node.args) > 2 else None, f"{role} bias", f"{ours}.bias")
        b = torch.zeros(w.shape[0]) if b is None else b
        if role == "head":
            if blk in self.heads:
                raise _unsupported(node, "two classifiers on one token")
            self.heads[blk] = (w, b)
            return ("logits", blk)
        if role in self.blk(blk):
            raise _unsupported(node, f"a second {role} layer in block {blk}")
        self.blk(blk)[role] = (w, b)
        return (role, blk)

    def _attention(self, node, blk: int, q_shape) -> tuple:
        if len(q_shape) != 4:
            raise _unsupported(node, f"attention on a query of shape {tuple(q_shape)} (expected [B, heads, tokens, "
                                     "head dim])")
        self.blk(blk)["heads"] = (int(q_shape[1]), int(q_shape[3]))
        return ("attn", blk)

    def sdpa(self, node):
        tags = [self.arg(node, i) for i in range(3)]
        if not all(t and t[0] == "qkv" for t in tags) or len({t[1] for t in tags}) != 1:
            raise _unsupported(node, "attention whose q, k and v are not one qkv projection's")
        kw = dict(zip(("attn_mask", "dropout_p", "is_causal"), node.args[3:6], strict=False)) | dict(node.kwargs)
        q_shape = node.args[0].meta["val"].shape
        scale = kw.get("scale")
        if kw.get("attn_mask") is not None or kw.get("is_causal") or kw.get("dropout_p", 0.0) or \
                (scale is not None and not math.isclose(scale, q_shape[-1] ** -0.5, rel_tol=1e-6)):
            raise _unsupported(node, "attention with a mask, causal masking, dropout or a scale other than "
                                     "1/sqrt(head dim)")
        return self._attention(node, tags[0][1], q_shape)

    def mul(self, node):
        src, other = self.arg(node), self.arg(node, 1)
        if src and src[0] == "qkv" and other and other[0] == "const":
            return ("qkv_scaled", src[1], float(other[1]))
        raise _unsupported(node, "a multiplication other than the attention scale (LayerScale and similar are not "
                                 "mapped)")

    def matmul(self, node):
        a, b = self.arg(node), self.arg(node, 1)
        if a and a[0] == "qkv_scaled" and b and b[0] == "qkv" and a[1] == b[1]:
            hd = node.args[0].meta["val"].shape[-1]
            if not math.isclose(a[2], hd ** -0.5, rel_tol=1e-6):
                raise _unsupported(node, f"attention scale {a[2]} (the accelerator uses 1/sqrt(head dim))")
            return ("scores", a[1], tuple(node.args[0].meta["val"].shape))
        if a and a[0] == "probs" and b and b[0] == "qkv" and a[1] == b[1]:
            return self._attention(node, a[1], a[2])
        raise _unsupported(node, "a matrix product other than attention's q k^T and probabilities @ v")

    def softmax(self, node):
        a = self.arg(node)
        if a and a[0] == "scores" and node.args[1] in (-1, 3):
            return ("probs", a[1], a[2])
        raise _unsupported(node, "a softmax other than attention's over the keys")

    def gelu_op(self, node):
        a = self.arg(node)
        if not (a and a[0] == "fc1"):
            raise _unsupported(node, "a GELU other than the MLP's")
        approx = node.kwargs.get("approximate", node.args[1] if len(node.args) > 1 else "none")
        if self.gelu not in (None, approx):
            raise _unsupported(node, "GELUs of two kinds")
        self.gelu = approx
        return ("gelu", a[1])

    def div(self, node):
        a, b = self.arg(node), self.arg(node, 1)
        if a == ("logit_sum",) and b == ("const", 2):
            return ("mean_logits",)
        raise _unsupported(node, "a division other than the mean of DeiT's two classifiers")

    def output(self, node):
        outs = node.args[0]
        if len(outs) != 1:
            raise _unsupported(node, f"{len(outs)} outputs (an image classifier returns its logits)")
        t = self.tag.get(outs[0])
        if t == ("logits", 0) and len(self.heads) == 1:
            self.distilled = False
        elif t == ("mean_logits",) and sorted(self.heads) == [0, 1]:
            self.distilled = True
        else:
            raise _unsupported(node, f"the output is {t and t[0]}, not the class token's logits (or the mean of "
                                     "the class and distillation tokens' logits)")


def import_vit(src: ImportedSource, *, check_images: int = 4, seed: int = 0) -> VitImport:
    """Map the exported program of ``src`` to a :class:`ViT` and check it numerically."""
    mp = _Mapper(src.program)
    mp.run()
    if mp.embed is None or mp.pos is None or not mp.blocks:
        raise UnsupportedModelError(f"{src.spec}: no patch embedding, position embedding and encoder blocks found: "
                                    "not a Vision Transformer")
    depth = len(mp.blocks)
    roles = ("qkv", "heads", "proj", "fc1", "fc2")
    for i in range(depth):
        missing = [r for r in roles if r not in mp.blocks.get(i, {})]
        if missing:
            raise UnsupportedModelError(f"{src.spec}: block {i} has no {', '.join(missing)}: not a pre-norm block")
    if sorted(mp.lns) != list(range(2 * depth + 1)):
        raise UnsupportedModelError(f"{src.spec}: LayerNorms at {sorted(mp.lns)}, expected one before attention and "
                                    "one before the MLP of every block and a final one")
    _, c, h, wd = src.input_shape
    w_e, b_e, p = mp.embed
    if len(mp.prefix) != (2 if mp.distilled else 1):
        raise UnsupportedModelError(f"{src.spec}: {len(mp.prefix)} prefix tokens with "
                                    f"{'two classifiers' if mp.distilled else 'one classifier'}: the accelerator "
                                    "takes a class token, or a class and a distillation token with a classifier each")
    if h % p or wd % p:
        raise UnsupportedModelError(f"{src.spec}: input {h}x{wd} is not a multiple of the patch {p}: the "
                                    "accelerator takes whole patches")
    dim = w_e.shape[0]
    heads = [mp.blocks[i]["heads"][0] for i in range(depth)]
    hds = {mp.blocks[i]["heads"][1] for i in range(depth)}
    eps = {v[2] for v in mp.lns.values()}
    if h != wd:
        raise UnsupportedModelError(f"{src.spec}: input {h}x{wd}; the accelerator takes square images")
    if len(hds) != 1 or len(eps) != 1:
        raise UnsupportedModelError(f"{src.spec}: head dimensions {sorted(hds)} or LayerNorm eps {sorted(eps)} differ "
                                    "between blocks")
    hd = hds.pop()
    mlp = [mp.blocks[i]["fc1"][0].shape[0] for i in range(depth)]
    classes = mp.heads[0][0].shape[0]
    cfg = ViTConfig(image=h, patch=p, dim=dim, depth=depth, heads=heads[0], mlp=mlp[0], classes=classes, head_dim=hd,
                    block_heads=tuple(heads) if len(set(heads)) > 1 else (),
                    block_mlp=tuple(mlp) if len(set(mlp)) > 1 else (), channels=c, distilled=mp.distilled,
                    ln_eps=eps.pop(), gelu=mp.gelu or "none")
    model = ViT(cfg).eval()
    with torch.no_grad():
        model.embed.weight.copy_(w_e.reshape(dim, -1))
        model.embed.bias.copy_(b_e if b_e is not None else torch.zeros(dim))
        pre = [mp.value(n).reshape(1, 1, dim) for n in mp.prefix]
        model.cls.copy_(pre[0])
        if cfg.distilled:
            model.dist.copy_(pre[1])
        if mp.pos.numel() != model.pos.numel():
            raise UnsupportedModelError(f"{src.spec}: a position embedding of {tuple(mp.pos.shape)} for "
                                        f"{cfg.patches + cfg.prefix} tokens")
        model.pos.copy_(mp.pos.reshape(model.pos.shape))

        def put(lin: nn.Linear, wb) -> None:
            lin.weight.copy_(wb[0])
            lin.bias.copy_(wb[1])

        def put_ln(ln: nn.LayerNorm, n: int) -> None:
            ln.weight.copy_(mp.lns[n][0])
            ln.bias.copy_(mp.lns[n][1])

        for i, blk in enumerate(model.blocks):
            put_ln(blk.ln1, 2 * i)
            put_ln(blk.ln2, 2 * i + 1)
            for role in ("qkv", "proj", "fc1", "fc2"):
                put(getattr(blk, role), mp.blocks[i][role])
        put_ln(model.ln, 2 * depth)
        put(model.head, mp.heads[0])
        if cfg.distilled:
            put(model.head_dist, mp.heads[1])
    # the check: the mapped model against the captured program on random images
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((check_images, src.input_shape[0], c, h, wd), generator=g)
    ref = captured_outputs(src, x)
    with torch.no_grad():
        got = model(x.reshape(-1, c, h, wd))
    diff = float((ref - got).abs().max())
    scale = float(ref.abs().max())
    if not diff <= RTOL * max(1.0, scale):
        raise UnsupportedModelError(f"{src.spec}: the mapped ViT differs from the captured graph (max |diff| {diff:.3g}"
                                    f" on logits up to {scale:.3g}): the graph's layout between its operations is "
                                    "not the one the accelerator runs")
    def ours(key: str) -> str:
        name, _, leaf = key.rpartition(".")
        if name.startswith("ln"):
            n = int(name[2:])
            name = "ln" if n == 2 * depth else f"blocks.{n // 2}.ln{n % 2 + 1}"
        elif name.startswith("b") and name[1:2].isdigit():
            i, _, role = name[1:].partition(".")
            name = f"blocks.{i}.{role}"
        elif name in ("head0", "head1"):
            name = "head" if name == "head0" else "head_dist"
        return f"{name}.{leaf}" if name else leaf

    param_map = {ours(k): v for k, v in mp.used.items()}
    for i, n in enumerate(mp.prefix):
        param_map["cls" if i == 0 else "dist"] = n
    return VitImport(model, src.spec, param_map, operator_census(src.program), diff, scale)

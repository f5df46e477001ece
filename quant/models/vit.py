"""A small Vision Transformer for 28x28 images, its CPU training, and fake-quant evaluation.

The model: 7x7 patches (16 tokens + a class token), ``dim`` 64, ``depth`` 4 pre-norm encoder
blocks of multi-head self-attention (4 heads) and an MLP (128, GELU), a final LayerNorm and a
linear classifier.  Fake-quant evaluation quantizes every ``nn.Linear`` (weights per row: int8,
int4 or row-wise mixed with a share of int8 rows chosen by Hessian-weighted sensitivity; the
input activations per tensor to int8 with ranges calibrated on training images) and keeps the
rest in float; the integer-only twin is a later step.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..intops import calibrate_activation, dequantize_activation, quantize_activation, quantize_weight
from ..mixed import assign_row_bits, quantize_weight_mixed

__all__ = ["PRECISIONS", "ViT", "ViTConfig", "evaluate", "fake_quantize", "train"]
_log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "w8a8", "w4a8", "mixed")


@dataclass(frozen=True)
class ViTConfig:
    """Shape of a :class:`ViT`.  ``head_dim`` 0 means ``dim // heads``; ``block_heads`` and
    ``block_mlp`` (one entry per block) override ``heads`` and ``mlp`` block by block, which is
    how subnets of the supernet (:mod:`qsilicon.quant.supernet`) are described."""

    image: int = 28
    patch: int = 7
    dim: int = 64
    depth: int = 4
    heads: int = 4
    mlp: int = 128
    classes: int = 10
    head_dim: int = 0
    block_heads: tuple[int, ...] = ()
    block_mlp: tuple[int, ...] = ()
    #: Input channels (1 for Fashion-MNIST; 3 for RGB models brought in by the importer).
    channels: int = 1
    #: DeiT's distillation token: a second prefix token with its own classifier; the logits are
    #: the mean of the two classifiers' (class token and distillation token).
    distilled: bool = False
    #: LayerNorm epsilon of the float model (timm writes 1e-6); the integer LayerNorm has none.
    ln_eps: float = 1e-5
    #: GELU of the float model: ``none`` (erf) or ``tanh``; the integer GELU approximates both.
    gelu: str = "none"

    def __post_init__(self) -> None:
        object.__setattr__(self, "block_heads", tuple(self.block_heads))
        object.__setattr__(self, "block_mlp", tuple(self.block_mlp))
        for name in ("block_heads", "block_mlp"):
            if getattr(self, name) and len(getattr(self, name)) != self.depth:
                raise ValueError(f"{name} needs one entry per block ({self.depth}), not {getattr(self, name)}")
        if self.head_dim == 0 and self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not a multiple of heads {self.heads}: give head_dim")
        if self.image % self.patch:
            raise ValueError(f"image {self.image} is not a multiple of the patch {self.patch}")
        if self.gelu not in ("none", "tanh"):
            raise ValueError(f"gelu must be 'none' or 'tanh', not {self.gelu!r}")

    @property
    def prefix(self) -> int:
        """Tokens before the patches: the class token (and the distillation token)."""
        return 2 if self.distilled else 1

    @property
    def patches(self) -> int:
        return (self.image // self.patch) ** 2

    @property
    def patch_dim(self) -> int:
        """Values in one patch (channels x patch x patch), the patch embedding's input width."""
        return self.channels * self.patch * self.patch

    @property
    def hd(self) -> int:
        """Dimension of one attention head."""
        return self.head_dim or self.dim // self.heads

    def heads_at(self, i: int) -> int:
        return self.block_heads[i] if self.block_heads else self.heads

    def mlp_at(self, i: int) -> int:
        return self.block_mlp[i] if self.block_mlp else self.mlp


class Block(nn.Module):
    def __init__(self, cfg: ViTConfig, index: int = 0) -> None:
        super().__init__()
        self.heads, self.hd = cfg.heads_at(index), cfg.hd
        inner = self.heads * self.hd
        self.gelu = cfg.gelu
        self.ln1 = nn.LayerNorm(cfg.dim, eps=cfg.ln_eps)
        self.qkv = nn.Linear(cfg.dim, 3 * inner)
        self.proj = nn.Linear(inner, cfg.dim)
        self.ln2 = nn.LayerNorm(cfg.dim, eps=cfg.ln_eps)
        self.fc1 = nn.Linear(cfg.dim, cfg.mlp_at(index))
        self.fc2 = nn.Linear(cfg.mlp_at(index), cfg.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        h, hd = self.heads, self.hd
        q, k, v = self.qkv(self.ln1(x)).reshape(b, t, 3, h, hd).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), dim=-1)
        x = x + self.proj((att @ v).transpose(1, 2).reshape(b, t, h * hd))
        return x + self.fc2(nn.functional.gelu(self.fc1(self.ln2(x)), approximate=self.gelu))


class ViT(nn.Module):
    def __init__(self, cfg: ViTConfig = ViTConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Linear(cfg.patch_dim, cfg.dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        if cfg.distilled:
            self.dist = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.pos = nn.Parameter(torch.randn(1, cfg.patches + cfg.prefix, cfg.dim) * 0.02)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.depth))
        self.ln = nn.LayerNorm(cfg.dim, eps=cfg.ln_eps)
        self.head = nn.Linear(cfg.dim, cfg.classes)
        if cfg.distilled:
            self.head_dist = nn.Linear(cfg.dim, cfg.classes)

    def patches(self, img: torch.Tensor) -> torch.Tensor:
        """``[B, patches, channels * patch * patch]``: patches in row-major order, each flattened
        channel by channel (a stride-``patch`` convolution's weight ``[dim, C, p, p]`` flattened)."""
        p, c = self.cfg.patch, self.cfg.channels
        if img.dim() != 4 or img.shape[1] != c or img.shape[2] != self.cfg.image or img.shape[3] != self.cfg.image:
            raise ValueError(f"images of shape {tuple(img.shape)}, expected [B, {c}, {self.cfg.image}, "
                             f"{self.cfg.image}]")
        b = img.shape[0]
        x = img.unfold(2, p, p).unfold(3, p, p)  # b, c, h, w, p, p
        return x.permute(0, 2, 3, 1, 4, 5).reshape(b, -1, c * p * p)

    def prefix_tokens(self) -> torch.Tensor:
        """The class token (and the distillation token) ``[1, prefix, dim]``."""
        return torch.cat([self.cls, self.dist], 1) if self.cfg.distilled else self.cls

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = self.embed(self.patches(img))
        x = torch.cat([self.prefix_tokens().expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        for blk in self.blocks:
            x = blk(x)
        x = self.ln(x)
        if self.cfg.distilled:
            return (self.head(x[:, 0]) + self.head_dist(x[:, 1])) / 2
        return self.head(x[:, 0])


def train(model: ViT, x: torch.Tensor, y: torch.Tensor, *, epochs: int, seed: int, batch: int = 128,
          lr: float = 3e-3, log=None) -> None:
    """AdamW with a one-cycle schedule and label smoothing 0.1; deterministic for a seed."""
    log = log or _log.info
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    steps = epochs * math.ceil(len(x) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    model.train()
    for ep in range(epochs):
        t0, total = time.perf_counter(), 0.0
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch):
            idx = perm[i : i + batch]
            loss = loss_fn(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        log(f"epoch {ep + 1}/{epochs}: loss {total / len(x):.4f} ({time.perf_counter() - t0:.0f} s)")
    model.eval()


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> float:
    """Top-1 accuracy in percent."""
    model.eval()
    correct = sum(int((model(x[i : i + batch]).argmax(-1) == y[i : i + batch]).sum()) for i in range(0, len(x), batch))
    return 100.0 * correct / len(x)


class _FakeQuantLinear(nn.Module):
    """``nn.Linear`` with int8 fake-quantized inputs and row-wise int4/int8 fake-quantized weights."""

    def __init__(self, lin: nn.Linear, w_deq: torch.Tensor, in_q) -> None:
        super().__init__()
        self.weight = nn.Parameter(w_deq.to(lin.weight.dtype), requires_grad=False)
        self.bias = lin.bias
        self.in_q = in_q

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_fq = dequantize_activation(quantize_activation(x, self.in_q), self.in_q).to(x.dtype)
        return nn.functional.linear(x_fq, self.weight, self.bias)


@torch.no_grad()
def fake_quantize(model: ViT, calib: torch.Tensor, precision: str, ratio8: float = 0.5, *,
                  keep_weights: bool = False) -> nn.Module:
    """A copy of ``model`` whose linear layers are fake-quantized for ``precision``;
    ``keep_weights`` quantizes only the activations (for weights that are already quantized
    values, as in an exported supernet subnet).

    Activation ranges (min/max) and the input second moments that rank rows for ``mixed`` come
    from running ``calib`` through the float model.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"Precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    import copy

    qm = copy.deepcopy(model).eval()
    if precision == "fp32":
        return qm
    stats: dict[str, list[torch.Tensor]] = {}
    hooks = []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            def hook(m, inp, out, name=name):
                a = inp[0].reshape(-1, inp[0].shape[-1])
                lo, hi, sq, n = stats.get(name, (math.inf, -math.inf, 0.0, 0))
                stats[name] = (min(lo, float(a.min())), max(hi, float(a.max())), sq + (a.double() ** 2).sum(0),
                               n + a.shape[0])
            hooks.append(mod.register_forward_hook(hook))
    model.eval()
    model(calib)
    for h in hooks:
        h.remove()
    for name, mod in list(qm.named_modules()):
        for child_name, child in list(mod.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if not isinstance(child, nn.Linear):
                continue
            lo, hi, sq, n = stats[full]
            w = child.weight.double()
            if keep_weights:
                w_deq = w
            elif precision == "w8a8":
                w_deq = quantize_weight(w, 8).dequantize()
            elif precision == "w4a8":
                w_deq = quantize_weight(w, 4).dequantize()
            else:
                bits = assign_row_bits(w, ratio8, sq / n)
                w_deq = quantize_weight_mixed(w, bits).dequantize()
            setattr(mod, child_name, _FakeQuantLinear(child, w_deq, calibrate_activation(lo, hi, 8, True)))
    return qm


def save(model: ViT, path, meta: dict) -> None:
    torch.save({"config": asdict(model.cfg), "state": model.state_dict(), "meta": meta}, path)


def load(path) -> tuple[ViT, dict]:
    d = torch.load(path, weights_only=True)
    m = ViT(ViTConfig(**d["config"]))
    m.load_state_dict(d["state"])
    return m.eval(), d["meta"]

"""Quasar-ViT supernet: row-wise mixed-precision QAT with weight entanglement and layer scaling.

* :class:`SearchSpace`: depth, embedding dimension, heads and MLP ratio per block, and the share
  of int8 rows of every linear layer of every block (the rest int4); read from YAML or a dict.
* :class:`Subnet`: one point of the space, with a compact text form (``Subnet.spec``).
* :class:`SuperViT`: one weight store for every subnet.  *Weight entanglement*: a subnet uses the
  leading slices of the largest subnet's weights (embedding channels, heads, MLP units, blocks).
  *Mixed-precision entanglement*: the int4 and int8 versions of a row are quantized from the same
  weight, each with its own learned per-row step size (LSQ); without it (``entangle=False``, the
  ablation) int4 rows have a weight copy of their own.  *Layer scaling*: a learned per-channel
  scale on each residual branch (``layer_scale=False`` for the ablation), folded into the
  projection weights at export.
* Row precision: in a layer with int8 share ``r``, the ``round(r * rows)`` rows with the largest
  int4 quantization error are int8; the hardware groups them (:func:`qsilicon.quant.group_rows`).
  Embedding and classifier are int8; activations are int8 per tensor.
* :func:`train_supernet`: the sandwich rule (largest, smallest and random subnets each step) with
  in-place distillation from the largest; :func:`export_subnet`: a plain float
  :class:`~qsilicon.quant.models.vit.ViT` whose linear weights are the subnet's quantized weights,
  and those integer weights and scales, which :class:`~qsilicon.quant.models.int_vit.IntViT` takes.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from .models.vit import ViT, ViTConfig

__all__ = [
    "LAYERS", "ExportedSubnet", "SearchSpace", "Subnet", "SuperViT", "export_subnet", "kendall_tau", "load_supernet",
    "save_supernet", "train_supernet",
]
_log = logging.getLogger(__name__)

#: Linear layers of a block that carry a share of int8 rows.
LAYERS = ("qkv", "proj", "fc1", "fc2")


def _sorted_positive(name: str, values, kind=int) -> tuple:
    vals = tuple(values)
    if not vals or any(not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0 for v in vals) \
            or list(vals) != sorted(set(vals)):
        raise ValueError(f"search space: {name} must be a non-empty increasing list of positive numbers, "
                         f"not {values!r}")
    return tuple(kind(v) for v in vals)


@dataclass(frozen=True)
class SearchSpace:
    """The supernet's search space (Quasar-ViT, on the Fashion-MNIST ViT's scale).

    ``head_dim`` is fixed (16, a multiple of the accelerator's lanes); the MLP width of a block
    is ``round(mlp_ratio * dim)``, which must be a multiple of 8 for every combination.
    """

    depths: tuple = (2, 3, 4)
    dims: tuple = (32, 48, 64)
    heads: tuple = (2, 3, 4)
    mlp_ratios: tuple = (1.0, 1.5, 2.0)
    ratios8: tuple = (0.0, 0.25, 0.5, 0.75, 1.0)
    head_dim: int = 16
    image: int = 28
    patch: int = 7
    classes: int = 10

    def __post_init__(self) -> None:
        for name in ("depths", "dims", "heads"):
            object.__setattr__(self, name, _sorted_positive(name, getattr(self, name)))
        object.__setattr__(self, "mlp_ratios", _sorted_positive("mlp_ratios", self.mlp_ratios, float))
        r8 = tuple(float(r) for r in self.ratios8)
        if not r8 or any(not 0 <= r <= 1 for r in r8) or list(r8) != sorted(set(r8)):
            raise ValueError(f"search space: ratios8 must be an increasing list in [0, 1], not {self.ratios8!r}")
        object.__setattr__(self, "ratios8", r8)
        for d in self.dims:
            for r in self.mlp_ratios:
                if round(d * r) % 8:
                    raise ValueError(f"search space: MLP width {d} x {r} = {d * r} is not a multiple of 8")
        if self.image % self.patch:
            raise ValueError(f"search space: image {self.image} is not a multiple of patch {self.patch}")

    @classmethod
    def from_dict(cls, d: dict) -> SearchSpace:
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"search space: unknown key {sorted(unknown)[0]!r} "
                             f"(expected one of {', '.join(sorted(known))})")
        return cls(**d)

    @classmethod
    def from_yaml(cls, path) -> SearchSpace:
        import yaml

        with open(path) as f:
            d = yaml.safe_load(f)
        if not isinstance(d, dict):
            raise ValueError(f"search space {path}: expected a mapping of keys to lists")
        return cls.from_dict(d)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @property
    def max_mlp(self) -> int:
        return round(max(self.dims) * max(self.mlp_ratios))

    def largest(self) -> Subnet:
        d, n = max(self.dims), max(self.depths)
        return Subnet(n, d, (max(self.heads),) * n, (self.max_mlp,) * n, (max(self.ratios8),) * (4 * n))

    def smallest(self) -> Subnet:
        d, n = min(self.dims), min(self.depths)
        return Subnet(n, d, (min(self.heads),) * n, (round(d * min(self.mlp_ratios)),) * n,
                      (min(self.ratios8),) * (4 * n))

    def sample(self, rng: random.Random) -> Subnet:
        n, d = rng.choice(self.depths), rng.choice(self.dims)
        return Subnet(n, d, tuple(rng.choice(self.heads) for _ in range(n)),
                      tuple(round(d * rng.choice(self.mlp_ratios)) for _ in range(n)),
                      tuple(rng.choice(self.ratios8) for _ in range(4 * n)))

    def check(self, s: Subnet) -> None:
        """Raise ``ValueError`` naming the first field of ``s`` outside the space."""
        if s.depth not in self.depths:
            raise ValueError(f"subnet depth {s.depth} is not in the space {list(self.depths)}")
        if s.dim not in self.dims:
            raise ValueError(f"subnet dim {s.dim} is not in the space {list(self.dims)}")
        if len(s.heads) != s.depth or any(h not in self.heads for h in s.heads):
            raise ValueError(f"subnet heads {list(s.heads)}: need {s.depth} values from {list(self.heads)}")
        widths = sorted({round(s.dim * r) for r in self.mlp_ratios})
        if len(s.mlp) != s.depth or any(m not in widths for m in s.mlp):
            raise ValueError(f"subnet mlp {list(s.mlp)}: need {s.depth} values from {widths} for dim {s.dim}")
        if len(s.ratio8) != 4 * s.depth or any(r not in self.ratios8 for r in s.ratio8):
            raise ValueError(f"subnet r8 {list(s.ratio8)}: need {4 * s.depth} values (qkv, proj, fc1, fc2 per "
                             f"block) from {list(self.ratios8)}")


@dataclass(frozen=True)
class Subnet:
    """A subnet: ``depth``, embedding ``dim``, ``heads`` and MLP width ``mlp`` per block, and the
    int8 share of the qkv, proj, fc1 and fc2 rows of every block (``ratio8``, flat, 4 per block)."""

    depth: int
    dim: int
    heads: tuple
    mlp: tuple
    ratio8: tuple

    @property
    def spec(self) -> str:
        """Compact text form, e.g. ``depth=2,dim=48,heads=4-3,mlp=96-72,r8=1-0.5-0.5-0``."""
        r8 = (f"{self.ratio8[0]:g}" if len(set(self.ratio8)) == 1
              else "-".join(f"{r:g}" for r in self.ratio8))
        return (f"depth={self.depth},dim={self.dim},heads={'-'.join(map(str, self.heads))},"
                f"mlp={'-'.join(map(str, self.mlp))},r8={r8}")

    @classmethod
    def parse(cls, spec: str, space: SearchSpace) -> Subnet:
        """``largest``, ``smallest`` or the :attr:`spec` form (a single ``heads``, ``mlp`` or
        ``r8`` value applies to every block or layer); checked against ``space``."""
        spec = spec.strip()
        if spec in ("largest", "smallest"):
            return getattr(space, spec)()
        fields = {}
        for part in spec.split(","):
            key, sep, val = part.partition("=")
            if not sep or key.strip() not in ("depth", "dim", "heads", "mlp", "r8"):
                raise ValueError(f"subnet spec {spec!r}: expected depth=,dim=,heads=,mlp=,r8= (or 'largest' / "
                                 f"'smallest'), not {part!r}")
            fields[key.strip()] = val.strip()
        missing = [k for k in ("depth", "dim", "heads", "mlp", "r8") if k not in fields]
        if missing:
            raise ValueError(f"subnet spec {spec!r}: missing {missing[0]}=")
        try:
            depth, dim = int(fields["depth"]), int(fields["dim"])
            heads = tuple(int(v) for v in fields["heads"].split("-"))
            mlp = tuple(int(v) for v in fields["mlp"].split("-"))
            r8 = tuple(float(v) for v in fields["r8"].split("-"))
        except ValueError:
            raise ValueError(f"subnet spec {spec!r}: values must be numbers ('-' between per-block values)") from None
        heads = heads * depth if len(heads) == 1 else heads
        mlp = mlp * depth if len(mlp) == 1 else mlp
        r8 = r8 * (4 * depth) if len(r8) == 1 else r8
        s = cls(depth, dim, heads, mlp, r8)
        space.check(s)
        return s

    def vit_config(self, space: SearchSpace) -> ViTConfig:
        return ViTConfig(image=space.image, patch=space.patch, dim=self.dim, depth=self.depth, heads=self.heads[0],
                         mlp=self.mlp[0], classes=space.classes, head_dim=space.head_dim, block_heads=self.heads,
                         block_mlp=self.mlp)


# --------------------------------------------------------------------------- quantized layers


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def _grad_scale(x: torch.Tensor, g: float) -> torch.Tensor:
    return (x - x * g).detach() + x * g


def fake_quant_act(x: torch.Tensor) -> torch.Tensor:
    """int8 per-tensor fake quantization with the batch's range (straight-through)."""
    s = x.detach().abs().amax().clamp(min=1e-8) / 127
    return torch.clamp(_round_ste(x / s), -127, 127) * s


def row_bits_for(w: torch.Tensor, s4: torch.Tensor, share: float) -> torch.Tensor:
    """int8 for the ``round(share * rows)`` rows with the largest int4 error, int4 for the rest."""
    n = w.shape[0]
    n8 = round(share * n)
    bits = torch.full((n,), 4, dtype=torch.int32, device=w.device)
    if n8:
        with torch.no_grad():
            s = s4.abs().clamp(min=1e-8)[:, None]
            err = ((w - torch.clamp(torch.round(w / s), -7, 7) * s) ** 2).sum(1)
            bits[torch.topk(err, n8).indices] = 8
    return bits


class SuperLinear(nn.Module):
    """A linear layer whose row and column slices are the subnets' layers, with int4 and int8 LSQ
    step sizes per row (and, without entanglement, a separate int4 weight copy)."""

    def __init__(self, fin: int, fout: int, entangle: bool = True) -> None:
        super().__init__()
        lin = nn.Linear(fin, fout)
        self.weight, self.bias = lin.weight, lin.bias
        self.s8 = nn.Parameter(torch.ones(fout))
        self.s4 = nn.Parameter(torch.ones(fout))
        self.weight4 = None if entangle else nn.Parameter(lin.weight.detach().clone())
        self.reset_scales()

    @torch.no_grad()
    def reset_scales(self) -> None:
        amax = self.weight.abs().amax(1).clamp(min=1e-8)
        self.s8.copy_(amax / 127)
        self.s4.copy_(amax / 7)
        if self.weight4 is not None:
            self.weight4.copy_(self.weight)

    def quantized(self, rows, cols: int, share: float | None):
        """``(w_fq, bias, q, scale, bits)`` of the slice: fake-quantized weights and their integer
        form (``share`` None: float weights, ``q`` None)."""
        w = self.weight[rows][:, :cols]
        b = self.bias[rows]
        if share is None:
            return w, b, None, None, None
        s8, s4 = self.s8[rows].abs() + 1e-8, self.s4[rows].abs() + 1e-8
        bits = row_bits_for(w, s4, share)
        is8 = (bits == 8)[:, None]
        g = 1.0 / math.sqrt(w.shape[1] * 127)
        s = torch.where(is8, _grad_scale(s8, g)[:, None], _grad_scale(s4, g)[:, None])
        qmax = torch.where(is8, 127.0, 7.0)
        src = w if self.weight4 is None else torch.where(is8, w, self.weight4[rows][:, :cols])
        q = torch.maximum(torch.minimum(_round_ste(src / s), qmax), -qmax)
        return q * s, b, q.detach().round().to(torch.int64), s.detach()[:, 0], bits

    def forward(self, x: torch.Tensor, rows, cols: int, share: float | None) -> torch.Tensor:
        w, b, *_ = self.quantized(rows, cols, share)
        if share is not None:
            x = fake_quant_act(x)
        return F.linear(x, w, b)


class SuperBlock(nn.Module):
    def __init__(self, dim: int, inner: int, mlp: int, head_dim: int, entangle: bool, layer_scale: bool) -> None:
        super().__init__()
        self.inner, self.hd = inner, head_dim
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = SuperLinear(dim, 3 * inner, entangle)
        self.proj = SuperLinear(inner, dim, entangle)
        self.fc1 = SuperLinear(dim, mlp, entangle)
        self.fc2 = SuperLinear(mlp, dim, entangle)
        self.g1 = nn.Parameter(torch.full((dim,), 0.1)) if layer_scale else None
        self.g2 = nn.Parameter(torch.full((dim,), 0.1)) if layer_scale else None

    def qkv_rows(self, h: int) -> torch.Tensor:
        e = h * self.hd
        return torch.cat([torch.arange(e) + s * self.inner for s in range(3)])

    def forward(self, x: torch.Tensor, d: int, h: int, m: int, r8, quant: bool) -> torch.Tensor:
        b, t, _ = x.shape
        e = h * self.hd
        sh = (lambda i: r8[i]) if quant else (lambda i: None)
        y = F.layer_norm(x, (d,), self.ln1.weight[:d], self.ln1.bias[:d])
        q, k, v = self.qkv(y, self.qkv_rows(h), d, sh(0)).reshape(b, t, 3, h, self.hd).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.hd), dim=-1)
        a = self.proj((att @ v).transpose(1, 2).reshape(b, t, e), slice(0, d), e, sh(1))
        x = x + (a * self.g1[:d] if self.g1 is not None else a)
        y = F.layer_norm(x, (d,), self.ln2.weight[:d], self.ln2.bias[:d])
        f = self.fc2(F.gelu(self.fc1(y, slice(0, m), d, sh(2))), slice(0, d), m, sh(3))
        return x + (f * self.g2[:d] if self.g2 is not None else f)


class SuperViT(nn.Module):
    """The weight store of every subnet of ``space``; ``forward(images, subnet)``."""

    def __init__(self, space: SearchSpace, *, entangle: bool = True, layer_scale: bool = True) -> None:
        super().__init__()
        self.space, self.entangle, self.layer_scale = space, entangle, layer_scale
        dmax, inner = max(space.dims), max(space.heads) * space.head_dim
        n = (space.image // space.patch) ** 2
        self.embed = SuperLinear(space.patch**2, dmax, entangle)
        self.cls = nn.Parameter(torch.zeros(1, 1, dmax))
        self.pos = nn.Parameter(torch.randn(1, n + 1, dmax) * 0.02)
        self.blocks = nn.ModuleList(SuperBlock(dmax, inner, space.max_mlp, space.head_dim, entangle, layer_scale)
                                    for _ in range(max(space.depths)))
        self.ln = nn.LayerNorm(dmax)
        self.head = SuperLinear(dmax, space.classes, entangle)

    def patches(self, img: torch.Tensor) -> torch.Tensor:
        p = self.space.patch
        return img.unfold(2, p, p).unfold(3, p, p).reshape(img.shape[0], -1, p * p)

    def forward(self, img: torch.Tensor, s: Subnet, quant: bool = True) -> torch.Tensor:
        d = s.dim
        x = self.embed(self.patches(img), slice(0, d), self.space.patch**2, 1.0 if quant else None)
        x = torch.cat([self.cls[..., :d].expand(x.shape[0], -1, -1), x], 1) + self.pos[..., :d]
        for i in range(s.depth):
            x = self.blocks[i](x, d, s.heads[i], s.mlp[i], s.ratio8[4 * i : 4 * i + 4], quant)
        y = F.layer_norm(x[:, 0], (d,), self.ln.weight[:d], self.ln.bias[:d])
        return self.head(y, slice(None), d, 1.0 if quant else None)

    @torch.no_grad()
    def load_vit(self, vit: ViT) -> None:
        """Start from a trained :class:`ViT` of the largest shape (its weights become the store)."""
        c = vit.cfg
        big = self.space.largest()
        if (c.dim, c.depth, c.hd, c.image, c.patch) != (big.dim, big.depth, self.space.head_dim, self.space.image,
                                                        self.space.patch) \
                or any(c.heads_at(i) != big.heads[i] or c.mlp_at(i) != big.mlp[i] for i in range(c.depth)):
            raise ValueError("the ViT does not have the shape of the supernet's largest subnet")
        own = dict(self.named_parameters())
        for name, p in vit.named_parameters():
            own[name].copy_(p)
        for b in self.blocks:  # the trained model has no branch scales: start them at 1
            for g in (b.g1, b.g2):
                if g is not None:
                    g.fill_(1.0)
        for m in self.modules():
            if isinstance(m, SuperLinear):
                m.reset_scales()

    @torch.no_grad()
    def accuracy(self, s: Subnet, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> float:
        self.eval()
        correct = sum(int((self(x[i : i + batch], s).argmax(-1) == y[i : i + batch]).sum())
                      for i in range(0, len(x), batch))
        return 100.0 * correct / len(x)


# --------------------------------------------------------------------------- training


def train_supernet(model: SuperViT, x: torch.Tensor, y: torch.Tensor, *, epochs: float, seed: int,
                   batch: int = 128, lr: float = 1e-3, n_random: int = 2, subnets=None, log=None) -> dict:
    """Sandwich rule: each step trains the largest subnet on the labels, then the smallest and
    ``n_random`` random subnets on the largest one's soft predictions (in-place distillation).
    ``subnets`` (a fixed list) replaces the sandwich, for fine-tuning one subnet."""
    log = log or _log.info
    g = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    space = model.space
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    steps = max(1, round(epochs * math.ceil(len(x) / batch)))
    warm = max(1, steps // 10)
    def lr_at(k: int) -> float:  # linear warm-up, then cosine decay
        return (k + 1) / warm if k < warm else 0.5 * (1 + math.cos(math.pi * (k - warm) / max(1, steps - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    ce = nn.CrossEntropyLoss(label_smoothing=0.1)
    model.train()
    t0, step, total = time.perf_counter(), 0, 0.0
    while step < steps:
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch):
            if step >= steps:
                break
            idx = perm[i : i + batch]
            xb, yb = x[idx], y[idx]
            opt.zero_grad()
            if subnets is not None:
                for s in subnets:
                    loss = ce(model(xb, s), yb) / len(subnets)
                    loss.backward()
            else:
                logits = model(xb, space.largest())
                loss = ce(logits, yb)
                loss.backward()
                soft = logits.detach().softmax(-1)
                for s in [space.smallest()] + [space.sample(rng) for _ in range(n_random)]:
                    kd = F.kl_div(model(xb, s).log_softmax(-1), soft, reduction="batchmean")
                    kd.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
            step += 1
            if step % 100 == 0 or step == steps:
                log(f"step {step}/{steps}: loss {total / step:.4f} ({time.perf_counter() - t0:.0f} s)")
    model.eval()
    return {"steps": steps, "seconds": time.perf_counter() - t0}


# --------------------------------------------------------------------------- export


@dataclass
class ExportedSubnet:
    """A subnet as a plain float :class:`ViT` whose linear weights are the quantized weights
    (layer scales folded in), and those weights in integer form per layer name (``embed``,
    ``head``, ``b{i}.qkv`` ...): ``(q, scale, bits)`` with ``w = q * scale[:, None]``."""

    subnet: Subnet
    model: ViT
    weights: dict = field(default_factory=dict)


@torch.no_grad()
def export_subnet(sv: SuperViT, s: Subnet, *, quant: bool = True) -> ExportedSubnet:
    """Subnet ``s`` as a :class:`ExportedSubnet`; ``quant=False`` copies the float slices instead
    (no integer weights), the subnet's float forward."""
    sv.space.check(s)
    vit = ViT(s.vit_config(sv.space)).eval()
    d = s.dim
    weights = {}

    def put(dst: nn.Linear, src: SuperLinear, name: str, rows, cols: int, share: float, gamma=None) -> None:
        w, b, q, scale, bits = src.quantized(rows, cols, share if quant else None)
        if not quant:
            g = torch.ones(w.shape[0]) if gamma is None else gamma
            dst.weight.copy_(w * g[:, None])
            dst.bias.copy_(b * g)
            return
        if gamma is not None:  # fold the layer scale: row r of (W x + b) times gamma_r
            sign = torch.sign(gamma)
            sign[sign == 0] = 1
            q, scale, b = q * sign.long()[:, None], scale * gamma.abs(), b * gamma
        dst.weight.copy_(q.double() * scale.double()[:, None])
        dst.bias.copy_(b)
        weights[name] = (q, scale.double(), bits)

    put(vit.embed, sv.embed, "embed", slice(0, d), sv.space.patch**2, 1.0)
    vit.cls.copy_(sv.cls[..., :d])
    vit.pos.copy_(sv.pos[..., :d])
    for i in range(s.depth):
        sb, vb = sv.blocks[i], vit.blocks[i]
        e = s.heads[i] * sv.space.head_dim
        r8 = s.ratio8[4 * i : 4 * i + 4]
        for ln in ("ln1", "ln2"):
            getattr(vb, ln).weight.copy_(getattr(sb, ln).weight[:d])
            getattr(vb, ln).bias.copy_(getattr(sb, ln).bias[:d])
        put(vb.qkv, sb.qkv, f"b{i}.qkv", sb.qkv_rows(s.heads[i]), d, r8[0])
        put(vb.proj, sb.proj, f"b{i}.proj", slice(0, d), e, r8[1], sb.g1[:d] if sb.g1 is not None else None)
        put(vb.fc1, sb.fc1, f"b{i}.fc1", slice(0, s.mlp[i]), d, r8[2])
        put(vb.fc2, sb.fc2, f"b{i}.fc2", slice(0, d), s.mlp[i], r8[3], sb.g2[:d] if sb.g2 is not None else None)
    vit.ln.weight.copy_(sv.ln.weight[:d])
    vit.ln.bias.copy_(sv.ln.bias[:d])
    put(vit.head, sv.head, "head", slice(None), d, 1.0)
    return ExportedSubnet(s, vit, weights)


def save_supernet(sv: SuperViT, path, meta: dict) -> None:
    torch.save({"space": sv.space.to_dict(), "entangle": sv.entangle, "layer_scale": sv.layer_scale,
                "state": sv.state_dict(), "meta": meta}, path)


def load_supernet(path) -> tuple[SuperViT, dict]:
    d = torch.load(path, weights_only=True)
    sv = SuperViT(SearchSpace.from_dict(d["space"]), entangle=d["entangle"], layer_scale=d["layer_scale"])
    sv.load_state_dict(d["state"])
    return sv.eval(), d["meta"]


def kendall_tau(a, b) -> float:
    """Kendall's tau-b of two score lists (ties counted as neither concordant nor discordant)."""
    n = len(a)
    if n != len(b) or n < 2:
        raise ValueError("kendall_tau needs two lists of the same length, at least 2")
    conc = disc = ta = tb = 0
    for i in range(n):
        for j in range(i + 1, n):
            da, db = a[i] - a[j], b[i] - b[j]
            if da == 0 and db == 0:
                continue
            if da == 0:
                ta += 1
            elif db == 0:
                tb += 1
            elif (da > 0) == (db > 0):
                conc += 1
            else:
                disc += 1
    denom = math.sqrt((conc + disc + ta) * (conc + disc + tb))
    return (conc - disc) / denom if denom else 0.0

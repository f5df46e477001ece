"""A small monocular depth network (CNN encoder-decoder) for 64x64 RGB, its CPU training and the
scale-aligned depth metrics.

The network: a U-Net of 3x3 convolutions with batch norm and ReLU (stride-2 convolutions down to
8x8, nearest 2x upsampling and skip concatenation back up), predicting log depth; about 270k
parameters.  Batch norm folds into the convolutions for quantization.  Training minimizes the
scale-invariant L1 of log depth on valid pixels (monocular depth is known up to scale); metrics
align the prediction's median to the ground truth's per image before computing AbsRel, RMSE and
the share of pixels with ``max(p/g, g/p) < 1.25``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["DepthConfig", "DepthNet", "depth_metrics", "evaluate_depth", "load_depth", "save_depth", "train_depth"]
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DepthConfig:
    widths: tuple = (16, 32, 64, 96)

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(self.widths))


def _cbr(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class DepthNet(nn.Module):
    def __init__(self, cfg: DepthConfig = DepthConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.widths
        self.stem = _cbr(3, w[0])
        self.down = nn.ModuleList(nn.Sequential(_cbr(w[i], w[i + 1], 2), _cbr(w[i + 1], w[i + 1]))
                                  for i in range(len(w) - 1))
        self.up = nn.ModuleList(_cbr(w[i + 1] + w[i], w[i]) for i in reversed(range(len(w) - 1)))
        self.head = nn.Conv2d(w[0], 1, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log depth ``[B, 1, H, W]``."""
        skips = [self.stem(x)]
        for d in self.down:
            skips.append(d(skips[-1]))
        y = skips.pop()
        for u in self.up:
            y = u(torch.cat([F.interpolate(y, scale_factor=2, mode="nearest"), skips.pop()], 1))
        return self.head(y)


def _si_l1(pred_log: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
    """Scale-invariant L1 of log depth over valid pixels (per image, the mean offset removed)."""
    valid = depth > 0
    diff = torch.where(valid, pred_log - torch.log(depth.clamp(min=1e-3)), torch.zeros_like(pred_log))
    n = valid.flatten(1).sum(1).clamp(min=1)
    offset = diff.flatten(1).sum(1) / n
    err = (diff - offset[:, None, None, None]).abs() * valid
    return (err.flatten(1).sum(1) / n).mean()


def train_depth(model: DepthNet, x: torch.Tensor, d: torch.Tensor, *, epochs: int, seed: int, batch: int = 32,
                lr: float = 2e-3, log=None) -> dict:
    """AdamW, one-cycle schedule, horizontal flips; deterministic for a seed."""
    log = log or _log.info
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * -(-len(x) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    model.train()
    t0 = time.perf_counter()
    for ep in range(epochs):
        perm, total = torch.randperm(len(x), generator=g), 0.0
        for i in range(0, len(x), batch):
            idx = perm[i : i + batch]
            xb, db = x[idx], d[idx]
            flip = torch.rand(len(idx), generator=g) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
            db = torch.where(flip[:, None, None, None], db.flip(-1), db)
            loss = _si_l1(model(xb), db)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        log(f"epoch {ep + 1}/{epochs}: loss {total / len(x):.4f} ({time.perf_counter() - t0:.0f} s)")
    model.eval()
    return {"seconds": time.perf_counter() - t0}


def depth_metrics(pred: torch.Tensor, depth: torch.Tensor) -> dict[str, float]:
    """Median-aligned AbsRel, RMSE (metres) and delta < 1.25 over the valid pixels of each image,
    averaged over images."""
    rel, rmse, d1 = [], [], []
    for p, g in zip(pred, depth, strict=True):
        v = g > 0
        if not v.any():
            continue
        pv, gv = p[v].double(), g[v].double()
        pv = pv * (gv.median() / pv.median().clamp(min=1e-9))
        rel.append(float(((pv - gv).abs() / gv).mean()))
        rmse.append(float(((pv - gv) ** 2).mean().sqrt()))
        d1.append(float((torch.maximum(pv / gv, gv / pv) < 1.25).double().mean()))
    n = len(rel)
    return {"abs_rel": sum(rel) / n, "rmse": sum(rmse) / n, "delta1": sum(d1) / n, "images": n}


@torch.no_grad()
def evaluate_depth(model: nn.Module, x: torch.Tensor, d: torch.Tensor, batch: int = 100) -> dict[str, float]:
    model.eval()
    pred = torch.cat([model(x[i : i + batch]).exp() for i in range(0, len(x), batch)])
    return depth_metrics(pred, d)


def save_depth(model: DepthNet, path, meta: dict) -> None:
    torch.save({"config": asdict(model.cfg), "state": model.state_dict(), "meta": meta}, path)


def load_depth(path) -> tuple[DepthNet, dict]:
    d = torch.load(path, weights_only=True)
    m = DepthNet(DepthConfig(**d["config"]))
    m.load_state_dict(d["state"])
    return m.eval(), d["meta"]

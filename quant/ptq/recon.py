"""Weight updates of the post-training path, all on a layer as a GEMM: ``W`` ``[N, K]`` (a convolution's
kernel flattened), inputs as columns ``X`` ``[K, S]`` (im2col of the calibration images).

* :func:`compensate` -- activation compensation: the closed-form ridge solution of
  ``min ||W X - W' X_q||^2 + lam ||W' - W||^2``, ``W' = W (C + lam I)(H + lam I)^-1`` with
  ``C = X X_q^T`` and ``H = X_q X_q^T``: the weights absorb the error of the quantized inputs
  (and of every quantized layer before).  ``lam`` (damping) pulls toward ``W``.
* :func:`gptq` -- weight reconstruction by sequential quantization with error feedback through the
  inverse Hessian ``H^-1`` (OBQ/GPTQ), columns in descending ``diag(H)`` order.
* :func:`adaround` -- learned rounding (up or down per weight, a rectified sigmoid annealed to
  0/1) minimizing the output error weighted by a diagonal Fisher (squared gradients of the task
  loss at the layer's outputs), started from the nearest rounding.

Both reconstructions keep per-channel scales fixed and return integer codes.
"""

from __future__ import annotations

import torch

__all__ = ["adaround", "bias_correction", "compensate", "gptq"]


def _damped(h: torch.Tensor, damp: float) -> torch.Tensor:
    d = torch.diagonal(h)
    lam = damp * float(d.mean()) if float(d.mean()) > 0 else damp
    return h + lam * torch.eye(h.shape[0], dtype=h.dtype), lam


def compensate(w: torch.Tensor, c: torch.Tensor, h: torch.Tensor, damp: float = 0.01) -> torch.Tensor:
    """Activation compensation of ``w`` ``[N, K]`` from ``c = X X_q^T`` and ``h = X_q X_q^T``
    (``[K, K]``, summed over calibration columns; a constant-1 row included makes the bias part of
    the solve).  Returns ``W'`` in float64."""
    w64 = w.to(torch.float64)
    hd, lam = _damped(h.to(torch.float64), damp)
    rhs = w64 @ (c.to(torch.float64) + lam * torch.eye(c.shape[0], dtype=torch.float64))
    # W' hd = rhs  ->  hd^T W'^T = rhs^T (hd is symmetric)
    return torch.linalg.solve(hd, rhs.T).T


def gptq(w: torch.Tensor, h: torch.Tensor, scale: torch.Tensor, bits: int, damp: float = 0.01) -> torch.Tensor:
    """Integer codes ``[N, K]`` of ``w`` on per-row ``scale`` by GPTQ with Hessian ``h`` ``[K, K]``."""
    qmax = 2 ** (bits - 1) - 1
    w = w.to(torch.float64).clone()
    h = h.to(torch.float64).clone()
    dead = torch.diagonal(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    perm = torch.argsort(torch.diagonal(h), descending=True)
    w, h = w[:, perm], h[perm][:, perm]
    h, _ = _damped(h, damp)
    hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    s = scale.to(torch.float64)
    q = torch.empty_like(w)
    for i in range(w.shape[1]):
        col = w[:, i]
        qi = torch.round(col / s).clamp(-qmax, qmax)
        q[:, i] = qi
        err = (col - qi * s) / hinv[i, i]
        w[:, i + 1:] -= err[:, None] * hinv[i, i + 1:][None]
    out = torch.empty_like(q)
    out[:, perm] = q
    return out.to(torch.int64)


def bias_correction(w: torch.Tensor, q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor,
                    x_mean: torch.Tensor) -> torch.Tensor:
    """Bias that keeps each output's mean over the calibration inputs: ``b + (W - Q s) E[x_q]``."""
    dq = q.to(torch.float64) * scale.to(torch.float64)[:, None]
    return bias.to(torch.float64) + (w.to(torch.float64) - dq) @ x_mean.to(torch.float64)


def _rect_sigmoid(v: torch.Tensor) -> torch.Tensor:
    return (torch.sigmoid(v) * 1.2 - 0.1).clamp(0, 1)


def adaround(w: torch.Tensor, scale: torch.Tensor, bits: int, x_q: torch.Tensor, target: torch.Tensor,
             bias: torch.Tensor, fisher: torch.Tensor | None, *, iters: int = 500, lr: float = 1e-2,
             reg: float = 0.01, seed: int = 0) -> torch.Tensor:
    """Integer codes ``[N, K]`` of ``w`` (per-row ``scale``) with rounding learned to minimize
    ``mean(F * (target - (Q x_q + bias))^2)`` over sample columns ``x_q`` ``[K, S]`` (``target``,
    ``fisher`` ``[N, S]``; ``fisher=None`` is plain MSE), plus AdaRound's regularizer
    ``reg * sum(1 - |2h - 1|^beta)`` with ``beta`` annealed from 20 to 2 after a 20% warm-up."""
    qmax = 2 ** (bits - 1) - 1
    s = scale.to(torch.float32)[:, None]
    w32 = w.to(torch.float32)
    base = torch.floor(w32 / s)
    rest = (w32 / s - base).clamp(1e-4, 1 - 1e-4)
    # h(v) = rest at the start: invert the rectified sigmoid
    v = torch.log((rest + 0.1) / 1.2 / (1 - (rest + 0.1) / 1.2)).requires_grad_(True)
    xq = x_q.to(torch.float32)
    tgt = target.to(torch.float32) - bias.to(torch.float32)[:, None]
    f = torch.ones_like(tgt) if fisher is None else fisher.to(torch.float32) / fisher.to(torch.float32).mean()
    norm = float((f * tgt**2).mean()) + 1e-12
    opt = torch.optim.Adam([v], lr=lr)
    g = torch.Generator().manual_seed(seed)
    cols = xq.shape[1]
    batch = min(cols, 2048)
    warm = int(0.2 * iters)
    for it in range(iters):
        idx = torch.randint(cols, (batch,), generator=g)
        hq = _rect_sigmoid(v)
        wq = (base + hq).clamp(-qmax, qmax) * s
        rec = (f[:, idx] * (tgt[:, idx] - wq @ xq[:, idx]) ** 2).mean() / norm
        if it < warm:
            loss = rec
        else:
            beta = 20 - (20 - 2) * (it - warm) / max(1, iters - warm)
            loss = rec + reg * (1 - (2 * hq - 1).abs() ** beta).sum() / hq.numel()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        q = (base + (_rect_sigmoid(v) >= 0.5).float()).clamp(-qmax, qmax)
    return q.to(torch.int64)


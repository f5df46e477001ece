"""Post-training quantization of a conv graph: the baselines and QuartDepth's three steps.

Methods (``METHODS``), each a :class:`PTQConfig`:

================== ==============================================================================
``rtn``            min-max activation ranges, min-max per-channel weight scales, round to nearest
``percentile``     activation clipping at the percentile (99 to 100) that minimizes the consumers'
                   weighted error, per-channel weight clipping minimizing the rounding error
``polish``         ``rtn`` with activation polishing on every 4-bit activation
``compensate``     ``polish`` + activation compensation (closed-form ridge update of each layer)
``quartdepth``     ``compensate`` + weight reconstruction by GPTQ (+ bias correction)
``quartdepth-ada`` ``compensate`` + Fisher-weighted AdaRound (+ bias correction)
``quartdepth-u4``  ``quartdepth`` with uniform 4-bit activations (``percentile`` clipping) instead of
                   polished ones: the codes multiply directly, so a W4A4 layer runs two MACs per
                   multiplier on an engine with ``nibble`` packing (the 4-bit datapath)
================== ==============================================================================

Precision: every hidden layer ``W{wbits}A{abits}``; the first layer (its input is the 8-bit image)
and the last layer (the depth head) keep 8-bit weights and 8-bit inputs (``PTQConfig.edge_bits``),
the usual choice of PTQ papers, QuartDepth's included.  Activation polishing applies to 4-bit
activations only (at 8 bits the uniform grid's error is already small, and the engine's decode table
has 16 entries); at ``abits=8`` ``polish`` is ``rtn``.

Layers are quantized in execution order: each layer's statistics come from the calibration images
run through the float model (targets) and through the model quantized so far (inputs), so
compensation and reconstruction also absorb the error of every earlier layer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import torch

from . import recon
from .graph import INPUT, ConvNode, channels, consumers, im2col, run_graph
from .quantizers import (
    PolishedAct,
    UniformAct,
    check_bits,
    fake_quant_weight,
    mse_weight_scale,
    weight_scale,
)

__all__ = ["METHODS", "PTQConfig", "QuantGraph", "calibrate_activations", "fisher_grads", "method_config",
           "quantize_graph"]


@dataclass(frozen=True)
class PTQConfig:
    wbits: int = 4
    abits: int = 4
    act: str = "minmax"  # minmax | percentile | polish
    weight: str = "minmax"  # minmax | mse
    compensate: bool = False
    recon: str = "none"  # none | gptq | adaround
    edge_bits: int = 8
    damp_comp: float = 0.01
    damp_gptq: float = 0.01
    ada_iters: int = 500
    ada_images: int = 32
    ada_columns: int = 8192
    tune_images: int = 64
    batch: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        check_bits(self.wbits, "Weight", (4, 8))
        check_bits(self.abits, "Activation", (4, 8))
        check_bits(self.edge_bits, "First/last layer", (8,))
        if self.act not in ("minmax", "percentile", "polish"):
            raise ValueError(f"act must be minmax, percentile or polish, not {self.act!r}")
        if self.weight not in ("minmax", "mse"):
            raise ValueError(f"weight must be minmax or mse, not {self.weight!r}")
        if self.recon not in ("none", "gptq", "adaround"):
            raise ValueError(f"recon must be none, gptq or adaround, not {self.recon!r}")


METHODS = {
    "rtn": PTQConfig(),
    "percentile": PTQConfig(act="percentile", weight="mse"),
    "polish": PTQConfig(act="polish"),
    "compensate": PTQConfig(act="polish", compensate=True),
    "quartdepth": PTQConfig(act="polish", weight="mse", compensate=True, recon="gptq"),
    "quartdepth-ada": PTQConfig(act="polish", weight="mse", compensate=True, recon="adaround"),
    "quartdepth-u4": PTQConfig(act="percentile", weight="mse", compensate=True, recon="gptq"),
}


@dataclass
class QuantGraph:
    """A quantized conv graph: integer weight codes, per-channel scales, float biases, activation
    quantizers per tensor.  ``forward`` is the fake-quant model; :func:`~qsilicon.quant.ptq.export.
    export_graph` turns it into integers."""

    nodes: list[ConvNode]
    wq: dict[str, torch.Tensor]  # codes [N, C, k, k] int64
    wscale: dict[str, torch.Tensor]  # [N] float64
    wbits: dict[str, int]
    bias: dict[str, torch.Tensor]  # [N] float64
    acts: dict[str, object]  # tensor -> UniformAct | PolishedAct
    config: PTQConfig
    stats: dict = field(default_factory=dict)

    def weights(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        out = {}
        for n in self.nodes:
            if n.name in self.wq:
                s = self.wscale[n.name].reshape(-1, 1, 1, 1)
                out[n.name] = ((self.wq[n.name].to(torch.float64) * s).float(), self.bias[n.name].float())
        return out

    def effective_weights(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """float64 weights and biases that the exported integers imply: the per-channel scale is
        ``M0 * 2**-shift * s_out / s_in`` (the requantizer's multiplier, not the ideal one) and the bias
        is the int32 accumulator bias times ``s_in * scale``."""
        from .export import export_graph

        ig = export_graph(self)
        out = {}
        for n in ig.nodes:
            s_in = ig.tensors[n.inputs[0][0]].scale
            s_out = ig.tensors[n.output].scale
            s = n.m0.double() * torch.exp2(-n.shift.double()) * s_out / s_in
            out[n.name] = (n.w.double() * s[:, None, None, None], n.bias.double() * s_in * s)
        return out

    @torch.no_grad()
    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """Fake-quant log depth: float64 arithmetic on the exported parameters (so that it agrees with
        the integer model up to float rounding at exact ties)."""
        env, _ = run_graph(self.nodes, img.double(), weights=self.effective_weights(), quant=self.acts)
        return env[self.nodes[-1].output]

    __call__ = forward

    def eval(self):
        return self


def _layer_bits(nodes: list[ConvNode], cfg: PTQConfig) -> dict[str, int]:
    return {n.name: cfg.edge_bits if i in (0, len(nodes) - 1) else cfg.wbits for i, n in enumerate(nodes)}


def _act_bits(nodes: list[ConvNode], cfg: PTQConfig) -> dict[str, int]:
    """Bits of each tensor: the input image and the last layer's input are 8-bit."""
    bits = {n.output: cfg.abits for n in nodes[:-1]}
    if nodes[-1].relu:  # an imported backbone ending in ReLU: its output is an 8-bit activation
        bits[nodes[-1].output] = cfg.edge_bits
    bits[INPUT] = cfg.edge_bits
    for t, _ in nodes[-1].inputs:
        bits[t] = cfg.edge_bits
    return bits


def _groups(nodes: list[ConvNode]) -> list[list[str]]:
    """Tensors concatenated into one node share a quantization scale (union-find)."""
    parent: dict[str, str] = {}

    def find(t):
        while parent.setdefault(t, t) != t:
            t = parent[t]
        return t

    for n in nodes:
        if n is not nodes[-1]:
            find(n.output)
        ts = [t for t, _ in n.inputs if t != INPUT]
        for t in ts[1:]:
            parent[find(t)] = find(ts[0])
    groups: dict[str, list[str]] = {}
    for t in parent:
        groups.setdefault(find(t), []).append(t)
    return list(groups.values())


def _channel_samples(x: torch.Tensor, m: int, g: torch.Generator) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[C, <=m]`` samples per channel."""
    flat = x.transpose(0, 1).reshape(x.shape[1], -1)
    if flat.shape[1] > m:
        flat = flat[:, torch.randperm(flat.shape[1], generator=g)[:m]]
    return flat.double()


def _quantile_rows(x: torch.Tensor, q: float) -> torch.Tensor:
    if q >= 1:
        return x.amax(1)
    return torch.quantile(x, q, dim=1)


def _uniform_err(x: torch.Tensor, imp: torch.Tensor, act: UniformAct) -> float:
    return float((imp[:, None] * (x - act(x)) ** 2).sum())


def _polish_err(x: torch.Tensor, act: PolishedAct) -> torch.Tensor:
    """Per-channel squared error of polishing ``x`` ``[C, M]``."""
    return ((x - act(x[None, :, :, None])[0, :, :, 0]) ** 2).sum(1)


def _tune_group(group: list[str], samples: dict[str, torch.Tensor], imp: dict[str, torch.Tensor], bits: int,
                mode: str) -> dict[str, object]:
    allv = torch.cat([samples[t].reshape(-1) for t in group])
    if allv.numel() > 4_000_000:
        allv = allv[torch.randperm(allv.numel(), generator=torch.Generator().manual_seed(1))[:4_000_000]]
    if mode == "polish" and bits == 4:
        best = None
        for fq in (1.0, 0.9999, 0.999):
            hi = float(allv.max()) if fq >= 1 else float(torch.quantile(allv.float(), fq))
            hi = max(hi, 1e-6)
            scale = hi / 255
            chosen, total = {}, 0.0
            for t in group:
                x = samples[t]
                p95 = _quantile_rows(x.abs(), 0.95).clamp(min=scale)
                clips = [_quantile_rows(x, q).clamp(max=hi) for q in (1.0, 0.9999, 0.999)]
                best_e, best_a, best_c = None, None, None
                for alpha in (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1, 2, 4):
                    for clip in clips:
                        a = p95 * alpha
                        e = _polish_err(x, PolishedAct.fit(a, clip, scale)) * imp[t]
                        if best_e is None:
                            best_e, best_a, best_c = e, a, clip
                        else:
                            b = e < best_e
                            best_e = torch.where(b, e, best_e)
                            best_a, best_c = torch.where(b, a, best_a), torch.where(b, clip, best_c)
                chosen[t] = PolishedAct.fit(best_a, best_c, scale)
                total += float(best_e.sum())
            if best is None or total < best[0]:
                best = (total, chosen)
        return best[1]
    qs = (1.0, 0.99999, 0.9999, 0.999, 0.995, 0.99) if mode == "percentile" else (1.0,)
    best = None
    for q in qs:
        hi = float(allv.max()) if q >= 1 else float(torch.quantile(allv.float(), q))
        act = UniformAct.from_range(bits, hi)
        e = sum(_uniform_err(samples[t], imp[t], act) for t in group)
        if best is None or e < best[0]:
            best = (e, act)
    return dict.fromkeys(group, best[1])


def calibrate_activations(nodes: list[ConvNode], x: torch.Tensor, cfg: PTQConfig) -> dict[str, object]:
    """Activation quantizers of every tensor, from the float model on ``x``."""
    env, _ = run_graph(nodes, x)
    bits = _act_bits(nodes, cfg)
    cons = consumers(nodes)
    imp = {}
    for t, uses in cons.items():
        c = channels(nodes, t)
        v = torch.zeros(c, dtype=torch.float64)
        for node, off in uses:
            v += node.weight[:, off : off + c].double().pow(2).sum((0, 2, 3))
        imp[t] = v
    g = torch.Generator().manual_seed(cfg.seed)
    samples = {t: _channel_samples(env[t], 16384, g) for t in cons if t != INPUT}
    acts: dict[str, object] = {INPUT: UniformAct(8, 1 / 255)}
    for group in _groups(nodes):
        gb = {bits[t] for t in group}
        if len(gb) != 1:
            raise ValueError(f"tensors {group} are concatenated but have different bit-widths {sorted(gb)}")
        acts.update(_tune_group(group, samples, imp, gb.pop(), cfg.act))
    last = nodes[-1]
    if last.relu:  # nothing reads it: min-max over the calibration images
        acts[last.output] = UniformAct(bits[last.output], max(float(env[last.output].max()), 1e-8)
                                       / (2 ** bits[last.output] - 1))
    return acts


def fisher_grads(nodes: list[ConvNode], x: torch.Tensor, depth: torch.Tensor) -> dict[str, torch.Tensor]:
    """Gradients of the scale-invariant log-L1 at every node's pre-activation output (float model)."""
    from ..models.depthnet import _si_l1

    env = {INPUT: x.detach().clone().requires_grad_(True)}
    outs = {}
    with torch.enable_grad():
        for n in nodes:
            y = n.conv(n.gather(env))
            y.retain_grad()
            outs[n.name] = y
            env[n.output] = torch.relu(y) if n.relu else y
        loss = _si_l1(env[nodes[-1].output], depth) * x.shape[0]
        loss.backward()
    return {k: v.grad.detach() for k, v in outs.items()}


def _cols_with_ones(x: torch.Tensor, node: ConvNode) -> torch.Tensor:
    c = im2col(x, node).double()
    return torch.cat([c, torch.ones(1, c.shape[1], dtype=torch.float64)])


def quantize_graph(nodes: list[ConvNode], x: torch.Tensor, depth: torch.Tensor | None, cfg: PTQConfig,
                   progress=None) -> QuantGraph:
    """Quantize ``nodes`` with calibration images ``x`` (and their ``depth``, used only by AdaRound's
    Fisher weights)."""
    t0 = time.perf_counter()
    say = progress or (lambda *_: None)
    torch.manual_seed(cfg.seed)
    bits_w = _layer_bits(nodes, cfg)
    acts = calibrate_activations(nodes, x[: cfg.tune_images], cfg)
    say(f"activations calibrated ({time.perf_counter() - t0:.0f} s)")
    fisher = None
    if cfg.recon == "adaround":
        if depth is None:
            raise ValueError("AdaRound's Fisher weights need the calibration depth maps")
        fisher = fisher_grads(nodes, x[: cfg.ada_images], depth[: cfg.ada_images])
    qg = QuantGraph(nodes, {}, {}, dict(bits_w), {}, acts, cfg)
    g = torch.Generator().manual_seed(cfg.seed)
    for node in nodes:
        w2 = node.weight.reshape(node.weight.shape[0], -1).double()
        b = node.bias.double()
        k = w2.shape[1]
        c = torch.zeros(k + 1, k + 1, dtype=torch.float64)
        h = torch.zeros(k + 1, k + 1, dtype=torch.float64)
        cur = qg.weights()
        ada_in = []  # (float, quantized) inputs of AdaRound's images, kept from the same pass
        with torch.no_grad():
            for i in range(0, len(x), cfg.batch):
                xb = x[i : i + cfg.batch]
                _, fp = run_graph(nodes, xb, capture_inputs={node.name}, stop_after=node.name)
                _, qi = run_graph(nodes, xb, weights=cur, quant=acts, capture_inputs={node.name},
                                  stop_after=node.name)
                if cfg.recon == "adaround" and i < cfg.ada_images:
                    keep = cfg.ada_images - i
                    ada_in.append((fp[node.name][:keep], qi[node.name][:keep]))
                xf, xq = _cols_with_ones(fp[node.name], node), _cols_with_ones(qi[node.name], node)
                c += xf @ xq.T
                h += xq @ xq.T
        n_cols = float(h[-1, -1])
        if cfg.compensate:
            wb = recon.compensate(torch.cat([w2, b[:, None]], 1), c, h, cfg.damp_comp)
            w_new, b_new = wb[:, :-1], wb[:, -1]
        else:
            w_new, b_new = w2, b
        bits = bits_w[node.name]
        scale = mse_weight_scale(w_new, bits) if cfg.weight == "mse" else weight_scale(w_new, bits)
        if cfg.recon == "gptq":
            q = recon.gptq(w_new, h[:-1, :-1], scale, bits, cfg.damp_gptq)
        elif cfg.recon == "adaround":
            xf = im2col(torch.cat([f for f, _ in ada_in]), node).double()
            xq = im2col(torch.cat([q for _, q in ada_in]), node).double()
            gr = fisher[node.name]  # [B, N, Ho, Wo]
            f = gr.transpose(0, 1).reshape(gr.shape[1], -1).double() ** 2
            idx = torch.randperm(xf.shape[1], generator=g)[: cfg.ada_columns]
            target = w2 @ xf[:, idx] + b[:, None]
            q = recon.adaround(w_new, scale, bits, xq[:, idx], target, b_new, f[:, idx], iters=cfg.ada_iters,
                               seed=cfg.seed)
        else:
            q, _ = fake_quant_weight(w_new, scale, bits)
        if cfg.recon != "none":
            b_new = recon.bias_correction(w_new, q, scale, b_new, h[-1, :-1] / n_cols)
        qg.wq[node.name] = q.reshape(node.weight.shape)
        qg.wscale[node.name] = scale
        qg.bias[node.name] = b_new
        say(f"{node.name}: W{bits} ({time.perf_counter() - t0:.0f} s)")
    qg.stats["seconds"] = time.perf_counter() - t0
    return qg


def method_config(method: str, wbits: int = 4, abits: int = 4, **overrides) -> PTQConfig:
    if method not in METHODS:
        raise ValueError(f"Unknown PTQ method {method!r}: use one of {', '.join(METHODS)}")
    return replace(METHODS[method], wbits=wbits, abits=abits, **overrides)


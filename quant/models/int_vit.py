"""The integer-only twin of :class:`~qsilicon.quant.models.vit.ViT`.

Every operation of the forward pass is integer arithmetic from :mod:`qsilicon.quant`:
:func:`~qsilicon.quant.intops.int_linear` / :func:`~qsilicon.quant.mixed.int_mixed_linear` for the
linear layers, integer matrix products for attention, :func:`~qsilicon.quant.nonlinear.int_shiftmax`,
:func:`~qsilicon.quant.nonlinear.int_layernorm`, :func:`~qsilicon.quant.nonlinear.int_gelu`, and
:func:`~qsilicon.quant.intops.requantize` between them.  Scales are fixed at build time from
activation ranges measured on calibration images (symmetric, zero point 0): GEMM inputs and
outputs are int8, the residual stream int16, LayerNorm works with 8 fractional bits, softmax
requantizes ``q k^T`` to int8 logits of scale ``ln 2 / 2**k`` and produces 7-bit probabilities
(:func:`~qsilicon.quant.nonlinear.int_shiftmax`), so every GEMM, attention included, has int8
operands and an int8 output, as on the accelerator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..gemm_case import GemmCase
from ..intops import IntFormat, fold_zero_point, quantize_bias, quantize_multiplier, requantize
from ..mixed import assign_row_bits, int_mixed_linear, quantize_weight_mixed
from ..nonlinear import gelu_params, int_gelu, int_layernorm, int_shiftmax, shiftmax_k, shiftmax_params
from .vit import ViT

__all__ = ["IntViT"]

I8, I16 = IntFormat(8, True), IntFormat(16, True)
LN_FRAC = 8
#: Softmax probabilities are 7-bit (scale 2**-7), so that they are int8 operands of the A V GEMM.
PROB_BITS = 7


def _rescale_params(s_from: float, s_to: float) -> tuple[int, int, bool]:
    """``(M0, shift, negate)`` that requantize values of scale ``s_from`` to ``s_to``; a negative
    ``s_from`` (the GELU output scale) moves its sign into the values (``negate``)."""
    m0, sh = quantize_multiplier(abs(s_from) / s_to)
    return int(m0), int(sh), s_from < 0


def _rescale(q: torch.Tensor, s_from: float, s_to: float, fmt: IntFormat) -> torch.Tensor:
    """Requantize integers of scale ``s_from`` to ``s_to`` (see :func:`_rescale_params`)."""
    m0, sh, negate = _rescale_params(s_from, s_to)
    if negate:
        q = -q
    m0, sh = torch.tensor(m0), torch.tensor(sh)
    shape = q.shape
    flat = q.reshape(-1, 1).to(torch.int64)
    return requantize(flat, m0.reshape(1), sh.reshape(1), 0, fmt).reshape(shape)


@dataclass
class _Linear:
    w: torch.Tensor
    bits: torch.Tensor
    bias: torch.Tensor
    m0: torch.Tensor
    shift: torch.Tensor
    s_in: float
    s_out: float
    name: str

    def __call__(self, q: torch.Tensor, out_fmt: IntFormat = I8) -> torch.Tensor:
        lead = q.shape[:-1]
        x = q.reshape(-1, q.shape[-1])
        r = int_mixed_linear(x, self.w, self.bits, self.bias, self.m0, self.shift, 0, a_fmt=I8, out_fmt=out_fmt,
                             layer=self.name)
        return r.out.reshape(*lead, -1).to(torch.int64)


@dataclass
class IntViT:
    """Integer-only ViT built from a float :class:`ViT`; ``logits(images)`` returns int16 integers
    whose argmax is the class.

    ``precision``: ``w8a8``, ``w4a8`` or ``mixed`` (with ``ratio8`` int8 rows per layer).
    """

    model: ViT
    calib: torch.Tensor
    precision: str = "w8a8"
    ratio8: float = 0.5
    scales: dict = field(default_factory=dict)
    #: Pre-quantized weights per layer name, ``(q, scale, bits)`` (an exported supernet subnet,
    #: :func:`qsilicon.quant.supernet.export_subnet`); used as given instead of quantizing.
    weights: dict | None = None

    def __post_init__(self) -> None:
        if self.precision not in ("w8a8", "w4a8", "mixed"):
            raise ValueError(f"Precision must be w8a8, w4a8 or mixed, not {self.precision!r}")
        if self.weights is not None and self.precision != "mixed":
            raise ValueError("Pre-quantized weights carry their own row bits: use precision 'mixed'")
        self._measure()
        self._build()

    # ---------------------------------------------------------------- calibration (float, host side)

    @torch.no_grad()
    def _measure(self) -> None:
        m, amax, sq = self.model.eval(), {}, {}

        def rec(name, t, inputs_of=None):
            amax[name] = max(amax.get(name, 0.0), float(t.abs().max()))
            if inputs_of is not None:
                a = t.reshape(-1, t.shape[-1]).double()
                s, n = sq.get(inputs_of, (0.0, 0))
                sq[inputs_of] = (s + (a**2).sum(0), n + a.shape[0])

        x = m.patches(self.calib)
        rec("in", x, "embed")
        e = m.embed(x)
        rec("embed", e)
        t = torch.cat([m.prefix_tokens().expand(e.shape[0], -1, -1), e], dim=1) + m.pos
        rec("res", t)
        for i, blk in enumerate(m.blocks):
            b, n, _ = t.shape
            h, hd = blk.heads, blk.hd
            ln1 = blk.ln1(t)
            rec(f"b{i}.ln1", ln1, f"b{i}.qkv")
            qkv = blk.qkv(ln1)
            rec(f"b{i}.qkv", qkv)
            q, k, v = qkv.reshape(b, n, 3, h, hd).permute(2, 0, 3, 1, 4)
            lg = q @ k.transpose(-1, -2) / math.sqrt(hd)
            rec(f"b{i}.logit", lg)
            att = torch.softmax(lg, dim=-1)
            av = (att @ v).transpose(1, 2).reshape(b, n, h * hd)
            rec(f"b{i}.av", av, f"b{i}.proj")
            p = blk.proj(av)
            rec(f"b{i}.proj", p)
            t = t + p
            rec("res", t)
            ln2 = blk.ln2(t)
            rec(f"b{i}.ln2", ln2, f"b{i}.fc1")
            f1 = blk.fc1(ln2)
            rec(f"b{i}.fc1", f1)
            g = torch.nn.functional.gelu(f1, approximate=m.cfg.gelu)
            rec(f"b{i}.gelu", g, f"b{i}.fc2")
            f2 = blk.fc2(g)
            rec(f"b{i}.fc2", f2)
            t = t + f2
            rec("res", t)
        lnf = m.ln(t[:, : m.cfg.prefix]).reshape(t.shape[0], -1)  # class token (and distillation token)
        rec("lnf", lnf, "head")
        rec("head", self._head_linear()(lnf))
        self._amax, self._sq = amax, sq

    def _head_linear(self) -> torch.nn.Linear:
        """The classifier as one linear layer on the final LayerNorm of the prefix tokens; for a
        distilled model ``[W_cls | W_dist] / 2`` on the two tokens' features side by side (the mean
        of the two classifiers, as DeiT infers)."""
        m = self.model
        if not m.cfg.distilled:
            return m.head
        lin = torch.nn.Linear(2 * m.cfg.dim, m.cfg.classes)
        with torch.no_grad():
            lin.weight.copy_(torch.cat([m.head.weight, m.head_dist.weight], 1) / 2)
            lin.bias.copy_((m.head.bias + m.head_dist.bias) / 2)
        return lin

    def _s8(self, name: str) -> float:
        return max(self._amax[name], 1e-8) / 127

    def _linear(self, lin: torch.nn.Linear, name: str, s_in: float, s_out: float) -> _Linear:
        w = lin.weight.detach().double()
        if self.weights is not None:
            q, scale, bits = self.weights[name]
            bias = quantize_bias(lin.bias.detach(), s_in, scale)
            m0, sh = quantize_multiplier(s_in * scale / s_out)
            return _Linear(q, bits.to(torch.int32), fold_zero_point(bias, q, 0), m0, sh, s_in, s_out, name)
        if self.precision == "w8a8":
            bits = torch.full((w.shape[0],), 8, dtype=torch.int32)
        elif self.precision == "w4a8":
            bits = torch.full((w.shape[0],), 4, dtype=torch.int32)
        else:
            s, n = self._sq[name]
            bits = assign_row_bits(w, self.ratio8, s / n)
        wq = quantize_weight_mixed(w, bits)
        bias = quantize_bias(lin.bias.detach(), s_in, wq.scale)
        m0, sh = quantize_multiplier(s_in * wq.scale / s_out)
        return _Linear(wq.q, bits, fold_zero_point(bias, wq.q, 0), m0, sh, s_in, s_out, name)

    def _ln(self, ln: torch.nn.LayerNorm) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.round(ln.weight.detach() * 2**LN_FRAC).long(), torch.round(ln.bias.detach() * 2**LN_FRAC).long())

    def _build(self) -> None:
        m = self.model
        self.s_in = 1.0 / 127
        self.s_res = max(self._amax["res"], 1e-8) / 32767
        self.embed = self._linear(m.embed, "embed", self.s_in, self._s8("embed"))
        pre = m.prefix_tokens().detach()
        self.cls_pos = torch.round(torch.cat([pre, torch.zeros(1, m.pos.shape[1] - pre.shape[1], m.cfg.dim)], 1)
                                   / self.s_res + m.pos.detach() / self.s_res).long().clamp(I16.qmin, I16.qmax)
        self.blocks = []
        for i, blk in enumerate(m.blocks):
            hd = blk.hd
            s_qkv = self._s8(f"b{i}.qkv")
            sm = shiftmax_params(shiftmax_k(self._amax[f"b{i}.logit"]))
            self.blocks.append({
                "ln1": self._ln(blk.ln1), "s_ln1": self._s8(f"b{i}.ln1"),
                "qkv": self._linear(blk.qkv, f"b{i}.qkv", self._s8(f"b{i}.ln1"), s_qkv),
                # q k^T (scale s_qkv^2 / sqrt(d_head)) is requantized to int8 logits of scale ln2 / 2**k
                "logit": _rescale_params(s_qkv * s_qkv / math.sqrt(hd), sm.scale), "shiftmax": sm,
                "s_av": self._s8(f"b{i}.av"),
                "proj": self._linear(blk.proj, f"b{i}.proj", self._s8(f"b{i}.av"), self._s8(f"b{i}.proj")),
                "ln2": self._ln(blk.ln2), "s_ln2": self._s8(f"b{i}.ln2"),
                "fc1": self._linear(blk.fc1, f"b{i}.fc1", self._s8(f"b{i}.ln2"), self._s8(f"b{i}.fc1")),
                "gelu": gelu_params(self._s8(f"b{i}.fc1")), "s_gelu": self._s8(f"b{i}.gelu"),
                "fc2": self._linear(blk.fc2, f"b{i}.fc2", self._s8(f"b{i}.gelu"), self._s8(f"b{i}.fc2")),
            })
        self.lnf = self._ln(m.ln)
        self.s_lnf = self._s8("lnf")
        # int16 logits with twice the calibrated range as headroom (14 bits of resolution), so that
        # images beyond the calibration range rarely saturate two classes into a tie.
        self.head = self._linear(self._head_linear(), "head", self.s_lnf, 2 * max(self._amax["head"], 1e-8) / I16.qmax)

    # ---------------------------------------------------------------- integer forward

    def _layernorm(self, x: torch.Tensor, params, s_out: float) -> torch.Tensor:
        y = int_layernorm(x, params[0], params[1], frac_bits=LN_FRAC)
        return _rescale(y, 2.0**-LN_FRAC, s_out, I8)

    def linear_layer(self, name: str) -> _Linear:
        """The integer linear layer ``embed``, ``head`` or ``b{i}.{qkv,proj,fc1,fc2}``."""
        if name in ("embed", "head"):
            return getattr(self, name)
        blk, _, layer = name.partition(".")
        if not (blk.startswith("b") and blk[1:].isdigit() and int(blk[1:]) < len(self.blocks)
                and layer in ("qkv", "proj", "fc1", "fc2")):
            raise ValueError(f"Unknown layer {name!r}: use embed, head or b<i>.<qkv|proj|fc1|fc2>")
        return self.blocks[int(blk[1:])][layer]

    def gemm_case(self, name: str, x_q: torch.Tensor) -> GemmCase:
        """Layer ``name`` applied to int8 inputs ``x_q`` ([tokens, K], e.g. from ``trace``) as a
        :class:`~qsilicon.quant.GemmCase` for the GEMM engine; mixed layers carry their row bits."""
        lin = self.linear_layer(name)
        n = lin.w.shape[0]
        return GemmCase(x=x_q.reshape(-1, x_q.shape[-1]).to(torch.int32), w=lin.w, bias=lin.bias, m0=lin.m0,
                        shift=lin.shift, zero_point=torch.zeros(n, dtype=torch.int32), a_fmt=I8, w_fmt=I8,
                        out_fmt=I16 if name == "head" else I8, row_bits=lin.bits if self.precision == "mixed" else None)

    @torch.no_grad()
    def logits(self, images: torch.Tensor, trace: dict | None = None) -> torch.Tensor:
        """Integer logits; with ``trace``, the int8 input and output of every linear layer are
        stored in it under ``"<layer>.in"`` and ``"<layer>.out"``."""
        if trace is not None:
            self._trace = trace
        try:
            return self._logits(images)
        finally:
            self._trace = None

    def _lin(self, name: str, x: torch.Tensor, out_fmt: IntFormat = I8) -> torch.Tensor:
        y = self.linear_layer(name)(x, out_fmt)
        if getattr(self, "_trace", None) is not None:
            self._trace[f"{name}.in"], self._trace[f"{name}.out"] = x, y
        return y

    def _logits(self, images: torch.Tensor) -> torch.Tensor:
        t = self.embed_tokens(images)
        for i in range(len(self.blocks)):
            t = self._block(i, t)
        return self.classify(t)

    def embed_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """The int16 residual stream ``[B, tokens, dim]`` that enters block 0."""
        q = torch.round(self.model.patches(images) / self.s_in).long().clamp(I8.qmin, I8.qmax)
        e = self._lin("embed", q)
        t = torch.cat([torch.zeros(e.shape[0], self.model.cfg.prefix, e.shape[2], dtype=torch.int64),
                       _rescale(e, self.embed.s_out, self.s_res, I16)], 1)
        return _sat16(t + self.cls_pos)

    def classify(self, t: torch.Tensor) -> torch.Tensor:
        """Final LayerNorm and classifier on the residual stream after the last block (the class
        token's, or the class and distillation tokens' side by side)."""
        x = self._layernorm(t[:, : self.model.cfg.prefix], self.lnf, self.s_lnf)
        return self._lin("head", x.reshape(t.shape[0], -1), out_fmt=I16)

    @torch.no_grad()
    def block(self, i: int, t: torch.Tensor) -> dict[str, torch.Tensor]:
        """Encoder block ``i`` on the int16 residual stream ``t`` ``[B, tokens, dim]``, with every
        intermediate: ``ln1``, ``q``, ``k``, ``v`` (int8, ``[B, tokens, dim]``), ``logits`` and
        ``probs`` (int8, ``[B, heads, tokens, tokens]``), ``av``, ``proj``, ``res1`` (int16),
        ``ln2``, ``fc1``, ``gelu``, ``fc2``, ``out`` (int16)."""
        if not 0 <= i < len(self.blocks):
            raise ValueError(f"Block must be from 0 to {len(self.blocks) - 1}, not {i}")
        inter: dict[str, torch.Tensor] = {}
        self._block(i, t, inter)
        return inter

    def _block(self, i: int, t: torch.Tensor, inter: dict | None = None) -> torch.Tensor:
        blk = self.blocks[i]
        b, n, _ = t.shape
        h, hd = self.model.blocks[i].heads, self.model.blocks[i].hd
        x = self._layernorm(t, blk["ln1"], blk["s_ln1"])
        qkv = self._lin(f"b{i}.qkv", x)
        qh, kh, vh = qkv.reshape(b, n, 3, h, hd).permute(2, 0, 3, 1, 4)
        m0, sh, _ = blk["logit"]
        logits = requantize((qh @ kh.transpose(-1, -2)).reshape(-1, 1), torch.tensor([m0]), torch.tensor([sh]), 0,
                            I8).reshape(b, h, n, n)
        probs = int_shiftmax(logits, blk["shiftmax"], out_bits=PROB_BITS)
        av = (probs @ vh).transpose(1, 2).reshape(b, n, h * hd)
        av = _rescale(av, 2.0**-PROB_BITS * blk["qkv"].s_out, blk["s_av"], I8)
        p = self._lin(f"b{i}.proj", av)
        res1 = _sat16(t + _rescale(p, blk["proj"].s_out, self.s_res, I16))
        x2 = self._layernorm(res1, blk["ln2"], blk["s_ln2"])
        f1 = self._lin(f"b{i}.fc1", x2)
        g = _rescale(int_gelu(f1, blk["gelu"]), blk["gelu"].out_scale, blk["s_gelu"], I8)
        f2 = self._lin(f"b{i}.fc2", g)
        out = _sat16(res1 + _rescale(f2, blk["fc2"].s_out, self.s_res, I16))
        if inter is not None:
            q, k, v = qkv.split(h * hd, dim=-1)
            inter.update(ln1=x, q=q, k=k, v=v, logits=logits, probs=probs, av=av, proj=p, res1=res1, ln2=x2, fc1=f1,
                         gelu=g, fc2=f2, out=out)
        return out

    @torch.no_grad()
    def accuracy(self, images: torch.Tensor, labels: torch.Tensor, batch: int = 500) -> float:
        correct = sum(int((self.logits(images[i : i + batch]).argmax(-1) == labels[i : i + batch]).sum())
                      for i in range(0, len(images), batch))
        return 100.0 * correct / len(images)


def _sat16(t: torch.Tensor) -> torch.Tensor:
    """Saturate the residual stream to int16."""
    return t.clamp(I16.qmin, I16.qmax)

"""Integer export of a :class:`~qsilicon.quant.ptq.pipeline.QuantGraph`: the integer ops the QuartDepth
engine's compiler consumes, and their reference evaluation.

Every node becomes an integer convolution (:func:`~qsilicon.quant.intops.int_linear` over im2col
columns: int32 accumulation, int32 bias, per-channel ``M0``/``shift`` requantization with round half
up and saturation) whose output is stored as

* ``uniform`` tensors: unsigned ``bits``-bit codes (the requantizer's clamp at 0 is the ReLU);
* ``polished`` tensors: the requantizer writes the unsigned 8-bit fine grid, a per-channel encoder
  (15 thresholds) turns it into 4-bit codes; the consumer decodes each code through its channel's
  16-entry table back to the fine grid before the MAC;
* the last node's output: int16 log depth in units of :data:`OUT_SCALE`.

Tensors concatenated into one node share their grid scale (the quantizer ties them), so a
concatenation is plain data movement; nearest 2x upsampling is too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from ..intops import IntFormat, int_linear, quantize_bias, quantize_multiplier
from .graph import INPUT, upsample2x
from .quantizers import FINE_BITS, PolishedAct, UniformAct, decode_table, encode_thresholds

__all__ = ["OUT_BITS", "OUT_SCALE", "IntConv", "IntGraph", "IntTensor", "export_graph"]

#: The depth output: int16 log depth with this step (about 0.1% of depth per LSB).
OUT_SCALE = 2.0**-10
OUT_BITS = 16


@dataclass
class IntTensor:
    """How a tensor is stored: ``kind`` ``uniform`` (codes of ``bits`` bits, value ``code * scale``),
    ``polished`` (4-bit codes, ``table[c, code] * scale``) or ``output`` (int16, ``code * scale``)."""

    kind: str
    bits: int
    scale: float
    thresholds: torch.Tensor | None = None  # [C, 15] on the fine grid (polished)
    table: torch.Tensor | None = None  # [C, 16] fine-grid values (polished)

    @property
    def mac_bits(self) -> int:
        """Bits of the unsigned values the consumer's multipliers see."""
        return FINE_BITS if self.kind == "polished" else self.bits

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Stored codes -> MAC operands (identity unless polished)."""
        return decode_table(codes, self.table) if self.kind == "polished" else codes

    def encode(self, fine: torch.Tensor) -> torch.Tensor:
        """Fine-grid integers -> stored codes (identity unless polished)."""
        return encode_thresholds(fine, self.thresholds) if self.kind == "polished" else fine

    @property
    def requant_fmt(self) -> IntFormat:
        """Format the requantizer writes."""
        if self.kind == "polished":
            return IntFormat(FINE_BITS, False)
        return IntFormat(self.bits, self.kind == "output")


@dataclass
class IntConv:
    name: str
    inputs: tuple[tuple[str, bool], ...]
    output: str
    w: torch.Tensor  # [N, C, k, k] int64 codes
    w_bits: int
    bias: torch.Tensor  # [N] int32, accumulator units
    m0: torch.Tensor  # [N] int32
    shift: torch.Tensor  # [N] int32
    stride: int

    @property
    def kernel(self) -> int:
        return self.w.shape[-1]


@dataclass
class IntGraph:
    nodes: list[IntConv]
    tensors: dict[str, IntTensor]

    @property
    def output(self) -> str:
        return self.nodes[-1].output

    def gather(self, node: IntConv, env: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """The node's input as MAC operands (decoded, upsampled, concatenated) and their bit-width."""
        parts, bits = [], set()
        for t, up in node.inputs:
            v = self.tensors[t].decode(env[t])
            bits.add(self.tensors[t].mac_bits)
            parts.append(upsample2x(v) if up else v)
        return (parts[0] if len(parts) == 1 else torch.cat(parts, 1)), max(bits)

    def conv(self, node: IntConv, env: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(accumulators [B, N, Ho, Wo], stored output)`` of one node."""
        x, abits = self.gather(node, env)
        b, _, h, w = x.shape
        k, s = node.kernel, node.stride
        ho, wo = (h + 2 * (k // 2) - k) // s + 1, (w + 2 * (k // 2) - k) // s + 1
        cols = F.unfold(x.to(torch.float64), k, padding=k // 2, stride=s)  # exact: small integers
        cols = cols.transpose(1, 2).reshape(-1, cols.shape[1]).to(torch.int64)
        out_t = self.tensors[node.output]
        r = int_linear(cols, node.w.reshape(node.w.shape[0], -1), node.bias, node.m0, node.shift, 0,
                       a_fmt=IntFormat(abits, False), w_fmt=IntFormat(node.w_bits, True),
                       out_fmt=out_t.requant_fmt, layer=node.name)
        acc = r.acc.reshape(b, ho, wo, -1).permute(0, 3, 1, 2)
        y = r.out.reshape(b, ho, wo, -1).permute(0, 3, 1, 2).to(torch.int64)
        return acc, out_t.encode(y)

    def image_codes(self, img: torch.Tensor) -> torch.Tensor:
        """Float images in [0, 1] (multiples of 1/255) -> uint8 codes."""
        t = self.tensors[INPUT]
        return torch.floor(img.to(torch.float64) / t.scale + 0.5).clamp(0, 2**t.bits - 1).to(torch.int64)

    @torch.no_grad()
    def run(self, img: torch.Tensor, keep: bool = False) -> dict[str, torch.Tensor]:
        env = {INPUT: self.image_codes(img)}
        for n in self.nodes:
            env[n.output] = self.conv(n, env)[1]
        return env if keep else {self.output: env[self.output]}

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """int16 log-depth codes ``[B, 1, H, W]``."""
        return self.run(img)[self.output]

    def log_depth(self, img: torch.Tensor, batch: int = 8) -> torch.Tensor:
        out = [self.forward(img[i : i + batch]) for i in range(0, len(img), batch)]
        return torch.cat(out).to(torch.float64) * self.tensors[self.output].scale

    def to_dict(self) -> dict:
        return {"nodes": [vars(n) for n in self.nodes], "tensors": {k: vars(v) for k, v in self.tensors.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> IntGraph:
        return cls([IntConv(**{**n, "inputs": tuple(tuple(i) for i in n["inputs"])}) for n in d["nodes"]],
                   {k: IntTensor(**v) for k, v in d["tensors"].items()})


def _int_tensor(act) -> IntTensor:
    if isinstance(act, PolishedAct):
        return IntTensor("polished", 4, act.scale, act.thresholds.clone(), act.table.clone())
    if isinstance(act, UniformAct):
        return IntTensor("uniform", act.bits, act.scale)
    raise TypeError(f"unknown activation quantizer {type(act).__name__}")


def export_graph(qg) -> IntGraph:
    """Integers of a quantized graph (biases in accumulator units, multipliers ``M0 * 2**-shift``)."""
    tensors = {t: _int_tensor(a) for t, a in qg.acts.items()}
    if not qg.nodes[-1].relu:  # a ReLU output (an imported backbone) stays the 8-bit activation it was calibrated to
        tensors[qg.nodes[-1].output] = IntTensor("output", OUT_BITS, OUT_SCALE)
    nodes = []
    for n in qg.nodes:
        scales = {tensors[t].scale for t, _ in n.inputs}
        if len(scales) != 1:
            raise ValueError(f"{n.name}: concatenated inputs {[t for t, _ in n.inputs]} have different scales; "
                             "their quantizers must be tied")
        s_in = scales.pop()
        s_w = qg.wscale[n.name]
        bias = quantize_bias(qg.bias[n.name], s_in, s_w)
        m0, sh = quantize_multiplier(s_in * s_w / tensors[n.output].scale)
        nodes.append(IntConv(n.name, n.inputs, n.output, qg.wq[n.name].clone(), qg.wbits[n.name], bias, m0, sh,
                             n.stride))
    return IntGraph(nodes, tensors)

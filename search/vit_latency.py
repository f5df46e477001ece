"""Latency model of the ViT block accelerator (pure Python, for the search).

Every operation of a block is bound by one resource, and its cycles are that resource's work plus
a small fixed cost, with coefficients fitted to RTL cycle counts
(``search/data/vit_block_cycles.json``, written by ``bench/vit_block_cycles.py``):

* ``gemm``: the single AXI read port.  Each ``lanes x lanes`` output tile reads K activation
  words, K weight words and one parameter beat (``PARAM_WORDS`` words), one word per cycle:
  ``a * tiles * (2K + PARAM_WORDS) + b + c * lanes``;
* ``layernorm``: the row unit, three passes over two-word int16 beats plus the divider and the
  square root per token tile: ``a * tiles * dim + b * tiles + c``;
* ``softmax``: the row unit, three passes of one-word beats plus one division per token tile:
  ``a * tiles * tokens + b * tiles + c``;
* ``gelu``: the writer (16-beat bursts with an address handshake each): ``a * words + c``;
* ``add``: the read port (two int16 words and one int8 word per feature and tile):
  ``a * words + c``;
* the block: the sum of its operations plus the descriptor fetch and cycle write-back of each.

``python -m qsilicon.search.vit_latency`` refits the coefficients (even-numbered shapes of the
data) and prints the error on every operation and block of the held-out shapes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PARAM_WORDS", "VitOp", "block_ops", "fit", "load_model", "vit_block_cycles"]

DATA = Path(__file__).resolve().parent / "data"
CYCLES = DATA / "vit_block_cycles.json"
MODEL = DATA / "vit_latency_model.json"
#: Memory words of one GEMM parameter beat: per column bias 32, M0 16, shift 6, zero point 8
#: bits, ``lanes`` columns in words of ``8 * lanes`` bits.
PARAM_WORDS = math.ceil((32 + 16 + 6 + 8) / 8)
KINDS = ("gemm", "layernorm", "softmax", "gelu", "add")


@dataclass(frozen=True)
class VitOp:
    name: str
    kind: str
    features: tuple[float, ...]


def _check_shape(tokens, dim, heads, head_dim, mlp, lanes) -> None:
    for what, v in (("tokens", tokens), ("dim", dim), ("heads", heads), ("head_dim", head_dim), ("mlp", mlp)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{what} must be a positive integer, not {v!r}")
    if lanes not in (8, 16):
        raise ValueError(f"lanes must be 8 or 16, not {lanes!r}")
    for what, v in (("head_dim", head_dim), ("dim", dim), ("mlp", mlp)):
        if v % lanes:
            raise ValueError(f"{what} {v} is not a multiple of the lanes ({lanes})")


def block_ops(tokens: int, dim: int, heads: int, head_dim: int, mlp: int, lanes: int) -> list[VitOp]:
    """The operations of one encoder block, in program order, with their model features."""
    _check_shape(tokens, dim, heads, head_dim, mlp, lanes)
    L, mt = lanes, math.ceil(tokens / lanes)
    e = heads * head_dim

    def gemm(name, k, n):
        tiles = mt * math.ceil(n / L)
        return VitOp(name, "gemm", (tiles * (2 * k + PARAM_WORDS), 1.0, float(L)))

    ln = lambda name: VitOp(name, "layernorm", (mt * dim, mt, 1.0))  # noqa: E731
    ops = [ln("ln1"), gemm("q", dim, e), gemm("k", dim, e), gemm("v", dim, e)]
    for h in range(heads):
        ops += [gemm(f"qk{h}", head_dim, mt * L), VitOp(f"softmax{h}", "softmax", (mt * tokens, mt, 1.0)),
                gemm(f"av{h}", tokens, head_dim)]
    ops += [gemm("proj", e, dim), VitOp("add1", "add", (3 * mt * dim, 1.0)), ln("ln2"), gemm("fc1", dim, mlp),
            VitOp("gelu", "gelu", (mt * mlp, 1.0)), gemm("fc2", mlp, dim), VitOp("add2", "add", (3 * mt * dim, 1.0))]
    return ops


def load_model(path: Path = MODEL) -> dict:
    return json.loads(path.read_text())


def _dot(a, b) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def vit_block_cycles(tokens: int, dim: int, heads: int, head_dim: int, mlp: int, lanes: int,
                     model: dict | None = None) -> tuple[int, list[tuple[str, str, int]]]:
    """Predicted cycles of one block (start to done) and of each operation."""
    model = model or load_model()
    ops = block_ops(tokens, dim, heads, head_dim, mlp, lanes)
    per = [(o.name, o.kind, round(_dot(model[o.kind], o.features))) for o in ops]
    total = sum(c for _, _, c in per) + _dot(model["block"], (len(ops), 1.0))
    return round(total), per


def _lstsq(rows: list[list[float]], y: list[float]) -> list[float]:
    import numpy as np

    a, b = np.array(rows, dtype=float), np.array(y, dtype=float)
    # relative weighting: every measurement counts by its relative error, not its size
    w = 1.0 / np.maximum(b, 1.0)
    return np.linalg.lstsq(a * w[:, None], b * w, rcond=None)[0].tolist()


def _shape_key(r: dict) -> tuple:
    return (r["tokens"], r["dim"], r["heads"], r["head_dim"], r["mlp"], r["lanes"])


def _by_shape(rows: list[dict]) -> dict[tuple, list[dict]]:
    shapes: dict[tuple, list[dict]] = {}
    for r in rows:
        shapes.setdefault(_shape_key(r), []).append(r)
    return shapes


def fit(rows: list[dict]) -> dict:
    """Coefficients per kind (and for the block overhead) from measured rows."""
    x: dict[str, list] = {k: [] for k in KINDS}
    y: dict[str, list] = {k: [] for k in KINDS}
    block_x, block_y = [], []
    for key, recs in _by_shape(rows).items():
        ops = {o.name: o for o in block_ops(*key)}
        meas = {r["op"]: r["cycles"] for r in recs}
        for name, o in ops.items():
            x[o.kind].append(list(o.features))
            y[o.kind].append(meas[name])
        block_x.append([len(ops), 1.0])
        block_y.append(meas["block"] - sum(meas[n] for n in ops))
    model = {k: _lstsq(x[k], y[k]) for k in KINDS}
    model["block"] = _lstsq(block_x, block_y) if len(block_x) > 1 else [block_y[0] / block_x[0][0], 0.0]
    return model


def errors(rows: list[dict], model: dict) -> list[dict]:
    """Per shape: every operation's and the block's measured and predicted cycles."""
    out = []
    for key, recs in _by_shape(rows).items():
        total, per = vit_block_cycles(*key, model=model)
        meas = {r["op"]: r["cycles"] for r in recs}
        for name, kind, c in [*per, ("block", "block", total)]:
            out.append({"shape": key, "op": name, "kind": kind, "measured": meas[name], "predicted": c,
                        "error": abs(c - meas[name]) / meas[name]})
    return out


def split(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """Even-numbered shapes (in file order) for fitting, odd ones held out."""
    shapes = list(_by_shape(rows))
    train = {s for i, s in enumerate(shapes) if i % 2 == 0}
    return [r for r in rows if _shape_key(r) in train], [r for r in rows if _shape_key(r) not in train]


def main() -> None:
    rows = json.loads(CYCLES.read_text())
    train, held = split(rows)
    model = fit(train)
    MODEL.write_text(json.dumps(model, indent=1) + "\n")
    for label, part in (("training", train), ("held-out", held)):
        errs = errors(part, model)
        ops = [e for e in errs if e["kind"] != "block"]
        blocks = [e for e in errs if e["kind"] == "block"]
        worst = max(ops, key=lambda e: e["error"])
        print(f"{label}: {len(ops)} operations, max error {100 * worst['error']:.2f}% ({worst['op']} of "
              f"{worst['shape']}: {worst['measured']} measured, {worst['predicted']} predicted); "
              f"{len(blocks)} blocks, max error {100 * max(e['error'] for e in blocks):.2f}%")
        for kind in KINDS:
            ek = [e["error"] for e in ops if e["kind"] == kind]
            print(f"  {kind:<10} n={len(ek):>3}  mean {100 * sum(ek) / len(ek):.2f}%  max {100 * max(ek):.2f}%")


if __name__ == "__main__":
    main()

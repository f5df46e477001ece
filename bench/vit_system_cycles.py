"""Cycle counts of whole models on generated ViT accelerators (Verilator), for the latency model.

    python bench/vit_system_cycles.py [--split train|held_out|all] [--quick]
    python bench/vit_system_cycles.py --check [--split ...] [--pairs N]

For every (design, model) pair below: build the design's RTL, compile an integer ViT of that shape
(random weights: the accelerator has no data-dependent timing, only the precision pattern of the
rows matters), run one image, check the logits and the whole memory against the ISS, and record
every descriptor's cycles (from the accelerator's cycle log) with its shape.  Rows go to
``search/data/vit_system_cycles.json`` (the fit's data and its held-out check), a pair at a time,
so an interrupted run resumes where it stopped.

Each pair names its program: GELU fused into fc1 (the compiler's default) or GELU as a descriptor
of its own (``fuse_gelu=False``: the sixteen pairs first recorded before the fusion existed keep
that program, so the GELU descriptor stays measured).

``--check`` reruns the stored pairs on today's RTL instead (bit-exact against the ISS and the
integer model as above) and compares every descriptor's cycles and the run's total with the stored
ones; it changes no file and exits 1 on the first pair that differs.  It is the test of an RTL
change that must not move a cycle (a leaner datapath, a register moved off a critical path); a
change that does move them reruns the pairs (delete the data file's rows) and refits.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from qsilicon.hw.config import AccelConfig
from qsilicon.hw.vit.compiler import compile_vit
from qsilicon.hw.vit.iss import run_program
from qsilicon.quant.models.int_vit import IntViT
from qsilicon.quant.models.vit import ViT, ViTConfig
from qsilicon.sim.vit_accel import rtl_vit

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "search" / "data" / "vit_system_cycles.json"
RESULT = ROOT / "bench" / "results" / "vit_system_latency.json"

#: (split, design tag, (image, patch, dim, depth, heads per block, mlp per block), int8 share, GELU fused)
_UNFUSED = [
    ("train", "r8c8_dsp2_l8_w8k_a8k_100mhz", (28, 7, 64, 1, (4,), (128,)), 0.5),
    ("train", "r16c32_dsp2_l16_w8k_a8k_100mhz", (28, 7, 64, 2, (4, 2), (128, 64)), 0.25),
    ("train", "r16c64_none_l8_w16k_a16k_100mhz", (28, 4, 48, 1, (3,), (96,)), 0.75),
    ("train", "r32c16_dsp2_l8_w8k_a32k_100mhz", (28, 7, 32, 1, (2,), (48,)), 1.0),
    ("train", "r8c32_none_l8_w1k_a8k_100mhz", (28, 7, 64, 1, (4,), (128,)), 0.5),     # streamed tiles
    ("train", "r16c16_dsp2_l16_w32k_a8k_100mhz", (24, 4, 32, 1, (2,), (64,)), 0.0),
    ("held_out", "r16c32_none_l16_w64k_a16k_100mhz", (28, 7, 48, 2, (3, 2), (72, 96)), 0.5),  # widths off the lanes
    ("held_out", "r32c64_dsp2_l16_w128k_a64k_100mhz", (28, 7, 64, 1, (4,), (128,)), 0.75),
    ("held_out", "r8c16_dsp2_l8_w2k_a8k_100mhz", (32, 8, 64, 1, (4,), (128,)), 0.25),  # streamed tiles
    # dot2 arrays (int4 rows two reduction steps a beat): not in the fit, the replay's beats change
    ("held_out", "r16c32_dot2_l16_w64k_a16k_100mhz", (28, 7, 48, 2, (3, 2), (72, 96)), 0.25),
    ("held_out", "r8c16_dot2_l8_w2k_a8k_100mhz", (32, 8, 64, 1, (4,), (128,)), 0.5),  # streamed tiles
    # row buffers (LayerNorm and Shiftmax rows read once, two stages): the fit's layernorm_rb and
    # softmax_rb; the held-out dim-384 run's LayerNorm rows are long enough for the memory port to
    # bound them (three words a beat), which no training run's are
    ("train", "r8c8_dsp2_l8_w8k_a8k_rb64_100mhz", (28, 7, 64, 1, (4,), (128,)), 0.5),
    ("train", "r16c32_dsp2_l16_w8k_a8k_rb256_100mhz", (28, 7, 48, 2, (3, 2), (72, 96)), 0.25),
    ("train", "r16c16_dsp2_l16_w32k_a8k_rb64_100mhz", (24, 4, 32, 1, (2,), (64,)), 0.0),  # Shiftmax rows of 37
    ("held_out", "r16c32_dot2_l16_w64k_a16k_rb1024_100mhz", (32, 8, 96, 1, (6,), (192,)), 0.5),
    ("held_out", "r16c32_dsp2_l16_w64k_a16k_rb512_100mhz", (28, 7, 384, 1, (4,), (128,)), 0.5),
]
#: The pairs: the programs above with GELU as a descriptor of its own (``compile_vit(...,
#: fuse_gelu=False)``), then programs with GELU fused into fc1 (the compiler's default): three
#: training runs (the fit's fused-GELU constant) and two held-out ones (streamed weight tiles; dot2
#: with a row buffer).  All rerun on 2026-12-07 when the row unit's divider began to iterate over
#: its quotient bits only (:func:`qsilicon.hw.blocks.rowunit._quotient_bits`).
PAIRS = [(*p, False) for p in _UNFUSED] + [
    ("train", "r8c8_dsp2_l8_w8k_a8k_100mhz", (28, 7, 64, 1, (4,), (128,)), 0.5, True),
    ("train", "r16c32_dsp2_l16_w8k_a8k_100mhz", (28, 7, 64, 2, (4, 2), (128, 64)), 0.25, True),
    ("train", "r16c64_none_l8_w16k_a16k_100mhz", (28, 4, 48, 1, (3,), (96,)), 0.75, True),
    ("held_out", "r8c16_dsp2_l8_w2k_a8k_100mhz", (32, 8, 64, 1, (4,), (128,)), 0.25, True),
    ("held_out", "r16c32_dot2_l16_w64k_a16k_rb1024_100mhz", (32, 8, 96, 1, (6,), (192,)), 0.5, True),
]


def model_of(shape, ratio8: float, seed: int = 0) -> IntViT:
    image, patch, dim, depth, heads, mlp = shape
    torch.manual_seed(seed)
    cfg = ViTConfig(image=image, patch=patch, dim=dim, depth=depth, heads=heads[0], mlp=mlp[0], head_dim=16,
                    block_heads=heads, block_mlp=mlp)
    model = ViT(cfg).eval()
    calib = torch.rand(64, 1, image, image)
    return IntViT(model, calib, "mixed", ratio8)


def measure(tag: str, shape, ratio8: float, fuse_gelu: bool = True, images: int = 2) -> list[dict]:
    cfg = AccelConfig.from_tag(tag)
    iv = model_of(shape, ratio8)
    prog = compile_vit(iv, cfg, fuse_gelu=fuse_gelu)
    torch.manual_seed(1)
    img = torch.rand(images, 1, shape[0], shape[0])
    codes = prog.input_codes(img)
    expect = iv.logits(img)
    t0 = time.time()
    run = rtl_vit(prog, codes, dump=True)
    log = range(prog.log, prog.log + len(prog.ops) * cfg.lanes)
    stats = None
    for i, res in enumerate(run.results):
        image = prog.with_input(codes[i])
        st = run_program(image, prog.program, cfg)
        stats = stats or st
        same = all(a == b for j, (a, b) in enumerate(zip(image, run.images[i], strict=True)) if j not in log)
        exact = not res.error and torch.equal(torch.tensor(res.logits), expect[i].to(torch.int64))
        if not (same and exact):
            raise SystemExit(f"{tag} {shape} image {i}: the RTL differs from the ISS / integer model "
                             f"(status {res.status:#x})")
    res = run.results[0]
    if any(r.op_cycles != res.op_cycles for r in run.results):
        raise SystemExit(f"{tag} {shape}: the images took different cycles (the model assumes none depend on data)")
    print(f"{tag} {shape} r8={ratio8}{'' if fuse_gelu else ' GELU unfused'}: {res.cycles} cycles, {images} images "
          f"bit-exact, {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    flag = {} if fuse_gelu else {"fuse_gelu": False}
    rows = []
    for info, c, rd, wr, beats in zip(prog.ops, res.op_cycles, stats.read_words, stats.write_words, stats.mac_beats,
                                      strict=True):
        rows.append({"design": tag, "model": list(shape), "ratio8": ratio8, "op": info.name, "kind": info.kind,
                     "model_kind": info.model, "shape": info.shape, "cycles": c, "read_words": rd,
                     "write_words": wr, "mac_beats": beats, **flag})
    rows.append({"design": tag, "model": list(shape), "ratio8": ratio8, **flag, "op": "total", "kind": "total",
                 "model_kind": "total", "shape": {}, "cycles": res.cycles, "read_words": res.rd_words,
                 "write_words": res.wr_words, "mac_beats": res.mac_beats, "images": images, "bit_exact": True,
                 "image_cycles": [r.cycles for r in run.results]})
    return rows


def check(rows: list[dict], pairs: list) -> int:
    """Rerun ``pairs`` on today's RTL; 0 when every descriptor took its stored cycles."""
    for _split, tag, shape, r8, fuse in pairs:
        key = (tag, json.loads(json.dumps(shape)), r8, fuse)
        stored = [r for r in rows if (r["design"], r["model"], r["ratio8"], r.get("fuse_gelu", True)) == key]
        if not stored:
            print(f"{tag} {shape} r8={r8}: not in {OUT.name}", file=sys.stderr)
            return 1
        new = measure(tag, shape, r8, fuse)
        moved = [(a["op"], a["cycles"], b["cycles"]) for a, b in zip(stored, new, strict=True)
                 if (a["op"], a["cycles"]) != (b["op"], b["cycles"])]
        if moved:
            print(f"{tag} {shape} r8={r8}: {len(moved)} of {len(new)} rows moved, e.g. "
                  + ", ".join(f"{op} {old} -> {c}" for op, old, c in moved[:4]), file=sys.stderr)
            return 1
        print(f"{tag}: {len(new) - 1} descriptors and the total ({new[-1]['cycles']} cycles) as stored",
              file=sys.stderr, flush=True)
    print(f"{len(pairs)} pairs: every cycle as stored")
    return 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", choices=("train", "held_out", "all"), default="all")
    ap.add_argument("--quick", action="store_true", help="the first pair only")
    ap.add_argument("--check", action="store_true", help="rerun the stored pairs; exit 1 if a cycle count moved")
    ap.add_argument("--pairs", type=int, default=None, help="with --check: the first N pairs of the split only")
    args = ap.parse_args()
    torch.set_num_threads(2)
    rows = json.loads(OUT.read_text()) if OUT.exists() else []
    if args.check:
        raise SystemExit(check(rows, [p for p in PAIRS if args.split in ("all", p[0])][: args.pairs]))
    done = {(r["design"], json.dumps(r["model"]), r["ratio8"], r.get("fuse_gelu", True)) for r in rows}
    todo = [p for p in PAIRS if args.split in ("all", p[0])][: 1 if args.quick else None]
    for split, tag, shape, r8, fuse in todo:
        key = (tag, json.dumps(json.loads(json.dumps(shape))), r8, fuse)
        if key in done:
            continue
        new = measure(tag, shape, r8, fuse)
        for r in new:
            r["split"] = split
        rows += new
        OUT.write_text(json.dumps(rows, indent=0) + "\n")
    print(f"{len(rows)} rows in {OUT}")
    # the fit and its errors, per run and per kind of descriptor (the README's table)
    from qsilicon.search import vit_latency as vl

    vl.main()
    runs = vl.load_runs()
    model = json.loads(vl.MODEL.read_text())
    errs = vl.errors(runs, model)
    RESULT.parent.mkdir(exist_ok=True)
    RESULT.write_text(json.dumps({"model": model, "runs": errs,
                                  "held_out_max_run_error": max(e["error"] for e in errs if e["split"] == "held_out"),
                                  "held_out_max_kind_error": max(k["error"] for e in errs if e["split"] == "held_out"
                                                                 for k in e["kinds"].values())}, indent=1) + "\n")
    print(f"wrote {RESULT}")


if __name__ == "__main__":
    main()

"""Trained supernet subnets, whole, on the latency model's held-out designs (Verilator).

    python bench/vit_system_subnets.py  ->  bench/results/vit_system_subnets.json

For every (design, subnet) pair below: export the subnet of ``checkpoints/supernet_fmnist.pt``
(row-wise int4/int8 weights as the supernet chose them), make it integer-only (1,000 Fashion-MNIST
training images calibrate it), compile it for the design, and run the first two Fashion-MNIST test
images on the design's RTL: the logits must be ``torch.equal`` to the integer model's and the
memory after each run byte-equal to the instruction-set simulator's.  The RTL cycles are reported
next to the latency model's prediction (``search/data/vit_system_model.json``, fitted on the
training designs of ``bench/vit_system_cycles.py`` only).  The designs' Verilator builds are the
ones ``bench/vit_system_cycles.py`` cached; a cold build takes minutes per design.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from qsilicon.hw.config import AccelConfig
from qsilicon.hw.vit.compiler import compile_vit
from qsilicon.hw.vit.iss import run_program
from qsilicon.quant.datasets import fashion_mnist
from qsilicon.quant.models.int_vit import IntViT
from qsilicon.quant.supernet import Subnet, export_subnet, load_supernet
from qsilicon.search.accel import int_vit_workload, predict
from qsilicon.sim.vit_accel import rtl_vit

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "vit_system_subnets.json"
SUPERNET = ROOT / "checkpoints" / "supernet_fmnist.pt"

#: (design tag, subnet): the held-out designs of bench/vit_system_cycles.py
PAIRS = [
    ("r16c32_none_l16_w64k_a16k_100mhz", "depth=2,dim=48,heads=3-2,mlp=72-96,r8=0.5"),
    ("r32c64_dsp2_l16_w128k_a64k_100mhz", "depth=3,dim=64,heads=4-2-3,mlp=128-64-96,r8=0.25-0.75-0.5-0-1"
                                          "-0.25-0.5-0.75-0.5-0-1-0.25"),
    ("r8c16_dsp2_l8_w2k_a8k_100mhz", "smallest"),
]


def main() -> None:
    torch.set_num_threads(2)
    sv, _ = load_supernet(SUPERNET)
    x, _ = fashion_mnist("train")
    xt, yt = fashion_mnist("test")
    images, labels = xt[:2], yt[:2]
    rows = []
    for tag, spec in PAIRS:
        cfg = AccelConfig.from_tag(tag)
        sub = Subnet.parse(spec, sv.space)
        ex = export_subnet(sv, sub)
        iv = IntViT(ex.model, x[:1000], "mixed", weights=ex.weights)
        prog = compile_vit(iv, cfg)
        codes, expect = prog.input_codes(images), iv.logits(images)
        t0 = time.time()
        run = rtl_vit(prog, codes, dump=True)
        log = range(prog.log, prog.log + len(prog.ops) * cfg.lanes)
        exact, same = [], []
        for i, res in enumerate(run.results):
            image = prog.with_input(codes[i])
            run_program(image, prog.program, cfg)
            same.append(all(image[a] == run.images[i][a] for a in range(len(image)) if a not in log))
            exact.append(not res.error and torch.equal(torch.tensor(res.logits), expect[i].to(torch.int64)))
        bits = [b for _, _, b in ex.weights.values()]
        int4_rows = sum(int((b == 4).sum()) for b in bits)
        pred = predict(cfg, int_vit_workload(iv, cfg), 0.0).cycles
        rtl = run.results[0].cycles
        row = {"design": tag, "subnet": sub.spec, "images": len(images), "bit_exact": all(exact),
               "memory_equal_to_iss": all(same), "int4_rows": int4_rows, "rows": sum(int(b.numel()) for b in bits),
               "rtl_cycles": [r.cycles for r in run.results], "predicted_cycles": pred,
               "cycle_error": abs(pred - rtl) / rtl,
               "rtl_top1": [int(torch.tensor(r.logits).argmax()) for r in run.results],
               "labels": labels.tolist(), "seconds": round(time.time() - t0, 1)}
        rows.append(row)
        print(f"{tag:<36} {sub.spec}: {'bit-exact' if row['bit_exact'] else 'MISMATCH'} on {len(images)} images, "
              f"memory {'=' if row['memory_equal_to_iss'] else '!='} ISS, {int4_rows} of {row['rows']} rows int4; "
              f"{rtl} RTL cycles, {pred} predicted ({100 * row['cycle_error']:.2f}%)", file=sys.stderr, flush=True)
        if not (row["bit_exact"] and row["memory_equal_to_iss"]):
            OUT.write_text(json.dumps(rows, indent=1) + "\n")
            raise SystemExit(f"{tag} {sub.spec}: the RTL differs from the integer model or the ISS")
    OUT.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()

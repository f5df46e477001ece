"""A timm ViT trained here on Fashion-MNIST, imported, quantized without a supernet, on the RTL.

    python bench/import_vit.py [--epochs 6] [--skip-train] [--rtl-images 2]

1. Builds ``timm:vit_tiny_patch16_224`` at Fashion-MNIST's size (28x28x1, 7x7 patches, dim 64,
   4 blocks of 4 heads, MLP 128: the shape of the built-in ViT) and trains it on the CPU (AdamW,
   one-cycle, label smoothing, seed 0: ``qsilicon.quant.models.vit.train``); the weights go to
   ``checkpoints/timm_vit_fmnist.pt``.
2. Runs the commands a user runs: ``qsilicon import SPEC --weights ...``, then
   ``qsilicon quantize model`` at w8a8, w4a8 and mixed (half the rows int8) with 1,000
   calibration images, accuracy on the 10,000 test images (float and integer-only);
3. ``qsilicon verify vit --model`` of the mixed model on a generated design's RTL (Verilator).

Prints and writes ``bench/results/import_vit.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "import_vit.json"
CKPT = ROOT / "checkpoints" / "timm_vit_fmnist.pt"
SPEC = ("timm:vit_tiny_patch16_224?img_size=28&patch_size=7&in_chans=1&num_classes=10&embed_dim=64&depth=4&"
        "num_heads=4&mlp_ratio=2")
DESIGN = "r16c32_dsp2_l16_w32k_a64k_200mhz"


def qs(*args) -> dict:
    p = subprocess.run([sys.executable, "-m", "qsilicon.flow", *args, "--json"], capture_output=True, text=True,
                       cwd=ROOT)
    if p.returncode:
        sys.exit(f"qsilicon {' '.join(args)} failed:\n{p.stderr}")
    return json.loads(p.stdout)


def train(epochs: int) -> dict:
    import torch

    from qsilicon.quant.datasets import fashion_mnist
    from qsilicon.quant.frontend import load_source
    from qsilicon.quant.models.vit import evaluate
    from qsilicon.quant.models.vit import train as fit

    torch.set_num_threads(2)
    src = load_source(SPEC, seed=0)
    model = src.module.train()
    x, y = fashion_mnist("train")
    xt, yt = fashion_mnist("test")
    t0 = time.perf_counter()
    fit(model, x, y, epochs=epochs, seed=0, log=lambda m: print(f"  {m}", flush=True))
    acc = evaluate(model, xt, yt)
    CKPT.parent.mkdir(exist_ok=True)
    tmp = CKPT.with_suffix(".tmp")
    torch.save(model.state_dict(), tmp)
    tmp.replace(CKPT)
    return {"epochs": epochs, "seconds": round(time.perf_counter() - t0), "float_test_accuracy": acc}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--skip-train", action="store_true", help="use the checkpoint already there")
    ap.add_argument("--rtl-images", type=int, default=2)
    args = ap.parse_args()
    doc = {"source": SPEC, "checkpoint": str(CKPT.relative_to(ROOT))}
    if not args.skip_train:
        print(f"training {SPEC} on Fashion-MNIST ({args.epochs} epochs)", flush=True)
        doc["training"] = train(args.epochs)
    elif OUT.exists():
        doc["training"] = json.loads(OUT.read_text()).get("training")
    d = ROOT / "out" / "bench-import" / "timm_vit"
    imp = qs("import", SPEC, "--weights", str(CKPT), "-o", str(d))
    doc["import"] = {k: imp[k] for k in ("config", "parameters", "check", "operators")}
    doc["precisions"] = {}
    print(f"{'precision':<10} {'float':>7} {'integer':>8} {'int8 rows':>10}")
    for prec in ("w8a8", "w4a8", "mixed"):
        r = qs("quantize", "model", str(d), "--precision", prec, "--calib", "fashion-mnist:train:1000",
               "--calib-images", "1000", "--eval", "fashion-mnist:test")
        doc["precisions"][prec] = {k: r[k] for k in ("float_accuracy", "integer_accuracy", "int8_rows", "rows",
                                                     "top1_agreement", "eval_images")}
        print(f"{prec:<10} {r['float_accuracy']:>6.2f}% {r['integer_accuracy']:>7.2f}% "
              f"{r['int8_rows']:>5}/{r['rows']}", flush=True)
    # the last quantization (mixed) stays in the directory: the whole model on the RTL
    t0 = time.perf_counter()
    v = qs("verify", "vit", "--model", str(d), "--design", DESIGN, "--any-design", "--images", str(args.rtl_images))
    doc["rtl"] = {"design": DESIGN, "images": v["images"], "bit_exact": v["bit_exact"],
                  "memory_equal_to_iss": v["memory_equal_to_iss"],
                  "rtl_cycles_per_image": v["rtl_cycles"] // v["images"],
                  "predicted_cycles_per_image": v["predicted_cycles"] // v["images"],
                  "cycle_error": round(v["cycle_error"], 5), "label_accuracy": v["label_accuracy"],
                  "wall_s": round(time.perf_counter() - t0)}
    print(f"RTL ({DESIGN}, Verilator): {v['images']} images bit-exact {v['bit_exact']}, "
          f"{doc['rtl']['rtl_cycles_per_image']} cycles/image vs {doc['rtl']['predicted_cycles_per_image']} predicted "
          f"({100 * v['cycle_error']:.2f}%)")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"written to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

"""Quasar-ViT's published ZCU102 FPS next to the latency model's prediction for our best design.

For DeiT-Tiny/Small/Base shapes (197 tokens, head_dim 64, MLP 4x, 12 blocks) with half of every
linear layer's rows int8 and half int4 (``--ratio8``), the hardware grid of
:mod:`qsilicon.search.paper` is searched exhaustively under the ZCU102's resources times the
utilization cap; the best predicted FPS is reported at each clock, and at 200 MHz again without
``dot2`` lanes (the ablation).  Predictions, not measurements.

    python bench/paper_comparison.py  ->  bench/results/paper_comparison.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from qsilicon.boards import get_board
from qsilicon.search.paper import GRID, compare

OUT = Path(__file__).resolve().parent / "results" / "paper_comparison.json"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--util-cap", type=float, default=0.8)
    ap.add_argument("--ratio8", type=float, default=0.5)
    args = ap.parse_args()
    board = get_board("zcu102")
    doc = {"board": board.name, "part": board.part, "dram_gbps": board.dram_gbps, "util_cap": args.util_cap,
           "ratio8": args.ratio8, "grid": {k: list(v) for k, v in GRID.items()}, "rows": []}
    print(f"{'model':<11} {'clock':>6} {'predicted FPS':>13} {'Quasar-ViT FPS':>14}  "
          "design (LUT/DSP share), cycle shares")
    for clock in (150.0, 200.0):
        for r in compare(board, clock_mhz=clock, util_cap=args.util_cap, ratio8=args.ratio8):
            r["clock_mhz"] = clock
            doc["rows"].append(r)
            c = r["config"]
            print(f"{r['model']:<11} {clock:>6g} {r['predicted_fps']:>13.1f} {r['quasar_vit_fps']:>14.1f}  "
                  f"r{c['rows']}c{c['cols']} {c['packing']} l{c['lanes']} ({100 * r['util']['lut']:.0f}% / "
                  f"{100 * r['util']['dsp']:.0f}%), cycles in GEMM descriptors {100 * r['cycle_share']['gemm']:.0f}%, "
                  f"array busy {100 * r['gemm_share']:.0f}%, MAC rate {100 * r['mac_util']:.0f}% of peak")
    # what each technique gives (same models, same grid): without dot2 lanes (int4 rows at the int8 rate)
    doc["ablation"] = []
    print("\nablation at 200 MHz: best predicted FPS by the packings the grid may use")
    for label, packings in (("none, dsp2 (int4 rows at the int8 rate)", ("none", "dsp2")),
                            ("none, dsp2, dot2 (int4 rows two steps a cycle)", GRID["packing"])):
        fps = {r["model"]: r["predicted_fps"] for r in compare(board, clock_mhz=200.0, util_cap=args.util_cap,
                                                               ratio8=args.ratio8, packings=packings)}
        doc["ablation"].append({"packings": list(packings), "clock_mhz": 200.0, "predicted_fps": fps})
        print(f"  {label:<48} " + "  ".join(f"{m} {v:6.1f}" for m, v in fps.items()))
    OUT.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()

"""Yosys synthesis (Zynq UltraScale+) of whole generated ViT accelerators: the data of the search's
resource model of the system around the GEMM engine and the vector units.

    python bench/calibrate_system.py [--split train|held_out|all] [--missing]

Every design below is synthesized whole (``qsilicon synth design``'s flow: ``synth_xilinx -family
xcup`` with ``abc -luts``); the counts go to ``search/data/vit_system_resources.json`` with the
fitted model (``python -m qsilicon.search.system_resources`` refits from the stored counts).
Results are cached, so a second run only refits; ``--missing`` synthesizes only the designs the
data file lacks (on a machine without the cache).  About 5 minutes for an 8x8 design, longer for
large arrays.  The same run measures each design's logic depth (:mod:`qsilicon.hw.timing`): its
``clock_bound_mhz`` on UltraScale+ at speed grade -2, the data of the search's clock bound.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from qsilicon.hw.config import AccelConfig
from qsilicon.hw.timing import synthesize_timed
from qsilicon.hw.vit.system import VitAccel
from qsilicon.search import system_resources as sr

ROOT = Path(__file__).resolve().parents[1]

#: (split, design tag); the clock does not change the netlist
DESIGNS = [
    ("train", "r8c8_dsp2_l8_w8k_a8k_100mhz"),
    ("train", "r16c32_dsp2_l16_w8k_a8k_100mhz"),
    ("train", "r16c64_none_l8_w16k_a16k_100mhz"),
    ("train", "r32c16_dsp2_l8_w8k_a32k_100mhz"),
    ("train", "r8c32_none_l8_w32k_a8k_100mhz"),
    ("train", "r16c16_dsp2_l16_w32k_a8k_100mhz"),
    ("held_out", "r16c32_none_l8_w64k_a16k_100mhz"),
    ("held_out", "r32c32_dsp2_l8_w64k_a32k_100mhz"),
    ("held_out", "r8c16_dsp2_l8_w16k_a8k_100mhz"),
    ("held_out", "r8c16_dot2_l8_w16k_a8k_100mhz"),
    ("held_out", "r8c16_dsp2_l8_w16k_a8k_rb1024_100mhz"),  # a row buffer: its BRAMs by the memory rule
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", choices=("train", "held_out", "all"), default="all")
    ap.add_argument("--missing", action="store_true", help="synthesize only the designs the data file lacks")
    args = ap.parse_args()
    doc = json.loads(sr.DATA.read_text()) if sr.DATA.exists() else {}
    points = {p["design"]: p for p in doc.get("points", [])}
    for split, tag in DESIGNS:
        if args.split not in ("all", split) or (args.missing and tag in points):
            continue
        t = time.time()
        res, timing = synthesize_timed(VitAccel(AccelConfig.from_tag(tag)), "vit_accel")
        points[tag] = {"design": tag, "split": split, "counts": res.counts, "tool": res.tool,
                       "clock_bound_mhz": round(timing.fmax_mhz, 1), "critical_path": asdict(timing.worst)}
        print(f"{tag}: {res.counts}, clock bound {timing.fmax_mhz:.0f} MHz ({time.time() - t:.0f} s"
              f"{', cached' if timing.cached else ''})", file=sys.stderr, flush=True)
        doc["points"] = list(points.values())
        sr.DATA.write_text(json.dumps(doc, indent=1) + "\n")
    sr.main()
    errs = sr.errors(json.loads(sr.DATA.read_text())["points"])
    out = ROOT / "bench" / "results" / "vit_system_resources.json"
    out.write_text(json.dumps({"designs": errs, "tool": next(iter(points.values()))["tool"]}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

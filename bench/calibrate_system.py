"""Yosys synthesis (Zynq UltraScale+) of whole generated ViT accelerators: the data of the search's
resource model of the system around the GEMM engine and the vector units.

    python bench/calibrate_system.py [--split train|held_out|all] [--missing]

Every design below is synthesized whole (``qsilicon synth design``'s flow: ``synth_xilinx -family
xcup`` with ``abc -luts``); the counts go to ``search/data/vit_system_resources.json`` with the
fitted model (``python -m qsilicon.search.system_resources`` refits from the stored counts).
Results are cached, so a second run only refits; ``--missing`` synthesizes only the designs the
data file lacks (on a machine without the cache).  About 5 minutes for an 8x8 design, longer for
large arrays.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from qsilicon.hw.config import AccelConfig
from qsilicon.hw.synth import synthesize
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
        res = synthesize(VitAccel(AccelConfig.from_tag(tag)), "vit_accel", "xcup_abc")
        points[tag] = {"design": tag, "split": split, "counts": res.counts, "tool": res.tool}
        print(f"{tag}: {res.counts} ({time.time() - t:.0f} s{', cached' if res.cached else ''})", file=sys.stderr,
              flush=True)
        doc["points"] = list(points.values())
        sr.DATA.write_text(json.dumps(doc, indent=1) + "\n")
    sr.main()
    errs = sr.errors(json.loads(sr.DATA.read_text())["points"])
    out = ROOT / "bench" / "results" / "vit_system_resources.json"
    out.write_text(json.dumps({"designs": errs, "tool": next(iter(points.values()))["tool"]}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

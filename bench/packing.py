"""MACs per DSP48E2 per cycle of the packed multiplier lanes, from synthesized DSP counts and RTL
cycle counts, all bit-exact; and LUTs per MAC of the LUT variant.

For each mode an 8x8 array is synthesized alone (``synth_xilinx -family xcup``; the requantizer's
DSPs are not the array's) and the whole engine runs a 64x64x64 problem on Verilator.
MACs/DSP/cycle = M*N*K / (cycles * array DSPs); peak = rows*cols / array DSPs.  LUT/MAC counts the
array's LUTs (accumulators included) per PE; "mul LUT/MAC" synthesizes one multiplier lane alone.
Usage: python bench/packing.py [--out bench/results/packing.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from amaranth import Module, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from qsilicon.hw.blocks import MacArray
from qsilicon.hw.blocks.packed import PackedMul, lane_geometry
from qsilicon.hw.config import GemmConfig
from qsilicon.hw.synth import synthesize, yosys_version
from qsilicon.quant import random_gemm_case, ref_gemm
from qsilicon.sim.gemm import rtl_gemm

MODES = [  # (label, wbits, abits, packing, int8 share of a row-wise mixed layer or None)
    ("W8A8", 8, 8, "dsp2", None),
    ("W4A8", 4, 8, "dsp2", None),
    ("W4A4", 4, 4, "dsp4", None),
    ("W8A8 unpacked", 8, 8, "none", None),
    ("W4A8 LUT", 4, 8, "lut", None),
    ("W4A4 LUT", 4, 4, "lut", None),
    ("W8A8 rows dot2", 8, 8, "dot2", 1.0),  # the mixed engine's int8 rows on dot2 lanes
    ("W4A8 rows dot2", 8, 8, "dot2", 0.0),  # its int4 rows: two reduction steps a beat
]


class _RegisteredLane(wiring.Component):
    """One multiplier lane between registers (Yosys rejects the bare combinational lane's RTLIL,
    issue 4349); the registers are FFs, so the LUTs are the multiplier's."""

    def __init__(self, packing: str, abits: int, wbits: int):
        self._lane = PackedMul(packing, signed(abits), signed(wbits))
        na, nw = lane_geometry(packing)
        super().__init__({"a": In(signed(abits)).array(na), "w": In(signed(wbits)).array(nw),
                          "p": Out(signed(abits + wbits + 1)).array(na * nw)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.lane = lane = self._lane
        for i, a in enumerate(self.a):
            m.d.sync += lane.a[i].eq(a)
        for j, w in enumerate(self.w):
            m.d.sync += lane.w[j].eq(w)
        for k, p in enumerate(self.p):
            m.d.sync += p.eq(lane.p[k])
        return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "packing.json"))
    ap.add_argument("--size", type=int, default=8, help="array rows = cols (default 8)")
    args = ap.parse_args()
    n = args.size
    rows = []
    print(f"{'mode':<15} {'packing':<7} {'DSP':>4} {'LUT':>6} {'cycles':>7} {'MAC/DSP/cyc':>11} {'peak':>5} "
          f"{'LUT/MAC':>8} {'mul LUT/MAC':>11} {'bit-exact':>9}")
    log = Path(tempfile.gettempdir()) / "qsilicon-bench-packing.log"
    for label, wbits, abits, packing, ratio8 in MODES:
        mixed = ratio8 is not None
        cfg = GemmConfig(n, n, wbits, abits, True, packing, mixed)
        array = MacArray(n, n, signed(abits), signed(wbits), packing)
        syn = synthesize(array, "mac_array", "xcup").counts
        case = random_gemm_case(64, 64, 64, wbits=wbits, abits=abits, seed=99, ratio8=ratio8)
        res = rtl_gemm(case, cfg, sim="verilator", log_file=log)
        exact = bool(torch.equal(res.out, ref_gemm(case).out))
        macs = 64 * 64 * 64
        dsp = syn.get("dsp", 0)
        per_dsp = macs / (res.cycles * dsp) if dsp else None
        # a dot2 beat of int4 rows carries two reduction steps: two MACs per PE and cycle
        peak = n * n * (2 if packing == "dot2" and ratio8 == 0.0 else 1) / dsp if dsp else None
        lut_per_mac = syn.get("lut", 0) / (n * n)
        # The multiplier alone (one lane, no accumulator): LUTs per multiplier of the LUT variant
        # (a dot2 lane is part of the array: its ports are packed per row and column).
        lane_luts_per_mac = None
        if packing != "dot2":
            lane = synthesize(_RegisteredLane(packing, abits, wbits), "lane", "xcup").counts
            na, nw = lane_geometry(packing)
            lane_luts_per_mac = lane.get("lut", 0) / (na * nw)
        rows.append({"mode": label, "wbits": wbits, "abits": abits, "packing": packing, "ratio8": ratio8,
                     "array": [n, n],
                     "array_counts": syn, "cycles": res.cycles, "macs": macs, "macs_per_dsp_per_cycle": per_dsp,
                     "peak_macs_per_dsp_per_cycle": peak, "luts_per_mac": lut_per_mac,
                     "multiplier_luts_per_mac": lane_luts_per_mac, "bit_exact": exact})
        print(f"{label:<15} {packing:<7} {dsp:>4} {syn.get('lut', 0):>6} {res.cycles:>7} "
              f"{(f'{per_dsp:.2f}' if per_dsp else '-'):>11} {(f'{peak:g}' if peak else '-'):>5} "
              f"{lut_per_mac:>8.1f} {(f'{lane_luts_per_mac:.1f}' if lane_luts_per_mac is not None else '-'):>11} "
              f"{str(exact):>9}", flush=True)
    doc = {"bench": "packing", "target": "xcup", "tool": yosys_version(), "results": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

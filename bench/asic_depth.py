"""The QuartDepth engine's 4-bit datapath against its int8 datapath, on a standard-cell library.

    python bench/asic_depth.py [--calib 256] [--test 300] [--co 8] [--px 4] [--clock 100]

Two rows, the same engine size, the same 64x64 depth network (first and last layers W8A8):

* ``int8``: ``packing none`` (an int8 x uint8 multiplier per PE) running the W4A4 ``quartdepth``
  network (polished 4-bit codes decoded to the 8-bit grid before the multipliers: today's path);
* ``4-bit``: ``packing nibble`` (two 5x4-bit multipliers per PE) running the W4A4 ``quartdepth-u4``
  network (uniform 4-bit codes, two input channels per beat).

Per row: accuracy of the integer network on the synthetic test scenes (AbsRel, on the same scenes
for both), cycles of one inference on the engine's RTL (Verilator; the output checked bit for bit
against the integer graph) and the latency model's prediction, the engine mapped to OSU 0.18 um by
Yosys (area by logic, flip-flops and the SRAM-macro model), OpenSTA's fmax and the logic's power
(the default activity: 0.1 toggles per cycle on the inputs, propagated; stated in the JSON), the
memories' access power from the reads and writes of that inference (counted by the
instruction-set simulator, which issues them as the engine's enables do), energy per
inference (power x RTL cycles / clock), inferences per second at fmax, TOPS/W and TOPS/mm^2 (2
operations per MAC of the network).  Also the multipliers alone (MACs per cycle per multiplier
area) and the QuartDepth paper's figure with the node scaling stated.  Prints a table and writes
``bench/results/asic_depth.json``.  Cold: about 30 minutes (two engine mappings); cached after.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
ROWS = (("int8", "quartdepth", "none"), ("4-bit", "quartdepth-u4", "nibble"))
#: QuartDepth (Shen et al., 2025) as summarised in the issue: 12.6 TOPS/W and a 3.8x latency
#: speed-up for its 4-bit ASIC engine; the technology node is not given there.
PAPER_TOPS_W = 12.6
#: Node scaling assumed for the comparison: constant-field (Dennard et al., JSSC 1974) switching
#: energy C V^2 with C proportional to the feature size, from 0.18 um / 1.8 V to 28 nm / 0.9 V.
SCALE_NODE_UM, SCALE_VOLT = 0.028, 0.9


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def multiplier_areas(clock_mhz: float) -> dict:
    """Area of one PE's multiplier alone: int8 x uint8 (``a * w``) and the nibble multiplier."""
    from amaranth import Module, signed, unsigned
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    from qsilicon.hw.asic import asic_synthesize
    from qsilicon.hw.blocks.packed import nibble_mul

    class Mul(wiring.Component):
        def __init__(self, nibble: bool) -> None:
            self.nibble = nibble
            sig = {"a": In(signed(8)), "w": In(unsigned(8)), "p": Out(signed(17))}
            if nibble:
                sig.update(pair=In(1), phase=In(1))
            super().__init__(sig)

        def elaborate(self, platform):
            m = Module()
            m.d.comb += self.p.eq(nibble_mul(self.a, self.w, self.pair, self.phase) if self.nibble
                                  else self.a * self.w)
            return m

    out = {}
    for name, nib in (("int8xuint8", False), ("nibble", True)):
        net = asic_synthesize(Mul(nib), f"mul_{name}", "osu018", clock_mhz)
        out[name] = {"area_um2": net.area_um2["total"], "cells": net.cell_count}
    a8, a4 = out["int8xuint8"]["area_um2"], out["nibble"]["area_um2"]
    out["w4a4_macs_per_cycle_per_area_vs_int8"] = round((2 / a4) / (1 / a8), 3)
    out["int8_macs_per_cycle_per_area_vs_int8"] = round((0.5 / a4) / (1 / a8), 3)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "depth_synth.pt"))
    ap.add_argument("--calib", type=int, default=256)
    ap.add_argument("--test", type=int, default=300)
    ap.add_argument("--co", type=int, default=8)
    ap.add_argument("--px", type=int, default=4)
    ap.add_argument("--clock", type=float, default=100.0, help="MHz that ABC maps for and power is computed at")
    ap.add_argument("--output", default=str(ROOT / "bench" / "results" / "asic_depth.json"))
    args = ap.parse_args()
    torch.set_num_threads(2)

    from qsilicon.hw.asic import asic_report, asic_synthesize, library
    from qsilicon.hw.depth.compiler import compile_graph
    from qsilicon.hw.depth.engine import DepthEngine
    from qsilicon.hw.depth.isa import EngineConfig
    from qsilicon.hw.depth.iss import run_program
    from qsilicon.quant.depth_data import depth_split
    from qsilicon.quant.models.depthnet import depth_metrics, load_depth
    from qsilicon.quant.ptq import fold_depthnet, method_config, quantize_graph
    from qsilicon.quant.ptq.export import export_graph
    from qsilicon.search.depth_latency import predict_program
    from qsilicon.sim.depth import rtl_run

    model, _ = load_depth(args.checkpoint)
    xc, dc = depth_split("calib", args.calib, progress=log)
    xt, dt = depth_split("test", args.test, progress=log)
    tech = library("osu018")
    result = {"checkpoint": Path(args.checkpoint).name, "calib_scenes": args.calib, "test_scenes": args.test,
              "library": tech.to_dict(), "clock_mhz": args.clock, "image": "64x64",
              "precision": "hidden layers W4A4; first and last layers W8A8", "rows": {}}
    log("multipliers alone")
    result["multipliers"] = multiplier_areas(args.clock)
    runs = {}
    for label, method, packing in ROWS:  # accuracy and RTL cycles
        t0 = time.time()
        log(f"{label}: quantizing ({method})")
        ig = export_graph(quantize_graph(fold_depthnet(model), xc, dc, method_config(method, 4, 4)))
        pred = torch.cat([ig.log_depth(xt[i : i + 100]).exp().float() for i in range(0, len(xt), 100)])
        acc = {k: round(v, 5) if isinstance(v, float) else v for k, v in depth_metrics(pred, dt).items()}
        cfg = EngineConfig(co=args.co, px=args.px, max_width=64, packing=packing)
        prog = compile_graph(ig, cfg, height=64, width=64)
        log(f"{label}: one inference on the RTL of {cfg.tag} (Verilator)")
        mem = prog.with_input(ig.image_codes(xt[:1])[0])
        rtl = rtl_run(cfg, mem, prog.prog_addr)
        if not torch.equal(prog.read(rtl.memory), ig.forward(xt[:1])):
            raise SystemExit(f"{label}: the RTL's depth map differs from the integer graph")
        iss = run_program(bytearray(mem), prog.prog_addr, cfg)  # the memories' reads and writes
        runs[label] = (method, cfg, prog, rtl, acc, iss, time.time() - t0)
    for label, _, _ in reversed(ROWS):  # the engines on the cell library
        method, cfg, prog, rtl, acc, iss, seconds = runs[label]
        t0 = time.time()
        log(f"{label}: mapping {cfg.tag} to osu018 (minutes; cached after)")
        net = asic_synthesize(DepthEngine(cfg), "depth_engine", "osu018", args.clock)
        rep = asic_report(net, args.clock, None, None, rtl.cycles,
                          accesses=iss.access_rates(rtl.cycles),
                          access_source="access counts of the instruction-set simulator on the same image, "
                                        "over the RTL's cycles")
        macs = sum(layer.macs for layer in prog.layers)
        fmax = rep["fmax_mhz"]
        energy_uj = rep["energy_per_inference_uj"]
        ops = 2 * macs
        ips = fmax * 1e6 / rtl.cycles
        result["rows"][label] = {
            "method": method, "engine": cfg.to_dict(), "engine_tag": cfg.tag, "accuracy": acc,
            "macs": macs, "rtl_cycles": rtl.cycles, "predicted_cycles": predict_program(prog).cycles,
            "pair_layers": [layer.name for layer in prog.layers if layer.pair],
            "macs_per_cycle": round(macs / rtl.cycles, 2),
            "area_um2": rep["area_um2"], "area_mm2": rep["area_mm2"], "area_breakdown_um2": rep["area_breakdown_um2"],
            "cells": rep["cells"], "fmax_mhz": fmax, "slack_ns": rep["slack_ns"],
            "critical_path": rep["critical_path"], "power_mw": rep["power_mw"],
            "activity_source": rep["activity_source"], "memory_access_source": rep["memory_access_source"],
            "memory_access": rep["memory_access"], "energy_per_inference_uj": energy_uj,
            "inferences_per_s_at_fmax": round(ips, 2), "latency_ms_at_fmax": round(1e3 / ips, 3),
            "tops_per_w": round(ops / (energy_uj * 1e-6) / 1e12, 5),
            "tops_per_mm2": round(ops * ips / 1e12 / rep["area_mm2"], 6),
            "seconds": round(seconds + time.time() - t0, 1)}
    result["rows"] = {label: result["rows"][label] for label, _, _ in ROWS}
    a, b = result["rows"]["int8"], result["rows"]["4-bit"]
    scale = (tech.node_um / SCALE_NODE_UM) * (tech.voltage / SCALE_VOLT) ** 2
    result["gain_4bit_over_int8"] = {
        "cycles": round(a["rtl_cycles"] / b["rtl_cycles"], 3),
        "energy_per_inference": round(a["energy_per_inference_uj"] / b["energy_per_inference_uj"], 3),
        "inferences_per_s": round(b["inferences_per_s_at_fmax"] / a["inferences_per_s_at_fmax"], 3),
        "area": round(b["area_mm2"] / a["area_mm2"], 3),
        "abs_rel_difference": round(b["accuracy"]["abs_rel"] - a["accuracy"]["abs_rel"], 5)}
    result["paper"] = {
        "quartdepth_tops_per_w": PAPER_TOPS_W, "quartdepth_node": "not given in the summaries quoted",
        "scaling": (f"constant-field C V^2 (Dennard et al., JSSC 1974): energy x {SCALE_NODE_UM / tech.node_um:.3f} "
                    f"(feature size) x ({SCALE_VOLT}/{tech.voltage})^2, from {tech.node_um} um {tech.voltage} V to "
                    f"{SCALE_NODE_UM * 1000:g} nm {SCALE_VOLT} V: a factor {scale:.1f}"),
        "ours_4bit_tops_per_w_scaled_28nm": round(b["tops_per_w"] * scale, 3),
        "ours_int8_tops_per_w_scaled_28nm": round(a["tops_per_w"] * scale, 3)}
    Path(args.output).write_text(json.dumps(result, indent=1) + "\n")

    print(f"QuartDepth engine c{args.co}p{args.px}w64 on {tech.name} ({tech.node_um} um, {tech.corner}), "
          f"{args.clock:g} MHz, power at the default activity; 64x64 depth network")
    print(f"{'datapath':<8} {'method':<14} {'AbsRel':>7} {'cycles':>9} {'pred':>9} {'area mm2':>9} {'fmax':>6} "
          f"{'mW':>7} {'uJ/inf':>8} {'inf/s':>7} {'TOPS/W':>8} {'TOPS/mm2':>9}")
    for label, r in result["rows"].items():
        print(f"{label:<8} {r['method']:<14} {r['accuracy']['abs_rel']:>7.4f} {r['rtl_cycles']:>9} "
              f"{r['predicted_cycles']:>9} {r['area_mm2']:>9.3f} {r['fmax_mhz']:>6.1f} {r['power_mw']['total']:>7.1f} "
              f"{r['energy_per_inference_uj']:>8.1f} {r['inferences_per_s_at_fmax']:>7.1f} {r['tops_per_w']:>8.4f} "
              f"{r['tops_per_mm2']:>9.5f}")
    m = result["multipliers"]
    print(f"multipliers: int8 x uint8 {m['int8xuint8']['area_um2']:.0f} um2, nibble {m['nibble']['area_um2']:.0f} um2: "
          f"W4A4 MACs/cycle per multiplier area x{m['w4a4_macs_per_cycle_per_area_vs_int8']} of int8 x uint8")
    g = result["gain_4bit_over_int8"]
    print(f"4-bit over int8: {g['cycles']}x fewer cycles, {g['energy_per_inference']}x less energy per inference, "
          f"area x{g['area']}, AbsRel {g['abs_rel_difference']:+.4f}")
    p = result["paper"]
    print(f"QuartDepth paper: {PAPER_TOPS_W} TOPS/W (node not given); ours scaled to 28 nm 0.9 V "
          f"({p['scaling'].split(': ')[-1]}): 4-bit {p['ours_4bit_tops_per_w_scaled_28nm']}, "
          f"int8 {p['ours_int8_tops_per_w_scaled_28nm']} TOPS/W")
    return 0


if __name__ == "__main__":
    sys.exit(main())

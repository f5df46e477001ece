"""ASIC figures of the QuartDepth engine on the 64x64 depth network: OSU 0.18 um, OpenSTA.

For each network precision (W4A4 `quartdepth`, and W8A8 as the 8-bit baseline) on one engine:
the whole network on the engine's RTL (Verilator, bit-exact to the integer graph: its cycles),
the engine mapped to the OSU 0.18 um cells (Yosys), a partial run of the mapped netlist at gate
level (Icarus) up to the end of a window inside the first hidden layer, equal to the RTL's partial
run at the same cycle (memory image and registers), the window's toggles as the activity of
OpenSTA's power, and from them fmax, inferences per second, energy per inference, TOPS/W and
TOPS/mm^2.  Energy per inference = the window's average power x the whole run's RTL cycles / clock
(the window is in a compute-bound layer, like 97% of the run's cycles).

Writes ``bench/results/asic_depth.json`` and prints a table.  The first run synthesizes the engine
(tens of minutes; cached after).

    python bench/asic_depth.py [--co 16 --px 8] [--clock 100] [--window 2000] [--calib 64]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from qsilicon.hw.asic import activity_from_vcd, asic_report, asic_synthesize
from qsilicon.hw.depth.compiler import compile_graph
from qsilicon.hw.depth.engine import DepthEngine
from qsilicon.hw.depth.isa import EngineConfig
from qsilicon.quant.depth_data import depth_split
from qsilicon.quant.models.depthnet import depth_metrics, load_depth
from qsilicon.quant.ptq import fold_depthnet, method_config, quantize_graph
from qsilicon.quant.ptq.export import export_graph
from qsilicon.sim.depth import rtl_run

ROOT = Path(__file__).resolve().parents[1]
#: QuartDepth's ASIC as quoted by summaries of the paper (node not given there).
PAPER = {"tops_per_w": 12.6, "latency_speedup": 3.8}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--co", type=int, default=16)
    ap.add_argument("--px", type=int, default=8)
    ap.add_argument("--clock", type=float, default=100.0, help="MHz the netlist is mapped and measured at")
    ap.add_argument("--window", type=int, default=2000, help="gate-level cycles whose toggles give the power")
    ap.add_argument("--calib", type=int, default=64, help="calibration scenes of the quantization")
    ap.add_argument("--test", type=int, default=100, help="test scenes for the accuracy column")
    ap.add_argument("--output", default=str(ROOT / "bench" / "results" / "asic_depth.json"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    cfg = EngineConfig(co=args.co, px=args.px)
    model, _ = load_depth(ROOT / "checkpoints" / "depth_synth.pt")
    xc, dc = depth_split("calib", args.calib)
    xt, dt = depth_split("test", args.test)
    nodes = fold_depthnet(model)

    t0 = time.perf_counter()
    log(f"mapping {cfg.tag} to osu018 at {args.clock:g} MHz (Yosys; cached after the first run)")
    net = asic_synthesize(DepthEngine(cfg), "depth_engine", "osu018", args.clock)
    log(f"  {net.cell_count} cells, {net.area_um2['total'] / 1e6:.3f} mm^2 ({time.perf_counter() - t0:.0f} s)")
    rows = []
    for label, wbits, abits in (("W4A4", 4, 4), ("W8A8", 8, 8)):
        log(f"{label}: quantizing (quartdepth, {args.calib} calibration scenes)")
        qg = quantize_graph(nodes, xc, dc, method_config("quartdepth", wbits, abits))
        ig = export_graph(qg)
        acc = depth_metrics(ig.log_depth(xt).exp().float(), dt)
        prog = compile_graph(ig, cfg, height=64, width=64)
        img = xt[:1]
        mem = prog.with_input(ig.image_codes(img)[0])
        t = time.perf_counter()
        full = rtl_run(cfg, mem, prog.prog_addr)
        exact = bool(torch.equal(prog.read(full.memory), ig.forward(img)))
        log(f"  RTL: {full.cycles} cycles, bit-exact {exact} ({time.perf_counter() - t:.0f} s)")
        tags = {s.name: s.tag for s in prog.layers}
        layer = next(s.name for s in prog.layers[1:])  # the first hidden (4-bit for W4A4) layer
        start = full.first_by_tag[tags[layer]] + 1000
        stop = start + args.window
        t = time.perf_counter()
        part = rtl_run(cfg, mem, prog.prog_addr, stop_at=stop)
        with tempfile.TemporaryDirectory() as tmp:
            vcd = Path(tmp) / "gl.vcd"
            gl = rtl_run(cfg, mem, prog.prog_addr, netlist=net, vcd=vcd, vcd_window=(start, args.window),
                         stop_at=stop)
            act, n = activity_from_vcd(vcd)
        same = gl.memory == part.memory and gl.regs == part.regs
        log(f"  gate level to cycle {stop}: equal to the RTL {same} ({time.perf_counter() - t:.0f} s)")
        if not (exact and same):
            raise SystemExit(f"{label}: the RTL or the netlist differs: bit-exact {exact}, netlist = RTL {same}")
        src = (f"gate-level simulation (Icarus) of the mapped netlist, cycles {start}-{stop} (layer {layer}), "
               f"equal to the RTL at cycle {stop}")
        rep = asic_report(net, args.clock, act, src, full.cycles)
        macs = sum(s.macs for s in prog.layers)
        energy_j = rep["energy_per_inference_uj"] * 1e-6
        fps_fmax = rep["fmax_mhz"] * 1e6 / full.cycles
        row = {"precision": label, "method": "quartdepth", "abs_rel": round(acc["abs_rel"], 4), "engine": cfg.tag,
               "macs": macs, "rtl_cycles": full.cycles, "bit_exact": exact, "gate_level_equal": same,
               "clock_mhz": args.clock, "fmax_mhz": rep["fmax_mhz"], "inferences_per_s_at_clock":
               round(args.clock * 1e6 / full.cycles, 2), "inferences_per_s_at_fmax": round(fps_fmax, 2),
               "area_mm2": rep["area_mm2"], "area_breakdown_um2": rep["area_breakdown_um2"],
               "power_mw": rep["power_mw"], "energy_per_inference_uj": rep["energy_per_inference_uj"],
               "tops_per_w": round(2 * macs / energy_j / 1e12, 4),
               "tops_per_mm2_at_fmax": round(2 * macs * fps_fmax / 1e12 / rep["area_mm2"], 5),
               "activity_source": rep["activity_source"], "critical_path": rep["critical_path"]}
        rows.append(row)
        log(f"  {json.dumps({k: row[k] for k in ('fmax_mhz', 'power_mw', 'energy_per_inference_uj', 'tops_per_w')})}")
    result = {"library": rep["library"], "engine": cfg.to_dict(), "memory_model": rep["memory_model"],
              "rows": rows, "paper": PAPER,
              "node_scaling": "energy per operation ~ C V^2: 0.18 um 1.8 V -> 28 nm 0.9 V is (0.18/0.028) x "
                              "(1.8/0.9)^2 = 25.7x less (capacitance with the feature size)",
              "seconds": round(time.perf_counter() - t0)}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(f"| network | AbsRel | RTL cycles | fmax (MHz) | inf/s at fmax | area (mm^2) | power at {args.clock:g} MHz "
          "(mW) | energy/inference (uJ) | TOPS/W | TOPS/mm^2 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['precision']} | {r['abs_rel']:.4f} | {r['rtl_cycles']:,} | {r['fmax_mhz']:.1f} | "
              f"{r['inferences_per_s_at_fmax']:.1f} | {r['area_mm2']:.3f} | {r['power_mw']['total']:.1f} | "
              f"{r['energy_per_inference_uj']:.1f} | {r['tops_per_w']:.4f} | {r['tops_per_mm2_at_fmax']:.5f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

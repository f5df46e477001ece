"""Quasar-ViT's published ZCU102 FPS next to the latency model's prediction for our best design.

For DeiT-Tiny/Small/Base shapes (197 tokens, head_dim 64, MLP 4x, 12 blocks) with half of every
linear layer's rows int8 and half int4 (``--ratio8``), the hardware grid of
:mod:`qsilicon.search.paper` is searched exhaustively under the ZCU102's resources times the
utilization cap; the best predicted FPS is reported at each clock, and at 200 MHz again without
``dot2`` lanes and without row buffers (the ablation).  Predictions, not measurements.

``--synth`` synthesizes every chosen design whole (Yosys, ``synth_xilinx -family xcup`` with
``abc -luts``, as ``qsilicon synth design`` and ``bench/calibrate_system.py`` do; about 20 minutes
for a 1,024-PE design here) and stores its counts next to the resource model's in the row
(``synthesized``; a netlist Yosys has seen, unchanged, comes from the synthesis cache) with the
clock its logic depth defends on UltraScale+ at speed grade -2 (``clock_bound_mhz`` and its
critical path: :mod:`qsilicon.hw.timing`; ``clock_defended`` per row); a later
run without ``--synth`` keeps the counts of designs it chooses again, so rerun with ``--synth``
after an RTL change.  A kept record whose ``rtl_sha`` differs from today's generator output is marked
``rtl_current: false`` (and printed as synthesized from an earlier RTL).

    python bench/paper_comparison.py [--synth]  ->  bench/results/paper_comparison.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from qsilicon.boards import get_board
from qsilicon.hw.config import AccelConfig
from qsilicon.search.accel import resources
from qsilicon.search.paper import GRID, compare

OUT = Path(__file__).resolve().parent / "results" / "paper_comparison.json"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--util-cap", type=float, default=0.8)
    ap.add_argument("--ratio8", type=float, default=0.5)
    ap.add_argument("--synth", action="store_true", help="synthesize the chosen designs whole (Yosys xcup)")
    args = ap.parse_args()
    # the synthesized counts of earlier runs, by the design's netlist (its tag without the clock)
    old = json.loads(OUT.read_text()) if OUT.exists() else {}
    synthesized = {r["synthesized"]["netlist"]: r["synthesized"] for r in old.get("rows", []) if "synthesized" in r}
    fresh: set[str] = set()
    board = get_board("zcu102")
    doc = {"board": board.name, "part": board.part, "dram_gbps": board.dram_gbps, "util_cap": args.util_cap,
           "ratio8": args.ratio8, "grid": {k: list(v) for k, v in GRID.items()}, "rows": []}
    print(f"{'model':<11} {'clock':>6} {'predicted FPS':>13} {'Quasar-ViT FPS':>14}  "
          "design (LUT/DSP share), cycle shares")
    for clock in (150.0, 200.0):
        for r in compare(board, clock_mhz=clock, util_cap=args.util_cap, ratio8=args.ratio8):
            r["clock_mhz"] = clock
            cfg = AccelConfig(**r["config"])
            netlist = cfg.tag.rsplit("_", 1)[0]  # the clock does not change the netlist
            if args.synth and netlist not in fresh:  # (the synthesis cache knows an unchanged netlist)
                synthesized[netlist] = synth(cfg, netlist)
                fresh.add(netlist)
            elif netlist in synthesized and netlist not in fresh:  # kept: is it today's RTL?
                synthesized[netlist]["rtl_current"] = synthesized[netlist].get("rtl_sha") == rtl_sha(rtlil_of(cfg))
                fresh.add(netlist)
            if netlist in synthesized:  # with the resource model of this run
                synthesized[netlist]["model"] = resources(cfg)
                r["synthesized"] = synthesized[netlist]
                if "clock_bound_mhz" in r["synthesized"]:  # the clock its logic depth defends (hw/timing.py)
                    r["clock_defended"] = clock <= r["synthesized"]["clock_bound_mhz"]
            doc["rows"].append(r)
            c = r["config"]
            rb = f" rb{c['rowbuf']}" if c["rowbuf"] else ""
            print(f"{r['model']:<11} {clock:>6g} {r['predicted_fps']:>13.1f} {r['quasar_vit_fps']:>14.1f}  "
                  f"r{c['rows']}c{c['cols']} {c['packing']} l{c['lanes']}{rb} "
                  f"({100 * r['util']['lut']:.0f}% / "
                  f"{100 * r['util']['dsp']:.0f}%), cycles in GEMM descriptors {100 * r['cycle_share']['gemm']:.0f}%, "
                  f"array busy {100 * r['gemm_share']:.0f}%, MAC rate {100 * r['mac_util']:.0f}% of peak")
    # what each technique gives (same models, same grid): the grid without dot2 lanes (int4 rows at the
    # int8 rate), without row buffers and with GELU as a descriptor of its own, then with each in turn
    doc["ablation"] = []
    print("\nablation at 200 MHz: best predicted FPS by the techniques the grid may use")
    for label, packings, rowbufs, fuse in (
            ("none, dsp2 (int4 rows at the int8 rate)", ("none", "dsp2"), (0,), False),
            ("+ dot2 (int4 rows two steps a cycle)", GRID["packing"], (0,), False),
            ("+ row buffer (LayerNorm, Shiftmax rows read once)", GRID["packing"], GRID["rowbuf"], False),
            ("+ GELU fused into the fc1 GEMM", GRID["packing"], GRID["rowbuf"], True)):
        fps = {r["model"]: r["predicted_fps"] for r in compare(board, clock_mhz=200.0, util_cap=args.util_cap,
                                                               ratio8=args.ratio8, packings=packings, rowbufs=rowbufs,
                                                               fuse_gelu=fuse)}
        doc["ablation"].append({"packings": list(packings), "rowbufs": list(rowbufs), "fuse_gelu": fuse,
                                "clock_mhz": 200.0, "predicted_fps": fps})
        print(f"  {label:<48} " + "  ".join(f"{m} {v:6.1f}" for m, v in fps.items()))
    print("\nchosen designs synthesized whole (Yosys xcup): LUT / FF / DSP / BRAM36, and the resource model's;"
          " the clock their logic depth defends (hw/timing.py)")
    for netlist, c in synthesized.items():
        if any(r.get("synthesized", {}).get("netlist") == netlist for r in doc["rows"]):
            m, y = c["model"], c["counts"]
            bound = f"  clock bound {c['clock_bound_mhz']:g} MHz" if "clock_bound_mhz" in c else ""
            stale = "" if c.get("rtl_current", True) else "  (synthesized from an earlier RTL: rerun with --synth)"
            print(f"  {netlist:<40} " + "  ".join(f"{k} {y[k]:g} / {m[k]:g}" for k in ("lut", "ff", "dsp", "bram36"))
                  + bound + stale)
    OUT.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {OUT}")


def rtlil_of(cfg: AccelConfig) -> str:
    from qsilicon.hw.export import to_rtlil
    from qsilicon.hw.vit.system import VitAccel

    return to_rtlil(VitAccel(cfg), "vit_accel")


def rtl_sha(rtlil: str) -> str:
    """The start of the SHA-256 of a design's RTLIL: which generator output counts belong to."""
    import hashlib

    return hashlib.sha256(rtlil.encode()).hexdigest()[:16]


def synth(cfg: AccelConfig, netlist: str) -> dict:
    """Synthesize ``cfg``'s whole top; the record holds ``rtl_sha`` (:func:`rtl_sha`) of the RTLIL
    it was synthesized from."""
    import time
    from dataclasses import asdict

    from qsilicon.hw.timing import synthesize_timed

    t = time.time()
    rtlil = rtlil_of(cfg)
    res, timing = synthesize_timed(None, "vit_accel", rtlil=rtlil)
    c = res.counts
    counts = {"lut": c["lut"], "ff": c["ff"], "dsp": c["dsp"], "bram36": c["bram36"] + c["bram18"] / 2}
    w = timing.worst
    print(f"  synthesized {netlist}: {counts}, clock bound {timing.fmax_mhz:.0f} MHz "
          f"({w.levels} LUT levels, {w.dsp} multipliers without MREG: {w.start} -> {w.end}) "
          f"({time.time() - t:.0f} s)", flush=True)
    return {"netlist": netlist, "rtl_sha": rtl_sha(rtlil), "rtl_current": True, "tool": res.tool,
            "counts": counts, "model": resources(cfg),
            "clock_bound_mhz": round(timing.fmax_mhz, 1),
            "critical_path": asdict(w), "clock_rule": timing.rule}


if __name__ == "__main__":
    main()

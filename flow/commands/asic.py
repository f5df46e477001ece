"""``qsilicon synth {gemm,mpgemm,engine} --target asic``: the open standard-cell flow's options and report."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from ..common import CliError, OutputDir, progress, write_manifest

__all__ = ["add_asic_args", "check_asic_args", "print_asic", "run_asic"]


def add_asic_args(p: argparse.ArgumentParser, workload: str) -> None:
    p.add_argument("--liberty", default="osu018", help="cell library for --target asic (default osu018: OSU 0.18 um, "
                   "typical corner 1.8 V)")
    p.add_argument("--clock", type=float, default=100.0, help="--target asic: clock in MHz that ABC maps for and that "
                   "slack and power are computed at (default 100)")
    p.add_argument("--activity", default="default", help="--target asic: switching activity for power: 'default' "
                   "(0.1 toggles per cycle on the inputs, propagated), 'sim' (simulate " + workload + " on the "
                   "mapped netlist, check it against the RTL and use its toggles), or a VCD or SAIF file of the "
                   "netlist's nets")
    p.add_argument("-o", "--output", default=None, help="--target asic: also write netlist.v, qs_sram.lib, the "
                   "gate-level simulation models and report.json here")


def check_asic_args(args) -> None:
    """Bad ``--target asic`` options as one line, before any synthesis starts."""
    from qsilicon.hw.asic import AsicError, library, sta_tool

    asic_only = [o for o, v, d in (("--liberty", args.liberty, "osu018"), ("--clock", args.clock, 100.0),
                                   ("--activity", args.activity, "default"), ("-o", args.output, None))
                 if v != d]
    if args.target != "asic":
        if asic_only:
            raise CliError(f"{', '.join(asic_only)}: only with --target asic")
        return
    if not 0 < args.clock <= 2000:
        raise CliError(f"--clock must be between 0 and 2000 MHz, not {args.clock:g}")
    if args.activity not in ("default", "sim") and not Path(args.activity).is_file():
        raise CliError(f"--activity {args.activity}: no such VCD or SAIF file (or use 'default' or 'sim')")
    try:
        library(args.liberty)
        sta_tool()
    except AsicError as e:
        raise CliError(str(e)) from None
    if args.output:
        OutputDir(args.output)  # refuses a directory it must not replace, before the work


def run_asic(component, top: str, args, simulate: Callable | None = None, cycles: int | None = None,
             what: str = "", access_counts: dict | None = None, access_source: str | None = None) -> dict:
    """Map ``component`` to the library, simulate it if asked, and return the report of
    :func:`qsilicon.hw.asic.asic_report` (``simulate(netlist) -> (activity, source, cycles)``).
    ``access_counts`` (memory -> (reads, writes) of one inference) become access rates over the
    inference's cycles: ``cycles``, or the simulation's."""
    from qsilicon.hw.asic import (
        AsicError,
        activity_from_saif,
        activity_from_vcd,
        asic_report,
        asic_synthesize,
        gate_level_verilog,
    )
    from qsilicon.hw.asic import sram_liberty as write_sram_lib

    progress(f"mapping {what or top} to {args.liberty} with yosys at {args.clock:g} MHz (minutes; cached after)")
    try:
        net = asic_synthesize(component, top, args.liberty, args.clock)
        activity, source = None, None
        if args.activity == "sim":
            if simulate is None:
                raise CliError("--activity sim is not available for this design: give a VCD of its netlist")
            activity, source, cycles = simulate(net)
        elif args.activity != "default":
            read = activity_from_saif if args.activity.lower().endswith(".saif") else activity_from_vcd
            activity, n = read(Path(args.activity))
            source = f"{args.activity} ({n} cycles)"
        progress("timing and power with OpenSTA")
        accesses = ({m: (r / cycles, w / cycles) for m, (r, w) in access_counts.items()}
                    if access_counts and cycles else None)
        report = asic_report(net, args.clock, activity, source, cycles, accesses=accesses,
                             access_source=f"{access_source} over {cycles} cycles" if accesses else None)
    except AsicError as e:
        raise CliError(str(e)) from None
    report["cached"] = net.cached
    if args.output:
        from qsilicon.hw.asic import library

        with OutputDir(args.output) as tmp:
            (tmp / "netlist.v").write_text(net.verilog)
            (tmp / "gate_level.v").write_text(gate_level_verilog(net))
            if net.macros:
                (tmp / "qs_sram.lib").write_text(write_sram_lib(net.macro_models(), library(net.library)))
            (tmp / "report.json").write_text(json.dumps(report, indent=2) + "\n")
            write_manifest(tmp, {"component": f"{top}-asic", "files": sorted(p.name for p in tmp.iterdir())})
    return report


def print_asic(name: str, r: dict) -> None:
    a = r["area_breakdown_um2"]
    p = r["power_mw"]
    lib = r["library"]
    print(f"{name} on {lib['name']} ({lib['node_um']} um, {lib['corner']}){' (cached)' if r['cached'] else ''}: "
          f"{r['cells']} cells, {r['area_mm2']} mm^2 (logic {a['logic'] / 1e6:.4f}, flip-flops "
          f"{a['flip_flops'] / 1e6:.4f}, memories {a['memories'] / 1e6:.4f} by the SRAM model)")
    print(f"  timing at {r['clock_mhz']:g} MHz: worst slack {r['slack_ns']:+.3f} ns, fmax {r['fmax_mhz']:.1f} MHz; "
          f"critical path {r['critical_path']}")
    print(f"  power at {r['clock_mhz']:g} MHz: {p['total']:.3f} mW = internal {p['internal']:.3f} + switching "
          f"{p['switching']:.3f} + leakage {p['leakage']:.5f} + memory access {p['memory']:.3f}")
    print(f"  activity: {r['activity_source']}")
    if r["energy_per_inference_uj"] is not None:
        print(f"  energy per inference: {r['energy_per_inference_uj']:.4f} uJ over {r['cycles_per_inference']} cycles")

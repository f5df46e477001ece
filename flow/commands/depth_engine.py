"""The QuartDepth engine: ``qsilicon {compile,verify,latency} depth``, ``qsilicon verilog depth-engine``,
``qsilicon synth engine``."""

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
from .depth_model import depth_split, load_int_depth
from .regress import add_case_args, check_waves_args, waves_output

__all__ = ["add_engine_args", "depth_model", "depth_program", "engine_config", "register"]


def add_engine_args(p: argparse.ArgumentParser) -> None:
    from qsilicon.hw.depth.isa import PACKINGS, EngineConfig

    d = EngineConfig()
    p.add_argument("--co", type=int, default=d.co, help=f"MAC-array rows: output channels at once (default {d.co})")
    p.add_argument("--px", type=int, default=d.px, help=f"MAC-array columns: pixels at once (default {d.px})")
    p.add_argument("--max-width", type=int, default=d.max_width, help=f"widest row in pixels (default {d.max_width})")
    for name in ("act", "wgt", "out", "par", "tab"):
        v = getattr(d, f"{name}_depth")
        p.add_argument(f"--{name}-depth", type=int, default=v, help=f"words of the {name} buffer (default {v})")
    p.add_argument("--packing", choices=PACKINGS, default="none",
                   help="MAC lanes: none (an int8 x uint8 multiplier per PE), dsp2 (2 MACs per DSP48E2) or nibble "
                        "(two 5x4-bit multipliers per PE: 2 MACs per cycle in W4A4 layers of uniform 4-bit codes, "
                        "e.g. --method quartdepth-u4; int8 beats take 2 cycles)")


def engine_config(args):
    from qsilicon.hw.depth.isa import EngineConfig

    try:
        return EngineConfig(args.co, args.px, args.max_width, args.act_depth, args.wgt_depth, args.out_depth,
                            args.par_depth, args.tab_depth, args.packing)
    except ValueError as e:
        raise CliError(f"engine configuration: {e}") from None


def depth_program(ig, cfg, size: int, fuse: bool = True):
    from qsilicon.hw.depth.compiler import CompileError, compile_graph

    try:
        return compile_graph(ig, cfg, height=size, width=size, fuse=fuse)
    except CompileError as e:
        raise CliError(f"{e}") from None


def depth_model(path):
    """``(integer graph, input size, one test image)`` of an exported model, or of the reduced network."""
    if path is None:
        from qsilicon.quant.ptq.toy import reduced_depth_graph

        progress("quantizing the reduced depth network (random weights, widths 8/16, 16x16 input)")
        ig, x = reduced_depth_graph(seed=0)
        return ig, 16, x[:1], "reduced network (widths 8, 16; 16x16)"
    if Path(path).is_dir() and (Path(path) / "import.json").is_file():  # an imported CNN (qsilicon import)
        from .imported import load_model_dir

        md = load_model_dir(path)
        if md.family != "cnn":
            raise CliError(f"{path} holds a ViT (for the ViT accelerator: 'qsilicon compile|verify|latency vit --model "
                           f"{path}'), not a CNN")
        md.quantized()
        ig = load_int_depth(path).ig
        x, _ = md.eval_images()
        return ig, md.meta["input_shape"][-1], x[:1], f"{md.name} ({md.quant['precision']})"
    ig = load_int_depth(path).ig
    xt, _ = depth_split("test", 1)
    return ig, xt.shape[-1], xt[:1], f"{path} (64x64)"


def cmd_compile_depth(args) -> int:
    import torch

    from qsilicon.hw.depth.iss import run_program

    cfg = engine_config(args)
    out = OutputDir(args.output)
    ig, size, img, what = depth_model(args.model)
    prog = depth_program(ig, cfg, size, fuse=not args.no_fuse)
    mem = prog.with_input(ig.image_codes(img)[0])
    stats = run_program(mem, prog.prog_addr, cfg)
    exact = bool(torch.equal(prog.read(mem), ig.forward(img)))
    if not exact:
        raise CliError("the instruction-set simulator's output differs from the integer graph: compiler bug")
    report = {"model": what, "engine": cfg.to_dict(), "fused": not args.no_fuse, "instructions": len(prog.insns),
              "memory_bytes": len(prog.memory), "program_addr": prog.prog_addr,
              "layers": [{"tag": s.tag, "name": s.name, "macs": s.macs, "jobs": s.jobs, "band_rows": s.band_rows}
                         for s in prog.layers],
              "tensors": {k: {"base": t.base, "shape": [t.channels, t.height, t.width], "bits": t.bits}
                          for k, t in prog.tensors.items()},
              "iss": {"bit_exact": exact, "dram_read_bytes": stats.dram_read, "dram_written_bytes": stats.dram_written,
                      "mac_beats": sum(stats.beats.values())}}
    with out as tmp:
        (tmp / "memory.bin").write_bytes(bytes(prog.memory))
        (tmp / "program.json").write_text(json.dumps({**report, "insns": prog.insns}, indent=1) + "\n")
        write_manifest(tmp, {"component": "depth-program", "files": ["memory.bin", "program.json"]})
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"compiled {what} for {cfg.tag}: {len(prog.insns)} instructions, memory image {len(prog.memory)} bytes "
          f"(program at {prog.prog_addr:#x}, input '{prog.input}' at {prog.tensors[prog.input].base:#x}, "
          f"output '{prog.output}' at {prog.tensors[prog.output].base:#x}); written to {out.target}")
    print(f"  ISS on one test image: bit-exact to the integer graph; external memory read {stats.dram_read} B, "
          f"written {stats.dram_written} B, {sum(stats.beats.values())} MAC-array beats")
    for s in prog.layers:
        print(f"  {s.name:<8} {s.macs:>10} MACs  {s.jobs:>3} jobs of {s.band_rows} rows")
    return 0


def cmd_verify_depth(args) -> int:
    if args.case is not None:
        from .regress import cmd_verify_case

        return cmd_verify_case(args, "depth")
    check_waves_args(args)
    import torch

    from qsilicon.hw.depth.iss import run_program
    from qsilicon.sim.depth import rtl_run
    from qsilicon.sim.runner import SimulationError

    cfg = engine_config(args)
    if not 0 < args.ready_p <= 1:
        raise CliError(f"--ready-p must be in (0, 1], not {args.ready_p}")
    require_simulator(args.sim)
    ig, size, img, what = depth_model(args.model)
    prog = depth_program(ig, cfg, size)
    mem = prog.with_input(ig.image_codes(img)[0])
    iss = bytearray(mem)
    run_program(iss, prog.prog_addr, cfg)
    ref = ig.forward(img)
    progress(f"running {len(prog.insns)} instructions on the {cfg.tag} RTL in {args.sim} (the first build of a "
              "configuration takes a few minutes)")
    with tempfile.TemporaryDirectory(prefix="qs-verify-") as tmp:
        log = Path(tmp) / "sim.log"
        try:
            with waves_output(args, args.sim) as waves:
                rtl = rtl_run(cfg, mem, prog.prog_addr, sim=args.sim, ready_p=args.ready_p, seed=args.seed,
                              log_file=log, waves=waves)
        except SimulationError as e:
            raise simulation_error(e, log) from None
    got = prog.read(rtl.memory)
    layers = [{"name": s.name, "cycles": rtl.busy_by_tag.get(s.tag, 0), "macs": s.macs,
               "pe_utilization": round(s.macs / max(1, rtl.busy_by_tag.get(s.tag, 0) * cfg.macs), 4)}
              for s in prog.layers]
    report = {"model": what, "engine": cfg.to_dict(), "sim": args.sim, "ready_p": args.ready_p,
              "bit_exact_vs_integer_graph": bool(torch.equal(got, ref)),
              "memory_equal_to_iss": rtl.memory == bytes(iss), "cycles": rtl.cycles, "registers": rtl.regs,
              "pe_utilization": round(sum(s.macs for s in prog.layers) / (rtl.cycles * cfg.macs), 4),
              "layers": layers}
    ok = report["bit_exact_vs_integer_graph"] and report["memory_equal_to_iss"]
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{'PASS' if ok else 'FAIL'}: {what} on the {cfg.tag} engine ({args.sim}): output "
              f"{'equal' if report['bit_exact_vs_integer_graph'] else 'NOT equal'} to the integer graph, memory image "
              f"{'equal' if report['memory_equal_to_iss'] else 'NOT equal'} to the ISS's")
        print(f"  {rtl.cycles} cycles ({rtl.cycles / 1e5:.2f} ms at 100 MHz), PE utilization "
              f"{100 * report['pe_utilization']:.1f}%, {rtl.regs['RD_WORDS'] * 8} B read, {rtl.regs['WR_WORDS'] * 8} B "
              "written")
        for r in layers:
            print(f"  {r['name']:<8} {r['cycles']:>9} cycles  PE utilization {100 * r['pe_utilization']:5.1f}%")
    return 0 if ok else 1


def cmd_verilog_depth_engine(args) -> int:
    from qsilicon.hw.depth.engine import REGS, DepthEngine
    from qsilicon.hw.depth.isa import isa_table
    from qsilicon.sim.depth import depth_engine_verilog

    cfg = engine_config(args)
    board = get_board(args.board) if args.board else None
    out = OutputDir(args.output)
    with out as tmp:
        progress(f"elaborating the QuartDepth engine {cfg.tag}")
        (tmp / "depth_engine.v").write_text(depth_engine_verilog(cfg))
        (tmp / "ISA.md").write_text("# QuartDepth engine instruction set\n\n" + isa_table() + "\n")
        files = ["depth_engine.v", "ISA.md"]
        if board is not None:
            files += board_plan(board, DepthEngine(cfg), tmp)
        manifest = {"component": "depth-engine", "config": cfg.to_dict(),
                    "board": board.to_dict() if board else None,
                    "axi4_master": {"prefix": "m_axi__", "data_bits": 64, "addr_bits": 32},
                    "axi4_lite_slave": {"prefix": "s_axil__", "registers": REGS}, "irq": "irq",
                    "files": sorted(files)}
        write_manifest(tmp, manifest)
    print(f"wrote {len(files)} files to {out.target}")
    for f in sorted(files):
        print(f"  {f}")
    return 0


def cmd_synth_engine(args) -> int:
    from qsilicon.hw.depth.engine import DepthEngine
    from qsilicon.hw.synth import SynthError, area_estimate, place_and_route, synthesize

    cfg = engine_config(args)
    board = pnr_board(args)
    check_asic_args(args)
    if args.model is not None and args.target != "asic":
        raise CliError("--model goes with --target asic (the network whose energy per inference is reported)")
    if args.target == "asic":
        return _synth_engine_asic(cfg, args)
    target = "generic_sram" if args.target == "generic" else args.target
    progress(f"synthesizing the QuartDepth engine {cfg.tag} for {args.target} with yosys (minutes)")
    try:
        res = synthesize(DepthEngine(cfg), "depth_engine", target)
        pnr = None
        if board is not None:
            from qsilicon.hw.shell import SelfTestShell

            progress(f"placing and routing the self-test shell on {board.name} ({board.part}) with nextpnr")
            pnr = place_and_route(SelfTestShell(DepthEngine(cfg)), board.name)
    except SynthError as e:
        raise CliError(str(e)) from None
    report = {"component": "depth-engine", "config": cfg.to_dict(), **res.to_dict(),
              "pnr": pnr.to_dict() if pnr else None}
    if args.target == "generic":
        report["area"] = area_estimate(res.cells, 8 * sum(cfg.sram_bytes().values()))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"depth engine {cfg.tag} on {args.target}{' (cached)' if res.cached else ''}: "
          + ", ".join(f"{k} {v}" for k, v in res.counts.items()))
    if "area" in report:
        a = report["area"]
        print(f"  area estimate: {a['kGE']} kGE logic ({a['logic_mm2']} mm^2) + {a['sram_bits']} SRAM bits "
              f"({a['sram_mm2']} mm^2) = {a['total_mm2']} mm^2 ({a['assumptions']})")
    print(f"  tool: {res.tool}")
    if pnr is not None:
        print(f"  {pnr.board}: fmax {pnr.fmax_mhz:.1f} MHz (constraint {pnr.target_mhz:g} MHz); "
              + ", ".join(f"{k} {u}/{a}" for k, (u, a) in pnr.utilisation.items() if u))
        if pnr.critical_path:
            print(f"  critical path: {pnr.critical_path}")
    return 0



def _synth_engine_asic(cfg, args) -> int:
    from qsilicon.hw.depth.engine import DepthEngine
    from qsilicon.hw.depth.iss import program_accesses
    from qsilicon.search.depth_latency import predict_program

    ig, size, img, what = depth_model(args.model)
    prog = depth_program(ig, cfg, size)
    cycles = predict_program(prog).cycles

    def simulate(net):
        """One inference of the model on the flat netlist (Verilator, SAIF): bit-exact or an error."""
        import torch

        from qsilicon.hw.asic import activity_from_saif
        from qsilicon.sim.depth import rtl_run

        progress(f"one inference of {what} on the gate-level netlist (Verilator, flat; about {cycles} cycles at "
                 "about a hundred a second, after a build of minutes)")
        with tempfile.TemporaryDirectory(prefix="qs-engine-gl-") as tmp:
            saif = Path(tmp) / "gl.saif"
            mem = prog.with_input(ig.image_codes(img)[0])
            run = rtl_run(cfg, mem, prog.prog_addr, netlist=net, saif=saif, max_cycles=4 * cycles + 10_000)
            if not torch.equal(prog.read(run.memory), ig.forward(img)):
                raise CliError(f"the gate-level netlist of {cfg.tag} computed another depth map than the integer "
                               "graph: a synthesis or cell-model bug")
            activity, n = activity_from_saif(saif)
            # toggles over the whole trace (testbench set-up and tail included) per cycle of the inference
            activity = {k: (t * n / run.cycles, d) for k, (t, d) in activity.items()}
        return activity, (f"gate-level simulation (Verilator, flat netlist, SAIF) of one inference of {what}: "
                          f"{run.cycles} cycles, depth map bit-exact to the integer graph"), run.cycles

    counts = program_accesses(prog.insns, cfg) if args.activity in ("default", "sim") else None
    report = run_asic(DepthEngine(cfg), "depth_engine", args, simulate, cycles, what=f"the depth engine {cfg.tag}",
                      access_counts=counts, access_source="one inference, access counts from the program's "
                      "instructions (equal to the instruction-set simulator's)")
    report = {"component": "depth-engine", "config": cfg.to_dict(), "model": what, **report}
    report["cycles_source"] = ("the gate-level simulation (equal to the RTL's)" if args.activity == "sim" else
                               "the engine's latency model (a prediction)")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_asic(f"depth engine {cfg.tag}", report)
    return 0


def cmd_latency_depth(args) -> int:
    from qsilicon.search.depth_latency import predict_program

    if not args.clock > 0:
        raise CliError(f"--clock must be positive (MHz), not {args.clock:g}")
    cfg = engine_config(args)
    ig, size, _, _ = depth_model(args.model)
    prog = depth_program(ig, cfg, size)
    pred = predict_program(prog)
    f = args.clock * 1e6
    report = {"config": cfg.tag, "size": size, "cycles": pred.cycles, "fps": f / pred.cycles,
              "layers": [{"layer": n, "cycles": c} for n, c in pred.per_layer]}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for n, c in pred.per_layer:
        print(f"  {n:<10} {c:>9}")
    print(f"{cfg.tag} at {size}x{size}: {pred.cycles} cycles predicted, {f / pred.cycles:.1f} FPS at "
          f"{args.clock:g} MHz")
    return 0


def register(sub, groups) -> None:
    vd = groups["verilog"].add_parser("depth-engine", help="the QuartDepth engine (AXI4 master, AXI4-Lite "
                                      "registers), ISA table")
    add_engine_args(vd)
    vd.add_argument("--board", help="also write a build plan (engine in a self-test shell) for this board")
    vd.add_argument("-o", "--output", required=True, help="output directory")
    vd.set_defaults(func=cmd_verilog_depth_engine)

    fd = groups["verify"].add_parser("depth", help="a compiled depth network on the QuartDepth engine's RTL")
    fd.add_argument("--model", default=None, help="int_graph.pt or its directory (from 'qsilicon quantize depth "
                    "-o'); default: the reduced network, quantized on the spot")
    add_engine_args(fd)
    fd.add_argument("--sim", choices=("verilator",), default="verilator",
                    help="verilator (the whole engine is too big for Icarus)")
    fd.add_argument("--ready-p", type=float, default=1.0,
                    help="probability that the memory model takes or returns a beat in a cycle (default 1)")
    fd.add_argument("--seed", type=int, default=0)
    fd.add_argument("--json", action="store_true")
    add_case_args(fd)
    fd.set_defaults(func=cmd_verify_depth)

    ye = groups["synth"].add_parser("engine", help="the QuartDepth engine: generic (gates + SRAM, area "
                                    "estimate), xcup, ecp5")
    add_engine_args(ye)
    ye.add_argument("--target", choices=("generic", "xcup", "ecp5", "asic"), required=True,
                    help="generic: two-input gates with memories as SRAM macros and an area estimate; asic: a "
                    "standard-cell library (area, OpenSTA timing and power, energy per inference)")
    ye.add_argument("--model", default=None, help="--target asic: int_graph.pt (or its directory) whose inference "
                    "the energy is for; default: the reduced network (16x16)")
    add_asic_args(ye, "(not available for the engine yet)")
    ye.add_argument("--pnr", action="store_true", help="also place and route it in its self-test shell (ECP5) "
                    "for fmax")
    ye.add_argument("--board", default=None, help="board for --pnr (default ulx3s)")
    ye.add_argument("--json", action="store_true")
    ye.set_defaults(func=cmd_synth_engine)

    cd = groups["compile"].add_parser("depth", help="an exported integer depth network -> QuartDepth engine "
                                      "program")
    cd.add_argument("--model", default=None, help="int_graph.pt or its directory (from 'qsilicon quantize depth "
                    "-o'); default: the reduced network")
    add_engine_args(cd)
    cd.add_argument("--no-fuse", action="store_true", help="materialise upsampled tensors (the unfused baseline)")
    cd.add_argument("-o", "--output", required=True, help="output directory")
    cd.add_argument("--json", action="store_true")
    cd.set_defaults(func=cmd_compile_depth)

    ld = groups["latency"].add_parser("depth", help="a compiled depth network on the QuartDepth engine, per layer")
    ld.add_argument("--model", help="int_graph.pt or its directory (from 'qsilicon quantize depth -o'); default: "
                    "the reduced network")
    ld.add_argument("--clock", type=float, default=100.0, help="MHz (default 100)")
    add_engine_args(ld)
    ld.add_argument("--json", action="store_true")
    ld.set_defaults(func=cmd_latency_depth)

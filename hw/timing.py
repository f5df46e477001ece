"""Logic depth of a synthesized UltraScale+ netlist, and the clock it defends.

There is no Vivado here, so no placed-and-routed timing for the ZCU102.  What a synthesized
netlist does give is the structure of every register-to-register path: how many LUTs a signal
passes through between two registers, and which DSP48E2 it crosses without a pipeline register.
This module reads the netlist Yosys maps for ``xcup`` (``write_json``), finds the longest path in
that sense, and turns it into a clock bound by two published rules:

* **LUT budget** (AMD's ``report_failfast``, the Xilinx Tcl Store script that UG1292 "UltraFast
  Design Methodology Quick Reference: Timing Closure" prescribes for checking a design before
  implementation): on UltraScale+ at speed grade -2 a path may hold one LUT per **0.300 ns** of its
  clock period.  A path's levels are its LUTs, plus one when it starts at a cell that is not a
  flip-flop (a block RAM, an SRL, a DSP's output register) and plus one when it ends anywhere but a
  flip-flop's D input.  Carry chains and wide multiplexers (CARRY4/8, MUXF7/8) are not counted, as
  in that script.
* **DSP48E2 without pipeline registers** (DS925, the Zynq UltraScale+ MPSoC data sheet, "DSP48 Slice
  Switching Characteristics", speed grade -2 at 0.85 V): 775 MHz with every register used, 544 MHz
  for a multiply without MREG (a bound of its own when the DSP's input and output registers are
  used), 410 MHz without MREG and ADREG.  A path that crosses a multiplier
  whose product is not registered inside the DSP (MREG = 0) is charged that configuration's whole
  period (1 / 410 MHz = 2.44 ns, in LUT budgets 8.13 levels), on top of its LUTs; a DSP whose inputs
  or output are not registered either is charged the same again for each further DSP the path
  crosses (a cascaded wide multiply).

The bound is ``1 / (0.300 ns x levels + 2.44 ns x unregistered multipliers)``, capped by the DSP's
and the clock network's 775 MHz.  It is a pre-implementation estimate with the margins AMD's own
script uses, not a routed result: routing congestion, high fan-out and clock skew can lower it, and
it says so wherever it is printed.  Paths to and from the top's ports are not counted (a board
design registers them).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from qsilicon.paths import cache_root

from .export import to_rtlil
from .synth import TARGETS, SynthResult, run_yosys, store_synth_result, synthesize_rtlil, yosys_version

__all__ = ["LUT_BUDGET_NS", "DSP_NOMREG_MHZ", "DSP_NOPIPE_MHZ", "FABRIC_MAX_MHZ", "RULE", "PathReport", "TimingReport",
           "netlist_timing", "synth_timing", "synthesize_timed"]

#: report_failfast's LUT+net budget for UltraScale+ at speed grade -2 (ns per LUT level).
LUT_BUDGET_NS = 0.300
#: DS925 FMAX_NOPIPELINEREG at -2 (0.85 V): a DSP48E2 multiply with neither MREG nor ADREG.
DSP_NOPIPE_MHZ = 410.0
#: DS925 FMAX_MULT_NOMREG at -2 (0.85 V): a multiply between input and output registers without MREG.
DSP_NOMREG_MHZ = 544.0
#: DS925 FMAX at -2 (0.85 V) with every DSP register used; also the global clock buffers' limit.
FABRIC_MAX_MHZ = 775.0
#: One line naming the rule, for reports.
RULE = (f"UltraScale+ -2: {LUT_BUDGET_NS} ns per LUT level (AMD report_failfast / UG1292), "
        f"{1e3 / DSP_NOPIPE_MHZ:.2f} ns per multiplier without MREG (DS925 FMAX_NOPIPELINEREG), "
        f"at most {FABRIC_MAX_MHZ:g} MHz (DS925); a synthesis-time estimate, not routed timing")

#: Bumped when the rule or its reading of a netlist changes (the netlists stay cached).
_RULE_VERSION = 2

_FF = re.compile(r"^FD[CEPRS]E?$")
_LUT = re.compile(r"^(LUT[1-6](_2)?|INV)$")  # Vivado implements INV as a LUT1
_FREE = re.compile(r"^(CARRY[48]|MUXF[789]|BUFG|GND|VCC)$")  # not counted by the LUT budget
_BRAM = re.compile(r"^RAMB(18|36)E[12]$")
_LUTRAM = re.compile(r"^(RAM\d+[XM]\w*|RAM64M8|SRL\w+)$")
_PORT = re.compile(r"^[IO]BUF\w*$")
# LUT-RAM and SRL ports that read: address -> data out is combinational (one LUT level).
_LUTRAM_READ_IN = re.compile(r"^(A\d*|ADDR[A-H]|DPRA\d*|RADR\w*|ADDR\w*)$")


@dataclass(frozen=True)
class PathReport:
    """One register-to-register path: its cost and where it starts and ends."""

    levels: int
    """LUTs on the path, plus one for a start that is not a flip-flop and one for an end that is
    not a flip-flop's D (report_failfast's count)."""
    dsp: int
    """Multipliers crossed without a product register (each charged 1 / 410 MHz)."""
    delay_ns: float
    start: str
    end: str
    via: tuple[str, ...] = ()
    """Named signals on the path between start and end (Yosys' internal nets left out)."""

    @property
    def fmax_mhz(self) -> float:
        return min(FABRIC_MAX_MHZ, 1e3 / self.delay_ns) if self.delay_ns > 0 else FABRIC_MAX_MHZ


@dataclass(frozen=True)
class TimingReport:
    """The longest paths of a netlist by the rule of :data:`RULE`.

    ``worst`` is the slowest path; ``by_end`` the slowest path into each group of endpoints (a
    register name with its bit index and numeric suffixes removed), slowest first: where the
    logic depth lives.  ``fmax_mhz`` is the clock bound."""

    worst: PathReport
    by_end: tuple[PathReport, ...]
    cells: int
    tool: str
    rule: str = RULE
    cached: bool = False

    @property
    def fmax_mhz(self) -> float:
        return self.worst.fmax_mhz

    def to_dict(self) -> dict:
        d = asdict(self)
        d["fmax_mhz"] = round(self.fmax_mhz, 1)
        return d

    @classmethod
    def from_dict(cls, d: Mapping, *, cached: bool = False) -> TimingReport:
        def path(p):
            return PathReport(**{**p, "via": tuple(p.get("via", ()))})
        return cls(path(d["worst"]), tuple(path(p) for p in d["by_end"]), d["cells"], d["tool"],
                   d.get("rule", RULE), cached)


def _group(name: str) -> str:
    """A register's group: its name without bit index, numeric suffixes and Yosys' ``$`` noise."""
    name = re.sub(r"\[\d+\]$", "", name)
    name = re.sub(r"(_\d+)+$", "", name)
    return name


def _dsp_pipelined(params: Mapping[str, str]) -> tuple[bool, bool, bool]:
    """(inputs registered, product registered, output registered) of a DSP48E2's parameters."""
    def reg(k):
        v = params.get(k, "0")
        return int(v, 2) if isinstance(v, str) and set(v) <= {"0", "1"} else int(v)
    return (reg("AREG") > 0 and reg("BREG") > 0), reg("MREG") > 0, reg("PREG") > 0


def netlist_timing(netlist: Mapping, top: str, *, tool: str = "", groups: int = 12) -> TimingReport:
    """The longest register-to-register paths of a Yosys JSON netlist of ``top`` mapped for
    UltraScale+ (see the module's rule).  ``groups``: how many endpoint groups to keep."""
    mod = netlist["modules"][top]
    cells = mod["cells"]
    names: dict[int, str] = {}
    for name, net in mod.get("netnames", {}).items():
        name = name.removeprefix("$iopadmap$")  # a register driving a top port: the port's name
        for i, b in enumerate(net["bits"]):
            if isinstance(b, int) and (b not in names or (names[b].startswith("$") and not name.startswith("$"))):
                names[b] = f"{name}[{i}]" if len(net["bits"]) > 1 else name
    lut_cost = LUT_BUDGET_NS
    dsp_cost = 1e3 / DSP_NOPIPE_MHZ

    # Combinational cells: name -> (inputs, outputs, own cost, LUT levels, unregistered multipliers).
    # Path starts (sequential outputs) and ends (sequential inputs) carry their own (cost, levels, dsp).
    comb: dict[str, tuple[list[int], list[int], float, int, int]] = {}
    start: dict[int, tuple[float, int, int]] = {}
    driver: dict[int, str] = {}
    ends: list[tuple[int, tuple[float, int, int], str]] = []
    internal: list[PathReport] = []
    ff_start, lut_start = (0.0, 0, 0), (lut_cost, 1, 0)
    ff_d, other_end = (0.0, 0, 0), (lut_cost, 1, 0)

    def inputs(conns, dirs, skip=("C", "CLK", "WCLK", "CLKARDCLK", "CLKBWRCLK")):
        return [(p, b) for p, bits in conns.items() if dirs.get(p) == "input" and p not in skip
                for b in bits if isinstance(b, int)]

    for cname, c in cells.items():
        t = c["type"]
        dirs = c.get("port_directions", {})
        conns = c["connections"]
        outs = [b for p, bits in conns.items() if dirs.get(p) == "output" for b in bits if isinstance(b, int)]
        if _FF.match(t):
            start.update(dict.fromkeys(outs, ff_start))
            reg = names.get(outs[0], cname) if outs else cname  # the register's name
            ends.extend((b, ff_d if p == "D" else other_end, reg) for p, b in inputs(conns, dirs))
        elif _LUT.match(t) or _FREE.match(t):
            lut = bool(_LUT.match(t))
            comb[cname] = ([b for _, b in inputs(conns, dirs)], outs, lut_cost if lut else 0.0, int(lut), 0)
            driver.update(dict.fromkeys(outs, cname))
        elif _PORT.match(t) or t == "$scopeinfo":
            continue  # top-level I/O: not counted; scope metadata: no logic
        elif _BRAM.match(t):
            start.update(dict.fromkeys(outs, lut_start))
            ends.extend((b, other_end, cname) for _, b in inputs(conns, dirs))
        elif _LUTRAM.match(t):
            read_in = [b for p, b in inputs(conns, dirs) if _LUTRAM_READ_IN.match(p)]
            comb[cname] = (read_in, outs, lut_cost, 1, 0)  # address -> data: a LUT
            driver.update(dict.fromkeys(outs, cname))
            start.update(dict.fromkeys(outs, lut_start))  # the stored word: a start that is not a flip-flop
            ends.extend((b, other_end, cname) for _, b in inputs(conns, dirs))
        elif t == "DSP48E2":
            in_reg, m_reg, p_reg = _dsp_pipelined(c.get("parameters", {}))
            through = (0.0, 0, 0) if m_reg else (dsp_cost, 0, 1)  # the multiply, unless MREG cuts it
            if in_reg:
                ends.extend((b, other_end, cname) for _, b in inputs(conns, dirs))
            if p_reg:
                start.update(dict.fromkeys(outs, lut_start))
                if in_reg and not m_reg:  # inside the DSP: input registers -> multiply -> P
                    internal.append(PathReport(0, 1, round(1e3 / DSP_NOMREG_MHZ, 3), f"{cname}.A", f"{cname}.P"))
                if not in_reg:  # inputs -> multiply -> P register
                    end = (lut_cost + through[0], 1, through[2])
                    ends.extend((b, end, cname) for _, b in inputs(conns, dirs))
            elif in_reg:  # input registers -> multiply -> out of the DSP
                start.update(dict.fromkeys(outs, (lut_cost + through[0], 1, through[2])))
            else:  # a combinational DSP
                comb[cname] = ([b for _, b in inputs(conns, dirs)], outs, dsp_cost, 0, 1)
                driver.update(dict.fromkeys(outs, cname))
        else:
            raise ValueError(f"netlist_timing: cell type {t!r} ({cname}) has no timing rule; "
                             "the netlist must be mapped for xcup (synth_xilinx)")

    # Arrival per bit (delay, levels, multipliers, start bit): the longest over its driver's
    # inputs; memoised and iterative (netlists are deep).  Start bit -1: fed by ports or constants.
    arrival: dict[int, tuple[float, int, int, int]] = {}
    pred: dict[int, int] = {}  # bit -> the input bit its arrival came through
    none = (0.0, 0, 0, -1)

    def via(bit: int) -> tuple[str, ...]:
        """The named signals a path passes through, start to end (Yosys' own nets left out)."""
        out: list[str] = []
        while bit in pred:
            bit = pred[bit]
            n = _group(names.get(bit, "$"))
            if not n.startswith("$") and (not out or out[-1] != n):
                out.append(n)
        return tuple(reversed(out[1:] if out else out))

    def arrive(bit: int) -> tuple[float, int, int, int]:
        stack = [bit]
        while stack:
            b = stack[-1]
            if b in arrival:
                stack.pop()
                continue
            base = (*start[b], b) if b in start else None
            cname = driver.get(b)
            if cname is None:
                arrival[b] = base or none
                stack.pop()
                continue
            ins, _, cost, lvl, ndsp = comb[cname]
            pending = [i for i in ins if i not in arrival]
            if pending:
                if len(stack) > 4 * len(cells) + 16:
                    raise ValueError(f"netlist_timing: a combinational loop through {cname}")
                stack.extend(pending)
                continue
            best_in = max((i for i in ins if arrival[i][3] != -1), key=arrival.__getitem__, default=None)
            best = arrival[best_in] if best_in is not None else None
            here = (best[0] + cost, best[1] + lvl, best[2] + ndsp, best[3]) if best else None
            arrival[b] = max((x for x in (here, base) if x is not None), default=none)
            if here is not None and arrival[b] == here:
                pred[b] = best_in
            stack.pop()
        return arrival[bit]

    per_group: dict[str, PathReport] = {}
    paths: dict[str, int] = {}
    for b, (cost, lvl, ndsp), end_name in ends:
        d, levels, dsp, s = arrive(b)
        if s == -1:
            continue
        rep = PathReport(levels + lvl, dsp + ndsp, round(d + cost, 3), names.get(s, f"bit {s}"), end_name)
        g = _group(end_name)
        if g not in per_group or rep.delay_ns > per_group[g].delay_ns:
            per_group[g] = rep
            paths[g] = b
    for rep in internal:
        g = _group(rep.end)
        if g not in per_group or rep.delay_ns > per_group[g].delay_ns:
            per_group[g] = rep
    if not per_group:
        raise ValueError(f"netlist_timing: {top} has no register-to-register path")
    per_group = {g: replace(r, via=via(paths[g])) if g in paths else r for g, r in per_group.items()}
    ranked = sorted(per_group.values(), key=lambda r: (-r.delay_ns, r.end))
    return TimingReport(ranked[0], tuple(ranked[:groups]), len(cells), tool)


def synth_timing(component, name: str, *, target: str = "xcup_abc", use_cache: bool = True) -> TimingReport:
    """Synthesize ``component`` for UltraScale+ (``target``: ``xcup`` or ``xcup_abc``) and report its
    logic depth and clock bound (:func:`netlist_timing`); cached by the design, script and Yosys."""
    return _timing(to_rtlil(component, name), name, target, use_cache)


def synthesize_timed(component, name: str, *, target: str = "xcup_abc", use_cache: bool = True,
                     rtlil: str | None = None) -> tuple[SynthResult, TimingReport]:
    """:func:`~qsilicon.hw.synth.synthesize` and :func:`synth_timing` of ``component`` from one
    elaboration and one Yosys run: its cell counts and the clock its logic depth defends
    (``rtlil``: the component's RTLIL, already elaborated by the caller)."""
    if rtlil is None:
        rtlil = to_rtlil(component, name)
    timing = _timing(rtlil, name, target, use_cache)  # also keeps the run's cell counts
    return synthesize_rtlil(rtlil, name, target, use_cache=use_cache), timing


def _timing(rtlil: str, name: str, target: str, use_cache: bool) -> TimingReport:
    if target not in ("xcup", "xcup_abc"):
        raise ValueError(f"logic depth is measured on UltraScale+ netlists: target 'xcup' or 'xcup_abc', "
                         f"not {target!r}")
    synth = f"read_rtlil design.il\n{TARGETS[target].format(top=name)}\n"
    write = f"select -module {name}\nwrite_json -selected netlist.json\n"
    version = yosys_version()
    key = hashlib.sha256(f"{version}\n{synth}{write}\n{rtlil}".encode()).hexdigest()
    cache_file = cache_root() / "timing" / f"{name}-{target}-{key[:20]}-rule{_RULE_VERSION}.json"
    net_file = cache_file.parent / f"{name}-{target}-{key[:20]}.netlist.json.gz"
    if use_cache and cache_file.exists():
        return TimingReport.from_dict(json.loads(cache_file.read_text()), cached=True)
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    if use_cache and net_file.exists():  # the netlist of an earlier run (the rule changed since)
        netlist = json.loads(gzip.decompress(net_file.read_bytes()))
    else:
        with tempfile.TemporaryDirectory(prefix="qs-timing-") as tmp:
            tmp = Path(tmp)
            (tmp / "design.il").write_text(rtlil)
            # the cell counts of the same run go to synthesize()'s cache
            run_yosys(tmp, f"{synth}tee -q -o stat.json stat -json\n{write}",
                      f"{target} synthesis of {name} for its logic depth", expect="netlist.json")
            raw = (tmp / "netlist.json").read_bytes()
            store_synth_result(name, target, rtlil, json.loads((tmp / "stat.json").read_text()))
        netlist = json.loads(raw)
        tmp_net = net_file.with_suffix(".tmp")
        tmp_net.write_bytes(gzip.compress(raw, compresslevel=6))
        tmp_net.replace(net_file)
    rep = netlist_timing(netlist, name, tool=version)
    d = rep.to_dict()
    d.pop("cached")
    d.pop("fmax_mhz")
    tmp_file = cache_file.with_suffix(".tmp")
    tmp_file.write_text(json.dumps(d, indent=1))
    tmp_file.replace(cache_file)
    return rep

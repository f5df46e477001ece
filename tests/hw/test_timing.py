"""Logic depth and the UltraScale+ clock bound (hw/timing.py): the rule on hand-made netlists whose
paths are known, and on a real Yosys mapping of a design with a known number of LUT levels."""

import pytest

from qsilicon.hw.synth import synthesize
from qsilicon.hw.timing import (
    DSP_NOMREG_MHZ,
    DSP_NOPIPE_MHZ,
    FABRIC_MAX_MHZ,
    LUT_BUDGET_NS,
    netlist_timing,
    synth_timing,
    synthesize_timed,
)

REGS0 = {k: "0" for k in ("AREG", "BREG", "MREG", "PREG", "ADREG")}


def _ff(d, q):
    return {"type": "FDRE", "port_directions": {"C": "input", "CE": "input", "R": "input", "D": "input",
                                                 "Q": "output"},
            "connections": {"C": [1], "CE": ["1"], "R": ["0"], "D": [d], "Q": [q]}}


def _lut(ins, o):
    pd = {f"I{i}": "input" for i in range(len(ins))} | {"O": "output"}
    return {"type": f"LUT{len(ins)}", "port_directions": pd,
            "connections": {f"I{i}": [b] for i, b in enumerate(ins)} | {"O": [o]}}


def _dsp(a, p, **regs):
    return {"type": "DSP48E2", "parameters": REGS0 | {k: "1" for k, v in regs.items() if v},
            "port_directions": {"CLK": "input", "A": "input", "P": "output"},
            "connections": {"CLK": [1], "A": [a], "P": [p]}}


def _net(cells, names):
    return {"modules": {"top": {"cells": cells, "netnames": {n: {"bits": [b], "hide_name": 0}
                                                              for n, b in names.items()}}}}


def test_lut_levels_between_registers_set_the_bound():
    # q0 -> 5 LUTs -> q1 (the second also takes q0 directly); q0 -> LUT -> q2 (1 level)
    cells = {"r0": _ff(2, 10), "l1": _lut([10], 11), "l2": _lut([11, 10], 12), "l3": _lut([12], 13),
             "l4": _lut([13], 14), "l5": _lut([14], 15), "r1": _ff(15, 20), "l6": _lut([10], 16),
             "r2": _ff(16, 21)}
    rep = netlist_timing(_net(cells, {"q0": 10, "q1": 20, "q2": 21}), "top")
    assert rep.worst.levels == 5 and rep.worst.dsp == 0
    assert rep.worst.delay_ns == pytest.approx(5 * LUT_BUDGET_NS)
    assert rep.worst.start == "q0" and rep.worst.end == "q1"
    assert rep.fmax_mhz == pytest.approx(1e3 / (5 * LUT_BUDGET_NS))
    assert [p.end for p in rep.by_end] == ["q1", "q2"]


def test_an_unregistered_multiplier_costs_its_data_sheet_period():
    cells = {"r0": _ff(2, 10), "m": _dsp(10, 11), "l": _lut([11], 12), "r1": _ff(12, 20)}
    rep = netlist_timing(_net(cells, {"q0": 10, "q1": 20}), "top")
    assert (rep.worst.levels, rep.worst.dsp) == (1, 1)
    assert rep.worst.delay_ns == pytest.approx(LUT_BUDGET_NS + 1e3 / DSP_NOPIPE_MHZ, abs=1e-3)


def test_dsp_registers_cut_the_path():
    # inputs and output registered, no MREG: the DSP's own bound (544 MHz); the LUT paths around it
    # start at P (not a flip-flop: one level more) and end at A (likewise).
    cells = {"r0": _ff(2, 10), "l0": _lut([10], 11), "m": _dsp(11, 12, AREG=1, BREG=1, PREG=1),
             "l1": _lut([12], 13), "r1": _ff(13, 20)}
    rep = netlist_timing(_net(cells, {"q0": 10, "q1": 20}), "top")
    assert rep.worst.end == "m.P" and rep.worst.fmax_mhz == pytest.approx(DSP_NOMREG_MHZ, rel=1e-3)
    into = next(p for p in rep.by_end if p.end == "q1")
    assert (into.levels, into.dsp) == (2, 0) and into.delay_ns == pytest.approx(2 * LUT_BUDGET_NS)
    # with MREG too, nothing inside the DSP bounds it and the short LUT paths are below 775 MHz's period
    cells["m"] = _dsp(11, 12, AREG=1, BREG=1, MREG=1, PREG=1)
    rep = netlist_timing(_net(cells, {"q0": 10, "q1": 20}), "top")
    assert rep.worst.dsp == 0 and rep.fmax_mhz == FABRIC_MAX_MHZ


def test_bad_netlists_are_refused():
    with pytest.raises(ValueError, match="cell type 'FOO'.*no timing rule"):
        netlist_timing(_net({"x": {"type": "FOO", "connections": {}}}, {}), "top")
    with pytest.raises(ValueError, match="no register-to-register path"):
        netlist_timing(_net({"l": _lut([2], 3)}, {}), "top")
    loop = {"r0": _ff(2, 10), "a": _lut([10, 12], 11), "b": _lut([11], 12), "r1": _ff(12, 20)}
    with pytest.raises(ValueError, match="combinational loop"):
        netlist_timing(_net(loop, {}), "top")


@pytest.mark.slow
def test_a_synthesized_reduction_has_the_levels_a_lut6_tree_needs():
    """36 registered bits XOR-reduced into a register: two levels of LUT6 (6 x 6 inputs) by Yosys'
    xcup mapping; 216 bits need three."""
    from amaranth import Module, Signal
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    class Reduce(wiring.Component):
        def __init__(self, n):
            self.n = n
            super().__init__({"i": In(n), "o": Out(1)})

        def elaborate(self, platform):
            m = Module()
            r = Signal(self.n)
            m.d.sync += [r.eq(self.i), self.o.eq(r.xor())]
            return m

    for n, levels in ((36, 2), (216, 3)):
        rep = synth_timing(Reduce(n), f"reduce{n}", use_cache=False)
        assert rep.worst.levels == levels and rep.worst.dsp == 0, rep.worst
        assert rep.worst.end == "o" and rep.worst.start.startswith("r")
        # the same Yosys run counted the cells for synthesize(); synthesize_timed gives both
        counted = synthesize(Reduce(n), f"reduce{n}", "xcup_abc")
        res, again = synthesize_timed(Reduce(n), f"reduce{n}")
        assert counted.cached and res.cached and again.cached
        assert res.counts == counted.counts and res.counts["ff"] >= n + 1 and again.worst == rep.worst
    with pytest.raises(ValueError, match="target 'xcup' or 'xcup_abc'"):
        synth_timing(Reduce(4), "reduce4", target="ecp5")

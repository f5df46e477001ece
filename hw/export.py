"""Conversion of generators to Verilog and RTLIL (deterministic: the same component gives the
same text)."""

from __future__ import annotations

from amaranth.back import rtlil, verilog

__all__ = ["to_rtlil", "to_verilog"]


def to_verilog(component, name: str) -> str:
    """Verilog for a ``wiring.Component``; its signature's members become the ports."""
    return verilog.convert(component, name=name, emit_src=False)


def to_rtlil(component, name: str) -> str:
    """RTLIL for yosys (``read_rtlil``), which ``synth_xilinx`` reads more reliably than Verilog."""
    return rtlil.convert(component, name=name, emit_src=False)

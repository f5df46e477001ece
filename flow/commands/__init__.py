"""The command groups of ``qsilicon``: one module ("room") per subsystem, each with a
``register(sub, groups)`` that adds its parsers to the top-level subparsers ``sub`` and to the
shared verb groups (``groups["verilog"]``, ``groups["verify"]``, ...)."""

from . import boards, depth_engine, depth_model, design, flow, gemm, imported, regress, search, supernet, vit

__all__ = ["ROOMS"]

#: In the order of ``qsilicon --help``.
ROOMS = (flow, boards, gemm, vit, imported, supernet, search, design, depth_model, depth_engine, regress)

"""The QuartDepth engine product: instruction set, gateware, compiler and instruction-set simulator."""

from .compiler import CompileError, DepthProgram, compile_graph
from .isa import EngineConfig, IllegalInstruction, isa_table
from .iss import run_program

__all__ = ["CompileError", "DepthProgram", "EngineConfig", "IllegalInstruction", "compile_graph", "isa_table",
           "run_program"]

"""The ``qsilicon`` command line: the parser made from the command rooms, and ``main``.

Conventions every command follows are in :mod:`qsilicon.flow.common`: exit code 0 success, 1 a
checked design that is wrong, 2 bad input or a missing tool (one line ``qsilicon: error: ...``);
``--json`` for one JSON document on stdout; output directories written aside and moved into place.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .commands import ROOMS
from .common import CliError, Parser

__all__ = ["build_parser", "main"]

#: Verbs shared by several rooms (``qsilicon verilog gemm``, ``qsilicon verilog depth-engine``, ...).
GROUPS = {
    "verilog": "write Verilog (and board build files) for a generator",
    "verify": "run a generator's RTL in cocotb against the integer reference",
    "synth": "synthesize a generator with yosys (and place and route on ECP5)",
    "compile": "compile a quantized model to an accelerator's program and memory image",
    "latency": "latency model predictions",
    "train": "train a model on the CPU from a fixed seed",
    "eval": "evaluate a model at a precision",
    "quantize": "post-training quantization of a trained model",
    "data": "generate (and cache) datasets",
}


class _Groups(dict):
    """The shared verb groups, each made when a room first registers into it (so ``--help`` lists
    the commands in the rooms' order)."""

    def __init__(self, sub) -> None:
        super().__init__()
        self._sub = sub

    def __missing__(self, name: str):
        if name not in GROUPS:
            raise KeyError(f"no command group {name!r}: add it to GROUPS")
        group = self._sub.add_parser(name, help=GROUPS[name]).add_subparsers(dest="component", required=True,
                                                                             parser_class=Parser)
        self[name] = group
        return group


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="qsilicon", description="Quantized-accelerator co-design: integer reference, "
               "Amaranth generators, cocotb verification.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    groups = _Groups(sub)
    for room in ROOMS:
        room.register(sub, groups)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except CliError as e:
        print(f"qsilicon: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("qsilicon: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

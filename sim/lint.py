"""Verilator's linter on a generator's Verilog (``verilator --lint-only -Wall``), warnings counted
by class.

Amaranth's Verilog carries many warnings of style classes by construction (unused bits of
sliced signals, width extensions, initial values of registers); the classes that mean a bug are
:data:`BUG_CLASSES`, and no generator may produce one (``tests/sim/test_lint.py``).
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

from .runner import check_simulator

__all__ = ["BUG_CLASSES", "LintError", "lint"]

#: Warning classes that mean a design bug: an inferred latch, a signal driven from two places, a
#: combinational loop, blocking and non-blocking assignments to one variable, a delayed assignment
#: in combinational logic, an implicitly declared net.
BUG_CLASSES = ("LATCH", "MULTIDRIVEN", "UNOPTFLAT", "BLKANDNBLK", "COMBDLY", "IMPLICIT")


class LintError(RuntimeError):
    """Verilator could not lint the source at all (a syntax error, not a warning)."""


def lint(verilog: str, toplevel: str) -> tuple[Counter, list[str]]:
    """``(warnings per class, the warning lines of BUG_CLASSES)`` of ``verilog``."""
    check_simulator("verilator")
    with tempfile.TemporaryDirectory(prefix="qs-lint-") as tmp:
        src = Path(tmp) / f"{toplevel}.v"
        src.write_text(verilog)
        r = subprocess.run(["verilator", "--lint-only", "-Wall", "--top-module", toplevel, str(src)],
                           capture_output=True, text=True)
    counts = Counter(re.findall(r"%Warning-([A-Z0-9_]+):", r.stderr))
    errors = [line for line in r.stderr.splitlines() if line.startswith("%Error") and "Exiting due to" not in line]
    if errors:
        raise LintError(f"verilator could not lint {toplevel}: {errors[0]}")
    bugs = [line for line in r.stderr.splitlines()
            if any(line.startswith(f"%Warning-{c}:") for c in BUG_CLASSES)]
    return counts, bugs

"""What every ``qsilicon`` command shares: the error type, the parser class, progress on stderr,
atomic output directories, board lookup and the default checkpoints.

Conventions every command follows (users script against them):

* exit code 0: success; 1: the design was checked and is wrong (any RTL/reference mismatch);
  2: bad input or a missing tool, reported as one line ``qsilicon: error: ...`` that names the
  problem and the fix;
* ``--json`` prints one JSON document on stdout and nothing else there (progress goes to stderr);
* commands that write a directory build it aside and move it into place at the end, so a
  failure leaves no half-written output.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

__all__ = [
    "DEFAULT_DEPTH", "DEFAULT_SUPERNET", "DEFAULT_VIT", "MANIFEST", "CliError", "OutputDir", "Parser", "board_plan",
    "fashion_mnist_splits", "get_board", "pnr_board", "progress", "require_simulator", "save_atomic",
    "simulation_error", "write_manifest",
]

#: The file that marks a directory as a qsilicon output (its configuration and file list).
MANIFEST = "qsilicon.json"
_CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"


class CliError(Exception):
    """Bad input or environment: printed as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not usage + message
        raise CliError(f"{message} (see '{self.prog} --help')")


def progress(msg: str) -> None:
    print(f"[qsilicon] {msg}", file=sys.stderr, flush=True)


def save_atomic(save_fn, model, path, meta: dict) -> None:
    """``save_fn(model, tmp, meta)`` beside ``path``, then moved into place: no half-written checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_fn(model, tmp, meta)
    tmp.replace(path)


class OutputDir:
    """Write into a temporary sibling of ``target`` and move it into place on success.

    An existing ``target`` is replaced only if it is a previous qsilicon output (it holds
    :data:`MANIFEST`) or empty; anything else is refused before any work starts.
    """

    def __init__(self, target: str | os.PathLike) -> None:
        self.target = Path(target).resolve()
        if self.target.exists():
            if not self.target.is_dir():
                raise CliError(f"output path {self.target} exists and is not a directory: choose another -o")
            if any(self.target.iterdir()) and not (self.target / MANIFEST).exists():
                raise CliError(f"output directory {self.target} is not empty and not a qsilicon output: "
                               "choose another -o or empty it")
        self.tmp: Path | None = None

    def __enter__(self) -> Path:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.tmp-", dir=self.target.parent))
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self.tmp is not None
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        if self.target.exists():
            shutil.rmtree(self.target)
        self.tmp.rename(self.target)


def get_board(name: str):
    """The registry's board ``name``, or a one-line error listing the known ones."""
    from qsilicon.boards import UnknownBoardError
    from qsilicon.boards import get_board as lookup

    try:
        return lookup(name)
    except UnknownBoardError as e:
        raise CliError(str(e)) from None


def board_plan(board, engine, tmp: Path) -> list[str]:
    """Write ``board``'s build plan of ``engine`` in the self-test shell under ``tmp/<board>``."""
    from qsilicon.boards import build_plan
    from qsilicon.hw.shell import SelfTestShell

    progress(f"writing the {board.name} build plan ({board.part})")
    written = build_plan(board.name, SelfTestShell(engine), tmp / board.name, name="top")
    return [str(Path(p).relative_to(tmp)) for p in written]


def pnr_board(args):
    """The ECP5 board of ``--pnr`` (default ulx3s), or ``None``; bad combinations as one line."""
    if not args.pnr:
        if args.board:
            raise CliError("--board goes with --pnr")
        return None
    board = get_board(args.board or "ulx3s")
    if args.target != "ecp5" or board.family != "ecp5":
        raise CliError(f"--pnr places and routes on ECP5 boards: use --target ecp5 --board ulx3s, "
                       f"not --target {args.target} --board {board.name}")
    return board


DEFAULT_VIT = _CHECKPOINTS / "vit_fmnist.pt"


def fashion_mnist_splits():
    """``(train images, train labels, test images, test labels)``, or the install hint as an error."""
    from qsilicon.quant.datasets import fashion_mnist

    try:
        return (*fashion_mnist("train"), *fashion_mnist("test"))
    except FileNotFoundError as e:
        raise CliError(str(e)) from None


DEFAULT_SUPERNET = _CHECKPOINTS / "supernet_fmnist.pt"


DEFAULT_DEPTH = _CHECKPOINTS / "depth_synth.pt"



def require_simulator(sim: str) -> None:
    """A one-line error naming the install command when ``sim`` cannot run here."""
    from qsilicon.sim.runner import SimulatorMissingError, check_simulator

    try:
        check_simulator(sim)
    except SimulatorMissingError as e:
        raise CliError(str(e)) from None


def simulation_error(e: Exception, log: Path | None = None) -> CliError:
    """A failed build or run as a one-line error; the log's tail goes to stderr first."""
    if log is not None and Path(log).exists():
        tail = Path(log).read_text(errors="replace").splitlines()[-30:]
        print("\n".join(tail), file=sys.stderr)
    return CliError(str(e).split(" (log:")[0])


def write_manifest(tmp: Path, manifest: dict) -> None:
    """``qsilicon.json`` in an output directory being written (with the version first)."""
    from qsilicon import __version__

    (tmp / MANIFEST).write_text(json.dumps({"qsilicon": __version__, **manifest}, indent=2, default=str) + "\n")


def rowbuf_suffix(hw: dict) -> str:
    """A design's row buffer in a one-line listing, `` rb1024``; nothing when it has none."""
    return f" rb{hw['rowbuf']}" if hw.get("rowbuf") else ""

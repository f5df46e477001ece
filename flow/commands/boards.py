"""``qsilicon boards``: the board registry."""

from __future__ import annotations

import json

__all__ = ["register"]


def cmd_boards(args) -> int:
    from qsilicon.boards import BOARDS

    boards = [BOARDS[k] for k in sorted(BOARDS)]
    if args.json:
        print(json.dumps([b.to_dict() for b in boards], indent=2))
        return 0
    head = (f"{'board':<11} {'part':<24} {'LUT':>8} {'FF':>9} {'DSP':>5} {'BRAM36':>7} {'URAM':>5} "
            f"{'MHz':>5} {'GB/s':>6}")
    print(head)
    print("-" * len(head))
    for b in boards:
        print(f"{b.name:<11} {b.part:<24} {b.luts:>8} {b.ffs:>9} {b.dsps:>5} {b.bram36:>7} {b.uram:>5} "
              f"{b.clock_mhz:>5g} {b.dram_gbps:>6g}")
    print("\nEvery figure's datasheet reference: qsilicon boards --json")
    return 0


def register(sub, groups) -> None:
    b = sub.add_parser("boards", help="list the board registry")
    b.add_argument("--json", action="store_true", help="machine-readable, with datasheet references")
    b.set_defaults(func=cmd_boards)

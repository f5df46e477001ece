"""FPGA boards: cited resource figures and Amaranth platforms.

:mod:`qsilicon.boards.registry` (pure Python, imported eagerly) describes each
board; :mod:`qsilicon.boards.platforms` (needs Amaranth, imported on first use
of one of its names) gives the Amaranth platform of each board and writes build
plans.

Examples
--------
>>> from qsilicon.boards import get_board
>>> get_board("zcu104").uram
96
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .registry import (
    BOARDS,
    FAMILIES,
    NUMERIC_FIELDS,
    VENDORS,
    Board,
    UnknownBoardError,
    board_names,
    get_board,
)

if TYPE_CHECKING:
    from .platforms import (
        KV260Platform,
        PynqZ2Platform,
        Ultra96V2Platform,
        ZCU102Platform,
        ZCU104Platform,
        ZynqMPPSClockPlatform,
        build_plan,
        get_platform,
        platform_clock_hz,
        platform_part,
    )

__all__ = [
    "BOARDS",
    "FAMILIES",
    "NUMERIC_FIELDS",
    "VENDORS",
    "Board",
    "UnknownBoardError",
    "board_names",
    "get_board",
    # From .platforms, imported on first use (see __getattr__):
    "KV260Platform",
    "PynqZ2Platform",
    "Ultra96V2Platform",
    "ZCU102Platform",
    "ZCU104Platform",
    "ZynqMPPSClockPlatform",
    "build_plan",
    "get_platform",
    "platform_clock_hz",
    "platform_part",
]

_PLATFORM_NAMES = frozenset(__all__[__all__.index("KV260Platform") :])


def __getattr__(name: str) -> Any:
    """Import :mod:`.platforms` (and so Amaranth) only when one of its names is used."""
    if name in _PLATFORM_NAMES:
        return getattr(importlib.import_module(".platforms", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _PLATFORM_NAMES)

"""Where qsilicon caches simulator builds and synthesis results."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root"]


def cache_root() -> Path:
    """``$QSILICON_CACHE``, else ``$XDG_CACHE_HOME/qsilicon``, else ``~/.cache/qsilicon``."""
    env = os.environ.get("QSILICON_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "qsilicon"

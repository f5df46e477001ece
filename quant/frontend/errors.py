"""The importer's one error type and how it names a graph node."""

from __future__ import annotations

import re

__all__ = ["UnsupportedModelError", "node_where", "unsupported"]

_FRAME = re.compile(r'File "([^"]+)", line (\d+)')


class UnsupportedModelError(ValueError):
    """A model the importer cannot map to an engine; the message is one line that names the
    operator, the graph node and, where ``torch.export`` recorded it, the source line."""


def _short(path: str) -> str:
    for marker in ("site-packages/", "dist-packages/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def node_where(node) -> str:
    """``node 'linear_3' (aten.linear.default) at timm/layers/mlp.py:47 in blocks.0.mlp.fc1``."""
    what = f"node {node.name!r} ({node.target})" if node.op == "call_function" else f"node {node.name!r}"
    trace = node.meta.get("stack_trace") or ""
    frames = _FRAME.findall(trace)
    # the innermost frame outside torch itself: the model's own line (timm's, or the user's)
    own = [f for f in frames if "/torch/" not in f[0]] or frames
    if own:
        path, line = own[-1]
        what += f" at {_short(path)}:{line}"
    stack = node.meta.get("nn_module_stack") or {}
    if stack:
        path = list(stack.values())[-1][0]
        if path:
            what += f" in {path}"
    return what


def unsupported(node, why: str, hint: str = "") -> UnsupportedModelError:
    """The one-line error for ``node``: what is wrong, where, and (``hint``) what the engine runs."""
    return UnsupportedModelError(f"{why}: {node_where(node)}" + (f" ({hint})" if hint else ""))

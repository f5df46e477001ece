"""Host-side packing of stream payloads into integers, following Amaranth's data layouts.

The bit positions come from the layouts themselves, so the host, the testbenches and the
gateware cannot disagree about them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from amaranth import Shape
from amaranth.lib import data

__all__ = ["pack", "unpack"]


def _fields(layout: data.Layout):
    return list(iter(layout))


def pack(layout, value) -> int:
    """Pack ``value`` (an int for a plain shape, a sequence for an ``ArrayLayout``, a mapping for
    a ``StructLayout``, a one-entry mapping for a ``UnionLayout``) into the unsigned integer that
    Amaranth stores for ``layout``."""
    if isinstance(layout, data.UnionLayout):
        if not isinstance(value, Mapping) or len(value) != 1:
            raise ValueError(f"A union value names exactly one member, not {value!r}")
        (key, v), = value.items()
        return pack(layout[key].shape, v)
    if isinstance(layout, data.Layout):
        bits = 0
        for key, field in _fields(layout):
            v = value[key] if isinstance(value, (Mapping, Sequence)) else None
            if v is None:
                raise ValueError(f"Missing field {key!r} for layout {layout!r}")
            bits |= pack(field.shape, v) << field.offset
        return bits
    shape = Shape.cast(layout)
    v = int(value)
    lo = -(1 << (shape.width - 1)) if shape.signed else 0
    hi = (1 << (shape.width - 1)) - 1 if shape.signed else (1 << shape.width) - 1
    if not lo <= v <= hi:
        raise ValueError(f"Value {v} does not fit {shape!r}")
    return v & ((1 << shape.width) - 1)


def unpack(layout, bits: int):
    """Inverse of :func:`pack`: a dict for ``StructLayout``, a list for ``ArrayLayout``, an int
    (sign-extended where the shape is signed) otherwise."""
    if isinstance(layout, data.ArrayLayout):
        return [unpack(f.shape, bits >> f.offset) for _, f in _fields(layout)]
    if isinstance(layout, data.Layout):
        return {k: unpack(f.shape, bits >> f.offset) for k, f in _fields(layout)}
    shape = Shape.cast(layout)
    v = int(bits) & ((1 << shape.width) - 1)
    if shape.signed and v >> (shape.width - 1):
        v -= 1 << shape.width
    return v

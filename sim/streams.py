"""cocotb stream agents: a driver and a monitor for Amaranth ``stream.Signature`` ports.

They are stepped by one clock loop (``drive`` in the writable phase after the rising edge,
``sample`` in the read-only phase before the next one), which keeps cocotb's per-cycle cost to
two triggers however many streams a testbench has.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

__all__ = ["StreamDriver", "StreamMonitor"]


class StreamDriver:
    """Drives packed beats on the port ``prefix`` (``<prefix>__valid/ready/payload``).

    ``valid_p`` is the probability of offering a beat in a cycle (1.0: never idle).
    """

    def __init__(self, dut, prefix: str, beats: Sequence[int], valid_p: float, rng: random.Random):
        self.valid = getattr(dut, f"{prefix}__valid")
        self.ready = getattr(dut, f"{prefix}__ready")
        self.payload = getattr(dut, f"{prefix}__payload")
        self.beats, self.index = list(beats), 0
        self.valid_p, self.rng = valid_p, rng
        self.first_fire: int | None = None

    @property
    def done(self) -> bool:
        return self.index >= len(self.beats)

    def drive(self) -> None:
        offer = not self.done and (self.valid_p >= 1.0 or self.rng.random() < self.valid_p)
        self.valid.value = int(offer)
        if not self.done:
            self.payload.value = self.beats[self.index]

    def sample(self, cycle: int) -> None:
        if self.valid.value == 1 and self.ready.value == 1:
            self.index += 1
            if self.first_fire is None:
                self.first_fire = cycle


class StreamMonitor:
    """Collects beats from the port ``prefix``; ``ready_p`` is the probability of accepting in a
    cycle (1.0: no backpressure)."""

    def __init__(self, dut, prefix: str, ready_p: float, rng: random.Random):
        self.valid = getattr(dut, f"{prefix}__valid")
        self.ready = getattr(dut, f"{prefix}__ready")
        self.payload = getattr(dut, f"{prefix}__payload")
        self.ready_p, self.rng = ready_p, rng
        self.beats: list[int] = []
        self.last_fire: int | None = None

    def drive(self) -> None:
        self.ready.value = int(self.ready_p >= 1.0 or self.rng.random() < self.ready_p)

    def sample(self, cycle: int) -> None:
        if self.valid.value == 1 and self.ready.value == 1:
            self.beats.append(self.payload.value.to_unsigned())
            self.last_fire = cycle

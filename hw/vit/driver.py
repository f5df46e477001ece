"""Host side of a run on the ViT accelerator: load the memory image once, then for every input
write its patch codes, start, wait for the interrupt, read the status and the logits.

:class:`VitHost` works on any :class:`Bus` (five awaitables): the cocotb testbench's
(:mod:`qsilicon.sim.tb_vit_accel`) or a board's (memory through the PS, registers through an
AXI4-Lite window, the interrupt through a UIO device); the CLI's ``qsilicon verify vit`` runs it
inside the testbench.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Protocol

import torch

from ..config import AccelConfig
from .compiler import ProgramLayout, Region, region_read, region_size, region_write
from .system import REGS, decode_info

__all__ = ["Bus", "RunResult", "VitHost"]


class Bus(Protocol):
    async def write_memory(self, addr: int, data: bytes) -> None: ...

    async def read_memory(self, addr: int, n: int) -> bytes: ...

    async def write_reg(self, offset: int, value: int) -> None: ...

    async def read_reg(self, offset: int) -> int: ...

    async def wait_irq(self) -> None: ...


@dataclass
class RunResult:
    """One input's run: the class token's logits, the STATUS word and its error cause, and the
    counters (cycles start to done, descriptors, memory words read and written, array beats),
    and every descriptor's cycles from the log."""

    logits: list[int]
    status: int
    cycles: int
    ops: int
    rd_words: int
    wr_words: int
    mac_beats: int
    op_cycles: list[int] = field(default_factory=list)

    @property
    def error(self) -> bool:
        return bool(self.status & 4)

    @property
    def cause(self) -> int:
        return (self.status >> 8) & 15

    def to_dict(self) -> dict:
        return asdict(self)


class VitHost:
    """Runs a compiled program (its :class:`~qsilicon.hw.vit.compiler.ProgramLayout`) on a bus."""

    def __init__(self, layout: ProgramLayout) -> None:
        self.layout = layout

    async def check_design(self, bus: Bus) -> dict:
        """The accelerator's design as its ``INFO`` and ``INFO2`` registers report it; a
        :class:`ValueError` if it is not the design the program was compiled for (a program's
        descriptors, buffers and memory layout are only right on that design)."""
        got = decode_info(await bus.read_reg(REGS["INFO"]), await bus.read_reg(REGS["INFO2"]))
        if self.layout.design:
            want = AccelConfig.from_tag(self.layout.design).to_dict()
            want.pop("clock_mhz")
            if got != want:
                try:
                    have = AccelConfig(**got).tag.rsplit("_", 1)[0]
                except (TypeError, ValueError):  # no design of ours reports these
                    have = str(got)
                raise ValueError(f"the program was compiled for {self.layout.design.rsplit('_', 1)[0]}, the "
                                 f"accelerator is {have} (INFO/INFO2): compile the model for this design or load "
                                 "the bitstream it was compiled for")
        return got

    async def load(self, bus: Bus, image: bytes) -> None:
        """Check the design (:meth:`check_design`), then write the memory image."""
        if len(image) != self.layout.image_bytes:
            raise ValueError(f"memory image of {len(image)} bytes, the program needs {self.layout.image_bytes}")
        await self.check_design(bus)
        await bus.write_memory(0, image)

    def input_bytes(self, codes: torch.Tensor) -> bytes:
        """The input region with one image's int8 patch codes ``[patches, patch_dim]`` after the
        prefix tokens (the class token's slot, and the distillation token's; zeros, as are the
        padding rows)."""
        lay = self.layout
        t = lay.input
        if tuple(codes.shape) != (lay.patch_tokens, t.features):
            raise ValueError(f"patch codes of shape {tuple(codes.shape)}, expected {(lay.patch_tokens, t.features)}")
        local = Region(0, t.kind, t.tokens, t.features, t.pitch, t.lanes)
        buf = bytearray(region_size(local))
        rows = torch.zeros((lay.patch_tokens + lay.prefix, t.features), dtype=torch.int64)
        rows[lay.prefix :] = codes
        region_write(buf, local, rows)
        return bytes(buf)

    async def infer(self, bus: Bus, codes: torch.Tensor, *, log: bool = True) -> RunResult:
        lay = self.layout
        await bus.write_memory(lay.input.addr, self.input_bytes(codes))
        await bus.write_reg(REGS["LOG_ADDR"], lay.log if log else 0)
        await bus.write_reg(REGS["PROG_ADDR"], lay.program)
        await bus.write_reg(REGS["CTRL"], 1)
        await bus.wait_irq()
        regs = {name: await bus.read_reg(REGS[name])
                for name in ("STATUS", "CYCLES", "OPS", "RD_WORDS", "WR_WORDS", "MAC_BEATS")}
        t = lay.logits
        raw = await bus.read_memory(t.addr, region_size(t))
        logits = region_read(raw, Region(0, t.kind, t.tokens, t.features, t.pitch, t.lanes), tokens=1)[0]
        op_cycles = []
        if log:
            blob = await bus.read_memory(lay.log, lay.ops * lay.lanes)
            op_cycles = [int.from_bytes(blob[i * lay.lanes : i * lay.lanes + 4], "little") for i in range(regs["OPS"])]
        return RunResult(logits[: lay.classes].tolist(), regs["STATUS"], regs["CYCLES"], regs["OPS"],
                         regs["RD_WORDS"], regs["WR_WORDS"], regs["MAC_BEATS"], op_cycles)

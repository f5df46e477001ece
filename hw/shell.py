"""A self-test shell that puts a component (stream ports, or plain ports such as AXI buses) on a board
by itself.

Vendor synthesis removes logic whose inputs are undriven or whose outputs go nowhere, so a
bare engine cannot be built for a board without a system around it.  The shell drives every
input stream with pseudo-random beats from LFSRs, keeps every output stream ready, and folds
every output bit into one register on ``led`` 0 (on boards without a fabric LED, such as the
KV260, that register carries ``keep``/``DONT_TOUCH`` instead): nothing can be optimised away,
so the build's resource and timing figures are the engine's own.  For system integration, instantiate the
engine's Verilog (``gemm_engine.v``) in your design instead.
"""

from __future__ import annotations

from amaranth import Cat, Elaboratable, Module, Signal
from amaranth.build import ResourceError
from amaranth.lib import io, stream
from amaranth.lib.wiring import Flow

__all__ = ["SelfTestShell"]

# Galois LFSR, x^32 + x^22 + x^2 + x + 1 (maximal length).
_TAPS = 0x80200003


class SelfTestShell(Elaboratable):
    """Wrap ``core`` (a ``wiring.Component`` with stream ports) for a board build.

    Parameters
    ----------
    core : wiring.Component
        Stream ports get LFSR beats (valid always, ready always); plain input signals get free-running
        LFSR bits; every output bit is folded.
    led : str
        Platform resource that receives the folded output bit (``led`` 0 by default).
    """

    def __init__(self, core, led: str = "led") -> None:
        self._core = core
        self._led = led

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self._core
        fold = Signal(attrs={"keep": 1, "DONT_TOUCH": "TRUE"})
        folded = []
        seed = 1
        streams = {n for n, mb in core.signature.members.items()
                   if mb.is_signature and isinstance(mb.signature, stream.Signature)}
        # Plain ports (e.g. AXI buses): inputs from free-running LFSR bits, outputs folded.
        for path, member, value in core.signature.flatten(core):
            if path[0] in streams:
                continue
            label = "_".join(map(str, path))
            if member.flow == Flow.In:
                s = Signal(32, init=(0x9E3779B9 * seed) & 0xFFFFFFFF or 1, name=f"lfsr_{label}")
                seed += 1
                m.d.sync += s.eq(Cat(s[1:], 0) ^ (s[0].replicate(32) & _TAPS))
                m.d.comb += value.eq(s.replicate(-(-len(value) // 32))[: len(value)])
            else:
                acc = Signal(name=f"fold_{label}")
                m.d.sync += acc.eq(acc ^ value.xor())
                folded.append(acc)
        for name, member in core.signature.members.items():
            if name not in streams:
                continue
            port = getattr(core, name)
            width = len(port.payload.as_value())
            if member.flow == Flow.In:
                lfsrs = []
                for i in range(0, width, 32):
                    s = Signal(32, init=(0x9E3779B9 * seed) & 0xFFFFFFFF or 1, name=f"lfsr_{name}_{i // 32}")
                    seed += 1
                    with m.If(port.valid & port.ready):
                        m.d.sync += s.eq(Cat(s[1:], 0) ^ (s[0].replicate(32) & _TAPS))
                    lfsrs.append(s)
                m.d.comb += [port.valid.eq(1), port.payload.as_value().eq(Cat(*lfsrs)[:width])]
            else:
                m.d.comb += port.ready.eq(1)
                acc = Signal(name=f"fold_{name}")
                with m.If(port.valid):
                    m.d.sync += acc.eq(acc ^ port.payload.as_value().xor())
                folded.append(acc)
        m.d.sync += fold.eq(Cat(*folded).xor())
        if platform is not None:
            try:
                led = platform.request(self._led, 0, dir="-")
            except ResourceError:
                return m  # no such pin: the kept register holds the design together
            m.submodules.led = led_buffer = io.Buffer("o", led)
            m.d.comb += led_buffer.o.eq(fold.replicate(len(led_buffer.o)))
        return m

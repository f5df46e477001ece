"""Registry of the FPGA boards qsilicon can target, with cited resource figures.

Every numeric figure of a :class:`Board` carries a citation in :attr:`Board.refs`.
The primary sources are the vendors' device data sheets:

* DS891, *Zynq UltraScale+ MPSoC Data Sheet: Overview* (device-feature summary
  tables, one column per device);
* DS987, *Kria K26 SOM Data Sheet*;
* DS190, *Zynq-7000 SoC Data Sheet: Overview* (family table, Z-7020 column);
* FPGA-DS-02012, *ECP5 and ECP5-5G Family Data Sheet* (Table 1.1, family
  selection guide);
* FPGA-DS-02008, *iCE40 UltraPlus Family Data Sheet* (Table 1.1, family
  selection guide).

How the figures were checked (the data sheets themselves were not readable
from the stored corpora, so each figure was cross-checked against the device
databases of the vendor or open tools):

* Xilinx counts equal the ``Available`` column of Vivado ``report_utilization``
  reports for the same part, found in public repositories (ZU3EG: Vivado 2021.2
  report for ``xczu3eg-sbva484-1-e``; ZU9EG, ZU7EV, XCK26, XC7Z020: several
  published reports).  Table numbers inside DS891/DS190/DS987 are not given
  because they could not be verified; the device column is named instead.
* Lattice counts equal the device-utilisation table printed by nextpnr-ecp5 /
  nextpnr-ice40 (Project Trellis / Project IceStorm chip databases, run offline
  on this project's ``yowasp-nextpnr-*`` wheels for ``--85k --package CABGA381``
  and ``--up5k --package sg48``) and, for the ECP5, the Lattice Diamond map
  report (``LUTS_avail = 83640``, ``EBR_avail = 208``).
* DRAM figures come from the PS configuration presets in the vendors' Vivado
  board files (``Xilinx/XilinxBoardStore``: ``boards/Xilinx/zcu102/3.3``,
  ``boards/Xilinx/zcu104/1.1``, ``boards/Avnet/ultra96v2/1.2``,
  ``boards/Xilinx/kv260_som/1.3``, ``boards/TUL/pynq-z2/A.0``).

Conventions
-----------
``luts``
    Logic LUTs: 6-input LUTs on Xilinx devices, 4-input LUTs on Lattice ones
    (see :attr:`Board.lut_inputs`).
``dsps``
    Hard multiplier blocks: DSP48E2 (UltraScale+), DSP48E1 (7-series),
    MULT18X18D 18x18 multipliers (ECP5), SB_MAC16 (iCE40 UltraPlus).
``bram36``
    Xilinx 36 Kb block RAM tiles (each splits into two 18 Kb RAMs); 0 on
    Lattice devices, whose block RAMs have other sizes (see ``extra``).
``bram_kbits``
    Total kbits of the device's block RAM of the "BRAM/EBR" kind, for every
    board (UltraRAM and iCE40 SPRAM are *not* included; see
    :attr:`Board.onchip_ram_kbits`).
``uram``
    UltraRAM blocks of 288 Kb, 0 where the device has none.
``extra``
    Vendor-specific block counts: ``ebr18k`` (ECP5 18 Kb EBR), ``ebr4k``
    (iCE40 4 Kb EBR), ``spram256k`` (iCE40 UltraPlus 256 Kb single-port RAM).
``clock_mhz``
    The default design clock: the frequency of the clock the board platform
    (:mod:`qsilicon.boards.platforms`) drives the ``sync`` domain with.
``dram_gbps``
    Peak theoretical bandwidth, in GB/s (1e9 bytes/s), of the external DRAM the
    fabric can reach: bus width x transfer rate of the interface as the board's
    vendor preset configures it.  On the Zynq boards this is the PS DDR
    controller, which the fabric reaches through the S_AXI_HP/HPC ports (their
    aggregate width exceeds the DRAM's, so the DRAM is the bound); DRAM wired to
    the PL only (ZCU102/ZCU104 PL DDR4) is not counted, because using it needs a
    soft memory controller.  0 where no DRAM is reachable (iCEBreaker).
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Board",
    "BOARDS",
    "UnknownBoardError",
    "get_board",
    "board_names",
    "NUMERIC_FIELDS",
    "VENDORS",
    "FAMILIES",
]

#: Vendors and the yosys family keys allowed for each.
FAMILIES: Mapping[str, tuple[str, ...]] = types.MappingProxyType(
    {"xilinx": ("xcup", "xc7"), "lattice": ("ecp5", "ice40")}
)
VENDORS: tuple[str, ...] = tuple(FAMILIES)

#: Names of the numeric fields of :class:`Board`; each needs an entry in ``refs``.
NUMERIC_FIELDS: tuple[str, ...] = (
    "luts",
    "ffs",
    "dsps",
    "bram36",
    "bram_kbits",
    "uram",
    "clock_mhz",
    "dram_gbps",
)

#: Size in kbits of the blocks that :attr:`Board.onchip_ram_kbits` adds up.
_URAM_KBITS = 288
_EXTRA_RAM_KBITS: Mapping[str, int] = types.MappingProxyType({"spram256k": 256})


class UnknownBoardError(ValueError):
    """Raised by :func:`get_board` for a name that is not in :data:`BOARDS`."""


@dataclass(frozen=True)
class Board:
    """Static description of one FPGA board and the device on it.

    Parameters
    ----------
    name : str
        Lower-case key used on the command line, e.g. ``"zcu102"``.
    title : str
        Human-readable board name.
    vendor : str
        FPGA vendor, ``"xilinx"`` or ``"lattice"``.
    family : str
        yosys target key: ``"xcup"`` (Zynq UltraScale+), ``"xc7"`` (Zynq-7000),
        ``"ecp5"`` or ``"ice40"``.
    part : str
        Full part string as the vendor toolchain wants it (Vivado part name;
        Lattice ordering part number for Diamond; ``device-package`` for
        iCEcube2).
    luts, ffs, dsps, bram36, bram_kbits, uram : int
        Device resources; see the module docstring for their exact meaning.
    clock_mhz : float
        Default design clock in MHz.
    dram_gbps : float
        Peak external-memory bandwidth available to the fabric, GB/s.
    refs : Mapping[str, str]
        Citation for every numeric field (keys of :data:`NUMERIC_FIELDS`) and
        for every ``extra`` entry (key ``"extra.<name>"``).
    extra : Mapping[str, int], optional
        Vendor-specific block counts (see the module docstring).
    notes : str, optional
        Free-form remarks (clocking, assumptions).

    Raises
    ------
    ValueError
        If a value is out of range, the vendor/family pair is unknown, or a
        numeric value lacks a reference.
    """

    name: str
    title: str
    vendor: str
    family: str
    part: str
    luts: int
    ffs: int
    dsps: int
    bram36: int
    bram_kbits: int
    uram: int
    clock_mhz: float
    dram_gbps: float
    refs: Mapping[str, str]
    extra: Mapping[str, int] = field(default_factory=dict)
    notes: str = ""

    def __post_init__(self) -> None:
        # Freeze the mappings so that a Board is immutable all the way down.
        object.__setattr__(self, "refs", types.MappingProxyType(dict(self.refs)))
        object.__setattr__(self, "extra", types.MappingProxyType(dict(self.extra)))
        self._validate()

    def _validate(self) -> None:
        if not self.name or self.name != self.name.strip().lower():
            raise ValueError(f"board name {self.name!r} must be non-empty lower case")
        if self.vendor not in FAMILIES:
            raise ValueError(f"board {self.name!r}: unknown vendor {self.vendor!r}")
        if self.family not in FAMILIES[self.vendor]:
            raise ValueError(
                f"board {self.name!r}: family {self.family!r} is not a {self.vendor} family"
            )
        for key in NUMERIC_FIELDS:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"board {self.name!r}: {key} must be a number")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"board {self.name!r}: {key} must be finite and >= 0")
        for key in ("luts", "ffs", "dsps", "bram36", "bram_kbits", "uram"):
            if not isinstance(getattr(self, key), int):
                raise ValueError(f"board {self.name!r}: {key} must be an integer")
        if self.clock_mhz <= 0:
            raise ValueError(f"board {self.name!r}: clock_mhz must be positive")
        if self.vendor == "xilinx" and self.bram_kbits != 36 * self.bram36:
            raise ValueError(f"board {self.name!r}: bram_kbits must equal 36 * bram36")
        for key, value in self.extra.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"board {self.name!r}: extra[{key!r}] must be an int >= 0")
        missing = [key for key in self.numeric_keys() if not self.refs.get(key, "").strip()]
        if missing:
            raise ValueError(f"board {self.name!r}: no reference for {', '.join(missing)}")

    def __hash__(self) -> int:
        # The generated hash would include the (unhashable) mapping fields.
        return hash((self.name, self.part))

    def numeric_keys(self) -> tuple[str, ...]:
        """Keys under which every numeric value must be cited in :attr:`refs`.

        Returns
        -------
        tuple of str
            :data:`NUMERIC_FIELDS` followed by ``"extra.<name>"`` for each
            ``extra`` entry.
        """
        return NUMERIC_FIELDS + tuple(f"extra.{key}" for key in self.extra)

    @property
    def lut_inputs(self) -> int:
        """Number of inputs of one logic LUT (6 on Xilinx, 4 on Lattice)."""
        return 6 if self.vendor == "xilinx" else 4

    @property
    def onchip_ram_kbits(self) -> int:
        """Total dedicated on-chip RAM in kbits: block RAM, UltraRAM and SPRAM.

        Distributed (LUT) RAM is not included.
        """
        extra = sum(_EXTRA_RAM_KBITS.get(key, 0) * count for key, count in self.extra.items())
        return self.bram_kbits + _URAM_KBITS * self.uram + extra

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dictionary of all fields.

        Returns
        -------
        dict
            One entry per dataclass field, with ``refs`` and ``extra`` as plain
            dictionaries, plus the derived ``lut_inputs`` and
            ``onchip_ram_kbits``.
        """
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = dict(value) if isinstance(value, Mapping) else value
        out["lut_inputs"] = self.lut_inputs
        out["onchip_ram_kbits"] = self.onchip_ram_kbits
        return out


# --------------------------------------------------------------------------------------
# Shared citations.

_BOARDSTORE = "Xilinx/XilinxBoardStore"
_VIVADO_AVAIL = "matches the 'Available' column of Vivado report_utilization for {part}"

# ZynqMP PS DDR bandwidth: bytes/transfer x MT/s.  DDR4-2133 on a 64-bit bus.
_DDR4_2133_X64_GBPS = 8 * 2133 / 1000  # 17.064
_DDR4_2400_X64_GBPS = 8 * 2400 / 1000  # 19.2
_LPDDR4_1066_X32_GBPS = 4 * 1066 / 1000  # 4.264
_DDR3_1050_X16_GBPS = 2 * 1050 / 1000  # 2.1
_SDR_166_X16_GBPS = 2 * 166 / 1000  # 0.332


def _xilinx_refs(ds: str, column: str, part: str, extra: Mapping[str, str]) -> dict[str, str]:
    """Build the resource citations shared by the Xilinx boards."""
    check = _VIVADO_AVAIL.format(part=part)
    refs = {
        "luts": f"{ds}, {column} column: LUTs; {check}",
        "ffs": f"{ds}, {column} column: flip-flops; {check}",
        "dsps": f"{ds}, {column} column: DSP slices; {check}",
        "bram36": f"{ds}, {column} column: 36 Kb block RAMs; {check}",
        "bram_kbits": f"{ds}, {column} column: bram36 x 36 Kb",
        "uram": f"{ds}, {column} column: UltraRAM blocks (288 Kb)",
    }
    refs.update(extra)
    return refs


_ZCU102 = Board(
    name="zcu102",
    title="AMD Xilinx Zynq UltraScale+ MPSoC ZCU102 Evaluation Kit",
    vendor="xilinx",
    family="xcup",
    part="xczu9eg-ffvb1156-2-e",
    luts=274_080,
    ffs=548_160,
    dsps=2_520,
    bram36=912,
    bram_kbits=912 * 36,
    uram=0,
    clock_mhz=125.0,
    dram_gbps=_DDR4_2133_X64_GBPS,
    refs=_xilinx_refs(
        "DS891 EG device-feature summary",
        "XCZU9EG",
        "xczu9eg-ffvb1156-2",
        {
            "uram": "DS891 EG device-feature summary, XCZU9EG column: no UltraRAM; "
            "FINN src/finn/util/platforms.py ZU9EG_Platform also lists 0 URAM",
            "clock_mhz": "125 MHz LVDS_25 system clock on G21/F21: "
            f"{_BOARDSTORE} boards/Xilinx/zcu102/3.4/part0_pins.xml (sysclk_p/n); "
            "125 MHz per litex-boards xilinx_zcu102.py and FPGA Ninja ZCU102 XDC "
            "(create_clock -period 8.000)",
            "dram_gbps": "PS DDR4 64-bit at DDR4-2133 (8 B x 2133 MT/s = 17.064 GB/s): "
            f"{_BOARDSTORE} boards/Xilinx/zcu102/3.3/preset.xml "
            "(PSU__DDRC__BUS_WIDTH=64 Bit, PSU__DDRC__SPEED_BIN=DDR4_2133P, "
            "PSU__CRF_APB__DDR_CTRL__FREQMHZ=1067); PL-side DDR4 not counted",
        },
    ),
    notes="Design clock: on-board 125 MHz LVDS oscillator (G21/F21).",
)

_ZCU104 = Board(
    name="zcu104",
    title="AMD Xilinx Zynq UltraScale+ MPSoC ZCU104 Evaluation Kit",
    vendor="xilinx",
    family="xcup",
    part="xczu7ev-ffvc1156-2-e",
    luts=230_400,
    ffs=460_800,
    dsps=1_728,
    bram36=312,
    bram_kbits=312 * 36,
    uram=96,
    clock_mhz=125.0,
    dram_gbps=_DDR4_2133_X64_GBPS,
    refs=_xilinx_refs(
        "DS891 EV device-feature summary",
        "XCZU7EV",
        "xczu7ev-ffvc1156-2-e",
        {
            "uram": "DS891 EV device-feature summary, XCZU7EV column: 96 UltraRAM "
            "blocks (27 Mb); same count in necst/faber_fpga src/model/boards.py (zcu104)",
            "clock_mhz": "125 MHz LVDS clock on F23/E23: Xilinx UG946 DFX tutorial "
            "ZCU104 top_io.xdc (create_clock -period 8, LVDS F23/E23); "
            "litex-boards xilinx_zcu104.py clk125",
            "dram_gbps": "PS DDR4 64-bit at DDR4-2133 (8 B x 2133 MT/s = 17.064 GB/s): "
            f"{_BOARDSTORE} boards/Xilinx/zcu104/1.1/preset.xml "
            "(PSU__DDRC__BUS_WIDTH=64 Bit, PSU__DDRC__SPEED_BIN=DDR4_2133P, "
            "PSU__CRF_APB__DDR_CTRL__FREQMHZ=1067); PL-side DDR4 not counted",
        },
    ),
    notes="Design clock: on-board 125 MHz LVDS oscillator (F23/E23).",
)

_ULTRA96_V2 = Board(
    name="ultra96-v2",
    title="Avnet Ultra96-V2 (Zynq UltraScale+ ZU3EG)",
    vendor="xilinx",
    family="xcup",
    # The Avnet board file and FINN's pynq_part_map both name the industrial
    # grade part for the V2 (the "-1-e" part belongs to the original Ultra96);
    # resources are identical.
    part="xczu3eg-sbva484-1-i",
    luts=70_560,
    ffs=141_120,
    dsps=360,
    bram36=216,
    bram_kbits=216 * 36,
    uram=0,
    clock_mhz=100.0,
    dram_gbps=_LPDDR4_1066_X32_GBPS,
    refs=_xilinx_refs(
        "DS891 EG device-feature summary",
        "XCZU3EG",
        "xczu3eg-sbva484-1-e (Vivado 2021.2)",
        {
            "uram": "DS891 EG device-feature summary, XCZU3EG column: no UltraRAM "
            "(Vivado 2021.2 report_utilization for xczu3eg-sbva484-1-e lists none)",
            "clock_mhz": "PS pl_clk0 at 100 MHz: Avnet board file "
            f"{_BOARDSTORE} boards/Avnet/ultra96v2/1.2/preset.xml "
            "(PSU__CRL_APB__PL0_REF_CTRL__ACT_FREQMHZ=99.999900); the board has no "
            "PL oscillator (no PL clock in the board file or in Avnet's master XDC)",
            "dram_gbps": "PS LPDDR4 32-bit at 1066 MT/s (4 B x 1066 MT/s = 4.264 GB/s): "
            f"{_BOARDSTORE} boards/Avnet/ultra96v2/1.2/preset.xml "
            "(PSU__DDRC__BUS_WIDTH=32 Bit, PSU__DDRC__SPEED_BIN=LPDDR4_1066, "
            "PSU__CRF_APB__DDR_CTRL__FREQMHZ=533)",
        },
    ),
    notes="No PL oscillator: the design clock is the PS's pl_clk0 (PS8 PLCLK[0]).",
)

_KV260 = Board(
    name="kv260",
    title="AMD Xilinx Kria KV260 Vision AI Starter Kit (K26 SOM)",
    vendor="xilinx",
    family="xcup",
    part="xck26-sfvc784-2LV-c",
    luts=117_120,
    ffs=234_240,
    dsps=1_248,
    bram36=144,
    bram_kbits=144 * 36,
    uram=64,
    clock_mhz=100.0,
    dram_gbps=_DDR4_2400_X64_GBPS,
    refs=_xilinx_refs(
        "DS987 (Kria K26 SOM) PL resources, equal to DS891 EV device-feature summary",
        "XCZU5EV",
        "xck26-sfvc784-2LV-c",
        {
            "uram": "DS987 / DS891 EV summary, XCZU5EV column: 64 UltraRAM blocks "
            "(18 Mb); Vivado report_utilization for xck26 lists URAM 64",
            "clock_mhz": "PS pl_clk0 at 100 MHz: "
            f"{_BOARDSTORE} boards/Xilinx/kv260_som/1.3/preset_s4.xml "
            "(PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ=100); no PL oscillator: the "
            "kv260_som/kv260_carrier board files list no clock source and "
            "litex-boards xilinx_kv260.py notes none is wired",
            "dram_gbps": "PS DDR4 64-bit at 2400 MT/s (8 B x 2400 MT/s = 19.2 GB/s): "
            "DS987 'Functional Overview' (4 GB 64-bit wide, 2400 Mb/s) and "
            f"{_BOARDSTORE} boards/Xilinx/kv260_som/1.3/preset_s4.xml "
            "(PSU__DDRC__SPEED_BIN=DDR4_2400R, PSU__CRF_APB__DDR_CTRL__FREQMHZ=1200)",
        },
    ),
    notes=(
        "The K26 SOM's XCK26 has the resources of the XCZU5EV. No PL oscillator: "
        "the design clock is the PS's pl_clk0 (PS8 PLCLK[0])."
    ),
)

_PYNQ_Z2 = Board(
    name="pynq-z2",
    title="TUL PYNQ-Z2 (Zynq-7000 XC7Z020)",
    vendor="xilinx",
    family="xc7",
    part="xc7z020clg400-1",
    luts=53_200,
    ffs=106_400,
    dsps=220,
    bram36=140,
    bram_kbits=140 * 36,
    uram=0,
    clock_mhz=125.0,
    dram_gbps=_DDR3_1050_X16_GBPS,
    refs=_xilinx_refs(
        "DS190 Zynq-7000 family table",
        "Z-7020",
        "xc7z020clg400-1 (Slice LUTs / Slice Registers / Block RAM Tile / DSPs)",
        {
            "uram": "DS190: 7-series devices have no UltraRAM",
            "clock_mhz": "125 MHz LVCMOS33 sys_clk on H16: "
            f"{_BOARDSTORE} boards/TUL/pynq-z2/A.0/board.xml (sys_clock "
            "frequency 125000000) and part0_pins.xml (sys_clk loc H16)",
            "dram_gbps": "PS DDR3 16-bit at 1050 MT/s (2 B x 1050 MT/s = 2.1 GB/s): "
            f"{_BOARDSTORE} boards/TUL/pynq-z2/A.0/preset.xml "
            "(PCW_UIPARAM_DDR_BUS_WIDTH=16 Bit, PCW_UIPARAM_DDR_FREQ_MHZ=525)",
        },
    ),
    notes="Design clock: on-board 125 MHz oscillator (H16).",
)

_ULX3S = Board(
    name="ulx3s",
    title="Radiona ULX3S (ECP5 LFE5U-85F)",
    vendor="lattice",
    family="ecp5",
    part="LFE5U-85F-6BG381C",
    luts=83_640,
    ffs=83_640,
    dsps=156,
    bram36=0,
    bram_kbits=208 * 18,
    uram=0,
    clock_mhz=25.0,
    dram_gbps=_SDR_166_X16_GBPS,
    extra={"ebr18k": 208},
    refs={
        "luts": "FPGA-DS-02012 Table 1.1, LFE5U-85 column: 84K LUTs (rounded); exact "
        "count 83,640 LUT4 from nextpnr-ecp5 (TRELLIS_COMB) and Lattice Diamond map "
        "report (LUTS_avail = 83640)",
        "ffs": "FPGA-DS-02012 section 2.2.1: two registers per slice, one per LUT4; "
        "nextpnr-ecp5 TRELLIS_FF = 83,640",
        "dsps": "FPGA-DS-02012 Table 1.1, LFE5U-85 column: 156 18x18 multipliers; "
        "nextpnr-ecp5 MULT18X18D = 156",
        "bram36": "ECP5 has no 36 Kb block RAM (its EBR are 18 Kb, see extra.ebr18k)",
        "bram_kbits": "FPGA-DS-02012 Table 1.1, LFE5U-85 column: 3744 Kb embedded "
        "memory (208 x 18 Kb)",
        "uram": "ECP5 has no UltraRAM",
        "extra.ebr18k": "FPGA-DS-02012 Table 1.1, LFE5U-85 column: 208 sysMEM blocks "
        "(18 Kb); nextpnr-ecp5 DP16KD = 208; Diamond EBR_avail = 208",
        "clock_mhz": "25 MHz LVCMOS33 oscillator on G2: amaranth_boards.ulx3s "
        "(clk25, Clock(25e6)); litex-boards radiona_ulx3s.py clk25 G2",
        "dram_gbps": "ASSUMPTION: 32 MB SDR SDRAM, 16-bit, at the 166 MHz of the "
        "ULX3S specification as quoted in public notes (2 B x 166 MHz = 0.332 GB/s); "
        "not checked against the primary radiona.org page; boards fitted with "
        "-7 parts (143 MHz) peak at 0.286 GB/s",
    },
    notes="Design clock: on-board 25 MHz oscillator (G2).",
)

_ICEBREAKER = Board(
    name="icebreaker",
    title="1BitSquared iCEBreaker (iCE40 UltraPlus UP5K)",
    vendor="lattice",
    family="ice40",
    part="iCE40UP5K-SG48",
    luts=5_280,
    ffs=5_280,
    dsps=8,
    bram36=0,
    bram_kbits=30 * 4,
    uram=0,
    clock_mhz=12.0,
    dram_gbps=0.0,
    extra={"ebr4k": 30, "spram256k": 4},
    refs={
        "luts": "FPGA-DS-02008 Table 1.1, iCE40UP5K column: 5280 logic cells "
        "(LUT4 + flip-flop); nextpnr-ice40 ICESTORM_LC = 5280",
        "ffs": "FPGA-DS-02008 Table 1.1: one flip-flop per logic cell (5280); "
        "nextpnr-ice40 ICESTORM_LC = 5280",
        "dsps": "FPGA-DS-02008 Table 1.1, iCE40UP5K column: 8 DSP blocks (SB_MAC16); "
        "nextpnr-ice40 ICESTORM_DSP = 8",
        "bram36": "iCE40 has no 36 Kb block RAM (its EBR are 4 Kb, see extra.ebr4k)",
        "bram_kbits": "FPGA-DS-02008 Table 1.1, iCE40UP5K column: 120 kbits of EBR "
        "(30 x 4 Kb); SPRAM counted separately in extra.spram256k",
        "uram": "iCE40 has no UltraRAM",
        "extra.ebr4k": "FPGA-DS-02008 Table 1.1, iCE40UP5K column: 30 EBR blocks; "
        "nextpnr-ice40 ICESTORM_RAM = 30",
        "extra.spram256k": "FPGA-DS-02008 Table 1.1, iCE40UP5K column: 4 SPRAM blocks "
        "(1 Mbit); nextpnr-ice40 ICESTORM_SPRAM = 4",
        "clock_mhz": "12 MHz oscillator on pin 35: amaranth_boards.icebreaker (clk12, "
        "Clock(12e6)); litex-boards 1bitsquared_icebreaker.py clk12 pin 35",
        "dram_gbps": "no DRAM on the iCEBreaker (only a SPI flash); 0 by definition",
    },
    notes="Design clock: on-board 12 MHz oscillator (pin 35). No DRAM.",
)

#: All known boards, keyed by :attr:`Board.name`.
BOARDS: Mapping[str, Board] = types.MappingProxyType(
    {
        board.name: board
        for board in (_ZCU102, _ZCU104, _ULTRA96_V2, _KV260, _PYNQ_Z2, _ULX3S, _ICEBREAKER)
    }
)


def board_names() -> tuple[str, ...]:
    """Return the known board names in sorted order.

    Returns
    -------
    tuple of str
        Sorted keys of :data:`BOARDS`.
    """
    return tuple(sorted(BOARDS))


def get_board(name: str) -> Board:
    """Look a board up by name.

    Parameters
    ----------
    name : str
        Board key; surrounding white space and case are ignored.

    Returns
    -------
    Board
        The registered board.

    Raises
    ------
    UnknownBoardError
        If no board of that name is registered; the message names the unknown
        board and lists the known ones.
    """
    key = name.strip().lower() if isinstance(name, str) else name
    try:
        return BOARDS[key]
    except (KeyError, TypeError):
        raise UnknownBoardError(
            f"unknown board {name!r}: choose one of {', '.join(board_names())}"
        ) from None

"""Tests of qsilicon.boards.platforms: platforms agree with the registry; plans are written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from amaranth.build import ResourceError
from amaranth.hdl import ClockDomain, Elaboratable, Module, Signal
from amaranth.lib import io
from amaranth.vendor import LatticeECP5Platform, LatticeICE40Platform, XilinxPlatform

from qsilicon.boards import (
    BOARDS,
    UnknownBoardError,
    build_plan,
    get_board,
    get_platform,
    platform_clock_hz,
    platform_part,
)
from qsilicon.boards.platforms import ZynqMPPSClockPlatform

XILINX = sorted(name for name, board in BOARDS.items() if board.vendor == "xilinx")
PS_CLOCKED = ["kv260", "ultra96-v2"]

# Verified pins (see the citations in qsilicon/boards/platforms.py).
CLOCK_PINS = {
    "zcu102": ("G21", "F21", "LVDS_25"),
    "zcu104": ("F23", "E23", "LVDS"),
    "pynq-z2": ("H16", None, "LVCMOS33"),
}
FIRST_LED = {
    "zcu102": ("AG14", "LVCMOS33"),
    "zcu104": ("D5", "LVCMOS33"),
    "ultra96-v2": ("A9", "LVCMOS18"),
    "pynq-z2": ("R14", "LVCMOS33"),
}
PLATFORM_FAMILY = {"xcup": "ultrascaleplus", "xc7": "series7"}


class Blinky(Elaboratable):
    """Counter in ``sync``; drives ``led`` 0 where the board has one."""

    def elaborate(self, platform):
        m = Module()
        counter = Signal(24)
        m.d.sync += counter.eq(counter + 1)
        try:
            platform.lookup("led", 0)
        except ResourceError:
            return m
        m.submodules.led = led = io.Buffer("o", platform.request("led", 0, dir="-"))
        m.d.comb += led.o.eq(counter[-1])
        return m


class OwnClock(Elaboratable):
    """Defines ``sync`` itself (from a bare signal), so no platform clock is needed."""

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = cd = ClockDomain("sync")
        clk = Signal()
        m.d.comb += cd.clk.eq(clk)
        counter = Signal(8)
        m.d.sync += counter.eq(counter + 1)
        return m


@pytest.fixture
def no_tools_on_path(monkeypatch, tmp_path):
    """Run with an empty PATH: no vivado, yosys or nextpnr can be found."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    for var in ("AMARANTH_USE_YOSYS", "AMARANTH_add_constraints"):
        monkeypatch.delenv(var, raising=False)


def _plan(board_name: str, tmp_path: Path, design=None) -> dict[str, str]:
    out = tmp_path / board_name
    files = build_plan(board_name, design if design is not None else Blinky(), out, name="top")
    assert files == sorted(files)
    assert all(path.is_absolute() and path.is_file() for path in files)
    assert {path.parent for path in files} == {out.resolve()}
    assert {p.name for p in files} == {p.name for p in out.iterdir()}
    return {path.name: path.read_text() for path in files}


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_platform_part_matches_registry(name):
    board = get_board(name)
    platform = get_platform(name)
    assert platform_part(platform) == board.part
    assert platform_clock_hz(platform) == pytest.approx(board.clock_mhz * 1e6)


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_platform_vendor_matches_registry(name):
    board = get_board(name)
    platform = get_platform(name)
    if board.vendor == "xilinx":
        assert isinstance(platform, XilinxPlatform)
        assert platform.family == PLATFORM_FAMILY[board.family]
        assert platform.toolchain == "Vivado"
    elif board.family == "ecp5":
        assert isinstance(platform, LatticeECP5Platform)
    else:
        assert isinstance(platform, LatticeICE40Platform)
    assert isinstance(platform, ZynqMPPSClockPlatform) == (name in PS_CLOCKED)


def test_get_platform_returns_fresh_instances():
    assert get_platform("zcu102") is not get_platform("ZCU102")


def test_unknown_board():
    with pytest.raises(UnknownBoardError, match="unknown board 'zcu100'"):
        get_platform("zcu100")
    with pytest.raises(UnknownBoardError):
        build_plan("nope", Blinky(), "unused")


@pytest.mark.parametrize("name", XILINX)
def test_xilinx_plan(name, tmp_path, no_tools_on_path):
    board = get_board(name)
    files = _plan(name, tmp_path)
    assert {"top.v", "top.xdc", "top.tcl", "build_top.sh"} <= set(files)
    assert re.search(r"^module top\(", files["top.v"], re.M)
    assert f"create_project -force -name top -part {board.part}\n" in files["top.tcl"]
    assert "synth_design -top top" in files["top.tcl"]
    assert "vivado" in files["build_top.sh"] and "-source top.tcl" in files["build_top.sh"]

    xdcs = {fname: text for fname, text in files.items() if fname.endswith(".xdc")}
    for fname in xdcs:
        assert re.search(rf"^read_xdc \"?{re.escape(fname)}\"?$", files["top.tcl"], re.M)
    clocks = [
        (fname, line)
        for fname, text in xdcs.items()
        for line in text.splitlines()
        if line.startswith("create_clock")
    ]
    assert len(clocks) == 1, clocks
    period = float(re.search(r"-period ([0-9.]+)", clocks[0][1]).group(1))
    assert period == pytest.approx(1000.0 / board.clock_mhz)

    if name in FIRST_LED:
        pin, standard = FIRST_LED[name]
        assert f'set_property LOC {pin} [get_ports "led_0__io"]' in files["top.xdc"]
        assert f'set_property IOSTANDARD "{standard}" [get_ports "led_0__io"]' in files["top.xdc"]


@pytest.mark.parametrize("name", sorted(CLOCK_PINS))
def test_oscillator_clock_pins(name, tmp_path, no_tools_on_path):
    pin_p, pin_n, standard = CLOCK_PINS[name]
    xdc = _plan(name, tmp_path)["top.xdc"]
    port = "clk125_0__p" if pin_n else "clk125_0__io"
    assert f'set_property LOC {pin_p} [get_ports "{port}"]' in xdc
    assert f'set_property IOSTANDARD "{standard}" [get_ports "{port}"]' in xdc
    if pin_n:
        assert f'set_property LOC {pin_n} [get_ports "clk125_0__n"]' in xdc
    assert f'create_clock -name {port} -period 8.0 [get_nets "{port}"]' in xdc


@pytest.mark.parametrize("name", PS_CLOCKED)
def test_ps_clocked_plan(name, tmp_path, no_tools_on_path):
    files = _plan(name, tmp_path)
    constraint = files[ZynqMPPSClockPlatform.PS_CLOCK_XDC]
    assert "create_clock -name pl_clk0 -period 10.000 [get_pins {cd_sync/ps8/PLCLK[0]}]" in (
        constraint
    )
    # The main XDC claims no clock pin: the PL has no oscillator.
    assert "clk" not in files["top.xdc"].replace("# (add_constraints placeholder)", "")
    verilog = files["top.v"]
    assert re.search(r"^\s*PS8 ps8 \(\s*\.PLCLK\(pl_clk\)", verilog, re.M)
    assert re.search(r"BUFG_PS #\(.*?\) pl_clk0_buf \(\s*\.I\(pl_clk\[0\]\)", verilog, re.S)
    assert re.search(r"\\top\.cd_sync\s+cd_sync \(", verilog)


@pytest.mark.parametrize("name", PS_CLOCKED)
def test_ps_clock_not_added_when_design_defines_sync(name, tmp_path, no_tools_on_path):
    files = _plan(name, tmp_path, OwnClock())
    assert ZynqMPPSClockPlatform.PS_CLOCK_XDC not in files
    assert "PS8" not in files["top.v"]


def test_ecp5_plan(tmp_path, no_tools_on_path):
    files = _plan("ulx3s", tmp_path)
    assert {"top.il", "top.ys", "top.lpf", "build_top.sh"} <= set(files)
    assert "synth_ecp5" in files["top.ys"] and "read_rtlil top.il" in files["top.ys"]
    nextpnr = next(line for line in files["build_top.sh"].splitlines() if 'NEXTPNR_ECP5"' in line)
    assert "--85k" in nextpnr and "--package CABGA381" in nextpnr and "--speed 6" in nextpnr
    assert "--lpf top.lpf" in nextpnr
    lpf = files["top.lpf"]
    assert 'LOCATE COMP "clk25_0__io" SITE "G2";' in lpf
    assert 'FREQUENCY PORT "clk25_0__io" 25000000.0 HZ;' in lpf
    assert 'LOCATE COMP "led_0__io" SITE "B2";' in lpf


def test_ice40_plan(tmp_path, no_tools_on_path):
    files = _plan("icebreaker", tmp_path)
    assert {"top.il", "top.ys", "top.pcf", "build_top.sh"} <= set(files)
    assert "synth_ice40" in files["top.ys"]
    nextpnr = next(line for line in files["build_top.sh"].splitlines() if 'NEXTPNR_ICE40"' in line)
    assert "--up5k" in nextpnr and "--package sg48" in nextpnr and "--pcf top.pcf" in nextpnr
    pcf = files["top.pcf"]
    assert "set_io clk12_0__io 35" in pcf
    assert "set_frequency clk12_0__io 12.0" in pcf
    assert "set_io led_0__io 11" in pcf

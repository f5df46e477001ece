"""A Zynq UltraScale+ system around an accelerator with an AXI4 memory master, an AXI4-Lite slave and
an interrupt: a Verilog wrapper with Vivado's interface names, a Tcl script that builds the block
design (processing system, SmartConnects, reset, clock), a C header and an address map.

The accelerator's memory port reaches the PS DDR through ``S_AXI_HP0_FPD`` (configured to the
port's width), its registers sit on ``M_AXI_HPM0_FPD`` at :data:`REG_BASE`, its interrupt drives
``pl_ps_irq0[0]`` and ``pl_clk0`` (set to the design clock) clocks everything.  The script is
written for Vivado 2022.1 or later and has not been run here (there is no Vivado on this
machine): it is the plan a user runs with ``vivado -mode batch -source build_system.tcl``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from .registry import Board

__all__ = ["REG_BASE", "REG_SPAN", "ps_system_plan"]

#: Where the PS sees the accelerator's registers (the first address of the HPM0 FPD window).
REG_BASE = 0xA000_0000
REG_SPAN = 0x1_0000
#: Vivado board part of each board (the PS presets: DDR, MIO, clocks).
_BOARD_PARTS = {
    "zcu102": "xilinx.com:zcu102:part0:3.4",
    "zcu104": "xilinx.com:zcu104:part0:1.1",
    "ultra96-v2": "avnet.com:ultra96v2:part0:1.2",
    "kv260": "xilinx.com:kv260_som:part0:1.3",
}


def _wrapper(top: str, ports: Sequence[tuple[str, str, int]], data_bits: int) -> str:
    """``<top>_wrapper``: the accelerator with ``s_axi_ctrl_*`` / ``m_axi_mem_*`` / ``ap_clk`` names
    and the ``X_INTERFACE`` attributes Vivado's module reference infers interfaces from."""
    lines = [f"// Vivado-facing wrapper of {top} (written by qsilicon): AXI4-Lite s_axi_ctrl, AXI4 m_axi_mem.",
             f"module {top}_wrapper ("]
    decls, conns = [], []
    rename = {"clk": "ap_clk", "rst": "ap_rst", "irq": "interrupt"}
    for name, direction, width in ports:
        if name.startswith("s_axil__"):
            new = "s_axi_ctrl_" + name[len("s_axil__"):]
        elif name.startswith("m_axi__"):
            new = "m_axi_mem_" + name[len("m_axi__"):]
        else:
            new = rename.get(name, name)
        rng = f"[{width - 1}:0] " if width > 1 else ""
        attr = ""
        if new == "ap_clk":
            attr = ('(* X_INTERFACE_INFO = "xilinx.com:signal:clock:1.0 ap_clk CLK", X_INTERFACE_PARAMETER = '
                    '"ASSOCIATED_BUSIF s_axi_ctrl:m_axi_mem, ASSOCIATED_RESET ap_rst" *) ')
        elif new == "ap_rst":
            attr = ('(* X_INTERFACE_INFO = "xilinx.com:signal:reset:1.0 ap_rst RST", X_INTERFACE_PARAMETER = '
                    '"POLARITY ACTIVE_HIGH" *) ')
        elif new == "interrupt":
            attr = ('(* X_INTERFACE_INFO = "xilinx.com:signal:interrupt:1.0 interrupt INTERRUPT", '
                    'X_INTERFACE_PARAMETER = "SENSITIVITY LEVEL_HIGH" *) ')
        decls.append(f"    {attr}{direction} {rng}{new}")
        conns.append(f"        .{name}({new})")
    lines.append(",\n".join(decls))
    lines.append(");")
    lines.append(f"    {top} core (")
    lines.append(",\n".join(conns))
    lines.append("    );")
    lines.append("endmodule")
    return "\n".join(lines) + "\n"


def _tcl(board: Board, top: str, data_bits: int, clock_mhz: float, sources: Sequence[str]) -> str:
    part = board.part
    bp = _BOARD_PARTS.get(board.name)
    preset = ('apply_bd_automation -rule xilinx.com:bd_rule:zynq_ultra_ps_e -config {apply_board_preset "1"} '
              '[get_bd_cells zynq_ps]') if bp else ""
    return f"""# Vivado block design of {top} on the {board.name} ({part}), written by qsilicon.
# Run: vivado -mode batch -source build_system.tcl   (Vivado 2022.1 or later; not run by qsilicon)
set origin [file dirname [file normalize [info script]]]
create_project qsilicon_{top} $origin/vivado -part {part} -force
{f'set_property board_part {bp} [current_project]' if bp else '# no board part known: the PS keeps its defaults'}
add_files -norecurse [list {' '.join(f'$origin/{s}' for s in sources)}]
update_compile_order -fileset sources_1
create_bd_design system

# processing system: board preset, HPM0 FPD master (registers), HP0 FPD slave (memory), IRQ0, pl_clk0
create_bd_cell -type ip -vlnv xilinx.com:ip:zynq_ultra_ps_e zynq_ps
{preset}
set_property -dict [list \\
    CONFIG.PSU__USE__M_AXI_GP0 {{1}} CONFIG.PSU__USE__M_AXI_GP1 {{0}} CONFIG.PSU__USE__M_AXI_GP2 {{0}} \\
    CONFIG.PSU__USE__S_AXI_GP2 {{1}} CONFIG.PSU__SAXIGP2__DATA_WIDTH {{{data_bits}}} \\
    CONFIG.PSU__USE__IRQ0 {{1}} CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ {{{clock_mhz:g}}}] [get_bd_cells zynq_ps]

create_bd_cell -type module -reference {top}_wrapper accel
create_bd_cell -type ip -vlnv xilinx.com:ip:proc_sys_reset rst_pl
create_bd_cell -type ip -vlnv xilinx.com:ip:smartconnect smc_ctrl
set_property -dict [list CONFIG.NUM_SI {{1}} CONFIG.NUM_MI {{1}}] [get_bd_cells smc_ctrl]
create_bd_cell -type ip -vlnv xilinx.com:ip:smartconnect smc_mem
set_property -dict [list CONFIG.NUM_SI {{1}} CONFIG.NUM_MI {{1}}] [get_bd_cells smc_mem]

# clock and reset
set clk [get_bd_pins zynq_ps/pl_clk0]
foreach p {{accel/ap_clk smc_ctrl/aclk smc_mem/aclk rst_pl/slowest_sync_clk zynq_ps/maxihpm0_fpd_aclk \\
           zynq_ps/saxihp0_fpd_aclk}} {{ connect_bd_net $clk [get_bd_pins $p] }}
connect_bd_net [get_bd_pins zynq_ps/pl_resetn0] [get_bd_pins rst_pl/ext_reset_in]
connect_bd_net [get_bd_pins rst_pl/peripheral_reset] [get_bd_pins accel/ap_rst]
connect_bd_net [get_bd_pins rst_pl/interconnect_aresetn] [get_bd_pins smc_ctrl/aresetn] [get_bd_pins smc_mem/aresetn]

# buses and the interrupt
connect_bd_intf_net [get_bd_intf_pins zynq_ps/M_AXI_HPM0_FPD] [get_bd_intf_pins smc_ctrl/S00_AXI]
connect_bd_intf_net [get_bd_intf_pins smc_ctrl/M00_AXI] [get_bd_intf_pins accel/s_axi_ctrl]
connect_bd_intf_net [get_bd_intf_pins accel/m_axi_mem] [get_bd_intf_pins smc_mem/S00_AXI]
connect_bd_intf_net [get_bd_intf_pins smc_mem/M00_AXI] [get_bd_intf_pins zynq_ps/S_AXI_HP0_FPD]
connect_bd_net [get_bd_pins accel/interrupt] [get_bd_pins zynq_ps/pl_ps_irq0]

# addresses: the registers at {REG_BASE:#x} ({REG_SPAN // 1024} KiB), the accelerator sees all of DDR
assign_bd_address
set_property offset {REG_BASE:#x} [get_bd_addr_segs {{zynq_ps/Data/SEG_accel_reg0}}]
set_property range {REG_SPAN // 1024}K [get_bd_addr_segs {{zynq_ps/Data/SEG_accel_reg0}}]
validate_bd_design
save_bd_design

make_wrapper -files [get_files $origin/vivado/qsilicon_{top}.srcs/sources_1/bd/system/system.bd] -top
add_files -norecurse $origin/vivado/qsilicon_{top}.gen/sources_1/bd/system/hdl/system_wrapper.v
set_property top system_wrapper [current_fileset]
launch_runs impl_1 -to_step write_bitstream -jobs 4
wait_on_run impl_1
write_hw_platform -fixed -include_bit -force $origin/qsilicon_{top}.xsa
"""


def _header(top: str, regs: Mapping[str, int], causes: Mapping[str, int], params: Mapping[str, int]) -> str:
    guard = re.sub(r"\W", "_", top).upper()
    out = [f"/* {top}: register map for the PS side (written by qsilicon). */", f"#ifndef {guard}_REGS_H",
           f"#define {guard}_REGS_H", "", f"#define {guard}_BASE 0x{REG_BASE:08X}u", ""]
    out += [f"#define {guard}_{name} 0x{off:02X}u" for name, off in regs.items()]
    out += ["", f"#define {guard}_STATUS_BUSY (1u << 0)", f"#define {guard}_STATUS_DONE (1u << 1)",
            f"#define {guard}_STATUS_ERROR (1u << 2)", f"#define {guard}_STATUS_CAUSE(s) (((s) >> 8) & 0xFu)", ""]
    out += [f"#define {guard}_CAUSE_{name.upper()} {v}u" for name, v in causes.items()]
    out += [""] + [f"#define {guard}_{name.upper()} {v}u" for name, v in params.items()]
    out += ["", f"#endif /* {guard}_REGS_H */", ""]
    return "\n".join(out)


def ps_system_plan(board: Board, top: str, verilog: str, ports: Sequence[tuple[str, str, int]], *, data_bits: int,
                   clock_mhz: float, regs: Mapping[str, int], causes: Mapping[str, int],
                   params: Mapping[str, int], out_dir: Path) -> list[Path]:
    """Write the system plan of ``top`` (its ``verilog``; ``ports``: ``(name, input|output, bits)``)
    for ``board`` into ``out_dir``; returns the files written.  Only Zynq UltraScale+ boards have
    the processing system this plan instantiates."""
    if board.family != "xcup":
        raise ValueError(f"board {board.name} has no Zynq UltraScale+ processing system ({board.family}): the "
                         "system plan is for zcu102, zcu104, ultra96-v2 and kv260")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        f"{top}.v": verilog,
        f"{top}_wrapper.v": _wrapper(top, ports, data_bits),
        "build_system.tcl": _tcl(board, top, data_bits, clock_mhz, [f"{top}.v", f"{top}_wrapper.v"]),
        f"{top}_regs.h": _header(top, regs, causes, params),
        "address_map.json": json.dumps({
            "board": board.name, "part": board.part, "registers": {"base": REG_BASE, "span": REG_SPAN,
                                                                     "offsets": dict(regs)},
            "memory_port": {"ps_slave": "S_AXI_HP0_FPD", "data_bits": data_bits, "addresses": "PS DDR, physical"},
            "interrupt": "pl_ps_irq0[0], level high", "clock": {"source": "pl_clk0", "mhz": clock_mhz},
            "causes": dict(causes), "parameters": dict(params)}, indent=2) + "\n",
    }
    written = []
    for name, text in files.items():
        (out_dir / name).write_text(text)
        written.append(out_dir / name)
    return written

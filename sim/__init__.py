"""Simulation: cocotb testbenches, the runner glue for Icarus and Verilator, Amaranth-sim helpers."""

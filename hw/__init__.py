"""Amaranth generators (blocks and products) and their host-side drivers.

Import :mod:`qsilicon.hw.config` alone where Amaranth must not be loaded.
"""

"""Latency model of the GEMM engine (pure Python, for the search).

Compute cycles follow the engine's pipeline exactly when its streams run at full rate: a tile is
K operand beats; its sums enter the drain buffer as its last beat is accumulated, and the next
tile's last beat must wait until the buffer has shifted out its ``rows`` rows, so tiles issue
every ``max(K, rows + 1)`` cycles.  The last tile adds the operand and product registers (2),
its drain (``rows``) and the requantizer (``requant_stages``: 3 by default, 4 or 5)::

    cycles = (tiles - 1) * max(K, rows + 1) + K + rows + 2 + requant_stages

counted from the first operand beat accepted to the last output row delivered, as the cocotb
testbench counts.  A row-wise mixed layer is tiled per precision group, so its tile count is
``ceil(M/rows) * (ceil(n8/cols) + ceil(n4/cols))``.

On a board, the streams come from external memory; :func:`gemm_latency` bounds the time by the
traffic each tile streams (its X rows and W columns for every reduction step, its parameters,
its outputs) at the board's DRAM bandwidth, and reports whichever of compute and memory is
slower.  That memory term is a model of a system around the engine, not of the RTL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from qsilicon.boards import Board
from qsilicon.hw.config import GemmConfig

__all__ = ["GemmLatency", "gemm_cycles", "gemm_latency", "gemm_tiles"]

#: Operand and product registers before accumulation (the requantizer's stages follow the drain:
#: ``GemmConfig.requant_stages``).
PIPELINE_IN = 2
#: Bits of one column's requantization parameters (bias 32, M0 16, shift 6, zero point <= 8).
PARAM_BITS_PER_COL = 32 + 16 + 6 + 8


def _check(m: int, k: int, n: int) -> None:
    for what, v in (("M", m), ("K", k), ("N", n)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{what} must be a positive integer, not {v!r}")


def gemm_tiles(cfg: GemmConfig, m: int, n: int, n8: int | None = None) -> tuple[int, int]:
    """``(int8-weight tiles, int4-weight tiles)``; ``n8`` int8 rows for a mixed layer."""
    mt = math.ceil(m / cfg.rows)
    if not cfg.mixed:
        return mt * math.ceil(n / cfg.cols), 0
    if n8 is None or not 0 <= n8 <= n:
        raise ValueError(f"A mixed layer needs the number of int8 rows from 0 to N={n}, not {n8!r}")
    return mt * math.ceil(n8 / cfg.cols), mt * math.ceil((n - n8) / cfg.cols)


def gemm_cycles(cfg: GemmConfig, m: int, k: int, n: int, n8: int | None = None) -> int:
    """Engine cycles for ``Y[M,N] = X[M,K] W[N,K]^T`` with streams at full rate."""
    _check(m, k, n)
    tiles = sum(gemm_tiles(cfg, m, n, n8))
    return (tiles - 1) * max(k, cfg.rows + 1) + k + cfg.rows + PIPELINE_IN + cfg.requant_stages


@dataclass(frozen=True)
class GemmLatency:
    """Time of one GEMM layer on a board.

    Members
    -------
    compute_cycles : int
        :func:`gemm_cycles`.
    traffic_bytes : int
        External-memory bytes streamed (operands per tile, parameters, outputs).
    memory_cycles : int
        ``traffic_bytes`` at the board's DRAM bandwidth, in clock cycles.
    seconds : float
        ``max(compute, memory)`` cycles at the clock.
    bound : str
        ``"compute"`` or ``"memory"``.
    """

    compute_cycles: int
    traffic_bytes: int
    memory_cycles: int
    seconds: float
    bound: str


def gemm_latency(cfg: GemmConfig, board: Board, m: int, k: int, n: int, *, n8: int | None = None,
                 clock_mhz: float | None = None) -> GemmLatency:
    """Layer time on ``board`` at ``clock_mhz`` (default: the board's clock)."""
    f = (clock_mhz or board.clock_mhz) * 1e6
    if f <= 0:
        raise ValueError(f"Clock must be positive, not {clock_mhz!r} MHz")
    _check(m, k, n)
    t8, t4 = gemm_tiles(cfg, m, n, n8)
    a_bits = cfg.rows * cfg.abits * k
    w8_bits = cfg.cols * cfg.wbits * k
    w4_bits = cfg.cols * 4 * k
    per_tile_fixed = cfg.cols * PARAM_BITS_PER_COL + cfg.rows * cfg.cols * cfg.abits
    bits = t8 * (a_bits + w8_bits + per_tile_fixed) + t4 * (a_bits + w4_bits + per_tile_fixed)
    traffic = math.ceil(bits / 8)
    compute = gemm_cycles(cfg, m, k, n, n8)
    # A board without external memory (dram_gbps 0) keeps everything on chip.
    memory = math.ceil(traffic / (board.dram_gbps * 1e9) * f) if board.dram_gbps > 0 else 0
    cycles = max(compute, memory)
    return GemmLatency(compute, traffic, memory, cycles / f, "memory" if memory > compute else "compute")

"""Host-side schedule of the GEMM engine: tiles, padding, beat packing and result assembly.

A problem ``Y[M, N] = requant(X[M, K] W[N, K]^T + bias')`` is cut into output tiles of
``rows x cols``; tiles are issued with N outermost (``for n0: for m0:``), so a weight block
is reused by consecutive tiles.  Partial tiles are zero padded: padded X rows and W rows only
produce outputs that are discarded, so the padding value does not matter for correctness.
K is not tiled: a tile is a stream of K beats, the accumulators hold any K up to the int32
limit that the reference enforces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from qsilicon.quant import GemmCase

from ..blocks import requant_params_layout, result_row_layout
from ..config import GemmConfig
from ..payload import pack, unpack
from .engine import _a_shape, act_layout, wgt_layout

__all__ = ["GemmSchedule", "schedule_gemm"]


@dataclass(frozen=True)
class GemmSchedule:
    """The packed beats for one problem on one engine configuration.

    Members
    -------
    act, wgt : list[int]
        Operand beats, ``tiles * K`` each.
    par : list[int]
        One parameter beat per tile.
    tiles : list[tuple[int, int]]
        ``(m0, n0)`` origin of each tile, in issue order.
    """

    config: GemmConfig
    shape: tuple[int, int, int]
    act: list[int]
    wgt: list[int]
    par: list[int]
    tiles: list[tuple[int, int]]

    @property
    def out_beats(self) -> int:
        """Number of ``o_res`` beats the engine will produce."""
        return len(self.tiles) * self.config.rows

    @property
    def ideal_cycles(self) -> int:
        """Cycles if every PE did useful work in every cycle: ``M*N*K / (rows*cols)``, rounded up."""
        m, k, n = self.shape
        return math.ceil(m * n * k / (self.config.rows * self.config.cols))

    def utilization(self, cycles: int) -> float:
        """``M*N*K / (rows * cols * cycles)``."""
        m, k, n = self.shape
        return m * n * k / (self.config.rows * self.config.cols * cycles)

    def assemble(self, out_beats: list[int]) -> torch.Tensor:
        """Place the engine's ``o_res`` beats into the ``[M, N]`` result (``int32``)."""
        cfg = self.config
        if len(out_beats) != self.out_beats:
            raise ValueError(f"Expected {self.out_beats} output beats, got {len(out_beats)}")
        m, _, n = self.shape
        layout = result_row_layout(cfg.cols, _a_shape(cfg))
        y = torch.zeros((m, n), dtype=torch.int32)
        for t, (m0, n0) in enumerate(self.tiles):
            for r in range(cfg.rows):
                beat = unpack(layout, out_beats[t * cfg.rows + r])
                if beat["last"] != (r == cfg.rows - 1):
                    raise ValueError(f"Tile {t} row {r}: 'last' flag is {beat['last']}")
                if m0 + r >= m:
                    continue
                cols = min(cfg.cols, n - n0)
                y[m0 + r, n0 : n0 + cols] = torch.tensor(beat["data"][:cols], dtype=torch.int32)
        return y


def _check_case(case: GemmCase, cfg: GemmConfig) -> None:
    if case.w_fmt.bits > cfg.wbits or not case.w_fmt.signed:
        raise ValueError(f"Case weights are {case.w_fmt.name}; the engine takes int{cfg.wbits}")
    if (case.a_fmt.bits, case.a_fmt.signed) != (cfg.abits, cfg.a_signed):
        raise ValueError(f"Case activations are {case.a_fmt.name}; the engine takes "
                         f"{'int' if cfg.a_signed else 'uint'}{cfg.abits}")
    if case.out_fmt != case.a_fmt:
        raise ValueError(f"Case outputs are {case.out_fmt.name}; the engine writes {case.a_fmt.name}")


def schedule_gemm(case: GemmCase, cfg: GemmConfig) -> GemmSchedule:
    """Tile ``case`` for ``cfg`` and pack every beat the engine needs."""
    _check_case(case, cfg)
    m, k, n = case.shape
    R, C = cfg.rows, cfg.cols
    x = case.x.tolist()
    w = case.w.tolist()
    bias, m0s, shifts, zps = (t.tolist() for t in (case.bias, case.m0, case.shift, case.zero_point))
    a_lay, w_lay = act_layout(cfg), wgt_layout(cfg)
    p_lay = requant_params_layout(C, _a_shape(cfg))
    act, wgt, par, tiles = [], [], [], []
    for n0 in range(0, n, C):
        wcols = [w[n0 + c] if n0 + c < n else [0] * k for c in range(C)]
        wbeats = [pack(w_lay, [wcols[c][kk] for c in range(C)]) for kk in range(k)]
        pbeat = pack(p_lay, [
            {"bias": bias[n0 + c], "m0": m0s[n0 + c], "shift": shifts[n0 + c], "zp": zps[n0 + c]}
            if n0 + c < n else {"bias": 0, "m0": 0, "shift": 0, "zp": 0}
            for c in range(C)
        ])
        for mt in range(0, m, R):
            xrows = [x[mt + r] if mt + r < m else [0] * k for r in range(R)]
            act.extend(pack(a_lay, {"data": [xrows[r][kk] for r in range(R)], "last": int(kk == k - 1)})
                       for kk in range(k))
            wgt.extend(wbeats)
            par.append(pbeat)
            tiles.append((mt, n0))
    return GemmSchedule(cfg, (m, k, n), act, wgt, par, tiles)

"""Host-side schedule of the GEMM engine: tiles, padding, beat packing and result assembly.

A problem ``Y[M, N] = requant(X[M, K] W[N, K]^T + bias')`` is cut into output tiles of
``rows x cols``; tiles are issued with N outermost (``for n0: for m0:``), so a weight block
is reused by consecutive tiles.  A row-wise mixed-precision layer is first grouped by precision
(int8 rows, then int4 rows; :func:`qsilicon.quant.group_rows`) and each group is tiled on its
own, so no tile mixes precisions; int4 tiles carry their weights in half the bits.
Partial tiles are zero padded: padded X rows and W rows only
produce outputs that are discarded, so the padding value does not matter for correctness.
K is not tiled: a tile is a stream of K beats, the accumulators hold any K up to the int32
limit that the reference enforces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from amaranth import signed

from qsilicon.quant import GemmCase, group_rows

from ..blocks import requant_params_layout, result_row_layout
from ..config import GemmConfig
from ..payload import pack, unpack
from .engine import _a_shape, act_layout, wgt_layout

__all__ = ["GemmSchedule", "Tile", "schedule_gemm"]


@dataclass(frozen=True)
class Tile:
    """Rows ``m0 .. m0 + rows - 1`` of X against the output channels ``channels`` (original
    indices; ``-1`` for padding columns); ``w4`` for an int4 tile of a mixed-precision layer."""

    m0: int
    channels: tuple[int, ...]
    w4: bool = False


@dataclass(frozen=True)
class GemmSchedule:
    """The packed beats for one problem on one engine configuration.

    Members
    -------
    act, wgt : list[int]
        Operand beats, ``K`` per tile (``ceil(K / 2)`` per int4 tile of a ``dot2`` engine).
    par : list[int]
        One parameter beat per tile.
    tiles : list[Tile]
        Each tile's first row and its output channels, in issue order.
    """

    config: GemmConfig
    shape: tuple[int, int, int]
    act: list[int]
    wgt: list[int]
    par: list[int]
    tiles: list[Tile]

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
        for t, tile in enumerate(self.tiles):
            for r in range(cfg.rows):
                beat = unpack(layout, out_beats[t * cfg.rows + r])
                if beat["last"] != (r == cfg.rows - 1):
                    raise ValueError(f"Tile {t} row {r}: 'last' flag is {beat['last']}")
                if tile.m0 + r >= m:
                    continue
                for c, ch in enumerate(tile.channels):
                    if ch >= 0:
                        y[tile.m0 + r, ch] = beat["data"][c]
        return y


def _check_case(case: GemmCase, cfg: GemmConfig) -> None:
    if case.row_bits is not None and not cfg.mixed:
        raise ValueError("Case has mixed-precision rows; the engine is not mixed (use a mixed config)")
    if cfg.mixed and case.row_bits is None:
        raise ValueError("The engine is mixed-precision; the case has no row bits (give it a ratio of 8-bit rows)")
    if case.w_fmt.bits > cfg.wbits or not case.w_fmt.signed:
        raise ValueError(f"Case weights are {case.w_fmt.name}; the engine takes int{cfg.wbits}")
    if (case.a_fmt.bits, case.a_fmt.signed) != (cfg.abits, cfg.a_signed):
        raise ValueError(f"Case activations are {case.a_fmt.name}; the engine takes "
                         f"{'int' if cfg.a_signed else 'uint'}{cfg.abits}")
    if case.out_fmt != case.a_fmt:
        raise ValueError(f"Case outputs are {case.out_fmt.name}; the engine writes {case.a_fmt.name}")


def _channel_groups(case: GemmCase) -> list[tuple[list[int], bool]]:
    """Output channels per precision group, in issue order, and whether the group is int4."""
    n = case.shape[2]
    if case.row_bits is None:
        return [(list(range(n)), False)]
    g = group_rows(case.row_bits)
    perm = g.perm.tolist()
    return [(grp, w4) for grp, w4 in ((perm[: g.n8], False), (perm[g.n8 :], True)) if grp]


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
    for channels, w4 in _channel_groups(case):
        for n0 in range(0, len(channels), C):
            chans = tuple(channels[n0 + c] if n0 + c < len(channels) else -1 for c in range(C))
            wcols = [w[ch] if ch >= 0 else [0] * k for ch in chans]
            step = cfg.steps_per_beat4 if w4 else 1
            steps = range(0, k, step)  # a dot2 int4 beat: steps kk and kk + 1 (zero weights past K)
            wbeats = [_weight_beat(w_lay, cfg, [wcols[c][kk + i] if kk + i < k else 0
                                                for i in range(step) for c in range(C)], w4) for kk in steps]
            pbeat = pack(p_lay, [
                {"bias": bias[ch], "m0": m0s[ch], "shift": shifts[ch], "zp": zps[ch]}
                if ch >= 0 else {"bias": 0, "m0": 0, "shift": 0, "zp": 0}
                for ch in chans
            ])
            for mt in range(0, m, R):
                xrows = [x[mt + r] if mt + r < m else [0] * k for r in range(R)]
                for kk in steps:
                    beat = {"data": [xrows[r][kk] for r in range(R)], "last": int(kk + step >= k)}
                    if cfg.packing == "dot2":
                        beat["data1"] = [xrows[r][kk + 1] if step == 2 and kk + 1 < k else 0 for r in range(R)]
                    act.append(pack(a_lay, beat))
                wgt.extend(wbeats)
                par.append(pbeat)
                tiles.append(Tile(mt, chans, w4))
    return GemmSchedule(cfg, (m, k, n), act, wgt, par, tiles)


def _weight_beat(layout, cfg: GemmConfig, values: list[int], w4: bool) -> int:
    if not cfg.mixed:
        return pack(layout, values)
    width = 4 if w4 else 8
    raw = 0
    for c, v in enumerate(values):
        raw |= pack(signed(width), v) << (width * c)
    return pack(layout, {"data": raw, "w4": int(w4)})

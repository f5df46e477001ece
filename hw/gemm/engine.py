"""The GEMM engine: activation and weight streams in, requantized output rows out."""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Shape, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out, connect

from ..blocks import MacArray, Requantizer, requant_params_layout, result_row_layout
from ..config import GemmConfig

__all__ = ["GemmEngine", "act_layout", "wgt_layout"]


def act_layout(cfg: GemmConfig) -> data.StructLayout:
    """An activation beat: one reduction step ``k`` for ``rows`` output rows; ``last`` ends a tile.
    ``dot2`` engines add ``data1``, step ``k + 1`` (read on int4 tiles, whose beats cover two steps)."""
    fields = {"data": data.ArrayLayout(_a_shape(cfg), cfg.rows), "last": 1}
    if cfg.packing == "dot2":
        fields["data1"] = data.ArrayLayout(_a_shape(cfg), cfg.rows)
    return data.StructLayout(fields)


def wgt_layout(cfg: GemmConfig) -> data.Layout:
    """A weight beat: one reduction step ``k`` for ``cols`` output channels.  For a mixed-precision
    engine, ``w4`` marks an int4 tile whose ``cols`` weights are packed in the low ``4 * cols``
    bits of ``data`` (``dot2``: step ``k`` there and step ``k + 1`` in the high ``4 * cols`` bits);
    otherwise ``data`` holds ``cols`` int8 weights."""
    if cfg.mixed:
        return data.StructLayout({"data": unsigned(8 * cfg.cols), "w4": 1})
    return data.ArrayLayout(signed(cfg.wbits), cfg.cols)


def _a_shape(cfg: GemmConfig) -> Shape:
    return signed(cfg.abits) if cfg.a_signed else unsigned(cfg.abits)


class GemmEngine(wiring.Component):
    """Integer GEMM ``Y = requant(X W^T + bias')`` on an ``rows x cols`` MAC array.

    The engine computes one output tile (``rows`` activation rows x ``cols`` weight rows) per
    reduction: the host sends K beats on ``i_act`` and ``i_wgt`` (the ``k``-th column of the
    tile's X rows and W rows; ``last`` on the K-th), one beat of per-channel parameters on
    ``i_par``, and receives ``rows`` beats on ``o_res``.  Any M, K, N is handled by the host
    schedule in :mod:`qsilicon.hw.gemm.driver` (zero padding of partial tiles; K is not tiled,
    it is the stream length; a ``dot2`` engine's int4 tiles take ``ceil(K / 2)`` beats of two
    steps).  The array's drain overlaps the next tile's reduction, so for
    K > rows the operand streams never wait (K = rows costs one bubble per tile, smaller K is
    drain-bound).

    Parameters
    ----------
    config : GemmConfig
    out_shape : ShapeLike, optional
        The requantizer's output format (saturation bounds); default the activation format.

    Members
    -------
    i_act : In(stream.Signature(act_layout(config)))
    i_wgt : In(stream.Signature(wgt_layout(config)))
    i_par : In(stream.Signature(requant_params_layout(cols, out_shape)))
    o_res : Out(stream.Signature(result_row_layout(cols, out_shape)))
    """

    def __init__(self, config: GemmConfig, out_shape=None) -> None:
        if not isinstance(config, GemmConfig):
            raise TypeError(f"Config must be a GemmConfig, not {config!r}")
        self._config = config
        osh = _a_shape(config) if out_shape is None else Shape.cast(out_shape)
        self._out_shape = osh
        super().__init__({
            "i_act": In(stream.Signature(act_layout(config))),
            "i_wgt": In(stream.Signature(wgt_layout(config))),
            "i_par": In(stream.Signature(requant_params_layout(config.cols, osh))),
            "o_res": Out(stream.Signature(result_row_layout(config.cols, osh))),
        })

    @property
    def config(self) -> GemmConfig:
        return self._config

    def _weights(self, array):
        cfg, w = self._config, self.i_wgt.payload
        if not cfg.mixed:
            return [array.i_op.payload.w.eq(w)]
        if cfg.packing == "dot2":  # int4 tiles: column c's byte is its step-k nibble and its step-k+1 nibble
            C = cfg.cols
            return [array.i_op.payload.dot.eq(w.w4), array.i_op.payload.a1.eq(self.i_act.payload.data1),
                    *(array.i_op.payload.w[c].eq(Mux(w.w4, Cat(w.data[4 * c : 4 * c + 4],
                                                               w.data[4 * (C + c) : 4 * (C + c) + 4]),
                                                     w.data[8 * c : 8 * c + 8]).as_signed())
                      for c in range(C))]
        # int4 tiles: lane c takes bits [4c, 4c+4) sign-extended; int8 tiles: bits [8c, 8c+8).
        return [array.i_op.payload.w[c].eq(Mux(w.w4, w.data[4 * c : 4 * c + 4].as_signed(),
                                               w.data[8 * c : 8 * c + 8].as_signed()))
                for c in range(cfg.cols)]

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        m.submodules.array = array = MacArray(cfg.rows, cfg.cols, _a_shape(cfg), signed(cfg.wbits), cfg.packing)
        m.submodules.requant = requant = Requantizer(cfg.cols, self._out_shape, cfg.requant_stages)

        # Join the two operand streams: a beat moves when both are present.
        m.d.comb += [
            array.i_op.valid.eq(self.i_act.valid & self.i_wgt.valid),
            array.i_op.payload.a.eq(self.i_act.payload.data),
            array.i_op.payload.last.eq(self.i_act.payload.last),
            *self._weights(array),
            self.i_act.ready.eq(array.i_op.ready & self.i_wgt.valid),
            self.i_wgt.ready.eq(array.i_op.ready & self.i_act.valid),
        ]
        connect(m, array.o_acc, requant.i_acc)
        connect(m, wiring.flipped(self.i_par), requant.i_par)
        connect(m, requant.o_res, wiring.flipped(self.o_res))
        return m

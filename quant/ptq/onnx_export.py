"""An integer conv graph (:class:`~qsilicon.quant.ptq.export.IntGraph`) as a standard ONNX model, so
that other tools can run and check it.

Integer initializers and integer operators only: ``ConvInteger`` (uint8 activations, int8 weights,
zero points 0) for every convolution, the int32 bias added in int64, the requantizer
``clamp(round_half_up(acc * M0 / 2**shift))`` as ``Mul``, ``Add``, ``Mod``/``Div`` by powers of two
(exact floor division) and ``Max``/``Min``; polished 4-bit tensors decode through their per-channel
tables (``Gather``) and encode by counting thresholds (``GreaterOrEqual``, ``ReduceSum``); nearest
2x upsampling is ``Unsqueeze``/``Expand``/``Reshape``, skips are ``Concat``.  The input is the
image's 8-bit codes ``[N, C, H, W]`` (uint8, ``round(x * 255)``), the output the last tensor's
stored codes (int16 for a depth output, uint8 for an activation); every stored tensor's scale is
in the model's metadata.  :func:`onnx.reference.ReferenceEvaluator` runs it bit-exactly against
:meth:`IntGraph.forward` (the tests check that).
"""

from __future__ import annotations

import json

import numpy as np

from .export import IntGraph
from .graph import INPUT

__all__ = ["OPSET", "graph_to_onnx"]

OPSET = 17


def graph_to_onnx(ig: IntGraph, height: int, width: int, *, name: str = "qsilicon_int_graph"):
    """The ONNX ``ModelProto`` of ``ig`` for inputs of ``height x width`` (checked by
    :func:`onnx.checker.check_model`)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    count = [0]

    def uniq(base: str) -> str:
        count[0] += 1
        return f"{base}_{count[0]}"

    def const(base: str, arr: np.ndarray) -> str:
        n = uniq(base)
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), n))
        return n

    def op(kind: str, inputs: list[str], base: str, **attrs) -> str:
        out = uniq(base)
        nodes.append(helper.make_node(kind, inputs, [out], name=out, **attrs))
        return out

    def chan(v, dtype) -> np.ndarray:  # per-channel values broadcast over [N, C, H, W]
        return np.asarray(v, dtype=dtype).reshape(1, -1, 1, 1)

    env = {INPUT: ("img_codes", height, width)}
    for n in ig.nodes:
        parts = []
        for t, up in n.inputs:
            v, h, w = env[t]
            kind = ig.tensors[t]
            if kind.kind == "polished":  # codes -> fine values through each channel's table
                tab = kind.table.numpy().astype(np.int64)
                c = tab.shape[0]
                idx = op("Add", [op("Cast", [v], f"{t}_i64", to=TensorProto.INT64),
                                 const(f"{t}_rowbase", chan(np.arange(c) * tab.shape[1], np.int64))], f"{t}_idx")
                v = op("Cast", [op("Gather", [const(f"{t}_table", tab.reshape(-1)), idx], f"{t}_fine", axis=0)],
                       f"{t}_fine_u8", to=TensorProto.UINT8)
            if up:
                u = op("Unsqueeze", [v, const("axes", np.array([3, 5], np.int64))], f"{t}_unsq")
                e = op("Expand", [u, const("ones", np.array([1, 1, 1, 2, 1, 2], np.int64))], f"{t}_exp")
                v = op("Reshape", [e, const("shape", np.array([0, 0, 2 * h, 2 * w], np.int64))], f"{t}_up")
                h, w = 2 * h, 2 * w
            parts.append((v, h, w))
        x = parts[0][0] if len(parts) == 1 else op("Concat", [p[0] for p in parts], f"{n.name}_cat", axis=1)
        h, w = parts[0][1], parts[0][2]
        k, s = n.kernel, n.stride
        wq = n.w.numpy().astype(np.int8)
        acc = op("ConvInteger", [x, const(f"{n.name}_w", wq), const("zp_u8", np.array(0, np.uint8)),
                                 const("zp_i8", np.array(0, np.int8))], f"{n.name}_acc",
                 kernel_shape=[k, k], pads=[k // 2] * 4, strides=[s, s])
        acc = op("Add", [op("Cast", [acc], f"{n.name}_acc64", to=TensorProto.INT64),
                         const(f"{n.name}_bias", chan(n.bias.numpy(), np.int64))], f"{n.name}_biased")
        # round_half_up(acc * M0 / 2**shift) with an exact floor division by the power of two
        shift = n.shift.numpy().astype(np.int64)
        p2 = chan(np.left_shift(np.int64(1), shift), np.int64)
        half = chan(np.where(shift > 0, np.left_shift(np.int64(1), np.maximum(shift - 1, 0)), 0), np.int64)
        q = op("Add", [op("Mul", [acc, const(f"{n.name}_m0", chan(n.m0.numpy(), np.int64))], f"{n.name}_scaled"),
                       const(f"{n.name}_half", half)], f"{n.name}_rounded")
        p2n = const(f"{n.name}_p2", p2)
        q = op("Div", [op("Sub", [q, op("Mod", [q, p2n], f"{n.name}_rem", fmod=0)], f"{n.name}_floor"), p2n],
               f"{n.name}_shifted")
        out = ig.tensors[n.output]
        fmt = out.requant_fmt
        q = op("Min", [op("Max", [q, const("qmin", np.array(fmt.qmin, np.int64))], f"{n.name}_lo"),
                       const("qmax", np.array(fmt.qmax, np.int64))], f"{n.name}_sat")
        if out.kind == "polished":  # fine values -> 4-bit codes: how many thresholds each value reaches
            thr = out.thresholds.numpy().astype(np.int64)
            ge = op("GreaterOrEqual", [op("Unsqueeze", [q, const("axes", np.array([4], np.int64))], f"{n.name}_u"),
                                       const(f"{n.output}_thr", thr.reshape(1, thr.shape[0], 1, 1, thr.shape[1]))],
                    f"{n.name}_ge")
            q = op("ReduceSum", [op("Cast", [ge], f"{n.name}_ge64", to=TensorProto.INT64),
                                 const("axes", np.array([4], np.int64))], f"{n.name}_codes", keepdims=0)
        dtype = TensorProto.INT16 if out.kind == "output" else TensorProto.UINT8
        ho, wo = (h + 2 * (k // 2) - k) // s + 1, (w + 2 * (k // 2) - k) // s + 1
        env[n.output] = (op("Cast", [q], n.output, to=dtype), ho, wo)
    out_name, ho, wo = env[ig.output]
    c_in = ig.nodes[0].w.shape[1]
    c_out = ig.nodes[-1].w.shape[0]
    final = ig.tensors[ig.output]
    nodes.append(helper.make_node("Identity", [out_name], ["out_codes"], name="out_codes"))
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("img_codes", TensorProto.UINT8, ["N", c_in, height, width])],
        [helper.make_tensor_value_info("out_codes", TensorProto.INT16 if final.kind == "output" else TensorProto.UINT8,
                                       ["N", c_out, ho, wo])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="qsilicon")
    scales = {t: {"kind": v.kind, "bits": v.bits, "scale": v.scale} for t, v in ig.tensors.items()}
    helper.set_model_props(model, {"qsilicon.tensors": json.dumps(scales), "qsilicon.output": ig.output,
                                   "qsilicon.input": "8-bit image codes round(x * 255), scale 1/255"})
    onnx.checker.check_model(model)
    return model

"""The integer conv graph as standard ONNX: ONNX's own reference evaluator reproduces the integer
model bit for bit (polished 4-bit tensors, upsampling, skips, a 16-bit output)."""

import numpy as np
import onnx
import torch
from onnx.reference import ReferenceEvaluator

from qsilicon.quant.ptq.onnx_export import graph_to_onnx
from qsilicon.quant.ptq.toy import reduced_depth_graph


def test_onnx_reference_evaluator_equals_the_integer_graph():
    ig, x = reduced_depth_graph(seed=0)
    kinds = {t.kind for t in ig.tensors.values()}
    assert {"polished", "uniform", "output"} <= kinds and any(up for n in ig.nodes for _, up in n.inputs)
    model = graph_to_onnx(ig, 16, 16)
    onnx.checker.check_model(model)
    types = {n.op_type for n in model.graph.node}
    assert {"ConvInteger", "Gather", "GreaterOrEqual", "Concat", "Expand"} <= types
    assert all(i.data_type != onnx.TensorProto.FLOAT for i in model.graph.initializer)  # integers only
    codes = ig.image_codes(x[:3])
    got = ReferenceEvaluator(model).run(None, {"img_codes": codes.numpy().astype(np.uint8)})[0]
    assert got.dtype == np.int16
    assert torch.equal(torch.from_numpy(got.astype(np.int64)), ig.forward(x[:3]).to(torch.int64))
    # a changed requantizer shift is seen: the check can fail
    ig.nodes[1].shift = ig.nodes[1].shift + 1
    bad = ReferenceEvaluator(graph_to_onnx(ig, 16, 16)).run(None, {"img_codes": codes.numpy().astype(np.uint8)})[0]
    assert not np.array_equal(bad, got)

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


def test_integer_vit_onnx_equals_the_integer_model_and_keeps_arithmetic_shifts():
    from qsilicon.quant.models.int_vit import IntViT
    from qsilicon.quant.models.int_vit_onnx import int_vit_to_onnx
    from qsilicon.quant.models.vit import ViT, ViTConfig

    torch.manual_seed(0)
    m = ViT(ViTConfig(image=16, patch=4, channels=3, dim=32, depth=1, heads=2, mlp=64, head_dim=16,
                      distilled=True)).eval()
    x = torch.rand(36, 3, 16, 16)
    iv = IntViT(m, x[:32], "mixed")
    model = int_vit_to_onnx(iv, x[:1])
    assert torch.bitwise_right_shift(torch.tensor(-5), 1) == -3  # the export-time lowering is undone
    assert any(i.data_type == onnx.TensorProto.INT64 for i in model.graph.initializer)
    run = ReferenceEvaluator(model)
    for i in range(32, 36):
        got = run.run(None, {"image": x[i : i + 1].numpy()})[0]
        assert np.array_equal(got, iv.logits(x[i : i + 1]).numpy())

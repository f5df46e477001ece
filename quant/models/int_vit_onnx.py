"""The integer ViT (:class:`~qsilicon.quant.models.int_vit.IntViT`) as a standard ONNX model.

The graph is the integer model's own forward pass traced by ``torch.onnx.export`` (the TorchScript
tracer): the same :mod:`qsilicon.quant` functions, recorded as ONNX operators on int64 tensors
(``MatMul``, ``Mul``, ``Add``, exact floor divisions, ``Where``, ``ReduceSum`` ...), so there is no
second definition of the arithmetic.  Two things happen at export time only:

* ONNX has no arithmetic right shift of signed integers (``BitShift`` is unsigned), and the
  tracer writes ``torch.bitwise_right_shift`` as a truncating division, which rounds negative
  values the other way; while tracing, the shift is written as the floor division it equals
  (:func:`_floor_shift`);
* the validity checks of the integer functions (ranges, overflow) are Python branches that the
  tracer evaluates on the example and leaves out of the graph.

The input is one float image ``[1, C, H, W]`` (the integer model's input quantization is part of the
graph), the output the int16 logits.  The integer weights, biases and multipliers are the graph's
int64 initializers.  :func:`int_vit_to_onnx`'s callers check the file with ONNX's reference
evaluator against :meth:`IntViT.logits`, bit for bit.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import torch

from .int_vit import IntViT

__all__ = ["OPSET", "int_vit_to_onnx"]

OPSET = 17


def _floor_shift(x: torch.Tensor, s) -> torch.Tensor:
    """``x >> s`` (arithmetic) as ``floor(x / 2**s)``, which ONNX can express."""
    s = torch.as_tensor(s, dtype=torch.int64)
    return torch.div(x, torch.bitwise_left_shift(torch.ones_like(s), s), rounding_mode="floor")


@contextlib.contextmanager
def _onnx_shifts():
    original = torch.bitwise_right_shift
    torch.bitwise_right_shift = _floor_shift
    try:
        yield
    finally:
        torch.bitwise_right_shift = original


class _Logits(torch.nn.Module):
    def __init__(self, iv: IntViT) -> None:
        super().__init__()
        self.iv = iv

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.iv.logits(img)


def _constants_to_initializers(model) -> None:
    """Move every ``Constant`` tensor into the graph's initializers (where tools look for weights)."""
    from onnx import numpy_helper

    keep = []
    for node in model.graph.node:
        attr = {a.name: a for a in node.attribute}
        if node.op_type == "Constant" and "value" in attr and len(node.output) == 1:
            arr = numpy_helper.to_array(attr["value"].t)
            model.graph.initializer.append(numpy_helper.from_array(arr, node.output[0]))
        else:
            keep.append(node)
    del model.graph.node[:]
    model.graph.node.extend(keep)


def int_vit_to_onnx(iv: IntViT, example: torch.Tensor):
    """The ONNX ``ModelProto`` of ``iv`` traced on ``example`` (one image ``[1, C, H, W]``)."""
    import onnx

    if example.dim() != 4 or example.shape[0] != 1:
        raise ValueError(f"the example must be one image [1, C, H, W], not {tuple(example.shape)}")
    buf = io.BytesIO()
    with warnings.catch_warnings(), _onnx_shifts(), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracer's notes on the validity branches it leaves out
        torch.onnx.export(_Logits(iv), (example,), buf, dynamo=False, opset_version=OPSET, input_names=["image"],
                          output_names=["logits"])
    model = onnx.load_from_string(buf.getvalue())
    _constants_to_initializers(model)
    model.producer_name = "qsilicon"
    onnx.helper.set_model_props(model, {"qsilicon.model": "integer ViT", "qsilicon.precision": iv.precision,
                                        "qsilicon.logits": "int16 codes; the argmax is the class"})
    onnx.checker.check_model(model)
    return model

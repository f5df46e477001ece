"""Bring your own PyTorch model: sources (``timm:NAME``, ``module:pkg.mod:factory``, a
``torch.export`` archive), graph capture with :func:`torch.export.export`, and the mapping of the
captured ATen graph onto the models :mod:`qsilicon.quant` turns into integers.

* :mod:`.source`: a model from a source spec, its example input, the exported program;
* :mod:`.cnn`: a CNN of convolutions, batch norm, ReLU, nearest upsampling and concatenation ->
  the conv-node graph of :mod:`qsilicon.quant.ptq` (QuartDepth PTQ, the depth engine);
* :mod:`.vit`: a Vision Transformer graph (patch embedding, prefix tokens, pre-norm blocks with
  multi-head attention and a GELU MLP, final LayerNorm and classifier, DeiT's distillation
  head) -> :class:`~qsilicon.quant.models.vit.ViT`, checked against the source numerically.

Every model that cannot be mapped raises :class:`UnsupportedModelError` with one line naming the
operator, the graph node and the source line that wrote it.
"""

from .cnn import CnnImport, import_cnn
from .errors import UnsupportedModelError
from .source import ImportedSource, export_source, load_source, parse_input_shape
from .vit import VitImport, import_vit

__all__ = ["CnnImport", "ImportedSource", "UnsupportedModelError", "VitImport", "export_source", "import_cnn",
           "import_model", "import_vit", "load_source", "parse_input_shape"]


def import_model(src: ImportedSource):
    """:func:`import_vit` for a graph with LayerNorm or attention, :func:`import_cnn` otherwise."""
    ops = {getattr(n.target, "__name__", "") for n in src.program.graph.nodes if n.op == "call_function"}
    if ops & {"layer_norm.default", "scaled_dot_product_attention.default"}:
        return import_vit(src)
    return import_cnn(src)

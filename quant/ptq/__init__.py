"""Post-training quantization (QuartDepth): round-to-nearest and percentile baselines, activation
polishing, activation compensation, weight reconstruction (GPTQ, Fisher-weighted AdaRound), and the
integer export of a quantized conv graph."""

from .graph import INPUT, ConvNode, channels, consumers, fold_conv_bn, fold_depthnet, im2col, run_graph
from .pipeline import METHODS, PTQConfig, QuantGraph, calibrate_activations, method_config, quantize_graph
from .quantizers import FINE_BITS, LEVELS, PolishedAct, UniformAct

__all__ = [
    "FINE_BITS", "INPUT", "LEVELS", "METHODS", "ConvNode", "PTQConfig", "PolishedAct", "QuantGraph", "UniformAct",
    "calibrate_activations", "channels", "consumers", "fold_conv_bn", "fold_depthnet", "im2col", "method_config",
    "quantize_graph", "run_graph",
]

"""Number formats, quantizers and the integer-only reference: the single integer authority.

This package imports nothing else of qsilicon (nor Amaranth or cocotb).
"""

from .gemm_case import GemmCase, random_gemm_case, ref_gemm
from .intops import (
    ACC_BITS,
    INT_DTYPE,
    M0_BITS,
    SHIFT_MAX,
    AccumulatorOverflowError,
    ActQuant,
    IntFormat,
    IntLinearResult,
    WeightQuant,
    calibrate_activation,
    check_accumulator,
    dequantize_activation,
    fold_zero_point,
    int_linear,
    quantize_activation,
    quantize_bias,
    quantize_multiplier,
    quantize_weight,
    requantize,
    round_shift,
    saturate,
)
from .linear import IntLinear, fake_quant_linear, fake_quant_with_weight, quantize_linear
from .mixed import (
    RATIOS8,
    IntMixedLinear,
    MixedWeightQuant,
    RowGrouping,
    assign_row_bits,
    fake_quant_mixed_linear,
    group_rows,
    int_mixed_linear,
    quantize_linear_mixed,
    quantize_weight_mixed,
    row_sensitivity,
)
from .nonlinear import (
    RECIP_BITS,
    ExpParams,
    GeluParams,
    ShiftmaxParams,
    exp_params,
    gelu_params,
    int_exp,
    int_gelu,
    int_layernorm,
    int_reciprocal,
    int_shift_exp,
    int_shiftmax,
    int_softmax,
    int_sqrt,
    shiftmax_k,
    shiftmax_params,
)

__all__ = [
    "ACC_BITS", "INT_DTYPE", "M0_BITS", "SHIFT_MAX", "AccumulatorOverflowError", "ActQuant",
    "GemmCase", "IntFormat", "IntLinear", "IntLinearResult", "WeightQuant",
    "calibrate_activation", "check_accumulator", "dequantize_activation", "fake_quant_linear",
    "fold_zero_point", "int_linear", "quantize_activation", "quantize_bias",
    "quantize_linear", "quantize_multiplier", "quantize_weight", "random_gemm_case",
    "ref_gemm", "requantize", "round_shift", "saturate", "fake_quant_with_weight",
    "RATIOS8", "IntMixedLinear", "MixedWeightQuant", "RowGrouping", "assign_row_bits", "fake_quant_mixed_linear",
    "group_rows", "int_mixed_linear", "quantize_linear_mixed", "quantize_weight_mixed", "row_sensitivity",
    "ExpParams", "GeluParams", "exp_params", "gelu_params", "int_exp", "int_gelu", "int_layernorm", "int_softmax",
    "int_sqrt", "RECIP_BITS", "ShiftmaxParams", "int_reciprocal", "int_shift_exp", "int_shiftmax", "shiftmax_k",
    "shiftmax_params",
]

"""Reusable gateware blocks (MAC array, requantizer) shared by the accelerator products."""

from .mac_array import MacArray, acc_row_layout, operand_layout
from .requant import Requantizer, requant_params_layout, result_row_layout

__all__ = [
    "MacArray", "Requantizer", "acc_row_layout", "operand_layout", "requant_params_layout",
    "result_row_layout",
]

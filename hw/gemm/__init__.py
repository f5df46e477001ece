"""The GEMM engine product: top-level component and its host-side schedule."""

from .driver import GemmSchedule, schedule_gemm
from .engine import GemmEngine

__all__ = ["GemmEngine", "GemmSchedule", "schedule_gemm"]

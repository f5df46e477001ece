"""The ViT accelerator built whole for one design point (:mod:`.system`, :mod:`.gemm_unit`), its
compiler, instruction-set simulator and host driver."""

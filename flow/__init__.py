"""The ``qsilicon`` command line and the end-to-end pipeline (orchestration only)."""

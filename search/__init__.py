"""Latency and resource models, search spaces and the search (pure Python, no Amaranth)."""

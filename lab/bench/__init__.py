"""Benchmarks that back the project's speed claims; each runs as ``python -m lab.bench.<name>``."""

"""Benchmark sides that run in their own fresh process (python -m benchmarks.workers.NAME ...)."""

"""Benchmarks: latency statistics and timing loops (separate from the tests)."""

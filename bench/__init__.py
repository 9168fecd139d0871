"""Benchmarks: each script writes bench/results/*.json; README.md reports the figures."""

"""Benchmarks: `scripts/bench` runs them all and prints ratios against baselines."""

"""Benchmarks that print figures and ratios against peers measured in the same run."""

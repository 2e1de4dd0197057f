"""Synthetic media with exact ground truth, shared by the demo, the tests and the benchmarks."""

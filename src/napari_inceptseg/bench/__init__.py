"""Benchmark evaluation on standard datasets: readers, classical baselines, the runner."""

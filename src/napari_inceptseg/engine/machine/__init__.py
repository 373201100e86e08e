"""Fitting a run to the machine: devices, precision and memory formats, the CPU's heap,
what each part of a run costs in memory, the run's plan, and tiles.
"""

"""Scaling out: SLURM job arrays and several cases per GPU."""

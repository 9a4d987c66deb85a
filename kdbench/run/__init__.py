"""One case → one record: the training loop, the teacher store, the conductor, the status
policy, and what they use (taps, measurements, acceleration, caches, checkpoints)."""

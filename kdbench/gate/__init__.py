"""The regression gate: noise-aware comparison of two record sets, and runs over time."""

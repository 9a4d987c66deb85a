"""The case matrix: shipped profiles, user profiles from pyproject.toml, the authors' per-pair
settings, and the pyproject tables they are read from."""

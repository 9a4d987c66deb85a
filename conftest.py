"""Repo-wide pytest settings shared by suites/ and tests/.

The kdbench plugin itself is loaded through its ``pytest11`` entry point (pyproject.toml);
``pytester`` drives it in tests/.
"""

pytest_plugins = ["pytester"]

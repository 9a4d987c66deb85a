"""The pytest session behind the plugin: options and their checks, session state, test items
and markers, the end-of-session output (``kdbench.plugin`` holds only the hooks)."""

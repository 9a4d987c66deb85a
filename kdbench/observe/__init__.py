"""Watching and tracking runs: live progress with an ETA (``progress``), the channel the
processes of a run report through (``channel``, ``state``), ``kdbench watch`` (``watch``) and
the experiment trackers (``trackers``); ``hooks`` is their pytest side."""

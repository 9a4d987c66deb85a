"""Records → tables: the selection model every format shares, and the formats (Markdown, CSV,
JSON, LaTeX, the web page, plots, the benchmark-action export)."""

"""Per-attribute reports of an evaluation: Markdown, CSV, JSON and plots."""

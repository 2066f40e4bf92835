"""The project's own evaluation sets (data files)."""

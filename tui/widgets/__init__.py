"""Reusable widgets of the apiward TUI; each owns its DEFAULT_CSS."""

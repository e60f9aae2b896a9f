"""The screens of the apiward TUI, one module each."""

"""Read what a running Textual app shows, as plain text lines (for assertions)."""

from __future__ import annotations

from typing import Any


def screen_text(app: Any) -> str:
    """The current screen (including modals on top) as plain text."""
    strips = app.screen._compositor.render_strips()
    return "\n".join(strip.text.rstrip() for strip in strips)

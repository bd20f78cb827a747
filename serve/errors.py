"""User-facing errors of `serve`."""

from __future__ import annotations


class ServeError(Exception):
    """Base of every user error raised by `serve`."""

"""The error of data that cannot be read or used."""

from __future__ import annotations

from flatscope.errors import FlatscopeError

__all__ = ["DataError"]


class DataError(FlatscopeError, ValueError):
    """Data that cannot be read or used: a missing or unsafe file, an empty split, bad labels."""

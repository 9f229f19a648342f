"""Wirewatch: an always-on news feed monitor."""

from __future__ import annotations

__version__ = "0.1.0"

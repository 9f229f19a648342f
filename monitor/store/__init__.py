"""Storage: SQLModel tables, engine set-up, Alembic migrations and queries."""

from __future__ import annotations

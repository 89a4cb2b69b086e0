"""The run store: runs and their results in SQLite (default) or PostgreSQL.

Open one with :meth:`Store.open` (``PHALANX_DB`` or a SQLite file in the user data directory
when no URL is given) and record runs as they progress with :meth:`Store.record`. The schema
(:mod:`phalanx.store.models`) is migrated with Alembic each time a store is opened.

Example:
    >>> from phalanx.store import Store
    >>> with Store.open("sqlite:///runs.db") as store:  # doctest: +SKIP
    ...     for summary in store.list_runs(limit=5):
    ...         print(summary.id[:8], summary.command, summary.status.value)
"""

from __future__ import annotations

from phalanx.store.store import (
    ENV_VAR,
    MIN_PREFIX,
    RunRecorder,
    RunSummary,
    RunTerminated,
    Store,
    default_url,
    mask_url,
    normalize_url,
)

__all__ = [
    "ENV_VAR",
    "MIN_PREFIX",
    "RunRecorder",
    "RunSummary",
    "RunTerminated",
    "Store",
    "default_url",
    "mask_url",
    "normalize_url",
]

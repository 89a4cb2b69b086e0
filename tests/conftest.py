"""Shared fixtures. Tests never touch the user's run store; trained zoo models are cached
in the user cache directory (as in normal use) so the suite trains each one once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Two threads: the CI machine has two cores, and torch's default can oversubscribe.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(autouse=True)
def _isolated_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHALANX_DB", f"sqlite:///{tmp_path / 'runs.db'}")
    monkeypatch.delenv("PHALANX_FAIL_ON", raising=False)
    monkeypatch.delenv("PHALANX_FORMAT", raising=False)

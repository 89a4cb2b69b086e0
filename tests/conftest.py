"""Shared fixtures. Tests never touch the user's run store; trained zoo models are cached
in the user cache directory (as in normal use) so the suite trains each one once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# One intra-op thread: the test models are tiny, and on a busy two-core machine two threads
# wait on each other (10-100x slower); results do not depend on the thread count.
os.environ.setdefault("OMP_NUM_THREADS", "1")
try:
    import torch

    torch.set_num_threads(1)
except ImportError:
    pass


@pytest.fixture(autouse=True)
def _isolated_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHALANX_DB", f"sqlite:///{tmp_path / 'runs.db'}")
    monkeypatch.delenv("PHALANX_FAIL_ON", raising=False)
    monkeypatch.delenv("PHALANX_FORMAT", raising=False)

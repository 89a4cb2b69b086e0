"""Run: one execution of checks, persisted by the store and rendered by reports."""

from __future__ import annotations

import datetime as dt
import enum
import os
import platform
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from phalanx.core.findings import Finding, Severity
from phalanx.core.results import Result, _iso, _parse_time, utcnow


class RunStatus(str, enum.Enum):
    """Where a run stands. ``interrupted`` runs keep every result they finished."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


def new_run_id() -> str:
    """A fresh run id: 32 hex digits (a UUID4); any unique prefix names it on the CLI."""
    return uuid.uuid4().hex


def environment() -> dict[str, Any]:
    """Facts about where a run happened, for reproducibility (no secrets, no env vars)."""
    from phalanx import __version__

    return {
        "phalanx": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "hostname": platform.node(),
        "pid": os.getpid(),
        "argv": list(sys.argv[1:]),
    }


@dataclass
class Run:
    """One execution of one or more checks.

    Args:
        command: What was run, e.g. ``"demo"`` or ``"robustness"``.
        config: Everything needed to repeat it (target, data, check parameters).
        id: Unique id; generated when omitted.
        status: Where it stands.
        started_at: When it began.
        finished_at: When it ended (``None`` while running or if killed).
        results: Results of the checks finished so far.
        environment: Versions and host facts.
        tags: Free-form labels for comparing runs over time.
    """

    command: str
    config: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=new_run_id)
    status: RunStatus = RunStatus.RUNNING
    started_at: dt.datetime = field(default_factory=utcnow)
    finished_at: dt.datetime | None = None
    results: list[Result] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=environment)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def findings(self) -> list[Finding]:
        """Every finding of every result, most severe first."""
        every = [f for r in self.results for f in r.findings]
        return sorted(every, key=lambda f: (-f.severity, f.check, f.title))

    @property
    def max_severity(self) -> Severity | None:
        """The most severe finding, or ``None`` when there are none."""
        return max((f.severity for f in self.findings), default=None)

    def severity_counts(self) -> dict[Severity, int]:
        """How many findings at each severity (every level present, zeros included)."""
        counts = dict.fromkeys(Severity, 0)
        for f in self.findings:
            counts[f.severity] += 1
        return counts

    def exit_code(self, fail_on: Severity = Severity.HIGH) -> int:
        """0 when no finding reaches ``fail_on``, else 1 (the CLI's convention)."""
        worst = self.max_severity
        return 1 if worst is not None and worst >= fail_on else 0

    @property
    def duration_s(self) -> float | None:
        """Wall-clock seconds, if the run finished."""
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (the body of the JSON report)."""
        return {
            "id": self.id,
            "command": self.command,
            "status": self.status.value,
            "config": self.config,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "duration_s": self.duration_s,
            "environment": self.environment,
            "tags": self.tags,
            "results": [r.to_dict() for r in self.results],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Run:
        """Rebuild a run written by :meth:`to_dict`."""
        started = _parse_time(data.get("started_at"))
        return cls(
            id=data["id"],
            command=data["command"],
            status=RunStatus(data.get("status", "completed")),
            config=dict(data.get("config") or {}),
            started_at=started if started is not None else utcnow(),
            finished_at=_parse_time(data.get("finished_at")),
            environment=dict(data.get("environment") or {}),
            tags=dict(data.get("tags") or {}),
            results=[Result.from_dict(r) for r in data.get("results") or ()],
        )

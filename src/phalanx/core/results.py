"""Result: what one check returns (metrics, artifacts and findings)."""

from __future__ import annotations

import base64
import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from phalanx.core.findings import Finding, Severity
from phalanx.core.threat import ThreatModel


def utcnow() -> dt.datetime:
    """The current time, timezone-aware, in UTC."""
    return dt.datetime.now(dt.timezone.utc)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_time(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


@dataclass(frozen=True)
class Metric:
    """One measured number, with an optional confidence interval.

    Args:
        name: What it measures, e.g. ``"robust_accuracy"``.
        value: The estimate.
        lower: Lower end of the confidence interval, if computed.
        upper: Upper end of the confidence interval, if computed.
        labels: What distinguishes it from metrics of the same name, e.g.
            ``{"eps": 0.1, "attack": "pgd"}``.
        unit: Optional unit (``"fraction"``, ``"seconds"``, ``"queries"``).

    Example:
        >>> Metric("robust_accuracy", 0.42, 0.39, 0.45, {"eps": 0.1})
    """

    name: str
    value: float
    lower: float | None = None
    upper: float | None = None
    labels: Mapping[str, Any] = field(default_factory=dict)
    unit: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return {
            "name": self.name,
            "value": self.value,
            "lower": self.lower,
            "upper": self.upper,
            "labels": dict(self.labels),
            "unit": self.unit,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Metric:
        """Rebuild a metric written by :meth:`to_dict`."""
        return cls(
            name=data["name"],
            # Strict JSON has no NaN: reports write it as null.
            value=math.nan if data["value"] is None else float(data["value"]),
            lower=data.get("lower"),
            upper=data.get("upper"),
            labels=data.get("labels") or {},
            unit=data.get("unit", ""),
        )


@dataclass(frozen=True)
class Artifact:
    """A file-like output of a check: a plot, adversarial examples, a transcript.

    Args:
        name: File name, e.g. ``"accuracy-vs-eps.svg"``.
        media_type: MIME type, e.g. ``"image/svg+xml"``, ``"image/png"``.
        data: The bytes.
        description: One line for the report.
    """

    name: str
    media_type: str
    data: bytes
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary; the bytes are base64-encoded."""
        return {
            "name": self.name,
            "media_type": self.media_type,
            "description": self.description,
            "data_base64": base64.b64encode(self.data).decode("ascii"),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Artifact:
        """Rebuild an artifact written by :meth:`to_dict`."""
        return cls(
            name=data["name"],
            media_type=data["media_type"],
            data=base64.b64decode(data.get("data_base64", "")),
            description=data.get("description", ""),
        )


@dataclass
class Result:
    """What one check returns.

    Args:
        check: The check's plugin id, e.g. ``"robustness"``.
        title: Human title, e.g. ``"Adversarial robustness (L-inf)"``.
        target: What was tested, e.g. ``"zoo:mnist-cnn"``.
        params: The check's parameters.
        threat_model: The threat model it assumed.
        metrics: Measured numbers.
        findings: Issues found.
        artifacts: Plots, examples and other files.
        refs: Taxonomy refs the check covers (whether or not it found anything).
        started_at: When it began.
        finished_at: When it ended.
        error: One line if the check itself failed.
        seed: Seed used.
    """

    check: str
    title: str = ""
    target: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    threat_model: ThreatModel | None = None
    metrics: list[Metric] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    artifacts: list[Artifact] = field(default_factory=list)
    refs: tuple[str, ...] = ()
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    error: str | None = None
    seed: int | None = None

    @property
    def max_severity(self) -> Severity | None:
        """The most severe finding, or ``None`` when there are none."""
        return max((f.severity for f in self.findings), default=None)

    @property
    def duration_s(self) -> float | None:
        """Wall-clock seconds, if the check finished."""
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    def metric(self, name: str, **labels: Any) -> Metric:
        """The single metric with this name whose labels include ``labels``.

        Raises:
            KeyError: None or several match.
        """
        hits = [
            m
            for m in self.metrics
            if m.name == name and all(m.labels.get(k) == v for k, v in labels.items())
        ]
        if len(hits) != 1:
            raise KeyError(f"{len(hits)} metrics named {name!r} with labels {labels}")
        return hits[0]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return {
            "check": self.check,
            "title": self.title,
            "target": self.target,
            "params": self.params,
            "threat_model": self.threat_model.to_dict() if self.threat_model else None,
            "metrics": [m.to_dict() for m in self.metrics],
            "findings": [f.to_dict() for f in self.findings],
            "artifacts": [a.to_dict() for a in self.artifacts],
            "refs": list(self.refs),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "duration_s": self.duration_s,
            "error": self.error,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Result:
        """Rebuild a result written by :meth:`to_dict`."""
        tm = data.get("threat_model")
        return cls(
            check=data["check"],
            title=data.get("title", ""),
            target=data.get("target", ""),
            params=dict(data.get("params") or {}),
            threat_model=ThreatModel.from_dict(tm) if tm else None,
            metrics=[Metric.from_dict(m) for m in data.get("metrics") or ()],
            findings=[Finding.from_dict(f) for f in data.get("findings") or ()],
            artifacts=[Artifact.from_dict(a) for a in data.get("artifacts") or ()],
            refs=tuple(data.get("refs") or ()),
            started_at=_parse_time(data.get("started_at")),
            finished_at=_parse_time(data.get("finished_at")),
            error=data.get("error"),
            seed=data.get("seed"),
        )

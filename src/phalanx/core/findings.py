"""Severity and Finding: one issue a human must read."""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class Severity(enum.IntEnum):
    """How urgent a finding is; ordered so that ``Severity.HIGH > Severity.LOW``."""

    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @classmethod
    def parse(cls, value: str | int | Severity) -> Severity:
        """Read a severity from its name (any case) or its number.

        Raises:
            ValueError: The value names no severity.
        """
        if isinstance(value, Severity):
            return value
        if isinstance(value, int):
            return cls(value)
        try:
            return cls[value.strip().upper()]
        except KeyError:
            names = ", ".join(s.name.lower() for s in cls)
            raise ValueError(f"unknown severity {value!r}; expected one of {names}") from None

    @property
    def label(self) -> str:
        """Lower-case name, as written in reports and on the command line."""
        return self.name.lower()


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))


class _ContentId:
    """The ``id`` field of :class:`Finding`: the one given, else derived from the content the
    first time it is read (a hash of the check, title, plugin and evidence, about 10 us), so
    findings that are only looked at, or rebuilt into others, never pay for it."""

    def __get__(self, obj: Finding | None, owner: type | None = None) -> str:
        if obj is None:
            return ""  # the field's default, as dataclasses asks for it
        value: str = obj.__dict__.get("_id", "")
        if not value:
            digest = hashlib.sha256(
                _canonical([obj.check, obj.title, obj.plugin_id, obj.evidence]).encode()
            ).hexdigest()[:12]
            value = obj.__dict__["_id"] = f"{obj.check}-{digest}"
        return value

    def __set__(self, obj: Finding, value: str) -> None:
        obj.__dict__["_id"] = value


@dataclass(frozen=True)
class Finding:
    """One issue a human must read, with everything needed to reproduce it.

    Args:
        check: Id of the check that produced it, e.g. ``"robustness"``.
        severity: How urgent it is.
        title: One line, read first.
        detail: A paragraph explaining what was measured and why it matters.
        evidence: JSON-serialisable facts (metrics, offsets, payloads). Attacker-controlled
            strings may appear here; every renderer escapes them.
        remediation: What to do about it.
        refs: Taxonomy refs with their edition, e.g. ``("atlas:AML.T0015",)``.
        plugin_id: The plugin that produced it.
        plugin_version: That plugin's version.
        params: The plugin's parameters, enough to rebuild it.
        seed: The random seed used, if any.
        id: Stable identifier; derived from the content (when first read) when left empty.
            The evidence must not change after the finding is made.

    Example:
        >>> Finding(check="robustness", severity=Severity.HIGH, title="Model is not robust")
    """

    check: str
    severity: Severity
    title: str
    detail: str = ""
    evidence: Mapping[str, Any] = field(default_factory=dict)
    remediation: str = ""
    refs: tuple[str, ...] = ()
    plugin_id: str = ""
    plugin_version: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    seed: int | None = None
    id: str = _ContentId()  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if type(self.severity) is not Severity:
            object.__setattr__(self, "severity", Severity.parse(self.severity))
        if type(self.refs) is not tuple:
            object.__setattr__(self, "refs", tuple(self.refs))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (severity as its lower-case name)."""
        return {
            "id": self.id,
            "check": self.check,
            "severity": self.severity.label,
            "title": self.title,
            "detail": self.detail,
            "evidence": dict(self.evidence),
            "remediation": self.remediation,
            "refs": list(self.refs),
            "plugin": {
                "id": self.plugin_id,
                "version": self.plugin_version,
                "params": dict(self.params),
                "seed": self.seed,
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        """Rebuild a finding written by :meth:`to_dict`."""
        plugin = data.get("plugin") or {}
        return cls(
            id=data.get("id", ""),
            check=data["check"],
            severity=Severity.parse(data["severity"]),
            title=data["title"],
            detail=data.get("detail", ""),
            evidence=data.get("evidence") or {},
            remediation=data.get("remediation", ""),
            refs=tuple(data.get("refs") or ()),
            plugin_id=plugin.get("id", ""),
            plugin_version=plugin.get("version", ""),
            params=plugin.get("params") or {},
            seed=plugin.get("seed"),
        )

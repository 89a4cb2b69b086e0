"""Helpers shared by the reporters: taxonomy names, the run summary, text clean-up.

Nothing here is public API; the reporters are.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from phalanx.core import Run, Severity
from phalanx.errors import PhalanxError

logger = logging.getLogger(__name__)

# Characters XML 1.0 forbids (C0 controls but tab, newline and carriage return; lone
# surrogates; U+FFFE and U+FFFF). Stripping them also keeps NUL bytes out of every format.
# Listed rather than written as the complement of what XML allows: the same set (a test
# checks every code point), but it compiles in a millisecond instead of ten at every start.
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def clean_text(value: object) -> str:
    """``value`` as a string with every character invalid in XML 1.0 removed."""
    return _INVALID_XML.sub("", value if isinstance(value, str) else str(value))


def json_safe(value: Any) -> Any:
    """A copy of ``value`` that :func:`json.dumps` writes as strict JSON.

    Non-finite floats (which would come out as the non-standard ``NaN``/``Infinity``) become
    ``None``; tuples become lists; mapping keys become strings; anything else that JSON cannot
    hold becomes its ``str``.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    return str(value)


def pretty_json(value: Any) -> str:
    """Indented JSON for people to read (non-ASCII kept, control characters stripped)."""
    return clean_text(json.dumps(json_safe(value), indent=2, ensure_ascii=False, sort_keys=True))


def summary(run: Run) -> dict[str, Any]:
    """Counts a reader (or a CI gate) needs first: findings per severity, the worst, the status."""
    counts = run.severity_counts()
    worst = run.max_severity
    return {
        "status": run.status.value,
        "total_findings": sum(counts.values()),
        "max_severity": worst.label if worst is not None else None,
        "severity_counts": {s.label: counts[s] for s in sorted(Severity, reverse=True)},
        "results": len(run.results),
        "failed_checks": sum(1 for r in run.results if r.error),
    }


def format_duration(seconds: float | None) -> str:
    """``"3.2 s"``, ``"4 min 05 s"``, ``"1 h 02 min"``; an em dash when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def format_time(value: dt.datetime | None) -> str:
    """A timestamp in UTC to the minute, e.g. ``"2025-03-01 14:02 UTC"``."""
    if value is None:
        return "—"
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc)
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def format_number(value: float | None) -> str:
    """A metric value: four significant digits, integers without a decimal point."""
    if value is None:
        return "—"
    if isinstance(value, float) and not math.isfinite(value):
        return "n/a" if math.isnan(value) else str(value)
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"


def format_labels(labels: Mapping[str, Any]) -> str:
    """Metric labels as ``eps=0.1, attack=pgd`` (in the order given)."""
    return ", ".join(f"{k}={v}" for k, v in labels.items())


# --- taxonomy -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefInfo:
    """What a report shows for one taxonomy ref.

    Args:
        ref: The ref as written in the finding, e.g. ``"owasp-llm-2025:LLM01"``.
        name: The entry's name, or ``""`` when the taxonomy does not know it.
        framework: The ref's prefix, e.g. ``"owasp-llm-2025"``.
        framework_name: The framework's display name (the prefix when unknown).
        url: A documentation link for the entry, or ``""``.
    """

    ref: str
    name: str
    framework: str
    framework_name: str
    url: str = ""

    @property
    def known(self) -> bool:
        """Whether the taxonomy knows the entry."""
        return bool(self.name)

    @property
    def display(self) -> str:
        """``"owasp-llm-2025:LLM01 Prompt Injection"``, or the bare ref when unknown."""
        return f"{self.ref} {self.name}" if self.name else self.ref


def _load_taxonomy() -> Any:
    """The taxonomy from ``phalanx.core.taxonomy``, or ``None`` when it cannot be had.

    Reports must render even without it (an older install, missing data files), showing bare
    refs instead of names, so failure to load is logged rather than raised.
    """
    try:
        from phalanx.core.taxonomy import load_taxonomy  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    try:
        return load_taxonomy()
    except (PhalanxError, OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("taxonomy unavailable, showing bare refs: %s", exc)
        return None


class RefResolver:
    """Looks refs up in the taxonomy once and remembers the answers.

    Args:
        taxonomy: A loaded taxonomy; by default :func:`phalanx.core.taxonomy.load_taxonomy`'s,
            or none at all if that is not available.
    """

    def __init__(self, taxonomy: Any = None, *, load: bool = True) -> None:
        self._taxonomy = taxonomy if taxonomy is not None or not load else _load_taxonomy()
        self._cache: dict[str, RefInfo] = {}
        self._frameworks: dict[str, tuple[str, str]] = {}
        if self._taxonomy is not None:
            try:
                for fw in self._taxonomy.frameworks():
                    label = getattr(fw, "short_name", "") or getattr(fw, "name", "") or fw.prefix
                    version = str(getattr(fw, "version", "") or "")
                    self._frameworks[str(fw.prefix)] = (str(label), version)
            except (AttributeError, TypeError, ValueError) as exc:
                logger.warning("taxonomy frameworks unreadable: %s", exc)

    def framework_rank(self, prefix: str) -> tuple[int, str]:
        """A sort key: the taxonomy's display order, unknown frameworks last by name."""
        order = list(self._frameworks)
        return (order.index(prefix), "") if prefix in order else (len(order), prefix.lower())

    def framework_label(self, prefix: str) -> str:
        """The display name of a framework prefix (the prefix itself when unknown)."""
        label, _version = self._frameworks.get(prefix, (prefix, ""))
        return label

    def _find(self, ref: str) -> Any:
        try:
            return self._taxonomy.find(ref)
        except (KeyError, ValueError, TypeError, AttributeError):
            return None

    def info(self, ref: str) -> RefInfo:
        """Everything a report shows for ``ref``."""
        cached = self._cache.get(ref)
        if cached is not None:
            return cached
        prefix = ref.split(":", 1)[0] if ":" in ref else ""
        name = url = ""
        if self._taxonomy is not None:
            entry = self._find(ref)
            if entry is not None:
                name = clean_text(getattr(entry, "name", "") or "")
                url = str(getattr(entry, "url", "") or "")
                parent = getattr(entry, "parent", None)
                if getattr(entry, "kind", "") == "sub-technique" and isinstance(parent, str):
                    # ATLAS names a sub-technique with its technique: "LLM Prompt Injection:
                    # Indirect", not just "Indirect".
                    parent_name = getattr(self._find(parent), "name", "")
                    name = f"{clean_text(parent_name)}: {name}" if parent_name else name
        info = RefInfo(
            ref=ref,
            name=name,
            framework=prefix,
            framework_name=self.framework_label(prefix) if prefix else "Other",
            url=url if url.startswith("https://") else "",
        )
        self._cache[ref] = info
        return info

    def infos(self, refs: Iterable[str]) -> list[RefInfo]:
        """:meth:`info` of each ref, in order."""
        return [self.info(r) for r in refs]

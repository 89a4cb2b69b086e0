"""The SARIF 2.1.0 report, for code-scanning dashboards (GitHub, GitLab, Azure DevOps).

Mapping:

* one SARIF run per phalanx run; ``tool.driver`` is phalanx with one rule per distinct
  (check, title) pair;
* ``level`` from severity: critical and high are ``error``, medium ``warning``, low and info
  ``note``; the exact severity is kept in ``properties.severity`` and, for GitHub, as a CVSS-like
  ``properties.security-severity`` on the rule;
* taxonomy refs become rule tags and SARIF taxonomies (one tool component per framework),
  referenced from each result's ``taxa``;
* a finding whose evidence names a file (``path``, with optional ``offset``/``length`` in bytes
  or ``line``) gets a physical location; any other finding a logical location naming the
  check's target;
* the finding id is the partial fingerprint, so dashboards track a finding across runs.

Specification: OASIS, *Static Analysis Results Interchange Format (SARIF) Version 2.1.0*,
2020, https://docs.oasis-open.org/sarif/sarif/v2.1.0/sarif-v2.1.0.html
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any, ClassVar
from urllib.parse import quote

from phalanx.core import Finding, Result, Run, RunStatus, Severity
from phalanx.report._common import RefResolver, clean_text, json_safe
from phalanx.report.base import Reporter

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
INFORMATION_URI = "https://github.com/phalanx-security/phalanx"

LEVELS: Mapping[Severity, str] = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
    Severity.INFO: "note",
}

# GitHub code scanning reads a CVSS-like score: >= 9 critical, 7-8.9 high, 4-6.9 medium,
# 0.1-3.9 low. Informational findings get none.
SECURITY_SEVERITY: Mapping[Severity, str] = {
    Severity.CRITICAL: "9.5",
    Severity.HIGH: "8.0",
    Severity.MEDIUM: "5.5",
    Severity.LOW: "3.0",
}

_SLUG = re.compile(r"[^a-z0-9]+")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]+:")
_DRIVE = re.compile(r"^[a-zA-Z]:[\\/]")


def _slug(text: str, limit: int = 48) -> str:
    slug = _SLUG.sub("-", text.lower()).strip("-")
    return slug[:limit].rstrip("-") or "finding"


def _utc(value: dt.datetime | None) -> str | None:
    """SARIF times are UTC with a ``Z`` (§3.9)."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value.isoformat(timespec="milliseconds") + "Z"


def path_to_uri(path: str) -> str:
    """A file path from evidence as a SARIF ``uri``: relative paths stay relative."""
    path = clean_text(path).strip()
    if _DRIVE.match(path):
        return PureWindowsPath(path).as_uri()
    if _SCHEME.match(path):
        return quote(path, safe=":/?#[]@!$&'()*+,;=%~")
    posix = path.replace("\\", "/")
    if posix.startswith("/"):
        return PurePosixPath(posix).as_uri()
    return quote(posix, safe="/")


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _location(finding: Finding, result: Result) -> dict[str, Any]:
    evidence = finding.evidence
    path = evidence.get("path")
    if isinstance(path, str) and path.strip():
        physical: dict[str, Any] = {"artifactLocation": {"uri": path_to_uri(path)}}
        region: dict[str, Any] = {}
        offset, length, line = (_int(evidence.get(k)) for k in ("offset", "length", "line"))
        if offset is not None and offset >= 0:
            region["byteOffset"] = offset
            if length is not None and length >= 0:
                region["byteLength"] = length
        elif line is not None and line >= 1:
            region["startLine"] = line
        if region:
            physical["region"] = region
        return {"physicalLocation": physical}
    name = clean_text(result.target or finding.check)
    return {
        "logicalLocations": [
            {
                "name": name,
                "fullyQualifiedName": f"{clean_text(finding.check)}:{name}",
                "kind": "resource",
            }
        ]
    }


class SarifReporter(Reporter):
    """SARIF 2.1.0 for code-scanning dashboards.

    Example:
        >>> Path("phalanx.sarif").write_bytes(SarifReporter().render(run))  # doctest: +SKIP
    """

    name: ClassVar[str] = "sarif"
    media_type: ClassVar[str] = "application/sarif+json"
    extension: ClassVar[str] = ".sarif"

    def document(self, run: Run) -> dict[str, Any]:
        """The SARIF log as a dictionary (what :meth:`render` encodes)."""
        refs = RefResolver()
        pairs = [(f, r) for r in run.results for f in r.findings]
        pairs.sort(key=lambda p: (-p[0].severity, p[0].check, p[0].title))

        rules: list[dict[str, Any]] = []
        rule_index: dict[tuple[str, str], int] = {}
        used_ids: set[str] = set()
        taxa: dict[str, dict[str, dict[str, Any]]] = {}
        results: list[dict[str, Any]] = []

        for finding, result in pairs:
            key = (finding.check, finding.title)
            infos = refs.infos(dict.fromkeys(finding.refs))
            for info in infos:
                component = info.framework or "other"
                entry_id = info.ref.split(":", 1)[1] if ":" in info.ref else info.ref
                taxon: dict[str, Any] = {"id": clean_text(entry_id)}
                if info.name:
                    taxon["shortDescription"] = {"text": info.name}
                if info.url:
                    taxon["helpUri"] = info.url
                taxa.setdefault(component, {}).setdefault(entry_id, taxon)
            if key not in rule_index:
                rule_id = f"{_slug(finding.check, 32)}/{_slug(finding.title)}"
                if rule_id in used_ids:
                    digest = hashlib.sha256("\0".join(key).encode()).hexdigest()[:8]
                    rule_id = f"{rule_id}-{digest}"
                used_ids.add(rule_id)
                rule_index[key] = len(rules)
                rules.append(self._rule(rule_id, finding, infos))
            else:
                self._raise_rule(rules[rule_index[key]], finding)
            results.append(self._result(finding, result, rules[rule_index[key]]["id"],
                                        rule_index[key], infos))

        version = str(run.environment.get("phalanx") or _phalanx_version())
        driver: dict[str, Any] = {
            "name": "phalanx",
            "version": version,
            "informationUri": INFORMATION_URI,
            "rules": rules,
        }
        if taxa:
            driver["supportedTaxonomies"] = [{"name": name} for name in sorted(taxa)]
        invocation: dict[str, Any] = {
            "executionSuccessful": run.status == RunStatus.COMPLETED
            and not any(r.error for r in run.results),
            "commandLine": clean_text(f"phalanx {run.command}"),
        }
        if run.started_at is not None:
            invocation["startTimeUtc"] = _utc(run.started_at)
        if run.finished_at is not None:
            invocation["endTimeUtc"] = _utc(run.finished_at)
        notifications = [
            {
                "level": "error",
                "message": {"text": clean_text(f"check {r.check} failed: {r.error}")},
            }
            for r in run.results
            if r.error
        ]
        if notifications:
            invocation["toolExecutionNotifications"] = notifications

        sarif_run: dict[str, Any] = {
            "tool": {"driver": driver},
            "automationDetails": {"id": f"phalanx/{_slug(run.command, 40)}/{run.id}"},
            "invocations": [invocation],
            "results": results,
            "properties": {
                "runId": run.id,
                "status": run.status.value,
                "tags": [clean_text(f"{k}={v}") for k, v in sorted(run.tags.items())],
            },
        }
        if taxa:
            sarif_run["taxonomies"] = [
                {
                    "name": name,
                    "fullName": refs.framework_label(name),
                    "taxa": list(entries.values()),
                }
                for name, entries in sorted(taxa.items())
            ]
        return {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": [sarif_run]}

    def _rule(self, rule_id: str, finding: Finding, infos: list[Any]) -> dict[str, Any]:
        tags = ["security", *dict.fromkeys(clean_text(i.ref) for i in infos)]
        properties: dict[str, Any] = {"tags": tags, "check": clean_text(finding.check)}
        score = SECURITY_SEVERITY.get(finding.severity)
        if score is not None:
            properties["security-severity"] = score
        rule: dict[str, Any] = {
            "id": rule_id,
            "shortDescription": {"text": clean_text(finding.title) or rule_id},
            "fullDescription": {"text": clean_text(finding.detail or finding.title) or rule_id},
            "defaultConfiguration": {"level": LEVELS[finding.severity]},
            "properties": properties,
        }
        if finding.remediation:
            rule["help"] = {"text": clean_text(finding.remediation)}
        help_uri = next((i.url for i in infos if i.url), "")
        if help_uri:
            rule["helpUri"] = help_uri
        return rule

    @staticmethod
    def _raise_rule(rule: dict[str, Any], finding: Finding) -> None:
        """Keep a rule's default level and score at its most severe finding's."""
        score = SECURITY_SEVERITY.get(finding.severity)
        current = rule["properties"].get("security-severity")
        if score is not None and (current is None or float(score) > float(current)):
            rule["properties"]["security-severity"] = score
            rule["defaultConfiguration"]["level"] = LEVELS[finding.severity]

    @staticmethod
    def _result(
        finding: Finding, result: Result, rule_id: str, index: int, infos: list[Any]
    ) -> dict[str, Any]:
        text = clean_text(finding.title)
        if finding.detail:
            text = f"{text}: {clean_text(finding.detail)}" if text else clean_text(finding.detail)
        entry: dict[str, Any] = {
            "ruleId": rule_id,
            "ruleIndex": index,
            "kind": "fail",
            "level": LEVELS[finding.severity],
            "message": {"text": text or rule_id},
            "locations": [_location(finding, result)],
            "partialFingerprints": {"phalanxFindingId/v1": clean_text(finding.id)},
            "properties": {
                "severity": finding.severity.label,
                "findingId": clean_text(finding.id),
                "check": clean_text(finding.check),
                "target": clean_text(result.target),
                "refs": [clean_text(r) for r in finding.refs],
                "evidence": json_safe(finding.evidence),
                "remediation": clean_text(finding.remediation),
                "plugin": json_safe(
                    {
                        "id": finding.plugin_id,
                        "version": finding.plugin_version,
                        "params": finding.params,
                        "seed": finding.seed,
                    }
                ),
            },
        }
        if infos:
            entry["taxa"] = [
                {
                    "id": clean_text(i.ref.split(":", 1)[1] if ":" in i.ref else i.ref),
                    "toolComponent": {"name": i.framework or "other"},
                }
                for i in infos
            ]
        return entry

    def render(self, run: Run) -> bytes:
        text = json.dumps(self.document(run), indent=2, ensure_ascii=False, allow_nan=False)
        return (text + "\n").encode("utf-8")


def _phalanx_version() -> str:
    from phalanx import __version__

    return str(__version__)

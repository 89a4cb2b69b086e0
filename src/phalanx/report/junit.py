"""The JUnit XML report, for CI systems that show test results (Jenkins, GitLab, Azure).

One ``<testsuite>`` per check result; one ``<testcase>`` per finding, failing when its severity
reaches ``fail_on``; a check with no findings gets one passing test case, and a check that
itself failed an ``<error>``. The XML is built with :mod:`xml.etree.ElementTree`, which escapes
text and attributes, and every character XML 1.0 forbids (NUL, other control characters) is
removed first, so attacker-written text cannot break the file.
"""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any, ClassVar

from phalanx.core import Finding, OneOf, Result, Run, Severity
from phalanx.report._common import RefResolver, clean_text, format_labels, pretty_json
from phalanx.report.base import Reporter

_SEVERITIES = tuple(s.label for s in Severity)


def _element(tag: str, attrs: Mapping[str, Any] | None = None, text: str | None = None,
             parent: ET.Element | None = None) -> ET.Element:
    clean = {k: clean_text(v) for k, v in (attrs or {}).items() if v is not None}
    node = ET.Element(tag, clean) if parent is None else ET.SubElement(parent, tag, clean)
    if text:
        node.text = clean_text(text)
    return node


def _seconds(value: float | None) -> str:
    return f"{max(value or 0.0, 0.0):.3f}"


def _finding_text(finding: Finding, target: str, refs: RefResolver) -> str:
    parts = [f"[{finding.severity.label}] {finding.title}", f"check: {finding.check}"]
    if target:
        parts.append(f"target: {target}")
    parts.append(f"finding id: {finding.id}")
    if finding.refs:
        parts.append("refs: " + ", ".join(i.display for i in refs.infos(finding.refs)))
    if finding.detail:
        parts += ["", finding.detail]
    if finding.remediation:
        parts += ["", f"Remediation: {finding.remediation}"]
    if finding.evidence:
        parts += ["", "Evidence:", pretty_json(finding.evidence)]
    return "\n".join(parts)


class JUnitReporter(Reporter):
    """JUnit XML: findings as test cases, failing from a severity threshold up.

    Args:
        fail_on: Lowest severity that fails a test case (``"info"``, ``"low"``, ``"medium"``,
            ``"high"`` or ``"critical"``). Findings below it are passing test cases, with the
            finding in ``<system-out>``.

    Example:
        >>> JUnitReporter(fail_on="high").render(run)  # doctest: +SKIP
    """

    name: ClassVar[str] = "junit"
    media_type: ClassVar[str] = "application/xml"
    extension: ClassVar[str] = ".xml"
    constraints = {"fail_on": OneOf(_SEVERITIES)}

    def __init__(self, *, fail_on: str = "medium") -> None:
        self.fail_on = fail_on

    def tree(self, run: Run) -> ET.Element:
        """The ``<testsuites>`` element (what :meth:`render` serialises)."""
        self.check_params()
        threshold = Severity.parse(self.fail_on)
        refs = RefResolver()
        root = _element("testsuites", {"name": f"phalanx {run.command}"})
        totals = {"tests": 0, "failures": 0, "errors": 0}
        hostname = str(run.environment.get("hostname") or "localhost")
        for result in run.results:
            suite = self._suite(result, run, threshold, refs, hostname)
            for key in totals:
                totals[key] += int(suite.get(key, "0"))
            root.append(suite)
        root.set("tests", str(totals["tests"]))
        root.set("failures", str(totals["failures"]))
        root.set("errors", str(totals["errors"]))
        root.set("time", _seconds(run.duration_s))
        return root

    def _suite(self, result: Result, run: Run, threshold: Severity, refs: RefResolver,
               hostname: str) -> ET.Element:
        started = result.started_at or run.started_at
        if started.tzinfo is not None:
            started = started.astimezone(dt.timezone.utc).replace(tzinfo=None)
        suite = _element(
            "testsuite",
            {
                "name": result.check,
                "timestamp": started.isoformat(timespec="seconds"),
                "hostname": hostname,
                "time": _seconds(result.duration_s),
            },
        )
        properties = _element("properties", parent=suite)
        facts = {"title": result.title, "target": result.target, "run_id": run.id,
                 "fail_on": threshold.label}
        for key, value in facts.items():
            if value:
                _element("property", {"name": key, "value": value}, parent=properties)
        for metric in result.metrics:
            labels = format_labels(metric.labels)
            name = f"metric:{metric.name}" + (f"[{labels}]" if labels else "")
            _element("property", {"name": name, "value": repr(metric.value)}, parent=properties)

        classname = f"phalanx.{result.check}"
        tests = failures = errors = 0
        if result.error:
            tests += 1
            errors += 1
            case = _element("testcase", {"classname": classname, "name": "check ran",
                                         "time": _seconds(result.duration_s)}, parent=suite)
            _element("error", {"message": result.error, "type": "CheckError"}, result.error,
                     parent=case)
        findings = sorted(result.findings, key=lambda f: (-f.severity, f.title))
        for finding in findings:
            tests += 1
            case = _element(
                "testcase",
                {"classname": classname, "name": f"[{finding.severity.label}] {finding.title}",
                 "time": "0.000"},
                parent=suite,
            )
            text = _finding_text(finding, result.target, refs)
            if finding.severity >= threshold:
                failures += 1
                _element("failure", {"message": finding.title, "type": finding.severity.label},
                         text, parent=case)
            else:
                _element("system-out", text=text, parent=case)
        if not findings and not result.error:
            tests += 1
            _element("testcase", {"classname": classname, "name": "no findings",
                                  "time": _seconds(result.duration_s)}, parent=suite)
        suite.set("tests", str(tests))
        suite.set("failures", str(failures))
        suite.set("errors", str(errors))
        suite.set("skipped", "0")
        return suite

    def render(self, run: Run) -> bytes:
        root = self.tree(run)
        ET.indent(root)
        return bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True)) + b"\n"

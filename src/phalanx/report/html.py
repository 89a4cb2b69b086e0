"""The HTML report: one self-contained page for people who decide what to fix.

Security of the page itself matters as much as its content: findings carry attacker-written
text (payloads, model replies, file names from hostile archives). So:

* the Jinja2 environment autoescapes *everything*; the only markup inserted unescaped is SVG
  that matplotlib generated from numbers (it escapes its own text);
* artifacts are shown as ``<img src="data:...">`` and only for an allowlist of image types:
  an SVG artifact loaded through ``<img>`` cannot run script, while inlined it could;
* no script, no external stylesheet, font or image: the file opens the same offline, from
  an e-mail attachment or a CI artifact store.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

import jinja2
from markupsafe import Markup

from phalanx.core import Finding, Result, Run, Severity
from phalanx.report._common import (
    RefInfo,
    RefResolver,
    clean_text,
    format_duration,
    format_labels,
    format_number,
    format_time,
    pretty_json,
    summary,
)
from phalanx.report.base import Reporter
from phalanx.report.json_report import SCHEMA_VERSION

#: Artifact types embedded as images; anything else is listed, never rendered.
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/svg+xml"})
#: Text artifacts up to this size are shown inline (escaped) in a collapsible block.
TEXT_PREVIEW_BYTES = 64 * 1024
#: Images larger than this are listed instead of embedded, to keep the page openable.
MAX_EMBED_BYTES = 8 * 1024 * 1024

_TEXT_TYPES = re.compile(r"^(text/[\w.+-]+|application/(json|x-ndjson|jsonl|yaml|x-yaml|xml))$")


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("phalanx.report", "templates"),
        autoescape=True,  # every template, whatever its name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@dataclass
class _FindingView:
    anchor: str
    finding: Finding
    target: str
    refs: list[RefInfo]
    evidence: str

    @property
    def severity(self) -> str:
        return self.finding.severity.label


@dataclass
class _EntryView:
    info: RefInfo
    findings: list[_FindingView] = field(default_factory=list)


@dataclass
class _FrameworkView:
    key: str
    name: str
    entries: dict[str, _EntryView] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len({f.anchor for e in self.entries.values() for f in e.findings})


def _sort_key(item: tuple[Finding, Result]) -> tuple[int, str, str]:
    finding = item[0]
    return (-finding.severity, finding.check, finding.title)


def _status_class(status: str) -> str:
    return {"completed": "ok", "failed": "bad"}.get(status, "warn")


def _artifact_views(result: Result) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    images: list[dict[str, str]] = []
    files: list[dict[str, Any]] = []
    for artifact in result.artifacts:
        media_type = artifact.media_type.strip().lower()
        size = len(artifact.data)
        if media_type in IMAGE_TYPES and 0 < size <= MAX_EMBED_BYTES:
            encoded = base64.b64encode(artifact.data).decode("ascii")
            images.append(
                {
                    "name": clean_text(artifact.name),
                    "description": clean_text(artifact.description),
                    "src": f"data:{media_type};base64,{encoded}",
                }
            )
            continue
        preview = ""
        if _TEXT_TYPES.match(media_type) and size <= TEXT_PREVIEW_BYTES:
            preview = clean_text(artifact.data.decode("utf-8", errors="replace"))
        files.append(
            {
                "name": clean_text(artifact.name),
                "media_type": clean_text(artifact.media_type),
                "description": clean_text(artifact.description),
                "size": _format_bytes(size),
                "preview": preview,
            }
        )
    return images, files


def _format_bytes(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / (1024 * 1024):.1f} MiB"


def _metric_rows(result: Result) -> list[dict[str, str]]:
    rows = []
    for m in result.metrics:
        ci = ""
        if m.lower is not None and m.upper is not None:
            ci = f"[{format_number(m.lower)}, {format_number(m.upper)}]"
        rows.append(
            {
                "name": clean_text(m.name),
                "labels": clean_text(format_labels(m.labels)),
                "value": format_number(m.value),
                "ci": ci,
                "unit": clean_text(m.unit),
            }
        )
    return rows


def _threat_model_rows(result: Result) -> list[tuple[str, str]]:
    tm = result.threat_model
    if tm is None:
        return []
    rows = [("Knowledge", tm.knowledge), ("Goal", tm.goal)]
    if tm.norm is not None:
        rows.append(("Norm", tm.norm))
    if tm.eps is not None:
        rows.append(("Budget (eps)", format_number(tm.eps)))
    if tm.query_budget is not None:
        rows.append(("Query budget", str(tm.query_budget)))
    rows.append(("Attacker controls", ", ".join(tm.channels) or "—"))
    return [(k, clean_text(v)) for k, v in rows]


def _verdict(run: Run) -> tuple[str, str]:
    """One sentence a risk officer reads first, and its severity class."""
    counts = run.severity_counts()
    worst = run.max_severity
    if worst is None:
        if not run.results:
            return "No checks ran, so nothing was tested.", "none"
        return "No findings: every check passed.", "none"
    urgent = counts[Severity.CRITICAL] + counts[Severity.HIGH]
    total = sum(counts.values())
    noun = "finding" if total == 1 else "findings"
    if urgent:
        need = "needs" if urgent == 1 else "need"
        return (
            f"{total} {noun}; {urgent} {need} action before release (critical or high).",
            worst.label,
        )
    return f"{total} {noun}, none critical or high. Highest: {worst.label}.", worst.label


class HtmlReporter(Reporter):
    """A self-contained HTML page: summary, findings by severity and by framework, metrics,
    plots and artifacts. Opens offline, prints cleanly, runs no script.

    Example:
        >>> Path("report.html").write_bytes(HtmlReporter().render(run))  # doctest: +SKIP
    """

    name: ClassVar[str] = "html"
    media_type: ClassVar[str] = "text/html; charset=utf-8"
    extension: ClassVar[str] = ".html"

    def context(self, run: Run, resolver: RefResolver | None = None) -> dict[str, Any]:
        """The values the template renders (every string still raw; the template escapes)."""
        from phalanx.report.plots import result_plots

        refs = resolver if resolver is not None else RefResolver()
        pairs = sorted(((f, r) for r in run.results for f in r.findings), key=_sort_key)
        views = [
            _FindingView(
                anchor=f"finding-{n}",
                finding=f,
                target=r.target,
                refs=refs.infos(f.refs),
                evidence=pretty_json(f.evidence) if f.evidence else "",
            )
            for n, (f, r) in enumerate(pairs, start=1)
        ]
        groups = [
            {"label": s.label, "findings": [v for v in views if v.finding.severity == s]}
            for s in sorted(Severity, reverse=True)
        ]

        frameworks: dict[str, _FrameworkView] = {}
        unmapped: list[_FindingView] = []
        for view in views:
            if not view.refs:
                unmapped.append(view)
            for info in view.refs:
                key = info.framework or "other"
                fw = frameworks.setdefault(key, _FrameworkView(key, info.framework_name))
                entry = fw.entries.setdefault(info.ref, _EntryView(info))
                if all(v is not view for v in entry.findings):
                    entry.findings.append(view)
        framework_list = sorted(frameworks.values(), key=lambda fw: refs.framework_rank(fw.key))
        for fw in framework_list:
            fw.entries = dict(sorted(fw.entries.items()))

        results = []
        for index, result in enumerate(run.results, start=1):
            images, files = _artifact_views(result)
            findings = [v for v in views if any(v.finding is f for f in result.findings)]
            worst = result.max_severity
            results.append(
                {
                    "anchor": f"check-{index}",
                    "result": result,
                    "heading": result.title or result.check,
                    "duration": format_duration(result.duration_s),
                    "max_severity": worst.label if worst is not None else None,
                    "findings": findings,
                    "threat_model": _threat_model_rows(result),
                    "params": pretty_json(result.params) if result.params else "",
                    "metrics": _metric_rows(result),
                    "plots": [
                        {"title": p.title, "svg": Markup(p.svg)}  # matplotlib-made markup
                        for p in result_plots(result, prefix=f"c{index}-")
                    ],
                    "images": images,
                    "files": files,
                    "refs": refs.infos(result.refs),
                }
            )

        targets = sorted({r.target for r in run.results if r.target})
        verdict, verdict_class = _verdict(run)
        return {
            "run": run,
            "started": format_time(run.started_at),
            "finished": format_time(run.finished_at),
            "duration": format_duration(run.duration_s),
            "status_class": _status_class(run.status.value),
            "targets": targets,
            "version": str(run.environment.get("phalanx", "")),
            "summary": summary(run),
            "verdict": verdict,
            "verdict_class": verdict_class,
            "severity_groups": groups,
            "findings": views,
            "frameworks": framework_list,
            "unmapped": unmapped,
            "results": results,
            "environment": pretty_json(run.environment),
            "config": pretty_json(run.config) if run.config else "",
            "generated_at": format_time(dt.datetime.now(dt.timezone.utc)),
            "schema_version": SCHEMA_VERSION,
        }

    def render(self, run: Run) -> bytes:
        template = _environment().get_template("report.html.j2")
        return clean_text(template.render(**self.context(run))).encode("utf-8")


"""The Markdown report: GitHub-flavoured, for pull-request comments, wikis and job summaries.

Attacker-controlled text is escaped so that it stays text: no raw HTML (``<`` and ``>``
become entities), no Markdown structure (emphasis, links, headings, lists), no broken table
rows (``|`` and newlines are escaped inside cells). Evidence goes in fenced code blocks whose
fence is longer than any run of backticks inside.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import ClassVar

from phalanx.core import Result, Run, Severity
from phalanx.report._common import (
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

# Inline Markdown punctuation; backslash-escaping these keeps them literal wherever they are.
# Brackets are escaped, so "(", ")" and "!" can never form a link or image and stay as they are.
_INLINE = re.compile(r"([\\`*_\[\]~|])")
# Characters that start block structure at the beginning of a line.
_LINE_START = re.compile(r"^(\s*)([#>+=-]|\d+[.)])", re.MULTILINE)
_BACKTICKS = re.compile(r"`+")
_WHITESPACE = re.compile(r"\s+")


def escape(text: object, *, inline: bool = True) -> str:
    """``text`` as literal Markdown: no HTML, no emphasis, links, headings or lists.

    Args:
        text: Any text, possibly attacker-controlled.
        inline: Collapse newlines to spaces (for headings and list items); otherwise keep
            them as hard line breaks.
    """
    value = clean_text(text).replace("\r\n", "\n").replace("\r", "\n")
    value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    value = _INLINE.sub(r"\\\1", value)
    if inline:
        return _WHITESPACE.sub(" ", value).strip()
    paragraphs = []
    for block in re.split(r"\n\s*\n", value.strip("\n")):
        lines = [line.strip() for line in block.split("\n") if line.strip()]
        # A backslash at the end of a line is GFM's explicit hard line break.
        joined = "\\\n".join(lines)
        paragraphs.append(_LINE_START.sub(lambda m: m.group(1) + "\\" + m.group(2), joined))
    return "\n\n".join(p for p in paragraphs if p)


def cell(text: object) -> str:
    """``text`` escaped for a table cell: newlines become ``<br>``, pipes are escaped."""
    value = clean_text(text).replace("\r\n", "\n").replace("\r", "\n").strip()
    value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    value = _INLINE.sub(r"\\\1", value)
    return "<br>".join(_WHITESPACE.sub(" ", line).strip() for line in value.split("\n")) or " "


def code(text: object, *, in_table: bool = False) -> str:
    """``text`` as an inline code span that no backtick inside can close early.

    Args:
        text: Any text.
        in_table: Escape ``|``, which splits table rows even inside code spans in GFM.
    """
    value = _WHITESPACE.sub(" ", clean_text(text)).strip()
    if not value:
        return ""
    longest = max((len(m) for m in _BACKTICKS.findall(value)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if value.startswith("`") or value.endswith("`") else ""
    if in_table:
        value = value.replace("|", "\\|")
    return f"{fence}{pad}{value}{pad}{fence}"


def fenced(text: str, info: str = "") -> str:
    """A fenced code block whose fence is longer than any backtick run in ``text``."""
    body = clean_text(text)
    longest = max((len(m) for m in _BACKTICKS.findall(body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{body}\n{fence}"


def table(header: Sequence[str], rows: Iterable[Sequence[str]], align: str = "") -> str:
    """A GFM table; cells must already be escaped with :func:`cell`.

    Args:
        header: Column titles (escaped here).
        rows: Escaped cells.
        align: One character per column: ``l`` (default) or ``r``.
    """
    marks = [("---:" if align[i : i + 1] == "r" else "---") for i in range(len(header))]
    lines = [
        "| " + " | ".join(cell(h) for h in header) + " |",
        "| " + " | ".join(marks) + " |",
    ]
    lines.extend("| " + " | ".join(r) + " |" for r in rows)
    return "\n".join(lines)


_ICON = {"critical": "🟥", "high": "🟧", "medium": "🟨", "low": "🟦", "info": "⬜"}


class MarkdownReporter(Reporter):
    """GitHub-flavoured Markdown: summary, findings by severity, metrics per check.

    Example:
        >>> print(MarkdownReporter().render(run).decode())  # doctest: +SKIP
    """

    name: ClassVar[str] = "md"
    media_type: ClassVar[str] = "text/markdown; charset=utf-8"
    extension: ClassVar[str] = ".md"

    def render(self, run: Run) -> bytes:
        refs = RefResolver()
        facts = summary(run)
        out: list[str] = [f"# phalanx report: {escape(run.command or 'run')}", ""]

        targets = sorted({r.target for r in run.results if r.target})
        meta = [
            ("Run id", code(run.id, in_table=True)),
            ("Status", cell(run.status.value)),
            ("Started", cell(format_time(run.started_at))),
            ("Duration", cell(format_duration(run.duration_s))),
            ("Targets", cell(", ".join(targets) or "—")),
        ]
        version = run.environment.get("phalanx")
        if version:
            meta.append(("phalanx", cell(version)))
        meta.extend((cell(k), cell(v)) for k, v in run.tags.items())
        out += [table(["", ""], meta), ""]

        out += ["## Summary", ""]
        worst = facts["max_severity"]
        if worst is None:
            out += ["No findings." if run.results else "No checks ran.", ""]
        else:
            total = facts["total_findings"]
            out += [f"**{total} finding{'s' if total != 1 else ''}**, highest **{worst}**.", ""]
        out += [
            table(
                ["Severity", "Findings"],
                [
                    (f"{_ICON[label]} {label}", str(n))
                    for label, n in facts["severity_counts"].items()
                ],
                align="lr",
            ),
            "",
        ]
        if run.results:
            out += [
                table(
                    ["Check", "Target", "Findings", "Highest", "Duration"],
                    [self._check_row(r) for r in run.results],
                    align="llrll",
                ),
                "",
            ]

        out += ["## Findings", ""]
        findings = run.findings
        if not findings:
            out += ["No findings.", ""]
        for severity in sorted(Severity, reverse=True):
            group = [f for f in findings if f.severity == severity]
            if not group:
                continue
            out += [f"### {_ICON[severity.label]} {severity.label.capitalize()} ({len(group)})", ""]
            for f in group:
                out += [f"#### {escape(f.title) or '(untitled)'}", ""]
                out += [f"- **Check:** {code(f.check)}", f"- **Id:** {code(f.id)}"]
                if f.plugin_id:
                    plugin = f"{f.plugin_id} {f.plugin_version}".strip()
                    out.append(f"- **Plugin:** {code(plugin)}")
                if f.refs:
                    shown = ", ".join(
                        code(i.ref) + (f" {escape(i.name)}" if i.name else "")
                        for i in refs.infos(f.refs)
                    )
                    out.append(f"- **Refs:** {shown}")
                out.append("")
                if f.detail:
                    out += [escape(f.detail, inline=False), ""]
                if f.remediation:
                    out += [f"**Remediation:** {escape(f.remediation, inline=False)}", ""]
                if f.evidence:
                    out += ["<details><summary>Evidence</summary>", ""]
                    out += [fenced(pretty_json(f.evidence), "json"), "", "</details>", ""]

        if run.results:
            out += ["## Checks", ""]
        for r in run.results:
            out += [f"### {escape(r.title or r.check)}", ""]
            line = f"Check {code(r.check)}"
            if r.target:
                line += f" on {code(r.target)}"
            out += [line + f", {escape(format_duration(r.duration_s))}.", ""]
            if r.error:
                out += [f"> **The check failed:** {escape(r.error)}", ""]
            if r.refs:
                out += ["Covers: " + ", ".join(code(ref) for ref in r.refs), ""]
            if r.metrics:
                rows = [
                    (
                        code(m.name, in_table=True),
                        cell(format_labels(m.labels) or "—"),
                        cell(format_number(m.value)),
                        cell(
                            f"[{format_number(m.lower)}, {format_number(m.upper)}]"
                            if m.lower is not None and m.upper is not None
                            else "—"
                        ),
                        cell(m.unit),
                    )
                    for m in r.metrics
                ]
                out += [
                    table(["Metric", "Labels", "Value", "95% CI", "Unit"], rows, align="llrrl"),
                    "",
                ]
            if r.artifacts:
                out += ["Artifacts (see the HTML or JSON report): " + ", ".join(
                    code(a.name) for a in r.artifacts), ""]

        out += [f"---\n_Generated by phalanx{' ' + escape(version) if version else ''}._", ""]
        return "\n".join(out).encode("utf-8")

    @staticmethod
    def _check_row(result: Result) -> tuple[str, ...]:
        worst = result.max_severity
        if result.error:
            highest = "error"
        elif worst is not None:
            highest = f"{_ICON[worst.label]} {worst.label}"
        else:
            highest = "pass"
        return (
            cell(result.title or result.check),
            cell(result.target or "—"),
            str(len(result.findings)),
            cell(highest),
            cell(format_duration(result.duration_s)),
        )

"""The Markdown report: attacker text cannot become HTML, links or broken tables."""

from __future__ import annotations

import re
from collections.abc import Callable

from markdown_it import MarkdownIt
from report_samples import XSS, HtmlAudit

from phalanx.core import Run
from phalanx.report import MarkdownReporter
from phalanx.report.markdown import cell, code, escape, fenced

_FENCE = re.compile(r"^(`{3,})")


def _outside_fences(text: str) -> str:
    """The document with fenced code blocks removed (fences as CommonMark reads them)."""
    kept: list[str] = []
    fence = ""
    for line in text.split("\n"):
        match = _FENCE.match(line)
        if fence:
            if match and len(match.group(1)) >= len(fence) and not line[len(match.group(1)):].strip():
                fence = ""
            continue
        if match:
            fence = match.group(1)
            continue
        kept.append(line)
    assert not fence, "unclosed code fence"
    return "\n".join(kept)


def _unescaped_pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


def _render(run: Run) -> str:
    data = MarkdownReporter().render(run)
    assert b"\x00" not in data and b"\x07" not in data
    return data.decode("utf-8")


def test_no_raw_html_outside_code_fences(run: Run) -> None:
    outside = _outside_fences(_render(run)).lower()
    assert "<script" not in outside
    assert "<img" not in outside
    assert not re.search(r"(?<!\\)\]\(javascript:", outside)  # no live link syntax


def test_tables_keep_their_shape(run: Run) -> None:
    tables: list[list[str]] = [[]]
    for line in _outside_fences(_render(run)).split("\n"):
        if line.startswith("|"):
            tables[-1].append(line)
        elif tables[-1]:
            tables.append([])
    tables = [t for t in tables if t]
    assert len(tables) >= 5
    for table in tables:
        widths = {_unescaped_pipes(row) for row in table}
        assert len(widths) == 1, table


def test_evidence_fence_is_longer_than_backticks_inside(run: Run) -> None:
    text = _render(run)
    assert "\n`````json\n" in text  # the evidence holds a run of four backticks


def test_rendered_through_a_commonmark_parser_has_no_live_html(
    run: Run, audit_html: Callable[[str], HtmlAudit]
) -> None:
    html = MarkdownIt("commonmark").enable("table").render(_render(run))
    page = audit_html(html)
    assert page.problems() == []
    assert XSS in page.text  # shown, as text
    # one table row per metric: 1 + 10 + 1 robustness metrics, 3 injection metrics
    assert html.count("<tr>") >= 15 + 2


def test_helpers() -> None:
    assert escape("a|b<c>`d`\n# e") == "a\\|b&lt;c&gt;\\`d\\` # e"
    assert escape("# heading\n- item", inline=False) == "\\# heading\\\n\\- item"
    assert cell("x|y\nz") == "x\\|y<br>z"
    assert code("a ``b`` c") == "```a ``b`` c```"
    assert code("p|q", in_table=True) == "`p\\|q`"
    assert fenced("```` x") == "`````\n```` x\n`````"


def test_empty_run(empty_run: Run) -> None:
    text = _render(empty_run)
    assert "No checks ran." in text

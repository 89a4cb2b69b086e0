"""Every format through the one entry point: registered, parsable, robust to odd runs."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable

import pytest
from report_samples import HtmlAudit

from phalanx.core import Finding, Result, Run, Severity, list_plugins, load_plugin
from phalanx.errors import ReportError
from phalanx.report import FORMATS, Reporter, render


def _parses(fmt: str, data: bytes, audit_html: Callable[[str], HtmlAudit]) -> None:
    if fmt in ("json", "sarif"):
        json.loads(data)
    elif fmt == "junit":
        ET.fromstring(data)
    elif fmt == "html":
        assert audit_html(data.decode("utf-8")).problems() == []
    else:
        data.decode("utf-8")


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_format_renders_and_parses(
    fmt: str, run: Run, audit_html: Callable[[str], HtmlAudit]
) -> None:
    _parses(fmt, render(run, fmt), audit_html)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_empty_run_renders(fmt: str, empty_run: Run, audit_html: Callable[[str], HtmlAudit]) -> None:
    _parses(fmt, render(empty_run, fmt), audit_html)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_unknown_refs_render(fmt: str, audit_html: Callable[[str], HtmlAudit]) -> None:
    finding = Finding(
        check="c", severity=Severity.MEDIUM, title="odd refs",
        refs=("no-such-framework:ZZ-1", "bare-ref", "owasp-llm-2025:LLM99", ":"),
    )
    run = Run(command="x", results=[Result(check="c", refs=("nope:1",), findings=[finding])])
    data = render(run, fmt)
    _parses(fmt, data, audit_html)
    assert b"no-such-framework:ZZ-1" in data


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_registered_as_entry_points(fmt: str) -> None:
    names = {p.name for p in list_plugins("reporters")}
    assert fmt in names
    cls = load_plugin("reporters", fmt)
    assert cls is FORMATS[fmt]
    assert issubclass(cls, Reporter)
    assert cls.name == fmt
    assert cls.media_type and cls.extension.startswith(".")


def test_aliases_and_unknown_format(run: Run) -> None:
    assert render(run, "Markdown") == render(run, "md")
    with pytest.raises(ReportError, match="unknown report format"):
        render(run, "pdf")
    with pytest.raises(ReportError):
        render(run, "json", colour="blue")

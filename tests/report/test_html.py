"""The HTML report: self-contained, no live script, attacker text shown as text."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from report_samples import ATTR_BREAK, JS_URL, XSS, HtmlAudit

from phalanx.core import Finding, Result, Run, Severity
from phalanx.report import HtmlReporter, _common


def _render(run: Run) -> str:
    data = HtmlReporter().render(run)
    assert b"\x00" not in data
    return data.decode("utf-8")


def test_no_live_script_and_self_contained(run: Run, audit_html: Callable[[str], HtmlAudit]) -> None:
    page = audit_html(_render(run))
    assert page.problems() == []
    assert "script" not in page.tags
    assert page.tags.count("html") == 1


def test_hostile_text_is_shown_as_text(run: Run, audit_html: Callable[[str], HtmlAudit]) -> None:
    document = _render(run)
    page = audit_html(document)
    assert XSS in page.text
    assert ATTR_BREAK in page.text
    assert JS_URL in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in document
    assert "<script>" not in document.lower()


def test_svg_artifact_is_an_image_never_inline_markup(
    run: Run, audit_html: Callable[[str], HtmlAudit]
) -> None:
    document = _render(run)
    sources = [v for t, n, v in audit_html(document).attrs if t == "img" and n == "src"]
    assert any(s.startswith("data:image/png;base64,") for s in sources)
    assert any(s.startswith("data:image/svg+xml;base64,") for s in sources)
    assert "onload" not in document


def test_sections_a_reader_needs(run: Run, audit_html: Callable[[str], HtmlAudit]) -> None:
    document = _render(run)
    text = audit_html(document).text
    for heading in ("Findings", "Findings by framework", "Checks", "Environment and configuration"):
        assert heading in text
    assert run.id in text
    assert "zoo:mnist-cnn" in text
    assert "[0.39, 0.45]" in text  # a 95% CI in the metrics table
    assert "eps=0.1, attack=pgd" in text
    assert "<details" in document
    # most severe first
    assert text.index("Indirect injection") < text.index("Model is not robust")
    assert text.index("Model is not robust") < text.index("Gradient masking")
    assert text.index("Gradient masking") < text.index("System prompt partially echoed")


def test_plots_are_inline_svg(run: Run, audit_html: Callable[[str], HtmlAudit]) -> None:
    pytest.importorskip("matplotlib")
    document = _render(run)
    page = audit_html(document)
    assert page.tags.count("svg") == 1  # robust_accuracy vs eps; the other metrics do not plot
    assert "<?xml" not in document
    assert "<!DOCTYPE svg" not in document
    assert "Robust accuracy vs eps" in page.text


def test_renders_without_matplotlib(run: Run, monkeypatch: pytest.MonkeyPatch,
                                    audit_html: Callable[[str], HtmlAudit]) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    page = audit_html(_render(run))
    assert "svg" not in page.tags
    assert page.problems() == []


def _fake_taxonomy() -> Any:
    entries = {
        "owasp-llm-2025:LLM01": ("Prompt Injection", "owasp-llm-2025"),
        "atlas:AML.T0015": ("Evade AI Model", "atlas"),
        "nist-aml-2025:NISTAML.022": ("Evasion", "nist-aml-2025"),
        "nist-ai-rmf-1.0:MEASURE-2.7": ("Security and resilience evaluated", "nist-ai-rmf-1.0"),
    }
    frameworks = [
        SimpleNamespace(prefix="owasp-llm-2025", name="OWASP Top 10 for LLM Applications 2025",
                        version="2025"),
        SimpleNamespace(prefix="atlas", name="MITRE ATLAS", version="5.6.0"),
        SimpleNamespace(prefix="nist-aml-2025", name="NIST AI 100-2 E2025", version="E2025"),
        SimpleNamespace(prefix="nist-ai-rmf-1.0", name="NIST AI RMF 1.0", version="1.0"),
    ]

    def find(ref: str) -> Any:
        hit = entries.get(ref)
        return SimpleNamespace(name=hit[0], framework=hit[1]) if hit else None

    return SimpleNamespace(
        find=find, frameworks=lambda: frameworks, label=lambda ref: ref
    )


def test_refs_show_taxonomy_names_and_group_by_framework(
    run: Run, monkeypatch: pytest.MonkeyPatch, audit_html: Callable[[str], HtmlAudit]
) -> None:
    monkeypatch.setattr(_common, "_load_taxonomy", _fake_taxonomy)
    text = audit_html(_render(run)).text
    assert "owasp-llm-2025:LLM01 Prompt Injection" in text
    assert "atlas:AML.T0015 Evade AI Model" in text
    by_framework = text[text.index("Findings by framework"):text.index("Checks", text.index("Findings by framework"))]
    for name in ("OWASP Top 10 for LLM Applications 2025", "MITRE ATLAS", "NIST AI 100-2 E2025",
                 "NIST AI RMF 1.0", "made-up-framework", "Not mapped to any framework"):
        assert name in by_framework
    # the unknown ref is shown bare, in its own group
    assert "made-up-framework:X-99" in by_framework


def test_without_taxonomy_refs_are_bare(run: Run, monkeypatch: pytest.MonkeyPatch,
                                        audit_html: Callable[[str], HtmlAudit]) -> None:
    monkeypatch.setattr(_common, "_load_taxonomy", lambda: None)
    text = audit_html(_render(run)).text
    assert "owasp-llm-2025:LLM01" in text
    assert "atlas" in text


def test_real_taxonomy_names_when_available(run: Run, audit_html: Callable[[str], HtmlAudit]) -> None:
    pytest.importorskip("phalanx.core.taxonomy")
    text = audit_html(_render(run)).text
    assert re.search(r"owasp-llm-2025:LLM01\s+Prompt Injection", text)


def test_empty_run(empty_run: Run, audit_html: Callable[[str], HtmlAudit]) -> None:
    page = audit_html(_render(empty_run))
    assert page.problems() == []
    assert "No checks ran" in page.text


def test_failed_check_and_odd_ids(audit_html: Callable[[str], HtmlAudit]) -> None:
    finding = Finding(check="x", severity=Severity.HIGH, title="t", id='javascript:alert(1)"><b>')
    run = Run(command="x", results=[Result(check="x", error=f"boom {XSS}", findings=[finding])])
    page = audit_html(_render(run))
    assert page.problems() == []
    assert f"boom {XSS}" in page.text

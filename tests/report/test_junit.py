"""The JUnit report: well-formed XML whatever the text, failures from a threshold."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from report_samples import XSS

from phalanx.core import Result, Run
from phalanx.errors import InvalidParameterError
from phalanx.report import JUnitReporter, render


def _parse(data: bytes) -> ET.Element:
    assert data.startswith(b"<?xml")
    return ET.fromstring(data)


@pytest.mark.parametrize(
    ("fail_on", "failures"),
    [("info", 5), ("low", 4), ("medium", 3), ("high", 2), ("critical", 1)],
)
def test_failures_follow_the_threshold(run: Run, fail_on: str, failures: int) -> None:
    root = _parse(JUnitReporter(fail_on=fail_on).render(run))
    assert root.get("failures") == str(failures)
    assert len(root.findall(".//failure")) == failures
    assert root.get("tests") == "5"


def test_default_threshold_is_medium(run: Run) -> None:
    assert JUnitReporter().fail_on == "medium"
    assert _parse(render(run, "junit")).get("failures") == "3"


def test_structure(run: Run) -> None:
    root = _parse(JUnitReporter().render(run))
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["robustness", "prompt-injection"]
    assert [s.get("tests") for s in suites] == ["2", "3"]
    critical = suites[1].find("testcase")
    assert critical is not None
    failure = critical.find("failure")
    assert failure is not None and failure.text is not None
    assert XSS in failure.text  # escaped on the way in, intact on the way out
    assert "\x00" not in failure.text
    below = [c for c in suites[1].findall("testcase") if c.find("failure") is None]
    assert all(c.find("system-out") is not None for c in below)


def test_check_without_findings_passes_and_failed_check_errors() -> None:
    run = Run(
        command="x",
        results=[Result(check="clean"), Result(check="broken", error="boom\x00\x1b[31m")],
    )
    root = _parse(JUnitReporter().render(run))
    clean, broken = root.findall("testsuite")
    assert clean.get("tests") == "1" and clean.get("failures") == "0"
    case = clean.find("testcase")
    assert case is not None and len(case) == 0
    assert broken.get("errors") == "1"
    assert root.get("errors") == "1"


def test_bad_threshold_is_rejected(run: Run) -> None:
    with pytest.raises(InvalidParameterError):
        JUnitReporter(fail_on="severe").render(run)


def test_empty_run(empty_run: Run) -> None:
    root = _parse(JUnitReporter().render(empty_run))
    assert root.get("tests") == "0"
    assert root.findall("testsuite") == []


def test_clean_text_removes_exactly_what_xml_forbids() -> None:
    from phalanx.report._common import clean_text

    def allowed(cp: int) -> bool:  # XML 1.0, production [2] Char
        return (cp in (0x9, 0xA, 0xD) or 0x20 <= cp <= 0xD7FF or 0xE000 <= cp <= 0xFFFD
                or 0x10000 <= cp <= 0x10FFFF)

    everything = "".join(chr(cp) for cp in range(0x110000))
    assert clean_text(everything) == "".join(c for c in everything if allowed(ord(c)))

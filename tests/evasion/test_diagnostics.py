"""Gradient-masking diagnostics: they fire on evaluations that overestimate robustness and stay
quiet on honest ones. The golden test builds a model whose gradients are masked by input
quantisation (Athalye et al. 2018's "shattered gradients"): gradient attacks report it as
robust, the standard suite's black-box Square attack does not, and the diagnostics say so."""

from __future__ import annotations

from typing import Any

import pytest

from phalanx.core import Severity
from phalanx.evasion import RobustnessCheck
from phalanx.evasion.diagnostics import Diagnosis, EpsOutcome, diagnose

torch = pytest.importorskip("torch")


class Quantised(torch.nn.Module):
    """Rounds inputs to 16 levels before the real model: the same predictions, zero gradients."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(torch.round(x * 16) / 16)


class Noisy(torch.nn.Module):
    """Adds fresh noise to the logits on every call: a randomised defense."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        return out + 5 * torch.randn_like(out)


@pytest.fixture(scope="module")
def masked(digits_model: Any) -> Any:
    from phalanx.adapters import TorchClassifier

    return TorchClassifier(Quantised(digits_model.model), input_shape=(1, 8, 8))


def _diagnostic_titles(result: Any) -> list[str]:
    return [f.title for f in result.findings if f.evidence.get("diagnostic")]


def test_golden_masked_gradients_standard_suite_reports_the_lower_figure(
    masked: Any, digits: Any
) -> None:
    x, y = digits
    eps = (0.1, 0.2)
    quick = RobustnessCheck(eps=eps, suite="quick", n=60, examples=0).run(masked, (x, y))
    standard = RobustnessCheck(eps=eps, suite="standard", n=60, examples=0).run(masked, (x, y))
    for e in eps:
        weak = quick.metric("robust_accuracy", eps=e, attack="worst-case").value
        strong = standard.metric("robust_accuracy", eps=e, attack="worst-case").value
        assert strong < weak - 0.3, (e, weak, strong)
    titles = _diagnostic_titles(standard)
    assert any("black-box attacks broke" in t for t in titles)
    # The quick suite cannot see the masking directly, but its huge-budget sanity attack fails.
    assert any("survive a huge budget" in t for t in _diagnostic_titles(quick))
    assert all(f.severity >= Severity.MEDIUM for f in standard.findings
               if f.evidence.get("diagnostic"))


def test_honest_model_raises_no_diagnostic(digits_model: Any, digits: Any) -> None:
    result = RobustnessCheck(eps=(0.05, 0.1, 0.2), n=100, examples=0).run(digits_model, digits)
    assert _diagnostic_titles(result) == []
    assert result.metric("prediction_instability").value == 0.0


def test_randomised_model_is_flagged(digits_model: Any, digits: Any) -> None:
    from phalanx.adapters import TorchClassifier

    noisy = TorchClassifier(Noisy(digits_model.model), input_shape=(1, 8, 8))
    result = RobustnessCheck(eps=(0.1,), n=100, examples=0).run(noisy, digits)
    assert any("change between identical queries" in t for t in _diagnostic_titles(result))


def _outcome(eps: float, robust: dict[str, list[bool]], knowledge: dict[str, str],
             cascade: bool = False) -> EpsOutcome:
    masks = {k: torch.tensor(v) for k, v in robust.items()}
    worst = torch.stack(list(masks.values())).all(dim=0)
    return EpsOutcome(eps, masks, worst, knowledge, cascade)


def test_rising_curve_and_single_step_beating_iterative_are_flagged() -> None:
    wb = {"fgsm": "white-box", "pgd": "white-box"}
    n = 10
    outcomes = [
        _outcome(0.1, {"fgsm": [True] * 3 + [False] * 7, "pgd": [True] * 8 + [False] * 2}, wb),
        _outcome(0.2, {"fgsm": [True] * 6 + [False] * 4, "pgd": [True] * 6 + [False] * 4}, wb),
    ]
    titles = [f.title for f in diagnose(Diagnosis(check="robustness", n=n, outcomes=outcomes))]
    assert any("FGSM beats iterative PGD" in t for t in titles)
    assert any("rises from 30.0%" in t for t in titles)


def test_flat_curve_and_black_box_in_cascade_are_flagged() -> None:
    kn = {"apgd-ce": "white-box", "square": "black-box"}
    n = 20
    robust_wb = [True] * 15 + [False] * 5
    robust_after_square = [True] * 5 + [False] * 15  # cumulative: square broke 10 more
    outcomes = [_outcome(e, {"apgd-ce": robust_wb, "square": robust_after_square}, kn, True)
                for e in (0.1, 0.3)]
    titles = [f.title for f in diagnose(Diagnosis(check="robustness", n=n, outcomes=outcomes))]
    assert any("broke 10 samples that every white-box attack missed" in t for t in titles)
    assert any("does not fall between eps 0.1 and 0.3" in t for t in titles)


def test_clean_curve_yields_nothing() -> None:
    wb = {"fgsm": "white-box", "pgd": "white-box"}
    outcomes = [
        _outcome(0.1, {"fgsm": [True] * 8 + [False] * 2, "pgd": [True] * 7 + [False] * 3}, wb),
        _outcome(0.3, {"fgsm": [True] * 2 + [False] * 8, "pgd": [False] * 10}, wb),
    ]
    d = Diagnosis(check="robustness", n=10, outcomes=outcomes, sanity_eps=0.5, sanity_robust=0.0)
    assert diagnose(d) == []

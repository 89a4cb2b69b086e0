"""DeepFool on a really trained model: small perturbations, budgets and bounds kept."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phalanx.errors import InvalidParameterError
from phalanx.evasion.base import lp_norm
from phalanx.evasion.deepfool import DeepFool
from phalanx.testing import check_attack, check_plugin

torch = pytest.importorskip("torch")

#: Budgets with which 20 steps of PGD bring this model under 10% (L2) and 5% (L-inf)
#: accuracy (tests/evasion/test_attacks.py).
PGD_EPS = {"l2": 2.0, "linf": 0.2}


@pytest.fixture(scope="module")
def correct(digits_model: Any, digits: Any) -> Any:
    """Up to 100 samples the model classifies correctly."""
    x, y = digits
    x, y = x[:100], y[:100]
    with torch.no_grad():
        ok = digits_model.logits(x).argmax(1) == y
    return x[ok], y[ok]


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_deepfool_fools_nearly_every_sample_with_small_perturbations(
    digits_model: Any, correct: Any, norm: str
) -> None:
    x, y = correct
    result = DeepFool(norm=norm).run(digits_model, x, y)
    assert result.success_rate > 0.95
    size = lp_norm(result.x_adv - x, norm)[result.success]
    assert float(size.median()) < 0.5 * PGD_EPS[norm]
    assert float(result.x_adv.min()) >= 0.0
    assert float(result.x_adv.max()) <= 1.0
    assert result.threat_model.eps is None
    assert result.threat_model.norm == norm


def test_overshoot_is_what_crosses_the_boundary(digits_model: Any, correct: Any) -> None:
    x, y = correct
    base = DeepFool().run(digits_model, x, y)
    more = DeepFool(overshoot=0.5).run(digits_model, x, y)
    assert more.success_rate >= base.success_rate
    size = lp_norm(more.x_adv - x, "l2")[more.success]
    assert float(size.median()) > float(lp_norm(base.x_adv - x, "l2")[base.success].median())


def test_fewer_candidates_still_work(digits_model: Any, correct: Any) -> None:
    x, y = correct
    result = DeepFool(n_candidates=3).run(digits_model, x, y)
    assert result.success_rate > 0.9


def test_misclassified_samples_are_left_unchanged(digits_model: Any, digits: Any) -> None:
    x, y = digits
    wrong = (y + 1) % 10  # labels the model disagrees with: already "fooled"
    result = DeepFool().run(digits_model, x[:20], wrong[:20])
    with torch.no_grad():
        pred = digits_model.logits(x[:20]).argmax(1)
    moved = pred == wrong[:20]
    assert torch.equal(result.x_adv[~moved], x[:20][~moved])


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    norm=st.sampled_from(["l2", "linf"]),
    fraction=st.floats(0.02, 1.0),
    n=st.integers(1, 16),
    start=st.integers(0, 80),
)
def test_deepfool_with_a_budget_stays_in_the_ball_and_the_bounds(
    digits_model: Any, digits: Any, norm: str, fraction: float, n: int, start: int
) -> None:
    x, y = digits
    x, y = x[start : start + n], y[start : start + n]
    eps = fraction * PGD_EPS[norm]
    result = DeepFool(eps=eps, norm=norm, max_iter=20).run(digits_model, x, y)
    size = lp_norm(result.x_adv - x, norm)
    assert float(size.max()) <= eps * (1 + 1e-4) + 1e-5
    assert float(result.x_adv.min()) >= 0.0
    assert float(result.x_adv.max()) <= 1.0


def test_deepfool_is_untargeted_only() -> None:
    with pytest.raises(InvalidParameterError, match="untargeted"):
        DeepFool(targeted=True).check_params()
    with pytest.raises(InvalidParameterError) as info:
        DeepFool(eps=-1.0, norm="l1", n_candidates=1).check_params()
    text = str(info.value)
    assert "eps" in text and "norm" in text and "n_candidates" in text


def test_deepfool_passes_the_contract_checks(digits_model: Any, digits: Any) -> None:
    x, y = digits
    check_plugin(DeepFool)
    for norm in ("l2", "linf"):
        check_attack(
            DeepFool(eps=PGD_EPS[norm] / 2, norm=norm, seed=1), digits_model, x[:32], y[:32]
        )

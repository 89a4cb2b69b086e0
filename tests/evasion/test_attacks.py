"""FGSM and PGD on a really trained model: accuracy falls, invariants hold."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phalanx.errors import InputError, InvalidParameterError, NotDifferentiableError, ShapeError
from phalanx.evasion import FGSM, PGD
from phalanx.evasion.base import lp_norm

torch = pytest.importorskip("torch")


def accuracy(model: Any, x: Any, y: Any) -> float:
    with torch.no_grad():
        return float((model.logits(x).argmax(1) == y).float().mean())


@pytest.mark.parametrize(
    ("attack", "ceiling"),
    [
        (FGSM(eps=0.2), 0.35),
        (PGD(eps=0.2, step_size=0.025, max_iter=20), 0.05),
        (PGD(eps=2.0, step_size=0.25, max_iter=20, norm="l2"), 0.10),
    ],
    ids=["fgsm-linf", "pgd-linf", "pgd-l2"],
)
def test_attack_drops_accuracy_of_a_trained_model(
    digits_model: Any, digits: Any, attack: Any, ceiling: float
) -> None:
    x, y = digits
    clean = accuracy(digits_model, x, y)
    assert clean > 0.9
    result = attack.run(digits_model, x, y)
    robust = accuracy(digits_model, result.x_adv, y)
    assert robust < ceiling < clean
    assert result.success_rate >= 1 - robust - 1e-6
    assert result.queries >= len(x)


def test_pgd_is_at_least_as_strong_as_fgsm(digits_model: Any, digits: Any) -> None:
    x, y = digits
    fgsm = FGSM(eps=0.1).run(digits_model, x, y)
    pgd = PGD(eps=0.1, step_size=0.0125, max_iter=20).run(digits_model, x, y)
    assert pgd.success_rate >= fgsm.success_rate


def test_targeted_pgd_reaches_its_targets(digits_model: Any, digits: Any) -> None:
    x, y = digits
    target = (y + 1) % 10
    result = PGD(eps=0.3, step_size=0.03, max_iter=30, targeted=True).run(
        digits_model, x[:100], y[:100], target=target[:100])
    reached = float((result.adv_pred == target[:100]).float().mean())
    assert reached > 0.9
    assert torch.equal(result.success, result.adv_pred == target[:100])


def test_random_targets_never_equal_the_true_class(digits_model: Any, digits: Any) -> None:
    x, y = digits
    result = FGSM(eps=0.1, targeted=True, seed=3).run(digits_model, x, y)
    assert result.target is not None
    assert bool((result.target != y).all())


def test_results_are_reproducible_with_a_seed(digits_model: Any, digits: Any) -> None:
    x, y = digits
    a = PGD(eps=0.1, step_size=0.02, max_iter=5, seed=7).run(digits_model, x[:64], y[:64])
    b = PGD(eps=0.1, step_size=0.02, max_iter=5, seed=7).run(digits_model, x[:64], y[:64])
    c = PGD(eps=0.1, step_size=0.02, max_iter=5, seed=8).run(digits_model, x[:64], y[:64])
    assert torch.equal(a.x_adv, b.x_adv)
    assert not torch.equal(a.x_adv, c.x_adv)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    eps=st.floats(0.01, 0.5),
    norm=st.sampled_from(["linf", "l2"]),
    restarts=st.integers(1, 2),
    start=st.integers(0, 300),
)
def test_outputs_stay_in_the_ball_and_in_bounds(
    digits_model: Any, digits: Any, eps: float, norm: str, restarts: int, start: int
) -> None:
    x, y = digits
    xs, ys = x[start : start + 16], y[start : start + 16]
    for attack in (FGSM(eps=eps, norm=norm),
                   PGD(eps=eps, step_size=eps / 3, max_iter=4, norm=norm, restarts=restarts)):
        adv = attack.run(digits_model, xs, ys).x_adv
        assert float(lp_norm(adv - xs, norm).max()) <= eps * (1 + 1e-4) + 1e-6
        assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0


def test_white_box_attack_refuses_a_non_differentiable_model(digits: Any) -> None:
    from sklearn.linear_model import LogisticRegression

    from phalanx.adapters import SklearnClassifier

    x, y = digits
    est = LogisticRegression(max_iter=200).fit(x.reshape(len(x), -1).numpy(), y.numpy())
    clf = SklearnClassifier(est, input_shape=(1, 8, 8))
    with pytest.raises(NotDifferentiableError, match="white-box"):
        PGD(eps=0.1).run(clf, x, y)


def test_bad_inputs_give_clear_errors(digits_model: Any, digits: Any) -> None:
    x, y = digits
    with pytest.raises(ShapeError, match="expects"):
        FGSM().run(digits_model, x.reshape(len(x), -1), y)
    with pytest.raises(InputError, match="outside the model's bounds"):
        FGSM().run(digits_model, x * 16, y)
    with pytest.raises(InputError, match="labels range"):
        FGSM().run(digits_model, x, y + 5)
    with pytest.raises(ShapeError, match="labels must have shape"):
        FGSM().run(digits_model, x, y[:-1])


@pytest.mark.parametrize("eps", [0, -0.1])
def test_non_positive_eps_is_rejected(digits_model: Any, digits: Any, eps: float) -> None:
    x, y = digits
    with pytest.raises(InvalidParameterError, match="eps must be"):
        PGD(eps=eps).run(digits_model, x, y)
    with pytest.raises(InvalidParameterError, match="norm must be"):
        PGD(norm="l3").run(digits_model, x, y)

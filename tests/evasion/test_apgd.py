"""APGD and APGD-T on a really trained model: schedule, DLR loss, strength and invariants."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phalanx.errors import InputError, InvalidParameterError
from phalanx.evasion import PGD
from phalanx.evasion.apgd import APGD, checkpoints, dlr_loss
from phalanx.evasion.apgd_t import APGDT
from phalanx.evasion.base import lp_norm
from phalanx.testing import check_attack, check_plugin

torch = pytest.importorskip("torch")


def accuracy(model: Any, x: Any, y: Any) -> float:
    with torch.no_grad():
        return float((model.logits(x).argmax(1) == y).float().mean())


def schedule_by_formula(n_iter: int) -> list[int]:
    """The paper's p_j in floating point, rounded before the ceiling."""
    p = [0.0, 0.22]
    while p[-1] + max(p[-1] - p[-2] - 0.03, 0.06) <= 1 + 1e-9:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    out: list[int] = []
    for pj in p:
        w = math.ceil(round(pj * n_iter, 6))
        if not out or w != out[-1]:
            out.append(w)
    return out


def test_checkpoints_for_100_iterations() -> None:
    # p = 0, .22, .41 (= .22 + .19), .57 (+.16), .70 (+.13), .80 (+.10), .87 (+.07), .93, .99
    assert checkpoints(100) == [0, 22, 41, 57, 70, 80, 87, 93, 99]


@pytest.mark.parametrize("n_iter", [1, 5, 10, 20, 37, 50, 100, 250, 1000])
def test_checkpoints_follow_the_formula(n_iter: int) -> None:
    marks = checkpoints(n_iter)
    assert marks == schedule_by_formula(n_iter)
    assert marks[0] == 0 and marks == sorted(set(marks)) and marks[-1] <= n_iter


def test_dlr_by_hand() -> None:
    z = torch.tensor([[5.0, 3.0, 1.0, 0.0, -1.0]])
    y = torch.tensor([0])
    # -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3) = -(5 - 3) / (5 - 1)
    assert float(dlr_loss(z, y)) == pytest.approx(-0.5)
    # the true class second: -(3 - 5) / (5 - 1)
    assert float(dlr_loss(z, torch.tensor([1]))) == pytest.approx(0.5)
    # targeted: -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2) = -(5 - 0) / (5 - 0.5)
    assert float(dlr_loss(z, y, torch.tensor([3]))) == pytest.approx(-5 / 4.5)


logit_rows = st.lists(st.floats(-20, 20), min_size=6, max_size=6, unique=True).filter(
    lambda v: sorted(v)[-1] - sorted(v)[-3] > 0.1 and sorted(v)[-1] - sorted(v)[-4] > 0.1
)


@settings(max_examples=60, deadline=None)
@given(
    row=logit_rows,
    a=st.floats(0.01, 100),
    b=st.floats(-100, 100),
    label=st.integers(0, 5),
    shift=st.integers(1, 5),
)
def test_dlr_is_shift_and_scale_invariant(
    row: list[float], a: float, b: float, label: int, shift: int
) -> None:
    z = torch.tensor([row], dtype=torch.float64)
    y = torch.tensor([label])
    t = (y + shift) % 6
    for target in (None, t):
        before = dlr_loss(z, y, target)
        after = dlr_loss(a * z + b, y, target)
        assert torch.allclose(before, after, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(
    "attack",
    [
        APGD(eps=0.2, loss="ce", max_iter=20, seed=0),
        APGD(eps=0.2, loss="dlr", max_iter=20, seed=0),
        APGDT(eps=0.2, max_iter=20, n_target_classes=3, seed=0),
        APGD(eps=2.0, norm="l2", loss="ce", max_iter=20, seed=0),
        APGD(eps=2.0, norm="l2", loss="dlr", max_iter=20, seed=0),
        APGDT(eps=2.0, norm="l2", max_iter=20, n_target_classes=3, seed=0),
    ],
    ids=["ce-linf", "dlr-linf", "t-linf", "ce-l2", "dlr-l2", "t-l2"],
)
def test_apgd_drops_accuracy_of_a_trained_model(
    digits_model: Any, digits: Any, attack: Any
) -> None:
    x, y = digits
    x, y = x[:100], y[:100]
    clean = accuracy(digits_model, x, y)
    assert clean > 0.9
    result = attack.run(digits_model, x, y)
    robust = accuracy(digits_model, result.x_adv, y)
    assert robust < 0.05 < clean
    assert result.success_rate == pytest.approx(1 - robust)
    assert result.target is None


def test_apgd_is_at_least_as_strong_as_pgd(digits_model: Any, digits: Any) -> None:
    x, y = digits
    x, y = x[:80], y[:80]
    pgd = PGD(eps=0.1, step_size=0.025, max_iter=20, seed=0).run(digits_model, x, y)
    for loss in ("ce", "dlr"):
        apgd = APGD(eps=0.1, loss=loss, max_iter=20, seed=0).run(digits_model, x, y)
        assert 1 - apgd.success_rate <= 1 - pgd.success_rate + 0.03


def test_apgd_t_is_at_least_as_strong_as_apgd_dlr(digits_model: Any, digits: Any) -> None:
    x, y = digits
    x, y = x[:80], y[:80]
    single = APGD(eps=0.1, loss="dlr", max_iter=15, seed=0).run(digits_model, x, y)
    multi = APGDT(eps=0.1, max_iter=15, n_target_classes=3, seed=0).run(digits_model, x, y)
    assert multi.success_rate >= single.success_rate - 0.02


@pytest.mark.parametrize(
    "attack",
    [
        APGD(eps=0.3, loss="ce", max_iter=30, targeted=True),
        APGD(eps=0.3, loss="dlr", max_iter=30, targeted=True),
        APGDT(eps=0.3, max_iter=30, targeted=True),
    ],
    ids=["ce", "dlr", "apgd-t"],
)
def test_targeted_apgd_reaches_its_targets(digits_model: Any, digits: Any, attack: Any) -> None:
    x, y = digits
    x, y = x[:100], y[:100]
    target = (y + 1) % 10
    result = attack.run(digits_model, x, y, target=target)
    assert torch.equal(result.target, target)
    assert torch.equal(result.success, result.adv_pred == target)
    assert result.success_rate > 0.9


def test_restarts_only_add_successes(digits_model: Any, digits: Any) -> None:
    x, y = digits
    x, y = x[:100], y[:100]
    one = APGD(eps=0.08, max_iter=10, seed=3).run(digits_model, x, y)
    three = APGD(eps=0.08, max_iter=10, restarts=3, seed=3).run(digits_model, x, y)
    assert bool((three.success | ~one.success).all())  # restarts keep the first run's successes
    assert three.queries > one.queries


def test_fooled_samples_leave_the_run_early(digits_model: Any, digits: Any) -> None:
    x, y = digits
    x, y = x[:100], y[:100]
    result = APGD(eps=0.3, max_iter=100, seed=0).run(digits_model, x, y)
    assert result.success_rate > 0.95
    # A clean pass, the start and a few steps for most samples, not 101 passes for each.
    assert result.queries < 40 * len(x)


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    eps=st.floats(0.01, 0.5),
    norm=st.sampled_from(["linf", "l2"]),
    loss=st.sampled_from(["ce", "dlr"]),
    restarts=st.integers(1, 2),
    start=st.integers(0, 300),
)
def test_outputs_stay_in_the_ball_and_in_bounds(
    digits_model: Any, digits: Any, eps: float, norm: str, loss: str, restarts: int, start: int
) -> None:
    x, y = digits
    xs, ys = x[start : start + 16], y[start : start + 16]
    for attack in (
        APGD(eps=eps, norm=norm, loss=loss, max_iter=6, restarts=restarts, seed=1),
        APGDT(eps=eps, norm=norm, max_iter=4, restarts=restarts, n_target_classes=2, seed=1),
    ):
        adv = attack.run(digits_model, xs, ys).x_adv
        assert float(lp_norm(adv - xs, norm).max()) <= eps * (1 + 1e-4) + 1e-6
        assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0


def test_contracts(digits_model: Any, digits: Any) -> None:
    x, y = digits
    check_plugin(APGD)
    check_plugin(APGDT)
    for norm, eps in (("linf", 0.1), ("l2", 1.0)):
        for attack in (
            APGD(eps=eps, norm=norm, loss="dlr", max_iter=10, seed=0),
            APGDT(eps=eps, norm=norm, max_iter=5, n_target_classes=3, seed=0),
        ):
            check_attack(attack, digits_model, x[:32], y[:32])


def test_parameters_are_checked(digits_model: Any, digits: Any) -> None:
    x, y = digits
    with pytest.raises(InvalidParameterError) as info:
        APGD(loss="hinge", rho=1.5, max_iter=0).run(digits_model, x[:4], y[:4])
    text = str(info.value)
    assert "loss must be" in text and "rho must be" in text and "max_iter must be" in text
    assert "loss" not in APGDT().get_params()
    with pytest.raises(InvalidParameterError, match="n_target_classes"):
        APGDT(n_target_classes=0).run(digits_model, x[:4], y[:4])


def test_dlr_needs_enough_classes() -> None:
    from phalanx.adapters import TorchClassifier

    clf = TorchClassifier(torch.nn.Linear(4, 2), input_shape=(4,))
    x, y = torch.rand(5, 4), torch.zeros(5, dtype=torch.long)
    with pytest.raises(InputError, match="at least 3 classes"):
        APGD(loss="dlr").run(clf, x, y)
    with pytest.raises(InputError, match="at least 4 classes"):
        APGDT().run(clf, x, y)
    assert APGD(loss="ce", max_iter=3).run(clf, x, y).x_adv.shape == x.shape

"""FAB on a really trained model: exact projections, strength, minimal norms and invariants."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phalanx.errors import InvalidParameterError
from phalanx.evasion import PGD
from phalanx.evasion.base import lp_norm
from phalanx.evasion.fab import FAB, project_onto_hyperplane_box
from phalanx.testing import check_attack, check_plugin

torch = pytest.importorskip("torch")


def accuracy(model: Any, x: Any, y: Any) -> float:
    with torch.no_grad():
        return float((model.logits(x).argmax(1) == y).float().mean())


def _norm(v: np.ndarray, norm: str) -> float:
    return float({"linf": np.abs(v).max(), "l2": np.linalg.norm(v), "l1": np.abs(v).sum()}[norm])


def _reference(x: np.ndarray, w: np.ndarray, b: float, norm: str) -> np.ndarray | None:
    """The projection by a generic solver (LP for L-inf and L1, SLSQP for L2); None: empty."""
    optimize = pytest.importorskip("scipy.optimize")
    d, rhs = len(x), -(w @ x + b)
    lo, hi = -x, 1 - x
    if norm == "linf":  # variables (delta, s): min s with |delta_i| <= s
        a_ub = np.c_[np.vstack([np.eye(d), -np.eye(d)]), -np.ones((2 * d, 1))]
        res = optimize.linprog(
            np.r_[np.zeros(d), 1.0],
            A_ub=a_ub,
            b_ub=np.zeros(2 * d),
            A_eq=np.r_[w, 0.0][None],
            b_eq=[rhs],
            bounds=[*zip(lo, hi, strict=True), (0, None)],
        )
        return res.x[:d] if res.status == 0 else None
    if norm == "l1":  # delta = p - q with p, q >= 0
        res = optimize.linprog(
            np.ones(2 * d),
            A_eq=np.r_[w, -w][None],
            b_eq=[rhs],
            bounds=[(0, h) for h in hi] + [(0, -v) for v in lo],
        )
        return res.x[:d] - res.x[d:] if res.status == 0 else None
    res = optimize.minimize(
        lambda z: z @ z,
        np.zeros(d),
        jac=lambda z: 2 * z,
        bounds=list(zip(lo, hi, strict=True)),
        constraints=[{"type": "eq", "fun": lambda z: w @ z - rhs, "jac": lambda z: w}],
        method="SLSQP",
        options={"ftol": 1e-14, "maxiter": 500},
    )
    return res.x if res.success else None


@settings(max_examples=40, deadline=None)
@given(
    norm=st.sampled_from(["linf", "l2", "l1"]),
    seed=st.integers(0, 10_000),
    d=st.integers(2, 10),
    edges=st.booleans(),
    scale=st.sampled_from([0.1, 1.0, 3.0]),
)
def test_projection_onto_hyperplane_and_box_is_exact(
    norm: str, seed: int, d: int, edges: bool, scale: float
) -> None:
    rng = np.random.default_rng(seed)
    x = rng.random(d)
    w = rng.normal(size=d)
    if edges:  # points on the box's faces and zero weights
        x[rng.random(d) < 0.3] = rng.choice([0.0, 1.0])
        w[rng.random(d) < 0.3] = 0.0
    b = float(rng.normal() * scale)
    got = project_onto_hyperplane_box(
        torch.tensor(x[None]),
        torch.tensor(w[None]),
        torch.tensor([b], dtype=torch.float64),
        0.0,
        1.0,
        norm,
    )[0].numpy()
    z = x + got
    assert (z >= -1e-12).all() and (z <= 1 + 1e-12).all()
    ref = _reference(x, w, b, norm)
    if ref is None:  # the hyperplane misses the box: go as far towards it as the box allows
        v = w @ x + b
        room = np.where(-np.sign(v) * w > 0, 1 - x, x) * (w != 0)
        assert w @ z + b == pytest.approx(v - np.sign(v) * (np.abs(w) * room).sum(), abs=1e-9)
    else:
        assert w @ z + b == pytest.approx(0.0, abs=1e-9)
        assert _norm(got, norm) <= _norm(ref, norm) + 1e-7


def test_projection_is_vectorised_over_rows() -> None:
    gen = torch.Generator().manual_seed(0)
    x, w, b = torch.rand(50, 30, generator=gen), torch.randn(50, 30, generator=gen), torch.randn(50)
    for norm in ("linf", "l2", "l1"):
        batch = project_onto_hyperplane_box(x, w, b, 0.0, 1.0, norm)
        one = torch.cat([project_onto_hyperplane_box(x[i : i + 1], w[i : i + 1], b[i : i + 1],
                                                      0.0, 1.0, norm) for i in range(50)])  # fmt: skip
        assert torch.allclose(batch, one)


@pytest.mark.parametrize(
    "attack",
    [
        FAB(eps=0.2, max_iter=20, n_target_classes=3, seed=0),
        FAB(eps=0.2, max_iter=10, targeted_variant=False, seed=0),
        FAB(eps=2.0, norm="l2", max_iter=20, n_target_classes=3, seed=0),
        FAB(eps=2.0, norm="l2", max_iter=10, targeted_variant=False, seed=0),
    ],
    ids=["fab-t-linf", "fab-linf", "fab-t-l2", "fab-l2"],
)
def test_fab_drops_accuracy_of_a_trained_model(digits_model: Any, digits: Any, attack: Any) -> None:
    x, y = digits
    x, y = x[:80], y[:80]
    clean = accuracy(digits_model, x, y)
    result = attack.run(digits_model, x, y)
    robust = accuracy(digits_model, result.x_adv, y)
    assert robust < 0.05 < clean
    assert result.success_rate == pytest.approx(1 - robust)


def test_fab_finds_smaller_perturbations_than_pgd(digits_model: Any, digits: Any) -> None:
    x, y = digits
    x, y = x[:60], y[:60]
    eps = 0.5
    correct = digits_model.logits(x).argmax(1) == y
    fab = FAB(eps=eps, max_iter=30, n_target_classes=2, seed=0).run(digits_model, x, y)
    pgd = PGD(eps=eps, step_size=0.05, max_iter=20, seed=0).run(digits_model, x, y)
    fab_sizes = fab.perturbation_norms(x)[fab.success & correct]
    pgd_sizes = pgd.perturbation_norms(x)[pgd.success & correct]
    assert len(fab_sizes) >= 0.9 * int(correct.sum())
    assert float(fab_sizes.median()) < 0.4 * eps
    assert float(fab_sizes.median()) < 0.5 * float(pgd_sizes.median())


def test_fab_returns_the_input_when_nothing_lies_within_eps(digits_model: Any, digits: Any) -> None:
    x, y = digits
    x, y = x[:40], y[:40]
    result = FAB(eps=0.005, max_iter=10, n_target_classes=2, seed=0).run(digits_model, x, y)
    correct = digits_model.logits(x).argmax(1) == y
    failed = ~result.success
    assert bool(failed.any())
    assert torch.equal(result.x_adv[failed], x[failed])
    assert bool((result.success == ~correct).all())  # nothing this close; only the clean errors


def test_targeted_fab_reaches_its_targets(digits_model: Any, digits: Any) -> None:
    x, y = digits
    x, y = x[:60], y[:60]
    target = (y + 1) % 10
    result = FAB(eps=0.4, max_iter=20, targeted=True, seed=0).run(digits_model, x, y, target=target)
    assert torch.equal(result.success, result.adv_pred == target)
    assert result.success_rate > 0.9


def test_restarts_only_add_successes(digits_model: Any, digits: Any) -> None:
    x, y = digits
    x, y = x[:60], y[:60]
    one = FAB(eps=0.08, max_iter=10, n_target_classes=1, seed=2).run(digits_model, x, y)
    two = FAB(eps=0.08, max_iter=10, n_target_classes=1, restarts=2, seed=2).run(digits_model, x, y)
    assert bool((two.success | ~one.success).all())
    assert two.queries > one.queries


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    eps=st.floats(0.01, 3.0),
    norm=st.sampled_from(["linf", "l2", "l1"]),
    variant=st.booleans(),
    restarts=st.integers(1, 2),
    start=st.integers(0, 300),
)
def test_outputs_stay_in_the_ball_and_in_bounds(
    digits_model: Any, digits: Any, eps: float, norm: str, variant: bool, restarts: int, start: int
) -> None:
    x, y = digits
    xs, ys = x[start : start + 16], y[start : start + 16]
    attack = FAB(eps=eps, norm=norm, max_iter=5, restarts=restarts, n_target_classes=2,
                 targeted_variant=variant, seed=1)  # fmt: skip
    result = attack.run(digits_model, xs, ys)
    assert float(lp_norm(result.x_adv - xs, norm).max()) <= eps * (1 + 1e-4) + 1e-6
    assert float(result.x_adv.min()) >= 0.0 and float(result.x_adv.max()) <= 1.0


def test_contracts(digits_model: Any, digits: Any) -> None:
    x, y = digits
    check_plugin(FAB)
    for norm, eps in (("linf", 0.1), ("l2", 1.0), ("l1", 3.0)):
        attack = FAB(eps=eps, norm=norm, max_iter=5, n_target_classes=2, seed=0)
        check_attack(attack, digits_model, x[:32], y[:32])


def test_parameters_are_checked(digits_model: Any, digits: Any) -> None:
    x, y = digits
    with pytest.raises(InvalidParameterError) as info:
        FAB(eta=0.5, beta=1.5, alpha_max=-0.1).run(digits_model, x[:4], y[:4])
    text = str(info.value)
    assert "eta must be" in text and "beta must be" in text and "alpha_max must be" in text

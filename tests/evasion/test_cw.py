"""Carlini & Wagner L2 on a really trained model: minimum norms, budgets, targets, bounds."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phalanx.errors import InvalidParameterError
from phalanx.evasion.base import lp_norm
from phalanx.evasion.cw import CarliniWagnerL2
from phalanx.evasion.deepfool import DeepFool
from phalanx.testing import check_attack, check_plugin

torch = pytest.importorskip("torch")

#: A budget small enough for a test that still finds near-minimal examples on this model
#: (the paper's defaults, 1000 iterations x 9 constants, give about 3% smaller norms).
FAST = {"learning_rate": 0.1, "max_iter": 100, "binary_search_steps": 5}
#: The L2 budget with which 20 steps of PGD bring this model under 10% accuracy
#: (tests/evasion/test_attacks.py).
PGD_L2_EPS = 2.0


class Shifted(torch.nn.Module):
    """The same network with every logit lowered by ``shift``: same argmax, all negative."""

    def __init__(self, net: Any, shift: float = 1000.0) -> None:
        super().__init__()
        self.net = net
        self.shift = shift

    def forward(self, x: Any) -> Any:
        return self.net(x) - self.shift


class Rescaled(torch.nn.Module):
    """The same network reading inputs in ``[-1, 1]`` instead of ``[0, 1]``."""

    def __init__(self, net: Any) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Any) -> Any:
        return self.net((x + 1) / 2)


@pytest.fixture(scope="module")
def correct(digits_model: Any, digits: Any) -> Any:
    """Up to 100 samples the model classifies correctly."""
    x, y = digits
    x, y = x[:100], y[:100]
    with torch.no_grad():
        ok = digits_model.logits(x).argmax(1) == y
    return x[ok], y[ok]


@pytest.fixture(scope="module")
def cw_result(digits_model: Any, correct: Any) -> Any:
    x, y = correct
    return CarliniWagnerL2(**FAST).run(digits_model, x, y)


def median_norm(result: Any, x: Any) -> float:
    return float(lp_norm(result.x_adv - x, "l2")[result.success].median())


def test_cw_finds_small_perturbations_for_nearly_every_sample(
    digits_model: Any, correct: Any, cw_result: Any
) -> None:
    x, y = correct
    deepfool = DeepFool().run(digits_model, x, y)
    assert cw_result.success_rate > 0.95
    assert deepfool.success_rate > 0.95
    cw_median, deepfool_median = median_norm(cw_result, x), median_norm(deepfool, x)
    # C&W optimises the norm directly; DeepFool only follows linearised boundaries.
    assert cw_median <= 1.1 * deepfool_median
    assert cw_median < 0.5 * PGD_L2_EPS
    assert deepfool_median < 0.5 * PGD_L2_EPS
    assert float(cw_result.x_adv.min()) >= 0.0
    assert float(cw_result.x_adv.max()) <= 1.0
    assert cw_result.threat_model.eps is None
    assert cw_result.threat_model.norm == "l2"


def test_cw_handles_all_negative_logits(digits_model: Any, correct: Any, cw_result: Any) -> None:
    """Regression: the max over the other classes must not pick a masked-out zero.

    torchattacks' ``CW.f`` masks the true class by multiplying with a one-hot vector, so when
    every logit is negative the "other" maximum (and the true logit) become 0 and the loss
    gives no signal (Harry24k/adversarial-attacks-pytorch#184).
    """
    from phalanx.adapters import TorchClassifier

    x, y = correct
    shifted = TorchClassifier(
        Shifted(digits_model.model), input_shape=digits_model.input_shape, bounds=(0.0, 1.0)
    )
    with torch.no_grad():
        logits = shifted.logits(x)
    assert bool((logits < 0).all())
    assert torch.equal(logits.argmax(1), digits_model.logits(x).argmax(1))
    result = CarliniWagnerL2(**FAST).run(shifted, x, y)
    assert result.success_rate > 0.95
    assert median_norm(result, x) == pytest.approx(median_norm(cw_result, x), rel=0.05)


def test_cw_respects_bounds_other_than_the_unit_interval(
    digits_model: Any, correct: Any, cw_result: Any
) -> None:
    from phalanx.adapters import TorchClassifier

    x, y = correct
    wide = TorchClassifier(
        Rescaled(digits_model.model), input_shape=digits_model.input_shape, bounds=(-1.0, 1.0)
    )
    x_wide = x * 2 - 1
    result = CarliniWagnerL2(**FAST).run(wide, x_wide, y)
    assert result.success_rate > 0.95
    assert float(result.x_adv.min()) >= -1.0
    assert float(result.x_adv.max()) <= 1.0
    # Inputs twice as wide need perturbations twice as large.
    assert median_norm(result, x_wide) == pytest.approx(2 * median_norm(cw_result, x), rel=0.1)


def test_targeted_cw_reaches_its_targets(digits_model: Any, correct: Any) -> None:
    x, y = correct
    x, y = x[:50], y[:50]
    target = (y + 1) % 10
    result = CarliniWagnerL2(targeted=True, **FAST).run(digits_model, x, y, target=target)
    assert float((result.adv_pred == target).float().mean()) > 0.95
    assert torch.equal(result.success, result.adv_pred == target)


def test_confidence_buys_a_margin(digits_model: Any, correct: Any) -> None:
    x, y = correct
    x, y = x[:30], y[:30]
    result = CarliniWagnerL2(confidence=2.0, **FAST).run(digits_model, x, y)
    assert result.success_rate > 0.9
    with torch.no_grad():
        logits = digits_model.logits(result.x_adv[result.success])
    true = logits.gather(1, y[result.success][:, None]).squeeze(1)
    others = logits.scatter(1, y[result.success][:, None], float("-inf")).amax(1)
    assert bool((others - true >= 2.0 - 1e-3).all())


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(eps=st.floats(0.05, 1.5), n=st.integers(1, 8), start=st.integers(0, 80))
def test_cw_with_a_budget_stays_in_the_ball_and_the_bounds(
    digits_model: Any, digits: Any, eps: float, n: int, start: int
) -> None:
    x, y = digits
    x, y = x[start : start + n], y[start : start + n]
    attack = CarliniWagnerL2(eps=eps, learning_rate=0.1, max_iter=20, binary_search_steps=3)
    result = attack.run(digits_model, x, y)
    size = lp_norm(result.x_adv - x, "l2")
    assert float(size.max()) <= eps * (1 + 1e-4) + 1e-5
    assert float(result.x_adv.min()) >= 0.0
    assert float(result.x_adv.max()) <= 1.0
    # A sample without a success inside the ball comes back unchanged.
    with torch.no_grad():
        fooled = digits_model.logits(result.x_adv).argmax(1) != y
    assert torch.equal(result.x_adv[~fooled], x[~fooled])
    assert result.threat_model.eps == pytest.approx(eps)


def test_cw_parameters_are_validated() -> None:
    assert CarliniWagnerL2().param_problems() == []
    with pytest.raises(InvalidParameterError) as info:
        CarliniWagnerL2(eps=0.0, norm="linf", binary_search_steps=0).check_params()
    text = str(info.value)
    assert "eps" in text and "norm" in text and "binary_search_steps" in text


def test_cw_passes_the_contract_checks(digits_model: Any, digits: Any) -> None:
    x, y = digits
    check_plugin(CarliniWagnerL2)
    attack = CarliniWagnerL2(eps=1.0, learning_rate=0.1, max_iter=20, binary_search_steps=3, seed=1)
    check_attack(attack, digits_model, x[:16], y[:16])

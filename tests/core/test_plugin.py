from __future__ import annotations

import pytest

from phalanx.core import Interval, OneOf, Plugin
from phalanx.errors import InvalidParameterError


class Toy(Plugin):
    name = "toy"
    constraints = {
        "eps": Interval(0, None, closed="neither"),
        "max_iter": Interval(1, None, integer=True),
        "norm": OneOf(("linf", "l2")),
    }

    def __init__(self, *, eps: float = 0.1, max_iter: int = 10, norm: str = "linf") -> None:
        self.eps = eps
        self.max_iter = max_iter
        self.norm = norm


def test_params_come_from_the_signature_and_round_trip() -> None:
    toy = Toy(eps=0.3, norm="l2")
    assert Toy.param_names() == ["eps", "max_iter", "norm"]
    assert toy.get_params() == {"eps": 0.3, "max_iter": 10, "norm": "l2"}
    assert Toy(**toy.get_params()).get_params() == toy.get_params()
    assert toy.with_params(max_iter=5).max_iter == 5
    assert repr(toy) == "Toy(eps=0.3, max_iter=10, norm='l2')"


def test_constraints_report_every_problem_at_once() -> None:
    bad = Toy(eps=0, max_iter=2.5, norm="l7")  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError) as info:
        bad.check_params()
    assert len(info.value.problems) == 3
    assert "eps must be a number in (0, inf)" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_with_params_rejects_unknown_names() -> None:
    with pytest.raises(InvalidParameterError, match="no parameter 'epsilon'"):
        Toy().with_params(epsilon=1)


@pytest.mark.parametrize(
    ("rule", "value", "ok"),
    [
        (Interval(0, 1), 1, True),
        (Interval(0, 1, closed="left"), 1, False),
        (Interval(0, 1), True, False),
        (Interval(0, None), float("inf"), False),
        (Interval(1, None, integer=True, optional=True), None, True),
        (Interval(1, None, integer=True), "3", False),
    ],
)
def test_interval(rule: Interval, value: object, ok: bool) -> None:
    assert (rule.problem("x", value) is None) is ok

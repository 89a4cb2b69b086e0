from __future__ import annotations

import math

import pytest

from phalanx.core.stats import _normal_quantile, wilson_interval


def test_normal_quantile_matches_known_values() -> None:
    assert _normal_quantile(0.975) == pytest.approx(1.959963985, abs=1e-8)
    assert _normal_quantile(0.5) == pytest.approx(0.0, abs=1e-12)
    assert _normal_quantile(0.001) == pytest.approx(-3.090232306, abs=1e-8)


def test_wilson_interval_known_value_and_edges() -> None:
    # Textbook example: 81 of 263 -> (0.2553, 0.3662) at 95%.
    lo, hi = wilson_interval(81, 263)
    assert (round(lo, 4), round(hi, 4)) == (0.2553, 0.3662)
    assert wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_wilson_interval_contains_the_estimate_and_narrows_with_n() -> None:
    for n in (10, 100, 1000):
        lo, hi = wilson_interval(n // 3, n)
        assert lo <= (n // 3) / n <= hi
    assert math.isclose(sum(wilson_interval(50, 100)), 1.0)
    assert wilson_interval(300, 1000)[1] - wilson_interval(300, 1000)[0] < \
        wilson_interval(30, 100)[1] - wilson_interval(30, 100)[0]

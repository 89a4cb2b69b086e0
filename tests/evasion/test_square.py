"""Square Attack on really trained models, behind every kind of adapter; budget and ball kept."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from phalanx.errors import InvalidParameterError
from phalanx.evasion.base import lp_norm
from phalanx.evasion.square import Square, meta_pattern, p_schedule, pseudo_gaussian

torch = pytest.importorskip("torch")

N = 50  # samples per accuracy test


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    # Queries on these tiny models are latency bound: extra threads (torch's or BLAS's) only
    # add overhead, and a lot of it on a busy machine.
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpoolctl.threadpool_limits(limits=1):
        yield
    torch.set_num_threads(before)


def accuracy(model: Any, x: Any, y: Any) -> float:
    with torch.no_grad():
        return float((model.logits(x).argmax(1) == y).float().mean())


@pytest.fixture(scope="module")
def sklearn_digits() -> Any:
    """A logistic regression trained on scikit-learn's digits, as (classifier, x, y)."""
    np = pytest.importorskip("numpy")
    datasets = pytest.importorskip("sklearn.datasets")
    from sklearn.linear_model import LogisticRegression

    from phalanx.adapters import SklearnClassifier

    data = datasets.load_digits()
    x = (data.images / 16.0).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:1400], order[1400 : 1400 + N]
    est = LogisticRegression(max_iter=2000).fit(x[train].reshape(-1, 64), data.target[train])
    clf = SklearnClassifier(est, input_shape=(1, 8, 8))
    return clf, torch.as_tensor(x[test][:, None]), torch.as_tensor(data.target[test])


@pytest.mark.parametrize(
    ("norm", "eps", "ceiling"),
    [("linf", 0.2, 0.06), ("l2", 2.0, 0.06)],
    ids=["linf", "l2"],
)
def test_square_drops_accuracy_of_a_trained_model(
    digits_model: Any, digits: Any, norm: str, eps: float, ceiling: float
) -> None:
    x, y = digits[0][:N], digits[1][:N]
    clean = accuracy(digits_model, x, y)
    assert clean > 0.9
    before = digits_model.queries
    result = Square(eps=eps, norm=norm, max_queries=1000, seed=0).run(digits_model, x, y)
    robust = accuracy(digits_model, result.x_adv, y)
    assert robust < ceiling < clean
    assert result.sample_queries is not None
    assert int(result.sample_queries.max()) <= 1000
    # Every query went through the classifier and is charged to one sample.
    assert result.queries == int(result.sample_queries.sum())
    assert digits_model.queries - before >= result.queries
    # A score-based attack fools most samples in a few dozen queries here.
    assert float(result.sample_queries[result.success].float().median()) < 100


def test_square_works_on_a_scikit_learn_model(sklearn_digits: Any) -> None:
    clf, x, y = sklearn_digits
    clean = accuracy(clf, x, y)
    assert clean > 0.9
    result = Square(eps=0.2, max_queries=500, seed=0).run(clf, x, y)
    assert accuracy(clf, result.x_adv, y) < 0.2
    assert float(lp_norm(result.x_adv - x, "linf").max()) <= 0.2 + 1e-6


def test_square_works_over_http(digits_model: Any, digits: Any) -> None:
    from phalanx.adapters import HttpClassifier
    from phalanx.adapters.serve import serve_classifier

    x, y = digits[0][:20], digits[1][:20]
    with serve_classifier(digits_model) as (server, url):
        remote = HttpClassifier(url, input_shape=(1, 8, 8), num_classes=10)
        clean = accuracy(remote, x, y)
        requests, samples = server.requests, server.samples
        result = Square(eps=0.2, max_queries=300, seed=0).run(remote, x, y)
        attack_requests = server.requests - requests
        attack_samples = server.samples - samples
        robust = accuracy(remote, result.x_adv, y)
    assert robust < 0.2 < clean
    # The queries really crossed the wire: one request per iteration (all the samples still
    # attacked go together), one input per query, plus the base class's final check.
    assert result.sample_queries is not None
    assert attack_requests == int(result.sample_queries.max()) + 1
    assert attack_samples == result.queries + len(x)


def test_square_works_on_an_onnx_model(digits_model: Any, digits: Any, tmp_path: Any) -> None:
    pytest.importorskip("onnxruntime")
    import warnings

    from phalanx.adapters import OnnxClassifier

    path = tmp_path / "digits.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter
        torch.onnx.export(
            digits_model.model.eval(),
            (torch.zeros(1, 1, 8, 8),),
            str(path),
            input_names=["x"],
            output_names=["logits"],
            dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
            dynamo=False,
        )
    clf = OnnxClassifier(path)
    x, y = digits[0][:20], digits[1][:20]
    assert accuracy(clf, x, y) > 0.9
    result = Square(eps=0.2, max_queries=300, seed=0).run(clf, x, y)
    assert accuracy(clf, result.x_adv, y) < 0.2
    assert result.sample_queries is not None
    assert result.queries == int(result.sample_queries.sum())


def test_targeted_square_reaches_its_targets(digits_model: Any, digits: Any) -> None:
    x, y = digits[0][:20], digits[1][:20]
    target = (y + 1) % 10
    result = Square(eps=3.0, norm="l2", max_queries=1000, targeted=True, seed=0).run(
        digits_model, x, y, target=target
    )
    assert torch.equal(result.success, result.adv_pred == target)
    assert result.success_rate > 0.8


def test_results_are_reproducible_with_a_seed(digits_model: Any, digits: Any) -> None:
    x, y = digits[0][:16], digits[1][:16]
    runs = [Square(eps=0.05, max_queries=50, seed=s).run(digits_model, x, y) for s in (3, 3, 4)]
    assert torch.equal(runs[0].x_adv, runs[1].x_adv)
    assert torch.equal(runs[0].sample_queries, runs[1].sample_queries)
    assert not torch.equal(runs[0].x_adv, runs[2].x_adv)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    max_queries=st.integers(1, 200),
    restarts=st.integers(1, 3),
    norm=st.sampled_from(["linf", "l2"]),
    eps=st.floats(0.01, 0.5),
    start=st.integers(0, 300),
)
def test_never_exceeds_the_query_budget(
    digits_model: Any,
    digits: Any,
    max_queries: int,
    restarts: int,
    norm: str,
    eps: float,
    start: int,
) -> None:
    assume(restarts <= max_queries)
    x, y = digits[0][start : start + 12], digits[1][start : start + 12]
    before = digits_model.queries
    result = Square(eps=eps, norm=norm, max_queries=max_queries, restarts=restarts, seed=1).run(
        digits_model, x, y
    )
    assert result.sample_queries is not None
    assert int(result.sample_queries.max()) <= max_queries
    assert int(result.sample_queries.min()) >= 1  # the initial point is always queried
    assert result.queries == int(result.sample_queries.sum()) <= len(x) * max_queries
    # The classifier also saw the base class's final check of the outputs: one per sample.
    assert digits_model.queries - before == result.queries + len(x)


def _tiny_model(shape: tuple[int, ...]) -> Any:
    from phalanx.adapters import TorchClassifier

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(int(torch.tensor(shape).prod()), 4)
    )
    return TorchClassifier(net, input_shape=shape)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    norm=st.sampled_from(["linf", "l2"]),
    eps=st.floats(0.01, 3.0),
    shape=st.sampled_from([(1, 8, 8), (3, 5, 7), (6, 4), (17,), (2, 1, 9)]),
    max_queries=st.integers(1, 60),
    p_init=st.one_of(st.none(), st.floats(0.01, 1.0)),
)
def test_outputs_stay_in_the_ball_and_in_bounds(
    norm: str, eps: float, shape: tuple[int, ...], max_queries: int, p_init: float | None
) -> None:
    model = _tiny_model(shape)
    x = torch.rand((10, *shape), generator=torch.Generator().manual_seed(0))
    y = model.predict(x)
    attack = Square(eps=eps, norm=norm, max_queries=max_queries, p_init=p_init, seed=0)
    adv = attack.run(model, x, y).x_adv
    assert adv.shape == x.shape
    assert float(lp_norm(adv - x, norm).max()) <= eps * (1 + 1e-4) + 1e-6
    assert float(adv.min()) >= 0.0
    assert float(adv.max()) <= 1.0


def test_flat_feature_vectors_are_attacked_as_strips(sklearn_digits: Any) -> None:
    from phalanx.adapters import SklearnClassifier

    clf, x, y = sklearn_digits
    flat = SklearnClassifier(clf.estimator)  # input_shape (64,)
    xf = x.reshape(len(x), -1)
    for norm, eps in (("linf", 0.2), ("l2", 2.0)):
        result = Square(eps=eps, norm=norm, max_queries=300, seed=0).run(flat, xf, y)
        assert result.success_rate > 0.7
        assert float(lp_norm(result.x_adv - xf, norm).max()) <= eps * (1 + 1e-4) + 1e-6


def test_l2_update_keeps_the_perturbation_on_the_sphere() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(8, 3, 10, 10)
    attack = Square(eps=2.0, norm="l2")
    current = x + attack._l2_init(x, gen)
    assert torch.allclose(lp_norm(current - x, "l2"), torch.full((8,), 2.0), atol=1e-5)
    for p in (0.5, 0.1, 0.02):
        current = attack._l2_step(x, current, p, -100.0, 100.0, gen)
        assert torch.allclose(lp_norm(current - x, "l2"), torch.full((8,), 2.0), atol=1e-4)
    # Norm lost (e.g. to clipping) is regained by the next update.
    shrunk = x + (current - x) * 0.5
    again = attack._l2_step(x, shrunk, 0.1, -100.0, 100.0, gen)
    assert torch.allclose(lp_norm(again - x, "l2"), torch.full((8,), 2.0), atol=1e-4)


def test_linf_updates_stay_on_the_vertices_of_the_ball() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.full((4, 3, 6, 6), 0.5)
    attack = Square(eps=0.1)
    current = x + attack._linf_init(x, gen)
    # Vertical stripes: every column has one value per channel.
    assert torch.equal(current, current[:, :, :1].expand_as(current))
    for _ in range(5):
        current = attack._linf_step(x, current, 0.2, 0.0, 1.0, gen)
        assert torch.allclose((current - x).abs(), torch.full_like(x, 0.1))


def test_p_schedule_halves_at_the_papers_milestones() -> None:
    assert p_schedule(0.8, 0, 10000) == 0.8
    assert p_schedule(0.8, 10, 10000) == 0.8
    assert p_schedule(0.8, 11, 10000) == 0.4
    assert p_schedule(0.8, 201, 10000) == 0.1
    assert p_schedule(0.8, 9999, 10000) == pytest.approx(0.8 / 512)
    # Rescaled to the budget: with 1,000 queries the first halving comes after iteration 1.
    assert p_schedule(0.8, 1, 1000) == 0.8
    assert p_schedule(0.8, 2, 1000) == 0.4


def test_patterns_match_the_paper() -> None:
    eta = pseudo_gaussian(5, 5)
    assert eta[2, 2] == eta.max()  # peak at the centre
    assert torch.equal(eta, eta.T) and torch.equal(eta, eta.flip(0))
    assert eta[0, 0] == pytest.approx(1 / 9)  # the outer ring: 1 / (n + 1)**2 with n = 2
    meta = meta_pattern(6, 6)
    assert float(meta.norm()) == pytest.approx(1.0)
    assert bool((meta[:, :3] > 0).all()) and bool((meta[:, 3:] < 0).all())


def test_parameters_are_checked(digits_model: Any, digits: Any) -> None:
    x, y = digits[0][:4], digits[1][:4]
    with pytest.raises(InvalidParameterError) as info:
        Square(max_queries=2, restarts=3, p_init=1.5, norm="l1").run(digits_model, x, y)
    text = str(info.value)
    assert "restarts" in text and "p_init" in text and "norm" in text

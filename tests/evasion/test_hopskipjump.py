"""HopSkipJump on really trained models, from labels only; hard budget, ball and bounds kept."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phalanx.errors import InvalidParameterError
from phalanx.evasion.base import lp_norm
from phalanx.evasion.hopskipjump import HopSkipJump

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


class LabelsOnly:
    """A classifier that reveals only its decision: one-hot scores of the predicted label."""

    differentiable = False

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.num_classes = inner.num_classes
        self.input_shape = inner.input_shape
        self.bounds = inner.bounds

    @property
    def queries(self) -> int:
        return int(self.inner.queries)

    def logits(self, x: Any) -> Any:
        pred = self.inner.logits(x).argmax(dim=1)
        return torch.nn.functional.one_hot(pred, self.num_classes).float()

    def predict(self, x: Any) -> Any:
        return self.logits(x).argmax(dim=1)


@pytest.fixture(scope="module")
def sklearn_digits() -> Any:
    """An MLP trained with scikit-learn on its digits data, as (classifier, x, y)."""
    np = pytest.importorskip("numpy")
    datasets = pytest.importorskip("sklearn.datasets")
    from sklearn.neural_network import MLPClassifier

    from phalanx.adapters import SklearnClassifier

    data = datasets.load_digits()
    x = (data.images / 16.0).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:1400], order[1400 : 1400 + N]
    from sklearn.exceptions import ConvergenceWarning

    est = MLPClassifier(hidden_layer_sizes=(64,), max_iter=200, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # accurate enough for the test
        est.fit(x[train].reshape(-1, 64), data.target[train])
    clf = SklearnClassifier(est, input_shape=(1, 8, 8))
    return clf, torch.as_tensor(x[test][:, None]), torch.as_tensor(data.target[test])


@pytest.mark.parametrize(
    ("norm", "eps", "ceiling"),
    [("l2", 2.0, 0.1), ("linf", 0.2, 0.2)],
    ids=["l2", "linf"],
)
def test_hsj_drops_accuracy_of_a_trained_model(
    digits_model: Any, digits: Any, norm: str, eps: float, ceiling: float
) -> None:
    x, y = digits[0][:N], digits[1][:N]
    clean = accuracy(digits_model, x, y)
    assert clean > 0.9
    result = HopSkipJump(eps=eps, norm=norm, max_queries=1000, seed=0).run(digits_model, x, y)
    robust = accuracy(digits_model, result.x_adv, y)
    assert robust < ceiling < clean
    assert result.sample_queries is not None
    assert int(result.sample_queries.max()) <= 1000
    assert result.queries == int(result.sample_queries.sum())


def test_hsj_needs_only_labels(digits_model: Any, digits: Any) -> None:
    x, y = digits[0][:N], digits[1][:N]
    attack = HopSkipJump(eps=2.0, max_queries=1000, seed=0)
    full = attack.run(digits_model, x, y)
    labels = attack.run(LabelsOnly(digits_model), x, y)
    # Same decisions, same random draws: the same attack, whatever else the scores say.
    assert torch.equal(full.x_adv, labels.x_adv)
    assert torch.equal(full.sample_queries, labels.sample_queries)


def test_hsj_works_on_a_scikit_learn_model(sklearn_digits: Any) -> None:
    clf, x, y = sklearn_digits
    clean = accuracy(clf, x, y)
    assert clean > 0.9
    result = HopSkipJump(eps=2.0, max_queries=1000, seed=0).run(clf, x, y)
    assert accuracy(clf, result.x_adv, y) < 0.2
    assert float(lp_norm(result.x_adv - x, "l2").max()) <= 2.0 * (1 + 1e-4) + 1e-6


def test_hsj_works_over_http(digits_model: Any, digits: Any) -> None:
    from phalanx.adapters import HttpClassifier
    from phalanx.adapters.serve import serve_classifier

    x, y = digits[0][:20], digits[1][:20]
    with serve_classifier(digits_model) as (server, url):
        remote = HttpClassifier(url, input_shape=(1, 8, 8), num_classes=10, batch_size=256)
        clean = accuracy(remote, x, y)
        requests, samples = server.requests, server.samples
        result = HopSkipJump(eps=2.0, max_queries=500, seed=0).run(remote, x, y)
        attack_requests = server.requests - requests
        attack_samples = server.samples - samples
        robust = accuracy(remote, result.x_adv, y)
    assert robust < 0.2 < clean
    # Every query crossed the wire (plus the base class's final check), batched into
    # far fewer requests than queries.
    assert attack_samples == result.queries + len(x)
    assert 0 < attack_requests < result.queries / 10


def test_hsj_works_on_an_onnx_model(digits_model: Any, digits: Any, tmp_path: Any) -> None:
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
    result = HopSkipJump(eps=2.0, max_queries=500, seed=0).run(clf, x, y)
    assert accuracy(clf, result.x_adv, y) < 0.2
    assert result.sample_queries is not None
    assert result.queries == int(result.sample_queries.sum())


def test_targeted_hsj_reaches_its_targets(digits_model: Any, digits: Any) -> None:
    x, y = digits[0][:20], digits[1][:20]
    target = (y + 1) % 10
    result = HopSkipJump(eps=3.0, max_queries=1000, targeted=True, seed=0).run(
        digits_model, x, y, target=target
    )
    assert torch.equal(result.success, result.adv_pred == target)
    assert result.success_rate > 0.8
    assert float(lp_norm(result.x_adv - x, "l2").max()) <= 3.0 * (1 + 1e-4) + 1e-6


def test_inputs_already_misclassified_cost_one_query(digits_model: Any, digits: Any) -> None:
    x = digits[0][:30]
    wrong = (digits_model.predict(x) + 1) % 10  # labels the model never predicts
    result = HopSkipJump(eps=1.0, seed=0).run(digits_model, x, wrong)
    assert torch.equal(result.x_adv, x)
    assert bool(result.success.all())
    assert torch.equal(result.sample_queries, torch.ones(len(x), dtype=torch.long))


def test_returns_the_clean_input_when_nothing_is_found_within_eps(
    digits_model: Any, digits: Any
) -> None:
    x, y = digits[0][:20], digits[1][:20]
    result = HopSkipJump(eps=1e-3, max_queries=300, seed=0).run(digits_model, x, y)
    correct = digits_model.predict(x) == y
    assert torch.equal(result.x_adv[correct], x[correct])
    assert not bool(result.success[correct].any())


def test_results_are_reproducible_with_a_seed(digits_model: Any, digits: Any) -> None:
    x, y = digits[0][:16], digits[1][:16]
    runs = [
        HopSkipJump(eps=1.0, max_queries=400, seed=s).run(digits_model, x, y) for s in (3, 3, 4)
    ]
    assert torch.equal(runs[0].x_adv, runs[1].x_adv)
    assert torch.equal(runs[0].sample_queries, runs[1].sample_queries)
    assert not torch.equal(runs[0].x_adv, runs[2].x_adv)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    max_queries=st.integers(1, 200),
    norm=st.sampled_from(["l2", "linf"]),
    eps=st.floats(0.05, 3.0),
    init_num_evals=st.integers(1, 150),
    targeted=st.booleans(),
    start=st.integers(0, 300),
)
def test_never_exceeds_the_query_budget(
    digits_model: Any,
    digits: Any,
    max_queries: int,
    norm: str,
    eps: float,
    init_num_evals: int,
    targeted: bool,
    start: int,
) -> None:
    x, y = digits[0][start : start + 12], digits[1][start : start + 12]
    attack = HopSkipJump(
        eps=eps,
        norm=norm,
        max_queries=max_queries,
        init_num_evals=init_num_evals,
        targeted=targeted,
        seed=1,
    )
    before = digits_model.queries
    result = attack.run(digits_model, x, y)
    assert result.sample_queries is not None
    assert int(result.sample_queries.max()) <= max_queries
    assert result.queries == int(result.sample_queries.sum()) <= len(x) * max_queries
    # The classifier also saw the base class's final check of the outputs: one per sample.
    assert digits_model.queries - before == result.queries + len(x)


def _tiny_model(shape: tuple[int, ...]) -> Any:
    from phalanx.adapters import TorchClassifier

    torch.manual_seed(0)
    size = int(torch.tensor(shape).prod())
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(size, 4))
    return TorchClassifier(net, input_shape=shape)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    norm=st.sampled_from(["l2", "linf"]),
    eps=st.floats(0.01, 3.0),
    shape=st.sampled_from([(1, 8, 8), (3, 5, 7), (17,)]),
    max_queries=st.integers(1, 300),
    targeted=st.booleans(),
)
def test_outputs_stay_in_the_ball_and_in_bounds(
    norm: str, eps: float, shape: tuple[int, ...], max_queries: int, targeted: bool
) -> None:
    model = _tiny_model(shape)
    x = torch.rand((10, *shape), generator=torch.Generator().manual_seed(0))
    y = model.predict(x)
    attack = HopSkipJump(eps=eps, norm=norm, max_queries=max_queries, targeted=targeted, seed=0)
    result = attack.run(model, x, y)
    adv = result.x_adv
    assert adv.shape == x.shape
    assert float(lp_norm(adv - x, norm).max()) <= eps * (1 + 1e-4) + 1e-6
    assert float(adv.min()) >= 0.0
    assert float(adv.max()) <= 1.0
    # Outputs that moved are adversarial: the attack never returns a failed point.
    moved = lp_norm(adv - x, norm) > 0
    assert bool(result.success[moved].all())


def test_parameters_are_checked(digits_model: Any, digits: Any) -> None:
    x, y = digits[0][:4], digits[1][:4]
    with pytest.raises(InvalidParameterError) as info:
        HopSkipJump(max_queries=0, gamma=0.0, init_num_evals=0, norm="l1").run(digits_model, x, y)
    text = str(info.value)
    for name in ("max_queries", "gamma", "init_num_evals", "norm"):
        assert name in text

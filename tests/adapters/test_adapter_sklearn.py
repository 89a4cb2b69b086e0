"""SklearnClassifier on real scikit-learn models trained on the digits data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from phalanx.adapters import SklearnClassifier
from phalanx.core import Classifier
from phalanx.errors import ConfigurationError, ShapeError


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)
    y = data.target
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    train, test = order[:1400], order[1400:]
    return x[train], y[train], x[test], y[test]


@pytest.fixture(scope="module")
def logreg(digits):
    x, y, _, _ = digits
    return LogisticRegression(max_iter=2000).fit(x.reshape(len(x), -1), y)


def test_logistic_regression_on_digits_through_the_adapter(digits, logreg):
    _, _, x_test, y_test = digits
    clf = SklearnClassifier(logreg, input_shape=(1, 8, 8))
    assert isinstance(clf, Classifier)
    assert clf.num_classes == 10
    assert clf.differentiable is False
    images = x_test[:, None]  # (N, 1, 8, 8): image shape on the phalanx side
    predicted = clf.predict(images)
    assert isinstance(predicted, torch.Tensor)
    assert (predicted.numpy() == y_test).mean() > 0.9
    assert clf.queries == len(y_test)


def test_scores_are_log_probabilities(digits, logreg):
    _, _, x_test, _ = digits
    clf = SklearnClassifier(logreg)
    assert clf.input_shape == (64,)  # from n_features_in_
    flat = x_test[:20].reshape(20, -1)
    logits = clf.logits(torch.from_numpy(flat))
    expected = logreg.predict_proba(flat)
    assert logits.dtype == torch.float32
    assert np.allclose(torch.softmax(logits, 1).numpy(), expected, atol=1e-5)


def test_decision_function_scores(digits):
    x, y, x_test, _ = digits
    svm = LinearSVC().fit(x.reshape(len(x), -1), y)
    clf = SklearnClassifier(svm, input_shape=(1, 8, 8), use_proba=False)
    flat = x_test[:5].reshape(5, -1)
    assert np.allclose(clf.logits(x_test[:5, None]).numpy(), svm.decision_function(flat), atol=1e-5)
    with pytest.raises(ConfigurationError, match="use_proba=False"):
        SklearnClassifier(svm)


def test_binary_decision_function_becomes_two_scores(digits):
    x, y, x_test, _ = digits
    svm = LinearSVC().fit(x.reshape(len(x), -1), y % 2)
    clf = SklearnClassifier(svm, use_proba=False)
    flat = x_test[:6].reshape(6, -1)
    logits = clf.logits(flat)
    assert logits.shape == (6, 2)
    assert np.array_equal(clf.predict(flat).numpy(), svm.predict(flat))


def test_class_labels_are_indices_into_classes():
    x = np.array([[0.0], [0.1], [0.9], [1.0]])
    model = LogisticRegression().fit(x, ["cat", "cat", "dog", "dog"])
    clf = SklearnClassifier(model)
    assert clf.classes == ("cat", "dog")
    assert clf.predict(x).tolist() == [0, 0, 1, 1]


def test_configuration_errors(logreg):
    with pytest.raises(ConfigurationError, match="not a fitted"):
        SklearnClassifier(LogisticRegression())
    with pytest.raises(ConfigurationError, match="64 features"):
        SklearnClassifier(logreg, input_shape=(1, 28, 28))


def test_shape_errors(logreg):
    clf = SklearnClassifier(logreg, input_shape=(1, 8, 8))
    with pytest.raises(ShapeError, match=r"\(batch, 1, 8, 8\)"):
        clf.predict(np.zeros((2, 63)))

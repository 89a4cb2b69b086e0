"""TorchClassifier: inference of shapes, query counting, eval mode, normalisation, validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from phalanx.adapters import TorchClassifier
from phalanx.core import Classifier
from phalanx.errors import (
    ConfigurationError,
    InputError,
    InvalidParameterError,
    ShapeError,
)


def mlp(in_features: int = 4, classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(in_features, 8), nn.ReLU(), nn.Linear(8, classes))


def cnn(channels: int = 3, classes: int = 5) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(channels, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, classes),
    )


def test_infers_shape_and_classes_from_a_linear_first_layer():
    clf = TorchClassifier(mlp(4, 3))
    assert clf.input_shape == (4,)
    assert clf.num_classes == 3
    assert clf.bounds == (0.0, 1.0)
    assert clf.differentiable is True
    assert isinstance(clf, Classifier)


def test_infers_classes_with_an_explicit_input_shape():
    clf = TorchClassifier(cnn(3, 5), input_shape=(3, 6, 6))
    assert clf.num_classes == 5
    assert clf.queries == 0  # the probe forward pass is not a query


def test_reads_an_input_shape_attribute_of_the_model():
    model = cnn(1, 2)
    model.input_shape = (1, 6, 6)
    assert TorchClassifier(model).input_shape == (1, 6, 6)


def test_conv_first_layer_without_input_shape_is_a_clear_error():
    with pytest.raises(ConfigurationError, match="input_shape="):
        TorchClassifier(cnn())


def test_rejects_what_is_not_a_module():
    with pytest.raises(ConfigurationError, match=r"nn\.Module"):
        TorchClassifier(lambda x: x)  # type: ignore[arg-type]


def test_a_model_without_per_class_scores_is_rejected():
    model = nn.Sequential(nn.Linear(4, 1), nn.Flatten(0))
    with pytest.raises(ConfigurationError, match="num_classes"):
        TorchClassifier(model)


def test_counts_queries_and_resets():
    clf = TorchClassifier(mlp(), batch_size=3)
    x = torch.rand(5, 4)
    clf.logits(x)
    assert clf.queries == 5
    clf.predict(torch.rand(7, 4))
    assert clf.queries == 12
    clf.logits_batched(x)
    assert clf.queries == 17
    clf.reset_queries()
    assert clf.queries == 0


def test_batched_and_plain_logits_agree():
    clf = TorchClassifier(cnn(), input_shape=(3, 6, 6), batch_size=4)
    x = torch.rand(10, 3, 6, 6)
    assert torch.allclose(clf.logits(x), clf.logits_batched(x), atol=1e-6)
    labels = clf.predict(x)
    assert labels.dtype == torch.int64
    assert labels.shape == (10,)
    labels[0] = -1  # an ordinary tensor, not an inference tensor


def test_eval_mode_during_calls_and_training_flags_restored():
    model = cnn()
    model.train()
    model[1].eval()  # a partly frozen model: this flag must survive too
    clf = TorchClassifier(model, input_shape=(3, 6, 6))
    x = torch.rand(8, 3, 6, 6)
    first = clf.logits(x)
    second = clf.logits(x)
    assert torch.equal(first, second)  # dropout off, batch norm uses running stats
    clf.predict(x)
    assert model.training
    assert model[0].training
    assert not model[1].training
    assert model[3].training


def test_normalisation_is_part_of_the_model_and_gradients_reach_raw_inputs():
    model = cnn(3, 5).eval()
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.5)
    clf = TorchClassifier(model, input_shape=(3, 6, 6), mean=mean, std=std)
    x = torch.rand(4, 3, 6, 6, requires_grad=True)
    out = clf.logits(x)
    m = torch.tensor(mean).view(3, 1, 1)
    s = torch.tensor(std).view(3, 1, 1)
    x_ref = x.detach().clone().requires_grad_(True)
    ref = model((x_ref - m) / s)
    assert torch.allclose(out, ref, atol=1e-6)
    out[:, 2].sum().backward()
    ref[:, 2].sum().backward()
    assert x.grad is not None
    assert torch.allclose(x.grad, x_ref.grad, atol=1e-6)
    assert x.grad.abs().sum() > 0


def test_scalar_normalisation_on_flat_inputs():
    model = mlp()
    clf = TorchClassifier(model, mean=0.5, std=2.0)
    x = torch.rand(3, 4)
    assert torch.allclose(clf.logits(x), model((x - 0.5) / 2.0), atol=1e-6)


def test_bad_normalisation_lists_every_problem():
    with pytest.raises(InvalidParameterError) as info:
        TorchClassifier(cnn(), input_shape=(3, 6, 6), mean=(0.5, 0.5), std=(0.0, 1.0, 1.0))
    assert len(info.value.problems) == 2


def test_accepts_numpy_and_returns_tensors():
    clf = TorchClassifier(mlp())
    out = clf.logits(np.random.default_rng(0).random((2, 4)))  # float64 in, model dtype used
    assert isinstance(out, torch.Tensor)
    assert out.dtype == torch.float32
    assert clf.predict(np.zeros((2, 4), dtype=np.uint8)).shape == (2,)


def test_output_comes_back_on_the_input_device():
    clf = TorchClassifier(mlp(), device="cpu")
    assert clf.device == torch.device("cpu")
    assert clf.logits(torch.rand(2, 4)).device == torch.device("cpu")


def test_shape_errors_name_expected_and_received_shapes():
    clf = TorchClassifier(cnn(), input_shape=(3, 6, 6))
    with pytest.raises(ShapeError, match=r"\(batch, 3, 6, 6\), got \(2, 3, 5, 5\)"):
        clf.logits(torch.rand(2, 3, 5, 5))
    with pytest.raises(ShapeError, match="batch dimension"):
        clf.predict(torch.rand(3, 6, 6))
    with pytest.raises(ShapeError, match="reshape"):
        clf.logits(torch.rand(2, 108))


def test_empty_batches():
    clf = TorchClassifier(mlp())
    assert clf.logits(torch.empty(0, 4)).shape == (0, 3)
    assert clf.predict(torch.empty(0, 4)).shape == (0,)


def test_check_bounds():
    clf = TorchClassifier(mlp())
    clf.check_bounds(torch.rand(3, 4))
    clf.check_bounds(torch.full((1, 4), 1.0 + 1e-7))  # float rounding is tolerated
    with pytest.raises(InputError, match=r"\[0, 255\].*\[0, 1\]"):
        clf.check_bounds(torch.tensor([[0.0, 255.0, 3.0, 4.0]]))
    with pytest.raises(InputError, match="NaN"):
        clf.check_bounds(torch.tensor([[float("nan"), 0.0, 0.0, 0.0]]))


def test_invalid_settings_are_reported_together():
    with pytest.raises(InvalidParameterError) as info:
        TorchClassifier(mlp(), bounds=(1.0, 0.0), batch_size=0)
    assert len(info.value.problems) == 2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_model_with_cpu_inputs():
    model = cnn()
    clf = TorchClassifier(model, input_shape=(3, 6, 6), device="cuda")
    assert clf.device.type == "cuda"
    x = torch.rand(4, 3, 6, 6, requires_grad=True)
    out = clf.logits(x)
    assert out.device.type == "cpu"
    out.sum().backward()
    assert x.grad is not None
    assert x.grad.device.type == "cpu"
    assert clf.predict(x).device.type == "cpu"

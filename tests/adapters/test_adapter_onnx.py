"""OnnxClassifier on a small torch model exported to ONNX, and on hand-built graphs."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from phalanx.adapters import OnnxClassifier
from phalanx.core import Classifier
from phalanx.errors import ConfigurationError, DataFormatError, InputError


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 5),
    ).eval()


def export(model: nn.Module, path, *, dynamic: bool = True, batch: int = 2) -> None:
    example = torch.rand(batch, 1, 8, 8)
    axes = {"x": {0: "batch"}, "logits": {0: "batch"}} if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=["x"],
            output_names=["logits"],
            dynamic_axes=axes,
            dynamo=False,
        )


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = small_cnn()
    path = tmp_path_factory.mktemp("onnx") / "cnn.onnx"
    export(model, path)
    return model, path


def test_outputs_match_torch(exported):
    model, path = exported
    clf = OnnxClassifier(path, batch_size=4)
    assert isinstance(clf, Classifier)
    assert clf.input_shape == (1, 8, 8)
    assert clf.num_classes == 5
    assert clf.differentiable is False
    x = torch.rand(10, 1, 8, 8)
    with torch.no_grad():
        expected = model(x)
    assert torch.allclose(clf.logits(x), expected, atol=1e-5)
    assert torch.allclose(clf.logits(x.numpy()), expected, atol=1e-5)
    assert torch.equal(clf.predict(x), expected.argmax(1))
    assert clf.queries == 30


def test_fixed_batch_graphs_get_padded_batches(tmp_path):
    model = small_cnn()
    path = tmp_path / "fixed.onnx"
    export(model, path, dynamic=False, batch=4)
    clf = OnnxClassifier(path)
    assert clf.batch_size == 4
    x = torch.rand(7, 1, 8, 8)
    with torch.no_grad():
        expected = model(x)
    assert torch.allclose(clf.logits(x), expected, atol=1e-5)
    assert clf.queries == 7


def linear_graph(path, *, in_dims, out_dims, weight, bias) -> None:
    """A tiny y = x @ W + b classifier built node by node."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, in_dims)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, out_dims)
    w = helper.make_tensor("w", TensorProto.FLOAT, weight.shape, weight.flatten().tolist())
    b = helper.make_tensor("b", TensorProto.FLOAT, bias.shape, bias.tolist())
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["y"]),
        ],
        "linear",
        [x],
        [y],
        [w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def test_symbolic_shapes_need_input_shape_and_classes_are_probed(tmp_path):
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(3, 4)).astype(np.float32)
    bias = rng.normal(size=(4,)).astype(np.float32)
    path = tmp_path / "linear.onnx"
    linear_graph(path, in_dims=["n", "d"], out_dims=["n", "k"], weight=weight, bias=bias)
    with pytest.raises(ConfigurationError, match="input_shape="):
        OnnxClassifier(path)
    clf = OnnxClassifier(path, input_shape=(3,))
    assert clf.num_classes == 4
    x = rng.random((5, 3)).astype(np.float32)
    assert np.allclose(clf.logits(x).numpy(), x @ weight + bias, atol=1e-5)
    with pytest.raises(ConfigurationError, match="does not fit"):
        OnnxClassifier(path, input_shape=(3, 1))


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        OnnxClassifier(tmp_path / "absent.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(DataFormatError, match="cannot load"):
        OnnxClassifier(junk)

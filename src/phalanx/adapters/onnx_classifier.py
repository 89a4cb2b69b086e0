"""OnnxClassifier: an ONNX model file run by onnxruntime, behind the ``Classifier`` protocol.

Loading an ONNX file runs no code from it (unlike unpickling), but the model is a black box to
torch: ``differentiable`` is False.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from phalanx._optional import require
from phalanx.adapters.base import BaseClassifier
from phalanx.errors import ConfigurationError, DataFormatError, InputError, TargetError

if TYPE_CHECKING:
    import numpy as np
    import torch
else:
    np = require("numpy", extra="ml", purpose="OnnxClassifier")
    torch = require("torch", extra="ml", purpose="OnnxClassifier")

_DTYPES: dict[str, Any] = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
}


class OnnxClassifier(BaseClassifier):
    """An ONNX classifier run with onnxruntime.

    The model must have one input, ``(batch, *input_shape)``, and return logits (or any
    per-class scores) ``(batch, num_classes)`` as its first output. Static dimensions in the
    graph fill in ``input_shape`` and ``num_classes``; a graph with a fixed batch size is fed
    batches of exactly that size (the last one padded).

    Args:
        path: The ``.onnx`` file.
        input_shape: Shape of one input; needed when the graph leaves it symbolic.
        bounds: ``(low, high)`` range of valid inputs.
        num_classes: Number of classes; inferred from the output shape or one probe run.
        providers: onnxruntime execution providers, in order of preference; defaults to
            ``["CPUExecutionProvider"]``.
        batch_size: Largest batch sent to the session.

    Raises:
        InputError: The file does not exist.
        DataFormatError: onnxruntime cannot load it.
        ConfigurationError: The graph is not a single-input classifier, or a shape is unknown.

    Example:
        >>> clf = OnnxClassifier("model.onnx")  # doctest: +SKIP
        >>> clf.predict(x)  # doctest: +SKIP
    """

    differentiable = False

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        input_shape: Sequence[int] | None = None,
        bounds: tuple[float, float] = (0.0, 1.0),
        num_classes: int | None = None,
        providers: Sequence[str] | None = None,
        batch_size: int = 256,
    ) -> None:
        ort = require("onnxruntime", extra="onnx", purpose="OnnxClassifier")
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"ONNX model not found: {self.path}")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: onnxruntime otherwise logs to stderr
        self.providers = list(providers) if providers else ["CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=options, providers=self.providers
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors for bad graphs
            raise DataFormatError(f"onnxruntime cannot load {self.path}: {exc}") from exc
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            names = ", ".join(i.name for i in inputs)
            raise ConfigurationError(
                f"{self.path.name} has {len(inputs)} inputs ({names}); a classifier needs one"
            )
        node = inputs[0]
        self._input_name: str = node.name
        dtype = _DTYPES.get(node.type)
        if dtype is None:
            raise ConfigurationError(
                f"{self.path.name} takes {node.type} inputs; expected a floating-point tensor"
            )
        self._dtype = np.dtype(dtype)
        dims = list(node.shape)
        self._fixed_batch = dims[0] if dims and _static(dims[0]) else None
        shape = _input_shape(dims[1:], input_shape, self.path.name)
        if self._fixed_batch is not None:
            batch_size = int(self._fixed_batch)
        super().__init__(
            input_shape=shape,
            num_classes=1 if num_classes is None else num_classes,
            bounds=bounds,
            batch_size=batch_size,
        )
        if num_classes is None:
            out_dims = list(self.session.get_outputs()[0].shape)
            if len(out_dims) == 2 and _static(out_dims[1]):
                self.num_classes = int(out_dims[1])
            else:
                probe = np.zeros((1, *self.input_shape), dtype=self._dtype)
                self.num_classes = int(self._run(probe).shape[-1])

    def _run(self, batch: np.ndarray) -> np.ndarray:
        n = len(batch)
        if self._fixed_batch is not None and n < self._fixed_batch:
            pad = np.zeros((self._fixed_batch - n, *batch.shape[1:]), dtype=batch.dtype)
            batch = np.concatenate([batch, pad])
        out = self.session.run(None, {self._input_name: batch})[0]
        return np.asarray(out)[:n]

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        data = x.detach().cpu().numpy().astype(self._dtype, copy=False)
        parts = [
            self._run(data[i : i + self.batch_size]) for i in range(0, len(data), self.batch_size)
        ]
        scores = np.concatenate(parts)
        if scores.ndim != 2:
            raise TargetError(f"{self.path.name} returned scores of shape {scores.shape}")
        return torch.as_tensor(scores, dtype=torch.float32, device=x.device)


def _static(dim: Any) -> bool:
    return isinstance(dim, int) and dim > 0


def _input_shape(dims: list[Any], given: Sequence[int] | None, name: str) -> tuple[int, ...]:
    if given is None:
        if all(_static(d) for d in dims):
            return tuple(int(d) for d in dims)
        raise ConfigurationError(
            f"{name} leaves its input shape symbolic ({dims})",
            hint="pass input_shape=, e.g. OnnxClassifier(path, input_shape=(3, 32, 32))",
        )
    shape = tuple(int(d) for d in given)
    clash = len(shape) != len(dims) or any(
        _static(d) and d != s for d, s in zip(dims, shape, strict=False)
    )
    if clash:
        raise ConfigurationError(f"input_shape {shape} does not fit the graph's input {dims}")
    return shape

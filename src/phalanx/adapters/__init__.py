"""Adapters: put a model behind the :class:`~phalanx.core.protocols.Classifier` protocol.

Every adapter takes torch tensors or numpy arrays and returns torch tensors from ``logits``, so
attacks are written once, in torch. Non-torch models (scikit-learn, ONNX) are reached through
numpy inside their adapter and are not differentiable.

Importing this package is cheap: each adapter (and torch) is imported on first access::

    from phalanx.adapters import TorchClassifier     # imports torch now, not before

Adapters:
    TorchClassifier: a ``torch.nn.Module`` (white box, differentiable).
    SklearnClassifier: a fitted scikit-learn estimator (scores only).
    OnnxClassifier: an ``.onnx`` file run by onnxruntime.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from phalanx.adapters.base import BaseClassifier
    from phalanx.adapters.http_classifier import HttpClassifier
    from phalanx.adapters.onnx_classifier import OnnxClassifier
    from phalanx.adapters.sklearn_classifier import SklearnClassifier
    from phalanx.adapters.torch_classifier import TorchClassifier

_LAZY = {
    "BaseClassifier": "phalanx.adapters.base",
    "TorchClassifier": "phalanx.adapters.torch_classifier",
    "SklearnClassifier": "phalanx.adapters.sklearn_classifier",
    "OnnxClassifier": "phalanx.adapters.onnx_classifier",
    "HttpClassifier": "phalanx.adapters.http_classifier",
}

__all__ = [
    "BaseClassifier",
    "HttpClassifier",
    "OnnxClassifier",
    "SklearnClassifier",
    "TorchClassifier",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])

"""SklearnClassifier: a fitted scikit-learn estimator behind the ``Classifier`` protocol.

The estimator is a black box to torch: scores go through numpy, so black-box and
transfer attacks apply, gradient attacks do not (``differentiable`` is False).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from phalanx._optional import require
from phalanx.adapters.base import BaseClassifier, _prod
from phalanx.errors import ConfigurationError, TargetError

if TYPE_CHECKING:
    import numpy as np
    import torch
else:
    np = require("numpy", extra="ml", purpose="SklearnClassifier")
    torch = require("torch", extra="ml", purpose="SklearnClassifier")

#: Probabilities are clipped to this floor before the log, so a zero probability stays finite.
PROBA_FLOOR = 1e-12


class SklearnClassifier(BaseClassifier):
    """A fitted scikit-learn classifier (or pipeline) as a black-box classifier.

    Inputs are flattened to ``(batch, n_features)`` before they reach the estimator, so image
    data keeps its image shape on the phalanx side. Scores are log-probabilities
    (``log predict_proba``, floored at ``1e-12``) or, with ``use_proba=False``, the
    ``decision_function``; a binary decision function ``d`` becomes the two scores
    ``(-d/2, d/2)``. Class index ``i`` means ``classes[i]`` (the estimator's ``classes_``).

    Args:
        estimator: A fitted estimator with ``predict_proba`` or ``decision_function``.
        input_shape: Shape of one input, e.g. ``(1, 8, 8)``; defaults to
            ``(n_features_in_,)``.
        bounds: ``(low, high)`` range of valid inputs.
        use_proba: Score with ``predict_proba`` (True) or ``decision_function`` (False).
        batch_size: Batch size of :meth:`predict` and :meth:`logits_batched`.

    Example:
        >>> from sklearn.linear_model import LogisticRegression
        >>> model = LogisticRegression().fit(x.reshape(len(x), -1), y)  # doctest: +SKIP
        >>> clf = SklearnClassifier(model, input_shape=(1, 8, 8))  # doctest: +SKIP
        >>> clf.predict(x[:3])  # doctest: +SKIP
        tensor([0, 4, 2])
    """

    differentiable = False

    def __init__(
        self,
        estimator: Any,
        *,
        input_shape: Sequence[int] | None = None,
        bounds: tuple[float, float] = (0.0, 1.0),
        use_proba: bool = True,
        batch_size: int = 1024,
    ) -> None:
        name = type(estimator).__name__
        classes = getattr(estimator, "classes_", None)
        if classes is None:
            raise ConfigurationError(
                f"{name} has no classes_: it is not a fitted classifier", hint="fit it first"
            )
        method = "predict_proba" if use_proba else "decision_function"
        if not callable(getattr(estimator, method, None)):
            other = "use_proba=False" if use_proba else "use_proba=True"
            raise ConfigurationError(f"{name} has no {method}", hint=f"try {other}")
        n_features = getattr(estimator, "n_features_in_", None)
        if input_shape is None:
            if n_features is None:
                raise ConfigurationError(
                    f"cannot infer the input shape of {name} (no n_features_in_)",
                    hint="pass input_shape=, e.g. SklearnClassifier(est, input_shape=(64,))",
                )
            shape: tuple[int, ...] = (int(n_features),)
        else:
            shape = tuple(int(d) for d in input_shape)
            if n_features is not None and _prod(shape) != int(n_features):
                raise ConfigurationError(
                    f"input_shape {shape} has {_prod(shape)} values but {name} expects "
                    f"{int(n_features)} features"
                )
        self.estimator = estimator
        self.use_proba = use_proba
        self.classes: tuple[Any, ...] = tuple(np.asarray(classes).tolist())
        super().__init__(
            input_shape=shape, num_classes=len(self.classes), bounds=bounds, batch_size=batch_size
        )

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        features = x.detach().cpu().numpy().reshape(len(x), -1)
        if self.use_proba:
            proba = np.asarray(self.estimator.predict_proba(features), dtype=np.float64)
            scores = np.log(np.clip(proba, PROBA_FLOOR, 1.0))
        else:
            scores = np.asarray(self.estimator.decision_function(features), dtype=np.float64)
            if scores.ndim == 1:
                scores = np.stack([-scores / 2, scores / 2], axis=1)
        if scores.ndim != 2:
            raise TargetError(
                f"{type(self.estimator).__name__} returned scores of shape {scores.shape}"
            )
        return torch.as_tensor(scores, dtype=torch.float32, device=x.device)

"""The protocols that targets implement. Tensors are typed loosely: core imports no torch."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Classifier(Protocol):
    """Predictive-AI target: a batch of inputs in, a batch of logits out.

    Attributes:
        num_classes: Number of output classes.
        input_shape: Shape of one input, without the batch dimension.
        bounds: ``(low, high)`` range of valid input values.
        differentiable: Whether :meth:`logits` supports autograd (white-box attacks).
        queries: How many inputs have been sent through the model so far.
    """

    num_classes: int
    input_shape: tuple[int, ...]
    bounds: tuple[float, float]
    differentiable: bool
    queries: int

    def logits(self, x: Any) -> Any:
        """Scores of shape ``(batch, num_classes)`` for inputs of shape ``(batch, *input_shape)``."""

    def predict(self, x: Any) -> Any:
        """Predicted labels of shape ``(batch,)``."""

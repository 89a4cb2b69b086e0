"""The machinery every classifier adapter shares: conversion, validation, batching, query counts.

An adapter subclasses :class:`BaseClassifier` and implements one method, ``_logits``, which
receives a validated floating-point tensor of shape ``(batch, *input_shape)`` and returns scores
of shape ``(batch, num_classes)`` on the input's device. Everything else (accepting numpy arrays,
shape checks, counting queries, batching under ``torch.inference_mode``) lives here once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from phalanx._optional import require
from phalanx.errors import InputError, InvalidParameterError, ShapeError, TargetError

if TYPE_CHECKING:
    import torch
else:
    torch = require("torch", extra="ml", purpose="classifier adapters")

#: Inputs may stray this far outside ``bounds`` (float rounding) before :meth:`check_bounds` fails.
BOUNDS_TOLERANCE = 1e-5


def _format_shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


class BaseClassifier:
    """Base class of the classifier adapters; implements the ``Classifier`` protocol.

    Subclasses implement :meth:`_logits` only.

    Args:
        input_shape: Shape of one input, without the batch dimension.
        num_classes: Number of output classes.
        bounds: ``(low, high)`` range of valid input values.
        batch_size: Largest batch sent through the model by :meth:`logits_batched` and
            :meth:`predict`.

    Attributes:
        queries: How many input samples have been sent through the model since construction
            or the last :meth:`reset_queries`.
    """

    differentiable: bool = False

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        bounds: tuple[float, float],
        batch_size: int,
    ) -> None:
        self.input_shape: tuple[int, ...] = tuple(int(d) for d in input_shape)
        self.num_classes: int = int(num_classes)
        self.bounds: tuple[float, float] = (float(bounds[0]), float(bounds[1]))
        self.batch_size: int = int(batch_size)
        self.queries: int = 0
        problems: list[str] = []
        if self.bounds[0] >= self.bounds[1]:
            problems.append(f"bounds must satisfy low < high, got {self.bounds}")
        if self.batch_size < 1:
            problems.append(f"batch_size must be at least 1, got {self.batch_size}")
        if self.num_classes < 1:
            problems.append(f"num_classes must be at least 1, got {self.num_classes}")
        if problems:
            raise InvalidParameterError(problems)

    # -- the one method a subclass writes ---------------------------------------------------

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        """Scores for a validated batch; shape ``(len(x), num_classes)``, on ``x.device``."""
        raise NotImplementedError

    # -- public API -----------------------------------------------------------------------

    @contextmanager
    def prepared(self) -> Iterator[BaseClassifier]:
        """Hold the per-call set-up for a series of calls, such as an attack's inner loop.

        Inside the ``with`` block, :meth:`logits` may skip work that each call would otherwise
        repeat (for :class:`~phalanx.adapters.TorchClassifier`: switching to eval mode and back,
        looking up the device, dtype and normalisation). Results and query counts are the same
        as outside the block. Blocks nest; only the outermost one does the set-up. This base
        implementation holds nothing. (Named ``prepared`` rather than ``session`` because
        adapters such as ``ONNXClassifier`` already keep a runtime ``session`` attribute.)

        Example:
            >>> with classifier.prepared():  # doctest: +SKIP
            ...     for _ in range(10):
            ...         scores = classifier.logits(x)
        """
        yield self

    def reset_queries(self) -> None:
        """Set the query counter back to zero."""
        self.queries = 0

    def as_tensor(self, x: Any) -> torch.Tensor:
        """``x`` (tensor, numpy array or nested sequence) as a floating-point tensor.

        Tensors are returned as they are when already floating point, so autograd still flows
        through them; integer and boolean data become ``float32``.
        """
        t = x if isinstance(x, torch.Tensor) else torch.as_tensor(x)
        if not t.is_floating_point():
            t = t.to(torch.float32)
        return t

    def check_shape(self, x: torch.Tensor) -> None:
        """Check that ``x`` is a batch of inputs of this model's input shape.

        Raises:
            ShapeError: Naming the expected and the received shape.
        """
        got = tuple(x.shape)
        if got[1:] == self.input_shape:
            return
        expected = "(batch, " + ", ".join(str(d) for d in self.input_shape) + ")"
        hint = None
        if got == self.input_shape:
            hint = "a single input needs a batch dimension, e.g. x[None]"
        elif len(got) > 1 and _prod(got[1:]) == _prod(self.input_shape):
            hint = f"reshape it, e.g. x.reshape(-1, *{_format_shape(self.input_shape)})"
        raise ShapeError(
            f"{type(self).__name__} expects inputs of shape {expected}, got {_format_shape(got)}",
            hint=hint,
        )

    def check_bounds(self, x: Any, *, tol: float = BOUNDS_TOLERANCE) -> None:
        """Check that every value of ``x`` lies within :attr:`bounds` (up to ``tol``).

        Raises:
            InputError: Naming the range found and the range expected.
        """
        t = self.as_tensor(x)
        if t.numel() == 0:
            return
        t = t.detach()
        if bool(torch.isnan(t).any()):
            raise InputError("inputs contain NaN")
        low, high = self.bounds
        found_low, found_high = float(t.min()), float(t.max())
        if found_low < low - tol or found_high > high + tol:
            hint = None
            if high <= 1.0 and found_high > 1.0 and found_high <= 255.0:
                hint = "8-bit images need scaling to [0, 1], e.g. x / 255"
            raise InputError(
                f"inputs lie in [{found_low:g}, {found_high:g}], outside the model's bounds "
                f"[{low:g}, {high:g}]",
                hint=hint,
            )

    def logits(self, x: Any) -> torch.Tensor:
        """Scores of shape ``(batch, num_classes)`` for inputs of shape ``(batch, *input_shape)``.

        The whole batch is sent at once. For differentiable adapters the result carries
        gradients back to ``x``.

        Raises:
            ShapeError: ``x`` does not match :attr:`input_shape`.
        """
        t = self.as_tensor(x)
        self.check_shape(t)
        self.queries += len(t)
        if len(t) == 0:
            return torch.empty((0, self.num_classes), device=t.device)
        return self._checked(self._logits(t), len(t))

    def logits_batched(self, x: Any) -> torch.Tensor:
        """Scores like :meth:`logits`, computed without gradients in batches of ``batch_size``."""
        t = self.as_tensor(x)
        self.check_shape(t)
        if len(t) == 0:
            return torch.empty((0, self.num_classes), device=t.device)
        parts = []
        with torch.inference_mode():
            t = t.detach()
            for start in range(0, len(t), self.batch_size):
                chunk = t[start : start + self.batch_size]
                self.queries += len(chunk)
                parts.append(self._checked(self._logits(chunk), len(chunk)))
            out = torch.cat(parts)
        # A clone made outside inference mode is an ordinary tensor: callers may edit it in place.
        return out.clone()

    def predict(self, x: Any) -> torch.Tensor:
        """Predicted class indices, shape ``(batch,)``, ``int64``."""
        return self.logits_batched(x).argmax(dim=1)

    def _checked(self, out: torch.Tensor, n: int) -> torch.Tensor:
        if tuple(out.shape) != (n, self.num_classes):
            raise TargetError(
                f"the model returned scores of shape {_format_shape(tuple(out.shape))}; "
                f"expected ({n}, {self.num_classes})"
            )
        return out

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(input_shape={self.input_shape}, "
            f"num_classes={self.num_classes}, bounds={self.bounds})"
        )


def _prod(shape: tuple[int, ...]) -> int:
    out = 1
    for d in shape:
        out *= int(d)
    return out

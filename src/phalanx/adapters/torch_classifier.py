"""TorchClassifier: a ``torch.nn.Module`` behind the ``Classifier`` protocol (white box)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from phalanx._optional import require
from phalanx.adapters.base import BaseClassifier
from phalanx.errors import ConfigurationError, InvalidParameterError, TargetError

if TYPE_CHECKING:
    import torch
    from torch import nn
else:
    torch = require("torch", extra="ml", purpose="TorchClassifier")
    nn = torch.nn


@dataclass(frozen=True)
class _Held:
    """What :meth:`TorchClassifier.prepared` looks up once instead of on every call."""

    device: torch.device
    dtype: torch.dtype
    mean: torch.Tensor | None
    std: torch.Tensor | None


class TorchClassifier(BaseClassifier):
    """A PyTorch model as a differentiable classifier.

    Attacks work in input space, ``bounds`` (by default pixels in ``[0, 1]``). When the model
    expects normalised inputs, pass ``mean`` and ``std``: normalisation then runs inside
    :meth:`logits` as part of the model, so gradients reach the unnormalised input and an
    ``eps`` means the same thing for every model.

    Each call puts the model in eval mode and restores every submodule's previous training
    flag afterwards; inputs move to the model's device and scores come back on the input's.
    Inside :meth:`prepared` (which attacks enter once per batch) the model stays in eval mode
    and the device, dtype and normalisation are looked up once, so that an attack's inner loop
    pays for the forward and backward passes only.

    Args:
        model: The network; it maps a batch of inputs to a batch of logits.
        input_shape: Shape of one input without the batch dimension, e.g. ``(3, 32, 32)``.
            Inferred from a ``model.input_shape`` attribute or a first ``nn.Linear`` layer
            (as ``(in_features,)``); convolutional models must give it.
        num_classes: Number of classes; inferred by one forward pass on a zero input.
        bounds: ``(low, high)`` range of valid inputs.
        mean: Per-channel (or scalar) mean subtracted inside the model.
        std: Per-channel (or scalar) standard deviation divided inside the model.
        device: Move the model to this device first (``"cuda"``); ``None`` leaves it where it is.
        batch_size: Batch size of :meth:`predict` and :meth:`logits_batched`.

    Shapes:
        x: ``(batch, *input_shape)``; logits: ``(batch, num_classes)``.

    Raises:
        ConfigurationError: The input shape cannot be inferred, or ``mean``/``std`` do not fit it.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
        >>> clf = TorchClassifier(net, input_shape=(1, 28, 28))
        >>> clf.num_classes
        10
    """

    differentiable = True

    def __init__(
        self,
        model: nn.Module,
        *,
        input_shape: Sequence[int] | None = None,
        num_classes: int | None = None,
        bounds: tuple[float, float] = (0.0, 1.0),
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
        device: str | torch.device | None = None,
        batch_size: int = 256,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ConfigurationError(
                f"TorchClassifier needs a torch.nn.Module, got {type(model).__name__}"
            )
        if device is not None:
            model.to(device)
        self.model = model
        self._held: _Held | None = None
        shape = tuple(int(d) for d in input_shape) if input_shape is not None else None
        if shape is None:
            shape = _infer_input_shape(model)
        self._mean, self._std = _normaliser(mean, std, shape)
        # Provisional class count until the probe below has run.
        super().__init__(
            input_shape=shape,
            num_classes=1 if num_classes is None else num_classes,
            bounds=bounds,
            batch_size=batch_size,
        )
        self.mean = mean
        self.std = std
        if num_classes is None:
            self.num_classes = self._probe_num_classes()

    @property
    def device(self) -> torch.device:
        """The device the model's parameters (or buffers) live on; CPU when it has neither."""
        for param in self.model.parameters():
            return param.device
        for buffer in self.model.buffers():
            return buffer.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        """The floating-point type the model computes in (``float32`` unless it says otherwise)."""
        for tensor in self.model.parameters():
            if tensor.is_floating_point():
                return tensor.dtype
        return torch.float32

    @contextmanager
    def _eval_mode(self) -> Iterator[None]:
        # Remember each submodule's flag, not only the top one: a model may be partly frozen.
        flags = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        try:
            yield
        finally:
            for module, training in flags:
                module.training = training

    @contextmanager
    def prepared(self) -> Iterator[TorchClassifier]:
        """Keep the model in eval mode and its device, dtype and normalisation looked up.

        Every submodule's training flag is restored on exit. Changing the model's device,
        dtype or mode inside the block is not noticed until the block ends.
        """
        if self._held is not None:  # nested: the outer block holds everything already
            yield self
            return
        with self._eval_mode():
            device, dtype = self.device, self.dtype
            mean = std = None
            if self._mean is not None and self._std is not None:
                mean, std = self._mean.to(device, dtype), self._std.to(device, dtype)
            self._held = _Held(device, dtype, mean, std)
            try:
                yield self
            finally:
                self._held = None

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        home = x.device
        held = self._held
        if held is not None:
            x = x.to(device=held.device, dtype=held.dtype)
            if held.mean is not None and held.std is not None:
                x = (x - held.mean) / held.std
            out = _as_logits(self.model(x), type(self.model).__name__)
            return out.to(home)
        device = self.device
        x = x.to(device=device, dtype=self.dtype)
        if self._mean is not None and self._std is not None:
            x = (x - self._mean.to(device, x.dtype)) / self._std.to(device, x.dtype)
        with self._eval_mode():
            out = self.model(x)
        out = _as_logits(out, type(self.model).__name__)
        return out.to(home)

    def _probe_num_classes(self) -> int:
        probe = torch.zeros((1, *self.input_shape))
        with torch.inference_mode():
            out = self._logits(probe)
        if out.ndim != 2 or out.shape[1] < 1:
            raise ConfigurationError(
                f"{type(self.model).__name__} returned an output of shape {tuple(out.shape)} "
                f"for one input of shape {self.input_shape}; expected (1, num_classes)",
                hint="a classifier must return one score per class",
            )
        return int(out.shape[1])

    def __repr__(self) -> str:
        return (
            f"TorchClassifier({type(self.model).__name__}, input_shape={self.input_shape}, "
            f"num_classes={self.num_classes}, bounds={self.bounds})"
        )


def _as_logits(out: Any, model_name: str) -> torch.Tensor:
    """Accept a tensor, or an object with a ``.logits`` tensor (as transformers models return)."""
    if isinstance(out, torch.Tensor):
        return out
    logits = getattr(out, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    raise TargetError(f"{model_name} returned {type(out).__name__}, not a tensor of logits")


def _infer_input_shape(model: nn.Module) -> tuple[int, ...]:
    declared = getattr(model, "input_shape", None)
    if (
        isinstance(declared, (tuple, list))
        and declared
        and all(isinstance(d, int) and d > 0 for d in declared)
    ):
        return tuple(declared)
    first = next(
        (
            m
            for m in model.modules()
            if not list(m.children()) and any(True for _ in m.parameters(recurse=False))
        ),
        None,
    )
    if isinstance(first, nn.Linear) and first.in_features > 0:
        return (int(first.in_features),)
    what = f"its first layer is {type(first).__name__}" if first is not None else "it has no layers"
    raise ConfigurationError(
        f"cannot infer the input shape of {type(model).__name__} ({what})",
        hint="pass input_shape=, e.g. TorchClassifier(model, input_shape=(3, 32, 32))",
    )


def _normaliser(
    mean: float | Sequence[float] | None,
    std: float | Sequence[float] | None,
    input_shape: tuple[int, ...],
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``mean`` and ``std`` as tensors that broadcast over one input's channel axis."""
    if mean is None and std is None:
        return None, None
    m = torch.as_tensor(0.0 if mean is None else mean, dtype=torch.float32).flatten()
    s = torch.as_tensor(1.0 if std is None else std, dtype=torch.float32).flatten()
    channels = input_shape[0] if input_shape else 1
    problems = []
    for name, t in (("mean", m), ("std", s)):
        if t.numel() not in (1, channels):
            problems.append(
                f"{name} has {t.numel()} values but inputs of shape {input_shape} have "
                f"{channels} channels"
            )
    if bool((s <= 0).any()):
        problems.append(f"std must be positive, got {s.tolist()}")
    if problems:
        raise InvalidParameterError(problems)
    view = (-1,) + (1,) * max(len(input_shape) - 1, 0)
    return m.reshape(view), s.reshape(view)

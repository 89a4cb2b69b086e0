"""Shared steps of gradient attacks: loss gradients, normalised steps, projections."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from phalanx._optional import require
from phalanx.core.protocols import Classifier

if TYPE_CHECKING:
    import torch

_TINY = 1e-12


def attack_session(classifier: Classifier) -> AbstractContextManager[Any]:
    """The classifier's ``prepared()`` context (set-up held across calls), if it has one.

    Attacks wrap their inner loop in it so that adapters such as
    :class:`~phalanx.adapters.TorchClassifier` enter eval mode once per batch instead of once
    per call. Classifiers without ``prepared`` (any object that meets the ``Classifier``
    protocol) get a context that does nothing.
    """
    prepared = getattr(classifier, "prepared", None)
    return prepared() if callable(prepared) else nullcontext()


def loss_gradient(
    classifier: Classifier, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
) -> torch.Tensor:
    """Gradient of the attacker's objective w.r.t. ``x`` (ascend it).

    Untargeted: the cross-entropy of the true label (to increase). Targeted: minus the
    cross-entropy of the target label (so that ascending it moves towards the target).
    Losses are summed, not averaged, so the per-sample gradient does not shrink with the batch.
    """
    torch = require("torch", extra="ml")
    f = torch.nn.functional
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        logits = classifier.logits(x)
        if target is None:
            loss = f.cross_entropy(logits, y, reduction="sum")
        else:
            loss = -f.cross_entropy(logits, target, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return grad


def normalized_step(grad: torch.Tensor, size: float, norm: str) -> torch.Tensor:
    """The steepest-ascent step of length ``size`` in ``norm`` for gradient ``grad``."""
    if norm == "linf":
        return size * grad.sign()
    if norm == "l2":
        flat = grad.reshape(len(grad), -1).norm(p=2, dim=1).clamp_min(_TINY)
        return size * grad / flat.view(-1, *([1] * (grad.ndim - 1)))
    raise ValueError(f"unsupported norm {norm!r}")


def project(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Project perturbations onto the ``eps`` ball of ``norm`` (per sample)."""
    if norm == "linf":
        return delta.clamp(-eps, eps)
    if norm == "l2":
        size = delta.reshape(len(delta), -1).norm(p=2, dim=1)
        factor = (eps / size.clamp_min(_TINY)).clamp(max=1.0)
        return delta * factor.view(-1, *([1] * (delta.ndim - 1)))
    raise ValueError(f"unsupported norm {norm!r}")


def clip_to_bounds(x: torch.Tensor, classifier: Classifier) -> torch.Tensor:
    """Clip inputs to the classifier's valid range."""
    low, high = classifier.bounds
    return x.clamp(low, high)


def linf_box(
    x: torch.Tensor, eps: float, classifier: Classifier
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-element limits ``(lo, hi)`` of the L-inf ``eps`` ball around ``x``, within bounds.

    Clamping a point to them (``adv.clamp(lo, hi)``) is :func:`project` in L-inf followed by
    :func:`clip_to_bounds`, in one pass over the data instead of four and without the rounding
    of ``x + (adv - x)``. Compute the box once per batch and reuse it every iteration.
    """
    low, high = classifier.bounds
    return (x - eps).clamp_(min=low), (x + eps).clamp_(max=high)


def random_start(
    x: torch.Tensor, eps: float, norm: str, generator: torch.Generator
) -> torch.Tensor:
    """A uniformly random point of the ``eps`` ball around each input (not yet clipped).

    L-inf: uniform in the cube. L2: uniform in the ball (a Gaussian direction, radius
    ``eps * u ** (1/d)``).
    """
    torch = require("torch", extra="ml")
    if norm == "linf":
        noise = torch.rand(x.shape, generator=generator) * 2 - 1
        return x + eps * noise.to(x.device, x.dtype)
    if norm == "l2":
        direction = torch.randn(x.shape, generator=generator)
        flat = direction.reshape(len(x), -1)
        d = flat.shape[1]
        radius = eps * torch.rand(len(x), generator=generator) ** (1.0 / d)
        direction = direction / flat.norm(p=2, dim=1).clamp_min(_TINY).view(
            -1, *([1] * (x.ndim - 1))
        )
        step = direction * radius.view(-1, *([1] * (x.ndim - 1)))
        return x + step.to(x.device, x.dtype)
    raise ValueError(f"unsupported norm {norm!r}")

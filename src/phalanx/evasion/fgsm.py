"""Fast Gradient Sign Method."""

from __future__ import annotations

from typing import TYPE_CHECKING

from phalanx._optional import require
from phalanx.core.protocols import Classifier
from phalanx.evasion.base import Attack
from phalanx.evasion.steps import clip_to_bounds, loss_gradient, normalized_step

if TYPE_CHECKING:
    import torch


class FGSM(Attack):
    """Fast Gradient Sign Method: one step of size ``eps`` along the sign of the loss gradient.

    Paper: Goodfellow, Shlens & Szegedy (2015), "Explaining and Harnessing Adversarial
    Examples", ICLR. https://arxiv.org/abs/1412.6572

    Threat model: white-box (input gradients), perturbation bounded by ``eps`` in L-inf (or
    L2, where the step follows the normalised gradient, the "fast gradient method").

    Args:
        eps: Perturbation budget. Default 0.1.
        norm: ``"linf"`` or ``"l2"``. Default ``"linf"``.
        targeted: Step towards a target class instead of away from the true one.
        seed: Seed for drawing random targets. Default ``None`` (the run context's seed).
        batch_size: Samples per forward/backward pass. Default 256.

    Shapes:
        x: ``(n, *input_shape)``; y: ``(n,)``.

    Example:
        >>> result = FGSM(eps=0.1).run(classifier, x, y)  # doctest: +SKIP
        >>> result.success_rate  # doctest: +SKIP
    """

    name = "fgsm"
    paper = "Goodfellow, Shlens & Szegedy 2015, https://arxiv.org/abs/1412.6572"

    def __init__(
        self,
        *,
        eps: float = 0.1,
        norm: str = "linf",
        targeted: bool = False,
        seed: int | None = None,
        batch_size: int = 256,
    ) -> None:
        self.eps = eps
        self.norm = norm
        self.targeted = targeted
        self.seed = seed
        self.batch_size = batch_size

    def _perturb(
        self,
        classifier: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        generator: torch.Generator,
    ) -> torch.Tensor:
        torch = require("torch", extra="ml")
        grad = loss_gradient(classifier, x, y, target)
        with torch.no_grad():
            return clip_to_bounds(x + normalized_step(grad, self.eps, self.norm), classifier)

"""APGD-T: Auto-PGD with the targeted DLR loss, run against the most likely other classes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from phalanx._optional import require
from phalanx.core.plugin import Interval
from phalanx.core.protocols import Classifier
from phalanx.evasion.apgd import APGD
from phalanx.evasion.steps import attack_session

if TYPE_CHECKING:
    import torch


class APGDT(APGD):
    """APGD-T: Auto-PGD on the targeted DLR loss, against each of the top other classes in turn.

    Paper: Croce & Hein (2020), "Reliable evaluation of adversarial robustness with an
    ensemble of diverse parameter-free attacks", ICML. https://arxiv.org/abs/2003.01690
    (the APGD-T of AutoAttack).

    Threat model: white-box (input gradients); perturbation bounded by ``eps`` in L-inf or L2;
    untargeted by default: a sample counts as fooled once misclassified, whatever the class.

    Untargeted (the default), the attack ranks the classes other than the true one by their
    clean logits and runs :class:`~phalanx.evasion.apgd.APGD` with the targeted DLR loss
    ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12)`` against the most likely one, then
    the next, up to ``n_target_classes`` of them, each time only on the samples not yet fooled
    (``restarts`` runs per class). With ``targeted=True`` it attacks only the target given to
    :meth:`run` (or a random one when none is given) and success means reaching it. The loss is
    fixed; the model needs at least 4 classes.

    Args:
        eps: Perturbation budget. Default 8/255.
        norm: ``"linf"`` or ``"l2"``. Default ``"linf"``.
        max_iter: Iterations per run. Default 100.
        restarts: Runs per target class on the samples not yet fooled. Default 1.
        rho: Fraction of loss increases below which the step is halved. Default 0.75.
        alpha: Momentum: weight of the new step against the previous one. Default 0.75.
        n_target_classes: How many of the most likely other classes to try. Default 9.
        targeted: Reach the target given to :meth:`run` instead. Default ``False``.
        seed: Seed for random starts and targets. Default ``None`` (the context's seed).
        batch_size: Samples per pass. Default 256.

    Shapes:
        x: ``(n, *input_shape)``; y: ``(n,)``.

    Example:
        >>> result = APGDT(eps=8 / 255).run(classifier, x, y)  # doctest: +SKIP
        >>> robust_accuracy = 1 - result.success_rate  # doctest: +SKIP
    """

    name = "apgd-t"
    loss = "dlr-targeted"
    constraints = {
        **{k: v for k, v in APGD.constraints.items() if k != "loss"},
        "n_target_classes": Interval(1, None, integer=True),
    }

    def __init__(
        self,
        *,
        eps: float = 8 / 255,
        norm: str = "linf",
        max_iter: int = 100,
        restarts: int = 1,
        rho: float = 0.75,
        alpha: float = 0.75,
        n_target_classes: int = 9,
        targeted: bool = False,
        seed: int | None = None,
        batch_size: int = 256,
    ) -> None:
        self.eps = eps
        self.norm = norm
        self.max_iter = max_iter
        self.restarts = restarts
        self.rho = rho
        self.alpha = alpha
        self.n_target_classes = n_target_classes
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
        if target is not None:
            return super()._perturb(classifier, x, y, target, generator)
        self._check_classes(classifier, targeted_loss=True)
        with attack_session(classifier):
            with torch.no_grad():
                logits = classifier.logits(x).to(x.device)
            done = logits.argmax(dim=1) != y
            # The other classes, most likely first (the true class is pushed to the end).
            ranked = logits.scatter(1, y[:, None], float("-inf")).argsort(dim=1, descending=True)
            out = x.clone()
            for j in range(min(self.n_target_classes, classifier.num_classes - 1)):
                self._attack(classifier, x, y, ranked[:, j], None, done, out, generator)
        return out

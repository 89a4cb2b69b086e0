"""Projected Gradient Descent."""

from __future__ import annotations

from typing import TYPE_CHECKING

from phalanx._optional import require
from phalanx.core.plugin import Interval, IsInstance
from phalanx.core.protocols import Classifier
from phalanx.evasion.base import Attack
from phalanx.evasion.steps import (
    attack_session,
    clip_to_bounds,
    linf_box,
    loss_gradient,
    normalized_step,
    project,
    random_start,
)

if TYPE_CHECKING:
    import torch


class PGD(Attack):
    """Projected Gradient Descent on the cross-entropy loss, with random start and restarts.

    Paper: Madry, Makelov, Schmidt, Tsipras & Vladu (2018), "Towards Deep Learning Models
    Resistant to Adversarial Attacks", ICLR. https://arxiv.org/abs/1706.06083

    Threat model: white-box (input gradients); perturbation bounded by ``eps`` in L-inf or L2;
    untargeted (leave the true class) or targeted (reach a target class).

    Each iteration takes a steepest-ascent step of ``step_size`` (the sign of the gradient in
    L-inf, the normalised gradient in L2), projects back onto the ``eps`` ball and clips to the
    input bounds. With ``restarts > 1`` the attack reruns from fresh random starts on the
    samples not yet fooled and keeps, per sample, the first successful example.

    Args:
        eps: Perturbation budget. Default 8/255.
        step_size: Step length per iteration. Default 2/255.
        max_iter: Iterations per restart. Default 10.
        norm: ``"linf"`` or ``"l2"``. Default ``"linf"``.
        random_start: Start from a uniform point of the ball instead of the input.
        restarts: Number of random restarts (>= 1). Default 1.
        targeted: Move towards a target class.
        seed: Seed for random starts and targets. Default ``None`` (the context's seed).
        batch_size: Samples per pass. Default 256.

    Shapes:
        x: ``(n, *input_shape)``; y: ``(n,)``.

    Example:
        >>> result = PGD(eps=0.3, step_size=0.01, max_iter=40).run(classifier, x, y)  # doctest: +SKIP
        >>> robust_accuracy = 1 - result.success_rate  # doctest: +SKIP
    """

    name = "pgd"
    paper = "Madry et al. 2018, https://arxiv.org/abs/1706.06083"
    constraints = {
        **Attack.constraints,
        "step_size": Interval(0, None, closed="neither"),
        "max_iter": Interval(1, None, integer=True),
        "restarts": Interval(1, None, integer=True),
        "random_start": IsInstance((bool,)),
    }

    def __init__(
        self,
        *,
        eps: float = 8 / 255,
        step_size: float = 2 / 255,
        max_iter: int = 10,
        norm: str = "linf",
        random_start: bool = True,
        restarts: int = 1,
        targeted: bool = False,
        seed: int | None = None,
        batch_size: int = 256,
    ) -> None:
        self.eps = eps
        self.step_size = step_size
        self.max_iter = max_iter
        self.norm = norm
        self.random_start = random_start
        self.restarts = restarts
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
        if len(x) == 0:
            return x.clone()
        best = None
        todo = None  # indices still to attack; None means all of them
        with attack_session(classifier):
            for attempt in range(self.restarts):
                if todo is None:
                    xs, ys, ts = x, y, target
                else:
                    xs, ys = x[todo], y[todo]
                    ts = target[todo] if target is not None else None
                adv = self._one_run(classifier, xs, ys, ts, generator)
                # Keep the latest attempt for samples never fooled, the first success otherwise.
                if best is None:
                    best = adv
                else:
                    best[todo] = adv
                if attempt == self.restarts - 1:
                    break  # no restart follows, so nobody needs to know which samples fooled it
                with torch.no_grad():
                    pred = classifier.logits(adv).argmax(dim=1).to(x.device)
                fooled = (pred == ts) if ts is not None else (pred != ys)
                index = todo if todo is not None else torch.arange(len(x), device=x.device)
                todo = index[~fooled]
                if len(todo) == 0:
                    break
        return best if best is not None else x.clone()

    def _one_run(
        self,
        classifier: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        generator: torch.Generator,
    ) -> torch.Tensor:
        torch = require("torch", extra="ml")
        if self.random_start:
            adv = clip_to_bounds(random_start(x, self.eps, self.norm, generator), classifier)
        else:
            adv = x.clone()
        # L-inf: projection and clipping are one clamp to a box computed once per batch.
        box = linf_box(x, self.eps, classifier) if self.norm == "linf" else None
        for _ in range(self.max_iter):
            grad = loss_gradient(classifier, adv, y, target)
            with torch.no_grad():
                if box is not None:
                    # ``adv`` is this loop's own tensor (the graph that read it is freed): update
                    # it in place rather than allocating four temporaries per iteration.
                    adv.add_(grad.sign(), alpha=self.step_size).clamp_(box[0], box[1])
                else:
                    adv = adv + normalized_step(grad, self.step_size, self.norm)
                    adv = clip_to_bounds(x + project(adv - x, self.eps, self.norm), classifier)
        return adv

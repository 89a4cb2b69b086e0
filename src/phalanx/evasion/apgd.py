"""Auto-PGD: PGD with an adaptive step size, momentum, and the cross-entropy or DLR loss."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from phalanx._optional import require
from phalanx.core.plugin import Interval, OneOf
from phalanx.core.protocols import Classifier
from phalanx.errors import InputError
from phalanx.evasion.base import Attack
from phalanx.evasion.steps import (
    attack_session,
    clip_to_bounds,
    linf_box,
    normalized_step,
    project,
)

if TYPE_CHECKING:
    import torch

#: Added to the DLR denominator, as in the paper, so that equal logits do not divide by zero.
DLR_EPS = 1e-12


def checkpoints(max_iter: int) -> list[int]:
    """The iterations at which APGD may halve its step size.

    ``w_j = ceil(p_j * max_iter)`` with ``p_0 = 0``, ``p_1 = 0.22`` and
    ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``, for every ``p_j <= 1``. The ``p_j`` are
    kept in whole hundredths so that no rounding error moves a ceiling (``0.7 * 100`` is
    ``70.00000000000001`` in floating point). Repeated values, which small ``max_iter`` gives,
    appear once.

    Example:
        >>> checkpoints(100)
        [0, 22, 41, 57, 70, 80, 87, 93, 99]
    """
    percents = [0]
    prev, cur = 0, 22
    while cur <= 100:
        percents.append(cur)
        prev, cur = cur, cur + max(cur - prev - 3, 6)
    out: list[int] = []
    for p in percents:
        w = -(-p * max_iter // 100)  # exact integer ceiling
        if not out or w != out[-1]:
            out.append(w)
    return out


def dlr_loss(
    logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-sample Difference of Logits Ratio loss, to be maximised by the attacker.

    Untargeted: ``-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3 + 1e-12)``; targeted:
    ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12)``, where ``z_pi1 >= z_pi2 >= ...``
    are the sorted logits. Both are invariant to shifting and to positive scaling of the logits.

    Args:
        logits: Shape ``(n, k)``; ``k >= 3`` untargeted, ``k >= 4`` targeted.
        y: True labels, shape ``(n,)``.
        target: Target labels, shape ``(n,)``, for the targeted version.

    Returns:
        Shape ``(n,)``.
    """
    torch = require("torch", extra="ml")
    top = logits.topk(3 if target is None else 4, dim=1)
    z = top.values
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    if target is None:
        z_other = torch.where(top.indices[:, 0] == y, z[:, 1], z[:, 0])
        return -(z_y - z_other) / (z[:, 0] - z[:, 2] + DLR_EPS)
    z_t = logits.gather(1, target[:, None]).squeeze(1)
    return -(z_y - z_t) / (z[:, 0] - 0.5 * (z[:, 2] + z[:, 3]) + DLR_EPS)


@dataclass
class _Active:
    """The state of one APGD run over the samples it is still attacking."""

    rows: torch.Tensor  # each row's index in the batch given to the run
    x: torch.Tensor  # original inputs
    lo: torch.Tensor | None  # L-inf: the eps ball within bounds, as per-element limits
    hi: torch.Tensor | None
    y: torch.Tensor
    loss_target: torch.Tensor | None  # the class a targeted loss aims at
    goal_target: torch.Tensor | None  # the class that counts as success, else misclassification
    cur: torch.Tensor  # x^(k)
    prev: torch.Tensor  # x^(k-1)
    grad: torch.Tensor  # gradient of the loss at cur
    loss: torch.Tensor  # loss at cur
    best: torch.Tensor  # highest-loss point so far (x_max)
    best_loss: torch.Tensor
    best_grad: torch.Tensor
    adv: torch.Tensor  # the first adversarial point found
    fooled: torch.Tensor
    step: torch.Tensor  # per-sample step size eta
    increases: torch.Tensor  # loss increases since the last checkpoint
    best_loss_at_check: torch.Tensor
    reduced_at_check: torch.Tensor  # whether the step was halved at the last checkpoint

    def keep(self, mask: torch.Tensor) -> _Active:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return _Active(**{k: None if v is None else v[mask] for k, v in values.items()})


def _per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``v`` of shape ``(n,)`` viewed so that it broadcasts against ``like``."""
    return v.view(-1, *([1] * (like.ndim - 1)))


class APGD(Attack):
    """Auto-PGD: PGD with a step size that adapts itself, momentum, and a choice of loss.

    Paper: Croce & Hein (2020), "Reliable evaluation of adversarial robustness with an
    ensemble of diverse parameter-free attacks", ICML. https://arxiv.org/abs/2003.01690

    Threat model: white-box (input gradients); perturbation bounded by ``eps`` in L-inf or L2;
    untargeted (leave the true class) or targeted (reach a target class).

    The step size starts at ``2 * eps``. At the checkpoints of :func:`checkpoints` it is halved,
    and the iterate moved back to the highest-loss point found, wherever the loss went up in
    fewer than a fraction ``rho`` of the steps since the last checkpoint, or where neither the
    step size nor the best loss changed since then. Each step
    ``z = P(x_k + eta * s(grad))`` (``s`` the sign in L-inf, the normalised gradient in L2) is
    combined with the previous one, ``x_{k+1} = P(x_k + alpha (z - x_k) + (1 - alpha)(x_k -
    x_{k-1}))``, where ``P`` projects onto the ``eps`` ball and clips to the input bounds (in
    L2, projection then clipping, which stays in the ball but is not the exact projection onto
    the intersection). Each run starts from a random point on the sphere of radius ``eps``,
    clipped to the bounds. Per sample the first adversarial point is kept; samples never fooled
    get the highest-loss point. Samples already fooled leave the run at the next checkpoint
    (which does not change any other sample's run), and restarts rerun only the samples not
    yet fooled.

    Losses: ``"ce"``, the cross-entropy (minus the target's cross-entropy when targeted);
    ``"dlr"``, the Difference of Logits Ratio of :func:`dlr_loss` (its targeted form when
    targeted), which needs at least 3 classes (4 targeted).

    Args:
        eps: Perturbation budget. Default 8/255.
        norm: ``"linf"`` or ``"l2"``. Default ``"linf"``.
        loss: ``"ce"`` or ``"dlr"``. Default ``"ce"``.
        max_iter: Iterations per run. Default 100.
        restarts: Runs from fresh random starts on the samples not yet fooled. Default 1.
        rho: Fraction of loss increases below which the step is halved. Default 0.75.
        alpha: Momentum: weight of the new step against the previous one. Default 0.75.
        targeted: Reach a target class instead of leaving the true one. Default ``False``.
        seed: Seed for random starts and targets. Default ``None`` (the context's seed).
        batch_size: Samples per pass. Default 256.

    Shapes:
        x: ``(n, *input_shape)``; y: ``(n,)``.

    Example:
        >>> result = APGD(eps=8 / 255, loss="dlr").run(classifier, x, y)  # doctest: +SKIP
        >>> robust_accuracy = 1 - result.success_rate  # doctest: +SKIP
    """

    name = "apgd"
    paper = "Croce & Hein 2020, https://arxiv.org/abs/2003.01690"
    constraints = {
        **Attack.constraints,
        "loss": OneOf(("ce", "dlr")),
        "max_iter": Interval(1, None, integer=True),
        "restarts": Interval(1, None, integer=True),
        "rho": Interval(0, 1),
        "alpha": Interval(0, 1),
    }

    def __init__(
        self,
        *,
        eps: float = 8 / 255,
        norm: str = "linf",
        loss: str = "ce",
        max_iter: int = 100,
        restarts: int = 1,
        rho: float = 0.75,
        alpha: float = 0.75,
        targeted: bool = False,
        seed: int | None = None,
        batch_size: int = 256,
    ) -> None:
        self.eps = eps
        self.norm = norm
        self.loss = loss
        self.max_iter = max_iter
        self.restarts = restarts
        self.rho = rho
        self.alpha = alpha
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
        self._check_classes(classifier, targeted_loss=target is not None)
        with attack_session(classifier), torch.no_grad():
            pred = classifier.logits(x).argmax(dim=1).to(x.device)
            done = (pred == target) if target is not None else (pred != y)
            out = x.clone()
            self._attack(classifier, x, y, target, target, done, out, generator)
        return out

    def _check_classes(self, classifier: Classifier, *, targeted_loss: bool) -> None:
        if self.loss == "ce":
            return
        needed = 4 if targeted_loss or self.loss == "dlr-targeted" else 3
        if classifier.num_classes < needed:
            raise InputError(
                f"the {'targeted ' if needed == 4 else ''}DLR loss needs at least {needed} "
                f"classes; the model has {classifier.num_classes}",
                hint='use loss="ce"',
            )

    def _attack(
        self,
        classifier: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        loss_target: torch.Tensor | None,
        goal_target: torch.Tensor | None,
        done: torch.Tensor,
        out: torch.Tensor,
        generator: torch.Generator,
    ) -> None:
        """Run up to ``restarts`` times on the samples not ``done``; update ``done`` and ``out``."""
        for _ in range(self.restarts):
            todo = (~done).nonzero().squeeze(1)
            if len(todo) == 0:
                return
            adv, fooled = self._run(
                classifier,
                x[todo],
                y[todo],
                None if loss_target is None else loss_target[todo],
                None if goal_target is None else goal_target[todo],
                generator,
            )
            out[todo] = adv
            done[todo] = fooled

    def _objective(
        self, logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> torch.Tensor:
        """Per-sample loss to maximise."""
        torch = require("torch", extra="ml")
        if self.loss == "ce":
            f = torch.nn.functional
            if target is None:
                return f.cross_entropy(logits, y, reduction="none")
            return -f.cross_entropy(logits, target, reduction="none")
        return dlr_loss(logits, y, target)

    def _loss_grad(
        self,
        classifier: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        loss_target: torch.Tensor | None,
        goal_target: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Loss, its gradient and whether the point is adversarial: one forward and backward."""
        torch = require("torch", extra="ml")
        with torch.enable_grad():
            xr = x.detach().requires_grad_(True)
            logits = classifier.logits(xr)
            loss = self._objective(logits, y, loss_target)
            (grad,) = torch.autograd.grad(loss.sum(), xr)
        pred = logits.detach().argmax(dim=1)
        hit = (pred == goal_target) if goal_target is not None else (pred != y)
        return loss.detach(), grad, hit

    def _project(
        self,
        x: torch.Tensor,
        lo: torch.Tensor | None,
        hi: torch.Tensor | None,
        v: torch.Tensor,
        classifier: Classifier,
    ) -> torch.Tensor:
        """``P``: onto the ``eps`` ball, then into the bounds (one clamp in L-inf)."""
        if lo is not None and hi is not None:
            return v.clamp(lo, hi)
        return clip_to_bounds(x + project(v - x, self.eps, self.norm), classifier)

    def _start(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A random point on the sphere of radius ``eps`` around each input (not yet clipped)."""
        torch = require("torch", extra="ml")
        if self.norm == "linf":
            t = torch.rand(x.shape, generator=generator) * 2 - 1
            size = t.reshape(len(t), -1).abs().amax(dim=1)
        else:
            t = torch.randn(x.shape, generator=generator)
            size = t.reshape(len(t), -1).norm(p=2, dim=1)
        t = t / _per_sample(size.clamp_min(1e-12), t)
        return x + self.eps * t.to(x.device, x.dtype)

    def _run(
        self,
        classifier: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        loss_target: torch.Tensor | None,
        goal_target: torch.Tensor | None,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One APGD run; returns per sample the adversarial (else best-loss) point and success."""
        torch = require("torch", extra="ml")
        n = len(x)
        result = x.clone()
        success = torch.zeros(n, dtype=torch.bool, device=x.device)
        lo, hi = linf_box(x, self.eps, classifier) if self.norm == "linf" else (None, None)
        cur = self._project(x, lo, hi, self._start(x, generator), classifier)
        loss, grad, hit = self._loss_grad(classifier, cur, y, loss_target, goal_target)
        s = _Active(
            rows=torch.arange(n, device=x.device),
            x=x,
            lo=lo,
            hi=hi,
            y=y,
            loss_target=loss_target,
            goal_target=goal_target,
            cur=cur,
            prev=cur,
            grad=grad,
            loss=loss,
            best=cur,
            best_loss=loss,
            best_grad=grad,
            adv=cur,
            fooled=hit,
            step=torch.full((n,), 2.0 * self.eps, dtype=x.dtype, device=x.device),
            increases=torch.zeros(n, device=x.device),
            best_loss_at_check=loss,
            reduced_at_check=torch.zeros_like(hit),
        )
        marks = checkpoints(self.max_iter)
        window = {w: w - v for v, w in itertools.pairwise(marks)}
        with torch.no_grad():
            for k in range(self.max_iter):
                momentum = 1.0 if k == 0 else self.alpha  # the first step has no momentum
                step = normalized_step(s.grad, 1.0, self.norm) * _per_sample(s.step, s.grad)
                z = self._project(s.x, s.lo, s.hi, s.cur + step, classifier)
                nxt = s.cur + momentum * (z - s.cur) + (1 - momentum) * (s.cur - s.prev)
                nxt = self._project(s.x, s.lo, s.hi, nxt, classifier)
                loss, grad, hit = self._loss_grad(
                    classifier, nxt, s.y, s.loss_target, s.goal_target
                )
                s.adv = torch.where(_per_sample(hit & ~s.fooled, nxt), nxt, s.adv)
                s.fooled = s.fooled | hit
                increased = loss > s.loss
                better = loss > s.best_loss
                s.best = torch.where(_per_sample(better, nxt), nxt, s.best)
                s.best_grad = torch.where(_per_sample(better, grad), grad, s.best_grad)
                s.best_loss = torch.where(better, loss, s.best_loss)
                s.prev, s.cur, s.grad, s.loss = s.cur, nxt, grad, loss
                if k == 0 or k in window:
                    if k > 0:
                        s = self._checkpoint(s, window[k])
                    s.best_loss_at_check = s.best_loss
                    # This step's increase counts towards the window that starts here.
                    s.increases = increased.to(s.increases.dtype)
                    if bool(s.fooled.any()):
                        # Fooled samples are done: write them out and drop them from the run.
                        result[s.rows[s.fooled]] = s.adv[s.fooled]
                        success[s.rows[s.fooled]] = True
                        s = s.keep(~s.fooled)
                        if len(s.rows) == 0:
                            break
                else:
                    s.increases = s.increases + increased.to(s.increases.dtype)
            result[s.rows] = torch.where(_per_sample(s.fooled, s.x), s.adv, s.best)
            success[s.rows] = s.fooled
        return result, success

    def _checkpoint(self, s: _Active, length: int) -> _Active:
        """Halve the step and go back to the best point where the loss stopped improving."""
        torch = require("torch", extra="ml")
        too_few_increases = s.increases < self.rho * length
        stalled = ~s.reduced_at_check & (s.best_loss <= s.best_loss_at_check)
        reduce = too_few_increases | stalled
        s.step = torch.where(reduce, s.step / 2, s.step)
        back = _per_sample(reduce, s.cur)
        s.cur = torch.where(back, s.best, s.cur)
        s.grad = torch.where(back, s.best_grad, s.grad)
        s.loss = torch.where(reduce, s.best_loss, s.loss)
        s.reduced_at_check = reduce
        return s

"""DeepFool."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from phalanx._optional import require
from phalanx.core.plugin import Interval
from phalanx.core.protocols import Classifier
from phalanx.core.threat import ThreatModel
from phalanx.evasion.base import Attack
from phalanx.evasion.steps import clip_to_bounds, project

if TYPE_CHECKING:
    import torch

#: Added to each step's length so that it crosses the linearised boundary (paper's code).
_NUDGE = 1e-4
_TINY = 1e-12


class DeepFool(Attack):
    """DeepFool: repeatedly step to the nearest linearised decision boundary.

    Paper: Moosavi-Dezfooli, Fawzi & Frossard (2016), "DeepFool: a simple and accurate method
    to fool deep neural networks", CVPR. https://arxiv.org/abs/1511.04599

    Threat model: white-box (input gradients); untargeted; minimum-norm in L2 or L-inf: with
    ``eps=None`` the perturbation is unbounded, with ``eps`` set the result is projected onto
    the ``eps`` ball (and may then no longer fool the model).

    At each iteration the classifier is linearised around the current point ``x_i``. For each
    of the ``n_candidates`` classes ``k`` ranked highest on the clean input (the true class
    excluded), ``w_k = grad(Z_k - Z_y)`` and ``f_k = Z_k - Z_y``; the closest boundary is
    ``l = argmin_k |f_k| / ||w_k||_q`` with ``q`` the dual norm (2 for L2, 1 for L-inf), and the
    step onto it is ``r = |f_l| / ||w_l||_q^q * |w_l|^(q-1) * sign(w_l)``. Steps accumulate
    into ``r_tot``; the point evaluated is ``x + (1 + overshoot) * r_tot``, clipped to the
    bounds, and a sample stops as soon as it is misclassified. Samples the model already
    misclassifies are returned unchanged.

    Args:
        eps: Budget in ``norm``, or ``None`` (default) for an unbounded, minimum-norm attack.
        norm: ``"l2"`` (default) or ``"linf"``.
        max_iter: Most linearisation steps. Default 50.
        overshoot: Relative overshoot of the accumulated perturbation. Default 0.02.
        n_candidates: How many top-ranked classes (the true one included) are considered.
            Default 10.
        targeted: Must be ``False``: DeepFool is untargeted.
        seed: Unused (DeepFool is deterministic); kept for the shared vocabulary.
        batch_size: Samples per pass. Default 256.

    Shapes:
        x: ``(n, *input_shape)``; y: ``(n,)``.

    Example:
        >>> result = DeepFool(norm="l2").run(classifier, x, y)  # doctest: +SKIP
        >>> result.perturbation_norms(x, "l2").median()  # doctest: +SKIP
    """

    # Minimum-norm: no budget unless one is given.
    eps: float | None  # type: ignore[assignment]

    name = "deepfool"
    paper = "Moosavi-Dezfooli, Fawzi & Frossard 2016, https://arxiv.org/abs/1511.04599"
    norms = ("l2", "linf")
    constraints = {
        **Attack.constraints,
        "eps": Interval(0, None, closed="neither", optional=True),
        "max_iter": Interval(1, None, integer=True),
        "overshoot": Interval(0, None),
        "n_candidates": Interval(2, None, integer=True),
    }

    def __init__(
        self,
        *,
        eps: float | None = None,
        norm: str = "l2",
        max_iter: int = 50,
        overshoot: float = 0.02,
        n_candidates: int = 10,
        targeted: bool = False,
        seed: int | None = None,
        batch_size: int = 256,
    ) -> None:
        self.eps = eps
        self.norm = norm
        self.max_iter = max_iter
        self.overshoot = overshoot
        self.n_candidates = n_candidates
        self.targeted = targeted
        self.seed = seed
        self.batch_size = batch_size

    def _extra_problems(self) -> Sequence[str]:
        problems = list(super()._extra_problems())
        if self.targeted is True:
            problems.append("DeepFool is untargeted only: targeted must be False")
        return problems

    def threat_model(self) -> ThreatModel:
        """The threat model this configuration assumes (``eps=None``: unbounded)."""
        return ThreatModel(
            knowledge="white-box",
            goal="untargeted",
            norm=self.norm,  # type: ignore[arg-type]
            eps=None if self.eps is None else float(self.eps),
        )

    def _perturb(
        self,
        classifier: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        generator: torch.Generator,
    ) -> torch.Tensor:
        torch = require("torch", extra="ml")
        n = len(x)
        scale = 1 + float(self.overshoot)
        with torch.no_grad():
            logits = classifier.logits(x).to(x.device)
            k = min(int(self.n_candidates), logits.shape[1])
            ranked = logits.topk(k, dim=1).indices
        # Candidate classes other than the true one; for correctly classified samples the true
        # class ranks first, so this keeps the k - 1 runners-up.
        others = ranked != y[:, None]
        order = others.long().argsort(dim=1, descending=True, stable=True)
        candidates = ranked.gather(1, order)[:, : k - 1]
        r_tot = torch.zeros_like(x)
        active = logits.argmax(dim=1) == y
        idx = torch.arange(n, device=x.device)[active]
        for _ in range(self.max_iter):
            if len(idx) == 0:
                break
            point = clip_to_bounds(x[idx] + scale * r_tot[idx], classifier)
            step, fooled = self._step(classifier, point, y[idx], candidates[idx])
            with torch.no_grad():
                # Fooled samples stop where they are; the others take one more step.
                r_tot[idx] = r_tot[idx] + step * (~fooled).view(-1, *([1] * (x.ndim - 1)))
                idx = idx[~fooled]
        with torch.no_grad():
            delta = clip_to_bounds(x + scale * r_tot, classifier) - x
            if self.eps is not None:
                delta = project(delta, float(self.eps), self.norm)
            return clip_to_bounds(x + delta, classifier)

    def _step(
        self,
        classifier: Classifier,
        point: torch.Tensor,
        y: torch.Tensor,
        candidates: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One linearised step at ``point`` and whether it is already misclassified."""
        torch = require("torch", extra="ml")
        m = len(point)
        flat_dims = (m, -1)
        grads = []
        with torch.enable_grad():
            point = point.detach().requires_grad_(True)
            logits = classifier.logits(point)
            own = logits.gather(1, y[:, None].to(logits.device))
            diffs = logits.gather(1, candidates.to(logits.device)) - own  # (m, k - 1)
            # One backward per candidate class, batched over the samples: w_k = grad(f_k).
            for j in range(diffs.shape[1]):
                last = j == diffs.shape[1] - 1
                (g,) = torch.autograd.grad(diffs[:, j].sum(), point, retain_graph=not last)
                grads.append(g.reshape(flat_dims))
        with torch.no_grad():
            fooled = (logits.argmax(dim=1) != y.to(logits.device)).to(point.device)
            w = torch.stack(grads, dim=1)  # (m, k - 1, d)
            f = diffs.detach().abs().to(point.device)
            dual = w.abs().sum(dim=2) if self.norm == "linf" else w.norm(p=2, dim=2)
            dist = f / dual.clamp_min(_TINY)
            best = dist.argmin(dim=1)
            pick = torch.arange(m, device=point.device)
            w_l, dist_l = w[pick, best], dist[pick, best]
            if self.norm == "linf":
                step = (dist_l + _NUDGE)[:, None] * w_l.sign()
            else:
                unit = w_l / w_l.norm(p=2, dim=1, keepdim=True).clamp_min(_TINY)
                step = (dist_l + _NUDGE)[:, None] * unit
        return step.reshape(point.shape), fooled

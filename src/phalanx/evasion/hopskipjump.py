"""HopSkipJumpAttack: a decision-based attack that walks along the decision boundary."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from phalanx._optional import require
from phalanx.core.plugin import Interval
from phalanx.core.protocols import Classifier
from phalanx.evasion.base import Attack, lp_norm
from phalanx.evasion.steps import attack_session

if TYPE_CHECKING:
    import torch

#: Most values sent to the model in one call (Monte Carlo points are chunked to fit).
_CHUNK_ELEMENTS = 2**21
#: Most halvings of the step size before an iteration gives up moving.
_MAX_HALVINGS = 40
_TINY = 1e-12


class HopSkipJump(Attack):
    """HopSkipJumpAttack: boundary search with Monte Carlo gradient-direction estimates.

    Paper: Chen, Jordan & Wainwright (2020), "HopSkipJumpAttack: A Query-Efficient
    Decision-Based Attack", IEEE S&P. https://arxiv.org/abs/1904.02144

    Threat model: black-box, decision-based: only the predicted label (the argmax of the
    scores) is used, so it runs on any classifier, including ones that expose only labels
    through an adapter; perturbation bounded by ``eps`` in L2 or L-inf; untargeted or
    targeted; at most ``max_queries`` queries per sample, every query counted.

    HopSkipJump is a minimum-norm attack. It starts from an adversarial point (uniform noise
    in the input bounds that the model misclassifies; for a targeted attack, the closest
    input of the batch that the model assigns to the target class, else noise) and brings it
    to the decision boundary by binary search. Each iteration ``t`` then

    1. estimates the direction of the gradient of the decision function at the boundary
       point from ``init_num_evals * sqrt(t)`` (at most ``max_num_evals``) random unit
       directions at radius ``delta_t`` (``sqrt(d) * theta * dist`` in L2,
       ``d * theta * dist`` in L-inf), with the mean decision subtracted as a baseline;
    2. steps along it (the normalised estimate in L2, its sign in L-inf), starting from
       ``dist / sqrt(t)`` and halving until the point is adversarial (geometric search);
    3. binary-searches back to the boundary on the segment (L2) or the L-inf ball (L-inf)
       towards the input, up to the threshold ``theta = gamma / d**1.5`` (L2) or
       ``gamma / d**2`` (L-inf), ``d`` the input dimension.

    As an attack in an ``eps`` ball, a sample counts as fooled once an adversarial point
    within ``eps`` is found (it then stops querying); ``x_adv`` is the closest adversarial
    point found when it lies within ``eps``, and the clean input otherwise, so outputs
    always stay in the ball and in bounds. Inputs the model already gets wrong cost one
    query and are returned unchanged. When the budget runs short, the last iteration uses
    fewer Monte Carlo evaluations, and a binary search stops early at its last adversarial
    point.

    Args:
        eps: Perturbation budget. Default 0.5.
        norm: ``"l2"`` or ``"linf"``. Default ``"l2"``.
        max_iter: Most boundary iterations. Default 40.
        max_queries: Most queries per sample, the first check of the input included.
            Default 10000.
        gamma: Scale of the binary-search threshold ``theta``. Default 1.0.
        init_num_evals: Monte Carlo evaluations at the first iteration. Default 100.
        max_num_evals: Cap on Monte Carlo evaluations per iteration. Default 10000.
        init_size: Random-noise draws tried per sample to find a starting point. Default 100.
        targeted: Move towards a target class.
        seed: Seed of the random draws. Default ``None`` (the context's seed).
        batch_size: Samples attacked together (their queries are batched). Default 128.

    Shapes:
        x: ``(n, *input_shape)``; y: ``(n,)``; ``result.sample_queries``: ``(n,)``.

    Example:
        >>> attack = HopSkipJump(eps=1.0, norm="l2", max_queries=2000, seed=0)  # doctest: +SKIP
        >>> result = attack.run(classifier, x, y)  # doctest: +SKIP
        >>> robust_accuracy = 1 - result.success_rate  # doctest: +SKIP
    """

    name = "hsj"
    paper = "Chen, Jordan & Wainwright 2020, https://arxiv.org/abs/1904.02144"
    knowledge = "black-box"
    norms = ("l2", "linf")
    constraints = {
        **Attack.constraints,
        "max_iter": Interval(1, None, integer=True),
        "max_queries": Interval(1, None, integer=True),
        "gamma": Interval(0, None, closed="neither"),
        "init_num_evals": Interval(1, None, integer=True),
        "max_num_evals": Interval(1, None, integer=True),
        "init_size": Interval(1, None, integer=True),
    }

    def __init__(
        self,
        *,
        eps: float = 0.5,
        norm: str = "l2",
        max_iter: int = 40,
        max_queries: int = 10000,
        gamma: float = 1.0,
        init_num_evals: int = 100,
        max_num_evals: int = 10000,
        init_size: int = 100,
        targeted: bool = False,
        seed: int | None = None,
        batch_size: int = 128,
    ) -> None:
        self.eps = eps
        self.norm = norm
        self.max_iter = max_iter
        self.max_queries = max_queries
        self.gamma = gamma
        self.init_num_evals = init_num_evals
        self.max_num_evals = max_num_evals
        self.init_size = init_size
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
    ) -> tuple[torch.Tensor, torch.Tensor]:
        with attack_session(classifier):
            return self._attack(classifier, x, y, target, generator)

    def _attack(
        self,
        classifier: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        torch = require("torch", extra="ml")
        n = len(x)
        d = x[0].numel()
        oracle = _Oracle(classifier, y, target, self.max_queries)
        everyone = torch.arange(n, device=x.device)
        already, clean_pred = oracle(x, everyone)
        best = x.clone()
        best_dist = torch.full((n,), math.inf, device=x.device)
        best_dist[already] = 0.0

        # A starting point on the adversarial side, then down to the boundary.
        start, found = self._starting_points(
            classifier, oracle, x, clean_pred, target, ~already, generator
        )
        todo = found.nonzero().squeeze(1)
        theta = self.gamma / (d**1.5 if self.norm == "l2" else d**2)
        current = x.clone()
        if len(todo):
            current[todo] = self._binary_search(oracle, x[todo], start[todo], todo, theta)
        dist = lp_norm(current - x, self.norm)
        self._keep_best(best, best_dist, current[todo], dist[todo], todo)

        steps = _binary_steps(theta)
        for t in range(1, self.max_iter + 1):
            left = oracle.remaining()
            alive = found & (best_dist > self.eps) & (left > steps + 1)
            idx = alive.nonzero().squeeze(1)
            if len(idx) == 0:
                break
            evals = min(int(self.init_num_evals * math.sqrt(t)), self.max_num_evals)
            counts = (left[idx] - steps - 1).clamp(max=evals)
            scale = math.sqrt(d) if self.norm == "l2" else d
            delta = (scale * theta * dist[idx]).clamp_min(_TINY)
            grad = self._estimate_direction(
                classifier, oracle, current[idx], idx, counts, delta, generator
            )
            if self.norm == "l2":
                flat = grad.flatten(1).norm(dim=1).clamp_min(_TINY)
                update = grad / flat.view(-1, *([1] * (grad.ndim - 1)))
            else:
                update = grad.sign()
            moved, ok = self._step(classifier, oracle, current[idx], idx, update, dist[idx], t)
            step_dist = lp_norm(moved - x[idx], self.norm)
            self._keep_best(best, best_dist, moved, step_dist, idx, ok)
            go = idx[ok]
            if len(go):
                current[go] = self._binary_search(oracle, x[go], moved[ok], go, theta)
                dist[go] = lp_norm(current[go] - x[go], self.norm)
                self._keep_best(best, best_dist, current[go], dist[go], go)

        # Within eps: the closest adversarial point found; otherwise the input itself.
        inside = best_dist <= self.eps
        x_adv = torch.where(inside.view(-1, *([1] * (x.ndim - 1))), best, x)
        return x_adv, oracle.used

    @staticmethod
    def _keep_best(
        best: torch.Tensor,
        best_dist: torch.Tensor,
        points: torch.Tensor,
        dist: torch.Tensor,
        idx: torch.Tensor,
        valid: torch.Tensor | None = None,
    ) -> None:
        """Record adversarial ``points`` of samples ``idx`` that are closer than the best."""
        better = dist < best_dist[idx]
        if valid is not None:
            better &= valid
        best[idx[better]] = points[better]
        best_dist[idx[better]] = dist[better]

    # -- initialisation ---------------------------------------------------------------------

    def _starting_points(
        self,
        classifier: Classifier,
        oracle: _Oracle,
        x: torch.Tensor,
        clean_pred: torch.Tensor,
        target: torch.Tensor | None,
        need: torch.Tensor,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """An adversarial point per sample in ``need`` and a mask of those that have one."""
        torch = require("torch", extra="ml")
        start = x.clone()
        found = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        if target is not None:
            # The closest input of the batch that the model already puts in the target class
            # (known from the first check: no query needed).
            for i in need.nonzero().squeeze(1).tolist():
                fits = clean_pred == target[i]
                if bool(fits.any()):
                    gaps = lp_norm(x - x[i], self.norm).masked_fill(~fits, math.inf)
                    start[i] = x[int(gaps.argmin())]
                    found[i] = True
        low, high = classifier.bounds
        for _ in range(self.init_size):
            pending = (need & ~found & (oracle.remaining() > 0)).nonzero().squeeze(1)
            if len(pending) == 0:
                break
            noise = torch.rand((len(pending), *x.shape[1:]), generator=generator)
            noise = (low + (high - low) * noise).to(x.device, x.dtype)
            hit, _ = oracle(noise, pending)
            start[pending[hit]] = noise[hit]
            found[pending[hit]] = True
        return start, found

    # -- the three steps of an iteration ----------------------------------------------------

    def _binary_search(
        self,
        oracle: _Oracle,
        x: torch.Tensor,
        adv: torch.Tensor,
        idx: torch.Tensor,
        theta: float,
    ) -> torch.Tensor:
        """The paper's Bin-Search between inputs ``x`` and adversarial points ``adv``.

        Returns the projection at the upper end ``alpha_u`` (always adversarial) once the
        bracket is below ``theta``, or when a sample's budget runs out.
        """
        torch = require("torch", extra="ml")
        n = len(x)
        lows = torch.zeros(n, device=x.device)
        highs = torch.ones(n, device=x.device)
        radius = lp_norm(adv - x, "linf")
        for _ in range(_binary_steps(theta)):
            can = (oracle.remaining()[idx] > 0).nonzero().squeeze(1)
            if len(can) == 0:
                break
            mids = (lows[can] + highs[can]) / 2
            hit, _ = oracle(self._blend(x[can], adv[can], mids, radius[can]), idx[can])
            highs[can[hit]] = mids[hit]
            lows[can[~hit]] = mids[~hit]
        return self._blend(x, adv, highs, radius)

    def _blend(
        self, x: torch.Tensor, adv: torch.Tensor, alpha: torch.Tensor, radius: torch.Tensor
    ) -> torch.Tensor:
        """``Pi_{x, alpha}(adv)``: along the segment (L2) or into the shrunk L-inf box."""
        view = (-1, *([1] * (x.ndim - 1)))
        if self.norm == "l2":
            a = alpha.view(view)
            return (1 - a) * x + a * adv
        r = (alpha * radius).view(view)
        return adv.clamp(x - r, x + r)

    def _estimate_direction(
        self,
        classifier: Classifier,
        oracle: _Oracle,
        boundary: torch.Tensor,
        idx: torch.Tensor,
        counts: torch.Tensor,
        delta: torch.Tensor,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """The baseline-subtracted Monte Carlo estimate of the gradient direction.

        ``counts[i]`` random unit directions ``u`` around ``boundary[i]`` at radius
        ``delta[i]``; each gives ``f = +1`` if adversarial, else ``-1``. The estimate is
        ``sum (f - mean f) u`` (``sum f u`` when every ``f`` agrees). Points are clipped to
        the bounds and ``u`` recomputed from the clipped point, which is what was evaluated.
        """
        torch = require("torch", extra="ml")
        m = len(boundary)
        shape = boundary.shape[1:]
        dim = boundary[0].numel()
        owners = torch.repeat_interleave(torch.arange(m, device=boundary.device), counts)
        flat = boundary.reshape(m, dim)
        sum_f = torch.zeros(m, device=boundary.device)
        sum_u = torch.zeros(m, dim, device=boundary.device)
        sum_fu = torch.zeros(m, dim, device=boundary.device)
        low, high = classifier.bounds
        chunk = max(1, _CHUNK_ELEMENTS // max(dim, 1))
        for lo in range(0, len(owners), chunk):
            own = owners[lo : lo + chunk]
            u = torch.randn((len(own), dim), generator=generator).to(flat.device, flat.dtype)
            u = u / u.norm(dim=1, keepdim=True).clamp_min(_TINY)
            r = delta[own].view(-1, 1)
            points = (flat[own] + r * u).clamp(low, high)
            u = (points - flat[own]) / r
            hit, _ = oracle(points.reshape(len(own), *shape), idx[own])
            f = hit.to(flat.dtype) * 2 - 1
            sum_f.index_add_(0, own, f)
            sum_u.index_add_(0, own, u)
            sum_fu.index_add_(0, own, f[:, None] * u)
        mean_f = sum_f / counts.clamp_min(1).to(sum_f.dtype)
        agree = mean_f.abs() >= 1 - 1e-6
        grad = torch.where(agree[:, None], sum_fu, sum_fu - mean_f[:, None] * sum_u)
        return grad.reshape(m, *shape)

    def _step(
        self,
        classifier: Classifier,
        oracle: _Oracle,
        boundary: torch.Tensor,
        idx: torch.Tensor,
        update: torch.Tensor,
        dist: torch.Tensor,
        t: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Geometric step-size search: ``dist / sqrt(t)``, halved until adversarial."""
        torch = require("torch", extra="ml")
        low, high = classifier.bounds
        view = (-1, *([1] * (boundary.ndim - 1)))
        size = dist / math.sqrt(t)
        moved = boundary.clone()
        ok = torch.zeros(len(boundary), dtype=torch.bool, device=boundary.device)
        for _ in range(_MAX_HALVINGS):
            can = (~ok & (oracle.remaining()[idx] > 0)).nonzero().squeeze(1)
            if len(can) == 0:
                break
            trial = (boundary[can] + size[can].view(view) * update[can]).clamp(low, high)
            hit, _ = oracle(trial, idx[can])
            moved[can[hit]] = trial[hit]
            ok[can[hit]] = True
            size[can[~hit]] /= 2
        return moved, ok


class _Oracle:
    """The decision function with a hard per-sample query budget.

    ``oracle(points, owners)`` says which points are adversarial for the samples that own
    them and charges one query to each owner per point.
    """

    def __init__(
        self,
        classifier: Classifier,
        y: torch.Tensor,
        target: torch.Tensor | None,
        budget: int,
    ) -> None:
        torch = require("torch", extra="ml")
        self.classifier = classifier
        self.y = y
        self.target = target
        self.budget = int(budget)
        self.used = torch.zeros(len(y), dtype=torch.long, device=y.device)

    def remaining(self) -> torch.Tensor:
        """Queries each sample may still make."""
        return self.budget - self.used

    def __call__(
        self, points: torch.Tensor, owners: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Whether each point is adversarial for its owner, and the predicted labels."""
        torch = require("torch", extra="ml")
        charge = torch.bincount(owners, minlength=len(self.used))
        if bool((self.used + charge > self.budget).any()):
            # A bug in the attack, not in the target: the budget is a hard promise.
            raise RuntimeError("HopSkipJump would exceed max_queries; this is a bug")
        self.used += charge
        chunk = max(1, _CHUNK_ELEMENTS // max(points[0].numel(), 1)) if len(points) else 1
        preds = []
        with torch.no_grad():
            for lo in range(0, len(points), chunk):
                scores = self.classifier.logits(points[lo : lo + chunk])
                preds.append(torch.as_tensor(scores).argmax(dim=1).to(self.used.device))
        pred = torch.cat(preds) if preds else self.used.new_zeros(0)
        if self.target is not None:
            return pred == self.target[owners], pred
        return pred != self.y[owners], pred


def _binary_steps(theta: float) -> int:
    """Halvings of ``[0, 1]`` until the bracket is at most ``theta``."""
    return max(0, math.ceil(math.log2(1 / theta))) if theta < 1 else 0

"""FAB: the Fast Adaptive Boundary attack (minimum-norm), in its targeted form FAB-T by default."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from phalanx._optional import require
from phalanx.core.plugin import Interval, IsInstance
from phalanx.core.protocols import Classifier
from phalanx.evasion.base import Attack, lp_norm
from phalanx.evasion.steps import attack_session

if TYPE_CHECKING:
    import torch

_TINY = 1e-12
#: Dual norm of each norm: distances to a hyperplane divide by the normal's dual norm.
_DUAL = {"linf": 1.0, "l2": 2.0, "l1": float("inf")}


def project_onto_hyperplane_box(
    x: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor,
    low: float,
    high: float,
    norm: str,
) -> torch.Tensor:
    """The step from each ``x`` to its ``norm``-closest point of a hyperplane within a box.

    Solves, per row, ``min ||d||_p`` subject to ``<w, x + d> + b = 0`` and
    ``low <= x + d <= high`` for ``p`` in L-inf, L2 or L1 (Croce & Hein 2020, FAB, the
    projection onto a hyperplane with box constraints). Only coordinates moved towards the
    hyperplane help, each by at most the room the box leaves in that direction, so with
    ``a = |w|`` the problem becomes ``min ||t||_p`` with ``sum(a * t) = |<w, x> + b|`` and
    ``0 <= t <= room``, solved exactly after one sort per row:

    - L-inf: ``t = min(tau, room)``, the water level ``tau`` found from the breakpoints;
    - L2: ``t = min(lam * a, room)`` (the KKT conditions), ``lam`` found the same way;
    - L1: fill coordinates in decreasing order of ``a`` (a fractional knapsack).

    When the hyperplane misses the box, every coordinate moves as far as the box allows (the
    box point that gets closest to the hyperplane along the way).

    Args:
        x: Points, shape ``(m, d)``, inside the box.
        w: Hyperplane normals, shape ``(m, d)``.
        b: Offsets, shape ``(m,)``.
        low: Lower end of the box.
        high: Upper end of the box.
        norm: ``"linf"``, ``"l2"`` or ``"l1"``.

    Returns:
        The steps ``d``, shape ``(m, d)``.
    """
    torch = require("torch", extra="ml")
    value = (w * x).sum(dim=1) + b
    need = value.abs()
    # Move each coordinate the way that brings <w, x> + b towards zero (0 where it cannot help).
    direction = -torch.sign(value)[:, None] * torch.sign(w)
    room = torch.where(direction > 0, high - x, x - low).clamp_min(0) * direction.abs()
    a = w.abs() * direction.abs()
    if norm == "l1":
        t = _fill_l1(a, room, need)
    else:
        if norm == "linf":
            breaks, weight = room, a
        elif norm == "l2":
            breaks, weight = room / a.clamp_min(1e-30), a * a
        else:
            raise ValueError(f"unsupported norm {norm!r}")
        level = _water_level(a, room, breaks, weight, need)[:, None]
        t = torch.minimum(level * a if norm == "l2" else level, room)
        t = torch.where(torch.isinf(level), room, t)  # the hyperplane misses the box
    return direction * t


def _water_level(
    a: torch.Tensor,
    room: torch.Tensor,
    breaks: torch.Tensor,
    weight: torch.Tensor,
    need: torch.Tensor,
) -> torch.Tensor:
    """The level ``s`` with ``sum(a * min(s * c, room)) = need``, ``breaks = room / c``.

    ``weight = a * c``: L-inf has ``c = 1``, L2 has ``c = a``. The left side is increasing and
    piecewise linear in ``s`` with kinks at ``breaks``; after sorting them, its value at each
    kink is ``sum_{before} a * room + break * sum_{from} weight``. Returns ``inf`` where even
    ``s = inf`` (every coordinate at its room) falls short.
    """
    torch = require("torch", extra="ml")
    order = breaks.argsort(dim=1)
    s_breaks = breaks.gather(1, order)
    filled = (a * room).gather(1, order)
    before = filled.cumsum(dim=1) - filled
    rest = weight.gather(1, order).flip(1).cumsum(dim=1).flip(1)
    at_kink = before + s_breaks * rest
    m = (at_kink <= need[:, None]).sum(dim=1)
    j = m.clamp(max=a.shape[1] - 1)[:, None]
    slope = rest.gather(1, j).squeeze(1).clamp_min(_TINY)
    level = (need - before.gather(1, j).squeeze(1)) / slope
    return torch.where(m == a.shape[1], torch.full_like(level, float("inf")), level)


def _fill_l1(a: torch.Tensor, room: torch.Tensor, need: torch.Tensor) -> torch.Tensor:
    """``min sum(t)`` with ``sum(a * t) = need``, ``0 <= t <= room``: best ``a`` first."""
    torch = require("torch", extra="ml")
    order = a.argsort(dim=1, descending=True)
    s_a = a.gather(1, order)
    s_room = room.gather(1, order)
    reached = (s_a * s_room).cumsum(dim=1)
    full = reached <= need[:, None]  # a prefix: these coordinates move all the way
    m = full.sum(dim=1, keepdim=True)
    before = torch.where(full, reached, torch.zeros_like(reached)).amax(dim=1, keepdim=True)
    partial = ((need[:, None] - before) / s_a.clamp_min(_TINY)).clamp_min(0)
    index = torch.arange(a.shape[1], device=a.device)[None, :]
    s_t = torch.where(full, s_room, torch.where(index == m, torch.minimum(partial, s_room), 0))
    return torch.zeros_like(a).scatter(1, order, s_t)


class FAB(Attack):
    """Fast Adaptive Boundary attack: minimal adversarial perturbations from linearised boundaries.

    Paper: Croce & Hein (2020), "Minimally distorted adversarial examples with a fast adaptive
    boundary attack", ICML. https://arxiv.org/abs/1907.02044 (FAB-T, the targeted version used
    by default, is the one of AutoAttack: Croce & Hein 2020, https://arxiv.org/abs/2003.01690).

    Threat model: white-box (input gradients); perturbation bounded by ``eps`` in L-inf, L2 or
    L1; untargeted (leave the true class) or targeted (reach a target class).

    Each iteration linearises the model at the current point ``x_i``: the decision boundary
    between the true class ``c`` and a class ``s`` becomes the hyperplane
    ``f_s(x_i) - f_c(x_i) + <grad(f_s - f_c)(x_i), z - x_i> = 0``. FAB projects both ``x_i``
    and the original input ``x_o`` onto that hyperplane within the input box
    (:func:`project_onto_hyperplane_box`), giving steps ``d_i`` and ``d_o``, and moves to
    ``clip((1 - a)(x_i + eta d_i) + a (x_o + eta d_o))`` with
    ``a = min(|d_i| / (|d_i| + |d_o|), alpha_max)``: a step biased towards the original input,
    extrapolated by ``eta``. When that point is adversarial, it is kept if it is the closest
    found so far, and the iterate steps back towards the input, ``x_o + beta (x_i+1 - x_o)``.

    Untargeted FAB (``targeted_variant=False``) uses the closest linearised boundary,
    ``s = argmin |f_s - f_c| / ||grad(f_s - f_c)||_q`` (``q`` the dual norm), which needs the
    full Jacobian (one backward pass per class). FAB-T (the default) instead runs against each
    of the ``n_target_classes`` most likely other classes (by clean logits) in turn, on the
    samples not yet fooled, with ``s`` fixed to that class: one backward pass per step. With
    ``targeted=True`` success means reaching the target given to :meth:`run`; the hyperplane
    is then the boundary between the target and the class it still has to overtake (the
    strongest other class at the current point, the true class at first): with the true class
    fixed, as in FAB-T, the iterates settle where the two tie while a third class wins. Each
    step also costs one forward pass to check the new point. Restarts after the first begin at
    a random point at distance ``eps / 2``.

    FAB minimises the perturbation; as an attack in an ``eps`` ball, a sample succeeds when the
    smallest adversarial point found lies within ``eps``. Outputs are that point, else the
    original input. Samples misclassified from the start are returned unchanged.

    Args:
        eps: Perturbation budget. Default 8/255.
        norm: ``"linf"``, ``"l2"`` or ``"l1"``. Default ``"linf"``.
        max_iter: Iterations per run. Default 100.
        restarts: Runs (per target class) on the samples not yet fooled. Default 1.
        alpha_max: Largest weight of the step from the original input. Default 0.1.
        eta: Extrapolation factor of each step (>= 1). Default 1.05.
        beta: Backward-step factor towards the input after a success. Default 0.9.
        seed: Seed for random restarts and targets. Default ``None`` (the context's seed).
        batch_size: Samples per pass. Default 256.
        targeted: Reach the target given to :meth:`run`. Default ``False``.
        n_target_classes: How many of the most likely other classes FAB-T tries. Default 9.
        targeted_variant: Run FAB-T (``True``) or untargeted FAB (``False``). Default ``True``.

    Shapes:
        x: ``(n, *input_shape)``; y: ``(n,)``.

    Example:
        >>> result = FAB(eps=8 / 255).run(classifier, x, y)  # doctest: +SKIP
        >>> sizes = result.perturbation_norms(x)[result.success]  # doctest: +SKIP
    """

    name = "fab"
    paper = "Croce & Hein 2020, https://arxiv.org/abs/1907.02044"
    norms = ("linf", "l2", "l1")
    constraints = {
        **Attack.constraints,
        "max_iter": Interval(1, None, integer=True),
        "restarts": Interval(1, None, integer=True),
        "alpha_max": Interval(0, 1),
        "eta": Interval(1, None),
        "beta": Interval(0, 1, closed="right"),
        "n_target_classes": Interval(1, None, integer=True),
        "targeted_variant": IsInstance((bool,)),
    }

    def __init__(
        self,
        *,
        eps: float = 8 / 255,
        norm: str = "linf",
        max_iter: int = 100,
        restarts: int = 1,
        alpha_max: float = 0.1,
        eta: float = 1.05,
        beta: float = 0.9,
        seed: int | None = None,
        batch_size: int = 256,
        targeted: bool = False,
        n_target_classes: int = 9,
        targeted_variant: bool = True,
    ) -> None:
        self.eps = eps
        self.norm = norm
        self.max_iter = max_iter
        self.restarts = restarts
        self.alpha_max = alpha_max
        self.eta = eta
        self.beta = beta
        self.seed = seed
        self.batch_size = batch_size
        self.targeted = targeted
        self.n_target_classes = n_target_classes
        self.targeted_variant = targeted_variant

    def _perturb(
        self,
        classifier: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        generator: torch.Generator,
    ) -> torch.Tensor:
        with attack_session(classifier):
            return self._attack(classifier, x, y, target, generator)

    def _attack(
        self,
        classifier: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        generator: torch.Generator,
    ) -> torch.Tensor:
        torch = require("torch", extra="ml")
        with torch.no_grad():
            logits = classifier.logits(x).to(x.device)
        pred = logits.argmax(dim=1)
        done = (pred == target) if target is not None else (pred != y)
        plans: list[Any]  # target classes per sample; None: the closest boundary
        if target is not None:
            plans = [target]
        elif self.targeted_variant:
            # The other classes, most likely first (the true class is pushed to the end).
            ranked = logits.scatter(1, y[:, None], float("-inf")).argsort(dim=1, descending=True)
            count = min(self.n_target_classes, classifier.num_classes - 1)
            plans = [ranked[:, j] for j in range(count)]
        else:
            plans = [None]
        out = x.clone()
        for plan in plans:
            for restart in range(self.restarts):
                todo = (~done).nonzero().squeeze(1)
                if len(todo) == 0:
                    return out
                found, size = self._run(
                    classifier,
                    x[todo],
                    y[todo],
                    None if plan is None else plan[todo],
                    None if target is None else target[todo],
                    restart > 0,
                    generator,
                )
                ok = size <= self.eps
                out[todo] = torch.where(ok.view(-1, *([1] * (x.ndim - 1))), found, x[todo])
                done[todo] = ok
        return out

    def _hyperplane(
        self,
        classifier: Classifier,
        cur: torch.Tensor,
        shape: torch.Size,
        y: torch.Tensor,
        cls: torch.Tensor | None,
        goal: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Normal ``w`` and offset ``b`` of the linearised boundary ``<w, z> + b = 0`` at ``cur``.

        Between ``y`` and ``cls`` when given, else the closest boundary of all classes. When
        success means reaching ``goal`` (``= cls``), ``y`` is replaced by the strongest other
        class at ``cur``: the one the target still has to overtake.
        """
        torch = require("torch", extra="ml")
        n = len(cur)
        with torch.enable_grad():
            xr = cur.detach().view(shape).requires_grad_(True)
            logits = classifier.logits(xr)
            if cls is not None:
                if goal is not None:
                    y = logits.detach().scatter(1, cls[:, None], float("-inf")).argmax(dim=1)
                diff = (logits.gather(1, cls[:, None]) - logits.gather(1, y[:, None])).squeeze(1)
                (grad,) = torch.autograd.grad(diff.sum(), xr)
                w, value = grad.reshape(n, -1), diff.detach()
            else:
                k = logits.shape[1]
                rows = [
                    torch.autograd.grad(logits[:, i].sum(), xr, retain_graph=i < k - 1)[0]
                    for i in range(k)
                ]
                jac = torch.stack(rows, dim=1).reshape(n, k, -1)
                every = torch.arange(n, device=cur.device)
                jac = jac - jac[every, y][:, None, :]
                diffs = logits.detach() - logits.detach().gather(1, y[:, None])
                dist = diffs.abs() / (jac.norm(p=_DUAL[self.norm], dim=2) + _TINY)
                dist = dist.scatter(1, y[:, None], float("inf"))
                s = dist.argmin(dim=1)
                w, value = jac[every, s], diffs[every, s]
        return w, value - (w * cur).sum(dim=1)

    def _run(
        self,
        classifier: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        cls: torch.Tensor | None,
        goal: torch.Tensor | None,
        random_start: bool,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One FAB run; returns the closest adversarial points found and their norms (inf: none)."""
        torch = require("torch", extra="ml")
        low, high = classifier.bounds
        n, shape = len(x), x.shape
        origin = x.reshape(n, -1)
        cur = self._start(origin, generator, low, high) if random_start else origin.clone()
        best = origin.clone()
        best_size = torch.full((n,), float("inf"), dtype=x.dtype, device=x.device)
        with torch.no_grad():
            for _ in range(self.max_iter):
                w, b = self._hyperplane(classifier, cur, shape, y, cls, goal)
                steps = project_onto_hyperplane_box(
                    torch.cat([cur, origin]),
                    torch.cat([w, w]),
                    torch.cat([b, b]),
                    low,
                    high,
                    self.norm,
                )
                d_cur, d_orig = steps[:n], steps[n:]
                n_cur = lp_norm(d_cur, self.norm).clamp_min(1e-8)
                n_orig = lp_norm(d_orig, self.norm).clamp_min(1e-8)
                bias = (n_cur / (n_cur + n_orig)).clamp(0, self.alpha_max)[:, None]
                cur = (1 - bias) * (cur + self.eta * d_cur) + bias * (origin + self.eta * d_orig)
                cur = cur.clamp(low, high)
                pred = classifier.logits(cur.view(shape)).argmax(dim=1).to(x.device)
                adv = (pred == goal) if goal is not None else (pred != y)
                size = lp_norm(cur - origin, self.norm)
                closer = adv & (size < best_size)
                best = torch.where(closer[:, None], cur, best)
                best_size = torch.where(closer, size, best_size)
                # Step back towards the input from the far side of the boundary.
                cur = torch.where(adv[:, None], origin + self.beta * (cur - origin), cur)
        return best.view(shape), best_size

    def _start(
        self, origin: torch.Tensor, generator: torch.Generator, low: float, high: float
    ) -> torch.Tensor:
        """A random point at distance ``eps / 2`` from each input, clipped to the bounds."""
        torch = require("torch", extra="ml")
        if self.norm == "linf":
            t = torch.rand(origin.shape, generator=generator) * 2 - 1
        else:
            t = torch.randn(origin.shape, generator=generator)
        t = t.to(origin.device, origin.dtype)
        t = t / lp_norm(t, self.norm).clamp_min(_TINY)[:, None]
        return (origin + 0.5 * self.eps * t).clamp(low, high)

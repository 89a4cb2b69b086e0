"""Square Attack: score-based random search with square-shaped updates."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

from phalanx._optional import require
from phalanx.core.plugin import Interval
from phalanx.core.protocols import Classifier
from phalanx.evasion.base import Attack
from phalanx.evasion.steps import attack_session, project

if TYPE_CHECKING:
    import torch

#: Iterations (out of the paper's 10,000) after which the square fraction ``p`` halves.
P_SCHEDULE = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
#: The paper's initial square fraction per norm.
P_INIT_DEFAULT = {"linf": 0.8, "l2": 0.1}
#: Tries at drawing an L-inf update that changes the current point (a query is never spent on
#: a proposal equal to the current iterate, as in the authors' implementation).
_RESAMPLE_TRIES = 10
#: Bound on the values held at once by those tries.
_TRY_ELEMENTS = 2**24
_TINY = 1e-12


class Square(Attack):
    """Square Attack: random search with square-shaped updates on the model's scores.

    Paper: Andriushchenko, Croce, Flammarion & Hein (2020), "Square Attack: a query-efficient
    black-box adversarial attack via random search", ECCV. https://arxiv.org/abs/1912.00049

    Threat model: black-box, score-based (one vector of scores per query, no gradients), so it
    runs on any classifier (torch, scikit-learn, ONNX, HTTP); perturbation bounded by ``eps``
    in L-inf or L2; untargeted or targeted; at most ``max_queries`` queries per sample.

    The attack minimises the margin ``z_y - max_{i != y} z_i`` (untargeted) or the
    cross-entropy of the target class (targeted) by random search. Each iteration proposes a
    change inside one random square covering a fraction ``p`` of the image and keeps it when
    the loss decreases. ``p`` starts at ``p_init`` and halves after iterations
    {10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000}, rescaled by ``max_queries / 10000``.

    - L-inf: initialised with vertical stripes of ``+-eps`` (one sign per column and
      channel); each update sets a square to ``+-eps`` (one sign per channel), i.e. a
      vertex of the ball.
    - L2: initialised with a grid of tiles of side ``h // 5`` holding the pseudo-Gaussian
      pattern with random signs, rescaled to norm ``eps``; each update moves the mass of a
      second square ``W2`` into a first ``W1``, adds there the "meta" pattern (two opposite
      pseudo-Gaussian halves, transposed with probability 1/2) and rescales ``W1`` so that
      the perturbation stays on the sphere of radius ``eps`` (regaining any norm lost to
      clipping).

    Inputs of shape ``(C, H, W)`` are images; ``(H, W)`` is one channel; for higher ranks
    the last two axes are spatial and the others are channels. Flat feature vectors
    ``(D,)`` are treated as a ``1 x D`` strip: "squares" become segments of ``round(p * D)``
    consecutive features, the stripes of the L-inf initialisation become one random sign
    per feature, and the L2 patterns are their one-dimensional versions.

    Only samples not yet fooled are queried; the first query is the initial point. With
    ``restarts > 1`` the budget ``max_queries`` is split evenly between the restarts (the
    last takes the remainder), each a fresh run on the samples not yet fooled, so that no
    sample ever exceeds ``max_queries``.

    Args:
        eps: Perturbation budget. Default 8/255.
        norm: ``"linf"`` or ``"l2"``. Default ``"linf"``.
        max_queries: Most queries per sample, the initial one included. Default 5000.
        p_init: Initial fraction of the image covered by a square; ``None`` means the
            paper's default, 0.8 for L-inf and 0.1 for L2.
        restarts: Runs sharing the budget (>= 1). Default 1.
        targeted: Move towards a target class.
        seed: Seed of the random search. Default ``None`` (the context's seed).
        batch_size: Samples per pass. Default 256.

    Shapes:
        x: ``(n, *input_shape)``; y: ``(n,)``; ``result.sample_queries``: ``(n,)``.

    Example:
        >>> attack = Square(eps=0.05, norm="linf", max_queries=1000, seed=0)  # doctest: +SKIP
        >>> result = attack.run(classifier, x, y)  # doctest: +SKIP
        >>> robust_accuracy = 1 - result.success_rate  # doctest: +SKIP
        >>> int(result.sample_queries.max()) <= 1000  # doctest: +SKIP
        True
    """

    name = "square"
    paper = "Andriushchenko, Croce, Flammarion & Hein 2020, https://arxiv.org/abs/1912.00049"
    knowledge = "black-box"
    constraints = {
        **Attack.constraints,
        "max_queries": Interval(1, None, integer=True),
        "p_init": Interval(0, 1, closed="right", optional=True),
        "restarts": Interval(1, None, integer=True),
    }

    def __init__(
        self,
        *,
        eps: float = 8 / 255,
        norm: str = "linf",
        max_queries: int = 5000,
        p_init: float | None = None,
        restarts: int = 1,
        targeted: bool = False,
        seed: int | None = None,
        batch_size: int = 256,
    ) -> None:
        self.eps = eps
        self.norm = norm
        self.max_queries = max_queries
        self.p_init = p_init
        self.restarts = restarts
        self.targeted = targeted
        self.seed = seed
        self.batch_size = batch_size

    def _extra_problems(self) -> Sequence[str]:
        problems = list(super()._extra_problems())
        queries, restarts = self.max_queries, self.restarts
        if (
            isinstance(queries, int)
            and isinstance(restarts, int)
            and restarts >= 1
            and queries < restarts
        ):
            problems.append(
                f"max_queries ({queries}) must be at least restarts ({restarts}): "
                "each restart needs one query"
            )
        return problems

    # -- the attack -------------------------------------------------------------------------

    def _perturb(
        self,
        classifier: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        torch = require("torch", extra="ml")
        n = len(x)
        best = x.clone()
        best_loss = torch.full((n,), math.inf, device=x.device)
        queries = torch.zeros(n, dtype=torch.long, device=x.device)
        fooled = torch.zeros(n, dtype=torch.bool, device=x.device)
        share, extra = divmod(self.max_queries, self.restarts)
        for r in range(self.restarts):
            todo = (~fooled).nonzero().squeeze(1)
            if len(todo) == 0:
                break
            budget = share + (extra if r == self.restarts - 1 else 0)
            ts = target[todo] if target is not None else None
            with attack_session(classifier):
                adv, loss, won, used = self._run_once(
                    classifier, x[todo], y[todo], ts, budget, generator
                )
            queries[todo] += used
            # The first success is kept; otherwise the lowest loss over the restarts.
            keep = won | (loss < best_loss[todo])
            best[todo[keep]] = adv[keep]
            best_loss[todo[keep]] = loss[keep]
            fooled[todo] = won
        return best, queries

    def _run_once(
        self,
        classifier: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        n_iters: int,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One run of at most ``n_iters`` queries per sample: adv, loss, fooled, queries used."""
        torch = require("torch", extra="ml")
        shape = x.shape
        img = _as_image(x)
        low, high = classifier.bounds
        if self.norm == "linf":
            init = self._linf_init(img, generator)
        else:
            init = self._l2_init(img, generator)
        current = (img + init).clamp(low, high)
        loss, won = self._loss(classifier, current, shape, y, target)
        used = torch.ones(len(x), dtype=torch.long, device=x.device)
        p_init = self.p_init if self.p_init is not None else P_INIT_DEFAULT[self.norm]
        for it in range(n_iters - 1):
            active = (~won).nonzero().squeeze(1)
            if len(active) == 0:
                break
            p = p_schedule(p_init, it, n_iters)
            xa, ca = img[active], current[active]
            if self.norm == "linf":
                proposal = self._linf_step(xa, ca, p, low, high, generator)
            else:
                proposal = self._l2_step(xa, ca, p, low, high, generator)
            ta = target[active] if target is not None else None
            new_loss, new_won = self._loss(classifier, proposal, shape, y[active], ta)
            used[active] += 1
            accept = (new_loss < loss[active]) | new_won
            current[active[accept]] = proposal[accept]
            loss[active[accept]] = new_loss[accept]
            won[active] = new_won
        return current.reshape(shape), loss, won, used

    def _loss(
        self,
        classifier: Classifier,
        img: torch.Tensor,
        shape: torch.Size,
        y: torch.Tensor,
        target: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One query per sample: the loss to minimise and whether the sample is fooled."""
        torch = require("torch", extra="ml")
        with torch.no_grad():
            z = classifier.logits(img.reshape(len(img), *shape[1:]))
        z = torch.as_tensor(z).detach().to(img.device, torch.float32)
        pred = z.argmax(dim=1)
        if target is not None:
            loss = torch.nn.functional.cross_entropy(z, target, reduction="none")
            return loss, pred == target
        true = z.gather(1, y[:, None]).squeeze(1)
        others = z.scatter(1, y[:, None], -math.inf).amax(dim=1)
        return true - others, pred != y

    # -- L-inf ------------------------------------------------------------------------------

    def _linf_init(self, img: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Vertical stripes: one random sign of ``eps`` per column and channel."""
        n, c, _, w = img.shape
        return self.eps * _signs((n, c, 1, w), generator, img).expand_as(img)

    def _linf_step(
        self,
        x: torch.Tensor,
        current: torch.Tensor,
        p: float,
        low: float,
        high: float,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """Set one random square to ``x +- eps`` (a sign per channel), clipped to bounds."""
        torch = require("torch", extra="ml")
        n, c, h, w = x.shape
        sh, sw = _window(p, h, w, minimum=1)
        mask = _window_mask(n, h, w, sh, sw, generator, x.device)[:, None]
        # The window's values under each of a few sign draws; keep the first that changes it.
        tries = max(1, min(_RESAMPLE_TRIES, _TRY_ELEMENTS // max(x.numel(), 1)))
        signs = self.eps * _signs((tries, n, c, 1, 1), generator, x)
        inside = (x + signs).clamp(low, high)
        changed = ((inside - current).abs() * mask).flatten(2).amax(dim=2) > 1e-7
        first = torch.where(changed.any(dim=0), changed.int().argmax(dim=0), 0)
        chosen = inside[first, torch.arange(n, device=x.device)]
        return torch.where(mask, chosen, current)

    # -- L2 ---------------------------------------------------------------------------------

    def _l2_init(self, img: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Tiles of side ``h // 5`` holding the pseudo-Gaussian pattern with random signs."""
        torch = require("torch", extra="ml")
        n, c, h, w = img.shape
        if h == 1:
            th, tw = 1, max(w // 5, 1)
        else:
            th = tw = max(min(h, w) // 5, 1)
        tile = pseudo_gaussian(th, tw).to(img.device, img.dtype)
        rows, cols = h // th, w // tw
        top, left = (h - rows * th) // 2, (w - cols * tw) // 2
        signs = _signs((n, c, rows, cols), generator, img)
        pattern = signs.repeat_interleave(th, dim=2).repeat_interleave(tw, dim=3)
        pattern = pattern * tile.repeat(rows, cols)
        delta = torch.zeros_like(img)
        delta[:, :, top : top + rows * th, left : left + cols * tw] = pattern
        size = delta.flatten(1).norm(dim=1).clamp_min(_TINY)
        return delta * (self.eps / size).view(-1, 1, 1, 1)

    def _l2_step(
        self,
        x: torch.Tensor,
        current: torch.Tensor,
        p: float,
        low: float,
        high: float,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """The paper's Algorithm 3: move the mass of ``W2`` into ``W1`` plus a meta pattern."""
        torch = require("torch", extra="ml")
        n, c, h, w = x.shape
        sh, sw = _window(p, h, w, minimum=2)
        delta = current - x
        mask1, rows1, cols1 = _window_index(n, h, w, sh, sw, generator, x.device)
        mask2, _, _ = _window_index(n, h, w, sh, sw, generator, x.device)
        unused = (self.eps**2 - delta.pow(2).flatten(1).sum(dim=1)).clamp_min(0)
        union = (mask1 | mask2)[:, None]
        # Budget of W1 per channel: the norm of W1 u W2 plus an equal share of what is unused.
        avail = ((delta.pow(2) * union).sum(dim=(2, 3)) + unused[:, None] / c).sqrt()
        index = (
            torch.arange(n, device=x.device).view(n, 1, 1, 1),
            torch.arange(c, device=x.device).view(1, c, 1, 1),
            rows1.view(n, 1, sh, 1),
            cols1.view(n, 1, 1, sw),
        )
        old = delta[index]
        old = old / old.pow(2).sum(dim=(2, 3), keepdim=True).sqrt().clamp_min(_TINY)
        meta = self._meta(n, sh, sw, generator, x)
        signs = _signs((n, c, 1, 1), generator, x)
        block = signs * meta[:, None] + old
        block = block / block.pow(2).sum(dim=(2, 3), keepdim=True).sqrt().clamp_min(_TINY)
        new = delta.masked_fill(mask2[:, None], 0.0)
        new[index] = block * avail[:, :, None, None]
        # The construction keeps ||new|| = eps; project only to absorb float rounding.
        return (x + project(new, self.eps, "l2")).clamp(low, high)

    def _meta(
        self, n: int, sh: int, sw: int, generator: torch.Generator, like: torch.Tensor
    ) -> torch.Tensor:
        """Per sample, the unit-norm pair of opposite pseudo-Gaussian halves, maybe transposed."""
        torch = require("torch", extra="ml")
        pattern = meta_pattern(sh, sw).to(like.device, like.dtype)
        out = pattern.expand(n, sh, sw)
        if sh == sw and sh > 1:
            flip = torch.rand(n, generator=generator).to(like.device) < 0.5
            out = torch.where(flip.view(n, 1, 1), pattern.T.expand(n, sh, sw), out)
        return out


# -- patterns and windows ---------------------------------------------------------------------


def p_schedule(p_init: float, it: int, n_iters: int) -> float:
    """The square fraction at iteration ``it`` of ``n_iters``: halved after each milestone.

    The milestones are the paper's, for 10,000 iterations, rescaled to ``n_iters``.
    """
    scaled = int(it / n_iters * 10000)
    halvings = sum(scaled > m for m in P_SCHEDULE)
    return float(p_init / 2**halvings)


def pseudo_gaussian(h: int, w: int) -> torch.Tensor:
    """The paper's pattern ``eta`` of shape ``(h, w)``: nested squares of decaying weight.

    ``eta[r, s] = sum_{k=0}^{M(r, s)} 1 / (n + 1 - k)**2`` with ``n = floor(max(h, w) / 2)``
    and ``M`` = ``n`` minus the Chebyshev distance of ``(r, s)`` to the centre. For
    ``h >= w`` this is the paper's Eq. 2; taking the larger side also covers ``1 x w`` strips.
    """
    torch = require("torch", extra="ml")
    n = max(h, w) // 2
    r = torch.arange(h).view(h, 1) - h // 2
    s = torch.arange(w).view(1, w) - w // 2
    depth = n - torch.maximum(r.abs(), s.abs())
    weights = torch.tensor([1.0 / (n + 1 - k) ** 2 for k in range(n + 1)]).cumsum(0)
    return weights[depth.clamp(0, n)]


@lru_cache(maxsize=64)
def meta_pattern(h: int, w: int) -> torch.Tensor:
    """The L2 update's pattern: ``eta(h, k)`` beside ``-eta(h, w - k)``, ``k = w // 2``; unit norm.

    Cached (a few sizes recur at every iteration): do not modify the returned tensor.
    """
    torch = require("torch", extra="ml")
    k = w // 2
    if k == 0:
        out = pseudo_gaussian(h, w)
    else:
        out = torch.cat([pseudo_gaussian(h, k), -pseudo_gaussian(h, w - k)], dim=1)
    return out / out.norm()


def _as_image(x: torch.Tensor) -> torch.Tensor:
    """A ``(n, C, H, W)`` view of a batch: flat vectors become ``1 x D`` strips."""
    if x.ndim == 2:
        return x.reshape(len(x), 1, 1, x.shape[1])
    if x.ndim == 3:
        return x.reshape(len(x), 1, *x.shape[1:])
    return x.reshape(len(x), -1, *x.shape[-2:])


def _window(p: float, h: int, w: int, minimum: int) -> tuple[int, int]:
    """Height and width of a window covering a fraction ``p`` of an ``h x w`` image."""
    if h == 1:
        return 1, min(max(round(p * w), minimum), w)
    side = round(math.sqrt(p * h * w))
    side = min(max(side, minimum), min(h, w))
    return side, side


def _window_index(
    n: int, h: int, w: int, sh: int, sw: int, generator: torch.Generator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random window per sample: its ``(n, h, w)`` mask and its row and column indices."""
    torch = require("torch", extra="ml")
    top = torch.randint(0, h - sh + 1, (n, 1), generator=generator).to(device)
    left = torch.randint(0, w - sw + 1, (n, 1), generator=generator).to(device)
    rows = top + torch.arange(sh, device=device)
    cols = left + torch.arange(sw, device=device)
    in_rows = torch.zeros(n, h, dtype=torch.bool, device=device).scatter_(1, rows, True)
    in_cols = torch.zeros(n, w, dtype=torch.bool, device=device).scatter_(1, cols, True)
    return in_rows[:, :, None] & in_cols[:, None, :], rows, cols


def _window_mask(
    n: int, h: int, w: int, sh: int, sw: int, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    return _window_index(n, h, w, sh, sw, generator, device)[0]


def _signs(shape: tuple[int, ...], generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """Uniform random signs (+1 or -1)."""
    torch = require("torch", extra="ml")
    bits = torch.randint(0, 2, shape, generator=generator)
    return (bits * 2 - 1).to(like.device, like.dtype)

"""Carlini & Wagner's L2 attack."""

from __future__ import annotations

from typing import TYPE_CHECKING

from phalanx._optional import require
from phalanx.core.plugin import Interval, IsInstance
from phalanx.core.protocols import Classifier
from phalanx.core.threat import ThreatModel
from phalanx.evasion.base import Attack
from phalanx.evasion.steps import clip_to_bounds, project

if TYPE_CHECKING:
    import torch

#: Keeps ``atanh`` finite at the bounds (Carlini & Wagner's reference code uses the same).
_ATANH_SHRINK = 0.999999
#: A constant this large means "no upper bound on c found yet".
_NO_UPPER = 1e10


class CarliniWagnerL2(Attack):
    """Carlini & Wagner's L2 attack: the smallest L2 perturbation that changes the class.

    Paper: Carlini & Wagner (2017), "Towards Evaluating the Robustness of Neural Networks",
    IEEE Symposium on Security and Privacy. https://arxiv.org/abs/1608.04644

    Threat model: white-box (input gradients); minimum-norm in L2: with ``eps=None`` the
    perturbation is unbounded and the attack returns, per sample, the smallest successful
    example it found; with ``eps`` set only successful examples within the L2 ball count.
    Untargeted (leave the true class) or targeted (reach a target class).

    The attack optimises ``w`` in ``x' = low + (high - low) * (tanh(w) + 1) / 2``, which keeps
    ``x'`` inside the classifier's ``bounds``, minimising ``||x' - x||_2^2 + c * f(x')`` with
    Adam, where on the logits ``Z``::

        f(x') = max(max_{i != t} Z_i - Z_t, -confidence)    (targeted, target t)
        f(x') = max(Z_y - max_{i != y} Z_i, -confidence)    (untargeted, true class y)

    The maximum over the other classes masks the excluded class with ``-inf``, so it is right
    whatever the sign of the logits. A binary search over ``c``, per sample, starts at
    ``initial_const``: after a success the upper bound becomes ``c`` and ``c`` the midpoint;
    after a failure the lower bound becomes ``c`` and ``c`` grows tenfold (the midpoint once an
    upper bound exists). With ``abort_early`` a search step stops when the batch's loss has not
    decreased over the last ``max_iter // 10`` iterations. An iterate counts as a success when
    the (target or other) class leads by at least ``confidence``.

    Samples where no success is found (within ``eps`` when set) are returned unchanged.

    Args:
        eps: L2 budget, or ``None`` (default) for an unbounded, minimum-norm attack.
        confidence: Margin ``kappa`` by which the adversarial class must lead. Default 0.0.
        learning_rate: Adam's learning rate. Default 0.01.
        max_iter: Adam iterations per binary-search step. Default 1000.
        binary_search_steps: Number of values of ``c`` tried per sample. Default 9.
        initial_const: First value of ``c``. Default 1e-3.
        abort_early: Stop a search step once the loss stops decreasing. Default ``True``.
        targeted: Move towards a target class. Default ``False``.
        seed: Seed for random targets. Default ``None`` (the context's seed).
        batch_size: Samples per pass. Default 256.
        norm: Only ``"l2"``.

    Shapes:
        x: ``(n, *input_shape)``; y: ``(n,)``.

    Example:
        >>> result = CarliniWagnerL2(max_iter=200).run(classifier, x, y)  # doctest: +SKIP
        >>> result.perturbation_norms(x, "l2").median()  # doctest: +SKIP
    """

    # Minimum-norm: no budget unless one is given.
    eps: float | None  # type: ignore[assignment]

    name = "cw"
    paper = "Carlini & Wagner 2017, https://arxiv.org/abs/1608.04644"
    norms = ("l2",)
    constraints = {
        **Attack.constraints,
        "eps": Interval(0, None, closed="neither", optional=True),
        "confidence": Interval(0, None),
        "learning_rate": Interval(0, None, closed="neither"),
        "max_iter": Interval(1, None, integer=True),
        "binary_search_steps": Interval(1, None, integer=True),
        "initial_const": Interval(0, None, closed="neither"),
        "abort_early": IsInstance((bool,)),
    }

    def __init__(
        self,
        *,
        eps: float | None = None,
        confidence: float = 0.0,
        learning_rate: float = 0.01,
        max_iter: int = 1000,
        binary_search_steps: int = 9,
        initial_const: float = 1e-3,
        abort_early: bool = True,
        targeted: bool = False,
        seed: int | None = None,
        batch_size: int = 256,
        norm: str = "l2",
    ) -> None:
        self.eps = eps
        self.confidence = confidence
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.binary_search_steps = binary_search_steps
        self.initial_const = initial_const
        self.abort_early = abort_early
        self.targeted = targeted
        self.seed = seed
        self.batch_size = batch_size
        self.norm = norm

    def threat_model(self) -> ThreatModel:
        """The threat model this configuration assumes (``eps=None``: unbounded)."""
        return ThreatModel(
            knowledge="white-box",
            goal="targeted" if self.targeted else "untargeted",
            norm="l2",
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
        low, high = classifier.bounds
        scale = (high - low) / 2
        # The class to reach (targeted) or to leave (untargeted).
        label = (target if target is not None else y).to(x.device)
        is_label = torch.nn.functional.one_hot(label, classifier.num_classes).bool()
        w0 = torch.atanh(((x - low) / scale - 1).clamp(-1, 1) * _ATANH_SHRINK)

        lower = torch.zeros(n, dtype=x.dtype, device=x.device)
        upper = torch.full((n,), _NO_UPPER, dtype=x.dtype, device=x.device)
        const = torch.full((n,), float(self.initial_const), dtype=x.dtype, device=x.device)
        best_l2 = torch.full((n,), float("inf"), dtype=x.dtype, device=x.device)
        best = x.clone()
        check_every = max(self.max_iter // 10, 1)

        for _ in range(self.binary_search_steps):
            # Fresh optimiser state for each c, as in the paper's reference code.
            w = w0.clone().requires_grad_(True)
            optimiser = torch.optim.Adam([w], lr=self.learning_rate)
            found = torch.zeros(n, dtype=torch.bool, device=x.device)
            previous = float("inf")
            for step in range(self.max_iter):
                with torch.enable_grad():
                    adv = low + scale * (torch.tanh(w) + 1)
                    logits = classifier.logits(adv).to(x.device)
                    l2 = (adv - x).reshape(n, -1).pow(2).sum(dim=1)
                    margin = self._margin(logits, label, is_label)
                    loss_f = margin.clamp_min(-float(self.confidence))
                    loss = (l2 + const * loss_f).sum()
                    optimiser.zero_grad(set_to_none=True)
                    loss.backward()
                with torch.no_grad():
                    # The iterate counts when the adversarial class leads by the confidence.
                    success = margin <= -float(self.confidence)
                    if self.targeted:
                        success &= logits.argmax(dim=1) == label
                    else:
                        success &= logits.argmax(dim=1) != label
                    dist = l2.sqrt()
                    if self.eps is not None:
                        success &= dist <= self.eps
                    found |= success
                    better = success & (dist < best_l2)
                    best_l2 = torch.where(better, dist, best_l2)
                    best = torch.where(better.view(-1, *([1] * (x.ndim - 1))), adv, best)
                if self.abort_early and step % check_every == 0:
                    if loss.item() > previous * 0.9999:
                        break
                    previous = loss.item()
                optimiser.step()
            with torch.no_grad():
                upper = torch.where(found, torch.minimum(upper, const), upper)
                lower = torch.where(found, lower, torch.maximum(lower, const))
                bounded = upper < _NO_UPPER
                const = torch.where(bounded, (lower + upper) / 2, const * 10)
        with torch.no_grad():
            delta = best - x
            if self.eps is not None:
                delta = project(delta, float(self.eps), "l2")
            return clip_to_bounds(x + delta, classifier)

    def _margin(
        self, logits: torch.Tensor, label: torch.Tensor, is_label: torch.Tensor
    ) -> torch.Tensor:
        """``max_{i != label} Z_i - Z_label`` (targeted) or its negative (untargeted)."""
        own = logits.gather(1, label[:, None]).squeeze(1)
        # Mask with -inf, not with a zeroing one-hot product: when every logit is negative a
        # zeroed entry would win the max and the margin would carry no signal.
        other = logits.masked_fill(is_label, float("-inf")).amax(dim=1)
        return other - own if self.targeted else own - other

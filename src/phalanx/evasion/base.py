"""The evasion-attack base class: everything cross-cutting lives here, once.

A concrete attack sets its hyper-parameters in ``__init__`` and implements one method,
:meth:`Attack._perturb`, on one batch. :meth:`Attack.run` validates parameters and inputs,
seeds randomness, batches, counts queries, reports progress and wraps the result.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from phalanx._optional import require
from phalanx.core.context import Context
from phalanx.core.plugin import Interval, IsInstance, OneOf, Plugin
from phalanx.core.protocols import Classifier
from phalanx.core.threat import ThreatModel
from phalanx.errors import InputError, NotDifferentiableError, ShapeError
from phalanx.evasion.steps import attack_session

if TYPE_CHECKING:
    import torch

#: Tolerance when checking that inputs and outputs respect bounds and budgets.
TOL = 1e-5

EVASION_REFS: tuple[str, ...] = (
    "atlas:AML.T0015",
    "atlas:AML.T0043",
    "nist-aml-2025:NISTAML.022",
    "nist-ai-rmf-1.0:MEASURE-2.7",
)


@dataclass
class AttackResult:
    """What an evasion attack returns.

    Attributes:
        x_adv: Adversarial inputs, same shape as the inputs.
        y: True labels.
        target: Target labels for a targeted attack, else ``None``.
        success: Per-sample bool: misclassified (untargeted) or classified as the target.
        adv_pred: The model's prediction on ``x_adv``.
        queries: Forward passes (samples) the attack made through the classifier.
        duration_s: Wall-clock seconds.
        threat_model: The threat model the attack ran under.
        sample_queries: Per-sample queries, for attacks that count them (black-box ones).
    """

    x_adv: torch.Tensor
    y: torch.Tensor
    target: torch.Tensor | None
    success: torch.Tensor
    adv_pred: torch.Tensor
    queries: int
    duration_s: float
    threat_model: ThreatModel
    sample_queries: torch.Tensor | None = None

    @property
    def success_rate(self) -> float:
        """Fraction of samples on which the attack succeeded."""
        return float(self.success.float().mean()) if len(self.success) else 0.0

    def perturbation_norms(self, x: torch.Tensor, norm: str = "linf") -> torch.Tensor:
        """Per-sample size of ``x_adv - x`` in ``norm``."""
        return lp_norm(self.x_adv - x, norm)


def lp_norm(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample L-inf, L2, L1 or L0 norm of a batch."""
    flat = delta.reshape(len(delta), -1)
    if norm == "linf":
        return flat.abs().amax(dim=1)
    if norm == "l2":
        return flat.norm(p=2, dim=1)
    if norm == "l1":
        return flat.abs().sum(dim=1)
    if norm == "l0":
        return (flat != 0).sum(dim=1).to(delta.dtype)
    raise ValueError(f"unknown norm {norm!r}")


class Attack(Plugin):
    """Base class of evasion attacks.

    Class attributes a subclass sets, besides those of :class:`~phalanx.core.plugin.Plugin`:
        knowledge: ``"white-box"`` attacks need a differentiable classifier.
        norms: The perturbation norms it supports.
    """

    knowledge: ClassVar[str] = "white-box"
    norms: ClassVar[tuple[str, ...]] = ("linf", "l2")
    refs: ClassVar[tuple[str, ...]] = EVASION_REFS
    constraints = {
        "eps": Interval(0, None, closed="neither"),
        "batch_size": Interval(1, None, integer=True),
        "seed": Interval(0, None, integer=True, optional=True),
        "targeted": IsInstance((bool,)),
    }

    # Parameters every evasion attack has (set by subclasses' __init__).
    eps: float
    norm: str
    targeted: bool
    seed: int | None
    batch_size: int

    def _extra_problems(self) -> Sequence[str]:
        norm = getattr(self, "norm", None)
        if norm is not None:
            problem = OneOf(self.norms).problem("norm", norm)
            if problem:
                return [problem]
        return []

    def threat_model(self) -> ThreatModel:
        """The threat model this configuration assumes."""
        return ThreatModel(
            knowledge="black-box" if self.knowledge == "black-box" else "white-box",
            goal="targeted" if self.targeted else "untargeted",
            norm=getattr(self, "norm", None),  # type: ignore[arg-type]
            eps=float(self.eps),
            query_budget=getattr(self, "max_queries", None),
        )

    def run(
        self,
        classifier: Classifier,
        x: Any,
        y: Any,
        *,
        target: Any = None,
        context: Context | None = None,
    ) -> AttackResult:
        """Attack ``classifier`` on inputs ``x`` with true labels ``y``.

        Args:
            classifier: The target; white-box attacks need ``classifier.differentiable``.
            x: Inputs, shape ``(n, *classifier.input_shape)``, inside ``classifier.bounds``.
            y: True labels, shape ``(n,)``.
            target: Target labels for a targeted attack; drawn at random (never the true
                class) when omitted.
            context: Progress events and seed source.

        Returns:
            An :class:`AttackResult`.

        Raises:
            InvalidParameterError: A parameter breaks its constraints.
            NotDifferentiableError: A white-box attack was given a black-box classifier.
            ShapeError, InputError: Inputs, labels or targets are unusable.
        """
        torch = require("torch", extra="ml")
        self.check_params()
        ctx = context or Context()
        if self.knowledge == "white-box" and not classifier.differentiable:
            raise NotDifferentiableError(
                f"{type(self).__name__} is a white-box attack and needs gradients, but "
                f"{type(classifier).__name__} is not differentiable",
                hint="use a black-box attack such as Square or HopSkipJump",
            )
        x, y = validate_inputs(classifier, x, y)
        seed = self.seed if self.seed is not None else ctx.seed
        generator = torch.Generator().manual_seed(int(seed or 0))
        if self.targeted:
            target = self._targets(classifier, y, target, generator)
        start_queries = classifier.queries
        started = time.perf_counter()
        chunks: list[torch.Tensor] = []
        counts: list[torch.Tensor] = []
        label = self.plugin_id() if self.eps is None else f"{self.plugin_id()} eps={self.eps:g}"
        session = attack_session(classifier)  # eval mode etc. held once for the whole run
        with session, ctx.progress(f"attack:{self.plugin_id()}", label, total=len(x),
                                   unit="samples") as bar:
            for lo in range(0, len(x), self.batch_size):
                hi = lo + self.batch_size
                tb = target[lo:hi] if target is not None else None
                xb = x[lo:hi]
                out = self._perturb(classifier, xb, y[lo:hi], tb, generator)
                if isinstance(out, tuple):  # black-box attacks also count queries per sample
                    out, used = out
                    counts.append(used.to(x.device))
                chunks.append(out.detach().to(x.device))
                bar.advance(len(xb))
        x_adv = torch.cat(chunks) if chunks else x.clone()
        # The attack's own queries; the check of its outputs below is not part of the attack.
        queries = classifier.queries - start_queries
        duration = time.perf_counter() - started
        with torch.no_grad(), attack_session(classifier):
            pred = predict(classifier, x_adv, self.batch_size)
        success = (pred == target) if target is not None else (pred != y)
        return AttackResult(
            x_adv=x_adv,
            y=y,
            target=target,
            success=success,
            adv_pred=pred,
            queries=queries,
            duration_s=duration,
            threat_model=self.threat_model(),
            sample_queries=torch.cat(counts) if counts else None,
        )

    def _targets(
        self, classifier: Classifier, y: torch.Tensor, target: Any, generator: torch.Generator
    ) -> torch.Tensor:
        torch = require("torch", extra="ml")
        k = classifier.num_classes
        if target is None:
            # A uniformly random class other than the true one.
            shift = torch.randint(1, k, (len(y),), generator=generator)
            return (y + shift.to(y.device)) % k
        target = torch.as_tensor(target, dtype=torch.long, device=y.device)
        if target.shape != y.shape:
            raise ShapeError(f"target must have shape {tuple(y.shape)}, got {tuple(target.shape)}")
        if bool(((target < 0) | (target >= k)).any()):
            raise InputError(f"target labels must be in [0, {k - 1}]")
        return target

    def _perturb(
        self,
        classifier: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        generator: torch.Generator,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Return adversarial versions of one batch ``x`` (the one method to override).

        Attacks that count queries per sample (black-box ones) return ``(x_adv, queries)``
        with ``queries`` of shape ``(len(x),)``.
        """
        raise NotImplementedError


def predict(classifier: Classifier, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Labels for ``x``, in batches, without gradients."""
    torch = require("torch", extra="ml")
    out = [classifier.logits(x[i : i + batch_size]).argmax(dim=1).to(x.device)
           for i in range(0, len(x), batch_size)]
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


def validate_inputs(classifier: Classifier, x: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn ``x``/``y`` into tensors and check shape, bounds and labels (all problems at once).

    Raises:
        ShapeError: ``x`` does not match ``classifier.input_shape`` or ``y`` is misaligned.
        InputError: Values outside ``classifier.bounds``, non-finite, or labels out of range.
    """
    torch = require("torch", extra="ml")
    x = torch.as_tensor(x, dtype=torch.float32)
    y = torch.as_tensor(y)
    if y.dtype.is_floating_point and bool((y != y.round()).any()):
        raise InputError("labels must be integers")
    y = y.long()
    expected = tuple(classifier.input_shape)
    if tuple(x.shape[1:]) != expected:
        raise ShapeError(
            f"inputs have shape {tuple(x.shape[1:])} per sample but the model expects {expected}"
        )
    if y.ndim != 1 or len(y) != len(x):
        raise ShapeError(f"labels must have shape ({len(x)},), got {tuple(y.shape)}")
    problems = []
    if not bool(torch.isfinite(x).all()):
        problems.append("inputs contain NaN or infinite values")
    low, high = classifier.bounds
    if len(x) and (float(x.min()) < low - TOL or float(x.max()) > high + TOL):
        problems.append(
            f"inputs range over [{float(x.min()):.4g}, {float(x.max()):.4g}], outside the "
            f"model's bounds [{low:g}, {high:g}] (declare other bounds with --bounds)"
        )
    k = classifier.num_classes
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= k):
        problems.append(f"labels range over [{int(y.min())}, {int(y.max())}], outside [0, {k - 1}]")
    if problems:
        raise InputError("; ".join(problems))
    return x, y

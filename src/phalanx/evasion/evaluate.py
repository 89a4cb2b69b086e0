"""Robustness evaluation: robust accuracy per epsilon, per attack and in the worst case.

A sample counts as robust at a given epsilon only if it is classified correctly and *every*
attack of the suite fails on it (the per-sample worst case of Croce & Hein 2020, "Reliable
evaluation of adversarial robustness with an ensemble of diverse parameter-free attacks",
ICML, https://arxiv.org/abs/2003.01690). Reporting the best single attack instead overestimates
robustness.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from phalanx._optional import require
from phalanx.core.check import Check
from phalanx.core.context import Context
from phalanx.core.findings import Finding, Severity
from phalanx.core.plugin import Interval, IsInstance, OneOf
from phalanx.core.protocols import Classifier
from phalanx.core.results import Artifact, Metric, Result, utcnow
from phalanx.core.stats import wilson_interval
from phalanx.core.threat import ThreatModel
from phalanx.errors import InvalidParameterError
from phalanx.evasion.base import EVASION_REFS, Attack, predict, validate_inputs

if TYPE_CHECKING:
    import torch

#: Named attack suites.
SUITES: dict[str, tuple[str, ...]] = {"quick": ("fgsm", "pgd")}

NORM_LABEL = {"linf": "L-inf", "l2": "L2"}


def build_attack(name: str, eps: float, norm: str, seed: int, batch_size: int) -> Attack:
    """The suite's configuration of attack ``name`` at budget ``eps``.

    PGD uses 20 iterations of ``2.5 * eps / 20`` with a random start (Madry et al.'s rule of
    a total path 2.5 times the radius, so that the boundary of the ball is reachable).
    """
    from phalanx.evasion.fgsm import FGSM
    from phalanx.evasion.pgd import PGD

    if name == "fgsm":
        return FGSM(eps=eps, norm=norm, seed=seed, batch_size=batch_size)
    if name == "pgd":
        steps = 20
        return PGD(eps=eps, step_size=2.5 * eps / steps, max_iter=steps, norm=norm,
                   seed=seed, batch_size=batch_size)
    raise InvalidParameterError([f"unknown attack {name!r} in suite; known: fgsm, pgd"])


@dataclass(frozen=True)
class _Gap:
    severity: Severity
    words: str


def _grade(clean: float, robust: float) -> _Gap | None:
    """Severity of the drop from clean to robust accuracy (relative to clean accuracy)."""
    if clean <= 0:
        return None
    kept = robust / clean
    if kept <= 0.1:
        return _Gap(Severity.HIGH, "loses nearly all of its accuracy")
    if kept <= 0.5:
        return _Gap(Severity.MEDIUM, "loses most of its accuracy")
    if kept <= 0.8:
        return _Gap(Severity.LOW, "loses a sizeable part of its accuracy")
    return None


class RobustnessCheck(Check):
    """Standardised robustness evaluation: clean accuracy, then robust accuracy per epsilon.

    For each epsilon every attack of the suite runs on the correctly classified samples; a
    sample is robust only if all attacks fail on it. Each rate carries a 95% Wilson
    confidence interval. Findings grade the gap between clean and worst-case robust accuracy.

    Paper: Croce & Hein (2020), "Reliable evaluation of adversarial robustness with an
    ensemble of diverse parameter-free attacks", ICML. https://arxiv.org/abs/2003.01690

    Threat model: white-box, untargeted, perturbations bounded in L-inf or L2.

    Args:
        eps: Budgets to evaluate. Default ``(0.1, 0.2, 0.3)``.
        norm: ``"linf"`` or ``"l2"``. Default ``"linf"``.
        suite: ``"quick"`` (FGSM and PGD-20) or ``"custom"`` (use ``attacks``).
        attacks: Attack names for the ``custom`` suite.
        n: Most samples to evaluate (the first ``n``). Default 1000.
        batch_size: Samples per pass. Default 256.
        seed: Seed for every attack. Default 0.
        examples: How many adversarial examples to keep as an image. Default 8.

    Example:
        >>> result = RobustnessCheck(eps=(0.1, 0.3)).run(classifier, (x, y))  # doctest: +SKIP
        >>> result.metric("robust_accuracy", eps=0.3, attack="worst-case").value  # doctest: +SKIP
    """

    name = "robustness"
    title = "Adversarial robustness"
    paper = "Croce & Hein 2020, https://arxiv.org/abs/2003.01690"
    refs = EVASION_REFS
    constraints = {
        "norm": OneOf(("linf", "l2")),
        "suite": OneOf((*SUITES, "custom")),
        "n": Interval(1, None, integer=True),
        "batch_size": Interval(1, None, integer=True),
        "seed": Interval(0, None, integer=True),
        "examples": Interval(0, 64, integer=True),
        "attacks": IsInstance((tuple, list), optional=True),
    }

    def __init__(
        self,
        *,
        eps: Sequence[float] = (0.1, 0.2, 0.3),
        norm: str = "linf",
        suite: str = "quick",
        attacks: Sequence[str] | None = None,
        n: int = 1000,
        batch_size: int = 256,
        seed: int = 0,
        examples: int = 8,
    ) -> None:
        self.eps = eps
        self.norm = norm
        self.suite = suite
        self.attacks = attacks
        self.n = n
        self.batch_size = batch_size
        self.seed = seed
        self.examples = examples

    def _extra_problems(self) -> list[str]:
        problems = []
        values = list(self.eps) if isinstance(self.eps, (list, tuple)) else [self.eps]
        if not values:
            problems.append("eps needs at least one value")
        for value in values:
            problem = Interval(0, None, closed="neither").problem("eps", value)
            if problem:
                problems.append(problem)
        if self.suite == "custom" and not self.attacks:
            problems.append("the custom suite needs attacks=[...]")
        return problems

    def attack_names(self) -> tuple[str, ...]:
        """The attacks this configuration runs, in order."""
        if self.suite == "custom":
            return tuple(self.attacks or ())
        return SUITES[self.suite]

    def run(self, target: Any, data: Any = None, *, context: Context | None = None) -> Result:
        """Evaluate ``target`` (a :class:`Classifier`) on ``data`` = ``(x, y)`` or a dataset."""
        torch = require("torch", extra="ml")
        self.check_params()
        ctx = context or Context()
        classifier: Classifier = target
        x, y = _unpack(data)
        x, y = validate_inputs(classifier, x[: self.n], y[: self.n])
        eps_values = sorted(float(e) for e in self.eps)
        result = Result(
            check=self.plugin_id(),
            title=f"{self.title} ({NORM_LABEL.get(self.norm, self.norm)})",
            params={k: (list(v) if isinstance(v, tuple) else v) for k, v in self.get_params().items()},
            threat_model=ThreatModel(knowledge="white-box", norm=self.norm,  # type: ignore[arg-type]
                                     eps=max(eps_values)),
            refs=self.refs,
            started_at=utcnow(),
            seed=self.seed,
        )
        n = len(x)
        with torch.no_grad():
            clean_pred = predict(classifier, x, self.batch_size)
        correct = clean_pred == y
        clean_acc = _rate(result, "clean_accuracy", int(correct.sum()), n, {})
        ctx.message(f"clean accuracy {clean_acc:.1%} on {n} samples")

        shown: dict[str, Any] | None = None
        for eps in eps_values:
            worst = correct.clone()
            for name in self.attack_names():
                attack = build_attack(name, eps, self.norm, self.seed, self.batch_size)
                idx = correct.nonzero().flatten()
                robust = correct.clone()
                if len(idx):
                    out = attack.run(classifier, x[idx], y[idx], context=ctx)
                    robust[idx] = ~out.success
                    result.metrics.append(Metric("attack_seconds", out.duration_s,
                                                 labels={"eps": eps, "attack": name}, unit="s"))
                    if shown is None and bool(out.success.any()):
                        shown = _pick_examples(x[idx], out, self.examples, eps, name)
                _rate(result, "robust_accuracy", int(robust.sum()), n,
                      {"eps": eps, "attack": name})
                worst &= robust
            robust_acc = _rate(result, "robust_accuracy", int(worst.sum()), n,
                               {"eps": eps, "attack": "worst-case"})
            gap = _grade(clean_acc, robust_acc)
            if gap is not None:
                result.findings.append(self._finding(gap, eps, clean_acc, robust_acc, n))

        if shown is not None and self.examples:
            png = _examples_png(shown)
            if png is not None:
                result.artifacts.append(Artifact(
                    "adversarial-examples.png", "image/png", png,
                    f"Inputs (top) and adversarial versions (bottom) found by {shown['attack']} "
                    f"at eps={shown['eps']:g}, with the model's predictions"))
        result.finished_at = utcnow()
        return result

    def _finding(self, gap: _Gap, eps: float, clean: float, robust: float, n: int) -> Finding:
        norm = NORM_LABEL.get(self.norm, self.norm)
        return Finding(
            check=self.plugin_id(),
            severity=gap.severity,
            title=f"Accuracy falls from {clean:.1%} to {robust:.1%} under {norm} "
                  f"perturbations of size {eps:g}",
            detail=(
                f"Under white-box {norm} attacks of budget {eps:g} "
                f"({', '.join(self.attack_names())}; worst case per sample over {n} samples) "
                f"the model {gap.words}: an attacker who can change each input by at most "
                f"{eps:g} flips {1 - robust / clean:.0%} of its correct predictions."
            ),
            evidence={"eps": eps, "norm": self.norm, "clean_accuracy": round(clean, 4),
                      "robust_accuracy": round(robust, 4), "samples": n,
                      "attacks": list(self.attack_names())},
            remediation=(
                "Harden the model with adversarial training (e.g. PGD-AT, TRADES) or a certified "
                "defense, restrict and monitor queries, and re-evaluate with the standard suite "
                "(APGD, FAB, Square) before claiming robustness."
            ),
            refs=self.refs,
            plugin_id=self.plugin_id(),
            plugin_version=self.version,
            params=self.get_params() | {"eps": eps},
            seed=self.seed,
        )


def evaluate_robustness(
    classifier: Classifier,
    x: Any,
    y: Any,
    *,
    context: Context | None = None,
    **params: Any,
) -> Result:
    """Run a :class:`RobustnessCheck` with ``params`` on ``(x, y)``.

    Example:
        >>> result = evaluate_robustness(classifier, x, y, eps=(0.1, 0.3), norm="linf")  # doctest: +SKIP
    """
    return RobustnessCheck(**params).run(classifier, (x, y), context=context)


def _unpack(data: Any) -> tuple[Any, Any]:
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return data[0], data[1]
    if hasattr(data, "x") and hasattr(data, "y"):
        return data.x, data.y
    raise InvalidParameterError(["data must be (x, y) or have .x and .y arrays"])


def _rate(result: Result, name: str, k: int, n: int, labels: dict[str, Any]) -> float:
    value = k / n if n else 0.0
    lower, upper = wilson_interval(k, n)
    result.metrics.append(Metric(name, value, lower, upper, labels, unit="fraction"))
    return value


def _pick_examples(x: torch.Tensor, out: Any, k: int, eps: float, attack: str) -> dict[str, Any]:
    idx = out.success.nonzero().flatten()[:k]
    return {"x": x[idx].cpu(), "x_adv": out.x_adv[idx].cpu(), "y": out.y[idx].cpu(),
            "pred": out.adv_pred[idx].cpu(), "eps": eps, "attack": attack}


def _examples_png(shown: dict[str, Any]) -> bytes | None:
    """A two-row grid: inputs and their adversarial versions, labelled with predictions."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    x, x_adv = shown["x"], shown["x_adv"]
    k = len(x)
    if k == 0 or x.ndim != 4 or x.shape[1] not in (1, 3):
        return None  # only images are drawn
    fig, axes = plt.subplots(2, k, figsize=(1.3 * k, 3.0), squeeze=False)
    for j in range(k):
        for row, (img, label) in enumerate(((x[j], f"true {int(shown['y'][j])}"),
                                            (x_adv[j], f"pred {int(shown['pred'][j])}"))):
            ax = axes[row][j]
            pic = img.permute(1, 2, 0).numpy()
            if pic.shape[-1] == 1:
                ax.imshow(pic[..., 0], cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(pic.clip(0, 1))
            ax.set_title(label, fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()

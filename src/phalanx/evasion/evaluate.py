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
from phalanx.errors import InvalidParameterError, PhalanxError
from phalanx.evasion.base import EVASION_REFS, Attack, predict, validate_inputs
from phalanx.evasion.diagnostics import Diagnosis, EpsOutcome, diagnose

if TYPE_CHECKING:
    import torch

#: Named attack suites, in the order their attacks run.
SUITES: dict[str, tuple[str, ...]] = {
    "quick": ("fgsm", "pgd"),
    # The official AutoAttack "standard" version (Croce & Hein 2020).
    "standard": ("apgd-ce", "apgd-t", "fab-t", "square"),
    "blackbox": ("square", "hsj"),
}

NORM_LABEL = {"linf": "L-inf", "l2": "L2"}


def build_attack(
    name: str, eps: float, norm: str, seed: int, batch_size: int, num_classes: int = 10
) -> Attack:
    """The suite configuration of attack ``name`` at budget ``eps``.

    Suite names: ``fgsm``; ``pgd`` (20 iterations of ``2.5 * eps / 20`` from a random start,
    Madry et al.'s rule of a path 2.5 times the radius); ``apgd-ce``, ``apgd-t``, ``fab-t`` and
    ``square`` as in AutoAttack's standard version (100 iterations, 9 target classes, 5,000
    queries); ``hsj``. Any other registered attack name gets its defaults with ``eps``,
    ``norm``, ``seed`` and ``batch_size`` set.
    """
    from phalanx.core.registry import load_plugin

    targets = max(1, min(9, num_classes - 1))
    common = {"eps": eps, "norm": norm, "seed": seed, "batch_size": batch_size}
    special: dict[str, tuple[str, dict[str, Any]]] = {
        "pgd": ("pgd", {"max_iter": 20, "step_size": 2.5 * eps / 20}),
        "apgd-ce": ("apgd", {"loss": "ce", "max_iter": 100, "restarts": 1}),
        "apgd-dlr": ("apgd", {"loss": "dlr", "max_iter": 100, "restarts": 1}),
        "apgd-t": ("apgd-t", {"max_iter": 100, "n_target_classes": targets}),
        "fab-t": ("fab", {"max_iter": 100, "n_target_classes": targets,
                          "targeted_variant": True}),
        "square": ("square", {"max_queries": 5000}),
        "hsj": ("hsj", {"max_queries": 5000}),
    }
    plugin, extra = special.get(name, (name, {}))
    try:
        cls = load_plugin("attacks", plugin)
    except PhalanxError as exc:
        raise InvalidParameterError([f"unknown attack {name!r} in suite: {exc}"]) from None
    accepted = set(cls.param_names())
    params = {k: v for k, v in (common | extra).items() if k in accepted}
    attack: Attack = cls(**params)
    return attack


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

    For each epsilon the suite's attacks run on the correctly classified samples; a sample is
    robust only if every attack fails on it (the per-sample worst case). In ``cascade`` mode,
    as in AutoAttack, each attack runs only on the samples that the earlier ones did not
    break, and the per-attack figure is the robust accuracy after that attack. Otherwise each
    attack runs on every sample and its figure is its own. Each rate carries a 95% Wilson
    confidence interval. Findings grade the gap between clean and worst-case robust accuracy.
    Gradient-masking diagnostics (:mod:`phalanx.evasion.diagnostics`) flag evaluations that
    cannot be trusted.

    Paper: Croce & Hein (2020), "Reliable evaluation of adversarial robustness with an
    ensemble of diverse parameter-free attacks", ICML. https://arxiv.org/abs/2003.01690

    Threat model: white-box (and, in the ``standard`` and ``blackbox`` suites, black-box),
    untargeted, perturbations bounded in L-inf or L2.

    Args:
        eps: Budgets to evaluate. Default ``(0.1, 0.2, 0.3)``.
        norm: ``"linf"`` or ``"l2"``. Default ``"linf"``.
        suite: ``"quick"`` (FGSM, PGD-20), ``"standard"`` (APGD-CE, APGD-T, FAB-T, Square
            5,000 queries), ``"blackbox"`` (Square, HopSkipJump) or ``"custom"``.
        attacks: Attack names for the ``custom`` suite, e.g. ``("pgd", "square")``.
        cascade: Run each attack only on samples still robust. Default: off for ``quick``,
            on for the other suites.
        n: Most samples to evaluate (the first ``n``). Default 1000.
        batch_size: Samples per pass. Default 256.
        seed: Seed for every attack. Default 0.
        examples: How many adversarial examples to keep as an image. Default 8.
        diagnostics: Run the gradient-masking diagnostics (a large-eps sanity attack and a
            prediction-stability test cost a little extra). Default True.

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
        "cascade": IsInstance((bool,), optional=True),
        "diagnostics": IsInstance((bool,)),
    }

    def __init__(
        self,
        *,
        eps: Sequence[float] = (0.1, 0.2, 0.3),
        norm: str = "linf",
        suite: str = "quick",
        attacks: Sequence[str] | None = None,
        cascade: bool | None = None,
        n: int = 1000,
        batch_size: int = 256,
        seed: int = 0,
        examples: int = 8,
        diagnostics: bool = True,
    ) -> None:
        self.eps = eps
        self.norm = norm
        self.suite = suite
        self.attacks = attacks
        self.cascade = cascade
        self.n = n
        self.batch_size = batch_size
        self.seed = seed
        self.examples = examples
        self.diagnostics = diagnostics

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

    def uses_cascade(self) -> bool:
        """Whether attacks run only on samples that earlier attacks left robust."""
        return self.cascade if self.cascade is not None else self.suite != "quick"

    def run(self, target: Any, data: Any = None, *, context: Context | None = None) -> Result:
        """Evaluate ``target`` (a :class:`Classifier`) on ``data`` = ``(x, y)`` or a dataset."""
        torch = require("torch", extra="ml")
        self.check_params()
        ctx = context or Context()
        classifier: Classifier = target
        x, y = _unpack(data)
        x, y = validate_inputs(classifier, x[: self.n], y[: self.n])
        eps_values = sorted(float(e) for e in self.eps)
        cascade = self.uses_cascade()
        # Build every attack up front so that a bad name fails before any work is done.
        plan = {eps: [(name, build_attack(name, eps, self.norm, self.seed, self.batch_size,
                                          classifier.num_classes))
                      for name in self.attack_names()] for eps in eps_values}
        knowledge = {name: attack.knowledge for name, attack in plan[eps_values[0]]}
        has_black = "black-box" in knowledge.values()
        result = Result(
            check=self.plugin_id(),
            title=f"{self.title} ({NORM_LABEL.get(self.norm, self.norm)}, {self.suite} suite)",
            params={k: (list(v) if isinstance(v, tuple) else v)
                    for k, v in self.get_params().items()},
            threat_model=ThreatModel(
                knowledge="black-box" if set(knowledge.values()) == {"black-box"} else "white-box",
                norm=self.norm,  # type: ignore[arg-type]
                eps=max(eps_values),
                query_budget=5000 if has_black else None),
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

        outcomes: list[EpsOutcome] = []
        shown: dict[str, Any] | None = None
        for eps in eps_values:
            worst = correct.clone()
            robust_after: dict[str, Any] = {}
            for name, attack in plan[eps]:
                pool = worst if cascade else correct
                idx = pool.nonzero().flatten()
                robust = pool.clone() if cascade else correct.clone()
                if len(idx):
                    out = attack.run(classifier, x[idx], y[idx], context=ctx)
                    robust[idx] = ~out.success
                    labels = {"eps": eps, "attack": name}
                    result.metrics.append(Metric("attack_seconds", out.duration_s,
                                                 labels=labels, unit="s"))
                    result.metrics.append(Metric("attack_queries", float(out.queries),
                                                 labels=labels, unit="queries"))
                    if shown is None and bool(out.success.any()):
                        shown = _pick_examples(classifier, x[idx], out, self.examples, eps, name)
                robust_after[name] = robust
                _rate(result, "robust_accuracy", int(robust.sum()), n, {"eps": eps, "attack": name})
                worst &= robust
            robust_acc = _rate(result, "robust_accuracy", int(worst.sum()), n,
                               {"eps": eps, "attack": "worst-case"})
            outcomes.append(EpsOutcome(eps, robust_after, worst, knowledge, cascade))
            gap = _grade(clean_acc, robust_acc)
            if gap is not None:
                result.findings.append(self._finding(gap, eps, clean_acc, robust_acc, n))

        if self.diagnostics:
            result.findings.extend(self._diagnose(classifier, x, y, clean_pred, outcomes, ctx,
                                                  result))
        if shown is not None and self.examples:
            png = _examples_png(shown)
            if png is not None:
                result.artifacts.append(Artifact(
                    "adversarial-examples.png", "image/png", png,
                    f"Inputs (top) and the most confidently misclassified adversarial versions "
                    f"(bottom) found by {shown['attack']} at the smallest budget, "
                    f"eps={shown['eps']:g}, with the model's predictions and confidence"))
        result.finished_at = utcnow()
        return result

    def _diagnose(self, classifier: Classifier, x: Any, y: Any, clean_pred: Any,
                  outcomes: list[EpsOutcome], ctx: Context, result: Result) -> list[Finding]:
        torch = require("torch", extra="ml")
        n = len(x)
        correct = clean_pred == y
        # Repeated identical queries (after the clean pass): a deterministic model answers
        # the same every time.
        with torch.no_grad():
            unstable = torch.zeros(n, dtype=torch.bool)
            for _ in range(2):
                unstable |= (predict(classifier, x, self.batch_size) != clean_pred).cpu()
        unstable_fraction = float(unstable.float().mean()) if n else 0.0
        result.metrics.append(Metric("prediction_instability", unstable_fraction,
                                     unit="fraction"))
        # A budget of half the input range should break nearly everything (Carlini et al.
        # 2019): a 50-step PGD at that size (or, for a black-box target, the suite's first
        # attack), on up to 100 correct samples.
        low, high = classifier.bounds
        big = 0.5 * (high - low)
        if self.norm == "l2":
            big *= float(torch.tensor(x.shape[1:]).prod()) ** 0.5
        idx = correct.nonzero().flatten()[:100]
        sanity_robust = None
        if classifier.differentiable:
            from phalanx.evasion.pgd import PGD

            first_name = "pgd-50"
            attack: Attack = PGD(eps=big, step_size=2.5 * big / 50, max_iter=50, norm=self.norm,
                                 seed=self.seed, batch_size=self.batch_size)
        else:
            first_name = self.attack_names()[0]
            attack = build_attack(first_name, big, self.norm, self.seed, self.batch_size,
                                  classifier.num_classes)
        if len(idx) and big > max(float(e) for e in self.eps):
            out = attack.run(classifier, x[idx], y[idx], context=ctx)
            sanity_robust = 1.0 - out.success_rate
            result.metrics.append(Metric("sanity_robust_accuracy", sanity_robust,
                                         labels={"eps": big, "attack": first_name},
                                         unit="fraction"))
        return diagnose(Diagnosis(
            check=self.plugin_id(), n=n, outcomes=outcomes, sanity_eps=big,
            sanity_robust=sanity_robust, sanity_attack=first_name,
            unstable_fraction=unstable_fraction, params=self.get_params(), seed=self.seed,
        ))

    def _finding(self, gap: _Gap, eps: float, clean: float, robust: float, n: int) -> Finding:
        norm = NORM_LABEL.get(self.norm, self.norm)
        return Finding(
            check=self.plugin_id(),
            severity=gap.severity,
            title=f"Accuracy falls from {clean:.1%} to {robust:.1%} under {norm} "
                  f"perturbations of size {eps:g}",
            detail=(
                f"Under {norm} attacks of budget {eps:g} "
                f"({', '.join(self.attack_names())}; worst case per sample over {n} samples) "
                f"the model {gap.words}: an attacker who can change each input by at most "
                f"{eps:g} flips {1 - robust / clean:.0%} of its correct predictions."
            ),
            evidence={"eps": eps, "norm": self.norm, "clean_accuracy": round(clean, 4),
                      "robust_accuracy": round(robust, 4), "samples": n,
                      "suite": self.suite, "attacks": list(self.attack_names())},
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


def _pick_examples(classifier: Classifier, x: torch.Tensor, out: Any, k: int, eps: float,
                   attack: str) -> dict[str, Any]:
    """The ``k`` successful adversarial examples the model is most confident about."""
    torch = require("torch", extra="ml")
    idx = out.success.nonzero().flatten()
    with torch.no_grad():
        probs = torch.softmax(classifier.logits(out.x_adv[idx]), dim=1).cpu()
    conf = probs.gather(1, out.adv_pred[idx].cpu().view(-1, 1)).flatten()
    order = conf.argsort(descending=True)[:k]
    idx = idx[order]
    return {"x": x[idx].cpu(), "x_adv": out.x_adv[idx].cpu(), "y": out.y[idx].cpu(),
            "pred": out.adv_pred[idx].cpu(), "conf": conf[order], "eps": eps,
            "attack": attack}


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
                                            (x_adv[j], f"pred {int(shown['pred'][j])} "
                                                        f"({float(shown['conf'][j]):.0%})"))):
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

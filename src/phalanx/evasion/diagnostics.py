"""Is this robustness evaluation trustworthy? Checks for gradient masking and broken attacks.

Athalye, Carlini & Wagner (2018), "Obfuscated Gradients Give a False Sense of Security:
Circumventing Defenses to Adversarial Examples", ICML, https://arxiv.org/abs/1802.00420;
Carlini et al. (2019), "On Evaluating Adversarial Robustness",
https://arxiv.org/abs/1902.06705 (section 5, the checklist).

Each test looks for a symptom those papers name. A symptom does not prove that the model is
weaker than measured, but it does mean the measured figure cannot be trusted as a lower bound
on what an attacker achieves. Each symptom becomes a finding that says so.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from phalanx.core.findings import Finding, Severity

if TYPE_CHECKING:
    import torch

DIAGNOSTIC_REFS: tuple[str, ...] = (
    "atlas:AML.T0015",
    "nist-aml-2025:NISTAML.022",
    "nist-ai-rmf-1.0:MEASURE-2.5",
    "nist-ai-rmf-1.0:MEASURE-2.7",
)

_UNTRUSTED = (
    "Do not report this robust accuracy as a guarantee. Evaluate with adaptive attacks "
    "(BPDA or EOT for non-differentiable or random parts, Athalye et al. 2018), the standard "
    "suite, and black-box attacks, and fix the cause before claiming robustness."
)


@dataclass
class EpsOutcome:
    """What the suite found at one budget.

    Args:
        eps: The budget.
        robust: Per attack, which samples were still robust after it (in cascade mode, after
            it and every attack before it).
        worst: Samples robust against every attack.
        knowledge: Per attack, ``"white-box"`` or ``"black-box"``.
        cascade: Whether attacks ran only on samples that earlier attacks had not broken.
    """

    eps: float
    robust: dict[str, torch.Tensor]
    worst: torch.Tensor
    knowledge: dict[str, str]
    cascade: bool


@dataclass
class Diagnosis:
    """Inputs to the diagnostics beyond the per-eps outcomes."""

    check: str
    n: int
    outcomes: Sequence[EpsOutcome]
    sanity_eps: float | None = None
    sanity_robust: float | None = None
    sanity_attack: str = ""
    unstable_fraction: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None


def _noise_floor(n: int) -> float:
    """Differences below this are sampling noise: two samples or one percent."""
    return max(2.0 / max(n, 1), 0.01)


def diagnose(d: Diagnosis) -> list[Finding]:
    """Every symptom of an untrustworthy evaluation found in ``d``."""
    findings: list[Finding] = []
    for outcome in d.outcomes:
        findings += _blackbox_beats_whitebox(d, outcome)
        findings += _single_step_beats_iterative(d, outcome)
    findings += _not_monotone(d)
    findings += _large_eps_not_zero(d)
    if d.unstable_fraction > 0:
        findings.append(_finding(
            d, Severity.MEDIUM if d.unstable_fraction < 0.01 else Severity.HIGH,
            f"Predictions change between identical queries ({d.unstable_fraction:.1%} of "
            f"samples)",
            "The model's predictions on the same clean inputs differed between repeated "
            "queries: it is randomised. Attacks that follow one random draw of the gradient "
            "underestimate an attacker who averages over the randomness (Expectation over "
            "Transformation).",
            {"unstable_fraction": round(d.unstable_fraction, 4), "repeats": 3},
        ))
    return findings


def _finding(d: Diagnosis, severity: Severity, title: str, detail: str,
             evidence: dict[str, Any]) -> Finding:
    return Finding(
        check=d.check,
        severity=severity,
        title=f"Robustness figure not trustworthy: {title}",
        detail=detail,
        evidence={"diagnostic": True, **evidence},
        remediation=_UNTRUSTED,
        refs=DIAGNOSTIC_REFS,
        plugin_id=d.check,
        params=d.params,
        seed=d.seed,
    )


def _blackbox_beats_whitebox(d: Diagnosis, o: EpsOutcome) -> list[Finding]:
    white = [a for a, k in o.knowledge.items() if k == "white-box"]
    black = [a for a, k in o.knowledge.items() if k == "black-box"]
    if not white or not black:
        return []
    if o.cascade:
        last_white = max(white, key=list(o.robust).index)
        white_robust = o.robust[last_white]
    else:
        white_robust = _all(o.robust[a] for a in white)
    black_robust = _all(o.robust[a] for a in black)
    extra = int((white_robust & ~black_robust).sum())
    if extra / max(d.n, 1) < _noise_floor(d.n):
        return []
    return [_finding(
        d, Severity.HIGH,
        f"black-box attacks broke {extra} samples that every white-box attack missed "
        f"(eps {o.eps:g})",
        f"At eps {o.eps:g}, {', '.join(black)} found adversarial examples for {extra} of "
        f"{d.n} samples on which the gradient-based attacks ({', '.join(white)}) failed. "
        "Black-box attacks see less than white-box ones, so this is the signature of "
        "masked or obfuscated gradients.",
        {"eps": o.eps, "samples_only_black_box_broke": extra, "samples": d.n,
         "white_box": white, "black_box": black},
    )]


def _single_step_beats_iterative(d: Diagnosis, o: EpsOutcome) -> list[Finding]:
    if o.cascade or "fgsm" not in o.robust or "pgd" not in o.robust:
        return []
    fgsm = float(o.robust["fgsm"].float().mean())
    pgd = float(o.robust["pgd"].float().mean())
    if pgd - fgsm < _noise_floor(d.n):
        return []
    return [_finding(
        d, Severity.MEDIUM,
        f"single-step FGSM beats iterative PGD (eps {o.eps:g})",
        f"At eps {o.eps:g} FGSM leaves {fgsm:.1%} robust but PGD leaves {pgd:.1%}. An "
        "iterative attack should be at least as strong as one step of it; when it is not, "
        "the loss surface is being shaped to mislead gradient steps.",
        {"eps": o.eps, "fgsm_robust_accuracy": round(fgsm, 4),
         "pgd_robust_accuracy": round(pgd, 4)},
    )]


def _not_monotone(d: Diagnosis) -> list[Finding]:
    rates = [(o.eps, float(o.worst.float().mean())) for o in sorted(d.outcomes, key=lambda o: o.eps)]
    floor = _noise_floor(d.n)
    for (e0, r0), (e1, r1) in itertools.pairwise(rates):
        if r1 > r0 + floor:
            return [_finding(
                d, Severity.MEDIUM,
                f"robust accuracy rises from {r0:.1%} at eps {e0:g} to {r1:.1%} at eps {e1:g}",
                "A larger budget contains every perturbation of a smaller one, so robust "
                "accuracy can only fall as eps grows. A rise means the attacks fail to find "
                "examples that exist.",
                {"curve": [{"eps": e, "robust_accuracy": round(r, 4)} for e, r in rates]},
            )]
    if len(rates) >= 2:
        (e0, r0), (e1, r1) = rates[0], rates[-1]
        if e1 >= 2 * e0 and r0 > 0.05 and r1 >= r0 - floor:
            return [_finding(
                d, Severity.MEDIUM,
                f"robust accuracy does not fall between eps {e0:g} and {e1:g} "
                f"({r0:.1%} -> {r1:.1%})",
                "Robust accuracy stays flat while the budget at least doubles. On real "
                "models it falls; a flat curve points at attacks that are not working.",
                {"curve": [{"eps": e, "robust_accuracy": round(r, 4)} for e, r in rates]},
            )]
    return []


def _large_eps_not_zero(d: Diagnosis) -> list[Finding]:
    if d.sanity_eps is None or d.sanity_robust is None or d.sanity_robust <= 0.05:
        return []
    return [_finding(
        d, Severity.HIGH,
        f"{d.sanity_robust:.1%} of samples survive a huge budget (eps {d.sanity_eps:g})",
        f"{d.sanity_attack} with eps {d.sanity_eps:g} (half the input range) should break "
        f"nearly every sample, since at that size the inputs can be washed out entirely, yet "
        f"{d.sanity_robust:.1%} survive. The attack is not working against this model, so the "
        "smaller-budget figures overstate robustness too.",
        {"sanity_eps": d.sanity_eps, "sanity_robust_accuracy": round(d.sanity_robust, 4),
         "attack": d.sanity_attack},
    )]


def _all(masks: Any) -> torch.Tensor:
    out = None
    for m in masks:
        out = m.clone() if out is None else out & m
    assert out is not None
    return out

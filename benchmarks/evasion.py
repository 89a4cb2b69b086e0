"""Evasion benchmark: phalanx against torchattacks and IBM ART, in one process.

Every library attacks the same model, the same images and the same budget, on the same number
of CPU threads, and is timed the same way: after one warm-up, each contender runs ``--repeats``
times, the contenders taking turns (in a rotating order) so that a change in machine load hits
all of them alike. The best time is the headline figure; the median and every sample are kept
in the JSON.

Sections:
    pgd       PGD-10 (L-inf, eps 0.1, step 2.5 * eps / 10, random start) and FGSM on the zoo's
              ``fashion-cnn`` and the first ``--n`` Fashion-MNIST test images, with a bare
              torch loop doing the same forward and input-gradient passes as the floor.
    standard  phalanx's ``RobustnessCheck(suite="standard")`` and torchattacks' AutoAttack
              ("standard") at L-inf 0.3 on the adversarially trained ``mnist-cnn-pgdat``,
              in ``--standard-runs`` runs on disjoint image slices with different seeds.

Usage::

    python benchmarks/evasion.py [--n 500] [--n-standard 200] [--standard-runs 3]
                                 [--sections pgd,standard]
                                 [--out benchmarks/results]

Writes ``evasion.json`` (machine-readable) and ``evasion.md`` (a table) to ``--out``,
overwriting them. Progress goes to stderr. See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

SECTIONS = ("pgd", "standard")
STANDARD_MODEL = "mnist-cnn-pgdat"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- machine ----------------------------------------------------------------------------------


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def version_of(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def machine_info(threads: int) -> dict[str, Any]:
    return {
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {
            "phalanx": version_of("phalanx"),
            "torch": torch.__version__,
            "torchattacks": version_of("torchattacks"),
            "adversarial-robustness-toolbox": version_of("adversarial-robustness-toolbox"),
            "numpy": np.__version__,
        },
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
    }


# -- timing -----------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one run of a contender produced."""

    x_adv: torch.Tensor | None
    pred: torch.Tensor | None
    attack_s: float  # until the adversarial examples exist
    total_s: float  # including the predictions on them (robust accuracy)


@dataclass
class Contender:
    library: str
    attack: str
    run: Callable[[], Outcome]
    note: str = ""
    outcomes: list[Outcome] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)


def race(contenders: Sequence[Contender], repeats: int) -> None:
    """One warm-up each, then ``repeats`` rounds; the order rotates from round to round."""
    for c in contenders:
        log(f"warm-up {c.library} {c.attack}")
        c.run()
    k = len(contenders)
    for r in range(repeats):
        order = [contenders[(r + i) % k] for i in range(k)]
        for c in order:
            load = load_average()
            out = c.run()
            c.outcomes.append(out)
            c.loads.append(load[0] if load else float("nan"))
            log(f"round {r + 1}/{repeats} {c.library:12s} {c.attack:5s} "
                f"{out.total_s:7.2f} s (attack {out.attack_s:.2f} s), load {c.loads[-1]}")


def summary(c: Contender, n: int, y: torch.Tensor, floor: Contender,
            floor_eval: Contender) -> dict[str, Any]:
    """One result row. Attack-only times are scored against the bare loop, times that include
    the predictions against the bare loop plus its own prediction pass."""
    total = [o.total_s for o in c.outcomes]
    attack = [o.attack_s for o in c.outcomes]
    best, best_attack = min(total), min(attack)
    # Both bare contenders run the very same loop, so the floor is read from all their runs.
    bare = [o.attack_s for o in floor.outcomes + floor_eval.outcomes]
    floor_s, floor_median = min(bare), statistics.median(bare)
    floor_eval_s = min(o.total_s for o in floor_eval.outcomes)
    last = c.outcomes[-1]
    row: dict[str, Any] = {
        "library": c.library,
        "attack": c.attack,
        "images_per_s": round(n / best_attack, 2),
        "percent_of_floor": round(100 * floor_s / best_attack, 1),
        "seconds_best": round(best_attack, 4),
        "seconds_median": round(statistics.median(attack), 4),
        "percent_of_floor_median": round(100 * floor_median / statistics.median(attack), 1),
        "seconds_all": [round(t, 4) for t in attack],
        "with_eval_images_per_s": round(n / best, 2),
        "with_eval_percent_of_floor": round(100 * floor_eval_s / best, 1),
        "with_eval_seconds_best": round(best, 4),
        "with_eval_seconds_median": round(statistics.median(total), 4),
        "with_eval_seconds_all": [round(t, 4) for t in total],
        "load_1min_during": c.loads,
        "note": c.note,
    }
    if last.pred is None:  # the bare loop alone: no predictions, nothing "with eval"
        for key in [k for k in row if k.startswith("with_eval")]:
            row[key] = None
    else:
        row["robust_accuracy"] = round(float((last.pred.cpu() == y).float().mean()), 4)
    return row


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


# -- the pgd section --------------------------------------------------------------------------


def predict_all(model: torch.nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch_size]).argmax(dim=1)
                          for i in range(0, len(x), batch_size)])


def bare_pgd(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
             step: float, steps: int, batch_size: int, seed: int,
             random_init: bool = True) -> torch.Tensor:
    """The minimum work of PGD: per step one forward and one input-gradient pass, a sign step
    and a clamp to the ball and the bounds. No validation, no bookkeeping."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    f = torch.nn.functional
    for lo in range(0, len(x), batch_size):
        xb, yb = x[lo:lo + batch_size], y[lo:lo + batch_size]
        low, high = (xb - eps).clamp(min=0.0), (xb + eps).clamp(max=1.0)
        if random_init:
            adv = (xb + eps * (2 * torch.rand(xb.shape, generator=generator) - 1)).clamp(0.0, 1.0)
        else:
            adv = xb.clone()
        for _ in range(steps):
            adv.requires_grad_(True)
            loss = f.cross_entropy(model(adv), yb, reduction="sum")
            (grad,) = torch.autograd.grad(loss, adv)
            with torch.no_grad():
                adv = torch.min(torch.max(adv + step * grad.sign(), low), high)
        out.append(adv.detach())
    return torch.cat(out)


def pgd_section(args: argparse.Namespace) -> dict[str, Any]:
    import torchattacks
    from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescentPyTorch
    from art.estimators.classification import PyTorchClassifier

    from phalanx.evasion import FGSM, PGD
    from phalanx.zoo import load_dataset, load_model, model_info

    eps, steps, bs, seed, n = args.eps, args.steps, args.batch_size, args.seed, args.n
    step = 2.5 * eps / steps
    clf = load_model("fashion-cnn")
    model = clf.model.eval()
    data = load_dataset("fashion-mnist", "test")
    x = torch.as_tensor(data.x[:n]).contiguous()
    y = torch.as_tensor(data.y[:n])
    x_np, y_np = x.numpy(), y.numpy()
    clean = float((predict_all(model, x, bs) == y).float().mean())
    log(f"fashion-cnn clean accuracy on {n} images: {clean:.3f}")

    art_clf = PyTorchClassifier(
        model=model, loss=torch.nn.CrossEntropyLoss(), input_shape=(1, 28, 28), nb_classes=10,
        clip_values=(0.0, 1.0), device_type="cpu",
    )

    def with_eval(attack_fn: Callable[[], torch.Tensor]) -> Outcome:
        started = time.perf_counter()
        adv = attack_fn()
        attack_s = time.perf_counter() - started
        pred = predict_all(model, adv, bs)
        return Outcome(adv, pred, attack_s, time.perf_counter() - started)

    def floor(steps_: int, random_init: bool, evaluate: bool) -> Callable[[], Outcome]:
        def attack() -> torch.Tensor:
            return bare_pgd(model, x, y, eps, step if steps_ > 1 else eps, steps_, bs, seed,
                            random_init)

        def run() -> Outcome:
            if evaluate:
                return with_eval(attack)
            adv, s = timed(attack)
            return Outcome(adv, None, s, s)
        return run

    def phalanx_run(attack: Any) -> Callable[[], Outcome]:
        def run() -> Outcome:
            result, s = timed(lambda: attack.run(clf, x, y))
            return Outcome(result.x_adv, result.adv_pred, result.duration_s, s)
        return run

    def torchattacks_run(attack: Any) -> Callable[[], Outcome]:
        def run() -> Outcome:
            torch.manual_seed(seed)  # torchattacks draws its random start from torch's global RNG
            return with_eval(lambda: torch.cat([attack(x[i:i + bs], y[i:i + bs])
                                                for i in range(0, n, bs)]))
        return run

    def art_run(attack: Any) -> Callable[[], Outcome]:
        def run() -> Outcome:
            np.random.seed(seed)  # ART draws its random start from numpy's global RNG
            started = time.perf_counter()
            adv = attack.generate(x=x_np, y=y_np)
            attack_s = time.perf_counter() - started
            pred = torch.as_tensor(art_clf.predict(adv, batch_size=bs).argmax(axis=1))
            return Outcome(torch.as_tensor(adv), pred, attack_s, time.perf_counter() - started)
        return run

    common = "same model object, batch size, eps, step and iterations"
    pgd = [
        Contender("bare torch", "PGD", floor(steps, True, False),
                  f"floor: {steps} forward + input-gradient passes, sign step, clamp; nothing else"),
        Contender("bare torch", "PGD+eval", floor(steps, True, True),
                  "floor plus one no-grad forward pass for the predictions (robust accuracy)"),
        Contender("phalanx", "PGD", phalanx_run(PGD(
            eps=eps, step_size=step, max_iter=steps, norm="linf", random_start=True,
            seed=seed, batch_size=bs)),
            "PGD.run() returns the adversarial examples with the predictions on them"),
        Contender("torchattacks", "PGD", torchattacks_run(torchattacks.PGD(
            model, eps=eps, alpha=step, steps=steps, random_start=True)),
            f"{common}; + model(x_adv) under no_grad for robust accuracy"),
        Contender("ART", "PGD", art_run(ProjectedGradientDescentPyTorch(
            art_clf, norm=np.inf, eps=eps, eps_step=step, max_iter=steps, num_random_init=1,
            batch_size=bs, verbose=False)),
            f"{common}; generate() also predicts on x and x_adv to log a success rate; "
            "+ classifier.predict(x_adv) for robust accuracy"),
    ]
    fgsm = [
        Contender("bare torch", "FGSM", floor(1, False, False),
                  "floor: one forward + input-gradient pass, sign step, clamp"),
        Contender("bare torch", "FGSM+eval", floor(1, False, True),
                  "floor plus one no-grad forward pass for the predictions (robust accuracy)"),
        Contender("phalanx", "FGSM", phalanx_run(FGSM(eps=eps, norm="linf", seed=seed,
                                                      batch_size=bs))),
        Contender("torchattacks", "FGSM", torchattacks_run(torchattacks.FGSM(model, eps=eps))),
        Contender("ART", "FGSM", art_run(FastGradientMethod(
            art_clf, norm=np.inf, eps=eps, batch_size=bs))),
    ]
    load_start = load_average()
    race(pgd, args.repeats)
    race(fgsm, args.repeats)
    load_end = load_average()
    # Every contender is scored against the floor of its own attack.
    rows = [summary(c, n, y, pgd[0], pgd[1]) for c in pgd]
    rows += [summary(c, n, y, fgsm[0], fgsm[1]) for c in fgsm]
    # Sanity: every adversarial batch respects the budget and the bounds.
    for c in pgd[2:] + fgsm[2:]:
        adv = c.outcomes[-1].x_adv
        if adv is not None:
            linf = float((adv.reshape(n, -1) - x.reshape(n, -1)).abs().max())
            row = next(r for r in rows if r["library"] == c.library and r["attack"] == c.attack)
            row["max_linf"] = round(linf, 6)
            row["in_bounds"] = bool(adv.min() >= 0 and adv.max() <= 1)
    return {
        "model": "fashion-cnn",
        "model_test_accuracy": model_info("fashion-cnn")["metrics"].get("test_accuracy"),
        "dataset": "fashion-mnist (test split, first n images)",
        "n": n,
        "clean_accuracy": round(clean, 4),
        "eps": eps,
        "norm": "linf",
        "pgd_steps": steps,
        "pgd_step_size": step,
        "random_start": True,
        "batch_size": bs,
        "seed": seed,
        "load_1min_start": load_start,
        "load_1min_end": load_end,
        "results": rows,
    }


# -- the standard section ---------------------------------------------------------------------


def standard_section(args: argparse.Namespace) -> dict[str, Any]:
    """The standard suite, once per run: run k attacks images ``[k*n, (k+1)*n)`` with seed
    ``seed + k``, so the pooled robust accuracy rests on ``runs * n`` images and on as many
    seeds (one sample in a run of 200 is half a point, within seed noise)."""
    from phalanx.zoo import list_models, load_dataset, load_model

    n, runs = args.n_standard, args.standard_runs
    out: dict[str, Any] = {"model": STANDARD_MODEL, "dataset": "mnist (test split)",
                           "n": n, "runs": runs, "eps": 0.3, "norm": "linf",
                           "results": [], "skipped": []}
    if STANDARD_MODEL not in list_models():
        out["skipped"].append(f"the zoo has no {STANDARD_MODEL!r} model yet "
                              f"(known: {', '.join(list_models())})")
        log(out["skipped"][-1])
        return out
    clf = load_model(STANDARD_MODEL)
    model = clf.model.eval()
    data = load_dataset("mnist", "test")
    out["load_1min_start"] = load_average()

    import torchattacks

    from phalanx.evasion import RobustnessCheck

    rows: dict[str, dict[str, Any]] = {}

    def record(library: str, label: str, iterations: int, attacks: list[str], run: int,
               seconds: float, robust: float, extra: dict[str, Any]) -> None:
        row = rows.setdefault(label, {"library": library, "attack": label,
                                      "iterations": iterations, "attacks": attacks,
                                      "runs": []})
        row["runs"].append({"run": run, "seed": args.seed + run, "seconds": round(seconds, 2),
                            "robust_accuracy": round(robust, 4), **extra})
        log(f"run {run}: {library} {label}: {seconds:.1f} s, robust accuracy {robust:.3f}")

    for run in range(runs):
        lo = run * n
        x = torch.as_tensor(data.x[lo:lo + n]).contiguous()
        y = torch.as_tensor(data.y[lo:lo + n])
        seed = args.seed + run
        clean = float((predict_all(model, x, args.batch_size) == y).float().mean())
        out.setdefault("clean_accuracy_per_run", []).append(round(clean, 4))
        log(f"run {run}: images {lo}-{lo + n - 1}, seed {seed}, clean accuracy {clean:.3f}")

        def phalanx_suite(diagnostics: bool, run: int = run, x: Any = x, y: Any = y,
                          seed: int = seed) -> None:
            check = RobustnessCheck(suite="standard", eps=(0.3,), n=n, seed=seed,
                                    diagnostics=diagnostics)
            started = time.perf_counter()
            result = check.run(clf, (x, y))
            seconds = time.perf_counter() - started
            robust = result.metric("robust_accuracy", eps=0.3, attack="worst-case").value
            per_attack = {m.labels["attack"]: round(m.value, 4) for m in result.metrics
                          if m.name == "robust_accuracy"
                          and m.labels.get("attack") != "worst-case"}
            label = "diagnostics on (the default)" if diagnostics else "diagnostics off"
            record("phalanx", f'RobustnessCheck(suite="standard"), {label}', 100,
                   list(check.attack_names()), run, seconds, robust,
                   {"robust_accuracy_per_attack": per_attack})

        def torchattacks_suite(label: str, attack: Any, iterations: int, run: int = run,
                               x: Any = x, y: Any = y) -> None:
            started = time.perf_counter()
            adv = attack(x, y)
            attack_s = time.perf_counter() - started
            pred = predict_all(model, adv, args.batch_size)
            seconds = time.perf_counter() - started
            robust = float((pred == y).float().mean())
            record("torchattacks", label, iterations,
                   ["apgd-ce", "apgd-t", "fab-t", "square(5000)"], run, seconds, robust,
                   {"attack_only_seconds": round(attack_s, 2)})

        # The suite as published (Croce & Hein 2020): 100 iterations for APGD-CE, APGD-T and
        # FAB-T. torchattacks' AutoAttack(version="standard") builds the same four attacks
        # but leaves their `steps` at the library default of 10, so it is timed both ways.
        official = torchattacks.MultiAttack([
            torchattacks.APGD(model, norm="Linf", eps=0.3, steps=100, n_restarts=1, loss="ce",
                              seed=seed),
            torchattacks.APGDT(model, norm="Linf", eps=0.3, steps=100, n_restarts=1,
                               n_classes=10, seed=seed),
            torchattacks.FAB(model, norm="Linf", eps=0.3, steps=100, n_restarts=1,
                             multi_targeted=True, n_classes=10, seed=seed),
            torchattacks.Square(model, norm="Linf", eps=0.3, n_queries=5000, n_restarts=1,
                                seed=seed),
        ])
        default = torchattacks.AutoAttack(model, norm="Linf", eps=0.3, version="standard",
                                          n_classes=10, seed=seed)
        phalanx_suite(diagnostics=False)
        torchattacks_suite("MultiAttack as published (100 iterations)", official, 100)
        torchattacks_suite('AutoAttack(version="standard") (library default: 10 iterations)',
                           default, 10)
        if run == 0 and args.standard_diagnostics:
            phalanx_suite(diagnostics=True)

    for row in rows.values():
        done = row["runs"]
        row["n_images"] = n * len(done)
        row["seconds"] = round(sum(r["seconds"] for r in done), 2)
        row["robust_accuracy"] = round(
            sum(r["robust_accuracy"] for r in done) / len(done), 4)
        row["robust_samples"] = round(sum(r["robust_accuracy"] * n for r in done))
        out["results"].append(row)
    clean_runs = out["clean_accuracy_per_run"]
    out["clean_accuracy"] = round(sum(clean_runs) / len(clean_runs), 4)
    out["load_1min_end"] = load_average()
    return out


# -- output -----------------------------------------------------------------------------------


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    v = m["versions"]
    lines = [
        "# Evasion benchmark",
        "",
        f"Generated {report['created']} by `{report['command']}`.",
        "",
        f"Machine: {m['cpu']}, {m['cpu_count']} logical CPUs, torch threads {m['torch_threads']}; "
        f"torch {v['torch']}, phalanx {v['phalanx']}, torchattacks {v['torchattacks']}, "
        f"ART {v['adversarial-robustness-toolbox']}, Python {m['python']}. "
        f"Load average (1 min) at start {report['load_1min_start']}, at end "
        f"{report['load_1min_end']}.",
        "",
    ]
    pgd = report.get("pgd")
    if pgd:
        lines += [
            "## PGD and FGSM",
            "",
            f"`{pgd['model']}` on the first {pgd['n']} Fashion-MNIST test images (clean accuracy "
            f"{pgd['clean_accuracy']:.1%}); L-inf eps {pgd['eps']:g}; PGD-{pgd['pgd_steps']} with "
            f"step {pgd['pgd_step_size']:g} and a random start; batch size {pgd['batch_size']}; "
            f"seed {pgd['seed']}. Best of {report['settings']['repeats']} runs after one warm-up, "
            "the contenders taking turns. *images/s* stops when the adversarial examples exist "
            "and *% of floor* compares it with the bare torch loop of the same attack; the "
            "*with eval* columns add the prediction pass on the adversarial examples that robust "
            "accuracy needs (phalanx's `run()` always does it) and compare with the bare loop "
            "plus the same pass. *(medians)* is % of floor computed from the median times "
            "instead of the best: where the two disagree by more than a few points, the "
            "machine was noisy.",
            "",
            "| library | attack | images/s | % of floor | (medians) | with eval, images/s "
            "| with eval, % of floor | robust accuracy |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in pgd["results"]:
            acc = f"{r['robust_accuracy']:.1%}" if "robust_accuracy" in r else "-"
            with_eval = (f"{r['with_eval_images_per_s']:.1f} | "
                         f"{r['with_eval_percent_of_floor']:.1f}%"
                         if r["with_eval_images_per_s"] is not None else "- | -")
            lines.append(f"| {r['library']} | {r['attack']} | {r['images_per_s']:.1f} | "
                         f"{r['percent_of_floor']:.1f}% | {r['percent_of_floor_median']:.1f}% | "
                         f"{with_eval} | {acc} |")
        lines.append("")
    std = report.get("standard")
    if std:
        runs = std.get("runs", 1)
        lines += ["## Standard suite (AutoAttack-style)", "",
                  f"`{std['model']}`, L-inf eps {std['eps']}, MNIST test images: {runs} "
                  f"run(s) of {std['n']} images, run k on images k*{std['n']} to "
                  f"(k+1)*{std['n']}-1 with seed k, every library on the same images with the "
                  "same seed."]
        if "clean_accuracy" in std:
            lines[-1] += f" Clean accuracy {std['clean_accuracy']:.1%}."
        lines.append("")
        if std["results"]:
            lines += ["| library | evaluation | iterations | images | seconds (all runs) | "
                      "robust accuracy (pooled) | robust samples | per run |",
                      "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
            for r in std["results"]:
                per_run = ", ".join(f"{x['robust_accuracy']:.1%} in {x['seconds']:.0f} s"
                                    for x in r.get("runs", []))
                lines.append(
                    f"| {r['library']} | {r['attack']} | {r.get('iterations', '-')} | "
                    f"{r.get('n_images', std['n'])} | {r['seconds']:.1f} | "
                    f"{r['robust_accuracy']:.2%} | {r.get('robust_samples', '-')} | "
                    f"{per_run or '-'} |")
            lines += ["", "The published suite runs APGD-CE, APGD-T and FAB-T for 100 iterations "
                      "each; torchattacks' `AutoAttack(version=\"standard\")` keeps its "
                      "attacks' default of 10, so it is a weaker and cheaper evaluation than "
                      "its name says. Compare like with like: phalanx with diagnostics off "
                      "against the published configuration. The diagnostics (first run only) "
                      "add a PGD-50 sanity attack at a large eps and a prediction-stability "
                      "test.", ""]
        for reason in std["skipped"]:
            lines.append(f"- Skipped: {reason}")
        if std["skipped"]:
            lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=500, help="images for PGD/FGSM (default 500)")
    parser.add_argument("--n-standard", type=int, default=200,
                        help="images per run of the standard suite (default 200)")
    parser.add_argument("--standard-runs", type=int, default=3,
                        help="runs of the standard suite, each on the next --n-standard "
                             "images with the next seed (default 3)")
    parser.add_argument("--no-standard-diagnostics", dest="standard_diagnostics",
                        action="store_false",
                        help="skip the extra phalanx run with diagnostics on")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated, from {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--repeats", type=int, default=10, help="timed runs after one warm-up")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; known: {', '.join(SECTIONS)}")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    report: dict[str, Any] = {
        "schema": 1,
        "benchmark": "evasion",
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python", "benchmarks/evasion.py", *(argv or sys.argv[1:])]),
        "machine": machine_info(torch.get_num_threads()),
        "settings": {"repeats": args.repeats, "timing": "best of repeats after one warm-up; "
                     "contenders interleaved in rotating order", "sections": sections},
        "load_1min_start": load_average(),
    }
    if "pgd" in sections:
        report["pgd"] = pgd_section(args)
    if "standard" in sections:
        report["standard"] = standard_section(args)
    report["load_1min_end"] = load_average()

    args.out.mkdir(parents=True, exist_ok=True)
    previous = args.out / "evasion.json"
    if previous.exists():  # keep the sections this run did not redo
        try:
            old = json.loads(previous.read_text())
        except ValueError:
            old = {}
        for section in SECTIONS:
            if section not in report and section in old:
                report[section] = old[section]
                report.setdefault("kept_from_earlier_run", []).append(
                    {"section": section, "created": old.get("created")})
    (args.out / "evasion.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "evasion.md").write_text(markdown(report))
    log(f"wrote {args.out / 'evasion.json'} and {args.out / 'evasion.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

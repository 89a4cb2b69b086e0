"""The demo: the main job end to end on bundled data, with no arguments.

It loads (training on first use) two reference MNIST CNNs from the zoo, one trained normally
and one adversarially trained with PGD, evaluates the robustness of each against FGSM and PGD
over a range of L-inf budgets, and returns the results for the caller to store and report:
the standard model collapses at budgets where the robust one holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from phalanx.core.context import Context
from phalanx.core.results import Result
from phalanx.errors import DataNotFoundError

#: Budgets shown in the demo: from barely visible to the standard MNIST 0.3.
DEMO_EPS = (0.05, 0.1, 0.15, 0.2, 0.3)


@dataclass(frozen=True)
class DemoPlan:
    """What the demo evaluates.

    Args:
        models: Zoo model names, evaluated one after the other.
        dataset: Zoo dataset name.
        eps: L-inf budgets.
        n: Test samples evaluated.
    """

    models: tuple[str, ...] = ("mnist-cnn", "mnist-cnn-pgdat")
    dataset: str = "mnist"
    eps: tuple[float, ...] = DEMO_EPS
    n: int = 500


#: Fallback when MNIST is not installed: sklearn's digits always are.
FALLBACK = DemoPlan(models=("digits-mlp",), dataset="digits", eps=(0.05, 0.1, 0.2, 0.3), n=360)


def config(plan: DemoPlan) -> dict[str, object]:
    """The run configuration recorded for a plan."""
    return {"models": [f"zoo:{m}" for m in plan.models], "data": f"zoo:{plan.dataset}",
            "eps": list(plan.eps),
            "n": plan.n, "suite": "quick", "norm": "linf"}


def choose_plan(context: Context) -> DemoPlan:
    """MNIST when its data is installed, else sklearn digits (with a message saying so)."""
    from phalanx.zoo import load_dataset

    plan = DemoPlan()
    try:
        load_dataset(plan.dataset, "test")
    except DataNotFoundError as exc:
        context.message(f"{exc}; running the demo on sklearn digits instead", level="warning")
        return FALLBACK
    return plan


def run_demo(
    plan: DemoPlan, *, context: Context, on_result: Callable[[Result], None] | None = None
) -> list[Result]:
    """Run the demo plan; each result goes to ``on_result`` as soon as it is finished."""
    from phalanx.evasion.evaluate import RobustnessCheck
    from phalanx.supplychain.scan import ModelScanCheck
    from phalanx.zoo import load_dataset, load_model
    from phalanx.zoo.models import get_spec

    data = load_dataset(plan.dataset, "test")
    check = RobustnessCheck(eps=plan.eps, norm="linf", suite="quick", n=plan.n,
                            seed=context.seed or 0)
    results = []
    # Train what is not cached yet, then scan the weight files before the evaluation uses
    # them: the supply-chain check on the demo's own torch.save checkpoints.
    models = {name: load_model(name, context=context) for name in plan.models}
    scan = ModelScanCheck().run([get_spec(name).path for name in plan.models], context=context)
    scan.target = "zoo weight files"
    if on_result is not None:
        on_result(scan)
    results.append(scan)
    for name, model in models.items():
        result = check.run(model, data, context=context)
        result.target = f"zoo:{name} on zoo:{plan.dataset}"
        if on_result is not None:
            on_result(result)
        results.append(result)
    return results

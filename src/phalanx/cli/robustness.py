"""``phalanx robustness``: a standardised robustness evaluation of one model."""

from __future__ import annotations

from pathlib import Path

import typer

from phalanx.cli._common import (
    Format,
    exit_code,
    make_context,
    open_store,
    parse_fail_on,
    state,
    summarise_robustness,
    write_output,
)
from phalanx.core.run import Run
from phalanx.errors import InputError


def _floats(value: str, what: str) -> list[float]:
    try:
        out = [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{what} must be comma-separated numbers, got {value!r}") from None
    if not out:
        raise InputError(f"{what} needs at least one value")
    return out


def robustness(
    ctx: typer.Context,
    model: str = typer.Option(..., "--model", "-m", envvar="PHALANX_MODEL",
                              help="zoo:NAME, module:factory, or a TorchScript/ONNX/scanned "
                                   "scikit-learn pickle file."),
    data: str = typer.Option(..., "--data", "-d", envvar="PHALANX_DATA",
                             help="zoo:NAME or an .npz file with arrays x and y."),
    norm: str = typer.Option("linf", "--norm", envvar="PHALANX_NORM", help="linf or l2."),
    eps: str = typer.Option("0.1,0.2,0.3", "--eps", envvar="PHALANX_EPS",
                            help="Comma-separated budgets."),
    suite: str = typer.Option("quick", "--suite", envvar="PHALANX_SUITE",
                              help="quick, standard, blackbox or custom."),
    attacks: str | None = typer.Option(None, "--attacks", envvar="PHALANX_ATTACKS",
                                       help="Attack names for --suite custom, e.g. pgd,square."),
    n: int = typer.Option(1000, "--n", envvar="PHALANX_N", help="Samples to evaluate."),
    batch_size: int = typer.Option(256, "--batch-size", envvar="PHALANX_BATCH_SIZE"),
    seed: int = typer.Option(0, "--seed", envvar="PHALANX_SEED"),
    bounds: str = typer.Option("0,1", "--bounds", envvar="PHALANX_BOUNDS",
                               help="Valid input range low,high."),
    fmt: Format | None = typer.Option(None, "--format", "-f", envvar="PHALANX_FORMAT",
                                      help="Also render the run as a report."),
    output: Path | None = typer.Option(None, "--output", "-o",
                                       help="Write the report here (default: stdout)."),
    fail_on: str = typer.Option("high", "--fail-on", envvar="PHALANX_FAIL_ON",
                                help="Exit 1 if a finding reaches this severity (or none)."),
) -> None:
    """Evaluate a model's robustness to adversarial examples over a range of budgets."""
    from phalanx.audit.targets import load_data, load_target
    from phalanx.evasion.evaluate import RobustnessCheck

    st = state(ctx)
    threshold = parse_fail_on(fail_on)
    eps_values = _floats(eps, "--eps")
    low_high = _floats(bounds, "--bounds")
    if len(low_high) != 2 or low_high[0] >= low_high[1]:
        raise InputError(f"--bounds must be low,high with low < high, got {bounds!r}")
    check = RobustnessCheck(
        eps=tuple(eps_values), norm=norm, suite=suite, n=n, batch_size=batch_size, seed=seed,
        attacks=tuple(a.strip() for a in attacks.split(",")) if attacks else None,
    )
    check.check_params()  # every bad option at once, before anything loads
    if fmt is None and output is not None:
        raise InputError("-o needs --format")
    if output is not None and not output.parent.exists():
        raise InputError(f"directory {output.parent} does not exist")
    context, sink = make_context(st, seed)
    dataset = load_data(data)
    target = load_target(model, input_shape=tuple(dataset.x.shape[1:]),
                         bounds=(low_high[0], low_high[1]), context=context)
    run = Run(command="robustness", config={"model": model, "data": data} | check.get_params())
    with open_store(st) as store:
        with sink.active(), store.record(run) as recorder:
            result = check.run(target, (dataset.x, dataset.y), context=context)
            result.target = f"{model} on {dataset.name}"
            recorder.add(result)
        run = store.get_run(run.id)
    if fmt is not None:
        from phalanx.report import render

        write_output(render(run, fmt.value), output)
    if not st.quiet:
        summarise_robustness(st, run)
    raise typer.Exit(exit_code(run, threshold))

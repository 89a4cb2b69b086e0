"""``phalanx demo``: the main job end to end on bundled data, with no arguments."""

from __future__ import annotations

from pathlib import Path

import typer

from phalanx.cli._common import (
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


def demo(
    ctx: typer.Context,
    out_dir: Path = typer.Option(Path("."), "--out-dir", "-d", envvar="PHALANX_OUT_DIR",
                                 help="Where to write phalanx-report.html and .json."),
    seed: int = typer.Option(0, "--seed", envvar="PHALANX_SEED", min=0, help="Random seed."),
    fail_on: str = typer.Option("none", "--fail-on", envvar="PHALANX_FAIL_ON",
                                help="Exit 1 if a finding is at or above this severity "
                                     "(info, low, medium, high, critical, or none)."),
) -> None:
    """Train or load a reference model, evaluate its robustness, store the run and report it."""
    from phalanx.audit.demo import choose_plan, config, run_demo
    from phalanx.report import render

    st = state(ctx)
    threshold = parse_fail_on(fail_on)
    if not out_dir.is_dir():
        raise InputError(f"output directory {out_dir} does not exist")
    context, sink = make_context(st, seed)
    with open_store(st) as store:
        with sink.active():
            plan = choose_plan(context)
            run = Run(command="demo", config=config(plan) | {"seed": seed})
            with store.record(run) as recorder:
                # The recorder stores each result at once and appends it to run.results.
                run_demo(plan, context=context, on_result=recorder.add)
        run = store.get_run(run.id)
    html, js = out_dir / "phalanx-report.html", out_dir / "phalanx-report.json"
    write_output(render(run, "html"), html)
    write_output(render(run, "json"), js)
    if not st.quiet:
        summarise_robustness(st, run)
        st.stderr.print(f"report: [bold]{html}[/] (and {js})")
    raise typer.Exit(exit_code(run, threshold))

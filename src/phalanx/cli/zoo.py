"""``phalanx zoo``: the reference models and datasets, trained and cached on first use."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from phalanx.cli._common import make_context, state

app = typer.Typer(help="Reference models and datasets.", no_args_is_help=True)


@app.command("list")
def list_() -> None:
    """List the zoo's models and datasets."""
    from phalanx.zoo import list_datasets, list_models

    table = Table(title="zoo")
    for col in ("kind", "name", "description"):
        table.add_column(col)
    for name, text in list_models().items():
        table.add_row("model", f"zoo:{name}", text)
    for name, text in list_datasets().items():
        table.add_row("dataset", f"zoo:{name}", text)
    Console().print(table)


@app.command("train")
def train(
    ctx: typer.Context,
    names: list[str] = typer.Argument(..., metavar="NAME...", help="Zoo model names."),
) -> None:
    """Train (or load from the cache) zoo models, so that later runs start at once."""
    from phalanx.zoo import load_model

    st = state(ctx)
    context, sink = make_context(st)
    with sink.active():
        for name in names:
            model = load_model(name.removeprefix("zoo:"), context=context)
            st.say(f"zoo:{name.removeprefix('zoo:')} ready ({type(model).__name__})")

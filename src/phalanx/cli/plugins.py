"""``phalanx plugins``: what is registered (read from entry points, importing nothing)."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from phalanx.core.registry import FAMILIES, list_plugins
from phalanx.errors import InputError

app = typer.Typer(help="List registered plugins.", no_args_is_help=True)


@app.command("list")
def list_(
    family: str | None = typer.Option(None, "--family", "-f",
                                      help=f"Only one family: {', '.join(FAMILIES)}."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List every registered attack, check, scanner and reporter."""
    if family is not None and family not in FAMILIES:
        raise InputError(f"unknown plugin family {family!r}",
                         hint=f"choose one of {', '.join(FAMILIES)}")
    found = list_plugins(family)
    if as_json:
        typer.echo(json.dumps([p.__dict__ for p in found], indent=2))
        return
    table = Table(title="phalanx plugins")
    for col in ("family", "name", "implementation", "package"):
        table.add_column(col)
    for p in found:
        table.add_row(p.family, p.name, p.target, p.distribution)
    Console().print(table)

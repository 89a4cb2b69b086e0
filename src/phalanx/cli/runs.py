"""``phalanx runs``: the runs kept in the store."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from phalanx.cli._common import SEVERITY_STYLE, open_store, state

app = typer.Typer(help="List and inspect stored runs.", no_args_is_help=True)


def _when(value: object) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if hasattr(value, "strftime") else "-"


@app.command("list")
def list_(
    ctx: typer.Context,
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="How many runs, newest first."),
    command: str | None = typer.Option(None, "--command", help="Only runs of this command."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List recent runs, newest first."""
    with open_store(state(ctx)) as store:
        summaries = store.list_runs(limit=limit, command=command)
    if as_json:
        rows = [{"id": s.id, "command": s.command, "status": s.status,
                 "started_at": s.started_at.isoformat() if s.started_at else None,
                 "findings": s.n_findings,
                 "max_severity": s.max_severity.label if s.max_severity is not None else None}
                for s in summaries]
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="runs")
    for col in ("id", "started (UTC)", "command", "status", "results", "findings", "worst"):
        table.add_column(col)
    for s in summaries:
        worst = s.max_severity
        table.add_row(
            s.id[:12], _when(s.started_at), s.command, str(getattr(s.status, "value", s.status)),
            str(s.n_results), str(s.n_findings),
            f"[{SEVERITY_STYLE[worst]}]{worst.label}[/]" if worst is not None else "-",
        )
    Console().print(table)


@app.command("show")
def show(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., metavar="RUN", help="Run id or a unique prefix."),
) -> None:
    """Show one run: its results, metrics and findings."""
    with open_store(state(ctx)) as store:
        run = store.get_run(run_id)
    out = Console()
    out.print(f"[bold]run {run.id}[/]  {run.command}  {run.status.value}  "
              f"started {_when(run.started_at)} UTC")
    for result in run.results:
        out.print(f"\n[bold]{result.title or result.check}[/]  {result.target}")
        metrics = Table(show_header=True)
        for col in ("metric", "labels", "value", "95% CI"):
            metrics.add_column(col)
        for m in result.metrics:
            if m.unit == "s":
                continue
            labels = ", ".join(f"{k}={v}" for k, v in m.labels.items())
            ci = f"[{m.lower:.3f}, {m.upper:.3f}]" if m.lower is not None and m.upper is not None else ""
            metrics.add_row(m.name, labels, f"{m.value:.4g}", ci)
        out.print(metrics)
    findings = run.findings
    out.print(f"\n[bold]{len(findings)} findings[/]")
    for f in findings:
        out.print(f"  [{SEVERITY_STYLE[f.severity]}]{f.severity.label:>8}[/]  {f.title}",
                  markup=True, highlight=False)

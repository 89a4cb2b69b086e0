"""``phalanx report``: render a stored run in any format."""

from __future__ import annotations

from pathlib import Path

import typer

from phalanx.cli._common import Format, open_store, state, write_output


def report(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., metavar="RUN", help="Run id or a unique prefix."),
    fmt: Format = typer.Option(Format.html, "--format", "-f", envvar="PHALANX_FORMAT",
                               help="Report format."),
    output: Path | None = typer.Option(None, "--output", "-o",
                                       help="Write to this file (default: stdout)."),
) -> None:
    """Render a stored run as HTML, JSON, Markdown, SARIF or JUnit XML."""
    from phalanx.report import render

    st = state(ctx)
    with open_store(st) as store:
        run = store.get_run(run_id)
    write_output(render(run, fmt.value), output)
    if output is not None:
        st.say(f"wrote {output}")

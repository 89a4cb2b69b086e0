"""``phalanx scan``: scan model files statically; nothing they contain is loaded or run."""

from __future__ import annotations

from pathlib import Path

import typer

from phalanx.cli._common import (
    SEVERITY_STYLE,
    STORE_HELP,
    State,
    exit_code,
    make_context,
    parse_fail_on,
    recording,
    say_stored,
    state,
    write_output,
)
from phalanx.core.run import Run
from phalanx.errors import InputError

_FORMATS = ("table", "json", "sarif", "md", "html", "junit")


def scan(
    ctx: typer.Context,
    paths: list[Path] = typer.Argument(..., help="Files and directories (scanned recursively).",
                                       show_default=False),
    fmt: str = typer.Option("table", "--format", "-f", envvar="PHALANX_FORMAT",
                            help="table (a rich table on a terminal, tab-separated lines "
                                 "otherwise), json, sarif, md, html or junit."),
    output: Path | None = typer.Option(None, "--output", "-o",
                                       help="Write the report here (default: stdout)."),
    fail_on: str = typer.Option("medium", "--fail-on", envvar="PHALANX_FAIL_ON",
                                help="Exit 1 if a finding reaches this severity (or none)."),
    policy: Path | None = typer.Option(None, "--policy", envvar="PHALANX_SCAN_POLICY",
                                       help="Pickle import policy (YAML) instead of the "
                                            "bundled allowlist."),
    ecosystems: str | None = typer.Option(None, "--ecosystems",
                                          help="Pickle allowlists to apply, e.g. "
                                               "python,numpy,sklearn (default: all)."),
    store: bool = typer.Option(True, "--store/--no-store", help=STORE_HELP),
) -> None:
    """Scan model files without loading them: formats are detected from content, pickles
    are checked against an allowlist of imports, containers are opened recursively."""
    from phalanx.supplychain.scan import ModelScanCheck

    st = state(ctx)
    threshold = parse_fail_on(fail_on)
    fmt = fmt.strip().lower()
    if fmt not in _FORMATS:
        raise InputError(f"unknown --format {fmt!r}; expected one of {', '.join(_FORMATS)}")
    if output is not None and not output.parent.exists():
        raise InputError(f"directory {output.parent} does not exist")
    if policy is not None and not policy.is_file():
        raise InputError(f"policy file {policy} does not exist")
    chosen = tuple(e.strip() for e in ecosystems.split(",") if e.strip()) if ecosystems else None
    check = ModelScanCheck(policy=str(policy) if policy else None, ecosystems=chosen)
    if chosen is not None:
        from phalanx.supplychain.scan import load_policy

        load_policy(check.policy).resolve_ecosystems(chosen)  # unknown names fail here
    context, sink = make_context(st, None)
    run = Run(command="scan", config={"paths": [str(p) for p in paths]} | check.get_params())
    with recording(st, run, store=store) as keep, sink.active():
        keep(check.run(paths, context=context))
    if fmt == "table":
        _table(st, run, output)
    else:
        from phalanx.report import render

        write_output(render(run, fmt), output)
    if not st.quiet:
        _summary(st, run, stored=store)
    raise typer.Exit(exit_code(run, threshold))


def _table(st: State, run: Run, output: Path | None) -> None:
    """Findings as a rich table on a terminal; one tab-separated line each otherwise."""
    import sys

    from rich.console import Console
    from rich.table import Table

    findings = run.findings
    rows = [(f.severity, str(f.evidence.get("file", "")), str(f.evidence.get("rule", "")),
             f.title) for f in findings]
    if output is not None or not sys.stdout.isatty():
        lines = "".join(f"{sev.label}\t{file}\t{rule}\t{title}\n"
                        for sev, file, rule, title in rows)
        if output is not None:
            write_output(lines.encode(), output)
        else:
            sys.stdout.write(lines)
        return
    if not rows:
        return
    table = Table(title="Model-file scan", title_justify="left")
    table.add_column("severity")
    table.add_column("file", overflow="fold")
    table.add_column("rule")
    table.add_column("finding", overflow="fold")
    for sev, file, rule, title in rows:
        table.add_row(f"[{SEVERITY_STYLE[sev]}]{sev.label}[/]", file, rule, title)
    Console(highlight=False).print(table)


def _summary(st: State, run: Run, *, stored: bool) -> None:
    result = run.results[0] if run.results else None
    if result is None:
        return
    files = int(result.metric("files_scanned").value)
    members = int(result.metric("members_scanned").value)
    size = result.metric("bytes_scanned").value / 1e6
    seconds = result.metric("scan_seconds").value
    counts = [(f"{n} {s.label}", SEVERITY_STYLE[s])
              for s, n in sorted(run.severity_counts().items(), reverse=True) if n]
    parts: list[str | tuple[str, str]] = [
        f"scanned {files} file(s) and {members} member(s), {size:.1f} MB in {seconds:.2f} s; "
        "findings: "]
    for i, count in enumerate(counts):
        parts += [", ", count] if i else [count]
    st.line(*parts if counts else [*parts, "none"])  # one line in a CI log, never cut
    say_stored(st, run, stored=stored)

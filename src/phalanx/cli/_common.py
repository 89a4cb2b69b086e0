"""What every command shares: the console, progress drawing, exit codes and store access."""

from __future__ import annotations

import enum
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from phalanx.core.context import Context
from phalanx.core.events import Event, Message
from phalanx.core.events import Progress as ProgressEvent
from phalanx.core.findings import Severity
from phalanx.core.results import Result, utcnow
from phalanx.core.run import Run, RunStatus
from phalanx.errors import InputError, PhalanxError, StoreError

if TYPE_CHECKING:  # rich is imported where it draws: a piped `phalanx scan` needs little of it
    from rich.console import Console
    from rich.progress import Progress, TaskID

EXIT_OK, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2


class Format(str, enum.Enum):
    """Report formats, each mapped to a reporter plugin."""

    html = "html"
    json = "json"
    md = "md"
    sarif = "sarif"
    junit = "junit"


@dataclass
class State:
    """Options shared by every command (the Typer context object)."""

    quiet: bool = False
    debug: bool = False
    db: str | None = None
    _stderr: Console | None = field(default=None, repr=False, compare=False)

    @property
    def stderr(self) -> Console:
        """The rich console on stderr (made on first use)."""
        if self._stderr is None:
            from rich.console import Console

            self._stderr = Console(stderr=True, highlight=False)
        return self._stderr

    @property
    def interactive(self) -> bool:
        """Draw progress bars only on a terminal, and never when asked to be quiet."""
        return not self.quiet and sys.stderr.isatty() and os.environ.get("CI") != "true"

    def say(self, text: str) -> None:
        """A human line on stderr (suppressed by --quiet)."""
        if not self.quiet:
            self.stderr.print(text)

    def line(self, *parts: str | tuple[str, str]) -> None:
        """One line on stderr, never wrapped, from plain strings and ``(text, style)`` pairs
        (whatever ``--quiet`` says: the caller decides).

        Text is taken literally (no rich markup), so names from files need no escaping. Off
        a terminal, where rich would print no colours anyway, the line is written directly:
        a `phalanx scan` in a CI step does not import rich for its summary line (about 30
        ms of its start-up). ``FORCE_COLOR`` or ``TTY_COMPATIBLE`` keep rich in charge.
        """
        if self._stderr is None and not _rich_wanted():
            sys.stderr.write("".join(p if isinstance(p, str) else p[0] for p in parts) + "\n")
            sys.stderr.flush()
            return
        from rich.text import Text

        self.stderr.print(Text.assemble(*parts), soft_wrap=True)


def _rich_wanted() -> bool:
    """Whether stderr gets rich's rendering: a terminal, or colours forced by the user."""
    if os.environ.get("FORCE_COLOR") or os.environ.get("TTY_COMPATIBLE", "") not in ("", "0"):
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


def state(ctx: typer.Context) -> State:
    """The shared options of the running command."""
    obj = ctx.find_root().obj
    if not isinstance(obj, State):
        obj = State()
        ctx.find_root().obj = obj
    return obj


class ProgressSink:
    """Draws library progress events as rich progress bars on stderr."""

    def __init__(self, st: State) -> None:
        self._state = st
        self._bars: Progress | None = None
        self._tasks: dict[str, TaskID] = {}

    def __call__(self, event: Event) -> None:
        if isinstance(event, Message):
            if event.level == "warning":
                self._console().print(f"[yellow]warning:[/] {event.text}")
            elif not self._state.quiet:
                self._console().print(f"[dim]{event.text}[/]")
            return
        if not isinstance(event, ProgressEvent) or self._bars is None:
            return
        task = self._tasks.get(event.task)
        if task is None:
            task = self._bars.add_task(event.description, total=event.total)
            self._tasks[event.task] = task
        self._bars.update(task, completed=event.completed, total=event.total,
                          description=event.description)
        if event.finished:
            self._bars.remove_task(task)
            del self._tasks[event.task]

    def _console(self) -> Console:
        return self._bars.console if self._bars is not None else self._state.stderr

    @contextmanager
    def active(self) -> Iterator[ProgressSink]:
        """Show bars while the block runs (only on a terminal)."""
        if not self._state.interactive:
            yield self
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bars = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), console=self._state.stderr,
            transient=True,
        )
        with self._bars:
            yield self
        self._bars = None


def make_context(st: State, seed: int | None = 0) -> tuple[Context, ProgressSink]:
    """A library context whose events are drawn by the CLI."""
    sink = ProgressSink(st)
    return Context(events=sink, seed=seed), sink


def parse_fail_on(value: str) -> Severity | None:
    """``--fail-on`` value: a severity name, or ``none`` to never fail on findings."""
    if value.strip().lower() == "none":
        return None
    try:
        return Severity.parse(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def exit_code(run: Run, fail_on: Severity | None) -> int:
    """0, or 1 when a finding reaches the threshold."""
    return EXIT_OK if fail_on is None else run.exit_code(fail_on)


def write_output(data: bytes, output: Path | None) -> None:
    """Write ``data`` to ``output`` atomically, or to stdout when no file is given."""
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    if output.is_dir():
        raise InputError(f"{output} is a directory", hint="give a file name with -o")
    if not output.parent.exists():
        raise InputError(f"directory {output.parent} does not exist")
    tmp = output.with_name(f".{output.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, output)


def open_store(st: State) -> Any:
    """The run store named by ``--db`` / ``PHALANX_DB`` (SQLite in the user data dir by default)."""
    from phalanx.store import Store

    return Store.open(st.db)


#: Help of the ``--store/--no-store`` option every command that makes a run has.
STORE_HELP = "Keep the run in the run store (default) or not."


@contextmanager
def recording(st: State, run: Run, *, store: bool) -> Iterator[Callable[[Result], None]]:
    """Record ``run`` while the block runs; the block hands each result to the function this
    yields (a result without times gets the block's start and the moment it is handed over).
    With ``store`` the run store is opened first, so a store that cannot be reached fails the
    command before any work is done; the run is then written as it progresses.

    A block that fails on bad input (any :class:`PhalanxError` but a store error: a missing
    file, an unusable key, a malformed requirements file) leaves nothing in the store, as
    every exit-2 error must; an unexpected exception leaves the run marked ``failed``, and an
    interruption leaves it ``interrupted`` with what it finished. Raise the command's exit
    code after the block, not inside it.
    """
    entered = utcnow()

    def timed(result: Result) -> Result:
        if result.started_at is not None:
            return result  # a check that timed itself
        return replace(result, started_at=entered, finished_at=result.finished_at or utcnow())

    if not store:
        yield lambda result: run.results.append(timed(result))
        run.status, run.finished_at = RunStatus.COMPLETED, utcnow()
        return
    with open_store(st) as db:
        try:
            with db.record(run) as recorder:
                yield lambda result: recorder.add(timed(result))
        except PhalanxError as exc:
            if not isinstance(exc, StoreError):
                with suppress(PhalanxError):
                    db.delete_run(run.id)
            raise


def say_stored(st: State, run: Run, *, stored: bool) -> None:
    """The line that says where the run went (nothing with ``--quiet`` or ``--no-store``)."""
    if stored and not st.quiet:
        st.line(f"run {run.id[:12]} stored ({run.status.value})")


SEVERITY_STYLE = {
    Severity.CRITICAL: "bold white on red",
    Severity.HIGH: "bold red",
    Severity.MEDIUM: "yellow",
    Severity.LOW: "cyan",
    Severity.INFO: "dim",
}


def summarise_robustness(st: State, run: Run) -> None:
    """Robust accuracy per eps and attack, the finding counts and where the report is."""
    from rich.table import Table

    for result in run.results:
        rates = [m for m in result.metrics if m.name == "robust_accuracy"]
        if not rates:
            continue
        attacks = list(dict.fromkeys(str(m.labels["attack"]) for m in rates))
        table = Table(title=f"{result.title}: {result.target}", title_justify="left")
        table.add_column("eps", justify="right")
        for attack in attacks:
            table.add_column(attack, justify="right")
        clean = result.metric("clean_accuracy").value
        table.add_row("0 (clean)", *[f"{clean:.1%}"] * len(attacks))
        for eps in sorted({float(m.labels["eps"]) for m in rates}):
            cells = [f"{result.metric('robust_accuracy', eps=eps, attack=a).value:.1%}"
                     for a in attacks]
            table.add_row(f"{eps:g}", *cells)
        st.stderr.print(table)
    counts = run.severity_counts()
    parts = [f"[{SEVERITY_STYLE[s]}]{n} {s.label}[/]"
             for s, n in sorted(counts.items(), reverse=True) if n]
    st.stderr.print(f"findings: {', '.join(parts) if parts else 'none'}")
    st.stderr.print(f"run {run.id[:12]} stored ({run.status.value})")

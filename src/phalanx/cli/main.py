"""The ``phalanx`` entry point: global options, error handling and exit codes.

Exit codes: 0 nothing at or above the severity threshold; 1 findings at or above it;
2 usage or input error. Errors are one line on stderr; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Sequence
from typing import Any

import typer
import typer.main

from phalanx import __version__
from phalanx.cli._common import EXIT_ERROR, State
from phalanx.errors import PhalanxError


def _click_types(name: str) -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = []
    for module in ("typer", "typer.exceptions", "typer._click.exceptions", "click.exceptions"):
        # Only what importing Typer loaded: the click it uses, vendored or not.
        mod = sys.modules.get(module)
        cls = getattr(mod, name, None)
        if isinstance(cls, type) and issubclass(cls, BaseException) and cls not in found:
            found.append(cls)
    return tuple(found)

# Typer re-exports click's exceptions in some versions and vendors its own in others.
_EXIT: tuple[type[BaseException], ...] = _click_types("Exit")
_ABORT: tuple[type[BaseException], ...] = _click_types("Abort")
_USAGE: tuple[type[BaseException], ...] = _click_types("ClickException")

app = typer.Typer(
    name="phalanx",
    help="Attack, harden and audit AI systems.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"phalanx {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    ctx: typer.Context,
    quiet: bool = typer.Option(False, "--quiet", "-q", envvar="PHALANX_QUIET",
                               help="No progress bars or summaries; errors only."),
    debug: bool = typer.Option(False, "--debug", envvar="PHALANX_DEBUG",
                               help="Show tracebacks on errors."),
    db: str | None = typer.Option(None, "--db", envvar="PHALANX_DB", show_envvar=True,
                                  help="Run store: any SQLAlchemy URL (default: SQLite in the "
                                       "user data directory)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Attack, harden and audit AI systems."""
    ctx.obj = State(quiet=quiet, debug=debug, db=db)


#: The subcommands in help order: name -> (module, attribute), a Typer app (a command group)
#: or a command function. A command's module is imported, and its click command built, only
#: when that command runs or help lists it: Typer builds a pydantic adapter per parameter,
#: and the command modules import what their work needs (the run store, reports, torch
#: helpers), so building every command would cost `phalanx scan` a large part of its start.
COMMANDS: dict[str, tuple[str, str]] = {
    "robustness": ("phalanx.cli.robustness", "robustness"),
    "report": ("phalanx.cli.report", "report"),
    "demo": ("phalanx.cli.demo", "demo"),
    "scan": ("phalanx.cli.scan", "scan"),
    "sign": ("phalanx.cli.supplychain", "sign"),
    "verify": ("phalanx.cli.supplychain", "verify"),
    "bom": ("phalanx.cli.supplychain", "bom"),
    "deps": ("phalanx.cli.supplychain", "deps"),
    "plugins": ("phalanx.cli.plugins", "app"),
    "runs": ("phalanx.cli.runs", "app"),
    "zoo": ("phalanx.cli.zoo", "app"),
}


def _load_command(name: str) -> Any:
    """Import subcommand ``name`` and build its click command, exactly as registering it on
    the root app would (a Typer app stays a group even with one command)."""
    module, attr = COMMANDS[name]
    target = getattr(importlib.import_module(module), attr)
    holder = typer.Typer(add_completion=False)
    holder.callback()(_no_op)  # a callback keeps the holder a group
    if isinstance(target, typer.Typer):
        holder.add_typer(target, name=name)
    else:
        holder.command(name)(target)
    group: Any = typer.main.get_command(holder)
    return group.commands[name]


def _no_op() -> None:
    """The holder group's callback."""


class _LazyCommands(dict[str, Any]):
    """The root group's command table: every name is listed from the start, and a command
    is built on first lookup (click and Typer reach commands through ``get``, ``[]``,
    ``items`` and ``keys``)."""

    def __getitem__(self, name: str) -> Any:
        command = super().__getitem__(name)
        if command is None:
            command = _load_command(name)
            super().__setitem__(name, command)
        return command

    def get(self, name: str, default: Any = None) -> Any:
        return self[name] if name in self else default  # noqa: SIM401 - [] builds it

    def values(self) -> list[Any]:  # type: ignore[override]
        return [self[name] for name in self]

    def items(self) -> list[tuple[str, Any]]:  # type: ignore[override]
        return [(name, self[name]) for name in self]


@functools.cache
def _command() -> Any:
    """The click command tree, built once (tests and long-lived callers call ``main`` many
    times in one process), with its subcommands built on demand."""
    group: Any = typer.main.get_command(app)
    group.commands = _LazyCommands(dict.fromkeys(COMMANDS))
    return group


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    st = State()
    try:
        code = _command()(args=args, prog_name="phalanx", standalone_mode=False)
    except _EXIT as exc:
        return int(getattr(exc, "exit_code", 0) or 0)
    except _ABORT:
        st.stderr.print("aborted")
        return 130
    except _USAGE as exc:
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx is not None else "phalanx"
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        sys.stderr.write(" ".join(f"error: {message} (see '{where} --help')".split()) + "\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        st.stderr.print("interrupted")
        return 130
    except PhalanxError as exc:
        if debug:
            raise
        sys.stderr.write(_line(exc))
        return EXIT_ERROR
    except Exception as exc:
        if debug:
            raise
        sys.stderr.write(
            f"error: unexpected {type(exc).__name__}: {exc} (rerun with --debug for details)\n"
        )
        return EXIT_ERROR
    return int(code or 0)


def _line(exc: PhalanxError) -> str:
    text = f"error: {exc.message}"
    if exc.hint:
        text += f" ({exc.hint})"
    return " ".join(text.split()) + "\n"


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())

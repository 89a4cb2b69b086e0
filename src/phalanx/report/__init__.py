"""Reports: one run rendered as JSON, HTML, Markdown, SARIF or JUnit XML.

Every format is a :class:`Reporter` plugin registered under the ``phalanx.reporters`` entry
point group, so a third-party format is installed the same way and :func:`render` finds it.

Example:
    >>> from phalanx.report import render
    >>> Path("report.html").write_bytes(render(run, "html"))  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from phalanx.core import Run
from phalanx.core.registry import load_plugin
from phalanx.errors import PluginError, ReportError
from phalanx.report.base import Reporter

if TYPE_CHECKING:
    from phalanx.report.html import HtmlReporter
    from phalanx.report.json_report import SCHEMA_VERSION, JsonReporter
    from phalanx.report.junit import JUnitReporter
    from phalanx.report.markdown import MarkdownReporter
    from phalanx.report.sarif import SarifReporter

# Where each built-in reporter lives. A reporter's module is imported only when that format
# is used: the HTML one pulls in Jinja2 and matplotlib, which a `phalanx scan --format json`
# in CI should not pay for at every start.
_BUILTIN: dict[str, tuple[str, str]] = {
    "json": ("phalanx.report.json_report", "JsonReporter"),
    "html": ("phalanx.report.html", "HtmlReporter"),
    "md": ("phalanx.report.markdown", "MarkdownReporter"),
    "sarif": ("phalanx.report.sarif", "SarifReporter"),
    "junit": ("phalanx.report.junit", "JUnitReporter"),
}
_EXPORTS: dict[str, tuple[str, str]] = {
    attr: (module, attr) for module, attr in _BUILTIN.values()
} | {"SCHEMA_VERSION": ("phalanx.report.json_report", "SCHEMA_VERSION")}


class _Formats(Mapping[str, type[Reporter]]):
    """The built-in formats by name (the names ``phalanx report --format`` accepts), each
    reporter class imported on first access."""

    def __getitem__(self, key: str) -> type[Reporter]:
        module, attr = _BUILTIN[key]
        cls: type[Reporter] = getattr(importlib.import_module(module), attr)
        return cls

    def __iter__(self) -> Iterator[str]:
        return iter(_BUILTIN)

    def __len__(self) -> int:
        return len(_BUILTIN)


#: The built-in formats by name, mapped to their reporter classes (imported on access).
FORMATS: Mapping[str, type[Reporter]] = _Formats()


def __getattr__(name: str) -> Any:
    """The reporter classes and ``SCHEMA_VERSION``, imported when first asked for."""
    if name in _EXPORTS:
        module, attr = _EXPORTS[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

#: Other spellings accepted for the built-in formats.
ALIASES: dict[str, str] = {"markdown": "md", "xml": "junit", "htm": "html"}


def reporter_class(fmt: str) -> type[Reporter]:
    """The reporter class for a format name: built-in, alias, or a registered plugin.

    Raises:
        ReportError: No reporter has that name.
    """
    key = fmt.strip().lower()
    key = ALIASES.get(key, key)
    if key in FORMATS:
        return FORMATS[key]
    try:
        found = load_plugin("reporters", key)
    except PluginError as exc:
        raise ReportError(
            f"unknown report format {fmt!r}", hint=f"choose one of {', '.join(FORMATS)}"
        ) from exc
    if not (isinstance(found, type) and issubclass(found, Reporter)):
        raise ReportError(f"reporter plugin {key!r} is not a phalanx.report.Reporter")
    return found


def render(run: Run, fmt: str, **params: Any) -> bytes:
    """Render ``run`` in the format named ``fmt``.

    Args:
        run: The run to report.
        fmt: ``"json"``, ``"html"``, ``"md"``, ``"sarif"``, ``"junit"`` (or an alias such as
            ``"markdown"``, or the name of a third-party reporter plugin).
        **params: Reporter parameters, e.g. ``fail_on="high"`` for JUnit.

    Returns:
        The report's bytes (UTF-8 for every text format).

    Raises:
        ReportError: The format is unknown.
        InvalidParameterError: A parameter is not valid for that reporter.
    """
    cls = reporter_class(fmt)
    try:
        reporter = cls(**params)
    except TypeError as exc:
        raise ReportError(f"bad parameters for the {fmt} report: {exc}") from exc
    reporter.check_params()
    return reporter.render(run)


__all__ = [
    "FORMATS",
    "SCHEMA_VERSION",
    "HtmlReporter",
    "JUnitReporter",
    "JsonReporter",
    "MarkdownReporter",
    "Reporter",
    "SarifReporter",
    "render",
    "reporter_class",
]

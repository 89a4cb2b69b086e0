"""Reports: one run rendered as JSON, HTML, Markdown, SARIF or JUnit XML.

Every format is a :class:`Reporter` plugin registered under the ``phalanx.reporters`` entry
point group, so a third-party format is installed the same way and :func:`render` finds it.

Example:
    >>> from phalanx.report import render
    >>> Path("report.html").write_bytes(render(run, "html"))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from phalanx.core import Run
from phalanx.core.registry import load_plugin
from phalanx.errors import PluginError, ReportError
from phalanx.report.base import Reporter
from phalanx.report.html import HtmlReporter
from phalanx.report.json_report import SCHEMA_VERSION, JsonReporter
from phalanx.report.junit import JUnitReporter
from phalanx.report.markdown import MarkdownReporter
from phalanx.report.sarif import SarifReporter

#: The built-in formats by name (the names ``phalanx report --format`` accepts).
FORMATS: dict[str, type[Reporter]] = {
    "json": JsonReporter,
    "html": HtmlReporter,
    "md": MarkdownReporter,
    "sarif": SarifReporter,
    "junit": JUnitReporter,
}

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

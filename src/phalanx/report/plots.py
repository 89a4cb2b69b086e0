"""Plots drawn from a result's metrics, as inline SVG for the HTML report.

Any check gets plots for free: metrics that share a name and differ by one numeric label
(``eps``, ``queries``, ``epsilon``...) become a line plot of value against that label, one line
per value of the remaining labels (``attack=pgd``, ``attack=square``), with the confidence
interval drawn as a band when the metrics carry ``lower`` and ``upper``.

matplotlib is optional: without it :func:`result_plots` returns nothing and reports render
without plots. It is imported only when a plot is drawn.
"""

from __future__ import annotations

import io
import itertools
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from phalanx.core import Metric, Result
from phalanx.report._common import clean_text, format_labels

logger = logging.getLogger(__name__)

#: Label keys tried first for the x axis, before any other numeric label.
X_LABEL_PREFERENCE = ("eps", "epsilon", "step", "queries", "budget", "iteration", "epoch")

_MAX_LINES = 8

# matplotlib parses ``$...$`` as mathematics, which fails on arbitrary text; escaping the
# dollar sign keeps every label literal.
_MATH = re.compile(r"\$")


@dataclass(frozen=True)
class Series:
    """One line of a plot: points sorted by x, with optional interval ends."""

    label: str
    x: tuple[float, ...]
    y: tuple[float, ...]
    lower: tuple[float, ...] | None
    upper: tuple[float, ...] | None


@dataclass(frozen=True)
class PlotSpec:
    """What to draw for one metric name, before any drawing library is involved."""

    metric: str
    x_label: str
    unit: str
    series: tuple[Series, ...]

    @property
    def title(self) -> str:
        """The plot title: the metric name against the x label."""
        return f"{_humanise(self.metric)} vs {self.x_label}"


@dataclass(frozen=True)
class Plot:
    """A drawn plot: an inline ``<svg>`` element and a caption."""

    title: str
    svg: str


def _humanise(name: str) -> str:
    text = name.replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _x_key(metrics: Sequence[Metric]) -> str | None:
    """The label that is numeric in every metric and takes at least two values."""
    keys = set(metrics[0].labels)
    for m in metrics[1:]:
        keys &= set(m.labels)
    numeric = [
        k
        for k in keys
        if all(_number(m.labels[k]) is not None for m in metrics)
        and len({_number(m.labels[k]) for m in metrics}) >= 2
    ]
    if not numeric:
        return None
    preferred = [k for k in X_LABEL_PREFERENCE if k in numeric]
    return preferred[0] if preferred else sorted(numeric)[0]


def plot_specs(result: Result) -> list[PlotSpec]:
    """The plots a result's metrics call for (pure data; no matplotlib needed)."""
    by_name: dict[str, list[Metric]] = {}
    for m in result.metrics:
        if _number(m.value) is not None:
            by_name.setdefault(m.name, []).append(m)
    specs: list[PlotSpec] = []
    for name, metrics in by_name.items():
        if len(metrics) < 2:
            continue
        x_key = _x_key(metrics)
        if x_key is None:
            continue
        groups: dict[str, list[Metric]] = {}
        for m in metrics:
            rest = {k: v for k, v in m.labels.items() if k != x_key}
            groups.setdefault(format_labels(rest), []).append(m)
        series: list[Series] = []
        for label, members in itertools.islice(groups.items(), _MAX_LINES):
            points = sorted(members, key=lambda m: float(m.labels[x_key]))
            has_ci = all(
                _number(m.lower) is not None and _number(m.upper) is not None for m in points
            )
            series.append(
                Series(
                    label=label or name,
                    x=tuple(float(m.labels[x_key]) for m in points),
                    y=tuple(float(m.value) for m in points),
                    lower=tuple(float(m.lower) for m in points) if has_ci else None,  # type: ignore[arg-type]
                    upper=tuple(float(m.upper) for m in points) if has_ci else None,  # type: ignore[arg-type]
                )
            )
        unit = next((m.unit for m in metrics if m.unit), "")
        specs.append(PlotSpec(metric=name, x_label=x_key, unit=unit, series=tuple(series)))
    return sorted(specs, key=_reading_order)


def _reading_order(spec: PlotSpec) -> int:
    """What a reader looks for first: accuracies, then other measures, then timings."""
    if "accuracy" in spec.metric:
        return 0
    if spec.unit in ("s", "seconds") or spec.metric.endswith(("_seconds", "_s")):
        return 2
    return 1


def _mpl_text(text: str) -> str:
    """Text matplotlib shows literally (no mathtext, no legend-hiding leading underscore)."""
    text = _MATH.sub(r"\$", clean_text(text).replace("\n", " "))
    if len(text) > 60:
        text = text[:57] + "..."
    return " " + text if text.startswith("_") else text


_PROLOG = re.compile(r"<\?xml.*?\?>|<!DOCTYPE.*?>|<metadata>.*?</metadata>", re.DOTALL)
_ID = re.compile(r'\bid="([^"]+)"')


def _inline_svg(svg: str, prefix: str) -> str:
    """Make a matplotlib SVG file fit inside an HTML page.

    Drops the XML prolog, doctype and RDF metadata, and gives every ``id`` a per-plot prefix
    so that two plots on one page never share an id (clip paths would cross-wire).
    """
    svg = _PROLOG.sub("", svg).strip()
    ids = set(_ID.findall(svg))
    for ident in sorted(ids, key=len, reverse=True):
        svg = svg.replace(f'id="{ident}"', f'id="{prefix}{ident}"')
        svg = svg.replace(f"url(#{ident})", f"url(#{prefix}{ident})")
        svg = svg.replace(f'href="#{ident}"', f'href="#{prefix}{ident}"')
    return svg


# A colour-blind-safe palette (Okabe and Ito, 2008).
_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")


def draw(spec: PlotSpec, *, prefix: str = "plot-") -> Plot:
    """Draw one plot to inline SVG.

    Uses matplotlib's object-oriented :class:`~matplotlib.figure.Figure`, never ``pyplot``,
    so that no global backend or figure registry is touched: drawing works headless and leaves
    a caller's interactive matplotlib session alone.

    Raises:
        ImportError: matplotlib is not installed.
    """
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    style: dict[Any, Any] = {
        "svg.fonttype": "none",  # real <text> elements: small, crisp, selectable
        "svg.hashsalt": "phalanx",  # stable ids, so the same run renders the same bytes
        "font.size": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
    }
    with matplotlib.rc_context(style):
        fig = Figure(figsize=(5.6, 3.3), dpi=100, layout="constrained")
        ax = fig.add_subplot()
        for colour, series in zip(itertools.cycle(_COLOURS), spec.series):
            ax.plot(
                series.x, series.y, marker="o", markersize=4, linewidth=1.6, color=colour,
                label=_mpl_text(series.label),
            )
            if series.lower is not None and series.upper is not None:
                ax.fill_between(series.x, series.lower, series.upper, color=colour, alpha=0.15,
                                linewidth=0)
        ax.set_title(_mpl_text(spec.title), fontsize=10, loc="left")
        ax.set_xlabel(_mpl_text(spec.x_label))
        y_label = _humanise(spec.metric) + (f" ({spec.unit})" if spec.unit else "")
        ax.set_ylabel(_mpl_text(y_label))
        ax.grid(True, color="#e5e7eb", linewidth=0.6)
        has_ci = any(s.lower is not None for s in spec.series)
        if len(spec.series) > 1 or has_ci:
            handles, labels = ax.get_legend_handles_labels()
            if has_ci:
                handles.append(Patch(facecolor="#6b7280", alpha=0.25, linewidth=0))
                labels.append("95% CI")
            ax.legend(handles, labels, frameon=False, fontsize=8)
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    return Plot(title=spec.title, svg=_inline_svg(buffer.getvalue(), prefix))


def result_plots(result: Result, *, prefix: str = "plot-") -> list[Plot]:
    """Every plot for ``result``; empty when matplotlib is not installed.

    Args:
        result: The result whose metrics to plot.
        prefix: Prepended to SVG element ids; make it unique per result on one page.
    """
    specs = plot_specs(result)
    if not specs:
        return []
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        logger.info("matplotlib is not installed; rendering the report without plots")
        return []
    plots: list[Plot] = []
    for index, spec in enumerate(specs):
        try:
            plots.append(draw(spec, prefix=f"{prefix}{index}-"))
        except (ValueError, RuntimeError, OverflowError) as exc:
            # A plot is a convenience; the metrics table still carries the numbers.
            logger.warning("could not plot %s: %s", spec.metric, exc)
    return plots

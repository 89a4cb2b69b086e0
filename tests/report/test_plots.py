"""Plots drawn from metrics: which metrics plot, and safe inline SVG."""

from __future__ import annotations

import sys

import pytest

from phalanx.core import Metric, Result, Run
from phalanx.report.plots import plot_specs, result_plots


def test_specs_from_labelled_metrics(run: Run) -> None:
    specs = plot_specs(run.results[0])
    assert [s.metric for s in specs] == ["robust_accuracy"]
    spec = specs[0]
    assert spec.x_label == "eps"
    assert [s.label for s in spec.series] == ["attack=pgd", "attack=fgsm"]
    assert spec.series[0].x == (0.0, 0.05, 0.1, 0.2, 0.3)
    assert spec.series[0].lower is not None
    assert plot_specs(run.results[1]) == []  # no numeric label to plot against


def test_accuracy_plots_come_first_and_timings_last() -> None:
    def series(name: str, unit: str = "") -> list[Metric]:
        return [Metric(name, v, labels={"eps": e}, unit=unit) for e, v in ((0.1, 1.0), (0.2, 2.0))]

    result = Result(check="c", title="t", target="m", metrics=[
        *series("attack_seconds", "seconds"), *series("queries"),
        *series("robust_accuracy", "fraction")])
    assert [s.metric for s in plot_specs(result)] == [
        "robust_accuracy", "queries", "attack_seconds"]


def test_svg_is_inline_ready(run: Run) -> None:
    pytest.importorskip("matplotlib")
    plots = result_plots(run.results[0], prefix="r1-")
    assert len(plots) == 1
    svg = plots[0].svg
    assert svg.startswith("<svg")
    assert "<?xml" not in svg and "<!DOCTYPE" not in svg and "<metadata" not in svg
    assert "<script" not in svg
    assert 'id="r1-' in svg


def test_hostile_labels_are_escaped_by_matplotlib() -> None:
    pytest.importorskip("matplotlib")
    metrics = [
        Metric("asr", v, labels={"eps": e, "attack": attack})
        for e, v in ((0.1, 0.2), (0.2, 0.5))
        for attack in ("<script>$x$ & _hidden", "_pgd")
    ]
    plots = result_plots(Result(check="c", metrics=metrics))
    assert len(plots) == 1
    assert "<script" not in plots[0].svg
    assert "&lt;script&gt;" in plots[0].svg


def test_no_matplotlib_no_plots(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert result_plots(run.results[0]) == []


def test_importing_report_does_not_import_matplotlib() -> None:
    import subprocess

    code = "import sys, phalanx.report; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

"""The command line end to end: demo, runs, report, exit codes and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from phalanx.cli.main import main

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the demo once for the module, in its own store and output directory."""
    root = tmp_path_factory.mktemp("demo")
    db = f"sqlite:///{root / 'runs.db'}"
    code = main(["--quiet", "--db", db, "demo", "--out-dir", str(root)])
    return {"code": code, "root": root, "db": db,
            "report": json.loads((root / "phalanx-report.json").read_text())}


def test_demo_writes_reports_and_stores_the_run(demo_run: dict[str, Any]) -> None:
    assert demo_run["code"] == 0
    report = demo_run["report"]
    assert report["schema"] == "phalanx.report"
    run = report["run"]
    assert run["command"] == "demo" and run["status"] == "completed"
    scan, standard, robust = run["results"]
    # the zoo's own torch.save checkpoints are scanned first and pass
    assert scan["check"] == "model-scan" and scan["target"] == "zoo weight files"
    files = next(m["value"] for m in scan["metrics"] if m["name"] == "files_scanned")
    assert files == 2  # one torch.save checkpoint per model
    assert not [f for f in scan["findings"] if f["severity"] not in ("info", "low")]
    assert "mnist-cnn on" in standard["target"] and "mnist-cnn-pgdat" in robust["target"]

    def rates(result: dict[str, Any]) -> tuple[float, float]:
        clean = next(m["value"] for m in result["metrics"] if m["name"] == "clean_accuracy")
        worst = min(m["value"] for m in result["metrics"] if m["name"] == "robust_accuracy"
                    and m["labels"]["attack"] == "worst-case")
        return clean, worst

    clean, worst = rates(standard)
    assert clean > 0.9 and worst < 0.2 * clean
    assert any(f["severity"] == "high" for f in standard["findings"])
    clean, worst = rates(robust)
    assert clean > 0.9 and worst > 0.7  # the adversarially trained model holds at eps 0.3
    html = (demo_run["root"] / "phalanx-report.html").read_text()
    assert "<html" in html.lower() and run["id"] in html


def test_runs_list_and_show(demo_run: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--db", demo_run["db"], "runs", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["id"] == demo_run["report"]["run"]["id"]
    assert main(["--db", demo_run["db"], "runs", "show", rows[0]["id"][:8]]) == 0
    assert "robust_accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("fmt", ["html", "json", "md", "sarif", "junit"])
def test_report_renders_every_format(demo_run: dict[str, Any], tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"report.{fmt}"
    run_id = demo_run["report"]["run"]["id"]
    assert main(["-q", "--db", demo_run["db"], "report", run_id[:10], "-f", fmt, "-o", str(out)]) == 0
    assert out.stat().st_size > 200


def test_fail_on_turns_findings_into_exit_code_1(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'r.db'}"
    assert main(["-q", "--db", db, "demo", "-d", str(tmp_path), "--fail-on", "high"]) == 1


def _count_runs(db: str, capsys: pytest.CaptureFixture[str]) -> int:
    capsys.readouterr()
    assert main(["--db", db, "runs", "list", "--json"]) == 0
    return len(json.loads(capsys.readouterr().out))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["report", "ffffffffff"], "no run"),
        (["report", "RUNID", "--format", "pdf"], "--format"),
        (["report", "RUNID", "-o", "/no/such/dir/r.html"], "does not exist"),
        (["demo", "--out-dir", "/no/such/dir"], "does not exist"),
        (["demo", "--fail-on", "severe"], "unknown severity"),
        (["plugins", "list", "--family", "weapons"], "unknown plugin family"),
        (["nonsense"], "No such command"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    demo_run: dict[str, Any], capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    before = _count_runs(demo_run["db"], capsys)
    run_id = demo_run["report"]["run"]["id"]
    args = [run_id if a == "RUNID" else a for a in args]
    assert main(["--db", demo_run["db"], *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert _count_runs(demo_run["db"], capsys) == before  # nothing half-written


def test_unreachable_database_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--db", "postgresql://nobody:secret@127.0.0.1:1/x", "runs", "list"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "secret" not in err and "127.0.0.1" in err


def test_console_script_and_debug_traceback(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("phalanx")
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("phalanx ")
    bad = subprocess.run([str(exe), "--db", f"sqlite:///{tmp_path}/x.db", "report", "zzzz"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    dbg = subprocess.run([str(exe), "--debug", "--db", f"sqlite:///{tmp_path}/x.db", "report",
                          "zzzz"], capture_output=True, text=True)
    assert dbg.returncode != 0 and "Traceback" in dbg.stderr

"""``phalanx scan`` end to end: exit codes, report formats, the store, and bad input.

Malicious pickles are written opcode by opcode; their payload would create a canary file, and
every test that scans one checks that the canary was never created.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from phalanx.cli.main import main
from phalanx.store import Store


def _payload(canary: Path) -> bytes:
    # GLOBAL os.system, then REDUCE with ("touch CANARY",): protocol 0, written by hand.
    return b"cos\nsystem\n(V" + f"touch {canary}".encode() + b"\ntR."


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "weights.pkl").write_bytes(pickle.dumps({"w": [1.0, 2.0]}, protocol=4))
    (clean / "config.json").write_text('{"hidden_size": 8}')
    bad = tmp_path / "bad"
    bad.mkdir()
    canary = tmp_path / "CANARY"
    # Named like a safe format: the scanner must sniff the content, not trust the name.
    (bad / "model.safetensors").write_bytes(_payload(canary))
    (bad / "notes.txt").write_text("nothing to see")
    return {"clean": clean, "bad": bad, "canary": canary}


def test_clean_directory_exits_0(tree: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", str(tree["clean"])]) == 0
    err = capsys.readouterr().err
    assert "scanned 2 file(s)" in err and "findings: none" in err


def test_summary_line_off_a_terminal_is_plain_and_needs_no_rich(tree: dict[str, Path]) -> None:
    """Off a terminal the summary is one plain line, written without importing rich; with
    FORCE_COLOR rich draws it, coloured."""
    import os
    import subprocess
    import sys

    code = ("import json, sys\n"
            "from phalanx.cli.main import main\n"
            "code = main(sys.argv[1:])\n"
            "print(json.dumps([code, 'rich' in sys.modules]))\n")
    unknown = tree["bad"].parent / "unknown.pkl"
    unknown.write_bytes(b"cmypkg\nThing\n.")  # an import on no allowlist: medium
    args = [sys.executable, "-c", code, "scan", str(tree["bad"]), str(unknown), "--no-store",
            "--format", "json", "-o", os.devnull]
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    plain = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    assert json.loads(plain.stdout) == [1, False], plain.stderr
    assert plain.stderr.startswith("scanned 3 file(s) and 0 member(s), 0.0 MB in ")
    assert plain.stderr.endswith(" s; findings: 1 critical, 1 medium\n")
    coloured = subprocess.run(args, capture_output=True, text=True, check=False,
                              env=env | {"FORCE_COLOR": "1"})
    assert json.loads(coloured.stdout) == [1, True], coloured.stderr
    assert "\x1b[" in coloured.stderr and "1 critical" in coloured.stderr
    assert not tree["canary"].exists()


def test_malicious_file_exits_1_and_names_the_call(
    tree: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["scan", str(tree["bad"])])
    out = capsys.readouterr()
    assert code == 1
    assert "critical" in out.out and "os.system" in out.out.replace("\n", "")
    assert "model.safetensors" in out.out.replace("\n", "")
    assert not tree["canary"].exists()


def test_json_report_and_store(tree: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["-q", "scan", str(tree["bad"]), str(tree["clean"]), "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    (result,) = report["run"]["results"]
    assert result["check"] == "model-scan"
    (finding,) = [f for f in result["findings"] if f["severity"] == "critical"]
    assert finding["evidence"]["format"] == "pickle"
    assert finding["evidence"]["file"].endswith("model.safetensors")
    files = next(m["value"] for m in result["metrics"] if m["name"] == "files_scanned")
    assert files == 4
    with Store.open() as store:
        (stored,) = store.list_runs()
        assert stored.command == "scan" and stored.id == report["run"]["id"]


@pytest.mark.parametrize("fmt", ["sarif", "md", "html", "junit"])
def test_other_formats_to_file(
    fmt: str, tree: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / f"report.{fmt}"
    code = main(["-q", "scan", str(tree["bad"]), "--format", fmt, "-o", str(out),
                 "--no-store"])
    assert code == 1
    text = out.read_text()
    assert "os.system" in text
    if fmt == "sarif":
        assert json.loads(text)["version"] == "2.1.0"
    with Store.open() as store:
        assert store.list_runs() == []


def test_fail_on_threshold(tree: dict[str, Path]) -> None:
    assert main(["-q", "scan", str(tree["bad"]), "--fail-on", "none"]) == 0
    assert main(["-q", "scan", str(tree["bad"]), "--fail-on", "critical"]) == 1


def test_ecosystem_choice_changes_the_verdict(tmp_path: Path) -> None:
    # collections.OrderedDict is on the python allowlist; restricting to an unknown
    # ecosystem name is an input error, not a silent pass.
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps({"a": 1}))
    assert main(["-q", "scan", str(path), "--ecosystems", "python"]) == 0
    assert main(["-q", "scan", str(path), "--ecosystems", "python,klingon"]) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["scan", "/no/such/model.pt"], "no such file or directory"),
        (["scan", "{tmp}", "--format", "pdf"], "unknown --format"),
        (["scan", "{tmp}", "--fail-on", "urgent"], "unknown severity"),
        (["scan", "{tmp}", "--policy", "/no/policy.yaml"], "policy file"),
        (["scan", "{tmp}", "--format", "json", "-o", "/no/dir/r.json"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert "Traceback" not in err

"""``phalanx sign``, ``verify``, ``bom`` and ``deps`` end to end: exit codes, one-line errors,
machine-readable output on stdout, summaries on stderr."""

from __future__ import annotations

import json
import os
import pickle
import socket
from pathlib import Path
from typing import Any

import pytest

from phalanx.cli.main import main
from phalanx.store import Store

pytest.importorskip("model_signing")
pytest.importorskip("cyclonedx")


class _Exec:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("echo pwned",))


@pytest.fixture
def model(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    root.mkdir()
    (root / "config.json").write_text('{"transformers_version": "4.40.0"}')
    (root / "weights.bin").write_bytes(b"\x00" * 64)
    (root / "README.md").write_text("---\nlicense: mit\ndatasets: [imdb]\n---\n# model\n")
    return root


@pytest.fixture
def keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    assert main(["sign", "--generate-key", str(tmp_path / "key.pem")]) == 0
    assert "key.pub" in capsys.readouterr().err
    return tmp_path / "key.pem", tmp_path / "key.pub"


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_sign_and_verify(model: Path, keys: tuple[Path, Path],
                         capsys: pytest.CaptureFixture[str]) -> None:
    private, public = keys
    assert main(["sign", str(model), "--key", str(private)]) == 0
    assert "model.sig" in capsys.readouterr().err
    assert main(["verify", str(model), "--key", str(public)]) == 0
    assert "verified" in capsys.readouterr().err
    assert main(["-q", "verify", str(model), "-k", str(public)]) == 0
    assert capsys.readouterr().err == ""


def test_generate_key_and_sign_in_one_step(model: Path, tmp_path: Path) -> None:
    assert main(["-q", "sign", str(model), "--generate-key", str(tmp_path / "new.pem")]) == 0
    assert main(["-q", "verify", str(model), "--key", str(tmp_path / "new.pub")]) == 0


def test_verify_fails_on_tampering_and_names_the_file(
        model: Path, keys: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    private, public = keys
    assert main(["-q", "sign", str(model), "-k", str(private)]) == 0
    (model / "weights.bin").write_bytes(b"\x01" * 64)
    (model / "backdoor.py").write_text("import os")
    capsys.readouterr()
    assert main(["-q", "verify", str(model), "-k", str(public)]) == 1
    err = capsys.readouterr().err
    assert "verification failed" in err and "weights.bin" in err and "backdoor.py" in err
    assert main(["verify", str(model), "-k", str(public), "--format", "json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["verified"] is False and result["modified"] == ["weights.bin"]
    assert result["added"] == ["backdoor.py"] and result["findings"][0]["severity"] == "high"


def test_verify_with_another_key_fails(model: Path, keys: tuple[Path, Path], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "sign", str(model), "-k", str(keys[0])]) == 0
    assert main(["-q", "sign", "--generate-key", str(tmp_path / "other.pem")]) == 0
    capsys.readouterr()
    assert main(["verify", str(model), "-k", str(tmp_path / "other.pub")]) == 1
    assert "not made with the key" in capsys.readouterr().err


def test_verify_with_tampered_signature_fails(model: Path, keys: tuple[Path, Path],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "sign", str(model), "-k", str(keys[0])]) == 0
    sig = model / "model.sig"
    sig.write_text(sig.read_text().replace('"payload":"', '"payload":"AAAA', 1))
    capsys.readouterr()
    assert main(["verify", str(model), "-k", str(keys[1])]) == 1
    assert "verification failed" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sign", "{tmp}/nope", "--key", "{key}"], "no such model"),
        (["sign", "{model}", "--key", "{tmp}/garbage.pem"], "not a usable PEM private key"),
        (["sign", "{model}"], "no signing key"),
        (["sign", "{model}", "--key", "{key}", "--keyless"], "only one of"),
        (["verify", "{model}", "--key", "{pub}"], "no signature at"),
        (["verify", "{model}"], "nothing to verify with"),
        (["verify", "{model}", "--key", "{key}"], "is a private key"),
        (["verify", "{model}", "--key", "{pub}", "-f", "yaml"], "unknown --format"),
        (["bom", "{tmp}/nope"], "no such model"),
        (["bom", "{model}", "-f", "spdx"], "unknown --format"),
        (["bom", "{model}", "-o", "{tmp}/no/dir/bom.json"], "does not exist"),
        (["deps", "-r", "{tmp}/absent.txt", "--offline"], "no such requirements file"),
        (["deps", "-r", "{tmp}/garbage.pem", "--offline"], "invalid requirements"),
        (["deps", "--service", "snyk"], "unknown --service"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(model: Path, keys: tuple[Path, Path],
                                          tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          args: list[str], message: str) -> None:
    (tmp_path / "garbage.pem").write_text("not a key !!\n")
    values = {"tmp": str(tmp_path), "model": str(model), "key": str(keys[0]),
              "pub": str(keys[1])}
    capsys.readouterr()
    assert main([a.format(**values) for a in args]) == 2
    assert message in _one_error_line(capsys.readouterr().err)


def test_keyless_needs_sigstore(model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    try:
        socket.create_connection(("tuf-repo-cdn.sigstore.dev", 443), timeout=3).close()
    except OSError:
        pass
    else:
        pytest.skip("the network is reachable; this test checks the error without it")
    assert main(["sign", str(model), "--keyless"]) == 2
    assert "cannot reach Sigstore" in _one_error_line(capsys.readouterr().err)


def test_bom_json_and_xml(model: Path, tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bom.json"
    assert main(["bom", str(model), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "3 file(s)" in err and "mit" in err and "imdb" in err and "transformers 4.40.0" in err
    doc = json.loads(out.read_text())
    assert doc["specVersion"] == "1.6"
    assert doc["metadata"]["component"]["type"] == "machine-learning-model"
    assert main(["-q", "bom", str(model), "--format", "xml"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("<?xml") and "<modelCard>" in captured.out
    assert captured.err == ""


def test_bom_fail_on(model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (model / "extra.pkl").write_bytes(pickle.dumps(_Exec()))
    assert main(["-q", "bom", str(model)]) == 0  # the verdict is in the BOM
    doc = json.loads(capsys.readouterr().out)
    assert doc["vulnerabilities"]
    assert main(["-q", "bom", str(model), "--fail-on", "high"]) == 1


OLD_PINS = "torch==2.5.0\nkeras==3.8.0\nonnx==1.15.0\n"


def test_deps_offline_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reqs = tmp_path / "requirements.txt"
    reqs.write_text(OLD_PINS)
    assert main(["deps", "-r", str(reqs), "--offline"]) == 1
    err = capsys.readouterr().err
    assert "CVE-2025-32434" in err and "--offline" in err
    assert main(["deps", "-r", str(reqs), "--offline", "--fail-on", "none"]) == 0
    capsys.readouterr()
    assert main(["-q", "deps", "-r", str(reqs), "--offline", "-f", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["service"]["status"] == "not queried" and report["complete"] is False
    assert {f["evidence"]["advisory"] for f in report["findings"]} == {
        "CVE-2025-32434", "CVE-2025-1550", "CVE-2025-8747", "CVE-2025-9906",
        "CVE-2024-27318"}
    reqs.write_text("onnx==1.15.0\n")  # medium only
    assert main(["-q", "deps", "-r", str(reqs), "--offline", "--fail-on", "high"]) == 0


def test_every_command_stores_a_run(model: Path, keys: tuple[Path, Path], tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    private, public = keys
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("torch==2.5.1\n")
    assert main(["sign", str(model), "-k", str(private)]) == 0
    assert "stored (completed)" in capsys.readouterr().err
    (model / "weights.bin").write_bytes(b"\x01" * 64)
    assert main(["-q", "verify", str(model), "-k", str(public)]) == 1
    assert main(["-q", "bom", str(model), "-o", str(tmp_path / "bom.json")]) == 0
    assert main(["-q", "deps", "-r", str(reqs), "--offline"]) == 1
    assert main(["-q", "deps", "-r", str(reqs), "--offline", "--no-store"]) == 1
    with Store.open() as store:
        runs = {r.command: store.get_run(r.id) for r in store.list_runs()}
    assert sorted(runs) == ["bom", "deps", "sign", "verify"]  # --no-store kept nothing
    assert all(r.status.value == "completed" for r in runs.values())
    assert all(r.results[0].started_at <= r.results[0].finished_at for r in runs.values())
    (signed,) = runs["sign"].results
    assert signed.check == "model-signature" and signed.metric("files_signed").value == 3
    (verified,) = runs["verify"].results
    assert verified.metric("verified").value == 0
    assert [f.severity.label for f in verified.findings] == ["high"]
    assert "weights.bin" in str(verified.findings[0].evidence)
    assert runs["bom"].results[0].metric("datasets_named").value == 1
    (audit,) = runs["deps"].results
    assert {f.evidence["advisory"] for f in audit.findings} == {"CVE-2025-32434"}


def test_bad_input_leaves_nothing_in_the_store(model: Path, tmp_path: Path) -> None:
    (tmp_path / "garbage.pem").write_text("not a key !!\n")
    assert main(["-q", "sign", str(model), "--key", str(tmp_path / "garbage.pem")]) == 2
    assert main(["-q", "deps", "-r", str(tmp_path / "absent.txt"), "--offline"]) == 2
    assert main(["-q", "scan", str(tmp_path / "no-such-model.pt")]) == 2
    with Store.open() as store:
        assert store.list_runs() == []


def test_deps_unreachable_service_is_exit_2_not_clean(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # pip-audit's HTTP cache
    reqs = tmp_path / "requirements.txt"
    reqs.write_text(OLD_PINS)
    url = f"http://127.0.0.1:{_closed_port()}/v1/query"
    assert main(["deps", "-r", str(reqs), "--osv-url", url, "-f", "json", "--timeout",
                 "5"]) == 2
    captured = capsys.readouterr()
    error = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "cannot reach the osv vulnerability service" in error[0]
    report = json.loads(captured.out)  # what was found offline is still reported
    assert report["service"]["status"] == "unreachable"
    assert {f["evidence"]["advisory"] for f in report["findings"]} >= {"CVE-2025-32434"}
    reqs.write_text("packaging==24.0\n")  # nothing offline to find: still not "clean"
    assert main(["deps", "-r", str(reqs), "--osv-url", url, "--timeout", "5"]) == 2
    assert "cannot reach" in capsys.readouterr().err

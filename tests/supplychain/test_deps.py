"""Dependency audit: the bundled ML-framework advisories (offline), requirements parsing, and
the vulnerability service through pip-audit against a real OSV-style server on loopback."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from packaging.version import Version

from phalanx.core.findings import Severity
from phalanx.core.taxonomy import load_taxonomy
from phalanx.errors import DataFormatError, InputError
from phalanx.supplychain.deps import (
    REFS,
    Package,
    audit_dependencies,
    check_advisories,
    installed_packages,
    load_advisories,
    parse_advisories,
    read_requirements,
)

OLD_PINS = """\
# ML stack pinned long ago
torch==2.5.0
transformers==4.37.0 \\
    --hash=sha256:0000000000000000000000000000000000000000000000000000000000000000
keras==3.8.0 ; python_version >= "3"
numpy==1.16.2
joblib==1.1.0
onnx==1.15.0
tensorflow==2.5.0
llama-cpp-python==0.2.71
requests>=2
-e ./local-package
--index-url https://example.org/simple
"""

NEW_PINS = """\
torch==2.6.0
transformers==4.38.0
keras==3.11.3
numpy==1.26.4
joblib==1.2.0
onnx==1.16.0
tensorflow==2.5.1
llama-cpp-python==0.2.72
"""


@pytest.fixture(autouse=True)
def _no_proxy_for_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# -- the bundled table ------------------------------------------------------------------------


def test_advisory_table_is_valid() -> None:
    advisories = load_advisories()
    assert len(advisories) >= 10
    assert len({a.id for a in advisories}) == len(advisories)
    assert load_taxonomy().unknown(REFS) == []
    for advisory in advisories:
        fixed = Version(advisory.fixed.split()[0])
        for package in advisory.packages:
            assert not advisory.affects(Package(package, str(fixed))), advisory.id
        assert advisory.severity in (Severity.HIGH, Severity.MEDIUM)
        assert advisory.url.startswith("https://")


def test_advisory_table_validation_reports_every_problem() -> None:
    bad = {"schema": "phalanx.advisories/v1", "advisories": [
        {"id": "CVE-2025-1", "packages": [], "affected": ["<<1"], "severity": "dire",
         "kind": "rce", "summary": "", "fixed": "1"},
        {"id": "CVE-2024-3568", "packages": ["x"], "affected": ["<1"], "severity": "high",
         "kind": "code-execution", "summary": "s", "fixed": "1"},
        {"id": "CVE-2024-3568", "packages": ["x"], "affected": ["<1"], "severity": "high",
         "kind": "code-execution", "summary": "s", "fixed": "1"},
    ]}
    with pytest.raises(DataFormatError) as info:
        parse_advisories(bad)
    message = str(info.value)
    for problem in ("must be a CVE id", "packages must be", "invalid version range",
                    "unknown severity", "kind must be", "summary is required",
                    "duplicate id"):
        assert problem in message
    with pytest.raises(DataFormatError, match="schema"):
        parse_advisories({"advisories": []})


def test_old_pins_are_flagged_offline(tmp_path: Path) -> None:
    report = audit_dependencies([_write(tmp_path, "requirements.txt", OLD_PINS)], offline=True)
    assert report.service == "" and not report.complete and report.service_error is None
    flagged = {(f.evidence["package"], f.evidence["advisory"]) for f in report.findings}
    assert flagged == {
        ("torch", "CVE-2025-32434"),
        ("transformers", "CVE-2024-3568"),
        ("keras", "CVE-2025-1550"),
        ("keras", "CVE-2025-8747"),
        ("keras", "CVE-2025-9906"),
        ("numpy", "CVE-2019-6446"),
        ("joblib", "CVE-2022-21797"),
        ("onnx", "CVE-2024-27318"),
        ("tensorflow", "CVE-2021-37678"),
        ("llama-cpp-python", "CVE-2024-34359"),
    }
    torch = next(f for f in report.findings if f.evidence["package"] == "torch")
    assert torch.severity == Severity.HIGH and "2.6.0" in torch.remediation
    assert torch.evidence["source"].endswith("requirements.txt:2")
    assert report.findings[0].severity >= report.findings[-1].severity
    assert report.failed("medium") and report.max_severity() == Severity.HIGH


def test_fixed_pins_are_clean(tmp_path: Path) -> None:
    report = audit_dependencies([_write(tmp_path, "r.txt", NEW_PINS)], offline=True)
    assert report.findings == [] and len(report.packages) == 8


def test_advisory_ranges_with_backports() -> None:
    table = [a for a in load_advisories() if a.id == "CVE-2021-37678"]
    affected = {v for v in ("2.3.3", "2.3.4", "2.4.2", "2.4.3", "2.5.0", "2.5.1", "2.6.0")
                if check_advisories([Package("tensorflow-cpu", v)], table)}
    assert affected == {"2.3.3", "2.4.2", "2.5.0"}
    assert check_advisories([Package("Keras", "3.8.0")])  # names compare canonicalized
    assert not check_advisories([Package("torch", "not-a-version")])


# -- what is audited --------------------------------------------------------------------------


def test_requirements_parsing(tmp_path: Path) -> None:
    _write(tmp_path, "base.txt", "numpy==1.26.4  # pinned\n")
    main = _write(tmp_path, "requirements.txt",
                  "-r base.txt\n--requirement=base.txt\nscipy===1.11.0\n"
                  "pandas==2.*\nflask\nhttpx>=0.25,<1\n"
                  "pkg @ https://example.org/pkg.whl\n"
                  "win-only==1.0 ; sys_platform == 'win32'\n"
                  "Torch==2.6.0 \\\n  --hash=sha256:00\n")
    packages, skipped = read_requirements([main])
    assert {(p.name, p.version) for p in packages} == {
        ("numpy", "1.26.4"), ("scipy", "1.11.0"), ("Torch", "2.6.0")}
    assert {s.name for s in skipped} == {"pandas", "flask", "httpx", "pkg"}
    assert all(s.source.startswith(str(main)) for s in skipped)


@pytest.mark.parametrize(
    ("text", "message"),
    [("torch==2.6.0\n!!nonsense\n", "r.txt:2"),
     ("torch==2.6.0\ntorch==2.5.0\n", "pinned to 2.5.0 but to 2.6.0"),
     ("-r missing.txt\n", "no such requirements file")],
)
def test_bad_requirements_are_input_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        read_requirements([_write(tmp_path, "r.txt", text)])


def test_unreadable_requirements(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such requirements file"):
        read_requirements([tmp_path / "absent.txt"])
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(InputError, match="not UTF-8"):
        read_requirements([tmp_path / "binary.txt"])


def test_installed_packages_sees_this_environment() -> None:
    packages, _ = installed_packages()
    names = {p.key for p in packages}
    assert {"packaging", "pyyaml", "typer"} <= names
    assert all(p.source == "environment" for p in packages)


# -- the vulnerability service ----------------------------------------------------------------


class _Osv(BaseHTTPRequestHandler):
    """An OSV /v1/query endpoint with canned answers; status 500 for package "broken"."""

    vulns: dict[tuple[str, str], list[dict[str, Any]]] = {
        ("examplepkg", "1.0.0"): [{
            "id": "PYSEC-2099-1", "aliases": ["CVE-2099-0001"], "summary": "Example flaw",
            "affected": [{"package": {"name": "examplepkg", "ecosystem": "PyPI"},
                          "ranges": [{"type": "ECOSYSTEM",
                                      "events": [{"introduced": "0"}, {"fixed": "1.0.1"}]}]}],
        }],
        ("torch", "2.5.0"): [{
            "id": "GHSA-53q9-r3pm-6pq6", "aliases": ["CVE-2025-32434"],
            "summary": "torch.load RCE",
            "affected": [{"package": {"name": "torch", "ecosystem": "PyPI"},
                          "ranges": [{"type": "ECOSYSTEM",
                                      "events": [{"introduced": "0"}, {"fixed": "2.6.0"}]}]}],
        }],
    }
    queries: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        query = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).queries.append(query)
        if query["package"]["name"] == "broken":
            self.send_response(500)
            self.end_headers()
            return
        found = self.vulns.get((query["package"]["name"], query["version"]), [])
        body = json.dumps({"vulns": found} if found else {}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def osv_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Osv)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Osv.queries.clear()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/query"
    finally:
        server.shutdown()
        server.server_close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_service_findings_and_dedup_with_the_table(tmp_path: Path, osv_url: str) -> None:
    reqs = _write(tmp_path, "r.txt", "examplepkg==1.0.0\ntorch==2.5.0\nsafe==3.0\n")
    report = audit_dependencies([reqs], osv_url=osv_url, cache_dir=tmp_path / "cache",
                                timeout=5)
    assert report.complete and report.service_error is None
    assert {q["package"]["name"] for q in _Osv.queries} == {"examplepkg", "torch", "safe"}
    by_advisory = {f.evidence["advisory"]: f for f in report.findings}
    # torch's advisory comes once, from the bundled table (the service names it by alias).
    assert set(by_advisory) == {"PYSEC-2099-1", "CVE-2025-32434"}
    example = by_advisory["PYSEC-2099-1"]
    assert example.severity == Severity.MEDIUM and example.evidence["database"] == "osv"
    assert example.evidence["aliases"] == ["CVE-2099-0001"]
    assert example.evidence["fixed"] == ["1.0.1"] and "1.0.1" in example.remediation
    assert example.detail == "Example flaw"


def test_unreachable_service_keeps_offline_findings(tmp_path: Path) -> None:
    reqs = _write(tmp_path, "r.txt", "torch==2.5.0\n")
    url = f"http://127.0.0.1:{_closed_port()}/v1/query"
    report = audit_dependencies([reqs], osv_url=url, cache_dir=tmp_path / "cache", timeout=5)
    assert not report.complete
    assert report.service_error is not None
    assert "cannot reach the osv vulnerability service" in report.service_error
    assert "connection refused" in report.service_error
    assert [f.evidence["advisory"] for f in report.findings] == ["CVE-2025-32434"]
    data = report.to_dict()
    assert data["service"]["status"] == "unreachable" and data["complete"] is False


def test_service_error_answer_is_unreachable(tmp_path: Path, osv_url: str) -> None:
    reqs = _write(tmp_path, "r.txt", "broken==1.0\n")
    report = audit_dependencies([reqs], osv_url=osv_url, cache_dir=tmp_path / "cache")
    assert report.service_error is not None and "HTTP 500" in report.service_error


def test_unknown_service(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown vulnerability service"):
        audit_dependencies(offline=True, service="snyk")

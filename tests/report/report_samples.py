"""Sample data for the report tests: a realistic run and an HTML safety audit.

Kept out of ``conftest.py`` so tests can import it by a name no other test directory uses.
"""

from __future__ import annotations

import datetime as dt
import struct
import zlib
from dataclasses import dataclass
from html.parser import HTMLParser

from phalanx.core import (
    Artifact,
    Finding,
    Metric,
    Result,
    Run,
    RunStatus,
    Severity,
    ThreatModel,
)

#: Attacker-controlled text, as a model reply or a planted document might carry it.
XSS = "<script>alert(1)</script>"
ATTR_BREAK = '"><img src=x onerror=alert(1)>'
JS_URL = "javascript:alert(document.cookie)"
HOSTILE = (
    f"Reply was {XSS} then {ATTR_BREAK} and [click me]({JS_URL}) "
    "with ``` backticks ```` and | pipes | here\x00 and a bell\x07 and\nnewline"
)


def tiny_png(width: int = 8, height: int = 8) -> bytes:
    """An RGB gradient PNG built from bytes (signature, IHDR, IDAT, IEND)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(
        b"\x00" + b"".join(bytes((x * 32 % 256, y * 32 % 256, 160)) for x in range(width))
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


T0 = dt.datetime(2025, 3, 1, 14, 2, 5, tzinfo=dt.timezone.utc)


def robustness_result() -> Result:
    metrics = [Metric("clean_accuracy", 0.982, 0.974, 0.988, {}, "fraction")]
    curves = {
        "pgd": [(0.0, 0.982), (0.05, 0.71), (0.1, 0.42), (0.2, 0.08), (0.3, 0.01)],
        "fgsm": [(0.0, 0.982), (0.05, 0.80), (0.1, 0.61), (0.2, 0.33), (0.3, 0.19)],
    }
    for attack, points in curves.items():
        for eps, acc in points:
            half = 0.03 if 0 < acc < 1 else 0.005
            metrics.append(
                Metric(
                    "robust_accuracy",
                    acc,
                    max(acc - half, 0.0),
                    min(acc + half, 1.0),
                    {"eps": eps, "attack": attack},
                    "fraction",
                )
            )
    metrics.append(Metric("queries", 2000, labels={"attack": "pgd"}, unit="queries"))
    findings = [
        Finding(
            check="robustness",
            severity=Severity.HIGH,
            title="Model is not robust at eps=0.1 (L-inf)",
            detail="PGD-40 drives accuracy from 98.2% to 42.0% at eps=0.1.\n"
            "An attacker who can change each pixel by 10% flips more than half the predictions.",
            evidence={"eps": 0.1, "robust_accuracy": 0.42, "ci": [0.39, 0.45], "n": 1000},
            remediation="Adversarially train the model (phalanx harden adv-train), then re-run.",
            refs=("atlas:AML.T0015", "nist-aml-2025:NISTAML.022", "nist-ai-rmf-1.0:MEASURE-2.7"),
            plugin_id="pgd",
            plugin_version="1.0",
            params={"eps": 0.1, "step_size": 0.01, "max_iter": 40},
            seed=0,
        ),
        Finding(
            check="robustness",
            severity=Severity.MEDIUM,
            title="Gradient masking suspected",
            detail="FGSM is weaker than expected at large eps; results may overestimate robustness.",
            evidence={"fgsm_at_0.3": 0.19, "pgd_at_0.3": 0.01},
            remediation="Confirm with a gradient-free attack (Square).",
            refs=("nist-aml-2025:NISTAML.022",),
        ),
    ]
    return Result(
        check="robustness",
        title="Adversarial robustness (L-inf)",
        target="zoo:mnist-cnn",
        params={"attacks": ["fgsm", "pgd"], "eps": [0.05, 0.1, 0.2, 0.3]},
        threat_model=ThreatModel(knowledge="white-box", norm="linf", eps=0.3),
        metrics=metrics,
        findings=findings,
        artifacts=[
            Artifact("adversarial-example.png", "image/png", tiny_png(), "PGD example at eps=0.1"),
            Artifact(
                "evil.svg",
                "image/svg+xml",
                b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(2)'
                b"</script></svg>",
                "an SVG artifact that must never be inlined",
            ),
        ],
        refs=("atlas:AML.T0015", "nist-aml-2025:NISTAML.022"),
        started_at=T0,
        finished_at=T0 + dt.timedelta(seconds=48.3),
        seed=0,
    )


def injection_result() -> Result:
    findings = [
        Finding(
            check="prompt-injection",
            severity=Severity.CRITICAL,
            title=f"Indirect injection executed a tool call {XSS}",
            detail=HOSTILE,
            evidence={
                "path": "kb/docs/policy `x` | <b>.md",
                "offset": 1337,
                "length": 64,
                "payload": f"{XSS}{ATTR_BREAK}",
                "reply": HOSTILE,
                "link": JS_URL,
                "fence": "```` and ``` inside",
            },
            remediation=f"Do not follow [this]({JS_URL}) {ATTR_BREAK}; require approval | always.",
            refs=("owasp-llm-2025:LLM01", "nist-aml-2025:NISTAML.015", "atlas:AML.T0051.001"),
            plugin_id="indirect-injection",
            plugin_version="1.0",
        ),
        Finding(
            check="prompt-injection",
            severity=Severity.LOW,
            title="System prompt partially echoed",
            detail="2 of 40 probes got the first sentence of the system prompt back.",
            evidence={"hits": 2, "attempts": 40},
            refs=("owasp-llm-2025:LLM07", "made-up-framework:X-99"),
        ),
        Finding(
            check="prompt-injection",
            severity=Severity.INFO,
            title="Refusals are templated",
            detail="Every refusal used the same sentence.",
        ),
    ]
    return Result(
        check="prompt-injection",
        title="Prompt injection probes",
        target="http://localhost:8000/v1",
        threat_model=ThreatModel(
            knowledge="black-box", goal="exfiltration", query_budget=200,
            channels=("retrieved-documents",),
        ),
        metrics=[
            Metric("attack_success_rate", 0.35, 0.22, 0.50, {"probe": "indirect"}),
            Metric("attack_success_rate", 0.05, 0.01, 0.17, {"probe": "direct"}),
            Metric("attack_success_rate", float("nan"), labels={"probe": "broken"}),
        ],
        findings=findings,
        artifacts=[Artifact("transcript.txt", "text/plain", f"user: hi\nassistant: {XSS}".encode())],
        refs=("owasp-llm-2025:LLM01",),
        started_at=T0 + dt.timedelta(seconds=50),
        finished_at=T0 + dt.timedelta(seconds=171),
        seed=7,
    )


def make_run() -> Run:
    return Run(
        command="demo",
        config={"target": "zoo:mnist-cnn", "api_key": "${OPENAI_API_KEY}"},
        id="3f2b9c0d1e4a4b5c8d7e6f5a4b3c2d1e",
        status=RunStatus.COMPLETED,
        started_at=T0,
        finished_at=T0 + dt.timedelta(seconds=171),
        results=[robustness_result(), injection_result()],
        environment={"phalanx": "0.1.0", "python": "3.11.9", "platform": "Linux", "hostname": "ci"},
        tags={"branch": "main"},
    )




class _Audit(HTMLParser):
    """Collects what matters for script safety from an HTML document."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str, str]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend((tag, name, value or "") for name, value in attrs)

    handle_startendtag = handle_starttag

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@dataclass
class HtmlAudit:
    tags: list[str]
    attrs: list[tuple[str, str, str]]
    text: str

    def problems(self) -> list[str]:
        """Everything that could run script or fetch from the network."""
        found = [f"<{t}> element" for t in self.tags if t in ("script", "iframe", "object", "embed", "base")]
        for tag, name, value in self.attrs:
            lowered = "".join(value.split()).lower()
            if name.startswith("on"):
                found.append(f"event handler {name} on <{tag}>")
            if name == "src" or name.endswith("href") or name in ("action", "formaction"):
                if lowered.startswith(("javascript:", "vbscript:")) or "javascript:" in lowered:
                    found.append(f"script URL in {name} of <{tag}>")
                if lowered.startswith(("http://", "https://", "//")):
                    found.append(f"remote URL in {name} of <{tag}>: {value[:60]}")
            if tag == "img" and name == "src" and not lowered.startswith("data:image/"):
                found.append(f"non-data image source {value[:60]}")
            if tag == "link" and name == "rel":
                found.append("external <link>")
        return found


def audit_html(document: str) -> HtmlAudit:
    """Parse HTML with the standard library and report its tags, attributes and text."""
    parser = _Audit()
    parser.feed(document)
    parser.close()
    return HtmlAudit(parser.tags, parser.attrs, "".join(parser.text))

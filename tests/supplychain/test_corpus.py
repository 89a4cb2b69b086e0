"""Every corpus sample gets the right verdict, and scanning never runs a payload.

Malicious samples must be reported at or above their ``min_severity`` (and with their
``rule`` when the sample names one); benign samples must give no finding at or above
``medium``, the default ``--fail-on``, so that 100% detection and 0 false positives on the
corpus are checked here, sample by sample. Samples whose builder needs a library that is not
installed are skipped with the library named.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from corpus import Sample, all_samples

from phalanx.core.findings import Severity
from phalanx.supplychain.scan import scan_paths
from phalanx.supplychain.scan.base import Source
from phalanx.supplychain.scan.sniff import sniff

SAMPLES = all_samples()


def _describe(findings: list) -> str:
    return "; ".join(f"{f.severity.label}:{f.evidence.get('rule')}:{f.title}" for f in findings)


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.name for s in SAMPLES])
def test_sample_verdict(sample: Sample, tmp_path: Path) -> None:
    if not sample.available():
        pytest.skip(f"building {sample.name} needs {', '.join(sample.needs)}")
    canary = tmp_path / "CANARY"
    target = sample.build(tmp_path / "sample", canary)
    if sample.format != "dir":
        assert sniff(Source.from_path(target)) == sample.format
    report = scan_paths([target])
    assert not canary.exists(), "scanning ran the payload"
    if sample.malicious:
        level = Severity.parse(sample.min_severity)
        hits = [f for f in report.findings if f.severity >= level]
        assert hits, f"missed ({sample.technique}); got: {_describe(report.findings)}"
        if sample.rule is not None:
            rules = {f.evidence.get("rule") for f in hits}
            assert sample.rule in rules, f"expected rule {sample.rule}; got: {_describe(hits)}"
    else:
        bad = [f for f in report.findings if f.severity >= Severity.MEDIUM]
        assert not bad, f"false positive: {_describe(bad)}"


def test_corpus_covers_every_family() -> None:
    formats = {s.format for s in SAMPLES}
    assert {s.malicious for s in SAMPLES} == {True, False}
    assert "pickle" in formats

"""The pickle bypass samples are real exploits, and their bookkeeping is complete.

``test_corpus.py`` checks that phalanx flags every sample. That is only worth something if the
samples would really run their payload: a pickle the unpickler rejects before the payload
proves nothing about a scanner. So each sample in ``samples.pickles.LIVE`` is loaded here, in
a throwaway subprocess whose working directory is the test's temporary directory, and must
create its canary (its payloads only ever create that file). Samples that cannot run here are
listed in ``SCAN_ONLY`` with the reason, and every malicious sample is in exactly one of the
two.

Each sample cites the advisory or report that published its technique (see its ``source``).
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
from samples.pickles import LIVE, SAMPLES, SCAN_ONLY

#: Loads every pickle in the file, as multi-pickle loaders do, and ignores the error a broken
#: stream raises after its payload ran.
_LOADER = """
import io, pickle, sys
data = open(sys.argv[1], 'rb').read()
stream = io.BytesIO(data)
while stream.tell() < len(data):
    try:
        pickle.load(stream)
    except Exception:
        break
"""

_BY_NAME = {s.name: s for s in SAMPLES}
_MALICIOUS = sorted(s.name for s in SAMPLES if s.malicious)


@pytest.mark.parametrize("name", sorted(LIVE))
def test_live_sample_runs_its_payload(name: str, tmp_path: Path) -> None:
    missing = [m for m in LIVE[name] if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"the payload of {name} needs {', '.join(missing)}")
    canary = tmp_path / "CANARY"
    target = _BY_NAME[name].build(tmp_path / "sample", canary)
    proc = subprocess.run(
        [sys.executable, "-c", _LOADER, str(target)],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert canary.exists(), (
        f"{name} did not run its payload under pickle.load; stderr: {proc.stderr[-800:]!r}"
    )


def test_every_malicious_sample_is_live_or_explained() -> None:
    assert set(LIVE).isdisjoint(SCAN_ONLY)
    assert sorted(set(LIVE) | set(SCAN_ONLY)) == _MALICIOUS
    assert all(reason for reason in SCAN_ONLY.values())


_CITATION = re.compile(
    r"(GHSA(-[23456789cfghjmpqrvwx]{4}){3}|CVE-\d{4}-\d{4,}|https://\S+|arXiv|tests/\S+\.py)"
)


def test_cited_sources_are_well_formed() -> None:
    for sample in SAMPLES:
        if sample.malicious and sample.source:
            assert _CITATION.search(sample.source), (sample.name, sample.source)
            for ghsa in re.findall(r"GHSA-[\w-]+", sample.source):
                assert re.fullmatch(r"GHSA(-[23456789cfghjmpqrvwx]{4}){3}", ghsa), ghsa

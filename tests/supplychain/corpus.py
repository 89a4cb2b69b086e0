"""The model-file scanner corpus: malicious and benign samples of every format phalanx scans.

Sample modules import the record type with ``from corpus import Sample``.

Every sample is *generated* here (nothing is downloaded): malicious ones carry a canary payload
that would create a file if it ever ran, benign ones are what the real libraries write (torch,
NumPy, joblib, h5py, onnx, ...) where those libraries are installed. Malicious samples that
reproduce a published scanner bypass cite the advisory.

The test suite (``test_corpus.py``) scans every sample and checks the verdict; the benchmark
(``benchmarks/scan.py``) writes the corpus to a directory and runs every scanner over it::

    python tests/supplychain/corpus.py OUT_DIR    # writes OUT_DIR/manifest.json and samples
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

#: Modules under ``tests/supplychain/samples`` that contribute samples.
FAMILIES = ("pickles", "archives", "pytorch", "numpy_joblib", "keras_tf_onnx",
            "safetensors_gguf", "huggingface")


@dataclass(frozen=True)
class Sample:
    """One corpus entry.

    Args:
        name: Unique id (also the file or directory name written), e.g.
            ``"pickle-os-system-proto0"``.
        format: The format phalanx must sniff for the top-level file (``sniff`` ids), or
            ``"dir"`` when the sample is a directory.
        malicious: Whether loading it the usual way would run attacker code or do harm.
        build: ``build(out_dir, canary) -> path``: writes the sample under ``out_dir`` and
            returns the file or directory to scan. ``canary`` is a path the payload would
            create if it ever ran.
        technique: What the sample demonstrates.
        source: Citation for a published technique (advisory id or URL), else ``""``.
        min_severity: For a malicious sample, the least severity phalanx must report.
        rule: The finding rule (``evidence["rule"]``) phalanx must report, if specific.
        needs: Importable modules needed to build it (``torch``, ``h5py``, ``onnx``...).
    """

    name: str
    format: str
    malicious: bool
    build: Callable[[Path, Path], Path]
    technique: str = ""
    source: str = ""
    min_severity: str = "medium"
    rule: str | None = None
    needs: tuple[str, ...] = ()

    def available(self) -> bool:
        """Whether every module the builder needs is installed."""
        return all(importlib.util.find_spec(m) is not None for m in self.needs)


def all_samples() -> list[Sample]:
    """Every sample of every family module that exists, checked for unique names."""
    here = Path(__file__).resolve().parent
    if str(here) not in sys.path:
        sys.path.insert(0, str(here))
    samples: list[Sample] = []
    for family in FAMILIES:
        if not (here / "samples" / f"{family}.py").exists():
            continue
        module = importlib.import_module(f"samples.{family}")
        samples.extend(module.SAMPLES)
    names = [s.name for s in samples]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate sample names: {duplicates}")
    return samples


def build_corpus(out_dir: Path, canary: Path | None = None) -> list[dict[str, object]]:
    """Write every available sample under ``out_dir``; return the manifest entries."""
    out_dir.mkdir(parents=True, exist_ok=True)
    canary = canary if canary is not None else out_dir / "CANARY"
    manifest = []
    for sample in all_samples():
        if not sample.available():
            continue
        target = sample.build(out_dir / sample.name, canary)
        manifest.append({
            "name": sample.name, "format": sample.format, "malicious": sample.malicious,
            "path": str(target.relative_to(out_dir)), "technique": sample.technique,
            "source": sample.source, "min_severity": sample.min_severity, "rule": sample.rule,
        })
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/supplychain/corpus.py OUT_DIR")
    entries = build_corpus(Path(sys.argv[1]))
    bad = sum(1 for e in entries if e["malicious"])
    print(f"wrote {len(entries)} samples ({bad} malicious) to {sys.argv[1]}")

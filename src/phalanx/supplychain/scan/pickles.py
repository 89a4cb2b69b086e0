"""The scanner for raw pickle files (protocols 0 to 5), joblib files included.

The work is done by the static pickle analyser, :mod:`phalanx.supplychain.scan.pickle_vm`:
a symbolic pickle machine checked against an allowlist of imports per ecosystem.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

from phalanx.core.findings import Finding
from phalanx.supplychain.scan.base import BUNDLED_FORMATS, FileScanner, ScanSession, Source
from phalanx.supplychain.scan.pickle_vm import REFS

__all__ = ["PickleScanner"]


class PickleScanner(FileScanner):
    """Pickle files: every import judged against the allowlist, every call resolved.

    Threat model: an attacker who controls the file and knows the scanner; the file is never
    unpickled. Catches code execution through ``REDUCE``/``INST``/``OBJ``/``NEWOBJ``/``BUILD``,
    memo and ``STACK_GLOBAL`` tricks, nested and concatenated pickles.

    Example:
        >>> findings = list(PickleScanner().scan("model.pkl"))  # doctest: +SKIP
    """

    name = "pickle"
    title = "Pickle (static analysis)"
    paper = ("Trail of Bits, 'Never a dill moment: exploiting machine learning pickle files', "
             "2021, https://blog.trailofbits.com/2021/03/15/never-a-dill-moment-exploiting-"
             "machine-learning-pickle-files/")
    refs = REFS
    formats: ClassVar[tuple[str, ...]] = BUNDLED_FORMATS["pickle"]

    def scan_source(self, source: Source, session: ScanSession) -> Iterator[Finding]:
        """Analyse the pickle stream of ``source``."""
        yield from session.scan_pickle(source)

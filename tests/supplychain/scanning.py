"""Helpers the scanner tests share: a session with the archive, NumPy and pickle scanners,
byte mutations of a valid file for the "never raises" fuzz tests, and a stream that cannot
seek."""

from __future__ import annotations

import io
from typing import Any

from hypothesis import strategies as st

from phalanx.supplychain.scan.archive import ArchiveScanner
from phalanx.supplychain.scan.base import ScanLimits, ScanSession
from phalanx.supplychain.scan.numpy_files import NumpyScanner
from phalanx.supplychain.scan.pickles import PickleScanner


def archive_session(**limits: Any) -> ScanSession:
    """A session with the archive, NumPy and pickle scanners only, under ``limits``."""
    archive, numpy, pickle = ArchiveScanner(), NumpyScanner(), PickleScanner()
    table = {f: archive for f in archive.formats}
    table.update({f: numpy for f in numpy.formats})
    table["pickle"] = pickle
    return ScanSession(scanners=table, limits=ScanLimits(**limits))


def mutated(data: st.DataObject, valid: bytes, *, max_edits: int = 8,
            min_keep: int = 1) -> bytes:
    """``valid`` with 1 to ``max_edits`` bytes overwritten at random, then cut to a random
    length of at least ``min_keep`` bytes."""
    blob = bytearray(valid)
    for _ in range(data.draw(st.integers(1, max_edits))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    return bytes(blob[:data.draw(st.integers(min_keep, len(blob)))])


class Unseekable(io.RawIOBase):
    """``data`` as a stream that cannot seek (a pipe, a decompressor), handing out at most
    ``step`` bytes per read when given, so that a reader's buffer refills at every boundary."""

    def __init__(self, data: bytes, step: int | None = None) -> None:
        super().__init__()
        self._inner, self._step = io.BytesIO(data), step

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = len(buffer) if self._step is None else min(len(buffer), self._step)
        chunk = self._inner.read(n)
        buffer[: len(chunk)] = chunk
        return len(chunk)

"""Archives and compressed streams: zip, tar, gzip, bzip2 and xz, checked and opened safely.

A model is often a container: a PyTorch checkpoint, a ``.keras`` file and an ``.npz`` file are
zip archives, checkpoints are shipped as ``.tar.gz``. This module reads such containers without
extracting them to disk and without trusting what they declare. It parses the zip structures
itself (the central directory *and* every local header), so that it sees the differences
between what different loaders would read; it walks tar headers with :mod:`tarfile` (headers
only, never ``extract``); and it decompresses in bounded chunks, counting every byte against
the session's :class:`~phalanx.supplychain.scan.base.ScanLimits`. Every member is then handed
back to the session (``session.scan``), so a pickle inside a zip inside a tar is analysed like
a bare one.

Threat model: the attacker controls every byte of the archive and knows the scanner. They may
hide a payload where a loader looks and a scanner does not (a duplicate name, an entry missing
from the central directory, data before the archive), exhaust the scanner (zip bombs,
including David Fifield's overlapping-entry bomb), or target whoever extracts the archive
(path traversal and link escapes, CVE-2007-4559 for Python's :mod:`tarfile`; "Zip Slip").

Rules (``evidence["rule"]``), stable across versions:

=============================  ========  ========================================================
``archive-path-traversal``     HIGH      member name absolute, with a drive letter, backslash, ``..``
``archive-link-escape``        HIGH      tar symlink/hardlink (or a chain of them) leads outside
``archive-bomb-ratio``         HIGH      member expands more than ``max_ratio`` times (> 1 MiB)
``archive-total-expansion``    HIGH      decompressed bytes over ``max_total_bytes``
``archive-size-mismatch``      HIGH      member expands past its declared size (MEDIUM if short)
``zip-overlapping-entries``    HIGH      entries share bytes (Fifield's overlapping zip bomb)
``archive-special-file``       MEDIUM    tar device file or FIFO
``archive-suspicious-name``    MEDIUM    NUL or control characters, invalid UTF-8 in a name
``archive-duplicate-name``     MEDIUM    two members with one name (loaders pick different ones)
``archive-too-many-members``   MEDIUM    more members than ``max_members``; the rest not scanned
``archive-member-too-large``   MEDIUM    member over ``max_member_bytes``; only its start scanned
``zip-header-mismatch``        MEDIUM    central directory and local header disagree
``zip-bad-crc``                MEDIUM    member bytes do not match their CRC-32
``zip-encrypted``              MEDIUM    encrypted member, cannot be scanned
``zip-unsupported-method``     MEDIUM    compression method the scanner cannot decode
``zip-prepended-data``         MEDIUM    bytes before the first entry (polyglot, hidden entries)
``zip-hidden-data``            MEDIUM    bytes between entries that no entry accounts for
``zip-trailing-data``          MEDIUM    bytes after the end-of-central-directory record
``tar-trailing-data``          MEDIUM    non-zero bytes after the end of a tar archive
``compressed-trailing-data``   MEDIUM    bytes after the last gzip/bzip2/xz stream
``archive-setuid``             LOW       tar member with the setuid or setgid bit
``malformed``                  MEDIUM    the container does not parse (``session.malformed``)
=============================  ========  ========================================================

Decompressed members are spooled: up to 1 MiB in memory, larger ones to a private temporary
file (``mkstemp``, mode 0600) that is deleted as soon as the member has been scanned. The
spool is bounded by the limits, so disk use is at most ``max_member_bytes`` per nesting level.
Spooling was chosen over lazily re-decompressing on every open because the scanners of the
inner format need random access (a zip's directory is at its end, sniffing reopens the
source), and re-decompressing would cost a full pass per seek backwards and would count the
same expansion twice against the limits. Stored members (zip method 0, every tar member) are
never copied: their sources are windows onto the container's own bytes.

``max_members`` bounds each archive *and* all the archives nested under one top-level file
together: nesting would otherwise multiply it (42.zip holds 16 archives of 16 archives, five
levels deep). ``bytes_expanded`` is likewise counted across the whole tree.

Other scanners reuse the zip machinery (PyTorch, TorchScript, ``.npz``, ``.keras``): see
:func:`check_zip_structure`, :func:`iter_zip_members` and :func:`iter_tar_members`.

References:
    David Fifield, "A better zip bomb", USENIX WOOT 2019,
    https://www.bamsoftware.com/hacks/zipbomb/ ;
    CVE-2007-4559 (Python tarfile path traversal) and PEP 706 (tarfile extraction filters);
    Snyk, "Zip Slip" (2018), https://github.com/snyk/zip-slip-vulnerability ;
    "My ZIP isn't your ZIP: Identifying and Exploiting Semantic Gaps Between ZIP Parsers"
    (USENIX Security 2025) for parser differentials; PKWARE APPNOTE.TXT 6.3.10 for the format.

Example:
    >>> from phalanx.supplychain.scan import scan_paths
    >>> report = scan_paths(["checkpoint.tar.gz"])  # doctest: +SKIP
    >>> sorted({f.evidence["rule"] for f in report.findings})  # doctest: +SKIP
    ['archive-path-traversal']
"""

from __future__ import annotations

import bz2
import contextlib
import io
import itertools
import logging
import lzma
import os
import posixpath
import re
import struct
import tarfile
import tempfile
import weakref
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, ClassVar

from phalanx.core.findings import Finding, Severity
from phalanx.supplychain.scan.base import BUNDLED_FORMATS, FileScanner, ScanSession, Source
from phalanx.supplychain.scan.pickle_vm import REFS

__all__ = [
    "ArchiveMember",
    "ArchiveScanner",
    "ZipEntry",
    "check_zip_structure",
    "iter_tar_members",
    "iter_zip_members",
    "scan_compressed",
    "slice_source",
]

logger = logging.getLogger(__name__)

_CHUNK = 1 << 16  # compressed bytes read at a time
_OUT_CHUNK = 1 << 20  # most bytes one decompressor call may produce
_RATIO_FLOOR = 1 << 20  # ScanLimits.max_ratio applies to members larger than 1 MiB
_IN_MEMORY = 1 << 20  # decompressed members up to this size are spooled in memory
_CRC_STORED_MAX = 64 << 20  # stored members up to this size have their CRC checked
_XZ_MEMLIMIT = 256 << 20  # xz decoder memory (xz -9 needs 65 MiB)
_LZMA_DICT_MAX = 256 << 20  # largest LZMA dictionary accepted in a zip member
_LISTED = 20  # member names listed in one finding; further findings per rule summarised
_LINK_HOPS = 40  # symbolic links followed while resolving one tar path
_TITLE_MAX = 120  # characters of member description in a finding's title

_SIG_LOCAL = b"PK\x03\x04"
_SIG_CENTRAL = b"PK\x01\x02"
_SIG_EOCD = b"PK\x05\x06"
_SIG_EOCD64 = b"PK\x06\x06"
_SIG_LOC64 = b"PK\x06\x07"
_SIG_DESCRIPTOR = b"PK\x07\x08"
_EOCD = struct.Struct("<4s4H2IH")  # 22 bytes
_EOCD64 = struct.Struct("<4sQ2H2I4Q")  # 56 bytes
_LOC64 = struct.Struct("<4sIQI")  # 20 bytes
_CENTRAL = struct.Struct("<4s6H3I5H2I")  # 46 bytes
_LOCAL = struct.Struct("<4s5H3I2H")  # 30 bytes
_U32 = 0xFFFFFFFF
_NEXT_RECORDS = (_SIG_LOCAL, _SIG_CENTRAL, _SIG_EOCD, _SIG_EOCD64)
_CONTROL = re.compile("[\x00-\x1f\x7f]")

_STORED, _DEFLATED, _BZIP2, _LZMA = 0, 8, 12, 14
_METHODS = {_STORED: "stored", _DEFLATED: "deflate", _BZIP2: "bzip2", _LZMA: "lzma"}
# Flag bits whose disagreement changes how a member is read: encrypted, data descriptor,
# strong encryption, UTF-8 names.
_FLAG_MASK = 0x0001 | 0x0008 | 0x0040 | 0x0800

# Compressed stream kinds (sniffed format ids) -> the decompressor that reads them.
_STREAMS = {"gzip": "gzip", "bz2": "bzip2", "xz": "xz", "zlib": "zlib", "lzma": "lzma-alone"}
_STREAM_SUFFIXES = {
    "zlib": ((".zz", ""), (".z", "")), "lzma": ((".tlz", ".tar"), (".lzma", "")),
    "gzip": ((".tgz", ".tar"), (".gz", "")), "bz2": ((".tbz2", ".tar"), (".tbz", ".tar"),
                                                     (".bz2", "")),
    "xz": ((".txz", ".tar"), (".xz", "")),
}

_REMEDIATION_EXTRACT = (
    "Do not extract or load the archive. If you must unpack it, use an extractor that refuses "
    "such members (Python 3.12+: tarfile's extraction filter='data'; check every zip name "
    "against the target directory), and obtain the model again from a trusted source."
)
_REMEDIATION_BOMB = (
    "Do not decompress the archive: it is built to exhaust memory or disk. Obtain the model "
    "again from a trusted source."
)
_REMEDIATION_AMBIGUOUS = (
    "Do not load the file: different tools read different contents from it, so what was "
    "scanned or reviewed may not be what a loader runs. Re-export the model from its source."
)
_REMEDIATION_UNSCANNED = (
    "Do not load the file until every member has been scanned: obtain a copy without "
    "encryption or exotic compression, or with fewer members."
)

#: rule -> (severity, title, detail, remediation)
_RULES: dict[str, tuple[Severity, str, str, str]] = {
    "archive-path-traversal": (
        Severity.HIGH, "Member path escapes the extraction directory",
        "A member's name is absolute, carries a drive letter, uses backslashes or climbs out "
        "with '..'. A tool that extracts it by name writes outside the target directory "
        "(CVE-2007-4559 for Python's tarfile; 'Zip Slip'), for instance over code that runs "
        "later.", _REMEDIATION_EXTRACT),
    "archive-link-escape": (
        Severity.HIGH, "Link member points outside the extraction directory",
        "A symbolic or hard link in the tar archive (alone or through a chain of links) "
        "resolves outside the directory it is extracted into, so extraction or a later write "
        "through the link reaches arbitrary files (CVE-2007-4559; PEP 706).",
        _REMEDIATION_EXTRACT),
    "archive-special-file": (
        Severity.MEDIUM, "Device file or FIFO in the archive",
        "Extracting a device node or a FIFO as root creates access to hardware or blocks the "
        "reader; model archives never need one.", _REMEDIATION_EXTRACT),
    "archive-setuid": (
        Severity.LOW, "Member with the setuid or setgid bit",
        "Extracted with its permissions (as root), the member runs with its owner's "
        "privileges.", _REMEDIATION_EXTRACT),
    "archive-suspicious-name": (
        Severity.MEDIUM, "Member name with NUL or control characters",
        "Loaders written in C stop at a NUL, others keep the whole name, so one member can "
        "answer to two names (a scanner checks one, the loader opens the other).",
        _REMEDIATION_AMBIGUOUS),
    "archive-duplicate-name": (
        Severity.MEDIUM, "Several members share one name",
        "Loaders disagree on which copy they read (Python's zipfile takes the last, others "
        "the first; tar extraction keeps the last), so a benign copy can hide a malicious "
        "one (the Android 'Master Key' bug, CVE-2013-4787). Every copy was scanned.",
        _REMEDIATION_AMBIGUOUS),
    "archive-too-many-members": (
        Severity.MEDIUM, "More members than the scan reads",
        "The archive holds more members than ScanLimits.max_members; the rest were not "
        "scanned. Huge member counts are also a way to exhaust scanners and extractors.",
        _REMEDIATION_UNSCANNED),
    "archive-member-too-large": (
        Severity.MEDIUM, "Member larger than the scan reads",
        "The member expands past ScanLimits.max_member_bytes; only its beginning was "
        "scanned.", _REMEDIATION_UNSCANNED),
    "archive-bomb-ratio": (
        Severity.HIGH, "Decompression bomb: compression ratio over the limit",
        "A member larger than 1 MiB expands more than ScanLimits.max_ratio times its "
        "compressed size. Real model data compresses far less; extreme ratios are the mark "
        "of a zip bomb (Fifield, 'A better zip bomb', WOOT 2019). It was not decompressed "
        "further.", _REMEDIATION_BOMB),
    "archive-total-expansion": (
        Severity.HIGH, "Decompression bomb: total expansion over the limit",
        "The archive expands past ScanLimits.max_total_bytes, declared or as decompressed; "
        "the scan stopped there and the rest was not scanned.", _REMEDIATION_BOMB),
    "archive-size-mismatch": (
        Severity.MEDIUM, "Member size differs from the size declared",
        "The member does not expand to the size its headers declare. Loaders that trust the "
        "declared size read a different, truncated content than those that decompress to the "
        "end; expanding past the declared size is also how bombs defeat size checks.",
        _REMEDIATION_AMBIGUOUS),
    "zip-overlapping-entries": (
        Severity.HIGH, "Zip entries overlap (overlapping-entry zip bomb)",
        "Several entries read the same bytes of the file: one compressed kernel expanded "
        "once per entry, the construction of Fifield's 'better zip bomb' (WOOT 2019), or "
        "entries hidden inside other entries' data. No real archive writer does this; the "
        "overlapping entries were not decompressed.", _REMEDIATION_BOMB),
    "zip-header-mismatch": (
        Severity.MEDIUM, "Central directory and local headers disagree",
        "Loaders that read the central directory (Python's zipfile, PyTorch) and those that "
        "stream the local headers see different names, sizes or compression, so they load "
        "different contents.", _REMEDIATION_AMBIGUOUS),
    "zip-bad-crc": (
        Severity.MEDIUM, "Member fails its CRC-32 check",
        "The member's bytes do not match the checksum in its header: the archive was "
        "altered after it was written. Some loaders reject it, others load it anyway.",
        _REMEDIATION_AMBIGUOUS),
    "zip-encrypted": (
        Severity.MEDIUM, "Encrypted member cannot be scanned",
        "The member is encrypted; the scan cannot see what it holds. Model archives are not "
        "encrypted member by member.", _REMEDIATION_UNSCANNED),
    "zip-unsupported-method": (
        Severity.MEDIUM, "Member compressed with a method the scan cannot read",
        "The member uses a compression method other than stored, deflate, bzip2 or LZMA. A "
        "loader that supports it would see content the scan did not.",
        _REMEDIATION_UNSCANNED),
    "zip-prepended-data": (
        Severity.MEDIUM, "Data before the first zip entry",
        "Bytes precede the first entry the central directory lists: another file glued in "
        "front (a polyglot that other tools read as a different format) or local entries the "
        "directory does not list, which streaming readers still extract. They were scanned "
        "as well.", _REMEDIATION_AMBIGUOUS),
    "zip-hidden-data": (
        Severity.MEDIUM, "Data between zip entries",
        "Bytes between entries belong to no entry the central directory lists; streaming "
        "readers may extract entries hidden there. They were scanned as well.",
        _REMEDIATION_AMBIGUOUS),
    "zip-trailing-data": (
        Severity.MEDIUM, "Data after the end of the zip archive",
        "Bytes follow the end-of-central-directory record: a second file appended to the "
        "archive, which other tools may read instead. They were scanned as well.",
        _REMEDIATION_AMBIGUOUS),
    "tar-trailing-data": (
        Severity.MEDIUM, "Data after the end of the tar archive",
        "Non-zero bytes follow the end of the archive (or a header Python's tarfile cannot "
        "parse). tarfile stops there; GNU tar skips the bad header and extracts what follows, "
        "so members can hide from one and not the other. The bytes were scanned as well.",
        _REMEDIATION_AMBIGUOUS),
    "compressed-trailing-data": (
        Severity.MEDIUM, "Data after the compressed stream",
        "Bytes follow the last compressed stream. Some decompressors ignore them, others "
        "fail or read them as another stream: a place to hide a second file. They were "
        "scanned as well.", _REMEDIATION_AMBIGUOUS),
}


# --------------------------------------------------------------------------------------------
# Public records


@dataclass(frozen=True)
class ZipEntry:
    """One entry of a zip central directory, checked against its local header.

    Args:
        index: Position in the central directory (``-1`` for an entry found only by its
            local header, outside any listed entry).
        name: The name loaders look up (central directory; CP437 or UTF-8 per flag bit 11).
        flags: General-purpose flags from the central directory.
        method: Compression method (0 stored, 8 deflate, 12 bzip2, 14 LZMA, ...).
        crc: Declared CRC-32.
        compressed_size: Declared compressed size (ZIP64 resolved).
        size: Declared uncompressed size (ZIP64 resolved).
        header_offset: Absolute file offset of the local header.
        data_offset: Absolute offset of the member's data, ``-1`` when the local header is
            unreadable.
        span_end: End of the member's bytes, data descriptor included.
    """

    index: int
    name: str
    flags: int
    method: int
    crc: int
    compressed_size: int
    size: int
    header_offset: int
    data_offset: int
    span_end: int

    @property
    def encrypted(self) -> bool:
        """Whether the entry is encrypted (traditional, strong or AES)."""
        return bool(self.flags & 0x0041) or self.method == 99

    @property
    def is_dir(self) -> bool:
        """Whether the entry is a directory (a name ending in ``/`` and no data)."""
        return self.name.endswith("/") and self.size == 0


@dataclass(frozen=True)
class ArchiveMember:
    """A member of a zip or tar archive, ready to scan.

    Args:
        name: The member's name (for bytes outside any entry, a description in ``<>``).
        source: The member's bytes, decompressed and checked; ``None`` when the member could
            not or should not be read (see ``skipped``). Valid only until the iterator that
            produced it advances: decompressed members are spooled and the spool is deleted.
        skipped: Why ``source`` is ``None`` (``"directory"``, ``"encrypted"``, ...); empty
            when it is set. The reason has already been reported as a finding, except for
            directories and links.
        entry: The zip entry, ``None`` for tar members and for bytes outside any entry.
        hidden: True for bytes no central-directory entry accounts for (prepended, between
            entries, after the end); loaders that stream local headers may still read them.
    """

    name: str
    source: Source | None
    skipped: str = ""
    entry: ZipEntry | None = None
    hidden: bool = False


# --------------------------------------------------------------------------------------------
# Byte plumbing


class _Malformed(Exception):
    def __init__(self, message: str, offset: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


class _Window(io.RawIOBase):
    """A read-only, seekable view of ``length`` bytes of ``raw`` starting at ``start``."""

    def __init__(self, raw: BinaryIO, start: int, length: int) -> None:
        super().__init__()
        self._raw = raw
        self._start = start
        self._length = max(0, length)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._length + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if pos < 0:
            raise OSError("negative seek position")
        self._pos = pos
        return pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = min(len(view), self._length - self._pos)
        if n <= 0:
            return 0
        self._raw.seek(self._start + self._pos)
        data = self._raw.read(n)
        view[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


def _window(parent: Source, start: int, length: int) -> Callable[[], BinaryIO]:
    """An opener for ``length`` bytes of ``parent`` from ``start`` (no copy)."""

    def opener() -> BinaryIO:
        return io.BufferedReader(_Window(parent.open(), start, length), buffer_size=_CHUNK)

    return opener


def slice_source(source: Source, label: str, start: int, length: int) -> Source:
    """A child of ``source`` made of ``length`` of its bytes from ``start``, without copying.

    Scanners use it for bytes embedded in a file (an appended payload, a stored member).

    Example:
        >>> tail = slice_source(source, "<appended>", 1024, source.size - 1024)  # doctest: +SKIP
    """
    return source.child(label, length, _window(source, start, length))


def _read_at(fh: BinaryIO, offset: int, n: int) -> bytes:
    if offset < 0 or n <= 0:
        return b""
    fh.seek(offset)
    return fh.read(n)


def _iter_range(fh: BinaryIO, start: int, end: int) -> Iterator[bytes]:
    """The bytes ``[start, end)`` of ``fh`` in chunks (fewer at end of file)."""
    pos = start
    while pos < end:
        data = _read_at(fh, pos, min(_CHUNK, end - pos))
        if not data:
            return
        pos += len(data)
        yield data


class _Spool:
    """Decompressed bytes: in memory up to 1 MiB, then in a private temporary file."""

    def __init__(self) -> None:
        self._memory = bytearray()
        self._path: str | None = None
        self._file: BinaryIO | None = None
        self.size = 0

    def write(self, data: bytes) -> None:
        if self._file is None and self.size + len(data) > _IN_MEMORY:
            fd, self._path = tempfile.mkstemp(prefix="phalanx-unpacked-")
            self._file = os.fdopen(fd, "wb")
            self._file.write(self._memory)
            self._memory = bytearray()
        if self._file is not None:
            self._file.write(data)
        else:
            self._memory += data
        self.size += len(data)

    def opener(self) -> Callable[[], BinaryIO]:
        if self._file is not None:
            self._file.close()
            path = self._path
            assert path is not None
            return lambda: open(path, "rb")
        blob = bytes(self._memory)
        return lambda: io.BytesIO(blob)

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._path is not None:
            with contextlib.suppress(OSError):  # already gone: nothing to clean
                os.unlink(self._path)
        self._memory = bytearray()


class _Inflater:
    """One compressed stream, decompressed in bounded steps (never more than 1 MiB a call)."""

    def __init__(self, kind: str, filters: list[dict[str, Any]] | None = None) -> None:
        self._zlib = kind in ("deflate", "gzip", "zlib")
        self._d: Any
        if kind == "deflate":
            self._d = zlib.decompressobj(-15)
        elif kind == "gzip":
            self._d = zlib.decompressobj(31)  # gzip wrapper; CRC and length are verified
        elif kind == "bzip2":
            self._d = bz2.BZ2Decompressor()
        elif kind == "xz":
            self._d = lzma.LZMADecompressor(lzma.FORMAT_XZ, memlimit=_XZ_MEMLIMIT)
        elif kind == "zlib":
            self._d = zlib.decompressobj(15)  # zlib wrapper; the Adler-32 is verified
        elif kind == "lzma-alone":
            self._d = lzma.LZMADecompressor(lzma.FORMAT_ALONE, memlimit=_XZ_MEMLIMIT)
        elif kind == "lzma-raw":
            self._d = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=filters)
        else:
            raise ValueError(f"unknown stream kind {kind!r}")

    @property
    def eof(self) -> bool:
        return bool(self._d.eof)

    @property
    def unused_data(self) -> bytes:
        return bytes(self._d.unused_data)

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self._d.eof:
            return
        out = self._d.decompress(data, _OUT_CHUNK)
        while True:
            if out:
                yield out
            if self._d.eof:
                return
            if self._zlib:
                tail = self._d.unconsumed_tail
                if not tail and len(out) < _OUT_CHUNK:
                    return
                out = self._d.decompress(tail, _OUT_CHUNK)
            else:
                if self._d.needs_input:
                    return
                out = self._d.decompress(b"", _OUT_CHUNK)


_DECODE_ERRORS = (zlib.error, OSError, EOFError, lzma.LZMAError, ValueError, MemoryError,
                  _Malformed)


@dataclass
class _Expanded:
    spool: _Spool | None
    produced: int = 0
    crc: int = 0
    limit: str = ""  # "ratio", "total", "member" when a limit stopped it
    error: str = ""  # corrupt or truncated compressed data
    eof: bool = False


def _expand(chunks: Iterator[bytes], inflater: _Inflater, session: ScanSession,
            compressed_size: int) -> _Expanded:
    """Decompress ``chunks`` into a spool, within the limits."""
    limits = session.limits
    ratio_cap = max(_RATIO_FLOOR, int(limits.max_ratio * max(compressed_size, 1)))
    result = _Expanded(spool=_Spool())
    try:
        for data in chunks:
            for out in inflater.feed(data):
                result.produced += len(out)
                session.bytes_expanded += len(out)
                result.crc = zlib.crc32(out, result.crc)
                if result.produced > ratio_cap:
                    result.limit = "ratio"
                elif session.bytes_expanded > limits.max_total_bytes:
                    result.limit = "total"
                elif result.produced > limits.max_member_bytes:
                    result.limit = "member"
                    return result  # keep what fits: its beginning is still worth scanning
                if result.limit:
                    _drop(result)
                    return result
                if result.spool is not None:
                    result.spool.write(out)
            if inflater.eof:
                break
    except _DECODE_ERRORS as exc:
        result.error = f"corrupt compressed data ({type(exc).__name__}: {exc})"
        _drop(result)
        return result
    result.eof = inflater.eof
    return result


def _drop(result: _Expanded) -> None:
    if result.spool is not None:
        result.spool.discard()
        result.spool = None


class _Tally:
    """Caps findings per rule: the first ``_LISTED`` are reported, the rest summarised."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def admit(self, rule: str) -> bool:
        self.counts[rule] += 1
        return self.counts[rule] <= _LISTED

    def summaries(self, source: Source, session: ScanSession, scanner: str) -> Iterator[Finding]:
        for rule, count in sorted(self.counts.items()):
            if count > _LISTED:
                yield _finding(session, source, rule, scanner=scanner,
                               title_suffix=f"({count - _LISTED} more members not listed)",
                               evidence={"count": count - _LISTED})


@dataclass
class _Tree:
    """Members read under one top-level file, nested archives included."""

    root: str
    members: int = 0
    reported: bool = False


# Per session (weakly held, so it goes with the session): the tree being scanned. Nesting
# multiplies the per-archive member limit (42.zip: 16 archives of 16 archives of ... of
# bombs), so every archive under one top-level file draws on a single budget of
# ScanLimits.max_members. A member's name starts with its root's name and "!", which is how
# a new top-level file is told apart from a member of the current one.
_TREES: weakref.WeakKeyDictionary[ScanSession, _Tree] = weakref.WeakKeyDictionary()


def _begin(source: Source, session: ScanSession) -> None:
    """A top-level archive starts a new budget."""
    if source.depth == 0:
        _TREES[session] = _Tree(root=source.name)


def _spend(source: Source, session: ScanSession) -> _Tree | None:
    """Count one member read from ``source``; the tree when its budget is spent."""
    tree = _TREES.get(session)
    if tree is None or (source.name != tree.root
                        and not source.name.startswith(tree.root + "!")):
        tree = _Tree(root=source.name)  # not under the last root: a new top-level file
        _TREES[session] = tree
    tree.members += 1
    return tree if tree.members > session.limits.max_members else None


def _over_budget(source: Source, session: ScanSession, tree: _Tree,
                 scanner: str) -> Iterator[Finding]:
    if not tree.reported:
        tree.reported = True
        yield _finding(session, source, "archive-too-many-members", scanner=scanner,
                       title_suffix="(nested archives, in all)",
                       evidence={"limit": session.limits.max_members, "root": tree.root,
                                 "incomplete": True})


def _finding(session: ScanSession, source: Source, rule: str, *, scanner: str,
             evidence: dict[str, Any] | None = None, severity: Severity | None = None,
             title_suffix: str = "") -> Finding:
    default, title, detail, remediation = _RULES[rule]
    if len(title_suffix) > _TITLE_MAX:  # member names are attacker-chosen: keep titles short
        title_suffix = title_suffix[: _TITLE_MAX - 3] + "..."
    return session.finding(
        source, rule, severity if severity is not None else default,
        title + title_suffix if title_suffix.startswith(":") else f"{title} {title_suffix}".strip(),
        detail, scanner=scanner, evidence=evidence, remediation=remediation,
        refs=REFS,
    )


def _grouped(session: ScanSession, source: Source, problems: dict[str, list[str]], *,
             scanner: str, extra: dict[str, dict[str, Any]] | None = None) -> Iterator[Finding]:
    """One finding per rule, listing the members concerned."""
    for rule in sorted(problems, key=lambda r: (-_RULES[r][0], r)):
        items = problems[rule]
        suffix = f": {items[0]}" if len(items) == 1 else f"({len(items)} members)"
        evidence: dict[str, Any] = {"members": items[:_LISTED], "count": len(items)}
        if extra and rule in extra:
            evidence.update(extra[rule])
        yield _finding(session, source, rule, scanner=scanner, evidence=evidence,
                       title_suffix=suffix)


# --------------------------------------------------------------------------------------------
# Names and paths


def _path_problem(name: str) -> str | None:
    """Why extracting a member called ``name`` could write outside the target directory."""
    if name.startswith(("/", "\\")):
        return "absolute path"
    if len(name) >= 2 and name[1] == ":" and name[0].isalpha():
        return "drive letter"
    if "\\" in name:
        return "backslash separator"
    if ".." in name.split("/"):
        return "'..' component"
    return None


def _name_problem(name: str) -> str | None:
    if "\x00" in name:
        return "NUL character"
    if "\ufffd" in name:
        return "undecodable bytes"
    if _CONTROL.search(name):
        return "control character"
    return None


def _check_name(name: str, problems: dict[str, list[str]]) -> None:
    path = _path_problem(name)
    if path:
        problems["archive-path-traversal"].append(f"{name!r} ({path})")
    odd = _name_problem(name)
    if odd:
        problems["archive-suspicious-name"].append(f"{name!r} ({odd})")


def _resolve(path: str, links: dict[str, str]) -> str | None:
    """``path`` inside a virtual extraction root, following ``links``; ``None`` if it leaves.

    Each prefix of the path that names a symbolic link extracted earlier is replaced by the
    link's target, as the file system would do when extracting, so a chain of individually
    harmless links (``a -> b``, ``b/c -> ..``, ``a/c/d -> ..``) is caught.
    """
    parts = path.replace("\\", "/").split("/")
    parts.reverse()
    stack: list[str] = []
    hops = 0
    while parts:
        part = parts.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if not stack:
                return None
            stack.pop()
            continue
        stack.append(part)
        target = links.get("/".join(stack))
        if target is None:
            continue
        hops += 1
        if hops > _LINK_HOPS or _path_problem(target) in ("absolute path", "drive letter"):
            return None
        stack.pop()
        parts.extend(reversed(target.replace("\\", "/").split("/")))
    return "/".join(stack)


def _norm(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.rstrip("/")


# --------------------------------------------------------------------------------------------
# Zip: structure


@dataclass
class _Layout:
    entries: list[ZipEntry]
    problems: dict[str, list[str]]  # rule -> member descriptions, from the headers
    declared_count: int
    cd_start: int
    records: int  # start of the end records (zip64 record when present)
    eocd_end: int
    base: int
    complete: bool  # every central directory entry was read (not cut at max_members)


def _zip64_fields(extra: bytes, values: list[int]) -> list[int]:
    """Replace the 32-bit ``values`` that read 0xFFFFFFFF by the ZIP64 extra field's."""
    wanted = [i for i, v in enumerate(values) if v == _U32]
    if not wanted:
        return values
    for header_id, data in _extra_fields(extra):
        if header_id != 0x0001:
            continue
        out = list(values)
        for k, i in enumerate(wanted):
            if len(data) < 8 * (k + 1):
                raise _Malformed("ZIP64 extra field is too short")
            out[i] = struct.unpack_from("<Q", data, 8 * k)[0]
        return out
    raise _Malformed("ZIP64 sizes announced without a ZIP64 extra field")


def _extra_fields(extra: bytes) -> Iterator[tuple[int, bytes]]:
    pos = 0
    while pos + 4 <= len(extra):
        header_id, length = struct.unpack_from("<HH", extra, pos)
        yield header_id, extra[pos + 4: pos + 4 + length]
        pos += 4 + length


def _decode_name(raw: bytes, flags: int) -> str:
    if flags & 0x0800:
        return raw.decode("utf-8", errors="replace")
    return raw.decode("cp437")


def _read_layout(fh: BinaryIO, size: int, max_members: int) -> _Layout:
    """Parse the end records, the central directory and every local header."""
    if size < _EOCD.size:
        raise _Malformed("too short to be a zip archive")
    tail_len = min(size, _EOCD.size + 0xFFFF)
    tail = _read_at(fh, size - tail_len, tail_len)
    # Like Python's zipfile, take the last end record in the final 64 KiB.
    pos = tail.rfind(_SIG_EOCD, 0, max(0, len(tail) - _EOCD.size + len(_SIG_EOCD)))
    if pos < 0:
        raise _Malformed("no end-of-central-directory record")
    eocd = size - tail_len + pos
    _, disk, cd_disk, n_disk, n_total, cd_size, cd_offset, comment_len = _EOCD.unpack_from(
        tail, pos)
    problems: dict[str, list[str]] = defaultdict(list)
    if disk or cd_disk:
        raise _Malformed("multi-disk (spanned) zip archive", eocd)
    if n_disk != n_total:
        problems["zip-header-mismatch"].append(
            f"end record: {n_disk} entries on this disk but {n_total} in all")
    records = eocd
    loc = _read_at(fh, eocd - _LOC64.size, _LOC64.size)
    if len(loc) == _LOC64.size and loc[:4] == _SIG_LOC64:
        at = eocd - _LOC64.size - _EOCD64.size
        rec = _read_at(fh, at, _EOCD64.size)
        if len(rec) < _EOCD64.size or rec[:4] != _SIG_EOCD64:
            raise _Malformed("ZIP64 end record missing or damaged", max(at, 0))
        _, _, _, _, disk64, cd_disk64, _, n_total, cd_size, cd_offset = _EOCD64.unpack(rec)
        if disk64 or cd_disk64:
            raise _Malformed("multi-disk (spanned) zip archive", at)
        records = at
    base = records - cd_size - cd_offset
    if base < 0:
        raise _Malformed("central directory offset points past the end records", records)
    cd_start = base + cd_offset
    raw: list[tuple[tuple[int, ...], bytes, bytes]] = []
    fh.seek(cd_start)
    pos = cd_start
    while pos < records and len(raw) < max_members:
        header = fh.read(_CENTRAL.size)
        if len(header) < _CENTRAL.size or header[:4] != _SIG_CENTRAL:
            raise _Malformed("damaged central directory entry", pos)
        fields = _CENTRAL.unpack(header)
        name_len, extra_len, comment_len_e = fields[10], fields[11], fields[12]
        name = fh.read(name_len)
        extra = fh.read(extra_len)
        fh.seek(comment_len_e, io.SEEK_CUR)
        pos += _CENTRAL.size + name_len + extra_len + comment_len_e
        if len(name) < name_len or len(extra) < extra_len or pos > records:
            raise _Malformed("central directory entry runs past the directory", pos)
        raw.append((fields, name, extra))
    complete = pos >= records
    if complete and len(raw) != n_total:
        problems["zip-header-mismatch"].append(
            f"end record declares {n_total} entries, the central directory holds {len(raw)}")
    declared = max(n_total, len(raw) + (0 if complete else 1))
    entries = [_entry(fh, size, base, i, fields, name, extra, problems)
               for i, (fields, name, extra) in enumerate(raw)]
    return _Layout(entries=entries, problems=problems, declared_count=declared,
                   cd_start=cd_start, records=records,
                   eocd_end=min(size, eocd + _EOCD.size + comment_len), base=base,
                   complete=complete)


def _entry(fh: BinaryIO, size: int, base: int, index: int, fields: tuple[int, ...],
           raw_name: bytes, extra: bytes, problems: dict[str, list[str]]) -> ZipEntry:
    flags, method, crc = fields[3], fields[4], fields[7]
    name = _decode_name(raw_name, flags)
    usize, csize, offset = fields[9], fields[8], fields[16]
    if _U32 in (usize, csize, offset):
        try:
            usize, csize, offset = _zip64_fields(extra, [usize, csize, offset])
        except _Malformed as exc:
            problems["malformed"].append(f"{name!r}: {exc.message}")
    _check_name(name, problems)
    for header_id, data in _extra_fields(extra):
        if header_id == 0x7075 and len(data) > 5:  # Info-ZIP Unicode Path
            alias = data[5:].decode("utf-8", errors="replace")
            if alias != name:
                problems["zip-header-mismatch"].append(
                    f"{name!r}: Unicode Path field names it {alias!r}")
                _check_name(alias, problems)
    header = base + offset

    def unread() -> ZipEntry:  # the local header or the data cannot be found
        return ZipEntry(index=index, name=name, flags=flags, method=method, crc=crc,
                        compressed_size=csize, size=usize, header_offset=header,
                        data_offset=-1, span_end=header)

    # One read for the local header and, as writers make them, its name and extra field as
    # long as the central directory's; a second only when they are longer.
    local = _read_at(fh, header, _LOCAL.size + len(raw_name) + len(extra))
    if len(local) < _LOCAL.size or local[:4] != _SIG_LOCAL:
        problems["malformed"].append(f"{name!r}: no local header at offset {header}")
        return unread()
    _, _, lflags, lmethod, _, _, lcrc, lcsize, lusize, lname_len, lextra_len = (
        _LOCAL.unpack_from(local))
    if _LOCAL.size + lname_len + lextra_len > len(local):
        local += _read_at(fh, header + len(local), _LOCAL.size + lname_len + lextra_len
                          - len(local))
    lname = local[_LOCAL.size:_LOCAL.size + lname_len]
    lextra = local[_LOCAL.size + lname_len:_LOCAL.size + lname_len + lextra_len]
    data_offset = header + _LOCAL.size + lname_len + lextra_len
    data_end = data_offset + csize
    if data_end > size:
        problems["malformed"].append(f"{name!r}: data runs past the end of the file")
        return unread()
    differences = []
    if lname != raw_name:
        differences.append(f"local name {_decode_name(lname, lflags)!r}")
    if lmethod != method:
        differences.append(f"method {method} vs {lmethod}")
    if (lflags ^ flags) & _FLAG_MASK:
        differences.append(f"flags {flags:#06x} vs {lflags:#06x}")
    if not lflags & 0x0008:
        if _U32 in (lusize, lcsize):
            try:
                lusize, lcsize = _zip64_fields(lextra, [lusize, lcsize])
            except _Malformed:
                differences.append("damaged local ZIP64 field")
        if lcrc != crc:
            differences.append(f"CRC {crc:#010x} vs {lcrc:#010x}")
        if (lcsize, lusize) != (csize, usize):
            differences.append(f"sizes {csize}/{usize} vs {lcsize}/{lusize}")
    if differences:
        problems["zip-header-mismatch"].append(f"{name!r}: " + ", ".join(differences))
    span_end = data_end
    if lflags & 0x0008:  # a data descriptor follows the data
        span_end = min(size, data_end + _descriptor_size(fh, data_end, lextra))
    return ZipEntry(index=index, name=name, flags=flags, method=method, crc=crc,
                    compressed_size=csize, size=usize, header_offset=header,
                    data_offset=data_offset, span_end=span_end)


def _descriptor_size(fh: BinaryIO, at: int, local_extra: bytes) -> int:
    """Length of the data descriptor at ``at``: 12 or 20 bytes, plus 4 with its signature.

    Writers disagree on when sizes in it are 64-bit; the length after which the next
    record's signature appears settles it, and the ZIP64 extra field decides otherwise.
    """
    window = _read_at(fh, at, 28)  # a signature, 64-bit sizes and the next signature
    signed = 4 if window[:4] == _SIG_DESCRIPTOR else 0
    zip64 = any(h == 0x0001 for h, _ in _extra_fields(local_extra))
    sizes = (20, 12) if zip64 else (12, 20)
    for n in sizes:
        if window[signed + n:signed + n + 4] in _NEXT_RECORDS:
            return signed + n
    return signed + sizes[0]


@dataclass
class _Analysis:
    layout: _Layout
    problems: dict[str, list[str]]
    extra: dict[str, dict[str, Any]]
    skip: dict[int, str]  # entry index -> why it is not read
    gaps: list[tuple[int, int, str]]  # (start, end, rule)


def _analyse(fh: BinaryIO, size: int, session: ScanSession) -> _Analysis:
    limits = session.limits
    layout = _read_layout(fh, size, limits.max_members)
    problems: dict[str, list[str]] = defaultdict(list, {k: list(v) for k, v in
                                                        layout.problems.items()})
    extra: dict[str, dict[str, Any]] = {}
    skip: dict[int, str] = {}
    entries = layout.entries
    if layout.declared_count > limits.max_members:
        problems["archive-too-many-members"].append(
            f"{layout.declared_count} entries declared; the first {limits.max_members} read")
        extra["archive-too-many-members"] = {"incomplete": True,
                                             "declared": layout.declared_count}
    seen: Counter[str] = Counter(e.name for e in entries if not e.is_dir)
    for name, count in sorted(seen.items()):
        if count > 1:
            problems["archive-duplicate-name"].append(f"{name!r} ({count} copies)")
    declared_total = 0
    for e in entries:
        if e.data_offset < 0:
            skip[e.index] = "damaged local header"
        elif e.encrypted:
            problems["zip-encrypted"].append(repr(e.name))
            skip[e.index] = "encrypted"
        elif e.method not in _METHODS:
            problems["zip-unsupported-method"].append(f"{e.name!r} (method {e.method})")
            skip[e.index] = f"unsupported compression method {e.method}"
        elif e.method != _STORED:
            declared_total += e.size
            if e.size > _RATIO_FLOOR and e.size > limits.max_ratio * max(e.compressed_size, 1):
                ratio = e.size / max(e.compressed_size, 1)
                problems["archive-bomb-ratio"].append(
                    f"{e.name!r} ({e.compressed_size} -> {e.size} bytes declared, "
                    f"ratio {ratio:.0f})")
                skip[e.index] = "compression ratio over the limit"
    if declared_total > limits.max_total_bytes:
        problems["archive-total-expansion"].append(
            f"{declared_total} bytes declared in all (limit {limits.max_total_bytes})")
    # Every byte of the file should belong to exactly one structure: an entry (local header,
    # data, descriptor), the central directory, or the end records.
    spans = [(e.header_offset, max(e.span_end, e.header_offset + 1), e.index)
             for e in entries if e.data_offset >= 0]
    spans += [(layout.cd_start, layout.records, -1), (layout.records, layout.eocd_end, -2)]
    spans = sorted(s for s in spans if s[1] > s[0])
    by_index = {e.index: e for e in entries}
    end, owner = 0, None
    overlaps: list[str] = []
    gaps: list[tuple[int, int, str]] = []
    for start, stop, index in spans:
        if start < end and owner is not None:
            overlaps.append(f"{_span_label(index, by_index)} overlaps "
                            f"{_span_label(owner, by_index)}")
            if index >= 0:
                skip.setdefault(index, "overlaps another entry")
        elif start > end:
            gaps.append((end, start, _gap_rule(end, start, size, layout)))
        if stop > end:
            end, owner = stop, index
    if end < size:
        gaps.append((end, size, _gap_rule(end, size, size, layout)))
    if not layout.complete:
        gaps = []  # entries not read would show as gaps: nothing to say about them
    if overlaps:
        problems["zip-overlapping-entries"] = overlaps
    gaps = [g for g in gaps if not _is_descriptor_slack(g, entries)]
    for start, stop, rule in gaps:
        found = [e.name for e in _orphans(fh, start, stop, limits.max_members)]
        text = f"{stop - start} bytes at offset {start}"
        if found:
            text += f" holding local entries {found[:_LISTED]!r}"
        problems[rule].append(text)
    if layout.base:
        problems["zip-prepended-data"].append(
            f"all offsets are shifted by {layout.base} bytes: zipfile compensates, other "
            "loaders read different bytes")
    return _Analysis(layout, problems, extra, skip, gaps)


def _span_label(index: int, by_index: dict[int, ZipEntry]) -> str:
    if index >= 0:
        return repr(by_index[index].name)
    return "the central directory" if index == -1 else "the end records"


def _gap_rule(start: int, stop: int, size: int, layout: _Layout) -> str:
    if start == 0:
        return "zip-prepended-data"
    if start >= layout.eocd_end and stop == size:
        return "zip-trailing-data"
    return "zip-hidden-data"


def _is_descriptor_slack(gap: tuple[int, int, str], entries: list[ZipEntry]) -> bool:
    """A few bytes after an entry with a data descriptor whose size was guessed short."""
    start, stop, _ = gap
    return stop - start <= 8 and any(e.span_end == start and e.flags & 0x0008 for e in entries)


def _orphans(fh: BinaryIO, start: int, stop: int, limit: int) -> list[ZipEntry]:
    """Local entries in ``[start, stop)`` that the central directory does not list.

    Streaming readers (``unzip`` on a pipe, Java's ``ZipInputStream``) extract these.
    """
    found: list[ZipEntry] = []
    pos = start
    while pos + _LOCAL.size <= stop and len(found) < limit:
        local = _read_at(fh, pos, _LOCAL.size)
        if local[:4] != _SIG_LOCAL:
            break
        _, _, flags, method, _, _, crc, csize, usize, name_len, extra_len = _LOCAL.unpack(local)
        raw_name = _read_at(fh, pos + _LOCAL.size, name_len)
        lextra = _read_at(fh, pos + _LOCAL.size + name_len, extra_len)
        try:
            usize, csize = _zip64_fields(lextra, [usize, csize])
        except _Malformed:
            break
        data_offset = pos + _LOCAL.size + name_len + extra_len
        if flags & 0x0008 or data_offset + csize > stop:
            break  # sizes unknown from the local header: the bytes are scanned raw
        found.append(ZipEntry(index=-1, name=_decode_name(raw_name, flags), flags=flags,
                              method=method, crc=crc, compressed_size=csize, size=usize,
                              header_offset=pos, data_offset=data_offset,
                              span_end=data_offset + csize))
        pos = data_offset + csize
    return found


def check_zip_structure(source: Source, session: ScanSession, *,
                        scanner: str) -> Iterator[Finding]:
    """Check a zip archive's structure without decompressing anything.

    For scanners of zip-based formats (PyTorch, TorchScript, ``.npz``, ``.keras``) that want
    the structural findings only. It parses the end records (ZIP64 included), the central
    directory and every local header, and reports, one finding per rule listing the members:
    path traversal, odd names, duplicate names, overlapping entries (Fifield's bomb),
    central/local disagreement, encrypted members, unsupported compression methods, declared
    compression ratios and totals over the limits, too many members, and bytes before,
    between or after the entries. A zip that does not parse gives one ``malformed`` finding.

    To scan the members too, call :func:`iter_zip_members` instead (it yields these findings
    first); do not call both, or the findings are reported twice.

    Args:
        source: The archive.
        session: The scan session (its limits apply).
        scanner: The calling scanner's id, recorded in the findings.

    Example:
        >>> findings = list(check_zip_structure(source, session, scanner="pytorch"))  # doctest: +SKIP
    """
    try:
        with source.open() as fh:
            analysis = _analyse(fh, source.size, session)
    except _Malformed as exc:
        yield session.malformed(source, exc.message, scanner=scanner, offset=exc.offset)
        return
    except OSError as exc:
        yield session.error(source, f"cannot read: {exc}", scanner=scanner)
        return
    yield from _structure_findings(source, session, analysis, scanner)


def _structure_findings(source: Source, session: ScanSession, analysis: _Analysis,
                        scanner: str) -> Iterator[Finding]:
    problems = dict(analysis.problems)
    damaged = problems.pop("malformed", [])
    if damaged:
        yield session.malformed(
            source, f"{len(damaged)} damaged entries: " + "; ".join(damaged[:3]),
            scanner=scanner)
    yield from _grouped(session, source, {k: v for k, v in problems.items() if v},
                        scanner=scanner, extra=analysis.extra)


# --------------------------------------------------------------------------------------------
# Zip: members


def iter_zip_members(source: Source, session: ScanSession, *, scanner: str,
                     check: bool = True) -> Iterator[Finding | ArchiveMember]:
    """The members of a zip archive, decompressed within the limits, and the findings.

    Yields, in order: the structural findings of :func:`check_zip_structure` (when
    ``check``), then one :class:`ArchiveMember` per central-directory entry (in directory
    order) interleaved with the findings made while reading it (``archive-bomb-ratio``,
    ``archive-total-expansion``, ``archive-size-mismatch``, ``zip-bad-crc``, ``malformed``),
    then one member per region of bytes that no entry accounts for (``hidden=True``: data
    prepended to the archive, local entries missing from the directory, appended data).

    A member's ``source`` is ``None`` when it is not read: a directory, an encrypted member,
    an unsupported method, an entry overlapping another, a declared ratio over the limit, a
    damaged local header, or a limit reached while decompressing. Stored members are windows
    onto the archive (nothing copied); compressed ones are decompressed once, checked
    (CRC-32, declared size, ratio, the session's total) and spooled, and the spool is deleted
    when the iterator advances: scan ``member.source`` before asking for the next item.
    The session's ``bytes_expanded`` counts what is decompressed; when it passes
    ``max_total_bytes`` the iteration stops.

    The caller decides what to do with each member; to scan it by content, hand it to
    ``session.scan(member.source)`` (nesting depth is enforced there).

    Args:
        source: The archive.
        session: The scan session (its limits apply).
        scanner: The calling scanner's id, recorded in the findings.
        check: Whether to yield the structural findings first (``malformed`` included);
            with ``False`` an archive that does not parse yields nothing.

    Example:
        >>> for item in iter_zip_members(source, session, scanner="npz"):  # doctest: +SKIP
        ...     if isinstance(item, Finding):
        ...         yield item
        ...     elif item.source is not None:
        ...         yield from session.scan(item.source)
    """
    try:
        fh = source.open()
    except OSError as exc:
        yield session.error(source, f"cannot read: {exc}", scanner=scanner)
        return
    with fh:
        try:
            analysis = _analyse(fh, source.size, session)
        except _Malformed as exc:
            if check:
                yield session.malformed(source, exc.message, scanner=scanner,
                                        offset=exc.offset)
            return
        except OSError as exc:
            yield session.error(source, f"cannot read: {exc}", scanner=scanner)
            return
        if check:
            yield from _structure_findings(source, session, analysis, scanner)
        _begin(source, session)
        tally = _Tally()
        copies: Counter[str] = Counter()
        for entry in analysis.layout.entries:
            copies[entry.name] += 1
            label = entry.name if copies[entry.name] == 1 else (
                f"{entry.name} (copy {copies[entry.name]})")
            if entry.is_dir:
                yield ArchiveMember(entry.name, None, "directory", entry)
                continue
            why = analysis.skip.get(entry.index)
            if why:
                yield ArchiveMember(entry.name, None, why, entry)
                continue
            spent = _spend(source, session)
            if spent is not None:
                yield from _over_budget(source, session, spent, scanner)
                break
            stop = yield from _read_entry(fh, source, session, entry, label, scanner, tally)
            if stop:
                yield from tally.summaries(source, session, scanner)
                return
        for start, stop_at, rule in analysis.gaps:
            yield from _gap_members(fh, source, session, start, stop_at, rule, scanner, tally)
        yield from tally.summaries(source, session, scanner)


def _read_entry(fh: BinaryIO, source: Source, session: ScanSession, entry: ZipEntry,
                label: str, scanner: str, tally: _Tally,
                hidden: bool = False) -> Generator[Finding | ArchiveMember, None, bool]:
    """Read one entry: findings, then the member. Returns True when the scan must stop."""
    if entry.method == _STORED:
        if entry.compressed_size != entry.size and tally.admit("archive-size-mismatch"):
            yield _finding(session, source, "archive-size-mismatch", scanner=scanner,
                           title_suffix=f": {entry.name!r}",
                           evidence={"member": entry.name, "declared": entry.size,
                                     "stored": entry.compressed_size})
        end = entry.data_offset + entry.compressed_size
        if entry.compressed_size <= _CRC_STORED_MAX:
            crc = 0
            for data in _iter_range(fh, entry.data_offset, end):
                crc = zlib.crc32(data, crc)
            if crc != entry.crc and tally.admit("zip-bad-crc"):
                yield _finding(session, source, "zip-bad-crc", scanner=scanner,
                               title_suffix=f": {entry.name!r}",
                               evidence={"member": entry.name, "declared": entry.crc,
                                         "actual": crc})
        child = source.child(label, entry.compressed_size,
                             _window(source, entry.data_offset, entry.compressed_size))
        yield ArchiveMember(entry.name, child, "", entry, hidden)
        return False
    end = entry.data_offset + entry.compressed_size
    chunks = _iter_range(fh, entry.data_offset, end)
    try:
        inflater, leftover = _member_inflater(entry, chunks)
    except _Malformed as exc:
        yield session.malformed(source, f"member {entry.name!r}: {exc.message}",
                                scanner=scanner)
        yield ArchiveMember(entry.name, None, exc.message, entry, hidden)
        return False
    if leftover:
        chunks = itertools.chain((leftover,), chunks)
    result = _expand(chunks, inflater, session, entry.compressed_size)
    stop = False
    evidence: dict[str, Any] = {"member": entry.name, "compressed": entry.compressed_size,
                                "declared": entry.size, "expanded_before_stop": result.produced}
    if result.limit == "ratio":
        yield _finding(session, source, "archive-bomb-ratio", scanner=scanner,
                       title_suffix=f": {entry.name!r}", evidence=evidence)
    elif result.limit == "total":
        yield _finding(session, source, "archive-total-expansion", scanner=scanner,
                       evidence={**evidence, "limit": session.limits.max_total_bytes,
                                 "incomplete": True})
        stop = True
    elif result.limit == "member":
        yield _finding(session, source, "archive-member-too-large", scanner=scanner,
                       title_suffix=f": {entry.name!r}",
                       evidence={**evidence, "limit": session.limits.max_member_bytes,
                                 "incomplete": True})
    elif result.error or (not result.eof and entry.method != _LZMA):
        yield session.malformed(
            source, f"member {entry.name!r}: {result.error or 'compressed data ends early'}",
            scanner=scanner)
    else:
        if result.produced != entry.size and tally.admit("archive-size-mismatch"):
            severity = Severity.HIGH if result.produced > entry.size else Severity.MEDIUM
            yield _finding(session, source, "archive-size-mismatch", scanner=scanner,
                           severity=severity, title_suffix=f": {entry.name!r}",
                           evidence={**evidence, "actual": result.produced})
        if result.crc != entry.crc and tally.admit("zip-bad-crc"):
            yield _finding(session, source, "zip-bad-crc", scanner=scanner,
                           title_suffix=f": {entry.name!r}",
                           evidence={"member": entry.name, "declared": entry.crc,
                                     "actual": result.crc})
    spool = result.spool
    if spool is None:
        yield ArchiveMember(entry.name, None, f"not decompressed ({result.limit or 'corrupt'})",
                            entry, hidden)
        return stop
    try:
        child = source.child(label, spool.size, spool.opener())
        yield ArchiveMember(entry.name, child, "", entry, hidden)
    finally:
        spool.discard()
    return stop


def _member_inflater(entry: ZipEntry, chunks: Iterator[bytes]) -> tuple[_Inflater, bytes]:
    """The decompressor for ``entry``, and bytes already read from ``chunks`` to set it up."""
    if entry.method == _DEFLATED:
        return _Inflater("deflate"), b""
    if entry.method == _BZIP2:
        return _Inflater("bzip2"), b""
    # LZMA in zip: version (2 bytes), properties size (2), then the 5-byte LZMA1 properties.
    head = b""
    for data in chunks:
        head += data
        if len(head) >= 9:
            break
    if len(head) < 9:
        raise _Malformed("LZMA header is truncated")
    (props_size,) = struct.unpack_from("<H", head, 2)
    if props_size != 5:
        raise _Malformed(f"LZMA properties of {props_size} bytes (5 expected)")
    packed, dict_size = head[4], struct.unpack_from("<I", head, 5)[0]
    if packed >= 9 * 5 * 5:
        raise _Malformed("invalid LZMA properties")
    if dict_size > _LZMA_DICT_MAX:
        raise _Malformed(f"LZMA dictionary of {dict_size} bytes is over the limit")
    lc, lp, pb = packed % 9, (packed // 9) % 5, packed // 45
    filters = [{"id": lzma.FILTER_LZMA1, "dict_size": dict_size, "lc": lc, "lp": lp, "pb": pb}]
    try:
        return _Inflater("lzma-raw", filters), head[9:]
    except lzma.LZMAError:  # liblzma wants lc + lp <= 4, which the byte's range allows past
        raise _Malformed(
            f"LZMA properties the decoder refuses (lc={lc}, lp={lp}, pb={pb})") from None


def _gap_members(fh: BinaryIO, source: Source, session: ScanSession, start: int, stop: int,
                 rule: str, scanner: str, tally: _Tally) -> Iterator[Finding | ArchiveMember]:
    """Scan the bytes no entry accounts for: local entries hidden there, then the rest."""
    pos = start
    for orphan in _orphans(fh, start, stop, session.limits.max_members):
        label = f"{orphan.name} (not in the central directory)"
        if orphan.encrypted or orphan.method not in _METHODS:
            yield ArchiveMember(label, None, "encrypted or unsupported method", orphan, True)
        else:
            halt = yield from _read_entry(fh, source, session, orphan, label, scanner, tally,
                                          hidden=True)
            if halt:
                return
        pos = orphan.span_end
    if pos < stop and stop - pos <= session.limits.max_member_bytes:
        where = {"zip-prepended-data": "before the first entry",
                 "zip-trailing-data": "after the end of the archive"}.get(rule,
                                                                          "between entries")
        label = f"<{stop - pos} bytes {where} at offset {pos}>"
        yield ArchiveMember(label, source.child(label, stop - pos, _window(source, pos,
                                                                           stop - pos)),
                            "", None, True)


# --------------------------------------------------------------------------------------------
# Tar


class _ReadGuard:
    """Hands :mod:`tarfile` the archive, refusing any single read over ``max_read`` bytes.

    tarfile reads a PAX or GNU long-name header's whole payload in one call; a header that
    claims gigabytes would otherwise be read into memory.
    """

    def __init__(self, raw: BinaryIO, max_read: int) -> None:
        self._raw = raw
        self._max = max_read

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0 or n > self._max:
            raise OSError(f"tar header of {n} bytes is over the {self._max}-byte limit")
        return self._raw.read(n)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()


_TAR_ERRORS = (tarfile.TarError, OSError, EOFError, ValueError, UnicodeError, struct.error,
               OverflowError)


def iter_tar_members(source: Source, session: ScanSession, *,
                     scanner: str) -> Iterator[Finding | ArchiveMember]:
    """The members of a tar archive and the findings about them (headers only, no extraction).

    Yields an :class:`ArchiveMember` for every member (regular files with a ``source``: a
    window onto the archive, nothing copied; directories, links and special files with
    ``source=None``), then the findings, one per rule listing the members: path traversal,
    link escapes (each symbolic link is resolved through the links extracted before it, so
    chains are caught), device files and FIFOs, setuid/setgid bits, odd and duplicate names,
    too many members, and ``malformed`` for a damaged or truncated archive. Last, when
    non-zero bytes follow the archive's end (``tar-trailing-data``), a ``hidden`` member holds
    them. PAX and GNU headers larger than ``max_header_bytes`` are refused rather than read
    into memory.

    Args:
        source: The archive (uncompressed; a ``.tar.gz`` is a gzip stream whose decompressed
            child is the tar).
        session: The scan session (its limits apply).
        scanner: The calling scanner's id, recorded in the findings.

    Example:
        >>> for item in iter_tar_members(source, session, scanner="pytorch"):  # doctest: +SKIP
        ...     if isinstance(item, Finding):
        ...         yield item
        ...     elif item.source is not None:
        ...         yield from session.scan(item.source)
    """
    problems: dict[str, list[str]] = defaultdict(list)
    extra: dict[str, dict[str, Any]] = {}
    links: dict[str, str] = {}
    names: Counter[str] = Counter()
    damage = ""
    end = 0
    try:
        fh = source.open()
    except OSError as exc:
        yield session.error(source, f"cannot read: {exc}", scanner=scanner)
        return
    with fh:
        guard = _ReadGuard(fh, session.limits.max_header_bytes)
        try:
            tf = tarfile.TarFile(fileobj=guard, mode="r")  # type: ignore[arg-type]
        except _TAR_ERRORS as exc:
            yield session.malformed(source, f"not a readable tar archive ({exc})",
                                    scanner=scanner)
            return
        count = 0
        _begin(source, session)
        try:
            while True:
                try:
                    member = tf.next()
                except _TAR_ERRORS as exc:
                    damage = f"damaged header after {count} members ({exc})"
                    break
                if member is None:
                    end = tf.offset
                    break
                count += 1
                if count > session.limits.max_members:
                    problems["archive-too-many-members"].append(
                        f"more than {session.limits.max_members} members; the rest not read")
                    extra["archive-too-many-members"] = {"incomplete": True}
                    break
                tf.members.clear()  # type: ignore[attr-defined]  # else it keeps every header
                item = _tar_member(source, member, problems, links, names)
                if isinstance(item, ArchiveMember) and item.source is not None:
                    spent = _spend(source, session)
                    if spent is not None:
                        yield from _over_budget(source, session, spent, scanner)
                        break
                if isinstance(item, str):
                    damage = item
                    break
                yield item
        finally:
            tf.close()  # does not close fh, which the with statement owns
        # tarfile stops quietly at the first header it cannot parse; GNU tar skips it and
        # reads on. Whatever follows the end of the archive must be zero padding.
        if 0 < end < source.size:
            end = _first_nonzero_block(fh, end, source.size)
    trailing = 0 < end < source.size
    for name, n in sorted(names.items()):
        if n > 1:
            problems["archive-duplicate-name"].append(f"{name!r} ({n} copies)")
    if damage:
        yield session.malformed(source, damage, scanner=scanner)
    if trailing:
        size = source.size - end
        problems["tar-trailing-data"].append(f"{size} bytes at offset {end}")
    yield from _grouped(session, source, {k: v for k, v in problems.items() if v},
                        scanner=scanner, extra=extra)
    if trailing and source.size - end <= session.limits.max_member_bytes:
        label = f"<{source.size - end} bytes after the end of the archive>"
        yield ArchiveMember(label, source.child(label, source.size - end,
                                                _window(source, end, source.size - end)),
                            "", None, True)


def _tar_member(source: Source, member: tarfile.TarInfo, problems: dict[str, list[str]],
                links: dict[str, str], names: Counter[str]) -> ArchiveMember | str:
    """Check one tar header; the member, or a message when the archive is damaged."""
    name = member.name
    norm = _norm(name)
    _check_name(name, problems)
    if member.issym() or member.islnk():
        target = member.linkname
        odd = _name_problem(target)
        if odd:
            problems["archive-suspicious-name"].append(f"{name!r} (link target: {odd})")
        where = "" if member.islnk() else posixpath.dirname(norm)
        joined = posixpath.join(where, target) if where else target
        absolute = _path_problem(target) in ("absolute path", "drive letter")
        if absolute or _resolve(joined, links) is None:
            kind = "hard link" if member.islnk() else "symbolic link"
            problems["archive-link-escape"].append(f"{name!r} ({kind} to {target!r})")
        if member.issym():
            links[norm] = target
        return ArchiveMember(name, None, "link")
    if member.ischr() or member.isblk() or member.isfifo():
        kind = "FIFO" if member.isfifo() else "device file"
        problems["archive-special-file"].append(f"{name!r} ({kind})")
        return ArchiveMember(name, None, kind)
    if member.isdir():
        return ArchiveMember(name, None, "directory")
    names[norm] += 1
    if _path_problem(name) is None and _resolve(norm, links) is None:
        problems["archive-link-escape"].append(f"{name!r} (written through a link)")
    if member.mode & 0o6000:
        problems["archive-setuid"].append(f"{name!r} (mode {member.mode:o})")
    end = member.offset_data + member.size
    if end > source.size:
        return f"member {name!r} is truncated ({end - source.size} bytes missing)"
    child = source.child(name, member.size, _window(source, member.offset_data, member.size))
    return ArchiveMember(name, child)


# --------------------------------------------------------------------------------------------
# gzip, bzip2, xz


def scan_compressed(source: Source, session: ScanSession, kind: str, *,
                    scanner: str) -> Iterator[Finding]:
    """Decompress a gzip, bzip2, xz, zlib or LZMA stream within the limits; scan its content.

    Concatenated streams are followed (as ``gzip``/``bzip2``/``xz`` do); zero padding after
    the last one is accepted; other trailing bytes are reported (``compressed-trailing-data``)
    and scanned as a member of their own. The decompressed bytes are spooled (see the module
    docstring) and scanned as a child of ``source`` named after it without its suffix
    (``model.tar.gz!model.tar``). The ratio limit compares the output with the whole
    compressed file; the session's ``bytes_expanded`` is counted.

    Args:
        source: The compressed file.
        session: The scan session (its limits apply).
        kind: The sniffed format: ``"gzip"``, ``"bz2"``, ``"xz"``, ``"zlib"`` or ``"lzma"``
            (LZMA-alone, ``.lzma``).
        scanner: The calling scanner's id, recorded in the findings.

    Example:
        >>> list(scan_compressed(source, session, "gzip", scanner="archive"))  # doctest: +SKIP
    """
    spool = _Spool()
    try:
        try:
            with source.open() as fh:
                trailing, limit, produced = _decompress_streams(fh, source.size, session, kind,
                                                                spool)
            problem = ""
        except _DECODE_ERRORS as exc:
            trailing, limit, produced = None, "", spool.size
            problem = (str(exc) if isinstance(exc, _Malformed) else
                       f"corrupt compressed data ({type(exc).__name__}: {exc})")
        evidence = {"compressed": source.size, "expanded_before_stop": produced}
        if limit == "ratio":
            yield _finding(session, source, "archive-bomb-ratio", scanner=scanner,
                           evidence=evidence)
            return
        if limit == "total":
            yield _finding(session, source, "archive-total-expansion", scanner=scanner,
                           evidence={**evidence, "limit": session.limits.max_total_bytes,
                                     "incomplete": True})
            return
        if limit == "member":
            yield _finding(session, source, "archive-member-too-large", scanner=scanner,
                           evidence={**evidence, "limit": session.limits.max_member_bytes,
                                     "incomplete": True})
        if problem:
            yield session.malformed(source, problem, scanner=scanner)
        if trailing is not None:
            size = source.size - trailing
            yield _finding(session, source, "compressed-trailing-data", scanner=scanner,
                           evidence={"offset": trailing, "bytes": size})
            if size <= session.limits.max_member_bytes:
                label = f"<{size} bytes after the compressed data>"
                yield from session.scan(source.child(label, size,
                                                     _window(source, trailing, size)))
        # What was decompressed is scanned even when the stream is damaged or too large:
        # a payload at its start is still found.
        child = source.child(_inner_name(source.name, kind), spool.size, spool.opener())
        yield from session.scan(child)
    finally:
        spool.discard()


def _decompress_streams(fh: BinaryIO, size: int, session: ScanSession, kind: str,
                        spool: _Spool) -> tuple[int | None, str, int]:
    """Decompress every stream into ``spool``: (trailing data offset, limit hit, bytes)."""
    factory = _STREAMS[kind]
    limits = session.limits
    ratio_cap = max(_RATIO_FLOOR, int(limits.max_ratio * max(size, 1)))
    inflater = _Inflater(factory)
    produced = consumed = 0
    data = b""
    while True:
        if not data:
            data = fh.read(_CHUNK)
            if not data:
                if not inflater.eof:
                    raise _Malformed("compressed stream is truncated")
                return None, "", produced
            consumed += len(data)
        for out in inflater.feed(data):
            produced += len(out)
            session.bytes_expanded += len(out)
            if produced > ratio_cap:
                return None, "ratio", produced
            if session.bytes_expanded > limits.max_total_bytes:
                return None, "total", produced
            if produced > limits.max_member_bytes:
                return None, "member", produced
            spool.write(out)
        data = b""
        if not inflater.eof:
            continue
        rest = inflater.unused_data
        end = consumed - len(rest)  # where this stream ended in the file
        while len(rest) < 6:
            more = fh.read(_CHUNK)
            if not more:
                break
            consumed += len(more)
            rest += more
        if _stream_starts(kind, rest):  # another stream follows, as gzip -c a b > ab writes
            inflater = _Inflater(factory)
            data = rest
            continue
        if not rest or _all_zero(fh, rest):
            return None, "", produced
        return end, "", produced


def _first_nonzero_block(fh: BinaryIO, start: int, size: int) -> int:
    """The offset of the first 512-byte block from ``start`` holding a non-zero byte."""
    fh.seek(start)
    pos = start
    while data := fh.read(_CHUNK):
        stripped = data.lstrip(b"\x00")
        if stripped:
            return pos + (len(data) - len(stripped)) // 512 * 512
        pos += len(data)
    return size


def _stream_starts(kind: str, data: bytes) -> bool:
    """Whether ``data`` begins another stream of ``kind`` (concatenated streams)."""
    if kind == "gzip":
        return data.startswith(b"\x1f\x8b")
    if kind == "bz2":
        return data.startswith(b"BZh")
    if kind == "xz":
        return data.startswith(b"\xfd7zXZ\x00")
    if kind == "zlib":  # CMF/FLG: deflate, and the header checksum holds
        return len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
    return False  # .lzma (LZMA-alone) has no magic number: never concatenated


def _all_zero(fh: BinaryIO, first: bytes) -> bool:
    """Whether ``first`` and the rest of ``fh`` are zero bytes (padding)."""
    if first.strip(b"\x00"):
        return False
    while data := fh.read(_CHUNK):
        if data.strip(b"\x00"):
            return False
    return True


def _inner_name(name: str, kind: str) -> str:
    base = name.replace("\\", "/").replace("!", "/").rsplit("/", 1)[-1]
    lower = base.lower()
    for suffix, replacement in _STREAM_SUFFIXES[kind]:
        if lower.endswith(suffix) and len(base) > len(suffix):
            return base[: -len(suffix)] + replacement
    return "<decompressed>"


# --------------------------------------------------------------------------------------------
# The plugin


class ArchiveScanner(FileScanner):
    """Zip, tar, gzip, bzip2 and xz containers: structure checked, every member scanned.

    The zip structures are parsed here (central directory and local headers), tar headers
    with :mod:`tarfile` (never extracted), compressed data decompressed in bounded chunks.
    Findings cover path traversal and link escapes (CVE-2007-4559), zip bombs (ratio, total
    expansion, Fifield's overlapping entries), parser differentials (duplicate names,
    central/local disagreement, hidden or appended data), encrypted and undecodable members,
    bad CRCs and malformed containers. Every member goes back to the session and is scanned
    by content, so nesting (a pickle in a zip in a tar in a gzip) is followed up to
    ``ScanLimits.max_depth``. See the module docstring for the rules.

    Threat model: the attacker controls the archive and knows the scanner; nothing is
    extracted to disk and nothing is loaded.

    Example:
        >>> from phalanx.supplychain.scan.archive import ArchiveScanner
        >>> findings = list(ArchiveScanner().scan("bundle.zip"))  # doctest: +SKIP
    """

    name = "archive"
    title = "Archives and compressed streams"
    paper = ("David Fifield, 'A better zip bomb', USENIX WOOT 2019, "
             "https://www.bamsoftware.com/hacks/zipbomb/ ; CVE-2007-4559")
    refs = REFS
    # zlib streams (joblib's default compression) and LZMA-alone files are decompressed too.
    formats: ClassVar[tuple[str, ...]] = BUNDLED_FORMATS["archive"]

    def __init__(self) -> None:
        """No parameters: every bound comes from the session's ScanLimits."""

    def scan_source(self, source: Source, session: ScanSession) -> Iterator[Finding]:
        """Check ``source``'s container structure and scan each member by content."""
        try:
            fmt = session.format_of(source)
        except OSError as exc:
            yield session.error(source, f"cannot read: {exc}", scanner=self.name)
            return
        if fmt in _STREAMS:
            yield from scan_compressed(source, session, fmt, scanner=self.name)
            return
        if fmt in ("tar", "pytorch-tar"):
            members = iter_tar_members(source, session, scanner=self.name)
        else:  # zip: the only one of these formats whose start may be hidden behind data
            members = iter_zip_members(source, session, scanner=self.name)
        for item in members:
            if isinstance(item, Finding):
                yield item
            elif item.source is not None:
                yield from session.scan(item.source)

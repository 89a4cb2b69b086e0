"""NumPy ``.npy`` and ``.npz`` files, read without NumPy and without unpickling.

An ``.npy`` file is a magic string, a version, a header length and a header that is a Python
dict literal (``{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }``), then the
array's raw bytes. When the dtype holds Python objects (``'|O'``, or a structured dtype with
an object field) the "raw bytes" are a pickle, and ``np.load(..., allow_pickle=True)`` runs
it: that was the default before NumPy 1.16.3 (CVE-2019-6446), and loaders that pass
``allow_pickle=True`` to read old files still do. An ``.npz`` file is a zip of ``.npy``
members.

This scanner parses the header itself (``ast.literal_eval`` on the header dict only, bounded
in size; NumPy is not imported), checks the header and the data length against the shape and
dtype, and hands an object array's pickle to the static pickle analyser with the ``python``
and ``numpy`` allowlists. For ``.npz`` it runs the zip checks of
:mod:`phalanx.supplychain.scan.archive` and scans every member by content.

Rules (``evidence["rule"]``):

=========================  ========  ===========================================================
``npy-object-array``       MEDIUM    object dtype: loading needs ``allow_pickle`` and unpickles
``npy-unknown-dtype``      MEDIUM    a ``descr`` the scanner cannot interpret
``npy-large-header``       MEDIUM    header over NumPy's 10,000-character safety limit
``npy-trailing-data``      MEDIUM    bytes after the array data (scanned as well)
``malformed``              MEDIUM    bad magic, version, header or truncated data
=========================  ========  ===========================================================

Example:
    >>> from phalanx.supplychain.scan import scan_paths
    >>> report = scan_paths(["embeddings.npy"])  # doctest: +SKIP
    >>> [f.evidence["rule"] for f in report.findings]  # doctest: +SKIP
    ['pickle-denied', 'npy-object-array']
"""

from __future__ import annotations

import ast
import math
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from phalanx.core.findings import Finding, Severity
from phalanx.supplychain.scan._quiet import file_text_warnings_ignored
from phalanx.supplychain.scan.archive import iter_zip_members, slice_source
from phalanx.supplychain.scan.base import BUNDLED_FORMATS, FileScanner, ScanSession, Source
from phalanx.supplychain.scan.pickle_vm import REFS

__all__ = ["NpyHeader", "NumpyScanner", "parse_npy_header"]

MAGIC = b"\x93NUMPY"
#: NumPy refuses longer headers unless the caller trusts the file (``allow_pickle=True``).
NUMPY_MAX_HEADER = 10_000
#: Longest header this scanner parses (a bound on ``ast.literal_eval``'s work).
_MAX_PARSE = 1 << 20
_ECOSYSTEMS = ("python", "numpy")
_MAX_DESCR_DEPTH = 32

# dtype.str as np.save writes it: byte order, kind, item size (and a datetime unit).
_TYPESTR = re.compile(r"^([<>|=]?)([biufcmMOSUVa?])(\d*)(\[[0-9A-Za-z]+\])?$")
_FIXED = {"b": {1}, "i": {1, 2, 4, 8}, "u": {1, 2, 4, 8}, "f": {2, 4, 8, 10, 12, 16},
          "c": {8, 16, 20, 24, 32}, "m": {8}, "M": {8}}


@dataclass(frozen=True)
class NpyHeader:
    """The parsed header of an ``.npy`` file.

    Args:
        version: Format version, ``(1, 0)``, ``(2, 0)`` or ``(3, 0)``.
        header_len: Length of the header dict in bytes.
        data_offset: Where the array data starts.
        descr: The dtype description as written.
        fortran_order: Whether the data is in column-major order.
        shape: The array's shape.
        itemsize: Bytes per element, ``None`` when the dtype was not understood.
        has_object: Whether the dtype holds Python objects (the data is then a pickle);
            ``None`` when the dtype was not understood.
    """

    version: tuple[int, int]
    header_len: int
    data_offset: int
    descr: Any
    fortran_order: bool
    shape: tuple[int, ...]
    itemsize: int | None
    has_object: bool | None

    @property
    def count(self) -> int:
        """Number of elements (1 for a 0-d array)."""
        return math.prod(self.shape)

    @property
    def data_bytes(self) -> int | None:
        """Expected size of the data for a plain dtype, ``None`` for objects or unknown."""
        if self.itemsize is None or self.has_object is not False:
            return None
        return self.count * self.itemsize


def parse_npy_header(head: bytes) -> NpyHeader:
    """Parse the header at the start of an ``.npy`` file, as NumPy would, without NumPy.

    Args:
        head: The file's first bytes: at least the magic, version, length and header.

    Returns:
        The header, with the dtype's item size and object-ness interpreted.

    Raises:
        ValueError: The bytes are not a header NumPy would accept (the message says why).

    Example:
        >>> h = parse_npy_header(b"\\x93NUMPY\\x01\\x00\\x46\\x00{'descr': '<f4', "
        ...     b"'fortran_order': False, 'shape': (2, 3), }" + b" " * 26 + b"\\n")
        >>> h.shape, h.itemsize, h.has_object
        ((2, 3), 4, False)
    """
    if not head.startswith(MAGIC):
        raise ValueError("no NumPy magic string")
    if len(head) < 10:
        raise ValueError("header is truncated")
    version = (head[6], head[7])
    if version == (1, 0):
        (length,) = struct.unpack_from("<H", head, 8)
        start, encoding = 10, "latin1"
    elif version in ((2, 0), (3, 0)):
        if len(head) < 12:
            raise ValueError("header is truncated")
        (length,) = struct.unpack_from("<I", head, 8)
        start, encoding = 12, "latin1" if version == (2, 0) else "utf-8"
    else:
        raise ValueError(f"unsupported format version {version[0]}.{version[1]}")
    if length > _MAX_PARSE:
        raise ValueError(f"header of {length} bytes is too large to parse")
    raw = head[start: start + length]
    if len(raw) < length:
        raise ValueError("header is truncated")
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ValueError(f"header is not valid {encoding}") from exc
    fields = _literal(text, python2=version <= (2, 0))
    if not isinstance(fields, dict):
        raise ValueError("header is not a dict")
    if set(fields) != {"descr", "fortran_order", "shape"}:
        raise ValueError(f"header keys are {sorted(map(repr, fields))}")
    shape = fields["shape"]
    if not isinstance(shape, tuple) or not all(isinstance(n, int) for n in shape):
        raise ValueError(f"shape {shape!r} is not a tuple of integers")
    if any(n < 0 for n in shape):
        raise ValueError(f"shape {shape!r} has a negative dimension")
    if not isinstance(fields["fortran_order"], bool):
        raise ValueError("fortran_order is not a bool")
    itemsize, has_object = _dtype(fields["descr"], 0)
    return NpyHeader(version=version, header_len=length, data_offset=start + length,
                     descr=fields["descr"], fortran_order=fields["fortran_order"],
                     shape=tuple(int(n) for n in shape), itemsize=itemsize,
                     has_object=has_object)


def _literal_eval(text: str) -> Any:
    with file_text_warnings_ignored():  # the header's strings compile with their escapes
        return ast.literal_eval(text)


def _literal(text: str, *, python2: bool) -> Any:
    try:
        return _literal_eval(text)
    except SyntaxError:
        if not python2:
            raise ValueError("header is not a Python literal") from None
    except (ValueError, TypeError, RecursionError, MemoryError) as exc:
        raise ValueError(f"header is not a Python literal ({type(exc).__name__})") from None
    # Headers written by Python 2 may carry long-integer suffixes (``(10L, 3L)``); NumPy
    # strips them for versions 1.0 and 2.0, and so do we.
    try:
        return _literal_eval(re.sub(r"(?<=\d)[lL]\b", "", text))
    except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError):
        raise ValueError("header is not a Python literal") from None


def _dtype(descr: Any, depth: int) -> tuple[int | None, bool | None]:
    """(item size, holds objects) of a dtype description; ``None`` for what is unknown.

    Only the forms ``np.save`` writes are interpreted exactly (``dtype.str`` strings, lists
    of fields, ``(base, shape)`` sub-arrays). Any other string is checked for an object
    type code ('O', 'object'), the only way a string can make NumPy unpickle.
    """
    if depth > _MAX_DESCR_DEPTH:
        return None, None
    if isinstance(descr, str):
        match = _TYPESTR.match(descr)
        if not match:
            return None, (True if ("O" in descr or "object" in descr.lower()) else None)
        _, kind, digits, unit = match.groups()
        if kind == "O":
            return 8, True
        if unit and kind not in "mM":
            return None, None
        if kind == "?":
            return (1, False) if not digits else (None, None)
        if not digits:
            return None, None
        n = int(digits)
        if kind in _FIXED:
            return (n, False) if n in _FIXED[kind] else (None, None)
        return (4 * n if kind == "U" else n), False  # S, a, V: bytes; U: UCS-4 characters
    if isinstance(descr, tuple):
        if len(descr) != 2:
            return None, None
        size, obj = _dtype(descr[0], depth + 1)
        shape = descr[1] if isinstance(descr[1], tuple) else (descr[1],)
        if not all(isinstance(n, int) and n >= 0 for n in shape):
            return None, obj
        return (None if size is None else size * math.prod(shape)), obj
    if isinstance(descr, list):
        total: int | None = 0
        any_object: bool | None = False
        for field in descr:
            if not isinstance(field, tuple) or len(field) not in (2, 3):
                return None, True if any_object else None
            sub = field[1] if len(field) == 2 else (field[1], field[2])
            size, obj = _dtype(sub, depth + 1)
            total = None if size is None or total is None else total + size
            if obj:
                any_object = True
            elif obj is None and any_object is False:
                any_object = None
        return total, any_object
    return None, None


class NumpyScanner(FileScanner):
    """NumPy ``.npy`` and ``.npz``: headers checked, object arrays' pickles analysed.

    An ``.npy`` header is parsed without NumPy (``ast.literal_eval`` on the bounded header
    only); the data length must match shape and dtype; an object dtype makes the data a
    pickle, which is analysed statically with the Python and NumPy allowlists and also
    reported (MEDIUM) because loading it needs ``allow_pickle=True``. An ``.npz`` is checked
    as a zip (traversal, bombs, duplicates, hidden data) and every member scanned.

    Threat model: the attacker controls the file and expects it to be opened with
    ``np.load(path, allow_pickle=True)`` (the default before NumPy 1.16.3, CVE-2019-6446).

    Example:
        >>> from phalanx.supplychain.scan.numpy_files import NumpyScanner
        >>> findings = list(NumpyScanner().scan("weights.npz"))  # doctest: +SKIP
    """

    name = "numpy"
    title = "NumPy arrays (.npy, .npz)"
    paper = "CVE-2019-6446 (numpy.load unpickles object arrays), https://nvd.nist.gov/vuln/detail/CVE-2019-6446"
    refs = REFS
    formats: ClassVar[tuple[str, ...]] = BUNDLED_FORMATS["numpy"]

    def __init__(self) -> None:
        """No parameters: every bound comes from the session's ScanLimits."""

    def scan_source(self, source: Source, session: ScanSession) -> Iterator[Finding]:
        """Scan an ``.npy`` array, or every member of an ``.npz`` archive."""
        if source.head(len(MAGIC)) == MAGIC:
            yield from self._scan_npy(source, session)
            return
        for item in iter_zip_members(source, session, scanner=self.name):
            if isinstance(item, Finding):
                yield item
            elif item.source is not None:
                yield from session.scan(item.source)

    def _scan_npy(self, source: Source, session: ScanSession) -> Iterator[Finding]:
        head = source.head(12)
        length = 0
        if len(head) >= 12:
            length = struct.unpack_from("<H" if head[6] == 1 else "<I", head, 8)[0]
            head = source.head(min(length, _MAX_PARSE) + 12)
        try:
            header = parse_npy_header(head)
        except ValueError as exc:
            yield session.malformed(source, f"invalid .npy header: {exc}", scanner=self.name)
            if length > _MAX_PARSE:
                yield self._large_header(source, session, length)
            return
        if header.header_len > NUMPY_MAX_HEADER:
            yield self._large_header(source, session, header.header_len)
        available = source.size - header.data_offset
        if header.has_object:
            yield session.finding(
                source, "npy-object-array", Severity.MEDIUM,
                "Object array: loading it runs pickle",
                "The array's dtype holds Python objects, so its data is a pickle that "
                "np.load only reads with allow_pickle=True, and then unpickles: code runs if "
                "the pickle says so. The pickle was analysed statically (findings above).",
                scanner=self.name, evidence={"descr": repr(header.descr)[:200],
                                             "shape": list(header.shape)[:8]},
                remediation="Load with allow_pickle=False (the default since NumPy 1.16.3); "
                "ask for the data without object dtypes (numbers, fixed-width strings).",
                refs=REFS,
            )
            with source.open() as fh:
                fh.seek(header.data_offset)
                yield from session.scan_pickle(source, ecosystems=_ECOSYSTEMS, data=fh)
            return
        if header.has_object is None or header.itemsize is None:
            yield session.finding(
                source, "npy-unknown-dtype", Severity.MEDIUM,
                "Array dtype the scanner cannot interpret",
                "The header's descr is not a form np.save writes; the scanner cannot tell "
                "whether NumPy would read the data as objects (a pickle), so the data was "
                "not checked.",
                scanner=self.name, evidence={"descr": repr(header.descr)[:200],
                                             "incomplete": True},
                remediation="Do not load the file with allow_pickle=True; re-export it.",
                refs=REFS,
            )
            return
        expected = header.count * header.itemsize
        if available < expected:
            yield session.malformed(
                source, f"array data is truncated ({available} of {expected} bytes)",
                scanner=self.name, offset=source.size)
            return
        if available > expected:
            extra = available - expected
            start = header.data_offset + expected
            yield session.finding(
                source, "npy-trailing-data", Severity.MEDIUM,
                "Data after the array",
                "Bytes follow the array data. np.load ignores them, so they are a place to "
                "smuggle a second file (a pickle read by another loader). They were scanned.",
                scanner=self.name, evidence={"offset": start, "bytes": extra},
                remediation="Do not load the file; re-export the array with np.save.",
                refs=REFS,
            )
            if extra <= session.limits.max_member_bytes:
                yield from session.scan(slice_source(source, f"<{extra} bytes after the array>",
                                                     start, extra))

    def _large_header(self, source: Source, session: ScanSession, length: int) -> Finding:
        return session.finding(
            source, "npy-large-header", Severity.MEDIUM,
            "Array header over NumPy's size limit",
            f"The header is {length} bytes; NumPy refuses headers over {NUMPY_MAX_HEADER} "
            "characters unless the file is loaded with allow_pickle=True, and then parses it "
            "with ast.literal_eval, whose cost an attacker controls.",
            scanner=self.name, evidence={"header_len": length},
            remediation="Do not load the file with allow_pickle=True; re-export it.",
            refs=REFS,
        )

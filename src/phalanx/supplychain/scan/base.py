"""The model-file scanner framework: sources, limits, the session and the plugin base.

A scan never imports, unpickles or executes what it reads. It starts from a path; every file
(and every member of a container: a zip entry, a tar member, a decompressed stream) becomes a
:class:`Source`, whose **format is sniffed from its bytes** (:mod:`.sniff`), never from its
name. The :class:`ScanSession` picks the :class:`FileScanner` registered for that format, runs
it, and lets it hand nested members back to the session, so a pickle inside a PyTorch zip
inside a tar inside a gzip is scanned with the same rules and the same limits as a bare one.

Scanners yield :class:`~phalanx.core.findings.Finding` objects built with
:meth:`ScanSession.finding`, which fills in the check id, the file name and format, the
scanner's id and version and the taxonomy refs, so every scanner reports alike.

Example:
    >>> from phalanx.supplychain.scan import scan_paths
    >>> report = scan_paths(["models/"])  # doctest: +SKIP
    >>> report.max_severity()  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import io
import logging
import os
import re
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from phalanx.core import registry
from phalanx.core.findings import Finding, Severity
from phalanx.core.plugin import Plugin
from phalanx.supplychain.scan.pickle_vm import REFS, PickleLimits, PickleReport, analyse_pickle
from phalanx.supplychain.scan.policy import PicklePolicy, load_policy

__all__ = [
    "BUNDLED_FORMATS",
    "CHECK_ID",
    "FileScanner",
    "ScanLimits",
    "ScanSession",
    "Source",
    "Tally",
    "side_file_problem",
]

logger = logging.getLogger(__name__)

#: The check id every model-file finding carries.
CHECK_ID = "model-scan"

#: The formats of each bundled scanner, by registry name. The scanner classes take their
#: ``formats`` from here, so a session knows which module handles a format without importing
#: every scanner: a scan of pickles imports neither the Keras nor the GGUF scanner.
BUNDLED_FORMATS: dict[str, tuple[str, ...]] = {
    "archive": ("zip", "tar", "gzip", "bz2", "xz", "zlib", "lzma"),
    "gguf": ("gguf",),
    "huggingface": ("json", "text"),
    "keras": ("keras", "hdf5"),
    "numpy": ("npy", "npz"),
    "onnx": ("onnx",),
    "pickle": ("pickle",),
    "pytorch": ("pytorch-zip", "torchscript", "pytorch-legacy", "pytorch-tar"),
    "safetensors": ("safetensors",),
    "savedmodel": ("savedmodel",),
}
_BUNDLED_MODULE = "phalanx.supplychain.scan."

_HEAD = 4096
_SMALL_FILE = 64 * 1024


@dataclass(frozen=True)
class ScanLimits:
    """Resource bounds for one scan. Reaching one gives a finding, never a crash or a hang.

    Args:
        max_depth: How deep containers nest (a zip in a tar in a gzip is depth 3).
        max_members: Most members read from one archive.
        max_member_bytes: Most bytes one decompressed member may expand to.
        max_total_bytes: Most decompressed bytes read from one top-level file, all members
            together (zip-bomb bound).
        max_ratio: Highest compression ratio tolerated for a member larger than 1 MiB.
        max_header_bytes: Largest metadata header read into memory (safetensors JSON,
            GGUF metadata, Keras config).
        max_files: Most files visited under one directory argument.
        pickle: Limits of the pickle analyser.
    """

    max_depth: int = 8
    max_members: int = 10_000
    max_member_bytes: int = 4 * 1024**3
    max_total_bytes: int = 16 * 1024**3
    max_ratio: float = 200.0
    max_header_bytes: int = 100 * 1024**2
    max_files: int = 100_000
    pickle: PickleLimits = field(default_factory=PickleLimits)


@dataclass(frozen=True)
class Source:
    """Bytes to scan: a file on disk or a member of a container, opened lazily.

    Args:
        name: Display name: the path, and for a member the container's name, ``!`` and the
            member's name (``model.pt!archive/data.pkl``).
        size: Size in bytes (for a compressed member: its uncompressed size as declared).
        opener: Returns a fresh binary stream positioned at the start. The caller closes it.
        path: The file on disk when the source is a whole file (parsers such as h5py need a
            path); ``None`` for members.
        depth: Container nesting depth, 0 for a file named on the command line or found in a
            directory.
        root: The directory a model lives in (for ONNX external data and SavedModel
            assets); the file's own directory by default.
    """

    name: str
    size: int
    opener: Callable[[], BinaryIO]
    path: Path | None = None
    depth: int = 0
    root: Path | None = None

    @classmethod
    def from_path(cls, path: str | Path, *, name: str | None = None,
                  root: Path | None = None) -> Source:
        """A file on disk. A file of up to 64 KiB is read now, in one read, and served from
        memory (the sniffer and the scanner would each open it); a larger one is read lazily.

        Raises:
            OSError: The file cannot be read (a larger one's errors come when it is opened).
        """
        p = path if isinstance(path, Path) else Path(path)
        root = root if root is not None else p.parent
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            size = os.fstat(fd).st_size
            blob = b""
            while size <= _SMALL_FILE and len(blob) <= _SMALL_FILE:  # reads may come short
                chunk = os.read(fd, _SMALL_FILE + 1 - len(blob))
                if not chunk:
                    break
                blob += chunk
        finally:
            os.close(fd)
        if size <= _SMALL_FILE and len(blob) <= _SMALL_FILE:  # else it grew: read it lazily
            return cls(name=name or str(p), size=len(blob), opener=lambda: io.BytesIO(blob),
                       path=p, root=root)
        return cls(name=name or str(p), size=size, opener=lambda: open(p, "rb"), path=p,
                   root=root)

    @classmethod
    def from_bytes(cls, name: str, data: bytes, *, depth: int = 0,
                   root: Path | None = None) -> Source:
        """Bytes held in memory (a small member, a decoded blob)."""
        blob = bytes(data)
        return cls(name=name, size=len(blob), opener=lambda: io.BytesIO(blob), depth=depth,
                   root=root)

    def open(self) -> BinaryIO:
        """A fresh binary stream at offset 0."""
        return self.opener()

    def head(self, n: int = _HEAD) -> bytes:
        """The first ``n`` bytes (fewer for a short source)."""
        with self.open() as fh:
            return fh.read(n)

    def child(self, member: str, size: int, opener: Callable[[], BinaryIO]) -> Source:
        """A member of this source (one level deeper)."""
        return Source(name=f"{self.name}!{member}", size=size, opener=opener,
                      depth=self.depth + 1, root=self.root)

    @contextmanager
    def as_file(self, max_bytes: int) -> Iterator[Path]:
        """A path to the source's bytes: the file itself, or a temporary copy of a member.

        Parsers that need a real file (h5py) use this; a member larger than ``max_bytes`` is
        refused with :class:`ValueError` rather than copied.
        """
        if self.path is not None:
            yield self.path
            return
        if self.size > max_bytes:
            raise ValueError(f"member of {self.size} bytes is over the {max_bytes}-byte limit")
        fd, tmp = tempfile.mkstemp(prefix="phalanx-scan-")
        try:
            with os.fdopen(fd, "wb") as out, self.open() as src:
                copied = 0
                while chunk := src.read(1 << 20):
                    copied += len(chunk)
                    if copied > max_bytes:
                        raise ValueError(f"member is over the {max_bytes}-byte limit")
                    out.write(chunk)
            yield Path(tmp)
        finally:
            Path(tmp).unlink(missing_ok=True)


@dataclass
class ScannedFile:
    """What the session did with one source: its format, the scanner, whether it finished."""

    name: str
    format: str
    size: int
    scanner: str
    depth: int
    complete: bool = True
    error: str = ""


class FileScanner(Plugin):
    """Base class of model-file scanners (plugin family ``scanners``).

    A subclass declares the sniffed ``formats`` it handles and implements
    :meth:`scan_source`, yielding findings made with :meth:`ScanSession.finding`. It must not
    import, unpickle or execute anything from the file; it may hand members to
    ``session.scan(child)`` and pickle bytes to ``session.scan_pickle(...)``. Malformed input
    is a finding (``session.malformed``), never an exception; an exception that escapes is
    turned into a MEDIUM "scanner error" finding so that the file fails closed.

    ``scan(path)`` scans one file with a fresh session (the design's one verb per family).
    """

    formats: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        """Scanners without parameters take none (subclasses add keyword-only ones)."""

    def scan(self, path: str | Path) -> Iterator[Finding]:
        """Scan one file of this scanner's format with default limits and policy."""
        session = ScanSession()
        yield from self.scan_source(Source.from_path(path), session)

    def scan_source(self, source: Source, session: ScanSession) -> Iterator[Finding]:
        """Yield the findings for ``source``, whose format is one of :attr:`formats`."""
        raise NotImplementedError


class ScanSession:
    """One scan: the policy, the limits, the scanners by format, and what was scanned.

    Args:
        policy: The pickle import policy (the bundled allowlist by default).
        limits: Resource bounds.
        ecosystems: Pickle allowlists to apply (``None``: all of them).
        scanners: Format id to scanner; the registered ``scanners`` plugins by default.
    """

    def __init__(
        self,
        *,
        policy: PicklePolicy | None = None,
        limits: ScanLimits | None = None,
        ecosystems: tuple[str, ...] | None = None,
        scanners: dict[str, FileScanner] | None = None,
    ) -> None:
        self.policy = policy if policy is not None else load_policy()
        self.limits = limits if limits is not None else ScanLimits()
        self.ecosystems = ecosystems
        self._scanners = scanners
        self._instances: dict[type[FileScanner], FileScanner] = {}
        self.scanned: list[ScannedFile] = []
        self.bytes_expanded = 0  # decompressed bytes read under the current top-level file
        self._formats: dict[str, str] = {}
        # Zip central directories the sniffer read, by source name, while the source is
        # being scanned (see zip_directory).
        self._zip_directories: dict[str, list[zipfile.ZipInfo]] = {}

    # -- dispatch ---------------------------------------------------------------------------

    def scanners(self) -> dict[str, FileScanner]:
        """Format id to scanner instance, for every registered scanner (all imported now)."""
        if self._scanners is not None:
            return self._scanners
        from phalanx.supplychain.scan.sniff import FORMATS

        found = {fmt: self.scanner_for(fmt) for fmt in FORMATS}
        return {fmt: scanner for fmt, scanner in found.items() if scanner is not None}

    def scanner_for(self, fmt: str) -> FileScanner | None:
        """The scanner for format ``fmt``, ``None`` if no registered scanner handles it.

        Only that scanner's module is imported (on first use), and one instance of each
        scanner class serves all its formats for the session.
        """
        if self._scanners is not None:
            return self._scanners.get(fmt)
        cls = _scanner_class(fmt)
        if cls is None:
            return None
        scanner = self._instances.get(cls)
        if scanner is None:
            scanner = self._instances[cls] = cls()
        return scanner

    def format_of(self, source: Source) -> str:
        """The format sniffed for ``source`` when the session dispatched it (sniffed now if
        it was not dispatched by this session), so a scanner need not sniff it again."""
        fmt = self._formats.get(source.name)
        if fmt is None:
            from phalanx.supplychain.scan.sniff import sniff

            fmt = sniff(source)
        return fmt

    def zip_directory(self, source: Source) -> list[zipfile.ZipInfo]:
        """The central directory of the zip ``source``, as :mod:`zipfile` reads it.

        While the session scans ``source``, this is the directory the sniffer read to tell
        the format, not a second parse of it.

        Raises:
            zipfile.BadZipFile: (and the other errors :class:`zipfile.ZipFile` raises) The
                directory does not parse.
        """
        infos = self._zip_directories.get(source.name)
        if infos is None:
            with source.open() as fh, zipfile.ZipFile(fh) as zf:
                infos = zf.infolist()
        return infos

    def scan(self, source: Source) -> Iterator[Finding]:
        """Sniff ``source``'s format and run its scanner; findings for depth and errors."""
        if source.depth > self.limits.max_depth:
            yield self.finding(
                source, "container-depth", Severity.MEDIUM,
                "Containers nested deeper than the scan follows",
                f"The member is nested {source.depth} containers deep; the scan stops at "
                f"{self.limits.max_depth}. Deep nesting is a way to hide a payload from "
                "scanners, and the member was not scanned.",
                scanner="session", evidence={"depth": source.depth},
            )
            self.scanned.append(ScannedFile(source.name, "?", source.size, "-", source.depth,
                                            complete=False))
            return
        try:
            yield from self._sniff_and_scan(source)
        finally:
            self._zip_directories.pop(source.name, None)

    def _sniff_and_scan(self, source: Source) -> Iterator[Finding]:
        from phalanx.supplychain.scan.sniff import UNSCANNABLE, sniff

        try:
            fmt = sniff(source, zip_directories=self._zip_directories)
        except OSError as exc:
            yield self.error(source, f"cannot read: {exc.strerror or exc}", scanner="session")
            return
        self._formats[source.name] = fmt
        scanner = self.scanner_for(fmt)
        record = ScannedFile(source.name, fmt, source.size,
                             scanner.plugin_id() if scanner else "-", source.depth)
        self.scanned.append(record)
        if scanner is None:
            if fmt in UNSCANNABLE:
                record.complete = False
                yield self.error(source, f"{fmt}-compressed content cannot be decompressed by "
                                         "the scanner", scanner="session", fmt=fmt)
            return
        try:
            for finding in scanner.scan_source(source, self):
                if finding.severity >= Severity.MEDIUM and finding.evidence.get("incomplete"):
                    record.complete = False
                yield finding
        except Exception as exc:  # fail closed: a scanner bug must not pass a file
            logger.debug("scanner %s failed on %s", scanner.plugin_id(), source.name,
                         exc_info=True)
            record.complete = False
            record.error = f"{type(exc).__name__}: {exc}"
            yield self.error(source, f"scanner error ({type(exc).__name__}: {exc})",
                             scanner=scanner.plugin_id(), fmt=fmt)

    def scan_pickle(
        self,
        source: Source,
        *,
        ecosystems: tuple[str, ...] | None = None,
        data: bytes | BinaryIO | None = None,
    ) -> Iterator[Finding]:
        """Run the pickle analyser over ``source`` (or over ``data`` named after it).

        ``ecosystems`` narrows the allowlists (a PyTorch checkpoint needs ``python``,
        ``torch``, ``numpy``); the session's choice applies when ``None``.
        """
        chosen = ecosystems if ecosystems is not None else self.ecosystems
        if data is None:
            with source.open() as fh:
                report = analyse_pickle(fh, origin=source.name, ecosystems=chosen,
                                        policy=self.policy, limits=self.limits.pickle)
        else:
            report = analyse_pickle(data, origin=source.name, ecosystems=chosen,
                                    policy=self.policy, limits=self.limits.pickle)
        yield from self.pickle_findings(source, report)

    def pickle_findings(self, source: Source, report: PickleReport, *,
                        label: str = "") -> list[Finding]:
        """The pickle analyser's findings as scan findings about ``source``.

        Adds the file, the format and a ``rule`` (the deny rule, else ``pickle-<verdict>`` or
        ``pickle-<kind>``); ``label`` names which pickle of a container it was.
        """
        out = []
        for f in report.findings:
            evidence = {"file": source.name, "format": "pickle", **dict(f.evidence)}
            if label:
                evidence["pickle"] = label
            if "rule" not in evidence:
                verdict = evidence.get("verdict")
                evidence["rule"] = (f"pickle-{verdict}" if verdict
                                    else f"pickle-{evidence.get('kind', 'finding')}")
            out.append(Finding(check=CHECK_ID, severity=f.severity, title=f.title,
                               detail=f.detail, evidence=evidence, remediation=f.remediation,
                               refs=f.refs, plugin_id=f.plugin_id,
                               plugin_version=f.plugin_version, params=f.params))
        return out

    # -- findings ---------------------------------------------------------------------------

    def finding(
        self,
        source: Source,
        rule: str,
        severity: Severity,
        title: str,
        detail: str = "",
        *,
        scanner: str,
        version: str = "1.0",
        evidence: dict[str, Any] | None = None,
        remediation: str = "",
        refs: tuple[str, ...] = REFS,
        fmt: str | None = None,
    ) -> Finding:
        """A finding about ``source`` in the shape every scanner uses.

        ``rule`` is a short stable id of what was found (``"zip-path-traversal"``); the
        evidence always holds ``file``, ``format`` and ``rule``.
        """
        ev: dict[str, Any] = {"file": source.name,
                              "format": fmt or self._formats.get(source.name, "?"),
                              "rule": rule}
        if evidence:
            ev.update(evidence)
        return Finding(check=CHECK_ID, severity=severity, title=title, detail=detail,
                       evidence=ev, remediation=remediation or _REMEDIATION, refs=refs,
                       plugin_id=scanner, plugin_version=version)

    def malformed(self, source: Source, message: str, *, scanner: str,
                  fmt: str | None = None, offset: int | None = None) -> Finding:
        """MEDIUM: the file does not parse as its format; the scan could not finish."""
        evidence: dict[str, Any] = {"message": message, "incomplete": True}
        if offset is not None:
            evidence["offset"] = offset
        return self.finding(
            source, "malformed", Severity.MEDIUM, f"Malformed file: {message}",
            "The file does not parse as the format its bytes announce, so the scan could not "
            "check all of it. Loaders are often more lenient than scanners, and that "
            "difference is how scanners are bypassed.",
            scanner=scanner, evidence=evidence, fmt=fmt,
            remediation="Do not load the file; re-export the model from its source.",
        )

    def error(self, source: Source, message: str, *, scanner: str,
              fmt: str | None = None) -> Finding:
        """MEDIUM: the scan of this file failed; it fails closed."""
        return self.finding(
            source, "scan-error", Severity.MEDIUM, f"Could not scan: {message}",
            "The file could not be scanned completely, so nothing is known about what it "
            "would do when loaded.",
            scanner=scanner, evidence={"message": message, "incomplete": True}, fmt=fmt,
            remediation="Do not load the file until it has been scanned.",
        )


@functools.cache
def _scanner_class(fmt: str) -> type[FileScanner] | None:
    """The registered scanner class for ``fmt``: the first, in registry-name order, whose
    ``formats`` name it. A bundled scanner's formats are read from :data:`BUNDLED_FORMATS`, so
    its module is imported only when it is the one chosen; any other plugin is imported to
    read its ``formats``. ``registry.refresh()`` forgets the choices."""
    for name, target in registry.plugin_targets("scanners").items():
        bundled = BUNDLED_FORMATS.get(name) if target.startswith(_BUNDLED_MODULE) else None
        if bundled is not None:
            if fmt in bundled:
                return registry.load_plugin("scanners", name)  # type: ignore[no-any-return]
            continue
        cls = registry.load_plugin("scanners", name)
        if fmt in getattr(cls, "formats", ()):
            return cls  # type: ignore[no-any-return]
    return None


registry.on_refresh(_scanner_class.cache_clear)


@dataclass
class _Tallied:
    rule: str
    severity: Severity
    title: str
    detail: str
    evidence: dict[str, Any]
    locations: list[str] = field(default_factory=list)
    count: int = 0


class Tally:
    """Findings gathered while a file is walked: one per key, with how often it was met and
    its first ``max_locations`` locations; the most severe wording met for a key wins.

    Scanners of graphs (ONNX, SavedModel) meet the same operator in hundreds of nodes; one
    finding per operator, with a count and examples, is what a reader can act on.
    """

    def __init__(self, max_locations: int = 10) -> None:
        self.max_locations = max_locations
        self._items: dict[tuple[Any, ...], _Tallied] = {}

    def add(self, key: tuple[Any, ...], where: str, rule: str, severity: Severity,
            title: str, detail: str, evidence: dict[str, Any]) -> None:
        """Count one occurrence of ``key`` at ``where``."""
        item = self._items.get(key)
        if item is None:
            item = self._items[key] = _Tallied(rule, severity, title, detail, evidence)
        elif severity > item.severity:
            item.severity, item.title, item.detail = severity, title, detail
        item.count += 1
        if len(item.locations) < self.max_locations:
            item.locations.append(where[:300])

    def findings(self, session: ScanSession, source: Source, *, scanner: str, fmt: str,
                 locations_key: str) -> Iterator[Finding]:
        """One finding per key, its evidence extended with ``count`` and the locations under
        ``locations_key``."""
        for item in self._items.values():
            evidence = {**item.evidence, "count": item.count, locations_key: item.locations}
            yield session.finding(source, item.rule, item.severity, item.title, item.detail,
                                  scanner=scanner, fmt=fmt, evidence=evidence)


_REMEDIATION = (
    "Do not load this file. Obtain the model from a trusted source and verify its signature, "
    "or ask for a format that cannot run code (safetensors, ONNX without custom operators)."
)


_SEPARATORS = re.compile(r"[\\/]")


def side_file_problem(location: str, model_dir: Path | None) -> str | None:
    """Why a path a model file names for a loader to open beside it (ONNX external data, a
    shard in a weight index, a custom-code module) is unsafe, as a clause ("is an absolute
    path"); ``"missing"`` when it is merely absent; ``None`` when it stays inside ``model_dir``
    and exists. Without ``model_dir`` (a container member) only the path itself is judged."""
    if not location:
        return "is empty"
    if "\x00" in location:
        return "contains a NUL byte"
    if location.startswith(("/", "\\", "~")) or re.match(r"^[A-Za-z]:", location):
        return "is an absolute path"
    if ".." in _SEPARATORS.split(location):
        return "climbs out of the model directory ('..')"
    if model_dir is None:
        return None
    base = os.path.realpath(model_dir)
    target = os.path.realpath(os.path.join(base, location))
    if os.path.commonpath([base, target]) != base:
        return "resolves outside the model directory (symbolic link)"
    if not os.path.exists(target):
        return "missing"
    return None

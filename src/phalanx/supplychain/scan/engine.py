"""Scan files and directories: walk, sniff, dispatch, collect; and the ``model-scan`` check.

Directories are walked recursively without following symbolic links out of them; a link is
reported (LOW) and not followed, so a scan cannot be led outside the tree it was given or
into a loop.

Example:
    >>> from phalanx.supplychain.scan import scan_paths
    >>> report = scan_paths(["model.pkl"])  # doctest: +SKIP
    >>> [f.title for f in report.findings]  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import os
import stat
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from phalanx.core.check import Check
from phalanx.core.context import Context
from phalanx.core.findings import Finding, Severity
from phalanx.core.results import Metric, Result
from phalanx.errors import InputError
from phalanx.supplychain.scan.base import CHECK_ID, ScanLimits, ScannedFile, ScanSession, Source
from phalanx.supplychain.scan.pickle_vm import REFS
from phalanx.supplychain.scan.policy import PicklePolicy

__all__ = ["ModelScanCheck", "ScanReport", "iter_files", "scan_paths"]


@dataclass
class ScanReport:
    """The outcome of scanning some paths.

    Args:
        findings: Every finding, most severe first.
        files: Every source looked at (files and container members) with its format.
        bytes: Size of the top-level files scanned.
        seconds: Wall time.
    """

    findings: list[Finding] = field(default_factory=list)
    files: list[ScannedFile] = field(default_factory=list)
    bytes: int = 0
    seconds: float = 0.0

    def max_severity(self) -> Severity | None:
        """The highest severity found, ``None`` when nothing was found."""
        return max((f.severity for f in self.findings), default=None)

    def failed(self, threshold: Severity | str = Severity.MEDIUM) -> bool:
        """Whether any finding is at or above ``threshold``."""
        level = Severity.parse(threshold)
        return any(f.severity >= level for f in self.findings)

    def formats(self) -> dict[str, int]:
        """How many sources of each format were seen."""
        return dict(Counter(f.format for f in self.files))

    def top_level(self) -> list[ScannedFile]:
        """The files named or found on disk (not members of containers)."""
        return [f for f in self.files if f.depth == 0]


class _Skip(NamedTuple):
    """Why a walked entry was not scanned, as its finding says it."""

    rule: str
    severity: Severity
    title: str
    detail: str
    remediation: str
    #: Files were left unscanned, so the verdict does not cover them.
    incomplete: bool = False


_LINK_DETAIL = ("The scan does not follow links out of the tree it was given, so what they "
                "point to was not scanned.")
_LINK_REMEDIATION = "Scan the link's target separately if the model needs it."
_LINK_TO_DIRECTORY = _Skip("symlink-or-limit", Severity.LOW,
                           "symbolic link to a directory, not followed", _LINK_DETAIL,
                           _LINK_REMEDIATION)
_LINK_OUT_OF_TREE = _Skip("symlink-or-limit", Severity.LOW,
                          "symbolic link out of the scanned tree, not followed", _LINK_DETAIL,
                          _LINK_REMEDIATION)


def _special_skip(kind: str) -> _Skip:
    return _Skip("not-a-regular-file", Severity.LOW, f"{kind}, not read",
                 f"The entry is {kind}, not a file of model data, and was not opened (a pipe "
                 "blocks its reader, a device has no end). A loader that reads every file in "
                 "the directory would meet it too.",
                 "Remove it from the model directory, or save what it carries to a file and "
                 "scan that.")


def _limit_skip(limit: int) -> _Skip:
    return _Skip("file-limit", Severity.MEDIUM, f"more than {limit} files; the rest not scanned",
                 f"The directory holds more than {limit} files (ScanLimits.max_files); those "
                 "after the limit, in the walk's sorted order, were never looked at, so the "
                 "verdict does not cover them.",
                 "Scan the directory's parts separately, or raise the limit.", incomplete=True)


def _walk(path: Path, limits: ScanLimits,
          mode: int | None = None) -> Iterator[tuple[Path, _Skip | None]]:
    """Files under ``path`` with ``None``, and skipped entries with why. ``mode``: the
    ``lstat`` mode of ``path`` when the caller has it already."""
    if mode is None:
        try:
            mode = os.lstat(path).st_mode  # one system call for the usual case, a plain file
        except OSError:
            mode = 0  # the error comes when the file is read
    if stat.S_ISLNK(mode) and path.is_dir():
        yield path, _LINK_TO_DIRECTORY
        return
    if not stat.S_ISDIR(mode):
        yield path, None
        return
    root = os.path.realpath(path)
    count = 0
    for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
        dirnames.sort()
        for d in dirnames:
            if Path(dirpath, d).is_symlink():
                yield Path(dirpath, d), _LINK_TO_DIRECTORY
        for name in sorted(filenames):
            full = Path(dirpath, name)
            if full.is_symlink():
                target = os.path.realpath(full)
                if os.path.commonpath([target, root]) != root:
                    yield full, _LINK_OUT_OF_TREE
                    continue
            try:
                kind = _SPECIAL.get(stat.S_IFMT(os.stat(full).st_mode))
            except OSError:
                kind = "a dangling symbolic link" if full.is_symlink() else "an unreadable entry"
            if kind is not None:
                yield full, _special_skip(kind)
                continue
            count += 1
            if count > limits.max_files:
                yield path, _limit_skip(limits.max_files)
                return
            yield full, None


def iter_files(path: Path, limits: ScanLimits) -> Iterator[tuple[Path, str]]:
    """Files under ``path`` as ``(file, "")``, and skipped entries as ``(entry, why)``: links
    out of the tree, pipes, sockets, devices and dangling links (none is opened), and the
    directory itself once it holds more than ``limits.max_files`` files."""
    for file, skip in _walk(path, limits):
        yield file, "" if skip is None else skip.title


def scan_paths(
    paths: Iterable[str | Path],
    *,
    policy: PicklePolicy | None = None,
    limits: ScanLimits | None = None,
    ecosystems: tuple[str, ...] | None = None,
    on_file: Callable[[Path, int], None] | None = None,
) -> ScanReport:
    """Scan files and directories (recursively) without loading anything they contain.

    Args:
        paths: Files and directories.
        policy: The pickle import policy (bundled allowlist by default).
        limits: Resource bounds.
        ecosystems: Pickle allowlists to apply; ``None`` for all.
        on_file: Called after each top-level file with its path and size (progress).

    Raises:
        InputError: A path does not exist.
    """
    items = [p if isinstance(p, Path) else Path(p) for p in paths]
    # One lstat per path (a second stat only for a link): (item, lstat mode, followed mode).
    named: list[tuple[Path, int, int]] = []
    missing = []
    for item in items:
        try:
            own = os.lstat(item).st_mode
        except (FileNotFoundError, NotADirectoryError):
            missing.append(str(item))
            continue
        except OSError:
            own = 0  # unreadable (permissions): said when it is read
        mode = own
        if stat.S_ISLNK(own):
            try:
                mode = os.stat(item).st_mode
            except OSError:
                mode = 0  # a dangling link: said when it is read
        named.append((item, own, mode))
    if missing:
        raise InputError(f"no such file or directory: {', '.join(missing)}")
    session = ScanSession(policy=policy, limits=limits, ecosystems=ecosystems)
    report = ScanReport()
    started = time.perf_counter()
    for item, own, mode in named:
        directory = stat.S_ISDIR(mode)
        kind = _SPECIAL.get(stat.S_IFMT(mode))
        if kind is not None:  # never opened: a pipe blocks, a device has no end or size
            report.findings.append(session.error(_unread(item), f"not a regular file ({kind}), "
                                                 "not read", scanner="session", fmt="-"))
            continue
        for path, skip in _walk(item, session.limits, own):
            if skip is not None:
                report.findings.append(session.finding(
                    _unread(path), skip.rule, skip.severity, skip.title, skip.detail,
                    scanner="session", fmt="-", remediation=skip.remediation,
                    evidence={"incomplete": True} if skip.incomplete else None))
                continue
            try:
                source = Source.from_path(path, root=item if directory else path.parent)
            except OSError as exc:
                report.findings.append(session.error(
                    _unread(path), f"cannot read: {exc.strerror}", scanner="session", fmt="-"))
                continue
            session.bytes_expanded = 0
            report.findings.extend(session.scan(source))
            report.bytes += source.size
            if on_file is not None:
                on_file(path, source.size)
    report.files = session.scanned
    report.findings.sort(key=lambda f: (-f.severity, str(f.evidence.get("file", "")), f.title))
    report.seconds = time.perf_counter() - started
    return report


#: File types a path named to the scan may have that are not read (by ``stat.S_IFMT``).
_SPECIAL = {stat.S_IFIFO: "a pipe", stat.S_IFCHR: "a device", stat.S_IFBLK: "a device",
            stat.S_IFSOCK: "a socket"}


def _unread(path: Path) -> Source:
    """What a finding about ``path`` names when the file was not (or could not be) read."""
    return Source(name=str(path), size=0, opener=_nothing)


def _nothing() -> Any:
    raise OSError("not readable")


class ModelScanCheck(Check):
    """Static model-file scan as an audit check: formats sniffed, nothing loaded.

    ``target`` is a path or a list of paths (files or directories). Metrics: files scanned,
    members scanned, bytes, findings per severity.

    Args:
        policy: Path of a pickle policy file (YAML), or ``None`` for the bundled allowlist.
        ecosystems: Pickle allowlists to apply; ``None`` for all.

    Example:
        >>> result = ModelScanCheck().run(["models/"])  # doctest: +SKIP
        >>> [f.title for f in result.findings]  # doctest: +SKIP
    """

    name = CHECK_ID
    title = "Model-file scan"
    paper = ("MITRE ATLAS AML.T0010.003, ML supply chain compromise: model, "
             "https://atlas.mitre.org/techniques/AML.T0010.003")
    refs = REFS

    def __init__(self, *, policy: str | None = None,
                 ecosystems: tuple[str, ...] | None = None) -> None:
        self.policy = policy
        self.ecosystems = ecosystems

    def run(self, target: Any, data: Any = None, *, context: Context | None = None) -> Result:
        """Scan ``target`` (a path or paths) and return the findings as a Result."""
        from phalanx.supplychain.scan.policy import load_policy

        self.check_params()
        paths = [target] if isinstance(target, (str, Path)) else list(target)
        started = dt.datetime.now(dt.timezone.utc)
        policy = load_policy(self.policy) if self.policy else None

        tracker = (context or Context()).progress("model-scan", "scanning model files",
                                                   unit="files")
        with tracker:
            report = scan_paths(paths, policy=policy, ecosystems=self.ecosystems,
                                on_file=lambda _path, _size: tracker.advance())
        counts = Counter(f.severity.label for f in report.findings)
        metrics = [
            Metric("files_scanned", float(len(report.top_level()))),
            Metric("members_scanned", float(len(report.files) - len(report.top_level()))),
            Metric("bytes_scanned", float(report.bytes), unit="bytes"),
            Metric("scan_seconds", report.seconds, unit="seconds"),
        ]
        metrics += [Metric("findings", float(counts.get(s.label, 0)), labels={"severity": s.label})
                    for s in Severity]
        return Result(
            check=self.plugin_id(), title=self.title,
            target=", ".join(str(p) for p in paths), params=self.get_params(),
            metrics=metrics, findings=report.findings, refs=self.refs,
            started_at=started, finished_at=dt.datetime.now(dt.timezone.utc),
        )

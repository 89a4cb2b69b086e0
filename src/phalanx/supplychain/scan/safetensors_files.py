"""The safetensors scanner: the header is checked against the format; tensor bytes are never read.

A safetensors file is an 8-byte little-endian header length ``N``, ``N`` bytes of UTF-8 JSON
(which must begin with ``{`` and may be padded at the end with spaces), then one data section
that the header's ``data_offsets`` index into. The format cannot carry code, so what can go
wrong is in the header: a length that makes a loader allocate gigabytes, JSON that two loaders
read differently (duplicate keys: Python keeps the last, other parsers the first or fail),
offsets that point outside the file or make two tensors share bytes, and bytes no tensor
covers, which is room for a payload that travels with a "safe" file.

The checks follow the reference Rust implementation (``safetensors/src/tensor.rs``): a header
over 100,000,000 bytes is refused (``HeaderTooLarge``), the tensors sorted by offset must tile
the data section exactly (``InvalidOffset``, ``MetadataIncompleteBuffer``), and each tensor's
byte length must be ``prod(shape) * bits(dtype) / 8`` with no partial byte
(``TensorInvalidInfo``, ``MisalignedSlice``; F4 and the F6 types are narrower than a byte).
A file the reference refuses is reported at MEDIUM: it does not load there, but it is exactly
the kind of file on which a more lenient loader and this scanner could disagree.

Only the 8-byte prefix and the header are read, so a 2 GB model scans in milliseconds. Bytes
no tensor covers are sniffed (first 4 KiB) and, when they hold a pickle or an archive, scanned
as a member of the file.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from phalanx.core.findings import Finding, Severity
from phalanx.supplychain.scan.archive import slice_source
from phalanx.supplychain.scan.base import (
    BUNDLED_FORMATS,
    FileScanner,
    ScanLimits,
    ScanSession,
    Source,
)
from phalanx.supplychain.scan.pickle_vm import REFS
from phalanx.supplychain.scan.sniff import sniff_bytes

__all__ = ["DTYPE_BITS", "HeaderProblem", "SafetensorsScanner", "check_header"]

#: Bits per element of every dtype the reference implementation knows (safetensors 0.6+).
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8,
    "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32, "C64": 64, "F64": 64, "I64": 64, "U64": 64,
}

#: The reference loader refuses larger headers (``MAX_HEADER_SIZE``).
REFERENCE_MAX_HEADER = 100_000_000
_N_LEN = 8
_U64 = 2**64
_MAX_EXAMPLES = 5
_MAX_REGIONS = 16  # uncovered regions sniffed per file
_SNIFF = 4096
#: Formats worth scanning when found in bytes no tensor covers.
_PAYLOAD_FORMATS = frozenset({"pickle", "pytorch-legacy", "pytorch-zip", "torchscript", "zip",
                              "npz", "keras", "npy", "tar", "pytorch-tar", "gzip", "bz2", "xz"})
_CODE_RE = re.compile(r"__import__|__reduce__|\bos\.(system|popen)|subprocess\.|\b(eval|exec)\s*\(")
_B64_RE = re.compile(r"[A-Za-z0-9+/=\s_-]{24,}")
_DOS_REFS = (*REFS, "owasp-llm-2025:LLM10")
_REFERENCE_NOTE = "The reference safetensors loader refuses this file ({error})."


@dataclass(frozen=True)
class HeaderProblem:
    """One thing wrong with a safetensors header.

    Args:
        rule: Stable rule id (``"overlapping-tensors"``).
        severity: How bad it is.
        message: One line about this occurrence (names the tensor).
        evidence: Extra facts (offsets, sizes).
    """

    rule: str
    severity: Severity
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)


# Title and explanation of each rule; every finding of a rule says the same thing.
_RULES: dict[str, tuple[str, str]] = {
    "header-too-large": (
        "safetensors header larger than a loader should allocate",
        "The 8-byte prefix declares a JSON header of {declared} bytes. Loaders read the whole "
        "header into memory before parsing it, so a huge declared length is a memory "
        "exhaustion attack; the reference loader refuses headers over 100,000,000 bytes.",
    ),
    "header-length": (
        "safetensors header length runs past the end of the file",
        "The 8-byte prefix declares a header longer than the file. A loader that trusts it "
        "allocates that much memory or reads past the end of its buffer.",
    ),
    "header-invalid": (
        "safetensors header is not a JSON object",
        "The header must be a UTF-8 JSON object. This one does not parse the way the reference "
        "loader parses it, so what loaders see is undefined.",
    ),
    "header-start": (
        "safetensors header does not begin with '{'",
        "The format requires the header to begin with '{' (only trailing spaces are allowed). "
        "Parsers that check this and parsers that do not disagree about the file.",
    ),
    "duplicate-key": (
        "Duplicate keys in the safetensors header",
        "A JSON key appears more than once. Python's json keeps the last value, other parsers "
        "keep the first or refuse the file, so two tools can load different tensors from the "
        "same file: a way to show a scanner or a reviewer one model and run another.",
    ),
    "tensor-entry": (
        "Malformed tensor entry in the safetensors header",
        "A tensor entry must be an object with 'dtype', 'shape' and 'data_offsets'.",
    ),
    "unknown-dtype": (
        "Unknown dtype in the safetensors header",
        "The dtype is not one the format defines, so loaders refuse the tensor or read it "
        "with a size of their own choosing.",
    ),
    "bad-shape": (
        "Invalid tensor shape in the safetensors header",
        "A shape must be a list of non-negative integers.",
    ),
    "bad-offsets": (
        "Invalid data_offsets in the safetensors header",
        "data_offsets must be [begin, end] with integers 0 <= begin <= end.",
    ),
    "offsets-out-of-bounds": (
        "Tensor data_offsets point past the end of the file",
        "A tensor's bytes lie (partly) outside the data section. A loader that does not check "
        "reads past its buffer: a crash, or memory disclosure from the loading process.",
    ),
    "size-mismatch": (
        "Tensor byte length does not match its shape and dtype",
        "The bytes between data_offsets are not prod(shape) * bits(dtype) / 8. Loaders that "
        "trust the shape read outside the tensor's range.",
    ),
    "overlapping-tensors": (
        "Tensors share bytes (overlapping data_offsets)",
        "Two tensors' byte ranges overlap, so writing or quantising one silently changes the "
        "other; a crafted overlap lets one set of bytes pass review as two tensors.",
    ),
    "unused-bytes": (
        "Bytes in the safetensors data section that no tensor covers",
        "Some of the data section belongs to no tensor. The reference loader refuses such files "
        "because the bytes are invisible to every tool that reads tensors: room for a payload "
        "that travels with a 'safe' file.",
    ),
    "bad-metadata": (
        "Invalid __metadata__ in the safetensors header",
        "__metadata__ must map strings to strings; loaders refuse anything else.",
    ),
    "unexpected-field": (
        "Unexpected fields in a safetensors tensor entry",
        "Loaders ignore fields other than dtype, shape and data_offsets; extra data in the "
        "header is harmless to them but is data no tool shows.",
    ),
    "metadata-embedded-code": (
        "__metadata__ value looks like serialized code",
        "A metadata string looks like a pickle, an archive or Python code. safetensors loaders "
        "never execute metadata, so this is a note, not a threat by itself, unless some tool "
        "of yours decodes and loads it.",
    ),
}


def check_header(raw: bytes, data_size: int) -> tuple[list[HeaderProblem], list[tuple[int, int]]]:
    """Check a safetensors JSON header against the format.

    Args:
        raw: The header bytes (the ``N`` bytes after the length prefix).
        data_size: Size of the data section (file size - 8 - N).

    Returns:
        Every problem found, and the byte ranges (relative to the data section) that no
        tensor covers.
    """
    problems: list[HeaderProblem] = []
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [HeaderProblem("header-invalid", Severity.MEDIUM,
                              f"not UTF-8 at byte {exc.start}", {"incomplete": True})], []
    if not text.startswith("{"):
        problems.append(HeaderProblem("header-start", Severity.LOW,
                                      f"header starts with {text[:1]!r}"))
    duplicates: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in items:
            if key in seen:
                duplicates.append(key)
            seen[key] = value
        return seen

    try:
        header = json.loads(text, object_pairs_hook=pairs, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        problems.append(HeaderProblem("header-invalid", Severity.MEDIUM,
                                      f"JSON does not parse: {_short(exc)}",
                                      {"incomplete": True}))
        return problems, []
    for key in dict.fromkeys(duplicates):
        problems.append(HeaderProblem("duplicate-key", Severity.MEDIUM, f"key {key!r} repeated"))
    if not isinstance(header, dict):
        problems.append(HeaderProblem("header-invalid", Severity.MEDIUM,
                                      f"header is a JSON {type(header).__name__}, not an object",
                                      {"incomplete": True}))
        return problems, []

    ranges: list[tuple[int, int, str]] = []
    for name, entry in header.items():
        if name == "__metadata__":
            problems.extend(_check_metadata(entry))
            continue
        problems.extend(_check_tensor(name, entry, data_size, ranges))
    overlap_problems, uncovered = _layout(ranges, data_size)
    problems.extend(overlap_problems)
    return problems, uncovered


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _is_uint(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_tensor(name: str, entry: Any, data_size: int,
                  ranges: list[tuple[int, int, str]]) -> list[HeaderProblem]:
    out: list[HeaderProblem] = []
    if not isinstance(entry, dict):
        return [HeaderProblem("tensor-entry", Severity.MEDIUM,
                              f"{name!r} is a JSON {type(entry).__name__}, not an object")]
    missing = [k for k in ("dtype", "shape", "data_offsets") if k not in entry]
    if missing:
        out.append(HeaderProblem("tensor-entry", Severity.MEDIUM,
                                 f"{name!r} lacks {', '.join(missing)}"))
    extra = sorted(set(entry) - {"dtype", "shape", "data_offsets"})
    if extra:
        out.append(HeaderProblem("unexpected-field", Severity.LOW,
                                 f"{name!r} has {', '.join(map(repr, extra[:5]))}"))
    bits: int | None = None
    dtype = entry.get("dtype")
    if "dtype" in entry:
        if isinstance(dtype, str) and dtype in DTYPE_BITS:
            bits = DTYPE_BITS[dtype]
        else:
            out.append(HeaderProblem("unknown-dtype", Severity.MEDIUM,
                                     f"{name!r} has dtype {str(dtype)[:40]!r}"))
    elements: int | None = None
    shape = entry.get("shape")
    if "shape" in entry:
        if isinstance(shape, list) and all(_is_uint(d) for d in shape):
            elements = 1
            for dim in shape:
                elements *= dim
                if elements >= _U64:  # the reference fails with ValidationOverflow
                    break
        else:
            out.append(HeaderProblem("bad-shape", Severity.MEDIUM,
                                     f"{name!r} has shape {_clip(shape)}"))
    offsets = entry.get("data_offsets")
    if "data_offsets" not in entry:
        return out
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_uint, offsets))):
        out.append(HeaderProblem("bad-offsets", Severity.MEDIUM,
                                 f"{name!r} has data_offsets {_clip(offsets)}"))
        return out
    begin, end = offsets
    if begin > end:
        out.append(HeaderProblem("bad-offsets", Severity.MEDIUM,
                                 f"{name!r} begins at {begin} after it ends at {end}",
                                 {"begin": begin, "end": end}))
        return out
    ranges.append((begin, end, name))
    if end > data_size:
        out.append(HeaderProblem("offsets-out-of-bounds", Severity.MEDIUM,
                                 f"{name!r} spans [{begin}, {end}) but the data section has "
                                 f"{data_size} bytes", {"begin": begin, "end": end,
                                                        "data_size": data_size}))
    if bits is not None and elements is not None:
        nbits = elements * bits
        if elements >= _U64 or nbits >= _U64:
            out.append(HeaderProblem("size-mismatch", Severity.MEDIUM,
                                     f"{name!r}: shape {_clip(shape)} overflows 64 bits"))
        elif nbits % 8:
            out.append(HeaderProblem("size-mismatch", Severity.MEDIUM,
                                     f"{name!r}: {elements} x {dtype} is {nbits} bits, not a "
                                     "whole number of bytes"))
        elif end - begin != nbits // 8:
            out.append(HeaderProblem("size-mismatch", Severity.MEDIUM,
                                     f"{name!r}: shape {_clip(shape)} of {dtype} needs "
                                     f"{nbits // 8} bytes, data_offsets give {end - begin}",
                                     {"expected": nbits // 8, "declared": end - begin}))
    return out


def _clip(value: Any) -> str:
    """A short rendering of a JSON value for a message."""
    if isinstance(value, list) and len(value) > 8:
        return _clip(value[:8])[:-1] + ", ...]"
    try:
        text = json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        text = type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def _layout(ranges: list[tuple[int, int, str]],
            data_size: int) -> tuple[list[HeaderProblem], list[tuple[int, int]]]:
    """Overlaps and uncovered bytes, the way the reference loader walks the sorted offsets."""
    out: list[HeaderProblem] = []
    uncovered: list[tuple[int, int]] = []
    covered_to = 0
    last = ""
    for begin, end, name in sorted(ranges):
        if begin < covered_to:
            out.append(HeaderProblem("overlapping-tensors", Severity.MEDIUM,
                                     f"{name!r} [{begin}, {end}) overlaps {last!r} "
                                     f"(which runs to {covered_to})",
                                     {"tensor": name, "other": last}))
        elif begin > covered_to:
            uncovered.append((covered_to, min(begin, data_size)))
        if end > covered_to:
            covered_to, last = end, name
    if covered_to < data_size:
        uncovered.append((covered_to, data_size))
    uncovered = [(b, e) for b, e in uncovered if e > b]
    for begin, end in uncovered:
        where = "after the last tensor" if end == data_size else "between tensors"
        out.append(HeaderProblem("unused-bytes", Severity.MEDIUM,
                                 f"{end - begin} bytes at data offset {begin} {where}",
                                 {"begin": begin, "end": end}))
    return out, uncovered


def _check_metadata(meta: Any) -> list[HeaderProblem]:
    if meta is None:  # the reference reads it as an Option: null means no metadata
        return []
    if not isinstance(meta, dict):
        return [HeaderProblem("bad-metadata", Severity.MEDIUM,
                              f"__metadata__ is a JSON {type(meta).__name__}, not an object")]
    out: list[HeaderProblem] = []
    bad = [k for k, v in meta.items() if not isinstance(v, str)]
    if bad:
        out.append(HeaderProblem("bad-metadata", Severity.MEDIUM,
                                 f"{len(bad)} value(s) are not strings (first: {bad[0]!r})"))
    for i, (key, value) in enumerate(meta.items()):
        if i >= 10_000:
            break
        if isinstance(value, str):
            what = _embedded_code(value)
            if what:
                out.append(HeaderProblem("metadata-embedded-code", Severity.LOW,
                                         f"__metadata__[{key[:60]!r}] looks like {what}"))
    return out


def _embedded_code(value: str) -> str | None:
    """What kind of serialized code ``value`` looks like, if any (a cheap, bounded look)."""
    text = value[:65536]
    if _CODE_RE.search(text):
        return "Python code"
    if len(text) >= 24 and _B64_RE.fullmatch(text[:4096]):
        compact = re.sub(r"\s+", "", text)[:4096]
        compact = compact[: len(compact) - len(compact) % 4]
        blob = b""
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                blob = decode(compact)
                break
            except (binascii.Error, ValueError):
                continue
        kind = sniff_bytes(blob) if blob else ""
        if kind in _PAYLOAD_FORMATS:
            return f"base64 of a {kind} file"
    if text[:1] == "\x80":  # a pickle smuggled as a latin-1 string
        raw = text[:_SNIFF].encode("latin-1", "ignore")
        if sniff_bytes(raw) == "pickle":
            return "a pickle stored as text"
    return None


class SafetensorsScanner(FileScanner):
    """safetensors: the header checked against the format without reading tensor data.

    Threat model: an attacker who controls the file and wants a loader to allocate without
    bound, read outside the file, or see different tensors from the ones a reviewer or scanner
    sees; or to smuggle a payload in bytes no tensor covers. safetensors holds no code, so
    nothing here is CRITICAL: the findings are resource exhaustion (``header-too-large``,
    HIGH) and files the reference loader refuses (MEDIUM), where lenient loaders and this
    scanner could disagree.

    Example:
        >>> from phalanx.supplychain.scan.safetensors_files import SafetensorsScanner
        >>> findings = list(SafetensorsScanner().scan("model.safetensors"))  # doctest: +SKIP
    """

    name = "safetensors"
    title = "safetensors (header checks)"
    paper = ("Hugging Face, 'safetensors' format specification and reference implementation, "
             "https://github.com/huggingface/safetensors")
    refs = REFS
    formats: ClassVar[tuple[str, ...]] = BUNDLED_FORMATS["safetensors"]

    def __init__(self) -> None:
        """No parameters: the limits come from the scan session."""

    def scan_source(self, source: Source, session: ScanSession) -> Iterator[Finding]:
        """Read the length prefix and the JSON header of ``source`` and check them."""
        fmt = "safetensors"
        limits: ScanLimits = session.limits
        if source.size < _N_LEN:
            yield session.malformed(source, "shorter than the 8-byte header length",
                                    scanner=self.name, fmt=fmt)
            return
        with source.open() as fh:
            prefix = fh.read(_N_LEN)
            if len(prefix) < _N_LEN:
                yield session.malformed(source, "shorter than the 8-byte header length",
                                        scanner=self.name, fmt=fmt)
                return
            (n,) = struct.unpack("<Q", prefix)
            room = source.size - _N_LEN
            if n > limits.max_header_bytes:
                yield self._finding(session, source, "header-too-large", Severity.HIGH,
                                    [f"declared header of {n} bytes; the scan limit is "
                                     f"{limits.max_header_bytes}"],
                                    {"declared": n, "incomplete": True}, refs=_DOS_REFS)
                return
            if n > room:
                yield self._finding(session, source, "header-length", Severity.MEDIUM,
                                    [f"declared header of {n} bytes; the file has {room} "
                                     "after the prefix"],
                                    {"declared": n, "incomplete": True}, refs=_DOS_REFS)
                return
            raw = fh.read(n)
        if len(raw) < n:
            yield session.malformed(source, "the header is cut short", scanner=self.name,
                                    fmt=fmt, offset=_N_LEN + len(raw))
            return
        problems: list[HeaderProblem] = []
        if n > REFERENCE_MAX_HEADER:
            problems.append(HeaderProblem(
                "header-too-large", Severity.MEDIUM,
                f"header of {n} bytes; the reference loader refuses more than "
                f"{REFERENCE_MAX_HEADER}", {"declared": n}))
        found, uncovered = check_header(raw, room - n)
        problems.extend(found)
        yield from self._report(session, source, problems)
        yield from self._scan_uncovered(session, source, _N_LEN + n, uncovered)

    def _report(self, session: ScanSession, source: Source,
                problems: list[HeaderProblem]) -> Iterator[Finding]:
        """One finding per rule and severity, with a count and the first examples."""
        grouped: dict[tuple[str, Severity], list[HeaderProblem]] = {}
        for p in problems:
            grouped.setdefault((p.rule, p.severity), []).append(p)
        for (rule, severity), items in grouped.items():
            evidence: dict[str, Any] = {"count": len(items)}
            for p in items[:1]:
                evidence.update(p.evidence)
            refs = _DOS_REFS if rule == "header-too-large" else REFS
            yield self._finding(session, source, rule, severity, [p.message for p in items],
                                evidence, refs=refs)

    def _finding(self, session: ScanSession, source: Source, rule: str, severity: Severity,
                 messages: list[str], evidence: dict[str, Any],
                 refs: tuple[str, ...] = REFS) -> Finding:
        title, detail = _RULES[rule]
        detail = detail.replace("{declared}", str(evidence.get("declared", "?")))
        shown = "; ".join(messages[:_MAX_EXAMPLES])
        more = len(messages) - _MAX_EXAMPLES
        detail += f" Found: {shown}" + (f" (and {more} more)." if more > 0 else ".")
        if severity >= Severity.MEDIUM and rule in _REFERENCE_ERROR:
            detail += " " + _REFERENCE_NOTE.format(error=_REFERENCE_ERROR[rule])
        evidence = {**evidence, "examples": messages[:_MAX_EXAMPLES]}
        return session.finding(source, rule, severity, title, detail, scanner=self.name,
                               version=self.version, evidence=evidence, refs=refs,
                               fmt="safetensors", remediation=_REMEDIATION.get(rule, ""))

    def _scan_uncovered(self, session: ScanSession, source: Source, data_start: int,
                        uncovered: list[tuple[int, int]]) -> Iterator[Finding]:
        """Sniff the bytes no tensor covers; scan them as a member when they hold a payload."""
        for begin, end in uncovered[:_MAX_REGIONS]:
            start, length = data_start + begin, end - begin
            if length > session.limits.max_member_bytes:
                continue
            child = slice_source(source, f"unused-bytes@{start}", start, length)
            try:
                head = child.head(_SNIFF)
            except OSError:
                continue
            if sniff_bytes(head, size=length) in _PAYLOAD_FORMATS:
                yield from session.scan(child)


_REFERENCE_ERROR = {
    "header-length": "InvalidHeaderLength",
    "header-invalid": "InvalidHeader / InvalidHeaderDeserialization",
    "tensor-entry": "InvalidHeaderDeserialization",
    "unknown-dtype": "InvalidHeaderDeserialization",
    "bad-shape": "InvalidHeaderDeserialization",
    "bad-offsets": "InvalidOffset",
    "offsets-out-of-bounds": "MetadataIncompleteBuffer",
    "size-mismatch": "TensorInvalidInfo / MisalignedSlice",
    "overlapping-tensors": "InvalidOffset",
    "unused-bytes": "InvalidOffset / MetadataIncompleteBuffer",
    "bad-metadata": "InvalidHeaderDeserialization",
}

_REMEDIATION = {
    "metadata-embedded-code": ("Check which tool reads this metadata value; never unpickle or "
                               "evaluate metadata from a model file."),
    "unused-bytes": ("Do not load the file; re-export the tensors with the official safetensors "
                     "library, which writes no uncovered bytes."),
    "header-too-large": ("Do not load the file; a real model's header is a few megabytes at "
                         "most."),
}

"""The GGUF scanner: header, metadata and tensor layout checked, chat templates analysed.

A GGUF file (llama.cpp and everything built on it) is a magic ``GGUF``, a version (1 to 3), a
tensor count and a metadata count, the metadata key/value pairs, one info record per tensor
(name, dimensions, ggml type, offset), padding to ``general.alignment`` (32 by default) and
the tensor data. All integers are little-endian, except in the big-endian files some
converters write for s390x; both are read here. Versions 2 and 3 use 64-bit counts and
lengths, version 1 used 32-bit ones.

Two kinds of attack reach a loader through such a file:

- **The binary layout.** Loaders written in C allocate from declared counts and lengths
  before reading, and computed sizes overflow: the Cisco Talos reports of 2024 against
  llama.cpp (CVE-2024-23605, ``n_kv``; CVE-2024-21802, tensor dimensions) are heap overflows
  from a crafted header. Every count and length is checked here against the bytes that
  remain, before anything is read or allocated, so a declared count of 2**63 costs nothing.
  Tensor offsets must be aligned, inside the file, non-overlapping and laid out the way
  llama.cpp's ``gguf.cpp`` requires (each tensor where the previous one's padded end is).
- **The chat template.** ``tokenizer.chat_template`` (and ``tokenizer.chat_template.<name>``)
  is a Jinja2 template that inference servers render with the user's messages. Rendered
  with a plain, non-sandboxed ``jinja2.Environment`` it can reach Python objects through
  dunder attributes and run commands: CVE-2024-34359 ("Llama Drama", GHSA-56xg-wfcc-g829) in
  llama-cpp-python before 0.2.72. :func:`analyse_chat_template` parses the template (parsing
  executes nothing) and walks its syntax tree for the ways such payloads are written,
  including names assembled at render time to dodge text matching.

Tensor data is never read: a 2 GB model costs the size of its header.
"""

from __future__ import annotations

import functools
import re
import struct
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO, ClassVar

from phalanx.core.findings import Finding, Severity
from phalanx.core.plugin import Constraint, Interval
from phalanx.supplychain.scan._quiet import file_text_warnings_ignored
from phalanx.supplychain.scan.archive import slice_source
from phalanx.supplychain.scan.base import BUNDLED_FORMATS, FileScanner, ScanSession, Source
from phalanx.supplychain.scan.pickle_vm import REFS
from phalanx.supplychain.scan.sniff import sniff_bytes

__all__ = ["GGML_TYPES", "MAX_TEMPLATE_CHARS", "GgufScanner", "TemplateIssue",
           "analyse_chat_template", "template_rule"]

#: ggml tensor types by id: (name, elements per block, bytes per block). Ids missing here were
#: removed from ggml (4, 5, 31-33, 36-38) or are newer than this table.
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 36),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2),
    26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17), 40: ("NVFP4", 64, 36), 41: ("Q1_0", 128, 18), 42: ("Q2_0", 64, 18),
}

_MAGIC = b"GGUF"
_DEFAULT_ALIGNMENT = 32
_MAX_DIMS = 4  # GGML_MAX_DIMS
_MAX_NAME = 64  # GGML_MAX_NAME: llama.cpp refuses names of 64 bytes or more
_MAX_NESTING = 8  # arrays of arrays; llama.cpp itself refuses any nesting
_CHUNK = 65536
_MAX_EXAMPLES = 5
_SNIFF = 4096
#: Formats worth scanning when found after the last tensor.
_PAYLOAD_FORMATS = frozenset({"pickle", "pytorch-legacy", "pytorch-zip", "torchscript", "zip",
                              "npz", "keras", "npy", "tar", "pytorch-tar", "gzip", "bz2", "xz"})

# Metadata value types.
_STRING, _ARRAY = 8, 9
_SCALARS: dict[int, str] = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "B",
                            10: "Q", 11: "q", 12: "d"}
_TYPE_NAMES = {0: "u8", 1: "i8", 2: "u16", 3: "i16", 4: "u32", 5: "i32", 6: "f32", 7: "bool",
               8: "string", 9: "array", 10: "u64", 11: "i64", 12: "f64"}

_DOS_REFS = (*REFS, "owasp-llm-2025:LLM10")
_SSTI_REFS = REFS


# -- the binary layout ------------------------------------------------------------------------


class _Stop(Exception):
    """Parsing cannot go on; carries the finding to report."""

    def __init__(self, rule: str, message: str, offset: int, **evidence: Any) -> None:
        super().__init__(message)
        self.rule, self.message, self.offset, self.evidence = rule, message, offset, evidence


class _Reader:
    """Bounded reads from a GGUF header: never past the file, never past the header budget."""

    def __init__(self, fh: BinaryIO, size: int, budget: int) -> None:
        self.fh, self.size, self.budget = fh, size, budget
        self.pos = 0
        self._buf = b""
        self._buf_at = 0
        self.endian = "<"
        self.wide = True  # 64-bit counts and lengths (versions 2 and 3)
        self._structs: dict[str, struct.Struct] = {}

    def take(self, n: int) -> bytes:
        self._room(n)
        off = self.pos - self._buf_at
        if off < 0 or off + n > len(self._buf):
            self.fh.seek(self.pos)
            self._buf = self.fh.read(max(n, _CHUNK))
            self._buf_at, off = self.pos, 0
            if len(self._buf) < n:
                raise _Stop("malformed", "the file ends inside the header", self.pos)
        self.pos += n
        return self._buf[off:off + n]

    def skip(self, n: int) -> None:
        self._room(n)
        self.pos += n

    def _room(self, n: int) -> None:
        if n > self.size - self.pos:
            raise _Stop("malformed", "the file ends inside the header", self.pos)
        if self.pos + n > self.budget:
            raise _Stop("header-too-large",
                        f"metadata and tensor info run past {self.budget} bytes", self.pos,
                        limit=self.budget)

    def scalar(self, code: str) -> Any:
        packer = self._structs.get(code)
        if packer is None:
            packer = self._structs[code] = struct.Struct(self.endian + code)
        return packer.unpack(self.take(packer.size))[0]

    def set_order(self, endian: str, wide: bool) -> None:
        self.endian, self.wide, self._structs = endian, wide, {}

    def u32(self) -> int:
        return int(self.scalar("I"))

    def count(self) -> int:
        """A count or a length: 64-bit from version 2 on."""
        return int(self.scalar("Q" if self.wide else "I"))

    def skip_strings(self, count: int) -> None:
        """Skip ``count`` length-prefixed strings (token lists hold hundreds of thousands)."""
        for _ in range(count):
            n = self.count()
            self.need(n, 1, "string length")
            self.skip(n)

    def need(self, count: int, each: int, what: str) -> None:
        """Refuse a declared count whose items cannot fit in the bytes that remain."""
        total = count * each
        if total <= self.size - self.pos:
            return
        if count >= 2**31 or total > self.budget:
            raise _Stop("oversized-count",
                        f"{what} declares {count} (at least {total} bytes); "
                        f"{self.size - self.pos} bytes remain", self.pos,
                        declared=count, what=what)
        raise _Stop("malformed", f"{what} ({count}) runs past the end of the file", self.pos)

    def string(self, what: str, keep: bool, cap: int = 1 << 30) -> bytes | None:
        n = self.count()
        self.need(n, 1, what)
        if keep and n <= cap:
            return self.take(n)
        self.skip(n)
        return None


@dataclass
class _TensorInfo:
    name: str
    dims: list[int]
    type_id: int
    offset: int
    nbytes: int | None = None


@dataclass
class _Problem:
    rule: str
    severity: Severity
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Parsed:
    version: int = 0
    endian: str = "<"
    templates: list[tuple[str, str]] = field(default_factory=list)
    problems: list[_Problem] = field(default_factory=list)
    stop: _Stop | None = None
    architecture: str = ""
    trailing: tuple[int, int] | None = None  # bytes after the last tensor


def _is_template_key(key: str) -> bool:
    return key == "tokenizer.chat_template" or key.startswith("tokenizer.chat_template.")


def _parse(fh: BinaryIO, size: int, budget: int, max_template: int) -> _Parsed:
    """Parse and check the header; tensor data is not read."""
    out = _Parsed()
    r = _Reader(fh, size, budget)
    try:
        _parse_into(r, out, max_template)
    except _Stop as stop:
        out.stop = stop
    return out


def _parse_into(r: _Reader, out: _Parsed, max_template: int) -> None:
    if r.take(4) != _MAGIC:
        raise _Stop("malformed", "no GGUF magic", 0)
    raw_version = r.take(4)
    (little,) = struct.unpack("<I", raw_version)
    (big,) = struct.unpack(">I", raw_version)
    if 1 <= little <= 3:
        version = little
    elif 1 <= big <= 3:
        version, r.endian = big, ">"
        out.problems.append(_Problem("big-endian", Severity.INFO,
                                     "big-endian file (llama.cpp loads only native byte order)"))
    else:
        raise _Stop("malformed", f"unsupported GGUF version {little}", 4)
    out.version, out.endian = version, r.endian
    r.set_order(r.endian, version >= 2)
    n_tensors, n_kv = r.count(), r.count()
    if r.wide and (n_tensors >= 2**63 or n_kv >= 2**63):  # llama.cpp reads them as int64
        what = "tensor count" if n_tensors >= 2**63 else "metadata count"
        raise _Stop("oversized-count", f"{what} is negative as a signed 64-bit integer",
                    8, declared=max(n_tensors, n_kv), what=what)
    width = 8 if r.wide else 4
    # A key/value pair takes at least a key length, a type and one byte of value.
    r.need(n_kv, width + 4 + 1, "metadata count")
    alignment = _DEFAULT_ALIGNMENT
    seen: set[str] = set()
    for _ in range(n_kv):
        raw_key = r.string("metadata key length", keep=True, cap=65536)
        key = raw_key.decode("utf-8", "replace") if raw_key is not None else "<long key>"
        if raw_key is None or not key:
            out.problems.append(_Problem("bad-metadata", Severity.MEDIUM,
                                         "empty key" if raw_key is not None else
                                         "key longer than 64 KiB"))
        if key in seen:
            out.problems.append(_Problem("duplicate-key", Severity.MEDIUM,
                                         f"key {key[:80]!r} repeated"))
        seen.add(key)
        vtype = r.u32()
        keep = key == "general.alignment" or key == "general.architecture" or \
            _is_template_key(key)
        value = _value(r, vtype, 0, keep, max_template)
        if key == "general.alignment":
            alignment = _check_alignment(vtype, value, out.problems)
        elif key == "general.architecture" and isinstance(value, bytes):
            out.architecture = value[:64].decode("utf-8", "replace")
        elif _is_template_key(key):
            if isinstance(value, bytes):
                out.templates.append((key, value.decode("utf-8", "replace")))
            elif value is _TOO_LONG:
                out.templates.append((key, _TOO_LONG))
            else:
                out.problems.append(_Problem("bad-metadata", Severity.LOW,
                                             f"{key} is a {_TYPE_NAMES.get(vtype, '?')}, not a "
                                             "string"))
    tensors = _tensor_infos(r, n_tensors, out)
    _layout(r, tensors, alignment, out)


_TOO_LONG: Any = "\x00<template over the analysis limit>"


def _value(r: _Reader, vtype: int, depth: int, keep: bool, max_template: int) -> Any:
    """Read (``keep``) or skip one metadata value; arrays are always skipped."""
    if vtype in _SCALARS:
        value = r.scalar(_SCALARS[vtype])
        return value if keep else None
    if vtype == _STRING:
        n = r.count()
        r.need(n, 1, "string length")
        if keep and n <= max_template:
            return r.take(n)
        r.skip(n)
        return _TOO_LONG if keep else None
    if vtype != _ARRAY:
        raise _Stop("malformed", f"unknown metadata value type {vtype}", r.pos - 4)
    if depth >= _MAX_NESTING:
        raise _Stop("malformed", f"arrays nested more than {_MAX_NESTING} deep", r.pos)
    etype, count = r.u32(), r.count()
    width = 8 if r.wide else 4
    if etype in _SCALARS:
        each = struct.calcsize(_SCALARS[etype])
        r.need(count, each, "array length")
        r.skip(count * each)
    elif etype == _STRING:
        r.need(count, width, "array length")
        r.skip_strings(count)
    elif etype == _ARRAY:
        r.need(count, 4 + width, "array length")
        for _ in range(count):
            _value(r, _ARRAY, depth + 1, False, max_template)
    else:
        raise _Stop("malformed", f"array of unknown value type {etype}", r.pos - 4 - width)
    return None


def _check_alignment(vtype: int, value: Any, problems: list[_Problem]) -> int:
    if vtype != 4:
        problems.append(_Problem("bad-alignment", Severity.MEDIUM,
                                 f"general.alignment is a {_TYPE_NAMES.get(vtype, '?')}, "
                                 "not a u32"))
        return _DEFAULT_ALIGNMENT
    if not isinstance(value, int) or value <= 0 or value & (value - 1):
        problems.append(_Problem("bad-alignment", Severity.MEDIUM,
                                 f"general.alignment {value} is not a power of two"))
        return _DEFAULT_ALIGNMENT
    if value > 1 << 20:
        problems.append(_Problem("bad-alignment", Severity.MEDIUM,
                                 f"general.alignment {value} is absurdly large (padding "
                                 "arithmetic overflows in some loaders)"))
    return int(value)


def _tensor_infos(r: _Reader, n_tensors: int, out: _Parsed) -> list[_TensorInfo]:
    width = 8 if r.wide else 4
    # name length, n_dims, type and offset at least
    r.need(n_tensors, width + 4 + 4 + 8, "tensor count")
    tensors: list[_TensorInfo] = []
    names: set[str] = set()
    for _ in range(n_tensors):
        raw = r.string("tensor name length", keep=True, cap=4096)
        name = raw.decode("utf-8", "replace") if raw is not None else "<name over 4 KiB>"
        if raw is None or len(raw) >= _MAX_NAME:
            out.problems.append(_Problem("bad-tensor-info", Severity.MEDIUM,
                                         f"tensor name {name[:40]!r}... is "
                                         f"{len(raw) if raw is not None else 'over 4096'} bytes; "
                                         f"llama.cpp allows {_MAX_NAME - 1}"))
        if name in names:
            out.problems.append(_Problem("duplicate-tensor", Severity.MEDIUM,
                                         f"tensor {name[:80]!r} repeated"))
        names.add(name)
        n_dims = r.u32()
        if n_dims > _MAX_DIMS:
            out.problems.append(_Problem("bad-tensor-info", Severity.MEDIUM,
                                         f"{name[:60]!r} has {n_dims} dimensions; ggml allows "
                                         f"{_MAX_DIMS}"))
        r.need(n_dims, width, "tensor dimension count")
        dims = [r.count() for _ in range(n_dims)]
        type_id, offset = r.u32(), int(r.scalar("Q"))
        tensors.append(_TensorInfo(name, dims, type_id, offset))
    return tensors


def _tensor_size(t: _TensorInfo, problems: list[_Problem]) -> int | None:
    """Bytes of tensor ``t``, or ``None`` when its type or shape makes that unknowable."""
    label = repr(t.name[:60])
    if any(d >= 2**63 for d in t.dims):
        problems.append(_Problem("bad-tensor-info", Severity.MEDIUM,
                                 f"{label} has a negative dimension (as int64)"))
        return None
    elements = 1
    for d in t.dims:
        elements *= d
    if elements >= 2**63:
        problems.append(_Problem("tensor-size-overflow", Severity.HIGH,
                                 f"{label}: {' x '.join(map(str, t.dims[:6]))} elements "
                                 "overflow int64", {"tensor": t.name}))
        return None
    info = GGML_TYPES.get(t.type_id)
    if info is None:
        problems.append(_Problem("unknown-tensor-type", Severity.LOW,
                                 f"{label} has ggml type {t.type_id}"))
        return None
    type_name, block, type_size = info
    row = t.dims[0] if t.dims else 1
    if row % block:
        problems.append(_Problem("bad-tensor-info", Severity.MEDIUM,
                                 f"{label}: {row} elements per row is not a multiple of the "
                                 f"{type_name} block ({block})"))
        return None
    nbytes = elements // block * type_size
    if nbytes >= 2**64:
        problems.append(_Problem("tensor-size-overflow", Severity.HIGH,
                                 f"{label}: {nbytes} bytes overflow size_t", {"tensor": t.name}))
        return None
    return nbytes


def _pad(n: int, alignment: int) -> int:
    return n + (-n % alignment)


def _layout(r: _Reader, tensors: list[_TensorInfo], alignment: int, out: _Parsed) -> None:
    """Alignment, bounds, overlap and the contiguous layout llama.cpp requires."""
    data_start = _pad(r.pos, alignment) if tensors else r.pos
    data_size = max(0, r.size - data_start)
    problems = out.problems
    expected: int | None = 0
    for t in tensors:
        t.nbytes = _tensor_size(t, problems)
        label = repr(t.name[:60])
        if t.offset % alignment:
            problems.append(_Problem("misaligned-tensor", Severity.MEDIUM,
                                     f"{label} at offset {t.offset} is not a multiple of "
                                     f"{alignment}", {"offset": t.offset}))
        end = t.offset + (t.nbytes or 0)
        if end > data_size or t.offset > data_size:
            problems.append(_Problem("tensor-out-of-bounds", Severity.MEDIUM,
                                     f"{label} spans [{t.offset}, {end}) of a {data_size}-byte "
                                     "data section", {"offset": t.offset, "end": end,
                                                      "data_size": data_size}))
        if expected is not None and t.offset != expected:
            problems.append(_Problem("non-contiguous-tensors", Severity.MEDIUM,
                                     f"{label} at offset {t.offset}; the previous tensor's "
                                     f"padded end is {expected}",
                                     {"offset": t.offset, "expected": expected}))
        expected = None if t.nbytes is None else t.offset + _pad(t.nbytes, alignment)
    covered_to, last = 0, ""
    for t in sorted((t for t in tensors if t.nbytes is not None), key=lambda t: t.offset):
        assert t.nbytes is not None
        if t.offset < covered_to and t.nbytes > 0:
            problems.append(_Problem("overlapping-tensors", Severity.MEDIUM,
                                     f"{t.name[:60]!r} at {t.offset} overlaps {last[:60]!r} "
                                     f"(which runs to {covered_to})",
                                     {"tensor": t.name, "other": last}))
        if t.offset + t.nbytes > covered_to:
            covered_to, last = t.offset + t.nbytes, t.name
    known = all(t.nbytes is not None for t in tensors)
    used_to = data_start + _pad(covered_to, alignment) if tensors else r.pos
    if known and r.size > used_to:
        out.trailing = (used_to, r.size)
        problems.append(_Problem("unused-bytes", Severity.LOW,
                                 f"{r.size - used_to} bytes after the last tensor, at file "
                                 f"offset {used_to}", {"begin": used_to, "end": r.size}))


# -- the chat template ------------------------------------------------------------------------


@dataclass(frozen=True)
class TemplateIssue:
    """One dangerous construct in a Jinja2 chat template.

    Args:
        rule: ``chat-template-dunder`` (CRITICAL), ``chat-template-gadget`` and
            ``chat-template-obfuscation`` (HIGH), ``chat-template-include``,
            ``chat-template-unparsable`` and ``chat-template-too-large`` (MEDIUM).
        severity: How bad it is.
        message: What was found, in a line.
        line: Template line (1-based), 0 when unknown.
    """

    rule: str
    severity: Severity
    message: str
    line: int = 0


_DUNDER = re.compile(r"__\w+__\Z")
_DUNDER_IN = re.compile(r"__[A-Za-z]\w*?__")
#: Attributes that are modules or frames: reaching one from a template is reaching Python.
_MODULE_ATTRS = frozenset({
    "os", "sys", "subprocess", "builtins", "importlib", "modules", "posix", "pty",
    "f_globals", "f_locals", "f_builtins", "f_back", "gi_frame", "cr_frame", "ag_frame",
    "tb_frame", "func_globals", "func_code", "im_func", "mro",
})
#: Attributes that run commands or code when called.
_EXEC_ATTRS = frozenset({
    "popen", "system", "spawnl", "spawnlp", "spawnv", "spawnve", "spawnvp", "execl",
    "execle", "execlp", "execv", "execve", "execvp", "check_output", "check_call",
    "getoutput", "getstatusoutput", "Popen", "exec", "eval", "import_module", "load_module",
    "exec_module", "fork", "forkpty",
})
#: Names that Jinja does not define and chat templates never need: a template that uses
#: them expects the server to hand it Python builtins.
_PYTHON_NAMES = frozenset({
    "os", "sys", "subprocess", "builtins", "importlib", "eval", "exec", "getattr", "setattr",
    "delattr", "globals", "locals", "vars", "open", "compile", "breakpoint",
})
#: Jinja and Flask globals that every published SSTI chain starts from. Calling them is
#: ordinary (``namespace(...)`` holds loop state in many Hugging Face templates,
#: ``cycler(...)`` alternates values); navigating *from* them is not.
_ANCHORS = frozenset({
    "lipsum", "cycler", "joiner", "namespace", "self", "config", "request", "url_for",
    "get_flashed_messages",
})
#: Filters that look attributes up by name (``environment.getattr``), with the position of
#: the name among their arguments (``map`` takes it as a keyword or after ``'attr'``).
_ATTR_FILTERS: dict[str, int | None] = {
    "attr": 0, "selectattr": 0, "rejectattr": 0, "groupby": 0, "sum": 0, "sort": 2,
    "unique": 1, "min": 1, "max": 1, "map": None,
}
_BUILDERS = frozenset({"join", "format", "reverse", "replace", "lower", "upper", "trim",
                       "string", "first", "last", "list"})
_NOFOLD: Any = object()
_MAX_FOLD = 4096


@functools.cache
def _environment() -> Any:
    """A Jinja2 environment that parses what Hugging Face's chat-template environment parses
    (built once: it is only ever used to parse, never to render)."""
    import jinja2
    from jinja2 import nodes
    from jinja2.ext import Extension

    class GenerationTag(Extension):
        """``{% generation %}...{% endgeneration %}`` (assistant masks in transformers)."""

        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.Scope(body, lineno=lineno)

    return jinja2.Environment(extensions=["jinja2.ext.loopcontrols", "jinja2.ext.do",
                                          GenerationTag])


#: The longest chat template analysed by default, in characters; a longer one is a MEDIUM
#: ``chat-template-too-large`` finding (in GGUF metadata and Hugging Face files alike).
MAX_TEMPLATE_CHARS = 1 << 20


def analyse_chat_template(text: str, *,
                          max_chars: int = MAX_TEMPLATE_CHARS) -> list[TemplateIssue]:
    """Find server-side template injection in a Jinja2 chat template, without rendering it.

    The template is parsed (which executes nothing) and its syntax tree walked for access to
    dunder attributes (CRITICAL), the gadgets SSTI chains use (private attributes, modules,
    ``popen``/``system`` calls, navigation from ``lipsum``/``cycler``/``joiner``/``self``...:
    HIGH), names assembled at render time (``|attr`` with a computed name, ``'__cla' ~
    'ss__'``, ``|join``, ``|format``, ``%``: HIGH) and ``include``/``import`` (MEDIUM).
    Constant expressions are folded, so a dunder spelled in pieces is still a dunder.

    Args:
        text: The template source.
        max_chars: Longer templates are not parsed (MEDIUM ``chat-template-too-large``).

    Example:
        >>> [i.rule for i in analyse_chat_template("{{ ''.__class__.__mro__ }}")][:1]
        ['chat-template-dunder']
    """
    return list(_analyse(text, max_chars))


@functools.lru_cache(maxsize=64)
def _analyse(text: str, max_chars: int) -> tuple[TemplateIssue, ...]:
    """:func:`analyse_chat_template`, remembered: the quantisations of one model in a
    directory all carry the same template."""
    return tuple(_analyse_uncached(text, max_chars))


def _analyse_uncached(text: str, max_chars: int) -> list[TemplateIssue]:
    if len(text) > max_chars:
        issues = [TemplateIssue("chat-template-too-large", Severity.MEDIUM,
                                f"template of {len(text)} characters is over the "
                                f"{max_chars}-character analysis limit")]
        match = _DUNDER_IN.search(text)
        if match:
            issues.append(TemplateIssue("chat-template-obfuscation", Severity.HIGH,
                                        f"contains {match.group(0)!r}"))
        return issues
    from jinja2 import TemplateSyntaxError

    try:
        with file_text_warnings_ignored():  # Jinja unescapes string literals
            tree = _environment().parse(text)
    except TemplateSyntaxError as exc:
        return [TemplateIssue("chat-template-unparsable", Severity.MEDIUM,
                              f"does not parse: {exc.message}", exc.lineno or 0)]
    except (RecursionError, ValueError, TypeError, MemoryError) as exc:
        return [TemplateIssue("chat-template-unparsable", Severity.MEDIUM,
                              f"does not parse: {type(exc).__name__}")]
    try:
        return _TemplateWalk(tree).issues()
    except RecursionError:
        return [TemplateIssue("chat-template-unparsable", Severity.MEDIUM,
                              "nested too deeply to analyse")]


class _TemplateWalk:
    """The checks over one parsed template."""

    def __init__(self, tree: Any) -> None:
        from jinja2 import nodes

        self.n = nodes
        self.pairs: list[tuple[Any, Any]] = []
        stack: list[tuple[Any, Any]] = [(tree, None)]
        while stack:  # iterative: a deeply nested template must not exhaust the stack
            node, parent = stack.pop()
            self.pairs.append((node, parent))
            stack.extend((child, node) for child in node.iter_child_nodes())
        self.stored: set[str] = set()
        assigned: Counter[str] = Counter()
        consts: dict[str, Any] = {}
        for node, _ in self.pairs:
            defines = isinstance(node, (nodes.Macro, nodes.Block)) or (
                isinstance(node, nodes.Name) and node.ctx in ("store", "param"))
            if defines:
                self.stored.add(node.name)
            if isinstance(node, nodes.Assign) and isinstance(node.target, nodes.Name):
                assigned[node.target.name] += 1
                consts[node.target.name] = node.node
            elif isinstance(node, nodes.AssignBlock) and isinstance(node.target, nodes.Name):
                assigned[node.target.name] += 1
                parts = [e for stmt in node.body if isinstance(stmt, nodes.Output)
                         for e in stmt.nodes]
                whole = all(isinstance(stmt, nodes.Output) for stmt in node.body)
                consts[node.target.name] = nodes.Concat(parts) if whole else None
        self.consts = {k: v for k, v in consts.items() if assigned[k] == 1 and v is not None}
        self.consumed: set[int] = set()
        self.folded: dict[int, Any] = {}
        self.found: dict[tuple[str, str], TemplateIssue] = {}

    def add(self, rule: str, severity: Severity, message: str, node: Any) -> None:
        key = (rule, message)
        if key not in self.found:
            self.found[key] = TemplateIssue(rule, severity, message,
                                            getattr(node, "lineno", 0) or 0)

    def issues(self) -> list[TemplateIssue]:
        n = self.n
        for node, parent in self.pairs:
            called = isinstance(parent, n.Call) and parent.node is node
            if isinstance(node, n.Getattr):
                self.judge(node.attr, f".{node.attr}", called, node)
                self.anchor(node.node, f".{node.attr}")
            elif isinstance(node, n.Getitem):
                key = self.fold(node.arg)
                if isinstance(key, str):
                    self.consumed.add(id(node.arg))
                    self.judge(key, f"[{key!r}]", called, node)
                self.anchor(node.node, "[...]")
            elif isinstance(node, n.Filter):
                self.filter(node)
            elif isinstance(node, n.Name) and node.ctx == "load" and node.name not in self.stored:
                if _DUNDER.match(node.name):
                    self.add("chat-template-dunder", Severity.CRITICAL,
                             f"uses the name {node.name!r}", node)
                elif node.name in _PYTHON_NAMES:
                    self.add("chat-template-gadget", Severity.HIGH,
                             f"uses the Python name {node.name!r}", node)
            elif isinstance(node, n.Keyword) and "__" in node.key:
                self.add("chat-template-obfuscation", Severity.HIGH,
                         f"keyword argument {node.key!r} (dict keys build dunder names)", node)
            elif isinstance(node, (n.Include, n.Import, n.FromImport, n.Extends)):
                self.add("chat-template-include", Severity.MEDIUM,
                         f"{type(node).__name__.lower()} statement: loads another template "
                         "through the server's loader", node)
            if self.builds_string(node):
                self.building(node)
        for node, _ in self.pairs:
            if isinstance(node, n.Const) and isinstance(node.value, str) and \
                    id(node) not in self.consumed:
                match = _DUNDER_IN.search(node.value)
                if match:
                    self.add("chat-template-obfuscation", Severity.HIGH,
                             f"string constant holds {match.group(0)!r}", node)
        return sorted(self.found.values(), key=lambda i: (-i.severity, i.line, i.message))

    def judge(self, name: str, via: str, called: bool, node: Any) -> None:
        """Judge an attribute (or item) name that the template looks up."""
        if _DUNDER.match(name):
            self.add("chat-template-dunder", Severity.CRITICAL,
                     f"reaches Python internals through {via}", node)
        elif name.startswith("_"):
            self.add("chat-template-gadget", Severity.HIGH,
                     f"reaches the private attribute {name!r} through {via}", node)
        elif name in _MODULE_ATTRS:
            self.add("chat-template-gadget", Severity.HIGH,
                     f"reaches the module or frame attribute {name!r}", node)
        elif name in _EXEC_ATTRS and called:
            self.add("chat-template-gadget", Severity.HIGH, f"calls {name}()", node)

    def anchor(self, target: Any, via: str) -> None:
        if isinstance(target, self.n.Name) and target.name in _ANCHORS and \
                target.name not in self.stored:
            self.add("chat-template-gadget", Severity.HIGH,
                     f"navigates from the global {target.name!r} ({target.name}{via})", target)

    def filter(self, node: Any) -> None:
        n = self.n
        name = node.name
        if name not in _ATTR_FILTERS:
            return
        exprs: list[Any] = [kw.value for kw in node.kwargs if kw.key == "attribute"]
        position = _ATTR_FILTERS[name]
        if position is not None:
            exprs += node.args[position:position + 1]
        elif node.args and self.fold(node.args[0]) == "attr":
            exprs += node.args[1:2]
        for expr in exprs:
            value = self.fold(expr)
            if isinstance(value, str):
                self.consumed.add(id(expr))
                for part in value.split("."):
                    self.judge(part, f"|{name}({value!r})", False, node)
            elif isinstance(value, int) and not isinstance(value, bool):
                continue
            elif value is _NOFOLD or not isinstance(expr, n.Const):
                self.add("chat-template-obfuscation", Severity.HIGH,
                         f"|{name} looks up an attribute whose name is computed at render "
                         "time", node)
        if name == "attr":
            self.anchor(node.node, "|attr(...)")

    def builds_string(self, node: Any) -> bool:
        n = self.n
        if isinstance(node, (n.Concat, n.Add, n.Mul, n.Mod)):
            return True
        if isinstance(node, n.Filter):
            return node.name in ("join", "format", "reverse", "replace")
        return isinstance(node, n.Call) and isinstance(node.node, n.Getattr) and \
            node.node.attr in ("join", "format", "replace")

    def building(self, node: Any) -> None:
        """A string assembled from pieces: report a dunder it makes, or a dunder fragment."""
        if id(node) in self.consumed:
            return
        value = self.fold(node)
        if isinstance(value, str):
            match = _DUNDER_IN.search(value)
            if match:
                self.add("chat-template-obfuscation", Severity.HIGH,
                         f"assembles the name {match.group(0)!r} from pieces", node)
                return
        pieces = list(node.iter_child_nodes())
        pieces += [item for p in pieces if isinstance(p, (self.n.List, self.n.Tuple))
                   for item in p.items]
        for piece in pieces:
            fragment = self.fold(piece)
            if isinstance(fragment, str) and "__" in fragment:
                self.add("chat-template-obfuscation", Severity.HIGH,
                         f"assembles a string from the fragment {fragment[:40]!r}", node)

    # -- constant folding: what a string expression evaluates to, when it is constant ----------

    def fold(self, node: Any, depth: int = 0) -> Any:
        """The constant value of ``node``, or ``_NOFOLD`` (memoised: folding stays linear)."""
        key = id(node)
        if key in self.folded:
            return self.folded[key]
        try:
            value = self._fold(node, depth)
        except (TypeError, ValueError, IndexError, KeyError, OverflowError, RecursionError):
            value = _NOFOLD
        if isinstance(value, (str, tuple)) and len(value) > _MAX_FOLD:
            value = _NOFOLD
        self.folded[key] = value
        return value

    def _fold(self, node: Any, depth: int) -> Any:
        n = self.n
        if depth > 40 or node is None:
            return _NOFOLD

        def sub(child: Any) -> Any:
            return self.fold(child, depth + 1)

        if isinstance(node, n.Const):
            return node.value
        if isinstance(node, n.TemplateData):
            return node.data
        if isinstance(node, n.Name):
            return sub(self.consts[node.name]) if node.name in self.consts else _NOFOLD
        if isinstance(node, (n.List, n.Tuple)):
            items = [sub(i) for i in node.items]
            return _NOFOLD if any(i is _NOFOLD for i in items) else tuple(items)
        if isinstance(node, n.Concat):
            parts = [sub(x) for x in node.nodes]
            return _NOFOLD if any(p is _NOFOLD for p in parts) else "".join(map(str, parts))
        if isinstance(node, (n.Add, n.Mul, n.Mod)):
            left, right = sub(node.left), sub(node.right)
            if left is _NOFOLD or right is _NOFOLD:
                return _NOFOLD
            if isinstance(node, n.Add):
                return left + right if type(left) is type(right) else _NOFOLD
            if isinstance(node, n.Mul):
                count, text = (right, left) if isinstance(left, str) else (left, right)
                if isinstance(text, str) and isinstance(count, int) and \
                        0 <= count * len(text) <= _MAX_FOLD:
                    return text * count
                return _NOFOLD
            return _format(left, right if isinstance(right, tuple) else (right,))
        if isinstance(node, n.Getitem):
            base = sub(node.node)
            if not isinstance(base, (str, tuple)):
                return _NOFOLD
            if isinstance(node.arg, n.Slice):
                bounds = [None if b is None else sub(b)
                          for b in (node.arg.start, node.arg.stop, node.arg.step)]
                if any(b is _NOFOLD or (b is not None and not isinstance(b, int))
                       for b in bounds):
                    return _NOFOLD
                return base[slice(*bounds)]
            index = sub(node.arg)
            return base[index] if isinstance(index, int) else _NOFOLD
        if isinstance(node, n.Filter) and node.name in _BUILDERS:
            return self._fold_filter(node, depth)
        if isinstance(node, n.Call) and isinstance(node.node, n.Getattr):
            owner, args = sub(node.node.node), [sub(a) for a in node.args]
            if not isinstance(owner, str) or any(a is _NOFOLD for a in args) or node.kwargs:
                return _NOFOLD
            method = node.node.attr
            if method == "join" and len(args) == 1:
                return owner.join(map(str, args[0]))
            if method == "replace" and len(args) == 2 and all(isinstance(a, str) for a in args):
                return owner.replace(args[0], args[1])
            if method in ("lower", "upper", "strip") and not args:
                return getattr(str, method)(owner)
            return _NOFOLD
        if isinstance(node, n.Call) and isinstance(node.node, n.Name) and \
                node.node.name == "dict" and not node.args:
            values = [sub(kw.value) for kw in node.kwargs]
            return tuple(kw.key for kw in node.kwargs) if _NOFOLD not in values else _NOFOLD
        return _NOFOLD

    def _fold_filter(self, node: Any, depth: int) -> Any:
        value = self.fold(node.node, depth + 1)
        args = [self.fold(a, depth + 1) for a in node.args]
        if value is _NOFOLD or any(a is _NOFOLD for a in args):
            return _NOFOLD
        name = node.name
        if name == "join":
            sep = args[0] if args else ""
            return str(sep).join(map(str, value)) if isinstance(value, (str, tuple)) \
                else _NOFOLD
        if name == "format":
            return _format(value, tuple(args)) if isinstance(value, str) else _NOFOLD
        if name == "reverse" and isinstance(value, (str, tuple)):
            return value[::-1]
        if name == "replace" and isinstance(value, str) and len(args) >= 2:
            return value.replace(str(args[0]), str(args[1]))
        if name in ("lower", "upper") and isinstance(value, str):
            return getattr(str, name)(value)
        if name == "trim" and isinstance(value, str):
            return value.strip()
        if name == "string":
            return str(value) if isinstance(value, (str, int)) else _NOFOLD
        if name in ("first", "last") and isinstance(value, (str, tuple)) and value:
            return value[0] if name == "first" else value[-1]
        if name == "list" and isinstance(value, (str, tuple)):
            return tuple(value)
        return _NOFOLD


_FORMAT_FIELD = re.compile(r"%(.)")


def _format(template: Any, args: tuple[Any, ...]) -> Any:
    """``template % args`` for ``%s``, ``%d``, ``%c`` and ``%%`` only (no widths: no blow-up)."""
    if not isinstance(template, str):
        return _NOFOLD
    values = list(args)
    failed = False

    def field_(match: re.Match[str]) -> str:
        nonlocal failed
        code = match.group(1)
        if code == "%":
            return "%"
        if not values or code not in "sdc":
            failed = True
            return ""
        value = values.pop(0)
        if code == "c":
            if isinstance(value, int) and 0 <= value <= 0x10FFFF:
                return chr(value)
            if isinstance(value, str) and len(value) == 1:
                return value
            failed = True
            return ""
        if code == "d":
            if isinstance(value, int):
                return str(value)
            failed = True
            return ""
        return str(value)

    result = _FORMAT_FIELD.sub(field_, template)
    return _NOFOLD if failed else result


# -- the scanner ------------------------------------------------------------------------------

_RULES: dict[str, tuple[str, str]] = {
    "oversized-count": (
        "GGUF header declares more data than the file holds",
        "A count or length in the header ({what}) is far larger than the bytes that follow. "
        "Loaders that allocate from declared sizes before reading exhaust memory or, where "
        "the size arithmetic overflows, write past a heap buffer: llama.cpp's GGUF reader had "
        "exactly these bugs (CVE-2024-23605 for the metadata count, CVE-2024-21802 for tensor "
        "dimensions).",
    ),
    "header-too-large": (
        "GGUF metadata larger than the scan limit",
        "The metadata and tensor info run past the scan's header limit; real models keep "
        "them to tens of megabytes. A loader reads all of it into memory first.",
    ),
    "duplicate-key": (
        "Duplicate metadata keys in the GGUF file",
        "A metadata key appears more than once. llama.cpp and gguf-py refuse the file; a "
        "reader that fills a dictionary keeps one of the values, so which chat template a "
        "tool sees depends on the tool. Every copy was analysed.",
    ),
    "bad-metadata": (
        "Invalid GGUF metadata",
        "A metadata key or value breaks the format's rules.",
    ),
    "bad-alignment": (
        "Invalid general.alignment in the GGUF file",
        "general.alignment must be a u32 power of two; loaders pad with it and a crafted "
        "value breaks their offset arithmetic.",
    ),
    "bad-tensor-info": (
        "Invalid tensor info in the GGUF file",
        "A tensor's name, dimensions or type break the limits llama.cpp enforces.",
    ),
    "duplicate-tensor": (
        "Duplicate tensor names in the GGUF file",
        "A tensor name appears more than once; loaders keep different copies.",
    ),
    "unknown-tensor-type": (
        "Unknown ggml tensor type",
        "The tensor type id is not one this scanner knows (removed from ggml, or newer), so "
        "its size and bounds were not checked.",
    ),
    "tensor-size-overflow": (
        "GGUF tensor size overflows 64-bit arithmetic",
        "A tensor's element count or byte size does not fit in 64 bits. Loaders that compute "
        "it without checks allocate a tiny buffer and then write the real data into it "
        "(heap overflow; CVE-2024-21802 and later variants).",
    ),
    "misaligned-tensor": (
        "GGUF tensor offset is not aligned",
        "Tensor offsets must be multiples of general.alignment.",
    ),
    "tensor-out-of-bounds": (
        "GGUF tensor data lies outside the file",
        "A tensor's bytes run past the end of the file. A loader that maps the file and "
        "trusts the offsets reads outside it: a crash, or memory disclosure from the serving "
        "process. (A truncated download looks the same.)",
    ),
    "overlapping-tensors": (
        "GGUF tensors share bytes",
        "Two tensors' byte ranges overlap, so one set of bytes passes review as two tensors.",
    ),
    "non-contiguous-tensors": (
        "GGUF tensors are not laid out one after another",
        "llama.cpp requires each tensor to start where the previous one's padded data ends "
        "and refuses other layouts; lenient loaders accept them, so the file can mean "
        "different things to different tools, and gaps can hold unseen data.",
    ),
    "unused-bytes": (
        "Bytes after the last GGUF tensor",
        "The file continues past the last tensor's (padded) data. Loaders ignore these bytes; "
        "they are unseen data travelling with the model (scanned as a member when they hold "
        "a pickle or an archive).",
    ),
    "big-endian": (
        "Big-endian GGUF file",
        "The file is big-endian; llama.cpp loads only files in the host's byte order.",
    ),
    "chat-template-dunder": (
        "Chat template reaches Python internals (template injection)",
        "The model's Jinja2 chat template accesses dunder attributes (__class__, __globals__, "
        "__subclasses__...). Inference servers render the template for every request; with a "
        "non-sandboxed Jinja2 environment this runs arbitrary code on the server "
        "(CVE-2024-34359, 'Llama Drama', in llama-cpp-python before 0.2.72). No legitimate "
        "chat template needs it.",
    ),
    "chat-template-gadget": (
        "Chat template uses server-side template injection gadgets",
        "The chat template uses names or attributes that template-injection payloads use to "
        "reach the operating system (private attributes, modules, popen/system calls, "
        "navigation from Jinja globals such as lipsum, cycler or self). Chat templates only "
        "need messages, loops and string handling.",
    ),
    "chat-template-obfuscation": (
        "Chat template assembles attribute names at render time",
        "The chat template builds names from pieces, or looks attributes up by a computed "
        "name (|attr, |map(attribute=...)), the way template-injection payloads hide "
        "__class__ and __globals__ from text filters. A computed name can also come from the "
        "user's own messages at render time.",
    ),
    "chat-template-include": (
        "Chat template loads other templates",
        "include/import/extends make the server's template loader read other files. Chat "
        "templates are self-contained.",
    ),
    "chat-template-unparsable": (
        "Chat template does not parse",
        "The chat template is not valid Jinja2, so it could not be checked; servers with "
        "other template engines may still render it.",
    ),
    "chat-template-too-large": (
        "Chat template too large to analyse",
        "The chat template is larger than the analysis limit and was not checked; real "
        "templates are a few kilobytes.",
    ),
}


def template_rule(rule: str) -> tuple[str, str]:
    """The title and detail of a ``chat-template-*`` rule (:class:`TemplateIssue`), for other
    formats that carry chat templates."""
    if not rule.startswith("chat-template-"):
        raise KeyError(rule)
    return _RULES[rule]


_RULE_REFS = {"oversized-count": _DOS_REFS, "header-too-large": _DOS_REFS,
              "tensor-size-overflow": _DOS_REFS}
_TEMPLATE_REMEDIATION = (
    "Do not serve this model. Render chat templates only in a sandbox "
    "(jinja2.sandbox.ImmutableSandboxedEnvironment), upgrade llama-cpp-python to 0.2.72 or "
    "later, and replace the template with the one from the model's original publisher."
)


class GgufScanner(FileScanner):
    """GGUF (llama.cpp): header, metadata and tensor layout checked; chat templates analysed.

    Threat model: an attacker who publishes a GGUF model and wants either memory corruption
    or exhaustion in a loader (crafted counts, lengths, dimensions and offsets), or code
    execution on an inference server through the Jinja2 chat template stored in the
    metadata (CVE-2024-34359). Nothing is loaded, rendered or executed; tensor data is never
    read.

    Args:
        max_template_chars: Longest chat template analysed; a longer one is reported
            (MEDIUM) instead. Default 1,048,576.

    Example:
        >>> from phalanx.supplychain.scan.gguf import GgufScanner
        >>> findings = list(GgufScanner().scan("model.gguf"))  # doctest: +SKIP
    """

    name = "gguf"
    title = "GGUF (header checks and chat-template analysis)"
    paper = ("ggml-org, 'GGUF' file format specification, "
             "https://github.com/ggml-org/ggml/blob/master/docs/gguf.md")
    refs = REFS
    formats: ClassVar[tuple[str, ...]] = BUNDLED_FORMATS["gguf"]
    constraints: ClassVar[Mapping[str, Constraint]] = {
        "max_template_chars": Interval(1, None, integer=True)}

    def __init__(self, *, max_template_chars: int = MAX_TEMPLATE_CHARS) -> None:
        self.max_template_chars = max_template_chars

    def scan_source(self, source: Source, session: ScanSession) -> Iterator[Finding]:
        """Parse the header of ``source`` and check it and its chat templates."""
        budget = session.limits.max_header_bytes
        # Reading a template is bounded by the analysis limit (4 bytes a character at most).
        with source.open() as fh:
            parsed = _parse(fh, source.size, budget, 4 * self.max_template_chars)
        evidence = {"gguf_version": parsed.version,
                    "byte_order": "big" if parsed.endian == ">" else "little"}
        if parsed.architecture:
            evidence["architecture"] = parsed.architecture
        stop = parsed.stop
        if stop is not None and stop.rule == "malformed":
            yield session.malformed(source, stop.message, scanner=self.name, fmt="gguf",
                                    offset=stop.offset)
        elif stop is not None:  # oversized-count, header-too-large
            yield self._finding(session, source, stop.rule, Severity.HIGH, [stop.message],
                                {**evidence, **stop.evidence, "offset": stop.offset,
                                 "incomplete": True})
        yield from self._report(session, source, parsed.problems, evidence)
        if parsed.trailing is not None:
            yield from self._scan_trailing(session, source, *parsed.trailing)
        for key, text in parsed.templates:
            if text is _TOO_LONG:
                issues = [TemplateIssue("chat-template-too-large", Severity.MEDIUM,
                                        f"over {self.max_template_chars} characters")]
            else:
                issues = analyse_chat_template(text, max_chars=self.max_template_chars)
            problems = [_Problem(i.rule, i.severity, f"{key}, line {i.line}: {i.message}",
                                 {"template_key": key, "line": i.line}) for i in issues]
            yield from self._report(session, source, problems, evidence)

    def _scan_trailing(self, session: ScanSession, source: Source, begin: int,
                       end: int) -> Iterator[Finding]:
        """Scan the bytes after the last tensor as a member when they hold a payload."""
        if end - begin > session.limits.max_member_bytes:
            return
        child = slice_source(source, f"unused-bytes@{begin}", begin, end - begin)
        try:
            head = child.head(_SNIFF)
        except OSError:
            return
        if sniff_bytes(head, size=end - begin) in _PAYLOAD_FORMATS:
            yield from session.scan(child)

    def _report(self, session: ScanSession, source: Source, problems: list[_Problem],
                evidence: dict[str, Any]) -> Iterator[Finding]:
        """One finding per rule and severity, with a count and the first examples."""
        grouped: dict[tuple[str, Severity], list[_Problem]] = {}
        for p in problems:
            grouped.setdefault((p.rule, p.severity), []).append(p)
        for (rule, severity), items in grouped.items():
            yield self._finding(session, source, rule, severity, [p.message for p in items],
                                {**evidence, **items[0].evidence, "count": len(items)})

    def _finding(self, session: ScanSession, source: Source, rule: str, severity: Severity,
                 messages: list[str], evidence: dict[str, Any]) -> Finding:
        title, detail = _RULES[rule]
        detail = detail.replace("{what}", str(evidence.get("what", "a count")))
        shown = "; ".join(messages[:_MAX_EXAMPLES])
        more = len(messages) - _MAX_EXAMPLES
        detail += f" Found: {shown}" + (f" (and {more} more)." if more > 0 else ".")
        remediation = _TEMPLATE_REMEDIATION if rule.startswith("chat-template") else ""
        return session.finding(source, rule, severity, title, detail, scanner=self.name,
                               version=self.version,
                               evidence={**evidence, "examples": messages[:_MAX_EXAMPLES]},
                               refs=_RULE_REFS.get(rule, REFS), fmt="gguf",
                               remediation=remediation)

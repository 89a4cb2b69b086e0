"""A static pickle analyser: a symbolic pickle machine that never unpickles.

A pickle is a program for a small stack machine. Loading it imports the globals it names and
calls them with arguments it builds, which is why a model file can run code. This module runs
that program *symbolically* over the opcodes as :func:`pickletools.genops` parses them (the
standard library's opcode table; the decoder here yields genops' exact values and errors,
faster, and a differential test holds it to that; nothing is imported or called): it keeps
the stack, the mark stack and the memo exactly as the unpickler does, so memo tricks
(``BINPUT``/``MEMOIZE`` reordering, ``STACK_GLOBAL`` operands fetched with ``BINGET``) resolve
to what a real load would import, and it records every import and every call with its
arguments as far as they are constants.

Every import is then judged by :mod:`phalanx.supplychain.scan.policy`, **allowlist first**:
allowed imports pass, known-dangerous ones are named with their reason, and anything else is
"unknown", which fails a scan at the default ``medium`` threshold. A deny list alone always
trails the next advisory; an allowlist does not.

Severities, by what the pickle does:

- CRITICAL: imports a denied global (``os.system``, ``builtins.eval``, ``pickle.loads``, ...;
  a deny rule may lower this to HIGH, as for call forwarders like ``functools.partial``);
  imports through a dunder attribute path (``OrderedDict.__init__.__globals__``); runs
  ``STACK_GLOBAL`` on operands that are not constant strings (unresolvable import); applies
  ``BUILD``/``SETITEM``/``APPEND`` to an imported global itself (monkey-patching).
- HIGH: calls (``REDUCE``/``INST``/``OBJ``) an unknown global; calls something that is not an
  imported global (the result of another call); passes such a computed object to an allowed
  helper that calls it (``collections.defaultdict``, ``copyreg._reconstructor``); imports
  through an extension code (``EXT1/2/4``); sets dunder attributes through ``BUILD`` slot state.
- MEDIUM: imports or instantiates (``NEWOBJ``) an unknown global; restores state (``BUILD``,
  so ``__setstate__``) into an instance of a non-allowlisted class; a malformed stream
  (truncated, unknown opcode, stack underflow, memo miss) or a resource limit, where the
  analysis stops as a load would; a nested pickle that cannot be analysed (not constant, too
  deep, too large); ``_codecs.encode`` with a codec other than latin1, utf-8 or ascii.
- LOW: persistent ids outside a PyTorch checkpoint (the loader's ``persistent_load`` decides).
- INFO: PyTorch storage persistent ids, when the torch ecosystem is enabled (listed in the
  report's ``torch_storages``); the legacy layout's ``("module", cls, file, source)`` ids
  resolve to ``cls``, an import judged like any other, as torch's ``persistent_load`` does.

joblib files (the ``joblib`` ecosystem enabled): ``joblib.load`` reads each NumPy array's bytes
from the stream right after ``BUILD`` of a ``NumpyArrayWrapper``. The analyser does the same
without reading them: the byte length comes from the wrapper's symbolic state (shape, the
``numpy.dtype(...)`` call and its state, the alignment padding byte of joblib >= 1.2), the
bytes are skipped (seeked over), and object arrays, which joblib writes as an inline pickle
loaded by a fresh unpickler, are analysed as such. Whatever cannot be resolved fails closed.
The same file may be loaded with ``pickle.load``, which runs those bytes as opcodes: that
reading is analysed too unless it stops at the first byte (as it does for every file joblib
writes with padding), and a padding byte that is an opcode is reported (a polyglot).

Several pickles concatenated in one file are all analysed (a second pickle after the first
``STOP`` is a known bypass); the memo carries over between them, as it does for an
``Unpickler`` that is asked to ``load()`` again. Bytes passed to a pickle-loading callable
(``pickle.loads``, ``torch.load``, ...) are analysed as a nested pickle, up to ``max_depth``,
after folding the constant encodings pickles use for bytes (``_codecs.encode(s, 'latin1')``,
``io.BytesIO``, base64, zlib).

Resources are bounded: opcodes (shared by nested pickles), stack size, tracked container
items and constants (bytes above the limit are skipped on the stream, never read into
memory), and evidence strings are truncated.

Known parser differential: :mod:`pickletools` is stricter than the unpickler in a few corners
(for example ``INT`` arguments in base 16, or non-ASCII module names). Such streams are
reported as malformed, which fails the scan; they are never silently passed.

Example:
    >>> from phalanx.supplychain.scan import analyse_pickle
    >>> report = analyse_pickle(b"cos\\nsystem\\n(S'id'\\ntR.")
    >>> report.findings[0].severity.label, report.findings[0].evidence["args"]
    ('critical', "('id',)")
    >>> report.allows_unpickling()
    False
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import logging
import pickletools
import re
import struct
import zlib
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, NoReturn, overload

from phalanx.core.findings import Finding, Severity
from phalanx.errors import InputError, InvalidParameterError
from phalanx.supplychain.scan._quiet import file_text_warnings_ignored
from phalanx.supplychain.scan.policy import Judgement, PicklePolicy, Verdict, load_policy

__all__ = [
    "CHECK_ID",
    "COMPILED",
    "PLUGIN_ID",
    "REFS",
    "Call",
    "GlobalRef",
    "PickleLimits",
    "PickleReport",
    "TorchStorage",
    "analyse_pickle",
    "is_safe_to_unpickle",
    "scan_pickle_file",
]

logger = logging.getLogger(__name__)

#: Whether this module runs as a compiled extension (a build made with
#: ``PHALANX_COMPILE=1``, see the supply-chain guide) rather than from its Python source.
#: Both give the same findings; the compiled one is faster (the guide gives the figures).
COMPILED: bool = not __file__.endswith((".py", ".pyc"))

CHECK_ID = "model-scan"
PLUGIN_ID = "pickle"
PLUGIN_VERSION = "1.0"
#: Taxonomy refs every finding of this analyser carries.
REFS: tuple[str, ...] = (
    "atlas:AML.T0011.000",
    "atlas:AML.T0010.003",
    "owasp-llm-2025:LLM03",
    "nist-aml-2025:NISTAML.051",
)

_REMEDIATION_DANGEROUS = (
    "Do not load this file with pickle, joblib or torch.load. Obtain the model from a trusted "
    "source and verify its signature, or ask for a format that cannot run code (safetensors, "
    "ONNX, skops)."
)
_REMEDIATION_UNKNOWN = (
    "Treat the file as untrusted code. If you trust the package that defines this import, "
    "scan with a policy whose allowlist includes it; otherwise obtain the model in a format "
    "that cannot run code (safetensors, ONNX, skops)."
)
_REMEDIATION_MALFORMED = (
    "Do not load the file: a scanner and an unpickler that disagree on a malformed stream is "
    "how scanners are bypassed. Re-export the model from its source."
)


@dataclass(frozen=True)
class PickleLimits:
    """Bounds on the work and memory one analysis may use.

    Args:
        max_opcodes: Opcodes analysed in all, nested pickles included.
        max_stack: Values on the symbolic stack and mark stack together.
        max_const_bytes: Longest bytes or string constant kept; longer bytes are skipped on
            the stream without being read into memory.
        max_container_items: Items kept per list, dict or set (the rest are counted).
        max_evidence_chars: Longest rendering of a callable or its arguments in evidence.
        max_records: Imports and calls listed in the report.
        max_findings: Distinct flagged imports reported (the rest are summarised).
    """

    max_opcodes: int = 10_000_000
    max_stack: int = 1_000_000
    max_const_bytes: int = 16 * 1024 * 1024
    max_container_items: int = 1_000
    max_evidence_chars: int = 300
    max_records: int = 100_000
    max_findings: int = 1_000


@dataclass(frozen=True)
class GlobalRef:
    """One import a pickle performs.

    Args:
        module: Module, after the unpickler's Python 2 renaming (protocols 0-2).
        name: Attribute path inside the module.
        offset: Byte offset of the importing opcode.
        verdict: The policy's verdict (``"allowed"``, ``"denied"``, ``"unknown"``, ...).
        pickle_index: Which of the concatenated pickles (0 for the first).
        depth: 0 for the file itself, 1 for a pickle nested in it, and so on.
    """

    module: str
    name: str
    offset: int
    verdict: str
    pickle_index: int = 0
    depth: int = 0


@dataclass(frozen=True)
class Call:
    """One call a pickle makes while loading.

    The report renders a call's callable and arguments when they are first read, not while
    the pickle runs (most scans never read them): a list or dict argument that the pickle
    fills after the call is shown as the pickle left it.

    Args:
        callable: What is called, e.g. ``"os.system"`` or ``"<result of builtins.getattr(...)>"``.
        args: Its arguments as far as they resolve, e.g. ``"('id',)"`` (truncated).
        offset: Byte offset of the calling opcode.
        opcode: ``REDUCE``, ``NEWOBJ``, ``NEWOBJ_EX``, ``INST``, ``OBJ`` or ``BUILD``
            (``__setstate__``).
        pickle_index: Which of the concatenated pickles.
        depth: Nesting depth of the pickle.
    """

    callable: str
    args: str
    offset: int
    opcode: str
    pickle_index: int = 0
    depth: int = 0


@dataclass(frozen=True)
class TorchStorage:
    """One PyTorch storage a checkpoint's pickle refers to by persistent id.

    ``torch.save`` writes ``("storage", <storage type>, key, location, numel, ...)``; the
    storage's bytes live outside the pickle (a zip member ``data/<key>``, or the raw storage
    section of the legacy format). Fields the pickle does not give as constants are ``None``.

    Args:
        key: The storage key.
        storage_type: The storage type's import, e.g. ``"torch.FloatStorage"``.
        location: Device tag, e.g. ``"cpu"``.
        numel: Number of elements.
        offset: Byte offset of the persistent-id opcode.
    """

    key: str | None
    storage_type: str
    location: str | None
    numel: int | None
    offset: int


@dataclass(frozen=True)
class PickleReport:
    """What the analyser found in one pickle stream.

    Args:
        origin: The file or label analysed.
        findings: Issues, most severe first.
        globals: Every import performed (up to ``PickleLimits.max_records``).
        calls: Every call made (up to ``PickleLimits.max_records``).
        pickles: Pickles found one after another in the stream.
        opcodes: Opcodes analysed, nested pickles included.
        protocol: Highest pickle protocol declared or used, ``None`` when nothing parsed.
        complete: Whether the whole stream was analysed (no malformed part, no limit hit).
        end_offset: Offset just past the last pickle analysed (after its ``STOP``), ``None``
            when the analysis stopped early; what follows is not pickle data the analyser
            read (``max_pickles`` reached, or the end of the stream).
        torch_storages: PyTorch storages referenced by persistent id (torch ecosystem only).

    Its truth value is deliberately undefined: ask :meth:`allows_unpickling`.
    """

    origin: str
    findings: list[Finding]
    globals: list[GlobalRef]
    calls: Sequence[Call]
    pickles: int
    opcodes: int
    protocol: int | None
    complete: bool = True
    end_offset: int | None = None
    torch_storages: list[TorchStorage] = field(default_factory=list)

    @property
    def max_severity(self) -> Severity | None:
        """The most severe finding's severity, ``None`` without findings."""
        return max((f.severity for f in self.findings), default=None)

    def allows_unpickling(self, threshold: Severity | str = Severity.MEDIUM) -> bool:
        """Whether every finding is below ``threshold``, so a caller may unpickle the file.

        Args:
            threshold: The severity that blocks loading (default ``medium``: unknown imports
                and malformed streams block too).
        """
        limit = Severity.parse(threshold)
        return all(f.severity < limit for f in self.findings)

    def __bool__(self) -> bool:
        raise TypeError(
            "a PickleReport has no truth value; use report.allows_unpickling() "
            "or report.max_severity"
        )


# --------------------------------------------------------------------------------------------
# Symbolic values


@dataclass(eq=False)
class _Agg:
    """Everything about one flagged import in one pickle, for its finding."""

    module: str
    name: str
    judgement: Judgement
    pickle_index: int
    depth: int
    via: str
    offsets: list[int] = field(default_factory=list)
    count: int = 0
    calls: list[tuple[str, int, str]] = field(default_factory=list)
    call_count: int = 0
    invoked: bool = False
    notes: list[str] = field(default_factory=list)
    after_error: bool = False


@dataclass(eq=False)
class _Global:
    module: str
    name: str
    offset: int
    judgement: Judgement
    agg: _Agg | None = None

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass(eq=False)
class _Result:
    func: Any
    args: Any
    kwargs: Any
    offset: int
    opcode: str
    #: The constant bytes this call evaluates to, when it is a known pure encoding.
    folded: bytes | None = None
    #: The state last handed to it by ``BUILD`` (a NumPy dtype's layout lives there).
    state: Any = None
    #: Attributes ``BUILD`` set on it through the default ``__setstate__`` (joblib's array
    #: wrappers only), or ``None`` when they cannot be resolved.
    attrs: dict[str, Any] | None = None


@dataclass(eq=False)
class _Opaque:
    what: str


@dataclass(frozen=True)
class _BigBytes:
    size: int
    head: bytes


@dataclass(frozen=True)
class _BigStr:
    size: int
    head: str


@dataclass(eq=False)
class _ByteArray:
    data: Any


class _Container:
    __slots__ = ("dropped", "items", "limit")

    def __init__(self, limit: int, items: Iterable[Any] = ()) -> None:
        self.limit = limit
        self.items: list[Any] = []
        self.dropped = 0
        self.extend(items)

    def extend(self, items: Iterable[Any]) -> None:
        new = items if isinstance(items, list) else list(items)
        room = max(self.limit - len(self.items), 0)
        if room >= len(new):
            self.items.extend(new)
        else:
            self.items.extend(new[:room])
            self.dropped += len(new) - room


class _List(_Container):
    __slots__ = ()


class _Dict(_Container):
    """Items are ``(key, value)`` pairs: keys may be symbolic and unhashable."""

    __slots__ = ()


class _Set(_Container):
    __slots__ = ("frozen",)

    def __init__(self, limit: int, items: Iterable[Any] = (), *, frozen: bool = False) -> None:
        super().__init__(limit, items)
        self.frozen = frozen


_RECONSTRUCTORS = frozenset(
    {("copyreg", "_reconstructor"), ("copyreg", "__newobj__"), ("copyreg", "__newobj_ex__")}
)
_INVOKING_OPCODES = frozenset({"REDUCE", "INST", "OBJ"})
_RECONSTRUCTOR = ("copyreg", "_reconstructor")
#: Allowed callables whose first argument, when an int, is a size they allocate and fill.
#: ``bytes(n)`` is not one: CPython takes its zeros from ``calloc``, which for large sizes
#: maps fresh pages and never touches them, so it costs no memory until read.
_SIZED_BY_INT = frozenset({("builtins", "bytearray")})
_RANGE = ("builtins", "range")
_BYTES_TYPE = ("builtins", "bytes")
#: Memory requested through call arguments (all calls of one analysis) that is reported.
_ALLOCATION_FINDING_BYTES = 64 * 1024 * 1024
#: Allowed helpers that call or instantiate some of their arguments (by position).
_CALLABLE_PARAMETERS: dict[tuple[str, str], tuple[int, ...]] = {
    ("copyreg", "_reconstructor"): (0, 1),
    ("copyreg", "__newobj__"): (0,),
    ("copyreg", "__newobj_ex__"): (0,),
    ("collections", "defaultdict"): (0,),
    ("numpy.core.multiarray", "_reconstruct"): (0,),
    ("numpy._core.multiarray", "_reconstruct"): (0,),
    ("numpy.ma.core", "_mareconstruct"): (0, 1),
    ("numpy.random._pickle", "__bit_generator_ctor"): (0,),
    ("numpy.random._pickle", "__generator_ctor"): (1,),
    ("numpy.random._pickle", "__randomstate_ctor"): (1,),
    ("torch._tensor", "_rebuild_from_type_v2"): (0, 1),
    ("torch._utils", "_rebuild_wrapper_subclass"): (0,),
}
_CODEC_CALLS = frozenset({("_codecs", "encode"), ("codecs", "encode")})
_SAFE_CODECS = frozenset(
    {"latin1", "latin-1", "iso-8859-1", "iso8859-1", "l1", "utf-8", "utf8", "ascii"}
)


# --------------------------------------------------------------------------------------------
# Rendering symbolic values for evidence


def _render(value: Any, limit: int) -> str:
    if type(value) is str and len(value) <= _Renderer._STR:
        text = repr(value)  # what the renderer gives a short string, without making one
    else:
        text = _Renderer(limit).render(value, 0)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Renderer:
    _ITEMS: ClassVar[int] = 8
    _DEPTH: ClassVar[int] = 6
    _STR: ClassVar[int] = 80

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.seen: set[int] = set()

    def render(self, value: Any, depth: int) -> str:
        text = self._render(value, depth)
        self.used += len(text)
        return text

    def _render(self, value: Any, depth: int) -> str:
        if depth > self._DEPTH or self.used > self.limit:
            return "…"
        if value is None or isinstance(value, (bool, float)):
            return repr(value)
        if isinstance(value, int):
            return (
                repr(value) if value.bit_length() <= 256 else f"<int of {value.bit_length()} bits>"
            )
        if isinstance(value, str):
            return self._short(value)
        if isinstance(value, (bytes, bytearray)):
            return self._short(bytes(value))
        if isinstance(value, _BigBytes):
            return f"<{value.size} bytes {value.head[:16]!r}…>"
        if isinstance(value, _BigStr):
            return f"<{value.size}-byte string {value.head[:16]!r}…>"
        if isinstance(value, _ByteArray):
            return f"bytearray({self._render(value.data, depth + 1)})"
        if isinstance(value, _Global):
            return value.qualname
        if isinstance(value, _Opaque):
            return f"<{value.what}>"
        if isinstance(value, _Result):
            return self._call(value, depth)
        if isinstance(value, tuple):
            inner = self._seq(value, 0, depth)
            return f"({inner},)" if len(value) == 1 else f"({inner})"
        if isinstance(value, _Container):
            if id(value) in self.seen:
                return "<cycle>"
            self.seen.add(id(value))
            try:
                if isinstance(value, _List):
                    return "[" + self._seq(value.items, value.dropped, depth) + "]"
                if isinstance(value, _Dict):
                    pairs = [
                        f"{self._render(k, depth + 1)}: {self._render(v, depth + 1)}"
                        for k, v in value.items[: self._ITEMS]
                    ]
                    more = len(value.items) - len(pairs) + value.dropped
                    return "{" + ", ".join(pairs + ([f"…+{more}"] if more else [])) + "}"
                if isinstance(value, _Set):
                    body = self._seq(value.items, value.dropped, depth)
                    return f"frozenset({{{body}}})" if value.frozen else f"{{{body}}}"
            finally:
                self.seen.discard(id(value))
        return f"<{type(value).__name__}>"

    def _short(self, value: str | bytes) -> str:
        if len(value) <= self._STR:
            return repr(value)
        return f"{value[: self._STR]!r}…(+{len(value) - self._STR})"

    def _seq(self, items: Any, dropped: int, depth: int) -> str:
        shown = [self._render(v, depth + 1) for v in list(items[: self._ITEMS])]
        more = len(items) - len(shown) + dropped
        return ", ".join(shown + ([f"…+{more}"] if more else []))

    def _call(self, result: _Result, depth: int) -> str:
        return f"{self.callable(result.func, depth)}({self.arguments(result.args, result.kwargs, depth)})"

    def callable(self, func: Any, depth: int) -> str:
        if depth > self._DEPTH:
            return "…"
        if isinstance(func, _Global):
            return func.qualname
        if isinstance(func, _Result):
            return f"<result of {self._call(func, depth + 1)}>"
        return self._render(func, depth + 1)

    def arguments(self, args: Any, kwargs: Any, depth: int) -> str:
        if isinstance(args, tuple):
            parts = [self._render(a, depth + 1) for a in args[: self._ITEMS]]
            if len(args) > self._ITEMS:
                parts.append(f"…+{len(args) - self._ITEMS}")
        else:
            parts = [f"*{self._render(args, depth + 1)}"]
        if kwargs is not None:
            parts.append(f"**{self._render(kwargs, depth + 1)}")
        return ", ".join(parts)


def _describe_callable(func: Any, limit: int) -> str:
    text = _Renderer(limit).callable(func, 0)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _describe_args(args: Any, kwargs: Any, limit: int) -> str:
    if kwargs is None and isinstance(args, tuple):
        text = _render(args, limit)
    else:
        text = "(" + _Renderer(limit).arguments(args, kwargs, 0) + ")"
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _CallLog(Sequence[Call]):
    """The calls of one analysis, kept symbolic and rendered into :class:`Call` when read.

    Rendering every call's arguments as the pickle runs was a fifth of the time spent on a
    checkpoint with thousands of tensors, and a scan reads only the flagged ones.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        # (callable: a symbolic value or, for BUILD, the rendered target; args; kwargs;
        # offset; opcode; pickle index; depth), then the rendered Call in its place.
        self._items: list[Any] = []

    def add(self, entry: tuple[Any, Any, Any, int, str, int, int]) -> None:
        self._items.append(entry)

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> Call: ...

    @overload
    def __getitem__(self, index: slice) -> list[Call]: ...

    def __getitem__(self, index: int | slice) -> Call | list[Call]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self._items)))]
        item = self._items[index]
        if not isinstance(item, Call):
            item = self._items[index] = self._render(*item)
        return item

    def _render(self, func: Any, args: Any, kwargs: Any, offset: int, opcode: str,
                index: int, depth: int) -> Call:
        limit = self._limit
        if opcode == "BUILD":
            return Call(f"{func}.__setstate__", _render(args, limit), offset, opcode, index,
                        depth)
        return Call(_describe_callable(func, limit), _describe_args(args, kwargs, limit),
                    offset, opcode, index, depth)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence):
            return list(self) == list(other)
        return NotImplemented

    def __repr__(self) -> str:
        return repr(list(self))


# --------------------------------------------------------------------------------------------
# Constant folding: the pure encodings pickles use to carry bytes


def _as_bytes(value: Any) -> bytes | None:
    if isinstance(value, bytes):
        return value
    if isinstance(value, _ByteArray) and isinstance(value.data, bytes):
        return value.data
    if isinstance(value, _Result):
        return value.folded
    return None


def _fold(module: str, name: str, args: Any, max_bytes: int) -> bytes | None:
    """Evaluate a few pure, bounded encodings on constant arguments (never imports a codec)."""
    if not isinstance(args, tuple) or not args:
        return None
    first = args[0]
    try:
        if (module, name) in {("_codecs", "encode"), ("codecs", "encode")}:
            codec = args[1] if len(args) > 1 else "utf-8"
            if isinstance(first, str) and isinstance(codec, str) and codec.lower() in _SAFE_CODECS:
                return first.encode(codec.lower())
            return None
        if module in {"builtins", "io", "_io"} and name in {"bytes", "bytearray", "BytesIO"}:
            if isinstance(first, str) and len(args) > 1 and isinstance(args[1], str):
                return first.encode(args[1]) if args[1].lower() in _SAFE_CODECS else None
            return _as_bytes(first)
        if (module, name) in {("base64", "b64decode"), ("binascii", "a2b_base64")}:
            data = first.encode("ascii") if isinstance(first, str) else _as_bytes(first)
            return base64.b64decode(data) if data is not None else None
        if (module, name) in {
            ("binascii", "unhexlify"),
            ("binascii", "a2b_hex"),
            ("builtins", "bytes.fromhex"),
        }:
            data = first.encode("ascii") if isinstance(first, str) else _as_bytes(first)
            return binascii.unhexlify(data) if data is not None else None
        if (module, name) == ("zlib", "decompress"):
            data = _as_bytes(first)
            if data is None:
                return None
            inflater = zlib.decompressobj()
            out = inflater.decompress(data, max_bytes)
            return None if inflater.unconsumed_tail else out
    except (ValueError, TypeError, LookupError, zlib.error):
        return None
    return None


# --------------------------------------------------------------------------------------------
# The stream reader pickletools parses from


class _Elided:
    """Stands in for a bytes argument that was skipped on the stream instead of read."""

    __slots__ = ("head", "size")

    def __init__(self, size: int, head: bytes) -> None:
        self.size = size
        self.head = head

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        # pickletools wraps BYTEARRAY8 data in bytearray(): hand it the head only.
        return iter(self.head)


_BYTES_OPCODES = frozenset({0x42, 0x8E, 0x96})  # BINBYTES, BINBYTES8, BYTEARRAY8
_CHUNK = 1 << 20
#: How much the reader asks of the stream at a time (one pickle of a small file is one read).
_READAHEAD = 1 << 14

_FLOAT = struct.Struct(">d")
_SALVAGE_BYTES = 1 << 20
#: How far ``_Reader.holds`` reads ahead in a stream of unknown size.
_HOLDS_LOOKAHEAD = 1 << 20
_TEXT_IMPORT = re.compile(rb"[ci]([A-Za-z_][\w.]{0,255})\n([A-Za-z_][\w.]{0,255})\n")
_NAME = re.compile(r"[A-Za-z_][\w.]{0,255}")


def _salvage_imports(data: bytes) -> list[tuple[str, str]]:
    """``(module, name)`` pairs that look like ``GLOBAL``/``INST`` or ``STACK_GLOBAL`` imports."""
    found = [(m.group(1).decode(), m.group(2).decode()) for m in _TEXT_IMPORT.finditer(data)]

    def short_unicode(at: int) -> tuple[str, int] | None:
        if at + 2 > len(data) or data[at] != 0x8C:
            return None
        end = at + 2 + data[at + 1]
        try:
            text = data[at + 2:end].decode("utf-8")
        except UnicodeDecodeError:
            return None
        if end > len(data) or not _NAME.fullmatch(text):
            return None
        if end < len(data) and data[end] == 0x94:  # MEMOIZE
            end += 1
        return text, end

    at = data.find(b"\x8c")
    while at >= 0 and len(found) < 1000:
        first = short_unicode(at)
        second = short_unicode(first[1]) if first else None
        if first and second and second[1] < len(data) and data[second[1]] == 0x93:
            found.append((first[0], second[0]))
        at = data.find(b"\x8c", at + 1)
    return found


# How the decoder reads each opcode's argument: by kind, with the width of its length or
# value. Arguments of other kinds (the text ones of protocol 0) go through pickletools' own
# reader functions.
_NO_ARG, _UINT, _INT, _FLOAT8, _LATIN1, _BYTES, _BYTEARRAY, _UTF8, _LONG, _OTHER = range(10)
_ARG_KINDS: dict[str, tuple[int, int]] = {
    "uint1": (_UINT, 1), "uint2": (_UINT, 2), "uint4": (_UINT, 4), "uint8": (_UINT, 8),
    "int4": (_INT, 4), "float8": (_FLOAT8, 8),
    "string1": (_LATIN1, 1), "string4": (_LATIN1, -4),  # -4: a signed length
    "bytes1": (_BYTES, 1), "bytes4": (_BYTES, 4), "bytes8": (_BYTES, 8),
    "bytearray8": (_BYTEARRAY, 8),
    "unicodestring1": (_UTF8, 1), "unicodestring4": (_UTF8, 4), "unicodestring8": (_UTF8, 8),
    "long1": (_LONG, 1), "long4": (_LONG, -4),
}
_STOP = next(op for op in pickletools.opcodes if op.name == "STOP")
_STRING = next(op for op in pickletools.opcodes if op.name == "STRING")
#: Per opcode byte: (pickletools opcode, argument kind, width); ``None`` for unknown bytes.
_DECODE: list[tuple[pickletools.OpcodeInfo, int, int] | None] = [None] * 256
for _op in pickletools.opcodes:
    _kind = (_NO_ARG, 0) if _op.arg is None else _ARG_KINDS.get(_op.arg.name, (_OTHER, 0))
    _DECODE[ord(_op.code)] = (_op, *_kind)
del _op, _kind


class _Reader:
    """A pickle stream: the opcode decoder the machine runs on, with bounded reads.

    :meth:`ops` yields what :func:`pickletools.genops` yields, ``(opcode, argument, offset)``,
    with the same values and the same errors (a differential test holds the two together),
    but decodes fixed-width and length-prefixed arguments from a read-ahead buffer itself,
    which is several times faster than genops' reader functions over a file object. It reads
    big arguments in chunks (a huge declared length never allocates that much), skips the
    payload of oversized ``BINBYTES``/``BYTEARRAY8`` arguments instead of reading them,
    bounds line lengths, keeps the raw text of the last two lines (``GLOBAL``/``INST``
    arguments are decoded as the unpickler decodes them, not as pickletools does), and can
    peek for the end of the stream between concatenated pickles.

    The stream's own position runs ahead of :meth:`position` by what is buffered.
    """

    def __init__(self, raw: BinaryIO, *, elide_over: int, max_line: int) -> None:
        self._raw = raw
        self._elide_over = min(elide_over, _CHUNK) if elide_over < _CHUNK else elide_over
        self._max_line = max_line
        # Longest argument the decoder takes from the buffer itself (longer ones go through
        # read(), which skips oversized bytes).
        self._fast_max = min(_READAHEAD, self._elide_over)
        # Read ahead but not yet consumed: self._buf[self._i:].
        self._buf = b""
        self._i = 0
        self._pos = 0  # bytes consumed since ``base``
        # Where the opcode being parsed starts and which byte it is, so that an oversized
        # bytes argument can be recognised.
        self._op_start = -1
        self._opcode = -1
        self.lines: list[bytes] = []
        #: The last argument skipped instead of read, until the machine takes it.
        self.elided: _Elided | None = None
        self.base = 0
        self._remaining: int | None = None
        try:
            if raw.seekable():
                self.base = raw.tell()
                end = raw.seek(0, io.SEEK_END)
                raw.seek(self.base)
                self._remaining = max(0, end - self.base)
        except (OSError, ValueError, AttributeError):
            self._remaining = None

    # -- the decoder ------------------------------------------------------------------------

    def ops(self) -> Iterator[tuple[pickletools.OpcodeInfo, Any, int]]:
        """Decode one pickle, up to and including its ``STOP``, as pickletools does."""
        decode, from_bytes, fill, base = _DECODE, int.from_bytes, self._fill, self.base
        unpack_float = _FLOAT.unpack_from
        no_arg, uint, sint, float8, other = _NO_ARG, _UINT, _INT, _FLOAT8, _OTHER
        while True:
            # The cursor and position are re-read at each opcode: between two opcodes the
            # machine may read data itself (joblib's arrays).
            buf, i, pos = self._buf, self._i, self._pos
            size = len(buf)
            if size - i < 9:  # an opcode and any fixed-width argument
                fill(9)
                buf, i = self._buf, self._i
                size = len(buf)
            if i >= size:
                self._op_start = pos
                raise ValueError("pickle exhausted before seeing STOP")
            code = buf[i]
            entry = decode[code]
            if entry is None:
                self._op_start = pos
                raise ValueError(f"at position {base + pos}, opcode {bytes([code])!r} unknown")
            op, kind, width = entry
            j = i + 1
            if kind == no_arg:
                arg: Any = None
            elif kind == uint and size - j >= width:
                arg = buf[j] if width == 1 else from_bytes(buf[j:j + width], "little")
                j += width
            elif kind == sint and size - j >= width:
                arg = from_bytes(buf[j:j + width], "little", signed=True)
                j += width
            elif kind == float8 and size - j >= 8:
                arg = unpack_float(buf, j)[0]
                j += 8
            else:
                # Arguments read through read()/readline(), which need to know which opcode
                # they belong to (oversized bytes are skipped) and where it starts.
                self._op_start, self._opcode = pos, code
                if kind == other:
                    arg = self._slow_arg(op, j)
                    j = self._i
                else:
                    arg, j = self._sized_arg(op, kind, width, j)
                # j indexes the (possibly rebuilt) buffer; the cursor is at the opcode, or
                # after the argument where pickletools' reader took it
                self._pos += j - self._i
                self._i = j
                yield op, arg, base + pos
                continue  # STOP has no argument
            self._pos = pos + j - i
            self._i = j
            yield op, arg, base + pos
            if code == 0x2E:  # STOP
                return

    def _sized_arg(self, op: pickletools.OpcodeInfo, kind: int, width: int,
                   i: int) -> tuple[Any, int]:
        """A length-prefixed argument whose opcode ends at ``self._buf[i]``; returns the value
        and the index after it. Anything unusual (short data, a big or negative length, bad
        UTF-8) is left to pickletools' reader, for its exact value or error."""
        size = abs(width)
        if len(self._buf) - i >= size:
            buf = self._buf
            n = buf[i] if size == 1 else int.from_bytes(buf[i:i + size], "little",
                                                          signed=width < 0)
            if 0 <= n <= self._fast_max:
                if len(buf) - i - size < n:
                    rel = i - self._i  # the buffer is rebuilt from the cursor on
                    self._fill(rel + size + n)
                    buf, i = self._buf, self._i + rel
                start = i + size
                if len(buf) - start >= n:
                    data = buf[start:start + n]
                    try:
                        value: Any = (
                            data.decode("latin-1") if kind == _LATIN1
                            else str(data, "utf-8", "surrogatepass") if kind == _UTF8
                            else bytearray(data) if kind == _BYTEARRAY
                            else int.from_bytes(data, "little", signed=True) if kind == _LONG
                            else data
                        )
                    except UnicodeDecodeError:
                        pass  # pickletools raises it, with its own message
                    else:
                        return value, start + n
        value = self._slow_arg(op, i)
        return value, self._i

    def _slow_arg(self, op: pickletools.OpcodeInfo, i: int) -> Any:
        """Read the argument with pickletools' reader for ``op`` (through :meth:`read` and
        :meth:`readline`), from index ``i`` of the buffer, right after the opcode byte."""
        self._pos += i - self._i
        self._i = i
        assert op.arg is not None
        if op is _STRING:
            # STRING arguments are decoded with codecs.escape_decode, which warns about
            # invalid escapes: the file's text, not the caller's problem.
            with file_text_warnings_ignored():
                return op.arg.reader(self)  # type: ignore[arg-type]  # duck-typed file
        return op.arg.reader(self)  # type: ignore[arg-type]  # duck-typed file

    # -- the buffer -------------------------------------------------------------------------

    def _fill(self, n: int) -> int:
        """Make ``n`` bytes available after the cursor if the stream has them; returns how
        many are available (fewer only at the end of the stream)."""
        buf, i = self._buf, self._i
        avail = len(buf) - i
        if avail >= n:
            return avail
        if self._remaining is not None and self._pos + avail >= self._remaining:
            return avail  # the rest of the stream is buffered: a read would return nothing
        parts = [buf[i:]]
        while avail < n:
            chunk = self._raw.read(max(n - avail, _READAHEAD))
            if not chunk:
                break
            parts.append(chunk)
            avail += len(chunk)
        self._buf, self._i = b"".join(parts), 0
        return avail

    def _consume(self, n: int) -> bytes:
        """Up to ``n`` buffered bytes, taken from the buffer (not counted in the position)."""
        i = self._i
        data = self._buf[i:i + n]
        self._i = i + len(data)
        return data

    # -- positions --------------------------------------------------------------------------

    def position(self) -> int:
        """The current offset in the file."""
        return self.base + self._pos

    def opcode_offset(self) -> int:
        """Offset of the opcode being parsed (where a parse error belongs)."""
        return self.base + max(self._op_start, 0)

    def at_eof(self) -> bool:
        return self._fill(1) == 0

    # -- the file interface pickletools' readers use (read and readline) --------------------

    def read(self, n: int) -> Any:
        data: Any
        if (
            n > self._elide_over
            and self._opcode in _BYTES_OPCODES
            and self._pos - self._op_start in (5, 9)
        ):
            data = self._skip(n)
        elif n <= _READAHEAD:
            self._fill(n)
            data = self._consume(n)
        else:
            data = self._take(n)
        self._pos += len(data)
        return data

    def _take(self, n: int) -> bytes:
        """Up to ``n`` bytes, read in chunks (not counted in the position)."""
        parts = [self._consume(n)]
        n -= len(parts[0])
        while n > 0:
            chunk = self._raw.read(min(n, _CHUNK))
            if not chunk:
                break
            parts.append(chunk)
            n -= len(chunk)
        return b"".join(parts)

    def _skip(self, n: int) -> Any:
        head = self._take(64)
        left = n - len(head)
        left -= len(self._consume(left))
        if self._remaining is not None and self._pos + n <= self._remaining:
            self._raw.seek(left, io.SEEK_CUR)
            left = 0
        else:
            while left > 0:
                chunk = self._raw.read(min(left, _CHUNK))
                if not chunk:
                    break
                left -= len(chunk)
        if left:
            self._pos += n - left
            return b""  # short read: pickletools reports the truncation
        self.elided = _Elided(n, head)
        return self.elided

    def readline(self, size: int = -1) -> bytes:
        limit = self._max_line + 1
        buf, i = self._buf, self._i
        end = buf.find(b"\n", i, i + limit)
        if end >= 0:
            return self._line(self._consume(end + 1 - i))
        # Not in the buffer: the rest of the line in one read of the stream (reading it in
        # buffer-sized steps would scan and copy a long line over and over).
        line = self._consume(limit)
        if len(line) < limit:
            line += self._raw.readline(limit - len(line))
        return self._line(line)

    def _line(self, line: bytes) -> bytes:
        self._pos += len(line)
        self.lines = [*self.lines[-1:], line]
        return line

    def last_names(self, encoding: str) -> tuple[str, str]:
        """The module and name a ``GLOBAL``/``INST`` just read, decoded like the unpickler."""
        module, name = (line[:-1] for line in self.lines[-2:])
        return module.decode(encoding), name.decode(encoding)

    # -- data outside the opcodes (joblib writes array bytes between them) ------------------

    @property
    def raw(self) -> BinaryIO:
        """The underlying stream (its position runs ahead of :meth:`position`)."""
        return self._raw

    def seekable(self) -> bool:
        """Whether the underlying stream can seek (its size was found)."""
        return self._remaining is not None

    def read_exact(self, n: int) -> bytes:
        """Read ``n`` (small) bytes of data; fewer at the end of the stream."""
        self._fill(n)
        data = self._consume(n)
        self._pos += len(data)
        return data

    def holds(self, n: int) -> bool:
        """Whether ``n`` more bytes follow the cursor. When the stream's size is not known,
        up to ``_HOLDS_LOOKAHEAD`` bytes are read ahead (not consumed) to tell; a longer span
        is taken to be there."""
        if self._remaining is not None:
            return self._pos + n <= self._remaining
        return n > _HOLDS_LOOKAHEAD or self._fill(n) >= n

    def skip(self, n: int) -> bool:
        """Step over ``n`` bytes of data without reading them (by seeking when possible).

        Returns ``False`` when the stream ends first (it is then left at its end).
        """
        if n <= 0:
            return True
        buffered = len(self._consume(n))
        self._pos += buffered
        n -= buffered
        if n == 0:
            return True
        if self._remaining is not None:
            step = min(n, self._remaining - self._pos)
            self._raw.seek(step, io.SEEK_CUR)
            self._pos += step
            return step == n
        left = n
        while left > 0:
            chunk = self._raw.read(min(left, _CHUNK))
            if not chunk:
                break
            left -= len(chunk)
        self._pos += n - left
        return left == 0


# --------------------------------------------------------------------------------------------
# The machine


class _ParseError(Exception):
    """pickletools could not parse the stream."""


class _VMError(Exception):
    """The stream parses but a real unpickler would fail here (underflow, memo miss, ...)."""


class _LimitError(Exception):
    """A resource limit was reached."""


class _Abort(Exception):
    """The stream cannot be followed further; the reason was already reported."""


def _guarded(gen: Iterator[Any]) -> Iterator[Any]:
    while True:
        try:
            item = next(gen)
        except StopIteration:
            return
        except Exception as exc:  # hostile input: any parser failure becomes a finding
            raise _ParseError(f"{type(exc).__name__}: {exc}") from None
        yield item


@dataclass(eq=False)
class _Event:
    kind: str
    severity: Severity
    title: str
    detail: str
    remediation: str
    evidence: dict[str, Any]
    count: int = 1


class _Analysis:
    """State shared by every pickle of one analysis, nested ones included."""

    def __init__(
        self,
        *,
        policy: PicklePolicy,
        ecosystems: tuple[str, ...],
        limits: PickleLimits,
        origin: str,
        max_depth: int,
    ) -> None:
        self.policy = policy
        self.ecosystems = ecosystems
        self.limits = limits
        self.origin = origin
        self.max_depth = max_depth
        self.opcodes = 0
        self.globals: list[GlobalRef] = []
        self.calls = _CallLog(limits.max_evidence_chars)
        self.protocol: int | None = None
        self.pickles = 0
        self.complete = True
        self.stopped = False
        self.end_offset: int | None = None
        self.storages: list[TorchStorage] = []
        self._aggs: dict[tuple[Any, ...], _Agg] = {}
        self._overflow = 0
        self._events: dict[tuple[Any, ...], _Event] = {}
        self._nested: set[bytes] = set()
        # Folding (decoding bytes for nested pickles) may produce more than the input holds
        # (zlib, a memoised string encoded many times): bound the total.
        self.fold_budget = 4 * limits.max_const_bytes
        #: Bytes the pickle's calls ask the loader to allocate (see ``_Machine.allocation``),
        #: and the evidence of the finding once there is one, kept up to date.
        self.requested = 0
        self.allocation: dict[str, Any] | None = None

    # -- streams ----------------------------------------------------------------------------

    def reader(self, raw: BinaryIO) -> _Reader:
        return _Reader(
            raw, elide_over=self.limits.max_const_bytes, max_line=self.limits.max_const_bytes
        )

    def run_stream(
        self, raw: BinaryIO, *, depth: int, via: str, max_pickles: int | None = None
    ) -> int:
        reader = self.reader(raw)
        memo: dict[Any, Any] = {}
        index = 0
        while not self.stopped:
            if max_pickles is not None and index >= max_pickles:
                break
            if reader.at_eof():
                if index == 0:
                    self.malformed(depth, via, 0, reader.position(), "the stream is empty")
                break
            machine = _Machine(self, reader, memo, index=index, depth=depth, via=via)
            proceed = machine.run()
            if proceed and machine.frame_end > reader.position():
                # The unpickler read the STOP's frame whole: a next load() starts at its end.
                # A frame longer than the stream fails the C unpickler at its FRAME, and leaves
                # Python's at the end of the stream: what follows the STOP is analysed anyway.
                stop_end = reader.position()
                inside = reader.holds(machine.frame_end - stop_end)
                self.frame_overrun(machine, stop_end, machine.frame_end, inside=inside)
                if inside:
                    proceed = reader.skip(machine.frame_end - stop_end)
            index += 1
            if depth == 0:
                self.pickles = index
                if machine.protocol is not None:
                    self.protocol = max(self.protocol or 0, machine.protocol)
            if not proceed:
                break
        if depth == 0 and self.complete and not self.stopped:
            self.end_offset = reader.position()
        return index

    def count_opcode(self) -> None:
        self.opcodes += 1
        if self.opcodes > self.limits.max_opcodes:
            raise _LimitError(f"more than {self.limits.max_opcodes} opcodes")

    # -- records ----------------------------------------------------------------------------

    def record_global(self, g: _Global, machine: _Machine, *, after_error: bool = False) -> None:
        if len(self.globals) < self.limits.max_records:
            self.globals.append(
                GlobalRef(
                    g.module,
                    g.name,
                    g.offset,
                    g.judgement.verdict.value,
                    machine.index,
                    machine.depth,
                )
            )
        if g.judgement.verdict is Verdict.ALLOWED:
            return
        key = (machine.depth, machine.via, machine.index, g.module, g.name, g.judgement.verdict)
        agg = self._aggs.get(key)
        if agg is None:
            if len(self._aggs) >= self.limits.max_findings:
                self._overflow += 1
                return
            agg = _Agg(g.module, g.name, g.judgement, machine.index, machine.depth, machine.via)
            self._aggs[key] = agg
        agg.count += 1
        if len(agg.offsets) < 10:
            agg.offsets.append(g.offset)
        agg.after_error = agg.after_error or after_error
        g.agg = agg

    def record_call(self, func: Any, args: Any, kwargs: Any, offset: int, opcode: str,
                    machine: _Machine) -> None:
        """Keep a call for the report (rendered only if read); for ``BUILD``, ``func`` is
        the rendered target and ``args`` the state."""
        if len(self.calls) < self.limits.max_records:
            self.calls.add((func, args, kwargs, offset, opcode, machine.index, machine.depth))

    def event(
        self,
        machine: _Machine | None,
        kind: str,
        severity: Severity,
        title: str,
        detail: str,
        *,
        key: str = "",
        remediation: str = _REMEDIATION_DANGEROUS,
        depth: int = 0,
        via: str = "",
        index: int = 0,
        **evidence: Any,
    ) -> _Event | None:
        """Record an event, or count one more of the same; the event, or ``None`` when a
        silent machine or the findings limit dropped it."""
        if machine is not None:
            if machine.silent and kind != "limit":
                return None
            depth, via, index = machine.depth, machine.via, machine.index
        dedup = (kind, depth, via, index, key)
        existing = self._events.get(dedup)
        if existing is not None:
            existing.count += 1
            return existing
        if len(self._events) >= self.limits.max_findings:
            self._overflow += 1
            return None
        full = {"kind": kind, "pickle_index": index, "depth": depth, **evidence}
        if via:
            full["via"] = via
        event = self._events[dedup] = _Event(kind, severity, title, detail, remediation, full)
        return event

    def malformed(self, depth: int, via: str, index: int, offset: int, message: str) -> None:
        self.complete = False
        self.event(
            None,
            "malformed",
            Severity.MEDIUM,
            "Malformed pickle, cannot be analysed fully",
            f"At offset {offset}: {message}. The analysis covers the opcodes before this point "
            "(an unpickler may already have run them); nothing after it is known to be safe.",
            key=str(offset),
            remediation=_REMEDIATION_MALFORMED,
            depth=depth,
            via=via,
            index=index,
            offset=offset,
            error=message[:200],
        )

    def frame_overrun(self, machine: _Machine, stop_end: int, frame_end: int, *,
                      inside: bool) -> None:
        where = (
            "Both of Python's unpicklers read a frame whole, so those bytes are never run, and "
            "a second load() from the same stream starts after them, where a scanner that "
            "reads on from the STOP does not look. The analysis goes on from the frame's end, "
            "as the loader does."
            if inside else
            "The stream ends before the frame does: the C unpickler fails at the FRAME, "
            "Python's reads on to the end of the stream. What follows the STOP is analysed "
            "anyway."
        )
        self.event(
            machine,
            "frame-overrun",
            Severity.MEDIUM,
            "Pickle frame runs past its STOP",
            f"The protocol 4 frame holding this pickle's STOP declares {frame_end - stop_end} "
            f"more bytes after it (offsets {stop_end} to {frame_end}); pickle.dump ends a frame "
            f"at its STOP. {where}",
            remediation=_REMEDIATION_MALFORMED,
            offset=stop_end,
            frame_end=frame_end,
        )

    def limit_reached(self, machine: _Machine, message: str) -> None:
        self.complete = False
        self.stopped = True
        self.event(
            machine,
            "limit",
            Severity.MEDIUM,
            "Pickle analysis stopped at a resource limit",
            f"At offset {machine.offset}: {message}. The rest of the stream was not analysed.",
            remediation=_REMEDIATION_MALFORMED,
            offset=machine.offset,
            error=message,
        )

    # -- nested pickles ---------------------------------------------------------------------

    def nested(self, machine: _Machine, func: _Global, payload: Any, offset: int) -> str:
        """Analyse bytes passed to a pickle loader; returns a note for the loader's finding."""
        data = _as_bytes(payload)
        if data is None and isinstance(payload, str):
            try:
                data = payload.encode("latin-1")
            except UnicodeEncodeError:
                data = None
        reason = ""
        if isinstance(payload, _BigBytes):
            reason = f"the payload ({payload.size} bytes) is larger than the analysis keeps"
        elif data is None:
            reason = "the payload is not a constant the analyser can resolve"
        elif machine.depth + 1 > self.max_depth:
            reason = f"nesting is deeper than max_depth={self.max_depth}"
        if reason:
            self.event(
                machine,
                "nested-unanalysed",
                Severity.MEDIUM,
                "Nested pickle could not be analysed",
                f"{func.qualname} at offset {offset} deserialises a payload that was not "
                f"analysed: {reason}.",
                key=reason,
                offset=offset,
                callable=func.qualname,
            )
            return f"nested payload not analysed: {reason}"
        assert data is not None
        digest = hashlib.sha256(data).digest()
        if digest in self._nested:
            return "nested payload already analysed (same bytes earlier in the file)"
        self._nested.add(digest)
        here = f"{func.qualname} at offset {offset} of pickle {machine.index}"
        via = f"{here} < {machine.via}" if machine.via else here
        count = self.run_stream(io.BytesIO(data), depth=machine.depth + 1, via=via)
        return f"nested payload analysed ({len(data)} bytes, {count} pickle(s), depth {machine.depth + 1})"

    # -- findings ---------------------------------------------------------------------------

    def findings(self) -> list[Finding]:
        params = {"ecosystems": list(self.ecosystems), "max_depth": self.max_depth}
        out: list[tuple[tuple[Any, ...], Finding]] = []
        for agg in self._aggs.values():
            severity, title, detail, remediation = self._describe(agg)
            evidence = self._evidence(agg)
            finding = Finding(
                check=CHECK_ID,
                severity=severity,
                title=title,
                detail=detail,
                evidence=evidence,
                remediation=remediation,
                refs=REFS,
                plugin_id=PLUGIN_ID,
                plugin_version=PLUGIN_VERSION,
                params=params,
            )
            out.append(
                (
                    (-severity, agg.depth, agg.pickle_index, agg.offsets[0] if agg.offsets else 0),
                    finding,
                )
            )
        for event in self._events.values():
            evidence = {"path": self.origin, **event.evidence}
            if event.count > 1:
                evidence["occurrences"] = event.count
            finding = Finding(
                check=CHECK_ID,
                severity=event.severity,
                title=event.title,
                detail=event.detail,
                evidence=evidence,
                remediation=event.remediation,
                refs=REFS,
                plugin_id=PLUGIN_ID,
                plugin_version=PLUGIN_VERSION,
                params=params,
            )
            order = (
                -event.severity,
                evidence.get("depth", 0),
                evidence.get("pickle_index", 0),
                evidence.get("offset", 0),
            )
            out.append((order, finding))
        if self._overflow:
            out.append(
                (
                    (-Severity.MEDIUM, 0, 0, 0),
                    Finding(
                        check=CHECK_ID,
                        severity=Severity.MEDIUM,
                        title="More pickle findings than reported",
                        detail=f"{self._overflow} further flagged imports or events were not reported individually.",
                        evidence={"path": self.origin, "omitted": self._overflow},
                        remediation=_REMEDIATION_DANGEROUS,
                        refs=REFS,
                        plugin_id=PLUGIN_ID,
                        plugin_version=PLUGIN_VERSION,
                        params=params,
                    ),
                )
            )
        out.sort(key=lambda pair: pair[0])
        return [f for _, f in out]

    def _describe(self, agg: _Agg) -> tuple[Severity, str, str, str]:
        limit = self.limits.max_evidence_chars
        qual = f"{agg.module}.{agg.name}"
        qual = qual if len(qual) <= 120 else qual[:119] + "…"
        where = "a nested pickle" if agg.depth else "the pickle"
        called = ""
        if agg.calls:
            opcode, offset, args = agg.calls[0]
            called = f" It is called ({opcode} at offset {offset}) with {args[:limit]}."
        verdict = agg.judgement.verdict
        if verdict is Verdict.DENIED:
            severity = agg.judgement.severity or Severity.CRITICAL
            return (
                severity,
                f"Dangerous import in pickle: {qual}",
                f"{where.capitalize()} imports {qual}, which {agg.judgement.reason}.{called} "
                "Loading the file imports it, and a pickle imports a callable in order to call it.",
                _REMEDIATION_DANGEROUS,
            )
        if verdict is Verdict.UNRESOLVABLE:
            return (
                Severity.CRITICAL,
                "Pickle import cannot be resolved statically",
                f"{where.capitalize()} imports a global whose module or name is computed while "
                f"loading ({qual}), so no scanner can tell what it imports.{called} Benign "
                "pickles name their globals with constant strings.",
                _REMEDIATION_DANGEROUS,
            )
        if verdict is Verdict.EXTENSION:
            return (
                Severity.HIGH,
                f"Pickle imports through extension code {agg.name}",
                f"{where.capitalize()} uses an EXT opcode: the import is looked up in the loading "
                f"process's copyreg extension registry and cannot be resolved statically.{called}",
                _REMEDIATION_DANGEROUS,
            )
        severity = Severity.HIGH if agg.invoked else Severity.MEDIUM
        action = "imports and calls" if agg.invoked else "imports"
        return (
            severity,
            f"Unknown import in pickle: {qual}",
            f"{where.capitalize()} {action} {qual}, which is not on the allowlist of the "
            f"ecosystems scanned ({', '.join(self.ecosystems)}).{called} Unpickling runs the "
            "import (and the module's import-time code); an unknown callable may do anything.",
            _REMEDIATION_UNKNOWN,
        )

    def _evidence(self, agg: _Agg) -> dict[str, Any]:
        evidence: dict[str, Any] = {
            "path": self.origin,
            "offset": agg.offsets[0] if agg.offsets else 0,
            "pickle_index": agg.pickle_index,
            "depth": agg.depth,
            "module": agg.module,
            "name": agg.name,
            "callable": f"{agg.module}.{agg.name}",
            "args": agg.calls[0][2] if agg.calls else None,
            "verdict": agg.judgement.verdict.value,
            "reason": agg.judgement.reason,
            "occurrences": agg.count,
            "calls": agg.call_count,
        }
        if agg.calls:
            evidence["call_offset"] = agg.calls[0][1]
            evidence["call_opcode"] = agg.calls[0][0]
        if len(agg.offsets) > 1:
            evidence["offsets"] = list(agg.offsets)
        if agg.judgement.rule:
            evidence["rule"] = agg.judgement.rule
        if agg.judgement.sources:
            evidence["sources"] = list(agg.judgement.sources)
        if agg.via:
            evidence["via"] = agg.via
        if agg.notes:
            evidence["nested"] = list(agg.notes)
        if agg.after_error:
            evidence["after_error"] = True
        return evidence


#: Opcodes whose handler is shared with others of their kind, by pickletools name (the
#: rest are handled by ``_Machine.op_<NAME>``). A table rather than class-attribute aliases,
#: which the compiled build (mypyc) does not support.
_SHARED_HANDLERS: dict[str, str] = {
    **dict.fromkeys(("INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT",
                     "BINFLOAT"), "op_const"),
    **dict.fromkeys(("STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "SHORT_BINUNICODE",
                     "BINUNICODE", "BINUNICODE8"), "op_str"),
    **dict.fromkeys(("BINBYTES", "SHORT_BINBYTES", "BINBYTES8"), "op_bytes"),
    **dict.fromkeys(("GET", "BINGET", "LONG_BINGET"), "op_get"),
    **dict.fromkeys(("PUT", "BINPUT", "LONG_BINPUT"), "op_put"),
    **dict.fromkeys(("EXT1", "EXT2", "EXT4"), "op_ext"),
}
_HANDLER_TABLES: dict[type, dict[pickletools.OpcodeInfo, Any]] = {}


class _Machine:
    """One pickle: its stack, mark stack and protocol (the memo is the stream's)."""

    def __init__(
        self,
        analysis: _Analysis,
        reader: _Reader,
        memo: dict[Any, Any],
        *,
        index: int,
        depth: int,
        via: str,
    ) -> None:
        self.analysis = analysis
        self.reader = reader
        self.memo = memo
        self.index = index
        self.depth = depth
        self.via = via
        self.limits = analysis.limits
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        self.size = 0
        self.proto = 0
        self.protocol: int | None = None
        self.offset = reader.position()
        #: Where the current protocol 4+ frame ends (the unpickler reads ahead to there).
        self.frame_end = -1
        #: Whether BUILD on joblib's array wrapper reads the array bytes that follow it, as
        #: joblib.load does (the file itself, when the joblib ecosystem is enabled).
        self.joblib = depth == 0 and "joblib" in analysis.ecosystems
        #: A speculative reading (plain pickle.load over joblib array bytes): a failure means
        #: the loader stops there, so it is not reported; only what it would import is.
        self.silent = False

    # -- driver -----------------------------------------------------------------------------

    def run(self) -> bool:
        """Analyse one pickle; ``False`` when the stream cannot continue after it."""
        gen = self.reader.ops()
        analysis = self.analysis
        handlers = self._table()
        max_opcodes = self.limits.max_opcodes
        highest = -1
        last = -1  # where the previous opcode started
        try:
            while True:
                try:
                    opcode, arg, pos = next(gen)
                except StopIteration:
                    return True
                except Exception as exc:  # hostile input: any parser failure is a finding
                    raise _ParseError(f"{type(exc).__name__}: {exc}") from None
                count = analysis.opcodes = analysis.opcodes + 1
                if count > max_opcodes:
                    raise _LimitError(f"more than {max_opcodes} opcodes")
                if last < self.frame_end < pos:
                    self._frame_split(last)
                    return False
                last = pos
                self.offset = pos
                if opcode.proto > highest:
                    highest = opcode.proto
                    self.protocol = max(self.protocol or 0, highest)
                handlers[opcode](self, arg)
                if opcode is _STOP:
                    return True
        except _ParseError as exc:
            if not self.silent:
                analysis.malformed(
                    self.depth, self.via, self.index, self.reader.opcode_offset(), str(exc)
                )
                self._salvage()
            return False
        except _VMError as exc:
            if self.silent:
                return False
            analysis.malformed(self.depth, self.via, self.index, self.offset, str(exc))
            return self._lint(gen)
        except _LimitError as exc:
            analysis.limit_reached(self, str(exc))
            return False
        except _Abort:
            return False

    def _frame_split(self, start: int) -> None:
        """The opcode at ``start`` runs across the end of its frame, which pickle.dump never
        writes. The C unpickler drops the frame's last bytes and reads the opcode's argument
        (or its rest of line) from after the frame; Python's stops with an error. The two
        read different opcodes from there on, and this analysis read a third way (across the
        boundary), so the pickle is malformed from that opcode, and the bytes after it are
        searched for imports as after a parse error."""
        if self.silent:
            return
        self.analysis.malformed(
            self.depth, self.via, self.index, start,
            f"the opcode at offset {start} runs across the end of its frame at offset "
            f"{self.frame_end}: the C unpickler reads its argument from after the frame, "
            "Python's stops")
        self._salvage()

    def _salvage(self) -> None:
        """After a parse error, look for imports in the bytes that follow anyway.

        pickletools is stricter than the unpickler in a few corners (``INT`` arguments such
        as ``0x1``), so a stream it cannot parse may still load and run what comes next. The
        next MiB is searched for ``GLOBAL``/``INST`` lines and ``STACK_GLOBAL`` operand pairs;
        what they import is judged like any import, so a payload behind the differential is
        named at its real severity rather than as "malformed" alone.
        """
        try:
            tail = self.reader._take(_SALVAGE_BYTES)
        except (OSError, ValueError):
            return
        for module, name in _salvage_imports(tail):
            self.analysis.record_global(self._resolve(module, name), self, after_error=True)

    def _lint(self, gen: Iterator[Any]) -> bool:
        """After a load would have failed, keep reading to the STOP and flag imports anyway."""
        try:
            for opcode, _arg, pos in _guarded(gen):
                self.analysis.count_opcode()
                self.offset = pos
                if opcode.name in ("GLOBAL", "INST"):
                    try:
                        module, name = self.reader.last_names("utf-8")
                    except UnicodeDecodeError:
                        continue
                    self.analysis.record_global(self._resolve(module, name), self, after_error=True)
                elif opcode.name == "PROTO":
                    self.proto = _arg
                elif opcode.name == "STOP":
                    return True
        except _ParseError as exc:
            self.analysis.malformed(
                self.depth, self.via, self.index, self.reader.opcode_offset(), str(exc)
            )
        except _LimitError as exc:
            self.analysis.limit_reached(self, str(exc))
        return False

    @classmethod
    def _table(cls) -> dict[pickletools.OpcodeInfo, Any]:
        """Handler per pickletools opcode (built once per class): ``op_<NAME>``, or the
        shared handler :data:`_SHARED_HANDLERS` names, else ``op_unsupported``."""
        table = _HANDLER_TABLES.get(cls)
        if table is None:
            table = {
                op: getattr(cls, _SHARED_HANDLERS.get(op.name, f"op_{op.name}"),
                            cls.op_unsupported)
                for op in pickletools.opcodes
            }
            _HANDLER_TABLES[cls] = table
        return table

    # -- stack ------------------------------------------------------------------------------

    def push(self, value: Any) -> None:
        self.stack.append(value)
        self.size += 1
        if self.size > self.limits.max_stack:
            raise _LimitError(f"more than {self.limits.max_stack} values on the stack")

    def pop(self) -> Any:
        if not self.stack:
            raise _VMError("stack underflow")
        self.size -= 1
        return self.stack.pop()

    def top(self) -> Any:
        if not self.stack:
            raise _VMError("stack underflow")
        return self.stack[-1]

    def pop_mark(self) -> list[Any]:
        if not self.metastack:
            raise _VMError("MARK expected but not found")
        items = self.stack
        self.stack = self.metastack.pop()
        self.size -= len(items) + 1
        return items

    # -- values -----------------------------------------------------------------------------

    def const_str(self, value: str) -> Any:
        if len(value) > self.limits.max_const_bytes:
            return _BigStr(len(value), value[:64])
        return value

    def const_bytes(self, value: Any) -> Any:
        elided, self.reader.elided = self.reader.elided, None
        if elided is not None:
            return _BigBytes(elided.size, elided.head)
        if len(value) > self.limits.max_const_bytes:
            return _BigBytes(len(value), bytes(value[:64]))
        return bytes(value)

    # -- imports ----------------------------------------------------------------------------

    def _resolve(self, module: str, name: str) -> _Global:
        """Judge an import as the unpickler would perform it (renaming for protocols 0-2)."""
        policy, ecos = self.analysis.policy, self.analysis.ecosystems
        raw = (module, name)
        if self.proto < 3:
            if raw in NAME_MAPPING:
                module, name = NAME_MAPPING[raw]
            elif module in IMPORT_MAPPING:
                module = IMPORT_MAPPING[module]
        judgement = policy.judge(module, name, ecos)
        if raw != (module, name) and judgement.verdict is not Verdict.DENIED:
            other = policy.judge(*raw, ecos)
            if other.verdict is Verdict.DENIED:
                judgement = other
        return _Global(module, name, self.offset, judgement)

    def import_global(self, module: str, name: str) -> _Global:
        g = self._resolve(module, name)
        self.analysis.record_global(g, self)
        return g

    def _names(self, encoding: str) -> tuple[str, str]:
        try:
            return self.reader.last_names(encoding)
        except (UnicodeDecodeError, ValueError):
            raise _VMError(f"module or name is not valid {encoding}") from None

    # -- calls ------------------------------------------------------------------------------

    def call(self, func: Any, args: Any, kwargs: Any, opcode: str) -> _Result:
        analysis, limit = self.analysis, self.limits.max_evidence_chars
        result = _Result(func, args, kwargs, self.offset, opcode)
        analysis.record_call(func, args, kwargs, self.offset, opcode, self)
        if isinstance(func, _Global):
            agg = func.agg
            if agg is not None:
                agg.call_count += 1
                agg.invoked = agg.invoked or opcode in _INVOKING_OPCODES
                if len(agg.calls) < 5:
                    agg.calls.append((opcode, self.offset, _describe_args(args, kwargs, limit)))
            if analysis.fold_budget > 0:
                result.folded = _fold(func.module, func.name, args, self.limits.max_const_bytes)
                if result.folded is not None:
                    analysis.fold_budget -= len(result.folded)
            if func.judgement.verdict is Verdict.ALLOWED:
                self._check_arguments(func, args)
                if opcode in _INVOKING_OPCODES:
                    self._check_constructor(func, args, kwargs, opcode)
                    requested = _requested_bytes(func, args)
                    if requested:
                        self.allocation(func, requested)
            if analysis.policy.is_loader(func.module, func.name):
                payload = _first_argument(args, kwargs)
                note = analysis.nested(self, func, payload, self.offset)
                if agg is not None and len(agg.notes) < 5:
                    agg.notes.append(note)
        else:
            callable_text = _describe_callable(func, limit)
            analysis.event(
                self,
                "indirect-call",
                Severity.HIGH,
                "Pickle calls a computed object",
                f"{opcode} at offset {self.offset} calls {callable_text}, which is not an "
                "imported global but a value built while loading (for example the result of "
                "getattr). Benign pickles only call the globals they import.",
                key="",
                offset=self.offset,
                callable=callable_text,
                args=_describe_args(args, kwargs, limit),
            )
        return result

    def allocation(self, func: _Global, requested: int) -> None:
        """Count memory a call asks for; past a bound, one finding for the whole analysis."""
        analysis = self.analysis
        analysis.requested += requested
        if analysis.requested < _ALLOCATION_FINDING_BYTES:
            return
        if analysis.allocation is not None:
            analysis.allocation["requested_bytes"] = analysis.requested
            return
        event = analysis.event(
            self,
            "allocation",
            Severity.MEDIUM,
            "Pickle makes the loader allocate memory it does not carry (memory exhaustion)",
            f"{func.qualname} at offset {self.offset} and the calls before it ask for "
            f"{analysis.requested} bytes by size alone (bytearray(n)) or by a range "
            "to materialise (list(range(n))). Pickling rebuilds such objects from their "
            "contents, so a file of a few bytes that allocates gigabytes is written to exhaust "
            "the loading machine's memory.",
            key="",
            offset=self.offset,
            callable=func.qualname,
            requested_bytes=analysis.requested,
        )
        if event is not None:
            analysis.allocation = event.evidence

    def _check_constructor(self, func: _Global, args: Any, kwargs: Any, opcode: str) -> None:
        """A class allowed only to be restored (``construct: false``) must not be called: a
        call runs its ``__init__``, which pickling never does for such objects."""
        target = func
        if func.judgement.callable:
            # copyreg._reconstructor(cls, base, state) runs base.__init__(obj, state) for
            # any base but object.
            if (func.module, func.name) != _RECONSTRUCTOR or not isinstance(args, tuple):
                return
            base = args[1] if len(args) > 1 else None
            if not (isinstance(base, _Global) and base.judgement.verdict is Verdict.ALLOWED
                    and not base.judgement.callable):
                return
            target = base
        text = _describe_args(args, kwargs, self.limits.max_evidence_chars)
        self.analysis.event(
            self,
            "constructor-call",
            Severity.MEDIUM,
            f"Pickle runs the constructor of {target.qualname}",
            f"{opcode} at offset {self.offset} calls {func.qualname}{text}, which runs "
            f"{target.qualname}.__init__ with arguments the pickle chooses. Pickling writes "
            "such objects with NEWOBJ and BUILD and never calls __init__, so the constructor "
            "does whatever those arguments ask: a torch.nn layer allocates and initialises "
            "the weights they size (Linear(100000, 100000) is 40 GB), exhausting the loading "
            "machine's memory.",
            key=target.qualname,
            offset=self.offset,
            callable=target.qualname,
            args=text,
        )

    def _check_arguments(self, func: _Global, args: Any) -> None:
        """Allowed helpers that call what they are given must be given imports, not results."""
        key = (func.module, func.name)
        positions = _CALLABLE_PARAMETERS.get(key, ())
        if isinstance(args, tuple):
            for i in positions:
                if i < len(args) and isinstance(args[i], (_Result, _Opaque)):
                    text = _render(args[i], self.limits.max_evidence_chars)
                    self.analysis.event(
                        self,
                        "computed-callable-argument",
                        Severity.HIGH,
                        "Pickle passes a computed object where a class or function is expected",
                        f"{func.qualname} at offset {self.offset} calls or instantiates its "
                        f"argument {i}, which is {text}: a value built while loading, not an "
                        "import the policy could judge.",
                        key="",
                        offset=self.offset,
                        callable=func.qualname,
                        args=text,
                    )
        if key in _CODEC_CALLS and isinstance(args, tuple) and len(args) > 1:
            codec = args[1]
            if not (isinstance(codec, str) and codec.lower() in _SAFE_CODECS):
                text = _render(codec, self.limits.max_evidence_chars)
                self.analysis.event(
                    self,
                    "codec",
                    Severity.MEDIUM,
                    "Pickle encodes with an unexpected codec",
                    f"{func.qualname} at offset {self.offset} looks up codec {text}; pickles "
                    "only use latin1 for bytes, and a codec lookup imports a module.",
                    key="",
                    offset=self.offset,
                    callable=func.qualname,
                    args=text,
                )

    def build(self, inst: Any, state: Any) -> None:
        limit = self.limits.max_evidence_chars
        if isinstance(inst, _Global):
            self.mutates_global(inst, "BUILD", state)
            return
        if not isinstance(inst, _Result):
            return
        inst.state = state
        cls = _instance_class(inst)
        target = cls.qualname if cls is not None else _describe_callable(inst, limit)
        self.analysis.record_call(target, state, None, self.offset, "BUILD", self)
        if cls is not None and cls.judgement.verdict in (Verdict.UNKNOWN, Verdict.EXTENSION):
            self.analysis.event(
                self,
                "untrusted-setstate",
                Severity.MEDIUM,
                f"Pickle restores state into a non-allowlisted class: {target[:120]}",
                f"BUILD at offset {self.offset} hands state to an instance of {target}, which is "
                "not on the allowlist; its __setstate__ (if any) runs with that state.",
                key=target,
                offset=self.offset,
                callable=f"{target}.__setstate__",
                args=_render(state, limit),
            )
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], _Dict):
            dunders = [k for k, _ in state[1].items if isinstance(k, str) and k.startswith("__")]
            if dunders:
                self.analysis.event(
                    self,
                    "dunder-state",
                    Severity.HIGH,
                    "Pickle sets special attributes while restoring state",
                    f"BUILD at offset {self.offset} sets {', '.join(map(repr, dunders[:5]))} on "
                    f"an instance of {target} with setattr (slot state); benign pickles never "
                    "set dunder attributes.",
                    key="",
                    offset=self.offset,
                    callable=f"{target}.__setstate__",
                    args=_render(state, limit),
                )

    def mutates_global(self, target: _Global, opcode: str, payload: Any) -> None:
        limit = self.limits.max_evidence_chars
        self.analysis.event(
            self,
            "mutates-global",
            Severity.CRITICAL,
            f"Pickle modifies an imported object: {target.qualname[:120]}",
            f"{opcode} at offset {self.offset} changes {target.qualname} itself (not an "
            "instance of it), patching code other than the pickle's; benign pickles never "
            "do this.",
            key=target.qualname,
            offset=self.offset,
            callable=target.qualname,
            args=_render(payload, limit),
        )

    def mutate(self, target: Any, items: list[Any], opcode: str) -> None:
        if isinstance(target, _Global):
            self.mutates_global(target, opcode, items)
        elif isinstance(target, _List):
            if opcode not in ("APPEND", "APPENDS"):
                raise _VMError(f"{opcode} on a list")
            target.extend(items)
        elif isinstance(target, _Dict):
            if opcode not in ("SETITEM", "SETITEMS"):
                raise _VMError(f"{opcode} on a dict")
            target.extend(items)
        elif isinstance(target, _Set):
            if opcode != "ADDITEMS" or target.frozen:
                raise _VMError(f"{opcode} on a {'frozenset' if target.frozen else 'set'}")
            target.extend(items)
        elif not isinstance(target, (_Result, _Opaque, _ByteArray)):
            raise _VMError(f"{opcode} on a {type(target).__name__}")

    def persistent(self, pid: Any) -> Any:
        analysis = self.analysis
        if (
            "torch" in analysis.ecosystems
            and isinstance(pid, tuple)
            and len(pid) == 4
            and pid[0] == "module"
            and isinstance(pid[1], _Global)
        ):
            # torch.save's legacy layout refers to nn.Module classes as ("module", cls,
            # source file, source); its persistent_load returns cls, which the pickle
            # imported (and the policy judged) inside the id.
            return pid[1]
        torch_storage = (
            "torch" in analysis.ecosystems
            and isinstance(pid, tuple)
            and len(pid) >= 2
            and pid[0] == "storage"
            and isinstance(pid[1], _Global)
            and pid[1].judgement.verdict is Verdict.ALLOWED
        )
        if torch_storage:
            analysis.event(
                self,
                "torch-storage",
                Severity.INFO,
                "PyTorch storage references in pickle",
                "The pickle refers to tensor storages by persistent id; torch.load resolves them "
                "from the checkpoint archive, without importing anything.",
                remediation="",
                offset=self.offset,
            )
            if len(analysis.storages) < self.limits.max_records and not self.silent:
                fields = [*pid[2:5], None, None, None][:3]
                key, location, numel = fields
                analysis.storages.append(
                    TorchStorage(
                        key=key if type(key) is str else None,
                        storage_type=pid[1].qualname,
                        location=location if type(location) is str else None,
                        numel=numel if type(numel) is int else None,
                        offset=self.offset,
                    )
                )
            return _Opaque(f"torch storage {_render(pid[2] if len(pid) > 2 else '', 40)}")
        text = _render(pid, self.limits.max_evidence_chars)
        analysis.event(
            self,
            "persistent-id",
            Severity.LOW,
            "Pickle uses persistent ids",
            "Persistent ids are resolved by the loading application's persistent_load hook, "
            "whose behaviour the analyser cannot see; a plain pickle.load refuses them.",
            remediation="Check which application loads this file and how it resolves persistent ids.",
            offset=self.offset,
            args=text,
        )
        return _Opaque(f"persistent id {text[:60]}")

    # -- joblib: array bytes written between the opcodes ------------------------------------

    def joblib_array(self, wrapper: _Result, state: Any) -> Any:
        """Step over the array joblib.load reads right after BUILD of a ``NumpyArrayWrapper``.

        joblib's ``NumpyUnpickler`` replaces the wrapper with an array read from the stream:
        an optional padding-length byte and that much padding, then ``count * itemsize`` raw
        bytes, or for object arrays an inline pickle (loaded with a fresh unpickler). The
        layout is computed from the wrapper's symbolic state; the raw bytes are skipped
        without being read. Anything unresolved fails closed, as a load that the analysis
        cannot follow.
        """
        start = self.reader.position()
        wrapper.attrs = _merge_attrs(wrapper.attrs if wrapper.attrs is not None else {}, state)
        layout = _joblib_layout(wrapper.attrs)
        if isinstance(layout, str):
            self.joblib_fail(start, layout)
        if start < self.frame_end:
            self.joblib_fail(start, "the array's BUILD is inside a pickle frame, so joblib reads "
                                    "the array from after the frame while the opcodes go on")
        nbytes, has_object, holds_object, padded, mmap = layout
        if has_object:
            if mmap:
                self.joblib_fail(start, "an object array marked for memory mapping: "
                                        "joblib.load(mmap_mode=...) maps raw bytes as object "
                                        "pointers where a plain load reads an inline pickle")
            return self.joblib_inline_pickle(start)
        if holds_object:
            self.analysis.event(
                self,
                "joblib-object-pointers",
                Severity.HIGH,
                "joblib array of Python objects stored as raw bytes",
                f"The array at offset {start} has a dtype holding Python objects but flags "
                "telling NumPy it holds none, so joblib.load reads its raw bytes as object "
                "pointers: memory corruption under the file's control. joblib never writes "
                "this.",
                offset=start,
            )
        if padded:
            pad = self.reader.read_exact(1)
            if not pad:
                self.joblib_fail(start, "the stream ends before the array's padding byte")
            if pad[0] in _OPCODE_BYTES:
                # joblib writes 1 to 16 here, never an opcode, so that pickle.load of the same
                # file stops at this byte. An opcode makes a polyglot: pickle.load runs the
                # bytes joblib.load skips as padding.
                self.analysis.event(
                    self,
                    "joblib-padding-opcode",
                    Severity.MEDIUM,
                    "joblib padding that pickle.load would run",
                    f"The padding-length byte at offset {start} is {pad[0]:#04x}, a pickle "
                    "opcode; joblib writes 1 to 16. joblib.load skips the padding, pickle.load "
                    "runs it as opcodes (analysed separately).",
                    offset=start,
                )
                self.plain_reading(start)
            if not self.reader.skip(pad[0]):
                self.joblib_fail(start, "the stream ends inside the array's padding")
        elif nbytes:
            # Without padding, pickle.load (not joblib.load) would run the array bytes as
            # opcodes: follow that reading too unless it fails at the first byte.
            first = self.reader.read_exact(1)
            if not first:
                self.joblib_fail(start, "the stream ends before the array data")
            if first[0] in _OPCODE_BYTES:
                self.plain_reading(start)
            nbytes -= 1
        if not self.reader.skip(nbytes):
            self.joblib_fail(start, f"the stream ends inside the array data ({nbytes} bytes "
                                    "expected)")
        return _Opaque(f"numpy array ({layout[0]} bytes, written by joblib)")

    def joblib_fail(self, offset: int, message: str) -> NoReturn:
        self.analysis.malformed(self.depth, self.via, self.index, offset,
                                f"joblib array data cannot be followed: {message}")
        raise _Abort

    def joblib_inline_pickle(self, start: int) -> Any:
        """An object array: joblib pickles it inline, loaded by a fresh unpickler."""
        via = f"joblib object array at offset {start} of pickle {self.index}"
        inner = _Machine(self.analysis, self.reader, {}, index=0, depth=self.depth + 1,
                         via=f"{via} < {self.via}" if self.via else via)
        if not inner.run():
            raise _Abort
        if inner.frame_end > self.reader.position():
            # The inline unpickler reads whole frames: bytes after its STOP are lost to it.
            self.joblib_fail(start, "the inline pickle's last frame runs past its STOP")
        return _Opaque("numpy object array (joblib)")

    def plain_reading(self, start: int) -> None:
        """Analyse what pickle.load would do with the bytes after a joblib array's BUILD.

        A plain unpickler keeps the wrapper and reads on as opcodes; random array data stops
        it within a few bytes, an attacker's does not. Only what it would import is reported.
        """
        if not self.reader.seekable():
            self.joblib_fail(start, "the array data starts with a pickle opcode and the "
                                    "stream cannot seek back to check what pickle.load does")
        raw = self.reader.raw
        here = raw.tell()
        raw.seek(start)
        try:
            via = f"pickle.load reading joblib array bytes at offset {start}"
            shadow = _Machine(self.analysis, self.analysis.reader(raw), dict(self.memo),
                              index=self.index, depth=self.depth,
                              via=f"{via} < {self.via}" if self.via else via)
            shadow.stack = list(self.stack)
            shadow.metastack = [list(frame) for frame in self.metastack]
            shadow.size, shadow.proto = self.size, self.proto
            shadow.joblib, shadow.silent = False, True
            shadow.run()
        finally:
            raw.seek(here)

    def joblib_companion(self, wrapper: _Result, cls: _Global, state: Any) -> None:
        """joblib < 0.10 arrays: joblib.load opens a file the pickle names and np.load()s it."""
        attrs = _merge_attrs({}, state) or {}
        name = attrs.get("filename")
        text = name if isinstance(name, str) else _render(name, 80)
        escapes = not isinstance(name, str) or name.startswith(("/", "\\")) or ".." in name
        self.analysis.event(
            self,
            "joblib-companion-file",
            Severity.HIGH if escapes else Severity.MEDIUM,
            "joblib pickle loads a companion file",
            f"{cls.qualname} at offset {self.offset} makes joblib.load read {text!r} next to "
            "the file (joblib < 0.10 layout), with np.load(allow_pickle=True) or as a zlib "
            "pickle: what that file holds is loaded too, and this scan did not see it."
            + (" The name leaves the file's directory." if escapes else ""),
            key=text,
            offset=self.offset,
            callable=cls.qualname,
            args=text,
            remediation="Scan the companion file too, or re-save the model with a current joblib.",
        )

    # -- opcode handlers (names follow pickletools) -----------------------------------------

    def op_unsupported(self, arg: Any) -> None:
        raise _VMError("opcode not supported by this analyser")

    def op_PROTO(self, arg: int) -> None:
        self.proto = arg
        self.protocol = max(self.protocol or 0, arg)

    def op_FRAME(self, arg: int) -> None:
        # A FRAME inside a frame: the C unpickler holds the outer frame's bytes already and
        # reads on from the file only past them, so the file ends up at the further end.
        self.frame_end = max(self.frame_end, self.reader.position() + arg)

    def op_STOP(self, arg: None) -> None:
        self.pop()

    def op_MARK(self, arg: None) -> None:
        self.metastack.append(self.stack)
        self.stack = []
        self.size += 1
        if self.size > self.limits.max_stack:
            raise _LimitError(f"more than {self.limits.max_stack} values on the stack")

    def op_POP(self, arg: None) -> None:
        # Both unpicklers pop a MARK when the current frame is empty.
        if self.stack:
            self.pop()
        else:
            self.pop_mark()

    def op_POP_MARK(self, arg: None) -> None:
        self.pop_mark()

    def op_DUP(self, arg: None) -> None:
        self.push(self.top())

    def op_const(self, arg: Any) -> None:
        # push(), inlined: the commonest opcodes push a constant
        self.stack.append(arg)
        self.size += 1
        if self.size > self.limits.max_stack:
            raise _LimitError(f"more than {self.limits.max_stack} values on the stack")

    def op_str(self, arg: str) -> None:
        self.push(self.const_str(arg))

    def op_bytes(self, arg: Any) -> None:
        self.push(self.const_bytes(arg))

    def op_BYTEARRAY8(self, arg: Any) -> None:
        self.push(_ByteArray(self.const_bytes(arg)))

    def op_NEXT_BUFFER(self, arg: None) -> None:
        self.push(_Opaque("out-of-band buffer"))

    def op_READONLY_BUFFER(self, arg: None) -> None:
        self.top()

    def op_NONE(self, arg: None) -> None:
        self.push(None)

    def op_NEWTRUE(self, arg: None) -> None:
        self.push(True)

    def op_NEWFALSE(self, arg: None) -> None:
        self.push(False)

    def op_EMPTY_LIST(self, arg: None) -> None:
        self.push(_List(self.limits.max_container_items))

    def op_EMPTY_DICT(self, arg: None) -> None:
        self.push(_Dict(self.limits.max_container_items))

    def op_EMPTY_SET(self, arg: None) -> None:
        self.push(_Set(self.limits.max_container_items))

    def op_EMPTY_TUPLE(self, arg: None) -> None:
        self.push(())

    def op_LIST(self, arg: None) -> None:
        self.push(_List(self.limits.max_container_items, self.pop_mark()))

    def op_TUPLE(self, arg: None) -> None:
        self.push(tuple(self.pop_mark()))

    def op_TUPLE1(self, arg: None) -> None:
        self.push((self.pop(),))

    def op_TUPLE2(self, arg: None) -> None:
        second = self.pop()
        self.push((self.pop(), second))

    def op_TUPLE3(self, arg: None) -> None:
        third = self.pop()
        second = self.pop()
        self.push((self.pop(), second, third))

    def op_DICT(self, arg: None) -> None:
        self.push(_Dict(self.limits.max_container_items, _pairs(self.pop_mark(), "DICT")))

    def op_FROZENSET(self, arg: None) -> None:
        self.push(_Set(self.limits.max_container_items, self.pop_mark(), frozen=True))

    def op_APPEND(self, arg: None) -> None:
        value = self.pop()
        self.mutate(self.top(), [value], "APPEND")

    def op_APPENDS(self, arg: None) -> None:
        items = self.pop_mark()
        self.mutate(self.top(), items, "APPENDS")

    def op_SETITEM(self, arg: None) -> None:
        value = self.pop()
        key = self.pop()
        self.mutate(self.top(), [(key, value)], "SETITEM")

    def op_SETITEMS(self, arg: None) -> None:
        pairs = _pairs(self.pop_mark(), "SETITEMS")
        self.mutate(self.top(), pairs, "SETITEMS")

    def op_ADDITEMS(self, arg: None) -> None:
        items = self.pop_mark()
        self.mutate(self.top(), items, "ADDITEMS")

    def op_get(self, arg: Any) -> None:
        try:
            value = self.memo[arg]
        except KeyError:
            raise _VMError(f"memo key {arg!r} was never stored") from None
        self.stack.append(value)  # push(), inlined
        self.size += 1
        if self.size > self.limits.max_stack:
            raise _LimitError(f"more than {self.limits.max_stack} values on the stack")

    def op_put(self, arg: Any) -> None:
        if not isinstance(arg, int) or arg < 0:
            raise _VMError(f"invalid memo key {arg!r}")
        if arg > 1 << 20 and arg > 4 * self.analysis.opcodes:
            # The C unpickler keeps the memo in an array sized by the largest index: a
            # single PUT at 2**30 makes the load allocate and zero gigabytes. Pickles written
            # by pickle number their memo entries in order, never far beyond the object count.
            self.analysis.event(
                self, "memo-index", Severity.MEDIUM,
                "Memo index far beyond the pickle's size (memory exhaustion on load)",
                f"A PUT stores into memo slot {arg} after only {self.analysis.opcodes} "
                "opcodes. The C unpickler grows its memo array to that index, so loading the "
                "file allocates about 8 bytes per slot and can exhaust memory.",
                key=str(arg), remediation=_REMEDIATION_MALFORMED, offset=self.offset,
                memo_index=arg,
            )
        if not self.stack:
            raise _VMError("stack underflow")
        self.memo[arg] = self.stack[-1]

    def op_MEMOIZE(self, arg: None) -> None:
        self.memo[len(self.memo)] = self.top()

    def op_GLOBAL(self, arg: str) -> None:
        module, name = self._names("utf-8")
        self._split_import("utf-8")
        self.push(self.import_global(module, name))

    def _split_import(self, encoding: str) -> None:
        """When the frame ends inside a ``GLOBAL``/``INST`` line, judge the import the C
        unpickler performs too: it drops the rest of the frame and reads that line from after
        it, so it asks for the line's tail (the run loop then reports the stream malformed).
        """
        start, end = self.offset, self.frame_end
        if not start < end < self.reader.position():
            return
        module_line, name_line = self.reader.lines[-2:]
        cut = end - start - 1  # bytes of the two lines inside the frame
        if cut < len(module_line):
            module_line = module_line[cut:]
        else:
            name_line = name_line[cut - len(module_line):]
        try:
            module, name = module_line[:-1].decode(encoding), name_line[:-1].decode(encoding)
        except UnicodeDecodeError:
            return
        self.analysis.record_global(self._resolve(module, name), self, after_error=True)

    def op_STACK_GLOBAL(self, arg: None) -> None:
        name = self.pop()
        module = self.pop()
        if isinstance(module, _BigStr):
            module = module.head + "…"
        if isinstance(name, _BigStr):
            name = name.head + "…"
        if type(module) is str and type(name) is str:
            self.push(self.import_global(module, name))
            return
        symbolic = (_Global, _Result, _Opaque, _Container, _ByteArray)
        if self.silent and not all(_may_be_str(v) for v in (module, name)):
            raise _VMError("STACK_GLOBAL requires two strings")
        if isinstance(module, symbolic) or isinstance(name, symbolic):
            limit = self.limits.max_evidence_chars
            g = _Global(
                _render(module, limit),
                _render(name, limit),
                self.offset,
                Judgement(
                    Verdict.UNRESOLVABLE,
                    "STACK_GLOBAL operands are not constant strings",
                    severity=Severity.CRITICAL,
                ),
            )
            self.analysis.record_global(g, self)
            self.push(g)
            return
        raise _VMError("STACK_GLOBAL requires two strings")

    def op_ext(self, arg: int) -> None:
        g = _Global(
            "<extension>",
            str(arg),
            self.offset,
            Judgement(
                Verdict.EXTENSION,
                "extension code import, unresolvable statically",
                severity=Severity.HIGH,
            ),
        )
        self.analysis.record_global(g, self)
        self.push(g)

    def op_REDUCE(self, arg: None) -> None:
        args = self.pop()
        func = self.pop()
        self.push(self.call(func, args, None, "REDUCE"))

    def op_NEWOBJ(self, arg: None) -> None:
        args = self.pop()
        cls = self.pop()
        self.push(self.call(cls, args, None, "NEWOBJ"))

    def op_NEWOBJ_EX(self, arg: None) -> None:
        kwargs = self.pop()
        args = self.pop()
        cls = self.pop()
        self.push(self.call(cls, args, kwargs, "NEWOBJ_EX"))

    def op_INST(self, arg: str) -> None:
        module, name = self._names("ascii")
        self._split_import("ascii")
        cls = self.import_global(module, name)
        args = tuple(self.pop_mark())
        self.push(self.call(cls, args, None, "INST"))

    def op_OBJ(self, arg: None) -> None:
        items = self.pop_mark()
        if not items:
            raise _VMError("OBJ without a class")
        self.push(self.call(items[0], tuple(items[1:]), None, "OBJ"))

    def op_BUILD(self, arg: None) -> None:
        state = self.pop()
        inst = self.top()
        self.build(inst, state)
        if self.joblib and isinstance(inst, _Result):
            cls = _instance_class(inst)
            if cls is not None and cls.judgement.verdict is Verdict.ALLOWED:
                if (cls.module, cls.name) == _JOBLIB_ARRAY:
                    self.stack[-1] = self.joblib_array(inst, state)
                    # The array's bytes came after the last frame (checked there): the
                    # opcodes go on outside any frame until the next FRAME.
                    self.frame_end = -1
                elif (cls.module, cls.name) in _JOBLIB_COMPANIONS:
                    self.joblib_companion(inst, cls, state)

    def op_PERSID(self, arg: str) -> None:
        self.push(self.persistent(arg))

    def op_BINPERSID(self, arg: None) -> None:
        self.push(self.persistent(self.pop()))


def _requested_bytes(func: _Global, args: Any) -> int:
    """Bytes a call of an allowed ``func`` allocates because of its arguments' values: an int
    size for ``bytearray``; and for each argument that is a sized value, what walking or
    copying it costs (any callee that takes an iterable or a buffer walks it, most keep it)."""
    if not isinstance(args, tuple):
        return 0
    total = 0
    if (func.module, func.name) in _SIZED_BY_INT and args and type(args[0]) is int:
        total += max(args[0], 0)
    for arg in args:
        total += _sized_value(arg)
    return total


def _sized_value(value: Any) -> int:
    """Bytes a value built by size costs once something walks or copies it: ``range(...)``
    at 8 a item, ``bytes(n)`` and ``bytearray(n)`` at n (``bytes(n)`` itself is lazy, a
    copy is not); 0 for anything else."""
    if not (isinstance(value, _Result) and isinstance(value.func, _Global)
            and isinstance(value.args, tuple) and all(type(a) is int for a in value.args)):
        return 0
    key = (value.func.module, value.func.name)
    if key in _SIZED_BY_INT or key == _BYTES_TYPE:
        return max(value.args[0], 0) if len(value.args) == 1 else 0
    if key != _RANGE:
        return 0
    try:
        return 8 * len(range(*value.args))
    except OverflowError:  # more items than a C ssize_t counts
        return 1 << 62
    except (TypeError, ValueError):  # fails on load (a zero step, too many arguments)
        return 0


def _may_be_str(value: Any) -> bool:
    """Whether a value could be a string when loaded: a constant one, or a function's result."""
    if isinstance(value, (str, _BigStr)):
        return True
    return (
        isinstance(value, _Result)
        and isinstance(value.func, _Global)
        and value.opcode in _INVOKING_OPCODES
    )


# --------------------------------------------------------------------------------------------
# joblib's array layout (joblib/numpy_pickle.py: NumpyArrayWrapper.write_array / read_array)

_JOBLIB_ARRAY = ("joblib.numpy_pickle", "NumpyArrayWrapper")
_JOBLIB_COMPANIONS = frozenset(
    {("joblib.numpy_pickle_compat", "NDArrayWrapper"),
     ("joblib.numpy_pickle_compat", "ZNDArrayWrapper")}
)
#: Bytes a pickle opcode starts with: an unpickler stops with an error at any other byte.
_OPCODE_BYTES = frozenset(op.code.encode("latin-1")[0] for op in pickletools.opcodes)
#: NumPy's dtype ``__reduce__`` names a dtype by kind and size (``f8``, ``U5``, ``V12``).
_DTYPE_CODE = re.compile(r"([biufcmMOSUV])([0-9]{0,6})")
_FIXED_SIZES = frozenset({1, 2, 4, 8, 10, 12, 16, 32})
_HASOBJECT = 0x01  # NPY_ITEM_HASOBJECT: NumPy takes it from the pickled state as it is


def _merge_attrs(attrs: dict[str, Any] | None, state: Any) -> dict[str, Any] | None:
    """Attributes after the default ``__setstate__`` (dict state, then slot state)."""
    if attrs is None:
        return None
    merged = dict(attrs)
    parts = list(state) if isinstance(state, tuple) and len(state) == 2 else [state]
    for part in parts:
        if part is None:
            continue
        if not isinstance(part, _Dict) or part.dropped:
            return None
        for key, value in part.items:
            if type(key) is not str:
                return None
            merged[key] = value
    return merged


def _joblib_layout(attrs: dict[str, Any] | None) -> tuple[int, bool, bool, bool, bool] | str:
    """``(nbytes, hasobject, holds objects, padded, mmap allowed)`` of a wrapped array, or
    why it cannot be known."""
    if attrs is None:
        return "the wrapper's state is not a constant dictionary"
    shape = attrs.get("shape")
    items = shape.items if isinstance(shape, _List) and not shape.dropped else shape
    if not isinstance(items, (tuple, list)) or not all(type(d) in (int, bool) for d in items):
        return f"the array shape {_render(shape, 80)} is not constant"
    count = 1
    for dim in items:
        count *= int(dim)
    if any(d < 0 for d in items) or count >= 1 << 63:
        return f"the array shape {_render(shape, 80)} cannot be loaded"
    dtype = _dtype_layout(attrs.get("dtype"), 0)
    if isinstance(dtype, str):
        return dtype
    itemsize, has_object, holds_object = dtype
    padded = attrs.get("numpy_array_alignment_bytes") is not None
    mmap = attrs.get("allow_mmap") not in (None, False, 0)
    return count * itemsize, has_object, holds_object, padded, mmap


def _dtype_layout(value: Any, depth: int) -> tuple[int, bool, bool] | str:
    """``(itemsize, hasobject, holds objects)`` of a pickled ``numpy.dtype``, as NumPy
    rebuilds it: the size from the type code (the state's ``elsize`` for S, U and V), the
    object flag from the state's flags."""
    if not (
        isinstance(value, _Result)
        and isinstance(value.func, _Global)
        and (value.func.module, value.func.name) == ("numpy", "dtype")
        and value.func.judgement.verdict is Verdict.ALLOWED
        and isinstance(value.args, tuple)
        and value.args
        and type(value.args[0]) is str
    ):
        return "the array dtype is not a constant numpy.dtype(...)"
    match = _DTYPE_CODE.fullmatch(value.args[0])
    state = value.state
    if (
        match is None
        or depth > 8
        or not isinstance(state, tuple)
        or len(state) not in (8, 9)
        or state[0] not in (3, 4)
        or type(state[5]) is not int
        or type(state[7]) is not int
    ):
        return f"the array dtype {_render(value.args[0], 40)} is not one NumPy writes"
    kind, digits = match.groups()
    if kind in "SUV":
        itemsize = state[5]
    else:
        itemsize = int(digits) if digits else -1
        if itemsize not in _FIXED_SIZES:
            return f"the array dtype {value.args[0]!r} has no fixed size"
    if itemsize < 0:
        return f"the array dtype {value.args[0]!r} has no size"
    holds = kind == "O"
    if kind == "V":
        inner: list[Any] = []
        if isinstance(state[2], tuple) and state[2]:
            inner.append(state[2][0])
        elif state[2] is not None:
            return "the array dtype's sub-array is not constant"
        if isinstance(state[4], _Dict) and not state[4].dropped:
            inner.extend(v[0] for _, v in state[4].items if isinstance(v, tuple) and v)
        elif state[4] is not None:
            return "the array dtype's fields are not constant"
        for part in inner:
            sub = _dtype_layout(part, depth + 1)
            if isinstance(sub, str):
                return sub
            holds = holds or sub[1] or sub[2]
    return itemsize, bool(state[7] & _HASOBJECT), holds


def _pairs(items: list[Any], opcode: str) -> list[tuple[Any, Any]]:
    if len(items) % 2:
        raise _VMError(f"odd number of items for {opcode}")
    return list(zip(items[::2], items[1::2], strict=True))


def _instance_class(result: _Result) -> _Global | None:
    """The class an object built by a call is an instance of, when it is an import."""
    func = result.func
    if not isinstance(func, _Global):
        return None
    if (func.module, func.name) in _RECONSTRUCTORS:
        args = result.args
        if isinstance(args, tuple) and args and isinstance(args[0], _Global):
            return args[0]
    return func


def _first_argument(args: Any, kwargs: Any) -> Any:
    if isinstance(args, tuple) and args:
        return args[0]
    if isinstance(kwargs, _Dict):
        for key, value in kwargs.items:
            if key in ("data", "file", "f", "filepath_or_buffer"):
                return value
    return None


# --------------------------------------------------------------------------------------------
# Public API


def analyse_pickle(
    data: bytes | bytearray | memoryview | BinaryIO,
    *,
    origin: str = "",
    ecosystems: Iterable[str] | None = None,
    max_depth: int = 3,
    policy: PicklePolicy | None = None,
    limits: PickleLimits | None = None,
    max_pickles: int | None = None,
) -> PickleReport:
    """Analyse a pickle stream without unpickling it.

    Nothing named in the stream is imported or called: the opcodes are decoded as
    :func:`pickletools.genops` decodes them and executed on symbolic values. A malformed or
    hostile stream gives findings, never an exception.

    Args:
        data: The pickle bytes, or a binary file object read from its current position.
        origin: File name or label written into the findings' evidence (``path``).
        ecosystems: Allowlists to apply (``python`` is always included); ``None`` for all
            of them: ``python``, ``numpy``, ``torch``, ``sklearn``, ``joblib``.
        max_depth: How deep pickles nested in the pickle (bytes passed to ``pickle.loads``
            and the like) are followed, from 0 (none) to 32.
        policy: An import policy; the bundled allowlist and deny list by default.
        limits: Resource bounds; :class:`PickleLimits` defaults when ``None``.
        max_pickles: Analyse at most this many concatenated pickles and stop right after the
            last one's ``STOP`` (``report.end_offset``), for formats that put other data
            after their pickles (PyTorch's legacy format); ``None`` reads to the end.

    Returns:
        The report: findings (most severe first), imports, calls, counts.

    Raises:
        InvalidParameterError: ``ecosystems`` names an unknown ecosystem, ``max_depth`` is
            out of range, or ``max_pickles`` is not a positive integer.

    Example:
        >>> import pickle
        >>> analyse_pickle(pickle.dumps({"weights": [1.0, 2.0]})).findings
        []
    """
    if isinstance(max_depth, bool) or not isinstance(max_depth, int) or not 0 <= max_depth <= 32:
        raise InvalidParameterError([f"max_depth must be an integer in [0, 32], got {max_depth!r}"])
    if max_pickles is not None and (
        isinstance(max_pickles, bool) or not isinstance(max_pickles, int) or max_pickles < 1
    ):
        raise InvalidParameterError([f"max_pickles must be a positive integer, got {max_pickles!r}"])
    policy = policy if policy is not None else load_policy()
    chosen = policy.resolve_ecosystems(ecosystems)
    analysis = _Analysis(
        policy=policy,
        ecosystems=chosen,
        limits=limits if limits is not None else PickleLimits(),
        origin=origin,
        max_depth=max_depth,
    )
    stream: BinaryIO = (
        io.BytesIO(bytes(data)) if isinstance(data, (bytes, bytearray, memoryview)) else data
    )
    try:
        analysis.run_stream(stream, depth=0, via="", max_pickles=max_pickles)
    except Exception as exc:  # fail closed: an analyser bug must not pass a file
        logger.debug("pickle analysis of %s failed", origin or "<bytes>", exc_info=True)
        analysis.malformed(0, "", 0, 0, f"internal analyser error ({type(exc).__name__})")
    return PickleReport(
        origin=origin,
        findings=analysis.findings(),
        globals=analysis.globals,
        calls=analysis.calls,
        pickles=analysis.pickles,
        opcodes=analysis.opcodes,
        protocol=analysis.protocol,
        complete=analysis.complete,
        end_offset=analysis.end_offset if analysis.complete else None,
        torch_storages=analysis.storages,
    )


def scan_pickle_file(
    path: str | Path,
    *,
    ecosystems: Iterable[str] | None = None,
    max_depth: int = 3,
    policy: PicklePolicy | None = None,
    limits: PickleLimits | None = None,
) -> PickleReport:
    """Analyse a pickle file, streaming it (large constants are skipped, not read).

    Args:
        path: The file.
        ecosystems: See :func:`analyse_pickle`.
        max_depth: See :func:`analyse_pickle`.
        policy: See :func:`analyse_pickle`.
        limits: See :func:`analyse_pickle`.

    Raises:
        InputError: The file cannot be read.
    """
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below, after the analysis
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with handle:
        return analyse_pickle(
            handle,
            origin=str(path),
            ecosystems=ecosystems,
            max_depth=max_depth,
            policy=policy,
            limits=limits,
        )


def is_safe_to_unpickle(
    path: str | Path, ecosystems: Iterable[str] = ("python", "numpy", "sklearn")
) -> PickleReport:
    """Scan a pickle a caller wants to load; it may load it only if the report allows it.

    The caller unpickles only when ``report.allows_unpickling()`` (every finding below
    ``medium``): unknown imports and malformed streams block, as do dangerous ones. The
    report is returned rather than a bool so that the refusal can say why; it has no truth
    value, so ``if is_safe_to_unpickle(p):`` raises instead of silently passing.

    Args:
        path: The pickle file.
        ecosystems: Allowlists to apply (by default Python, NumPy and scikit-learn, which is
            what a pickled scikit-learn model needs).

    Example:
        >>> report = is_safe_to_unpickle("model.pkl")  # doctest: +SKIP
        >>> if not report.allows_unpickling():  # doctest: +SKIP
        ...     raise SystemExit(report.findings[0].title)
    """
    return scan_pickle_file(path, ecosystems=ecosystems)

"""The PyTorch scanner: ``torch.save`` checkpoints (zip, legacy and tar layouts) and TorchScript
archives, read without torch and without loading what they contain.

Where code hides in a PyTorch file:

- **The pickles.** ``torch.load`` unpickles ``<archive>/data.pkl`` (any name with
  ``pickle_file=``), so a checkpoint runs whatever its pickle imports and calls. Every pickle
  member is analysed by the static pickle analyser (:mod:`.pickle_vm`) with the ``python``,
  ``torch`` and ``numpy`` allowlists, whatever its name or extension: picklescan missed
  pickles with a non-standard extension (CVE-2025-1889) and archives whose zip headers
  Python's :mod:`zipfile` refuses but PyTorch reads (CVE-2025-1944 local/central name
  mismatch, CVE-2025-1945 flag bits). Members are therefore read the way PyTorch's reader
  (miniz) reads them: from the central directory, through the local header's lengths,
  ignoring the local name, flag bits and CRC, and matching ``.pkl`` case-insensitively.
- **TorchScript.** ``torch.jit.load`` (and ``torch.load`` of an archive with a
  ``constants.pkl``) compiles the Python-like source under ``code/`` and reads the pickles
  with TorchScript's own unpickler, which resolves only TorchScript classes (``__torch__.*``,
  compiled from that source) and its list builders (``torch.jit._pickle``), never a Python
  import. The source cannot import Python modules either, but operators reach the system:
  ``torch.save`` writes a file, ``torch.from_file`` reads (or, shared, memory-maps) one.
  Those are HIGH; Python-only constructs (``import os``, ``eval``, ``__import__``) cannot
  compile as TorchScript and mark a hand-made archive (HIGH); operators and classes from
  outside PyTorch run native code of a library the loading process registered (LOW).
- **Legacy layout** (``_use_new_zipfile_serialization=False``): five pickles in a row
  (magic number, protocol version, system info, the data, the storage keys), then raw
  storages. Exactly those five are analysed, each as its own ``pickle.load`` (fresh memo);
  the storages are checked by their 8-byte length headers only and never read.
- **Tar layout** (the oldest): ``sys_info`` and ``pickle`` members are pickles; ``storages``
  and ``tensors`` interleave small pickles with raw data, walked the way ``torch.load`` walks
  them.

Tensor data (``data/<key>``, ``constants/<key>``, the legacy storage section) is never read,
sniffed or decompressed: a 2 GB checkpoint costs its pickle and its headers. Storages are
checked against the persistent ids that reference them (present, of the declared size).
Other members are handed back to the session and scanned by their content.

Rules (``evidence["rule"]``) of this scanner; the pickles' findings are the analyser's:

==============================  ========  ==================================================
``torchscript-system-op``       HIGH      TorchScript calls an operator that reads or writes
                                          files (``torch.save``, ``torch.from_file``)
``torchscript-python-code``     HIGH      Python-only code in TorchScript source (``import
                                          os``, ``eval``, ``__import__``, ``__globals__``)
``torchscript-custom-op``       LOW       operator or class from outside PyTorch
``torchscript-code``            INFO      the archive carries TorchScript code
``torchscript-unreadable-code`` MEDIUM    code that does not tokenize or is too large
``torch-storage-missing``       MEDIUM    a referenced storage is not in the archive
``torch-storage-size``          MEDIUM    a storage is shorter than its persistent id says
                                          (LOW when longer)
``torch-storage-unreferenced``  LOW       storages no pickle references
``torch-legacy-storages``       LOW       the legacy storage section does not match the
                                          pickles (sizes, keys, trailing data)
``torch-zip-layout``            LOW       pickles under several top-level folders
``torch-metadata``              LOW       ``byteorder``/``version`` records with odd values
``malformed``                   MEDIUM    the file does not parse as its format
==============================  ========  ==================================================

Zip structure (traversal, duplicates, bombs, hidden data) is checked by
:func:`phalanx.supplychain.scan.archive.check_zip_structure` when that module is installed.

Example:
    >>> from phalanx.supplychain.scan import scan_paths
    >>> report = scan_paths(["model.pt"])  # doctest: +SKIP
    >>> report.failed()  # doctest: +SKIP
    False
"""

from __future__ import annotations

import dataclasses
import io
import logging
import pickletools
import struct
import tarfile
import tokenize
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO, ClassVar

from phalanx.core.findings import Finding, Severity
from phalanx.supplychain.scan._quiet import file_text_warnings_ignored
from phalanx.supplychain.scan.archive import _read_at, _Window, _window
from phalanx.supplychain.scan.base import BUNDLED_FORMATS, FileScanner, ScanSession, Source
from phalanx.supplychain.scan.pickle_vm import REFS, PickleReport, analyse_pickle
from phalanx.supplychain.scan.policy import Judgement, PicklePolicy, Verdict

__all__ = ["PyTorchScanner"]

logger = logging.getLogger(__name__)

_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_LEGACY_PICKLES = ("magic number", "protocol version", "system info", "data", "storage keys")
_ECOSYSTEMS = ("python", "torch", "numpy")
_CHUNK = 1 << 16
_MAX_TEXT = 1024  # byteorder, version, serialization_id: a few bytes each
_MAX_SMALL_PICKLE = 16 << 20  # legacy storage keys, tar headers: read to learn their values
_MAX_STORAGES = 100_000  # legacy storage headers checked (8 bytes each)

#: Bytes per element of the storage types persistent ids name (torch/storage.py).
_ELEMENT_SIZE = {
    "UntypedStorage": 1, "ByteStorage": 1, "CharStorage": 1, "BoolStorage": 1,
    "QUInt8Storage": 1, "QInt8Storage": 1, "QUInt4x2Storage": 1, "QUInt2x4Storage": 1,
    "ShortStorage": 2, "HalfStorage": 2, "BFloat16Storage": 2,
    "IntStorage": 4, "FloatStorage": 4, "QInt32Storage": 4,
    "LongStorage": 8, "DoubleStorage": 8, "ComplexFloatStorage": 8,
    "ComplexDoubleStorage": 16,
}
#: Records every ``torch.save``/``torch.jit.save`` archive has, small text.
_TEXT_RECORDS = frozenset({"version", ".data/version", "byteorder", ".format_version",
                           ".storage_alignment", ".data/serialization_id"})

#: TorchScript's unpickler builds lists through these (torch/jit/_pickle.py).
_JIT_PICKLE = frozenset({"build_intlist", "build_tensorlist", "build_doublelist",
                         "build_boollist", "build_tensor_from_id", "restore_type_tag"})
#: TorchBind classes PyTorch itself registers (packed weights of quantized and mobile models).
_TORCH_CLASS_NAMESPACES = frozenset({"quantized", "xnnpack", "sparse"})
#: Operator namespaces PyTorch itself registers (``torch._C._jit_get_all_schemas()``).
_TORCH_OP_NAMESPACES = frozenset({
    "aten", "prim", "prims", "quantized", "_quantized", "quantization", "mkldnn",
    "mkldnn_prepacked", "onednn", "mkl", "sparse", "profiler", "c10d", "_c10d_functional",
    "_c10d_functional_autograd", "static_runtime", "inductor", "inductor_prims", "rngprims",
    "debugprims", "_dtensor", "symm_mem", "export", "_native", "onnx", "_test",
    "debug_mode_ops",
})
#: Operators that touch the file system: aten::save(t item, str filename),
#: aten::from_file(str filename, bool? shared, ...), debugprims::load_tensor(str name, ...).
_SYSTEM_OPS = frozenset({"save", "from_file", "load_tensor"})
#: Names TorchScript does not have; serialized TorchScript never contains them.
_PYTHON_ONLY_ROOTS = frozenset({
    "os", "posix", "nt", "sys", "subprocess", "builtins", "__builtin__", "__builtins__",
    "importlib", "shutil", "socket", "ctypes", "pickle", "marshal", "pty", "runpy",
})
_PYTHON_ONLY_CALLS = frozenset({"eval", "exec", "compile", "open", "__import__", "input",
                                "breakpoint", "globals", "locals", "vars"})
_DUNDER_WALKS = frozenset({"__import__", "__builtins__", "__globals__", "__subclasses__",
                           "__code__", "__reduce__", "__reduce_ex__", "__bases__", "__mro__",
                           "__dict__", "__loader__", "__spec__"})


class PyTorchScanner(FileScanner):
    """PyTorch checkpoints and TorchScript archives: every pickle, the code, the layout.

    Threat model: an attacker who controls every byte of a ``.pt``/``.pth``/``.bin`` file and
    knows the scanner, and a victim who calls ``torch.load`` (``weights_only`` or not) or
    ``torch.jit.load`` on it. Nothing is imported, unpickled, compiled or run.

    Example:
        >>> findings = list(PyTorchScanner().scan("model.pt"))  # doctest: +SKIP
        >>> [f.evidence["rule"] for f in findings if f.severity.label == "critical"]  # doctest: +SKIP
        ['process-execution']
    """

    name = "pytorch"
    title = "PyTorch checkpoints and TorchScript"
    paper = ("PyTorch documentation, 'Serialization semantics' and torch.load's warning, "
             "https://pytorch.org/docs/stable/notes/serialization.html")
    refs = REFS
    formats: ClassVar[tuple[str, ...]] = BUNDLED_FORMATS["pytorch"]

    def scan_source(self, source: Source, session: ScanSession) -> Iterator[Finding]:
        """Scan a checkpoint in whichever of the four layouts its bytes show."""
        head = source.head(512)
        if head.startswith(_ZIP_MAGICS):
            yield from _Zip(self, source, session).scan()
        elif len(head) > 262 and head[257:262] == b"ustar":
            yield from _Tar(self, source, session).scan()
        else:  # the legacy layout's magic-number pickle, whatever its protocol
            yield from _Legacy(self, source, session).scan()


# --------------------------------------------------------------------------------------------
# Shared helpers


class _Job:
    """One file: the scanner, the source and the session, and the pickle analysis."""

    def __init__(self, scanner: PyTorchScanner, source: Source, session: ScanSession) -> None:
        self.scanner = scanner
        self.id = scanner.plugin_id()
        self.source = source
        self.session = session

    def finding(self, rule: str, severity: Severity, title: str, detail: str,
                source: Source | None = None, **evidence: Any) -> Finding:
        return self.session.finding(source or self.source, rule, severity, title, detail,
                                    scanner=self.id, evidence=evidence)

    def malformed(self, message: str, source: Source | None = None,
                  offset: int | None = None) -> Finding:
        return self.session.malformed(source or self.source, message, scanner=self.id,
                                      offset=offset)

    def pickle(self, source: Source, stream: BinaryIO, *, policy: PicklePolicy | None = None,
               max_pickles: int | None = None,
               label: str = "") -> tuple[list[Finding], PickleReport]:
        """Analyse a pickle stream; findings shaped as :meth:`ScanSession.scan_pickle` does."""
        report = analyse_pickle(stream, origin=source.name, ecosystems=_ECOSYSTEMS,
                                policy=policy or self.session.policy,
                                limits=self.session.limits.pickle, max_pickles=max_pickles)
        return self.session.pickle_findings(source, report, label=label), report


class _Inflater(io.RawIOBase):
    """Raw deflate data, inflated on demand and never past the size the directory declares."""

    def __init__(self, raw: io.RawIOBase, size: int) -> None:
        super().__init__()
        self._raw, self._left = raw, max(0, size)
        self._z = zlib.decompressobj(-15)
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        try:
            while not self._buf and self._left > 0 and not self._z.eof:
                data = self._z.unconsumed_tail or self._raw.read(_CHUNK)
                if not data:
                    break
                self._buf = self._z.decompress(data, min(self._left, 1 << 20))
        except zlib.error as exc:
            raise OSError(f"corrupt deflate data: {exc}") from None
        n = min(len(view), len(self._buf), self._left)
        view[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        self._left -= n
        return n

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


def _deflated(parent: Source, start: int, length: int, size: int) -> Callable[[], BinaryIO]:
    def opener() -> BinaryIO:
        return io.BufferedReader(_Inflater(_Window(parent.open(), start, length), size),
                                 buffer_size=_CHUNK)

    return opener


def _type_name(storage_type: str) -> str:
    return storage_type.rsplit(".", 1)[-1]


def _constant(data: bytes) -> Any:
    """The value of a small pickle of constants (ints, strings, tuples, lists, imports as
    ``("global", module, name)``); raises :class:`ValueError` for anything else.

    Used only to learn sizes and keys from pickles the analyser has already judged.
    """
    with file_text_warnings_ignored():  # pickletools' STRING reader warns on odd escapes
        return _constant_value(data)


def _constant_value(data: bytes) -> Any:
    stack: list[Any] = []
    marks: list[int] = []
    memo: dict[Any, Any] = {}  # keys as the stream gives them
    for opcode, arg, _pos in pickletools.genops(data):
        name = opcode.name
        if name in ("PROTO", "FRAME"):
            continue
        if name == "STOP":
            if len(stack) != 1:
                raise ValueError("unbalanced pickle")
            return stack[0]
        if name in ("BININT", "BININT1", "BININT2", "INT", "LONG", "LONG1", "LONG4",
                    "BINUNICODE", "SHORT_BINUNICODE", "UNICODE", "BINUNICODE8",
                    "SHORT_BINSTRING", "BINSTRING", "STRING"):
            stack.append(arg)
        elif name in ("NONE", "NEWTRUE", "NEWFALSE"):
            stack.append({"NONE": None, "NEWTRUE": True, "NEWFALSE": False}[name])
        elif name == "MARK":
            marks.append(len(stack))
        elif name in ("TUPLE", "LIST"):
            at = marks.pop()
            items = stack[at:]
            del stack[at:]
            stack.append(tuple(items) if name == "TUPLE" else items)
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            items = stack[len(stack) - n:]
            if len(items) != n:
                raise ValueError("stack underflow")
            del stack[len(stack) - n:]
            stack.append(tuple(items))
        elif name == "EMPTY_TUPLE":
            stack.append(())
        elif name == "EMPTY_LIST":
            stack.append([])
        elif name == "APPEND":
            item = stack.pop()
            stack[-1].append(item)
        elif name == "APPENDS":
            at = marks.pop()
            items = stack[at:]
            del stack[at:]
            stack[-1].extend(items)
        elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[arg] = stack[-1]
        elif name == "MEMOIZE":
            memo[len(memo)] = stack[-1]
        elif name in ("BINGET", "LONG_BINGET", "GET"):
            stack.append(memo[arg])
        elif name == "GLOBAL":
            module, _, attr = str(arg).partition(" ")
            stack.append(("global", module, attr))
        elif name == "STACK_GLOBAL":
            attr, module = stack.pop(), stack.pop()
            stack.append(("global", module, attr))
        else:
            raise ValueError(f"{name} is not a constant")
    raise ValueError("no STOP")


# --------------------------------------------------------------------------------------------
# TorchScript's unpickler


@dataclasses.dataclass(frozen=True)
class _TorchScriptPolicy(PicklePolicy):
    """The bundled policy, plus what TorchScript's unpickler resolves without Python.

    ``torch/csrc/jit/serialization/unpickler.cpp`` maps a fixed set of globals (tensor
    rebuilders, ``OrderedDict``, ``torch.jit._pickle`` list builders) and resolves every
    other name as a TorchScript type compiled from the archive's ``code/`` (``__torch__.*``)
    or a TorchBind class a native library registered (``__torch__.torch.classes.<ns>``); it
    never imports a Python module. So those names are allowed here for pickles TorchScript
    reads (their code is checked separately); everything else is judged as usual.
    """

    def judge(self, module: str, name: str, ecosystems: Iterable[str]) -> Judgement:
        parts = name.split(".")
        if all(parts) and not any(p.startswith("__") for p in parts):
            if module == "torch.jit._pickle" and name in _JIT_PICKLE:
                return Judgement(Verdict.ALLOWED, "TorchScript list builder", "torchscript")
            if module.startswith("__torch__.torch.classes."):
                namespace = module.split(".")[3]
                if namespace in _TORCH_CLASS_NAMESPACES:
                    return Judgement(Verdict.ALLOWED, "PyTorch TorchBind class", "torchscript")
            elif module == "__torch__" or module.startswith("__torch__."):
                return Judgement(Verdict.ALLOWED, "TorchScript class compiled from the "
                                 "archive's code", "torchscript")
        return super().judge(module, name, ecosystems)


def _torchscript_policy(policy: PicklePolicy) -> PicklePolicy:
    return _TorchScriptPolicy(**{f.name: getattr(policy, f.name)
                                 for f in dataclasses.fields(PicklePolicy) if f.init})


# --------------------------------------------------------------------------------------------
# Zip layout: torch.save >= 1.6 and torch.jit.save


class _Zip(_Job):
    def scan(self) -> Iterator[Finding]:
        yield from self._structure()
        try:
            fh = self.source.open()
        except OSError as exc:
            yield self.session.error(self.source, f"cannot read: {exc}", scanner=self.id)
            return
        with fh:
            try:
                infos = self.session.zip_directory(self.source)[: self.session.limits.max_members]
            except (zipfile.BadZipFile, OSError, ValueError, EOFError,
                    NotImplementedError) as exc:
                yield self.malformed(f"the zip directory does not parse ({exc})")
                return
            yield from self._members(fh, infos)

    def _structure(self) -> Iterator[Finding]:
        try:
            from phalanx.supplychain.scan import archive
        except ImportError:  # the archive scanner is not installed: no structural checks
            return
        check = getattr(archive, "check_zip_structure", None)
        if check is not None:
            for item in check(self.source, self.session, scanner=self.id) or ():
                if isinstance(item, Finding):
                    yield item

    def _member(self, fh: BinaryIO, info: zipfile.ZipInfo) -> Source | str:
        """The member as PyTorch's reader sees it (central directory, local lengths only)."""
        header = _read_at(fh, info.header_offset, 30)
        if len(header) < 30 or header[:4] != b"PK\x03\x04":
            return "its local header is missing"
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        start = info.header_offset + 30 + name_len + extra_len
        if start + info.compress_size > self.source.size:
            return "its data runs past the end of the file"
        if info.compress_type == zipfile.ZIP_STORED:
            return self.source.child(info.filename, info.compress_size,
                                     _window(self.source, start, info.compress_size))
        if info.compress_type == zipfile.ZIP_DEFLATED:
            if info.file_size > self.session.limits.max_member_bytes:
                return "it expands past the member size limit"
            return self.source.child(info.filename, info.file_size,
                                     _deflated(self.source, start, info.compress_size,
                                               info.file_size))
        return f"compression method {info.compress_type} (PyTorch reads stored and deflate)"

    def _members(self, fh: BinaryIO, infos: list[zipfile.ZipInfo]) -> Iterator[Finding]:
        # torch's reader takes the archive's folder from the first entry and looks records up
        # under it; torch.load hands the archive to torch.jit.load when it has constants.pkl.
        archive_name = infos[0].filename.split("/", 1)[0] if infos else ""
        torchscript = any(i.filename == f"{archive_name}/constants.pkl" for i in infos)
        script_policy = _torchscript_policy(self.session.policy) if torchscript else None
        storages: dict[str, zipfile.ZipInfo] = {}
        pickles: list[zipfile.ZipInfo] = []
        code: list[zipfile.ZipInfo] = []
        others: list[zipfile.ZipInfo] = []
        for info in infos:
            lower = info.filename.lower()
            rel = lower.split("/", 1)[1] if "/" in lower else lower
            if lower.endswith("/") and info.file_size == 0:
                continue
            if lower.endswith((".pkl", ".debug_pkl")):
                pickles.append(info)
            elif rel.startswith(("data/", "constants/")) and "/" not in rel.split("/", 1)[1]:
                storages[lower] = info
            elif rel.startswith("code/") and lower.endswith(".py"):
                code.append(info)
            else:
                others.append(info)
        folders = sorted({i.filename.split("/", 1)[0] for i in pickles})
        if len(folders) > 1:
            yield self.finding(
                "torch-zip-layout", Severity.LOW, "Pickles under several top-level folders",
                "torch.load reads the folder of the archive's first entry and ignores the "
                "others; a checkpoint written by torch.save has one folder. Every pickle was "
                "analysed.", folders=folders[:20])
        referenced: set[str] = set()
        for info in pickles:
            yield from self._pickle(fh, info, script_policy, storages, referenced)
        unreferenced = sorted(set(storages) - referenced)
        if unreferenced:
            yield self.finding(
                "torch-storage-unreferenced", Severity.LOW, "Tensor storages no pickle uses",
                f"{len(unreferenced)} storage members are not referenced by any pickle: "
                "torch.load never reads them. They were not read or scanned (storages are raw "
                "tensor bytes).", members=unreferenced[:20], count=len(unreferenced))
        if code:
            yield from self._code(fh, code)
        for info in others:
            yield from self._other(fh, info)

    def _pickle(self, fh: BinaryIO, info: zipfile.ZipInfo, script_policy: PicklePolicy | None,
                storages: dict[str, zipfile.ZipInfo], referenced: set[str]) -> Iterator[Finding]:
        member = self._member(fh, info)
        if isinstance(member, str):
            yield self.malformed(f"pickle member {info.filename!r} cannot be read: {member}")
            return
        try:
            with member.open() as stream:
                findings, report = self.pickle(member, stream, policy=script_policy)
        except OSError as exc:
            yield self.malformed(f"pickle member {info.filename!r}: {exc}")
            return
        yield from findings
        folder = info.filename.rsplit("/", 1)[0] + "/" if "/" in info.filename else ""
        kind = "constants/" if info.filename.lower().endswith("constants.pkl") else "data/"
        yield from self._storages(report, (folder + kind).lower(), member, storages,
                                  referenced)

    def _storages(self, report: PickleReport, prefix: str, member: Source,
                  storages: dict[str, zipfile.ZipInfo],
                  referenced: set[str]) -> Iterator[Finding]:
        missing: list[str] = []
        short: list[str] = []
        long: list[str] = []
        for ref in report.torch_storages:
            if ref.key is None:
                continue
            name = (prefix + ref.key).lower()
            info = storages.get(name)
            if info is None:
                missing.append(prefix + ref.key)
                continue
            referenced.add(name)
            size = _ELEMENT_SIZE.get(_type_name(ref.storage_type))
            if size is None or ref.numel is None:
                continue
            if info.file_size < ref.numel * size:
                short.append(f"{info.filename} ({info.file_size} < {ref.numel * size})")
            elif info.file_size > ref.numel * size:
                long.append(f"{info.filename} ({info.file_size} > {ref.numel * size})")
        if missing:
            yield self.finding(
                "torch-storage-missing", Severity.MEDIUM, "Referenced tensor storage is missing",
                f"The pickle refers to {len(missing)} storages the archive does not hold; "
                "torch.load fails part-way through unpickling. torch.save never writes this: "
                "the checkpoint is damaged or was edited by hand.", member,
                storages=missing[:20], count=len(missing))
        if short:
            yield self.finding(
                "torch-storage-size", Severity.MEDIUM, "Tensor storage shorter than declared",
                "Storage members hold fewer bytes than the pickle's persistent ids declare "
                "(numel times the element size); torch.save writes them exactly.", member,
                storages=short[:20], count=len(short))
        if long:
            yield self.finding(
                "torch-storage-size", Severity.LOW, "Tensor storage longer than declared",
                "Storage members hold more bytes than the pickle declares; the rest is never "
                "read by torch.load.", member, storages=long[:20], count=len(long))

    def _code(self, fh: BinaryIO, infos: list[zipfile.ZipInfo]) -> Iterator[Finding]:
        total = 0
        for info in infos:
            member = self._member(fh, info)
            if isinstance(member, str):
                yield self.malformed(f"code member {info.filename!r} cannot be read: {member}")
                continue
            if member.size > self.session.limits.max_header_bytes:
                yield self.finding(
                    "torchscript-unreadable-code", Severity.MEDIUM,
                    "TorchScript source too large to check",
                    f"{info.filename} holds {member.size} bytes of code, over the "
                    f"{self.session.limits.max_header_bytes}-byte limit; it was not checked.",
                    member, incomplete=True)
                continue
            try:
                with member.open() as stream:
                    text = stream.read(self.session.limits.max_header_bytes + 1)
            except OSError as exc:
                yield self.malformed(f"code member {info.filename!r}: {exc}")
                continue
            total += len(text)
            yield from _check_code(self, member, text)
        yield self.finding(
            "torchscript-code", Severity.INFO, "Archive carries TorchScript code",
            f"{len(infos)} TorchScript source files ({total} bytes): torch.jit.load compiles "
            "and the model runs them. TorchScript cannot import Python modules; the "
            "operators it calls were checked.", files=len(infos), bytes=total)

    def _other(self, fh: BinaryIO, info: zipfile.ZipInfo) -> Iterator[Finding]:
        member = self._member(fh, info)
        if isinstance(member, str):
            yield self.malformed(f"member {info.filename!r} cannot be read: {member}")
            return
        rel = info.filename.split("/", 1)[1] if "/" in info.filename else info.filename
        if rel.lower() in _TEXT_RECORDS and member.size <= _MAX_TEXT:
            try:
                with member.open() as stream:
                    value = stream.read(_MAX_TEXT)
            except OSError as exc:
                yield self.malformed(f"member {info.filename!r}: {exc}")
                return
            text = value.decode("ascii").strip() if value.isascii() else ""
            if text.isprintable():
                yield from _check_record(self, member, rel.lower(), text)
                return
        yield from self.session.scan(member)


def _check_record(job: _Job, member: Source, rel: str, value: str) -> Iterator[Finding]:
    odd = ""
    if rel == "byteorder" and value not in ("little", "big"):
        odd = "byteorder is neither 'little' nor 'big' (torch.load refuses the file)"
    elif rel in ("version", ".data/version", ".format_version") and not value.strip().isdigit():
        odd = f"{rel} is not a number (torch.load refuses the file)"
    if odd:
        yield job.finding("torch-metadata", Severity.LOW, "Unexpected checkpoint metadata",
                          odd + ".", member, value=value[:80])


def _classify(chain: list[str], called: bool) -> str:
    """What a dotted name in TorchScript source reaches: ``python``, ``system``, ``custom``
    or ``""`` (ordinary TorchScript)."""
    root = chain[0]
    if root in _PYTHON_ONLY_ROOTS or any(p in _DUNDER_WALKS for p in chain):
        return "python"
    if len(chain) == 1:
        return "python" if called and root in _PYTHON_ONLY_CALLS else ""
    if root in ("torch", "ops") and chain[-1] in _SYSTEM_OPS:
        return "system"
    ops = chain[1:] if root == "ops" else chain[2:] if chain[:2] == ["torch", "ops"] else []
    if len(ops) > 1 and ops[0] not in _TORCH_OP_NAMESPACES:
        return "custom"
    if root in ("torch", "__torch__") and "classes" in chain[:3]:
        at = chain.index("classes")
        if len(chain) > at + 1 and chain[at + 1] not in _TORCH_CLASS_NAMESPACES:
            return "custom"
    return ""


def _check_code(job: _Job, member: Source, text: bytes) -> Iterator[Finding]:
    """Static checks of one TorchScript source file (tokens, not text: strings are skipped)."""
    found: dict[str, list[str]] = {"system": [], "python": [], "custom": []}
    try:
        tokens = list(tokenize.tokenize(io.BytesIO(text).readline))
    except (tokenize.TokenError, SyntaxError, UnicodeDecodeError) as exc:
        yield job.finding(
            "torchscript-unreadable-code", Severity.MEDIUM, "TorchScript source does not parse",
            f"The source does not tokenize as TorchScript writes it ({exc}); its calls could "
            "not be checked.", member, incomplete=True)
        return
    i = 0
    line_start = True
    while i < len(tokens):
        tok = tokens[i]
        if tok.type == tokenize.NAME:
            chain = [tok.string]
            j = i + 1
            while (j + 1 < len(tokens) and tokens[j].string == "."
                   and tokens[j + 1].type == tokenize.NAME):
                chain.append(tokens[j + 1].string)
                j += 2
            where = f"line {tok.start[0]}: {'.'.join(chain)[:80]}"
            if line_start and chain in (["import"], ["from"]):
                # Old archives import their own classes (import __torch__.x); nothing else.
                target = tokens[j].string if j < len(tokens) else ""
                kind = "" if target in ("__torch__", "torch") else "python"
                where += f" {target}"
            else:
                kind = _classify(chain, j < len(tokens) and tokens[j].string == "(")
            if kind:
                found[kind].append(where)
            i, line_start = j, False
            continue
        if tok.type == tokenize.STRING and tok.string.strip("'\"") in _DUNDER_WALKS:
            found["python"].append(f"line {tok.start[0]}: {tok.string[:40]}")
        line_start = tok.type in (tokenize.NEWLINE, tokenize.NL, tokenize.INDENT,
                                  tokenize.DEDENT, tokenize.ENCODING)
        i += 1
    system, python, custom = found["system"], found["python"], found["custom"]
    if system:
        yield job.finding(
            "torchscript-system-op", Severity.HIGH, "TorchScript code accesses files",
            "The model's code calls operators that read or write files when it runs: "
            "torch.save (aten::save) writes any path, torch.from_file (aten::from_file) reads "
            "one and with shared=True maps it writable. Model code has no reason to.",
            member, calls=system[:20], count=len(system))
    if python:
        yield job.finding(
            "torchscript-python-code", Severity.HIGH, "Python code in a TorchScript archive",
            "The code uses Python names TorchScript does not have (os, subprocess, eval, "
            "__import__, dunder attribute walks). torch.jit.save never writes them and "
            "torch.jit.load cannot compile them: the archive was made by hand, for a loader "
            "that runs its code as Python or to probe scanners.",
            member, calls=python[:20], count=len(python))
    if custom:
        yield job.finding(
            "torchscript-custom-op", Severity.LOW,
            "TorchScript code uses operators or classes from outside PyTorch",
            "These run native code from a library the loading process must have registered "
            "(torchvision, a custom extension); the archive cannot bring that code itself.",
            member, calls=custom[:20], count=len(custom))


# --------------------------------------------------------------------------------------------
# Legacy layout: torch.save(..., _use_new_zipfile_serialization=False)


class _Legacy(_Job):
    def scan(self) -> Iterator[Finding]:
        try:
            fh = self.source.open()
        except OSError as exc:
            yield self.session.error(self.source, f"cannot read: {exc}", scanner=self.id)
            return
        with fh:
            yield from self._scan(fh)

    def _scan(self, fh: BinaryIO) -> Iterator[Finding]:
        data: PickleReport | None = None
        start = 0
        bounds: list[tuple[int, int]] = []
        for label in _LEGACY_PICKLES:
            fh.seek(start)
            # torch.load runs one pickle.load per part: one pickle each, with a fresh memo.
            findings, report = self.pickle(self.source, fh, max_pickles=1, label=label)
            yield from findings
            if report.end_offset is None:
                return  # the analyser reported why; nothing after it can be located
            bounds.append((start, report.end_offset))
            if label == "data":
                data = report
            start = report.end_offset
        assert data is not None
        yield from self._storages(fh, data, bounds[-1])

    def _storages(self, fh: BinaryIO, data: PickleReport,
                  keys_at: tuple[int, int]) -> Iterator[Finding]:
        """Walk the storage section by its 8-byte headers, never reading the tensors."""
        problems: list[str] = []
        start, end = keys_at
        keys: Any = None
        if end - start <= _MAX_SMALL_PICKLE:
            try:
                keys = _constant(_read_at(fh, start, end - start))
            except (ValueError, IndexError, KeyError, TypeError, AttributeError):
                keys = None
        refs = {r.key: r for r in data.torch_storages if r.key is not None}
        offset = end
        verified = True
        if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
            problems.append("the storage keys pickle is not a list of strings")
            keys, verified = [], False
        for key in keys[:_MAX_STORAGES]:
            ref = refs.get(key)
            size = _ELEMENT_SIZE.get(_type_name(ref.storage_type)) if ref else None
            if ref is None or ref.numel is None or size is None:
                problems.append(f"storage {key!r} is not described by the data pickle")
                verified = False
                break
            header = _read_at(fh, offset, 8)
            if len(header) < 8:
                problems.append(f"the file ends before storage {key!r}")
                verified = False
                break
            (count,) = struct.unpack("<q", header)
            if count != ref.numel and struct.unpack(">q", header)[0] != ref.numel:
                problems.append(f"storage {key!r} holds {count} elements, the pickle says "
                                f"{ref.numel}")
            offset += 8 + ref.numel * size
        if len(keys) > _MAX_STORAGES:
            verified = False
        unlisted = sorted(set(refs) - set(keys))
        if unlisted:
            problems.append(f"{len(unlisted)} storages referenced but not listed: "
                            f"{unlisted[:5]}")
        if verified and offset > self.source.size:
            problems.append(f"the storages need {offset} bytes, the file has "
                            f"{self.source.size}")
        trailing = self.source.size - offset if verified else 0
        if trailing > 0:
            problems.append(f"{trailing} bytes after the last storage (torch.load ignores "
                            "them; scanned as a file of their own)")
        if problems:
            yield self.finding(
                "torch-legacy-storages", Severity.LOW,
                "Legacy checkpoint's storages do not match its pickles",
                "torch.save writes the storages listed by the keys pickle, each an 8-byte "
                "element count and the raw data, and nothing after them. " +
                "; ".join(problems[:5]) + ".", problems=problems[:20],
                storage_offset=end)
        if trailing > 0:
            child = self.source.child(f"<{trailing} bytes after the storages>", trailing,
                                      _window(self.source, offset, trailing))
            yield from self.session.scan(child)


# --------------------------------------------------------------------------------------------
# Tar layout: the oldest torch.save (sys_info, pickle, storages, tensors)


class _Tar(_Job):
    def scan(self) -> Iterator[Finding]:
        # Every copy of a name is read: tarfile's extract() takes the last, a scanner that
        # takes the first would be shown a decoy.
        for item in self._members():
            if isinstance(item, Finding):
                yield item
                continue
            name, member = item
            if name in ("sys_info", "pickle"):
                try:
                    with member.open() as stream:
                        findings, _ = self.pickle(member, stream)
                except OSError as exc:
                    yield self.malformed(f"member {name!r}: {exc}", member)
                    continue
                yield from findings
            elif name == "storages":
                yield from self._interleaved(member, self._storage_record, views=True)
            elif name == "tensors":
                yield from self._interleaved(member, self._tensor_record, views=False)
            else:
                yield from self.session.scan(member)

    def _members(self) -> Iterator[Finding | tuple[str, Source]]:
        try:
            from phalanx.supplychain.scan import archive
        except ImportError:
            archive = None  # type: ignore[assignment]
        walk = getattr(archive, "iter_tar_members", None) if archive is not None else None
        if walk is not None:
            for item in walk(self.source, self.session, scanner=self.id):
                if isinstance(item, Finding):
                    yield item
                elif getattr(item, "source", None) is not None:
                    yield item.name, item.source
            return
        try:
            with self.source.open() as fh, tarfile.open(fileobj=fh, mode="r:") as tf:
                for info in tf:
                    if info.isfile():
                        yield info.name, self.source.child(
                            info.name, info.size, _window(self.source, info.offset_data,
                                                          info.size))
        except (tarfile.TarError, OSError, ValueError, EOFError) as exc:
            yield self.malformed(f"the tar archive does not parse ({exc})")

    def _interleaved(self, member: Source, record: Callable[[BinaryIO, Any], int | None], *,
                     views: bool) -> Iterator[Finding]:
        """``storages``/``tensors``: a count pickle, then per record a pickle and raw data."""
        try:
            with member.open() as fh:
                count = yield from self._small(member, fh, "count")
                if type(count) is not int or count < 0:
                    yield self.malformed(f"{member.name}: the record count is not a constant",
                                         member)
                    return
                for i in range(min(count, _MAX_STORAGES)):
                    args = yield from self._small(member, fh, f"record {i}")
                    if args is _UNKNOWN:
                        return
                    skip = record(fh, args)
                    if skip is None:
                        yield self.malformed(f"{member.name}: record {i} cannot be followed",
                                             member, offset=fh.tell())
                        return
                    if skip > member.size - fh.tell():  # sizes come from the pickle
                        yield self.malformed(
                            f"{member.name}: record {i} declares {skip} bytes of data, more "
                            "than the member holds", member, offset=fh.tell())
                        return
                    fh.seek(skip, io.SEEK_CUR)
                if count > _MAX_STORAGES:
                    yield self.malformed(f"{member.name}: more than {_MAX_STORAGES} records",
                                         member)
                    return
                if views:  # a pickle of storage views follows the storages
                    yield from self._small(member, fh, "views")
        except OSError as exc:
            yield self.malformed(f"{member.name}: {exc}", member)

    def _small(self, member: Source, fh: BinaryIO, label: str) -> Any:
        start = fh.tell()
        findings, report = self.pickle(member, fh, max_pickles=1, label=label)
        yield from findings
        if report.end_offset is None:
            return _UNKNOWN
        end = report.end_offset
        if end - start > _MAX_SMALL_PICKLE:
            return _UNKNOWN
        data = _read_at(fh, start, end - start)
        fh.seek(end)
        try:
            return _constant(data)
        except (ValueError, IndexError, KeyError, TypeError, AttributeError):
            return _UNKNOWN

    @staticmethod
    def _storage_record(fh: BinaryIO, args: Any) -> int | None:
        # (key, location, storage_type): then an 8-byte element count and the data.
        if not (isinstance(args, tuple) and len(args) == 3 and isinstance(args[2], tuple)):
            return None
        size = _ELEMENT_SIZE.get(str(args[2][-1]))
        header = fh.read(8)
        if size is None or len(header) < 8:
            return None
        (count,) = struct.unpack("<q", header)
        return count * size if count >= 0 else None

    @staticmethod
    def _tensor_record(fh: BinaryIO, args: Any) -> int | None:
        # (key, storage_id, type): then ndim (4 bytes, 4 unused), sizes, strides, offset.
        header = fh.read(8)
        if len(header) < 8:
            return None
        (ndim,) = struct.unpack("<i", header[:4])
        return 16 * ndim + 8 if 0 <= ndim <= 64 else None


_UNKNOWN = object()

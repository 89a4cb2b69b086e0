"""Fuzzing the static pickle analyser with hypothesis: structured opcode programs and byte
mutations of the corpus pickles.

For every input, the analyser must return a :class:`PickleReport` without raising, without
its internal-error fallback (``analyse_pickle`` turns an analyser bug into a "malformed"
finding so that it fails closed; here that would hide the bug, so it is asserted away), and
within a second.

Two soundness properties are checked on every input:

1. **Denied imports are never lost** (exact). If :mod:`pickletools` parses a ``GLOBAL`` or
   ``INST`` opcode whose import, after the unpickler's own Python 2 renaming, is on the deny
   list, the report has a finding at least as severe as the deny rule (``high`` or above).
   This is the precise form of "a mutated malicious pickle that still contains the dangerous
   GLOBAL and still parses is never judged clean": *still contains* must mean "is parsed as
   that opcode", because a mutation can leave the bytes ``cos\\nsystem\\n`` inside a string
   constant, where they import nothing; and *still parses* is judged opcode by opcode, up to
   the first parse error, because an unpickler runs everything before the error too. It is
   checked in the first pickle of the stream, and in the pickles after it when the report is
   complete: after a malformed pickle a load fails, and the analyser may stop there as well
   (it reports the malformed stream at ``medium``), e.g. for ``b"."`` + a malicious pickle.
   ``STACK_GLOBAL`` imports are not covered by this property (their operands are computed);
   the next one covers them.
2. **Clean means the real unpickler imports only allowed names** (differential). If the
   report has nothing at or above ``medium``, the C unpickler, run on the same bytes with a
   ``find_class`` that records the name and refuses it (so nothing is ever imported or
   called), must not have asked for a name the policy does not allow. Only the first import
   is observed (pickles before it are loaded whole), since refusing it ends the load: the
   property is weaker than "every import", but it catches any parser differential that lets
   a first import through.

Examples are bounded (``max_examples``) to keep the module at about 15 seconds; the atheris
harness in ``fuzz/pickle_fuzz.py`` runs the same properties for as long as one likes.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import struct
import sys
import tempfile
import time
import warnings
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from samples.pickles import SAMPLES

from phalanx.core.findings import Severity
from phalanx.supplychain.scan import PickleLimits, PickleReport, analyse_pickle, load_policy
from phalanx.supplychain.scan.policy import Verdict

POLICY = load_policy()
ECOSYSTEMS = POLICY.resolve_ecosystems(None)
# Small enough that a hostile input cannot make one example slow; large enough for every seed.
LIMITS = PickleLimits(max_opcodes=200_000, max_const_bytes=1 << 20)
TIME_LIMIT_S = 1.0
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)


def _seeds() -> dict[str, bytes]:
    """Every pickle sample of the corpus as bytes (built once; canary under a temp dir)."""
    out: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for sample in SAMPLES:
            if sample.available():
                path = sample.build(Path(tmp) / sample.name, Path(tmp) / "CANARY")
                out[sample.name] = path.read_bytes()
    return out


SEEDS = _seeds()
MALICIOUS = sorted(s.name for s in SAMPLES if s.malicious and s.name in SEEDS)
BENIGN = sorted(s.name for s in SAMPLES if not s.malicious and s.name in SEEDS)


# --------------------------------------------------------------------------------------------
# The properties


def _analyse(data: bytes) -> PickleReport:
    started = time.perf_counter()
    report = analyse_pickle(data, limits=LIMITS)
    elapsed = time.perf_counter() - started
    assert isinstance(report, PickleReport)
    assert elapsed < TIME_LIMIT_S, f"{elapsed:.2f} s for {len(data)} bytes: {data[:80]!r}"
    internal = [f for f in report.findings if "internal analyser error" in str(f.evidence)]
    assert not internal, f"analyser bug on {data[:200]!r}: {internal[0].evidence}"
    severities = [f.severity for f in report.findings]
    assert severities == sorted(severities, reverse=True)
    return report


def _parse_one(stream: io.BytesIO) -> tuple[list[tuple[Any, Any, Any]], bool]:
    """The opcodes of the next pickle, up to its STOP or the first parse error, and whether it
    parsed; quiet about the DeprecationWarning pickletools' escape decoding gives on hostile
    STRING arguments (the analyser silences it the same way)."""
    ops: list[tuple[Any, Any, Any]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            for item in pickletools.genops(stream):
                ops.append(item)
        except Exception:
            return ops, False
    return ops, True


def _unpickler_name(module: str, name: str, proto: int) -> tuple[str, str]:
    """The import the unpickler really performs (its Python 2 renaming below protocol 3)."""
    if proto < 3:
        if (module, name) in NAME_MAPPING:
            return NAME_MAPPING[(module, name)]
        if module in IMPORT_MAPPING:
            return IMPORT_MAPPING[module], name
    return module, name


def _parsed_imports(data: bytes, *, all_pickles: bool) -> list[tuple[str, str]]:
    """GLOBAL/INST imports pickletools parses up to the first error: in the first pickle, or
    pickle after pickle when ``all_pickles``."""
    found: list[tuple[str, str]] = []
    started = False
    stream = io.BytesIO(data)
    while stream.tell() < len(data) and (all_pickles or not started):
        started = True
        proto = 0  # every load() starts at protocol 0
        ops, parsed = _parse_one(stream)
        for opcode, arg, pos in ops:
            if opcode.name == "PROTO":
                proto = arg
            elif opcode.name in ("GLOBAL", "INST"):
                # the two raw lines, as the unpickler reads them (pickletools joins them with
                # a space, which a module name may itself contain)
                module, name = data[pos + 1 :].split(b"\n", 2)[:2]
                found.append(_unpickler_name(module.decode(), name.decode(), proto))
        if not parsed:  # an unpickler stops at the same place
            break
    return found


def _check_denied_imports_reported(data: bytes, report: PickleReport) -> None:
    for module, name in _parsed_imports(data, all_pickles=report.complete):
        judgement = POLICY.judge(module, name, ECOSYSTEMS)
        if judgement.verdict is Verdict.DENIED:
            floor = judgement.severity or Severity.CRITICAL
            assert report.max_severity is not None and report.max_severity >= floor, (
                f"{module}.{name} is parsed and denied but the report's worst finding is "
                f"{report.max_severity}: {data[:200]!r}"
            )


#: The C unpickler allocates (and zeroes) its memo up to the largest PUT index it sees, so a
#: 12-byte pickle with a PUT of index 2**30 makes it use gigabytes: the differential check
#: skips such inputs instead of running the real unpickler on them.
MAX_MEMO_INDEX = 100_000


def _memo_indices_small(data: bytes) -> bool:
    stream = io.BytesIO(data)
    while stream.tell() < len(data):
        ops, parsed = _parse_one(stream)
        if any(op.name in ("PUT", "BINPUT", "LONG_BINPUT") and arg > MAX_MEMO_INDEX
               for op, arg, _pos in ops):
            return False
        if not parsed:
            break
    return True


class _Refuse(Exception):
    pass


class _RecordingUnpickler(pickle.Unpickler):
    """The C unpickler, except that it refuses every import after recording it."""

    def __init__(self, stream: io.BytesIO, seen: list[tuple[str, str]]) -> None:
        super().__init__(stream)
        self.seen = seen

    def find_class(self, module: str, name: str) -> Any:
        self.seen.append((module, name))
        raise _Refuse

    def persistent_load(self, pid: Any) -> Any:
        raise _Refuse


def _allowed(module: str, name: str) -> bool:
    return POLICY.judge(module, name, ECOSYSTEMS).verdict is Verdict.ALLOWED


def _check_clean_means_allowed_imports(data: bytes, report: PickleReport) -> None:
    if not report.allows_unpickling() or not _memo_indices_small(data):
        return
    seen: list[tuple[str, str]] = []
    stream = io.BytesIO(data)
    while stream.tell() < len(data):
        try:
            _RecordingUnpickler(stream, seen).load()
        except Exception:  # _Refuse included: the refused import ends what can be observed
            break
    for module, name in seen:
        # find_class receives the raw names and renames them itself below protocol 3; the
        # policy allows no raw name that the renaming changes (test below), so "raw or
        # renamed name allowed" is exactly "the import performed is allowed".
        renamed = _unpickler_name(module, name, 0)
        assert _allowed(module, name) or _allowed(*renamed), (
            f"judged clean, but the unpickler imports {module}.{name}: {data[:200]!r}"
        )


def _check(data: bytes) -> PickleReport:
    report = _analyse(data)
    _check_denied_imports_reported(data, report)
    _check_clean_means_allowed_imports(data, report)
    return report


def test_no_allowed_name_is_renamed_by_the_unpickler() -> None:
    # Makes the differential check above exact (see the comment there).
    for (module, name), _ in NAME_MAPPING.items():
        assert not _allowed(module, name), (module, name)
    for module in IMPORT_MAPPING:
        for eco in POLICY.ecosystems.values():
            assert all(m != module for m, _ in eco.globals), module
            for rule in eco.classes:
                assert all(module != m and not module.startswith(m + ".")
                           for m in rule.modules), module


# --------------------------------------------------------------------------------------------
# Strategy 1: programs of valid opcodes with random arguments

_MODULES = ["os", "posix", "builtins", "__builtin__", "collections", "numpy", "torch._utils",
            "subprocess", "copyreg", "copy_reg", "pickle", "_codecs", "uuid", "functools"]
_NAMES = ["system", "eval", "OrderedDict", "loads", "encode", "_reconstructor", "partial",
          "ndarray", "UUID", "__import__", "getattr", "Popen", "UUID.__init__.__globals__",
          "os.system", "set"]
_TEXT = st.one_of(st.sampled_from(_MODULES + _NAMES + ["", "latin1", "a b"]),
                  st.text(max_size=12))


def _line(text: str) -> bytes:
    return text.replace("\n", " ").encode("utf-8", "surrogatepass")[:40] + b"\n"


def _arg_bytes(kind: str, draw: st.DrawFn) -> bytes:
    """A random but well-formed argument of a pickletools argument kind."""
    if kind == "uint1":
        return bytes([draw(st.integers(0, 255))])
    if kind == "uint2":
        return struct.pack("<H", draw(st.integers(0, 0xFFFF)))
    if kind in ("uint4", "int4"):
        fmt = "<I" if kind == "uint4" else "<i"
        lo, hi = (0, 2**32 - 1) if kind == "uint4" else (-(2**31), 2**31 - 1)
        return struct.pack(fmt, draw(st.integers(lo, hi)))
    if kind == "uint8":
        return struct.pack("<Q", draw(st.integers(0, 64)))
    if kind == "float8":
        return struct.pack(">d", draw(st.floats(allow_nan=False)))
    if kind == "floatnl":
        return repr(draw(st.floats(allow_nan=False, allow_infinity=False))).encode() + b"\n"
    if kind in ("decimalnl_short", "decimalnl_long"):
        value = draw(st.integers(-(2**70), 2**70))
        return f"{value}{'L' if kind == 'decimalnl_long' else ''}\n".encode()
    if kind == "stringnl":
        return repr(draw(st.text(alphabet="abc xyz", max_size=8))).encode() + b"\n"
    if kind == "stringnl_noescape":
        return _line(draw(st.sampled_from([*_MODULES, "0", "1", "12"])))
    if kind == "stringnl_noescape_pair":
        return _line(draw(st.sampled_from(_MODULES))) + _line(draw(st.sampled_from(_NAMES)))
    if kind == "unicodestringnl":
        return draw(_TEXT).replace("\n", " ").encode("raw-unicode-escape") + b"\n"
    data = draw(_TEXT).encode("utf-8", "surrogatepass")
    if kind in ("string1", "bytes1", "unicodestring1"):
        return bytes([len(data[:255])]) + data[:255]
    if kind in ("string4", "bytes4", "unicodestring4"):
        return struct.pack("<i" if kind == "string4" else "<I", len(data)) + data
    if kind in ("bytes8", "unicodestring8", "bytearray8"):
        return struct.pack("<Q", len(data)) + data
    if kind in ("long1", "long4"):
        raw = draw(st.binary(max_size=9))
        return (bytes([len(raw)]) if kind == "long1" else struct.pack("<i", len(raw))) + raw
    raise AssertionError(f"unhandled argument kind {kind}")


_OPCODES = [op for op in pickletools.opcodes if op.name != "STOP"]


@st.composite
def opcode_programs(draw: st.DrawFn) -> bytes:
    proto = draw(st.sampled_from([b"", b"\x80\x02", b"\x80\x04", b"\x80\x05"]))
    body = bytearray(proto)
    for op in draw(st.lists(st.sampled_from(_OPCODES), max_size=40)):
        body += op.code.encode("latin-1")
        if op.arg is not None:
            if op.name == "FRAME":
                body += struct.pack("<Q", draw(st.integers(0, 64)))
            else:
                body += _arg_bytes(op.arg.name, draw)
    if draw(st.booleans()):
        body += b"."
    return bytes(body)


@settings(FUZZ, max_examples=1500)
@given(opcode_programs())
def test_random_opcode_programs(data: bytes) -> None:
    _check(data)


# --------------------------------------------------------------------------------------------
# Strategy 2: byte mutations of the corpus pickles


@st.composite
def mutated(draw: st.DrawFn, names: list[str]) -> bytes:
    data = bytearray(SEEDS[draw(st.sampled_from(names))])
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "splice", "truncate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete" and data:
            del data[at : at + draw(st.integers(1, 8))]
        elif kind == "splice":
            other = SEEDS[draw(st.sampled_from(sorted(SEEDS)))]
            start = draw(st.integers(0, max(len(other) - 1, 0)))
            data[at:at] = other[start : start + draw(st.integers(1, 64))]
        elif kind == "truncate":
            del data[at:]
    return bytes(data)


@settings(FUZZ, max_examples=1200)
@given(mutated(MALICIOUS))
def test_mutated_malicious_pickles(data: bytes) -> None:
    _check(data)


@settings(FUZZ, max_examples=800)
@given(mutated(BENIGN))
def test_mutated_benign_pickles(data: bytes) -> None:
    _check(data)


def test_every_seed_satisfies_the_properties() -> None:
    for name, data in SEEDS.items():
        report = _check(data)
        if name in MALICIOUS:
            assert not report.allows_unpickling(), name


def test_properties_catch_a_missed_import() -> None:
    # The checks themselves must be able to fail: a fake clean report of os.system.
    data = b"cos\nsystem\n(S'true'\ntR."
    clean = PickleReport("", [], [], [], 1, 5, 0)
    try:
        _check_denied_imports_reported(data, clean)
    except AssertionError:
        pass
    else:
        raise AssertionError("the denied-import property did not fire")
    try:
        _check_clean_means_allowed_imports(data, clean)
    except AssertionError:
        pass
    else:
        raise AssertionError("the differential property did not fire")


if __name__ == "__main__":  # pragma: no cover - handy for reproducing one input
    print(_check(bytes.fromhex(sys.argv[1])).findings)

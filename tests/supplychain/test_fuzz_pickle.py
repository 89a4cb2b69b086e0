"""Fuzzing the static pickle analyser with hypothesis: structured opcode programs and byte
mutations of the corpus pickles.

For every input, the analyser must return a :class:`PickleReport` without raising, without
its internal-error fallback (``analyse_pickle`` turns an analyser bug into a "malformed"
finding so that it fails closed; here that would hide the bug, so it is asserted away), and
within a second.

The properties (denied imports are never lost; clean means the real unpickler imports only
allowed names) are :mod:`phalanx.testing.pickle_oracle`'s, which documents them.

Examples are bounded (``max_examples``) to keep the module at about 15 seconds; the atheris
harness in ``fuzz/pickle_fuzz.py`` runs the same properties for as long as one likes.
"""

from __future__ import annotations

import io
import pickletools
import struct
import sys
import tempfile
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from samples.pickles import SAMPLES
from scanning import Unseekable

from phalanx.supplychain.scan import PickleReport, load_policy
from phalanx.supplychain.scan.pickle_vm import _Reader
from phalanx.supplychain.scan.policy import Verdict
from phalanx.testing.pickle_oracle import (
    check_clean_means_allowed_imports,
    check_denied_imports_reported,
    check_pickle_analysis,
)

POLICY = load_policy()
ECOSYSTEMS = POLICY.resolve_ecosystems(None)
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


def _check(data: bytes) -> PickleReport:
    return check_pickle_analysis(data, time_limit_s=TIME_LIMIT_S)


def _allowed(module: str, name: str) -> bool:
    return POLICY.judge(module, name, ECOSYSTEMS).verdict is Verdict.ALLOWED


def test_no_allowed_name_is_renamed_by_the_unpickler() -> None:
    # Makes the oracle's differential check exact (see the comment there).
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
        check_denied_imports_reported(data, clean)
    except AssertionError:
        pass
    else:
        raise AssertionError("the denied-import property did not fire")
    try:
        check_clean_means_allowed_imports(data, clean)
    except AssertionError:
        pass
    else:
        raise AssertionError("the differential property did not fire")


if __name__ == "__main__":  # pragma: no cover - handy for reproducing one input
    print(_check(bytes.fromhex(sys.argv[1])).findings)


# --------------------------------------------------------------------------------------------
# The analyser's opcode decoder against pickletools.genops


def _value(arg: object) -> object:
    if isinstance(arg, float):  # NaN != NaN: compare the bits
        return struct.pack(">d", arg)
    return (type(arg).__name__, arg)


def _decoded(ops: Iterator[tuple[pickletools.OpcodeInfo, object, int | None]],
             where: Callable[[], int]) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    try:
        for op, arg, pos in ops:
            out.append((op.name, _value(arg), pos))
    except Exception as exc:
        out.append(("error", type(exc).__name__, str(exc)))
    else:
        out.append(("end", where()))
    return out


# both decoders read protocol 0's STRING lines with pickletools' reader, which warns
@pytest.mark.filterwarnings("ignore:invalid escape sequence:DeprecationWarning")
@settings(FUZZ, max_examples=1500)
@given(st.one_of(opcode_programs(), mutated(sorted(SEEDS)), st.binary(max_size=64)),
       st.sampled_from([None, 1, 2, 3, 7, 64]))
def test_decoder_matches_pickletools(data: bytes, step: int | None) -> None:
    reference = io.BytesIO(data)
    expected = _decoded(pickletools.genops(reference), reference.tell)
    raw: io.RawIOBase | io.BytesIO = io.BytesIO(data) if step is None else Unseekable(data, step)
    # Nothing is elided (skipping oversized bytes is the reader's own behaviour, tested
    # apart), and lines are as long as pickletools allows.
    reader = _Reader(raw, elide_over=sys.maxsize, max_line=sys.maxsize - 1)
    assert _decoded(reader.ops(), reader.position) == expected

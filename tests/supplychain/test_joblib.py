"""joblib files: the analyser follows joblib.load's layout (array bytes between the opcodes)
without reading the arrays, catches payloads in it, and fails closed where it cannot follow.

Before this, every joblib file with an array was reported as a malformed pickle (MEDIUM):
safe, but useless for the scikit-learn models joblib is used for. Now the analyser computes
each array's length from its wrapper's state and skips it, so ``joblib.dump`` of a fitted
pipeline is clean, while the cases it cannot resolve (a dtype or shape that is not constant,
a truncated array, a non-seekable stream it would have to re-read) still fail closed.
Without the ``joblib`` ecosystem (``is_safe_to_unpickle``'s default, for ``pickle.load``
users) the wrapper is an unknown import and its array bytes are malformed pickle data, as
before: that is the right answer for a caller that will use ``pickle.load``.
"""

from __future__ import annotations

import io
import pickle
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from samples.numpy_joblib import padding_polyglot, payload_pickle
from scanning import Unseekable

from phalanx.core.findings import Finding, Severity
from phalanx.supplychain.scan import PickleReport, analyse_pickle, scan_paths

np = pytest.importorskip("numpy")
joblib = pytest.importorskip("joblib")

CANARY = Path("/nonexistent/phalanx-canary")


def dump(obj: Any, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    joblib.dump(obj, buf, **kwargs)
    return buf.getvalue()


def bad(report: PickleReport) -> list[Finding]:
    return [f for f in report.findings if f.severity >= Severity.MEDIUM]


def describe(findings: list[Finding]) -> str:
    return "; ".join(f"{f.severity.label}:{f.title}:{f.evidence.get('error', '')}"
                     for f in findings)


def malformed(report: PickleReport) -> list[Finding]:
    return [f for f in report.findings if f.title.startswith("Malformed")]


# --------------------------------------------------------------------------------------------
# Writing a wrapper by hand (protocol 2), as joblib's NumpyPickler lays it out


def _u(text: str) -> bytes:
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def wrapper(shape: tuple[int, ...], code: str, state: tuple[Any, ...] | None = None, *,
            alignment: int | None = 16, mmap: bool = False, order: str = "C") -> bytes:
    """Opcodes up to and including the wrapper's BUILD (the array bytes follow it)."""
    state = state or (3, "<", None, None, None, -1, -1, 0)
    dims = b"(" + b"".join(b"J" + struct.pack("<i", d) for d in shape) + b"t"
    items = [b"N" if v is None else _u(v) if isinstance(v, str) else
             b"J" + struct.pack("<i", v) for v in state]
    dtype = (b"cnumpy\ndtype\n(" + _u(code) + b"\x89\x88tR(" + b"".join(items) + b"tb")
    fields = (_u("subclass") + b"cnumpy\nndarray\n" + _u("shape") + dims + _u("order")
              + _u(order) + _u("dtype") + dtype + _u("allow_mmap") + (b"\x88" if mmap else b"\x89"))
    if alignment is not None:
        fields += _u("numpy_array_alignment_bytes") + b"K" + bytes([alignment])
    return (b"\x80\x02cjoblib.numpy_pickle\nNumpyArrayWrapper\n)\x81}(" + fields + b"ub")


def float_file(values: list[float], *, padded: bool = True) -> bytes:
    head = wrapper((len(values),), "f8", alignment=16 if padded else None)
    pad = b"\x03\xff\xff\xff" if padded else b""
    return head + pad + struct.pack(f"<{len(values)}d", *values) + b"."


def test_hand_written_wrapper_is_what_joblib_loads() -> None:
    """The hand-made layout is joblib's own (loading it is safe: constants, no payload)."""
    for padded in (True, False):
        data = float_file([1.0, 2.0, 3.0], padded=padded)
        assert joblib.load(io.BytesIO(data)).tolist() == [1.0, 2.0, 3.0]
        report = analyse_pickle(data)
        assert report.findings == [], describe(report.findings)
        assert report.end_offset == len(data)


# --------------------------------------------------------------------------------------------
# Benign: what joblib.dump writes


@pytest.fixture(scope="module")
def fitted() -> dict[str, Any]:
    sklearn = pytest.importorskip("sklearn")
    assert sklearn
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = make_classification(n_samples=80, n_features=5, random_state=0)
    return {
        "pipeline": make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y),
        "forest": RandomForestClassifier(n_estimators=4, max_depth=4, random_state=0).fit(x, y),
    }


ARRAYS = {
    "float": np.arange(12.0).reshape(3, 4),
    "fortran": np.asfortranarray(np.ones((2, 3), dtype=np.float32)),
    "int16-0d": np.array(7, dtype=np.int16),
    "empty": np.empty((0, 5)),
    "unicode": np.array(["cat", "dog", "bird"]),
    "bytes": np.array([b"ab", b"c"]),
    "structured": np.zeros(3, dtype=[("a", "<f4"), ("b", "<i8")]),
    "subarray": np.zeros(2, dtype=("<f4", (2, 3))),
    "datetime": np.array(["2024-01-01"], dtype="M8[D]"),
    "complex": np.ones(2, dtype=np.complex128),
    "bool": np.array([True, False]),
    "big-endian": np.arange(3, dtype=">i4"),
    "objects": np.array([{"k": 1}, None, "x"], dtype=object),
    "object-fields": np.array([(1, "a")], dtype=[("n", "<i4"), ("o", "O")]),
}


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("name", ["pipeline", "forest"])
def test_fitted_models_are_clean(fitted: dict[str, Any], name: str, protocol: int) -> None:
    data = dump(fitted[name], protocol=protocol)
    report = analyse_pickle(data)
    assert report.findings == [], describe(report.findings)
    assert report.complete and report.pickles == 1 and report.end_offset == len(data)
    assert any(g.name == "NumpyArrayWrapper" for g in report.globals)


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("name", sorted(ARRAYS))
def test_arrays_are_clean(name: str, protocol: int) -> None:
    data = dump({"x": ARRAYS[name], "after": [1, 2]}, protocol=protocol)
    report = analyse_pickle(data)
    assert report.findings == [], describe(report.findings)
    assert report.end_offset == len(data)


def test_arrays_written_without_alignment_are_clean() -> None:
    """A stream without tell() (joblib < 1.2 files too) has no padding byte; float data whose
    first byte is a pickle opcode makes the analyser check what pickle.load would do."""

    class Unseekable(io.RawIOBase):
        def __init__(self) -> None:
            super().__init__()
            self.data = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, b: Any) -> int:
            self.data += b
            return len(b)

    opcode_first = struct.unpack("<d", b"(" + b"\x00" * 6 + b"\x40")[0]
    sink = Unseekable()
    joblib.dump({"a": np.array([opcode_first, 1.5]), **ARRAYS}, sink)
    data = bytes(sink.data)
    assert b"numpy_array_alignment_bytes" in data
    report = analyse_pickle(data)
    assert report.findings == [], describe(report.findings)


def test_array_bytes_are_skipped_not_read() -> None:
    data = dump(np.zeros((2048, 2048), dtype=np.float64))  # 32 MiB

    class Counting(io.BytesIO):
        read_bytes = 0

        def read(self, n: int | None = -1) -> bytes:
            out = super().read(n)
            Counting.read_bytes += len(out)
            return out

        def readline(self, n: int | None = -1) -> bytes:
            out = super().readline(n)
            Counting.read_bytes += len(out)
            return out

    stream = Counting(data)
    started = time.perf_counter()
    report = analyse_pickle(stream)
    assert report.findings == []
    assert Counting.read_bytes < 64 * 1024, Counting.read_bytes
    assert time.perf_counter() - started < 5


def test_compressed_joblib_is_scanned_through_the_archive_scanner(
        tmp_path: Path, fitted: dict[str, Any]) -> None:
    for method in ("gzip", "bz2", "xz"):
        path = tmp_path / f"model.{method}"
        joblib.dump(fitted["pipeline"], path, compress=(method, 3))
        report = scan_paths([path])
        assert not report.failed(), [f.title for f in report.findings]
        assert "pickle" in report.formats()


def test_zlib_compressed_joblib_payload_is_found(tmp_path: Path) -> None:
    import zlib

    path = tmp_path / "model.joblib"
    path.write_bytes(zlib.compress(payload_pickle(CANARY)))
    assert scan_paths([path]).failed()


# --------------------------------------------------------------------------------------------
# Payloads


def test_object_array_inline_payload_is_critical() -> None:
    array = np.array([None, 1], dtype=object)
    data = dump([np.arange(3.0), array, {"after": 1}])
    inline = pickle.dumps(array, protocol=5)
    data = data.replace(inline, payload_pickle(CANARY))
    report = analyse_pickle(data)
    system = [f for f in report.findings if f.evidence.get("callable") == "os.system"]
    assert system and system[0].severity is Severity.CRITICAL
    assert system[0].evidence["depth"] == 1
    assert "joblib object array" in system[0].evidence["via"]
    assert not malformed(report), describe(report.findings)  # the rest still follows


def test_payload_after_an_array_is_found() -> None:
    data = dump([np.arange(3.0)])
    stop = data.rindex(b".")
    tail = b"cos\nsystem\n(Vid\ntR0"  # runs inside the same pickle, after the array
    data = data[:stop] + tail + data[stop:]
    report = analyse_pickle(data)
    assert any(f.evidence.get("callable") == "os.system" for f in report.findings)


def test_padding_polyglot_is_critical(tmp_path: Path) -> None:
    data = padding_polyglot(CANARY)
    report = analyse_pickle(data)
    titles = {f.title for f in report.findings}
    assert "joblib padding that pickle.load would run" in titles
    system = [f for f in report.findings if f.evidence.get("callable") == "os.system"]
    assert system and system[0].severity is Severity.CRITICAL
    assert "pickle.load reading joblib array bytes" in system[0].evidence["via"]


def test_padding_polyglot_is_a_working_exploit(tmp_path: Path) -> None:
    """joblib.load reads the array; pickle.load runs the payload (checked in a subprocess)."""
    canary = tmp_path / "CANARY"
    path = tmp_path / "model.joblib"
    path.write_bytes(padding_polyglot(canary))
    code = ("import joblib, sys; print(joblib.load(sys.argv[1]).tolist())")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                         text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[0.0, 1.0, 2.0, 3.0]"
    assert not canary.exists()
    code = "import pickle, sys; pickle.load(open(sys.argv[1], 'rb'))"
    subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, timeout=120,
                   check=False)
    assert canary.exists()


def test_plain_reading_of_unpadded_array_bytes_is_analysed() -> None:
    """Without padding, pickle.load runs the array bytes: a payload there is found."""
    payload = b"cos\nsystem\n(Vid\ntR."
    n = -(-len(payload) // 8)
    head = wrapper((n,), "f8", alignment=None)
    data = head + payload.ljust(n * 8, b"\x00") + b"."
    report = analyse_pickle(data)
    system = [f for f in report.findings if f.evidence.get("callable") == "os.system"]
    assert system and system[0].severity is Severity.CRITICAL


def test_plain_reading_needs_a_seekable_stream() -> None:
    payload = b"cos\nsystem\n(Vid\ntR."
    n = -(-len(payload) // 8)
    data = wrapper((n,), "f8", alignment=None) + payload.ljust(n * 8, b"\x00") + b"."

    report = analyse_pickle(io.BufferedReader(Unseekable(data)))
    assert malformed(report), describe(report.findings)


def test_object_dtype_without_object_flag_is_high() -> None:
    data = wrapper((2,), "O8") + b"\x03\xff\xff\xff" + b"A" * 16 + b"."
    report = analyse_pickle(data)
    assert any(f.title == "joblib array of Python objects stored as raw bytes"
               and f.severity is Severity.HIGH for f in report.findings)


def test_object_fields_without_object_flag_are_high() -> None:
    real = dump(np.array([(1, "a")], dtype=[("n", "<i4"), ("o", "O")]))
    # clear NPY_ITEM_HASOBJECT (bit 0) in the wrapper's dtype flags (27 for this dtype; the
    # inline pickle that follows repeats the dtype)
    assert real.count(b"K\x1bt") == 2
    report = analyse_pickle(real.replace(b"K\x1bt", b"K\x1at", 1))
    assert any(f.severity is Severity.HIGH for f in report.findings), describe(report.findings)


def test_object_array_marked_for_mmap_fails_closed() -> None:
    data = wrapper((1,), "O8", (3, "|", None, None, None, -1, -1, 63), mmap=True)
    report = analyse_pickle(data + b"\x80\x02N.")
    assert malformed(report)


def test_companion_file_of_old_joblib_is_reported() -> None:
    def old(filename: str) -> bytes:
        return (b"\x80\x02cjoblib.numpy_pickle_compat\nNDArrayWrapper\n)\x81}(" + _u("filename")
                + _u(filename) + _u("subclass") + b"cnumpy\nndarray\n" + _u("allow_mmap")
                + b"\x88ub.")

    near = analyse_pickle(old("model.pkl_01.npy"))
    assert {f.severity for f in near.findings} == {Severity.MEDIUM}
    far = analyse_pickle(old("/tmp/uploads/evil.npy"))
    assert any(f.severity is Severity.HIGH for f in far.findings)


# --------------------------------------------------------------------------------------------
# Failing closed


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (float_file([1.0, 2.0])[:-5], "truncated array"),
        (wrapper((2,), "f3") + b"\x03\xff\xff\xff" + b"\x00" * 6 + b".", "unknown dtype"),
        (wrapper((2,), "U0", (3, "<", None, None, None, -1, 4, 8)) + b"\x01\xff.", "no size"),
        (wrapper(((1 << 31) - 1,) * 3, "f8") + b"\x01\xff.", "shape overflows int64"),
        (wrapper((-1,), "f8") + b"\x01\xff.", "negative dimension"),
        (float_file([1.0]).replace(b"\x03\xff\xff\xff", b"\x03\xff"), "short padding"),
    ],
)
def test_unresolvable_layouts_fail_closed(data: bytes, why: str) -> None:
    report = analyse_pickle(data)
    assert malformed(report), (why, describe(report.findings))
    assert not report.allows_unpickling()


def test_non_constant_shape_fails_closed() -> None:
    data = float_file([1.0, 2.0])
    shape = b"(J\x02\x00\x00\x00t"
    assert data.count(shape) == 1
    computed = b"cbuiltins\ntuple\n(]tR"  # tuple([]) at load time: not a constant
    report = analyse_pickle(data.replace(shape, computed))
    assert malformed(report), describe(report.findings)


def test_array_inside_a_frame_fails_closed() -> None:
    """joblib ends the frame at the wrapper's BUILD; a frame that runs on means the loader
    reads the array from after the frame while the opcodes continue inside it."""
    body = float_file([1.0])[2:]  # without PROTO
    framed = b"\x80\x04\x95" + struct.pack("<Q", len(body)) + body
    report = analyse_pickle(framed)
    assert malformed(report), describe(report.findings)


def test_without_the_joblib_ecosystem_the_layout_is_not_followed() -> None:
    data = dump(np.arange(4.0))
    report = analyse_pickle(data, ecosystems=("python", "numpy", "sklearn"))
    assert not report.allows_unpickling()
    assert any(f.evidence.get("callable") == "joblib.numpy_pickle.NumpyArrayWrapper"
               for f in report.findings)


# --------------------------------------------------------------------------------------------
# Fuzzing


@pytest.fixture(scope="module")
def seed_files() -> list[bytes]:
    return [dump({"w": np.arange(6.0), "o": np.array([1, "a"], dtype=object)}, protocol=p)
            for p in (2, 4, 5)] + [float_file([1.0, 2.0], padded=False)]


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 3),
       edits=st.lists(st.tuples(st.integers(0, 4096), st.integers(0, 255)), max_size=6),
       cut=st.integers(0, 32))
def test_mutated_joblib_files_never_raise(seed_files: list[bytes], which: int,
                                          edits: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(seed_files[which])
    for pos, value in edits:
        data[pos % len(data)] = value
    data = data[: max(1, len(data) - cut)]
    started = time.perf_counter()
    report = analyse_pickle(bytes(data))
    assert time.perf_counter() - started < 5
    assert isinstance(report, PickleReport)
    assert not any("internal analyser error" in str(f.evidence.get("error", ""))
                   for f in report.findings)

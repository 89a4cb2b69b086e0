"""The NumPy scanner: ``.npy`` header parsing against NumPy's own, object arrays, ``.npz``."""

from __future__ import annotations

import io
import struct
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from samples.numpy_joblib import npy_header, object_npy, payload_pickle
from scanning import archive_session

from phalanx.core.findings import Finding, Severity
from phalanx.supplychain.scan.base import ScanSession, Source
from phalanx.supplychain.scan.numpy_files import NumpyScanner, parse_npy_header

CANARY = Path("/nonexistent/phalanx-canary")


def scan(data: bytes, name: str = "array") -> tuple[list[Finding], ScanSession]:
    session = archive_session()
    return list(session.scan(Source.from_bytes(name, data))), session


def rules(findings: list[Finding], level: Severity = Severity.INFO) -> set[str]:
    return {f.evidence["rule"] for f in findings if f.severity >= level}


def saved(array: np.ndarray, version: tuple[int, int] | None = None) -> bytes:
    buf = io.BytesIO()
    if version is None:
        np.save(buf, array, allow_pickle=True)
    else:
        np.lib.format.write_array(buf, array, version=version, allow_pickle=True)
    return buf.getvalue()


DTYPES = [
    np.float32, np.float64, np.float16, np.int8, np.int64, np.uint16, np.bool_, np.complex64,
    np.complex128, np.longdouble, "U5", "S3", "V7", "datetime64[ns]", "timedelta64[s]",
    ">i4", np.dtype([("x", "<f4"), ("y", "<i2", (3,))]),
    np.dtype([("a", [("b", "u1"), ("c", "<f8", (2, 2))]), ("d", "S4")]),
    np.dtype((np.float32, (2, 3))),
    np.dtype({"names": ["a", "b"], "formats": ["u1", "<f8"], "offsets": [0, 8]}),  # padded
    np.dtype([(("title", "x"), "<f4")]),
]


# --------------------------------------------------------------------------------------------
# Header parsing


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_header_matches_numpy(dtype: Any, version: tuple[int, int]) -> None:
    array = np.zeros((3, 2), dtype=dtype)
    data = saved(array, version)
    header = parse_npy_header(data)
    fp = io.BytesIO(data)
    np.lib.format.read_magic(fp)
    reader = {(1, 0): np.lib.format.read_array_header_1_0,
              (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if reader is not None:
        shape, fortran, _ = reader(fp)
        assert header.shape == shape and header.fortran_order == fortran
        assert fp.tell() == header.data_offset
    assert header.version == version
    assert header.has_object is False
    assert header.itemsize == array.dtype.itemsize
    assert header.data_bytes == len(data) - header.data_offset


@pytest.mark.parametrize("dtype", [object, np.dtype([("a", "<f4"), ("o", "O")]),
                                   np.dtype([("n", [("deep", "O", (2,))])])], ids=str)
def test_object_dtypes_are_recognised(dtype: Any) -> None:
    header = parse_npy_header(saved(np.zeros(2, dtype=dtype)))
    assert header.has_object is True


@pytest.mark.parametrize(("descr", "has_object"), [
    ("object", True), ("O8", True), ("i4,O", True), ("(2,)O", True),
    ("float32", None), ("<f", None), ("?", False), ("<f4", False), ("|b1", False),
])
def test_descr_strings(descr: str, has_object: bool | None) -> None:
    header = parse_npy_header(npy_header(descr, (1,)))
    assert header.has_object is has_object


@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(0, 5), max_size=4).map(tuple),
       dtype=st.sampled_from(DTYPES[:16]), fortran=st.booleans())
def test_header_roundtrip_property(shape: tuple[int, ...], dtype: Any, fortran: bool) -> None:
    array = np.zeros(shape, dtype=dtype, order="F" if fortran else "C")
    data = saved(array)
    header = parse_npy_header(data)
    assert header.shape == shape
    assert header.count * header.itemsize == len(data) - header.data_offset == array.nbytes


def test_python2_long_suffix_is_accepted() -> None:
    text = b"{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 3L), }\n"
    data = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text
    assert parse_npy_header(data).shape == (2, 3)


@pytest.mark.parametrize("text", [
    "{'descr': '<f4', 'fortran_order': False}",  # missing key
    "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}",
    "{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}",
    "{'descr': '<f4', 'fortran_order': False, 'shape': [2]}",
    "__import__('os').system('touch /nonexistent/x')",  # never evaluated
    "[" * 100_000,
    "not a literal",
])
def test_bad_headers_are_rejected(text: str) -> None:
    raw = text.encode()
    with pytest.raises(ValueError):
        parse_npy_header(b"\x93NUMPY\x03\x00" + struct.pack("<I", len(raw)) + raw)


@pytest.mark.parametrize("head", [b"\x93NUMPY", b"\x93NUMPY\x09\x00\x10\x00",
                                  b"\x93NUMPY\x01\x00\xff\xff{'descr'", b"NUMPY"])
def test_truncated_or_foreign_headers_are_rejected(head: bytes) -> None:
    with pytest.raises(ValueError):
        parse_npy_header(head)


# --------------------------------------------------------------------------------------------
# The scanner


def test_plain_array_is_clean() -> None:
    findings, session = scan(saved(np.arange(12, dtype=np.float32).reshape(3, 4)))
    assert findings == []
    assert [r.format for r in session.scanned] == ["npy"]


def test_benign_object_array_is_medium_only() -> None:
    findings, _ = scan(saved(np.array([1, "a", None], dtype=object)))
    assert rules(findings) == {"npy-object-array"}
    assert max(f.severity for f in findings) == Severity.MEDIUM


def test_object_array_payload_is_found() -> None:
    findings, _ = scan(object_npy(CANARY))
    assert "npy-object-array" in rules(findings)
    assert any(f.severity >= Severity.HIGH and "os.system" in f.title for f in findings)


def test_structured_object_field_payload_is_found() -> None:
    data = npy_header([("a", "<f4"), ("o", "|O")], (1,)) + payload_pickle(CANARY)
    findings, _ = scan(data)
    assert "npy-object-array" in rules(findings)
    assert any(f.severity >= Severity.HIGH for f in findings)


def test_truncated_data_is_malformed() -> None:
    data = saved(np.zeros(100, dtype=np.float64))
    findings, _ = scan(data[:-8])
    assert rules(findings) == {"malformed"}


def test_trailing_data_is_reported_and_scanned() -> None:
    data = saved(np.zeros(4, dtype=np.float32)) + payload_pickle(CANARY)
    findings, _ = scan(data)
    assert "npy-trailing-data" in rules(findings, Severity.MEDIUM)
    assert any(f.severity >= Severity.HIGH and "os.system" in f.title for f in findings)


def test_unknown_dtype_fails_closed() -> None:
    findings, _ = scan(npy_header("float32", (2,)) + bytes(8))
    assert rules(findings) == {"npy-unknown-dtype"}


def test_oversized_header_is_reported() -> None:
    text = "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }" + " " * 20_000 + "\n"
    data = b"\x93NUMPY\x02\x00" + struct.pack("<I", len(text)) + text.encode() + bytes(4)
    findings, _ = scan(data)
    assert "npy-large-header" in rules(findings)


def test_header_too_large_to_parse() -> None:
    data = b"\x93NUMPY\x02\x00" + struct.pack("<I", 1 << 30) + b"{" + bytes(100)
    findings, _ = scan(data)
    assert {"malformed", "npy-large-header"} <= rules(findings)


def test_npz_is_clean_and_members_scanned(tmp_path: Path) -> None:
    path = tmp_path / "a.npz"
    np.savez_compressed(path, w=np.random.default_rng(0).standard_normal((8, 8)),
                        s=np.array(["x", "yy"]))
    session = archive_session()
    findings = list(session.scan(Source.from_path(path)))
    assert findings == []
    assert [r.format for r in session.scanned] == ["npz", "npy", "npy"]


def test_npz_with_object_member_payload() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ok.npy", saved(np.zeros(3, dtype=np.float32)))
        zf.writestr("bad.npy", object_npy(CANARY))
    findings, _ = scan(buf.getvalue())
    assert "npy-object-array" in rules(findings)
    assert any(f.severity >= Severity.HIGH and "os.system" in f.title for f in findings)


def test_npz_gets_the_zip_checks() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../../x.npy", saved(np.zeros(3)))
    findings, session = scan(buf.getvalue())
    assert session.scanned[0].format == "npz"
    assert "archive-path-traversal" in rules(findings, Severity.HIGH)


@settings(max_examples=150, deadline=None)
@given(version=st.sampled_from([b"\x01\x00", b"\x02\x00", b"\x03\x00", b"\x07\x01"]),
       body=st.binary(max_size=600))
def test_fuzz_never_raises(version: bytes, body: bytes) -> None:
    session = archive_session()
    source = Source.from_bytes("fuzz.npy", b"\x93NUMPY" + version + body)
    findings = list(NumpyScanner().scan_source(source, session))
    assert all(f.evidence["rule"] != "scan-error" for f in findings)


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), dtype=st.sampled_from(DTYPES[:12]))
def test_fuzz_mutated_headers(seed: int, dtype: Any) -> None:
    import random

    rng = random.Random(seed)
    data = bytearray(saved(np.zeros((2, 3), dtype=dtype)))
    for _ in range(rng.randrange(1, 6)):
        data[rng.randrange(min(len(data), 128))] = rng.randrange(256)
    session = archive_session()
    findings = list(NumpyScanner().scan_source(Source.from_bytes("m.npy", bytes(data)),
                                               session))
    assert all(f.evidence["rule"] != "scan-error" for f in findings)


def test_invalid_escapes_in_the_header_warn_nobody() -> None:
    # A field name with an invalid escape: compiling the header dict warns about it.
    text = "{'descr': [('a\\_b', '<f4')], 'fortran_order': False, 'shape': (1,), }"
    header = (text + " " * (-(10 + len(text) + 1) % 64) + "\n").encode("latin1")
    data = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + b"\x00" * 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        findings, _ = scan(data)
    assert not rules(findings, Severity.MEDIUM), findings

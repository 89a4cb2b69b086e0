"""The safetensors scanner: one test per check, the reference loader as oracle, fuzzing, 2 GB."""

from __future__ import annotations

import base64
import io
import json
import struct
import tempfile
import time
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from samples.safetensors_gguf import st_file, st_raw

from phalanx.core.findings import Finding, Severity
from phalanx.supplychain.scan import safetensors_files
from phalanx.supplychain.scan.base import ScanLimits, ScanSession, Source
from phalanx.supplychain.scan.pickles import PickleScanner
from phalanx.supplychain.scan.safetensors_files import DTYPE_BITS, SafetensorsScanner
from phalanx.testing import check_plugin

F32x2 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}


def session(limits: ScanLimits | None = None) -> ScanSession:
    """A session with only the scanners these tests need (no other plugin is imported)."""
    return ScanSession(limits=limits, scanners={"safetensors": SafetensorsScanner(),
                                                "pickle": PickleScanner()})


def scan(blob: bytes, limits: ScanLimits | None = None) -> list[Finding]:
    """Run the scanner directly, so that an exception fails the test instead of being caught."""
    source = Source.from_bytes("t.safetensors", blob)
    return list(SafetensorsScanner().scan_source(source, session(limits)))


def rules(findings: list[Finding]) -> dict[str, Severity]:
    out: dict[str, Severity] = {}
    for f in findings:
        rule = f.evidence["rule"]
        out[rule] = max(out.get(rule, Severity.INFO), f.severity)
    return out


def serious(findings: list[Finding]) -> list[str]:
    return [f.evidence["rule"] for f in findings if f.severity >= Severity.MEDIUM]


# -- the plugin --------------------------------------------------------------------------------


def test_plugin_contract() -> None:
    check_plugin(SafetensorsScanner)
    assert SafetensorsScanner.plugin_id() == "safetensors"
    assert SafetensorsScanner.formats == ("safetensors",)


# -- benign files --------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", sorted(DTYPE_BITS))
def test_every_dtype_with_a_whole_number_of_bytes_is_clean(dtype: str) -> None:
    nbytes = 8 * DTYPE_BITS[dtype] // 8
    header = {"t": {"dtype": dtype, "shape": [2, 4], "data_offsets": [0, nbytes]}}
    assert scan(st_raw(header, bytes(nbytes))) == []


def test_well_formed_files_are_clean() -> None:
    blob = st_file([("w", "F32", [3, 4]), ("b", "BF16", [4]), ("s", "I64", []),
                    ("q", "F4", [2, 3]), ("e", "F32", [0, 7])], metadata={"format": "pt"})
    assert scan(blob) == []
    assert scan(st_raw({})) == []  # no tensors, no data
    assert scan(st_raw({"__metadata__": None})) == []  # the reference reads null as "none"


def test_trailing_space_padding_is_allowed() -> None:
    text = json.dumps({"a": F32x2}) + " " * 13
    assert scan(st_raw(text, bytes(8), pad=False)) == []


def test_library_written_file_is_clean(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    save = pytest.importorskip("safetensors.numpy").save_file
    path = tmp_path / "m.safetensors"
    save({"a": np.ones((3, 5), np.float32), "b": np.arange(7, dtype=np.int16)}, str(path),
         metadata={"format": "np"})
    assert scan(path.read_bytes()) == []


# -- the length prefix ----------------------------------------------------------------------------


class CountingOpener:
    """Wraps an opener and counts the bytes read through it."""

    def __init__(self, path: Path) -> None:
        self.path, self.read = path, 0

    def __call__(self) -> BinaryIO:
        outer = self

        class Counting(io.FileIO):
            def readinto(self, buffer: Any) -> int:
                n = super().readinto(buffer)
                outer.read += n or 0
                return n or 0

        return io.BufferedReader(Counting(self.path, "r"))  # type: ignore[return-value]


def test_a_2gb_file_is_scanned_from_its_header_only(tmp_path: Path) -> None:
    path = tmp_path / "big.safetensors"
    header = {"__metadata__": {"format": "pt"},
              "huge": {"dtype": "F32", "shape": [2**29], "data_offsets": [0, 2**31]}}
    blob = st_raw(header)
    path.write_bytes(blob)
    with path.open("r+b") as fh:
        fh.truncate(len(blob) + 2**31)  # sparse
    opener = CountingOpener(path)
    source = Source(name=str(path), size=path.stat().st_size, opener=opener, path=path)
    started = time.perf_counter()
    findings = list(session().scan(source))  # sniffing included
    assert findings == []
    assert opener.read < 64 * 1024
    assert time.perf_counter() - started < 2.0


def test_header_over_the_limit_is_high_and_not_read(tmp_path: Path) -> None:
    path = tmp_path / "h.safetensors"
    path.write_bytes(st_raw({"a": F32x2}, bytes(8)) + bytes(4096))
    opener = CountingOpener(path)
    source = Source(name=str(path), size=path.stat().st_size, opener=opener, path=path)
    found = list(SafetensorsScanner().scan_source(source,
                                                  session(ScanLimits(max_header_bytes=16))))
    assert rules(found) == {"header-too-large": Severity.HIGH}
    assert found[0].evidence["incomplete"] is True
    assert "owasp-llm-2025:LLM10" in found[0].refs
    assert opener.read <= 8192  # the prefix (one buffered read), never the declared header


def test_header_over_the_reference_limit_is_medium(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(safetensors_files, "REFERENCE_MAX_HEADER", 16)
    assert rules(scan(st_raw({"a": F32x2}, bytes(8)))) == {"header-too-large": Severity.MEDIUM}


def test_header_length_past_the_end_of_the_file() -> None:
    blob = st_raw({"a": F32x2}, bytes(8), declared=10_000)
    assert rules(scan(blob)) == {"header-length": Severity.MEDIUM}


@pytest.mark.parametrize("blob", [b"", b"\x08\x00\x00", b"\x00" * 7])
def test_shorter_than_the_prefix_is_malformed(blob: bytes) -> None:
    assert rules(scan(blob)) == {"malformed": Severity.MEDIUM}


# -- the JSON ------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [
    b'{"a": "\xff\xfe"}', b"not json", b"[1, 2]", b'{"a": NaN}', b"{} trailing",
    b"{}\x00\x00\x00\x00\x00\x00", b'{"a": ' * 100_000, b'"a string"',
], ids=["utf8", "text", "list", "nan", "trailing", "nul-padding", "deep", "string"])
def test_header_that_is_not_a_json_object(raw: bytes) -> None:
    found = scan(st_raw(raw, pad=False))
    assert serious(found) == ["header-invalid"]
    assert found[-1].evidence["incomplete"] is True


def test_leading_whitespace_is_only_noted() -> None:
    text = "  " + json.dumps({"a": F32x2})
    assert rules(scan(st_raw(text, bytes(8)))) == {"header-start": Severity.LOW}


A = json.dumps(F32x2)


@pytest.mark.parametrize("text", [
    '{"a": ' + A + ', "a": ' + A + "}",
    '{"__metadata__": {"k": "1", "k": "2"}, "a": ' + A + "}",
    '{"a": {"dtype": "F32", "dtype": "F16", "shape": [2], "data_offsets": [0, 8]}}',
    '{"__metadata__": {}, "__metadata__": {}, "a": ' + A + "}",
], ids=["tensor", "metadata-key", "field", "metadata"])
def test_duplicate_keys(text: str) -> None:
    assert rules(scan(st_raw(text, bytes(8))))["duplicate-key"] == Severity.MEDIUM


# -- tensor entries ------------------------------------------------------------------------------


@pytest.mark.parametrize(("entry", "rule"), [
    ([1, 2], "tensor-entry"),
    ({"dtype": "F32", "shape": [2]}, "tensor-entry"),
    ({"dtype": "F12", "shape": [2], "data_offsets": [0, 8]}, "unknown-dtype"),
    ({"dtype": ["F32"], "shape": [2], "data_offsets": [0, 8]}, "unknown-dtype"),
    ({"dtype": "f32", "shape": [2], "data_offsets": [0, 8]}, "unknown-dtype"),
    ({"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}, "bad-shape"),
    ({"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}, "bad-shape"),
    ({"dtype": "F32", "shape": [True, 2], "data_offsets": [0, 8]}, "bad-shape"),
    ({"dtype": "F32", "shape": "2", "data_offsets": [0, 8]}, "bad-shape"),
    ({"dtype": "F32", "shape": [2], "data_offsets": [0, 8, 16]}, "bad-offsets"),
    ({"dtype": "F32", "shape": [2], "data_offsets": {"a": 0}}, "bad-offsets"),
    ({"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]}, "bad-offsets"),
    ({"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}, "bad-offsets"),
    ({"dtype": "F32", "shape": [2], "data_offsets": [False, 8]}, "bad-offsets"),
    ({"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}, "size-mismatch"),
    ({"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}, "size-mismatch"),
    ({"dtype": "F4", "shape": [3], "data_offsets": [0, 8]}, "size-mismatch"),
    ({"dtype": "F6_E3M2", "shape": [2], "data_offsets": [0, 8]}, "size-mismatch"),
    ({"dtype": "F32", "shape": [2**40, 2**40, 2**40], "data_offsets": [0, 8]},
     "size-mismatch"),
    ({"dtype": "F32", "shape": [2], "data_offsets": [0, 8], "x": 1}, "unexpected-field"),
])
def test_tensor_entry_checks(entry: Any, rule: str) -> None:
    found = rules(scan(st_raw({"t": entry}, bytes(8))))
    assert rule in found, found
    expected = Severity.LOW if rule == "unexpected-field" else Severity.MEDIUM
    assert found[rule] == expected


def test_sub_byte_dtypes_are_sized_in_bits() -> None:
    # 4 x F4 = 16 bits = 2 bytes; 4 x F6 = 24 bits = 3 bytes
    header = {"a": {"dtype": "F4", "shape": [2, 2], "data_offsets": [0, 2]},
              "b": {"dtype": "F6_E2M3", "shape": [4], "data_offsets": [2, 5]}}
    assert scan(st_raw(header, bytes(5))) == []


def test_offsets_past_the_data_section() -> None:
    header = {"a": {"dtype": "F32", "shape": [2**28], "data_offsets": [0, 2**30]}}
    found = scan(st_raw(header, bytes(8)))
    assert rules(found) == {"offsets-out-of-bounds": Severity.MEDIUM}
    assert found[0].evidence["end"] == 2**30


# -- the layout ------------------------------------------------------------------------------------


def test_overlapping_tensors() -> None:
    header = {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
              "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}
    found = scan(st_raw(header, bytes(16)))
    assert rules(found) == {"overlapping-tensors": Severity.MEDIUM}
    assert "InvalidOffset" in found[0].detail


def test_zero_length_tensors_may_share_an_offset() -> None:
    header = {"a": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]},
              "b": {"dtype": "I8", "shape": [0, 3], "data_offsets": [0, 0]},
              "c": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    assert scan(st_raw(header, bytes(8))) == []


def test_zero_length_tensor_inside_another_is_refused_like_the_reference() -> None:
    header = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
              "b": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]}}
    assert rules(scan(st_raw(header, bytes(8)))) == {"overlapping-tensors": Severity.MEDIUM}


@pytest.mark.parametrize(("offsets", "size"), [([8, 16], 16), ([0, 8], 24)],
                         ids=["gap-before", "trailing"])
def test_bytes_no_tensor_covers(offsets: list[int], size: int) -> None:
    header = {"a": {"dtype": "F32", "shape": [2], "data_offsets": offsets}}
    found = scan(st_raw(header, bytes(size)))
    assert rules(found) == {"unused-bytes": Severity.MEDIUM}


def test_a_pickle_in_uncovered_bytes_is_scanned() -> None:
    payload = b"cos\nsystem\n(Vtouch /nonexistent/x\ntR."
    blob = st_file([("w", "F32", [4])]) + payload
    found = list(session().scan(Source.from_bytes("p.safetensors", blob)))
    assert rules(found)["unused-bytes"] == Severity.MEDIUM
    hidden = [f for f in found if "!unused-bytes@" in f.evidence["file"]]
    assert hidden and max(f.severity for f in hidden) == Severity.CRITICAL


def test_uncovered_zeros_are_not_scanned_as_members() -> None:
    found = list(session().scan(Source.from_bytes("z.safetensors",
                                                  st_file([("w", "F32", [4])]) + bytes(64))))
    assert [f.evidence["file"] for f in found] == ["z.safetensors"]


def test_many_problems_make_one_finding_per_rule() -> None:
    header = {f"t{i}": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
              for i in range(1000)}
    found = scan(st_raw(header, bytes(8)))
    assert len(found) == 1
    assert found[0].evidence["count"] == 999
    assert len(found[0].evidence["examples"]) == 5
    assert "and 994 more" in found[0].detail


# -- metadata ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("meta", [["a"], {"a": 1}, {"a": {"b": "c"}}, "text"])
def test_metadata_must_map_strings_to_strings(meta: Any) -> None:
    found = rules(scan(st_raw({"__metadata__": meta, "a": F32x2}, bytes(8))))
    assert found == {"bad-metadata": Severity.MEDIUM}


@pytest.mark.parametrize("value", [
    base64.b64encode(b"\x80\x04\x95\x15\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06system"
                     b"\x94\x93\x94.").decode(),
    "__import__('os').system('id')",
    "\x80\x02cos\nsystem\nq\x00.",
])
def test_code_in_metadata_is_a_low_note_only(value: str) -> None:
    found = scan(st_raw({"__metadata__": {"config": value}, "a": F32x2}, bytes(8)))
    assert rules(found) == {"metadata-embedded-code": Severity.LOW}


@pytest.mark.parametrize("value", [
    base64.b64encode(b"just some text that is long enough to look at").decode(),
    "pt", "A" * 5000, json.dumps({"architectures": ["LlamaForCausalLM"]}),
])
def test_ordinary_metadata_is_clean(value: str) -> None:
    assert scan(st_raw({"__metadata__": {"v": value}, "a": F32x2}, bytes(8))) == []


def test_findings_carry_file_format_rule_and_scanner() -> None:
    header = {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
              "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}
    f = scan(st_raw(header, bytes(24)))[0]
    assert f.evidence["file"] == "t.safetensors"
    assert f.evidence["format"] == "safetensors"
    assert f.evidence["rule"] == "overlapping-tensors"
    assert f.plugin_id == "safetensors"
    assert f.check == "model-scan"


# -- the reference loader as oracle ----------------------------------------------------------------

_DTYPES = st.sampled_from(["F32", "F16", "BF16", "I8", "U8", "I64", "F4", "F6_E2M3", "F8_E4M3",
                           "BOOL", "F12", "C64"])


@st.composite
def headers(draw: st.DrawFn) -> tuple[dict[str, Any], int]:
    """A mostly valid header, then a few random corruptions of offsets, shapes and dtypes."""
    header: dict[str, Any] = {}
    offset = 0
    for i in range(draw(st.integers(0, 4))):
        dtype = draw(_DTYPES)
        shape = draw(st.lists(st.integers(0, 5), max_size=3))
        elements = 1
        for d in shape:
            elements *= d
        nbits = elements * safetensors_files.DTYPE_BITS.get(dtype, 8)
        end = offset + nbits // 8
        if draw(st.booleans()):
            end += draw(st.integers(-3, 3))
        begin = offset + (draw(st.integers(-4, 4)) if draw(st.booleans()) else 0)
        header[f"t{i}"] = {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}
        offset = max(offset, end)
    if draw(st.booleans()):
        header["__metadata__"] = draw(st.dictionaries(st.text(max_size=5),
                                                      st.text(max_size=5) | st.integers(),
                                                      max_size=3))
    return header, offset + draw(st.integers(-2, 2) if draw(st.booleans()) else st.just(0))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(headers())
def test_whatever_the_reference_refuses_is_reported(case: tuple[dict[str, Any], int]) -> None:
    safe_open = pytest.importorskip("safetensors").safe_open
    header, data_size = case
    blob = st_raw(header, bytes(max(0, data_size)))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "f.safetensors")
        path.write_bytes(blob)
        try:
            with safe_open(str(path), "np") as fh:
                list(fh.keys())
            refused = False
        except Exception:  # the reference's SafetensorError (and friends)
            refused = True
    reported = serious(scan(blob))
    if refused:
        assert reported, f"the reference refuses {header} ({data_size} bytes) but no finding"
    else:
        assert not reported, f"the reference loads {header} but we report {reported}"


# -- fuzzing: never raises, always fast ------------------------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=1000)
@given(st.dictionaries(st.text(max_size=10), _JSON, max_size=6), st.binary(max_size=64))
def test_random_json_headers(header: dict[str, Any], data: bytes) -> None:
    for f in scan(st_raw(header, data)):
        assert f.evidence["rule"] != "scan-error"


@settings(max_examples=200, deadline=1000)
@given(st.binary(max_size=512))
def test_random_bytes(blob: bytes) -> None:
    scan(blob)
    scan(struct.pack("<Q", len(blob)) + blob)


_VALID = st_file([("a", "F32", [2, 2]), ("b", "I8", [3]), ("c", "F4", [4])],
                 metadata={"format": "pt"})


@settings(max_examples=300, deadline=1000)
@given(st.lists(st.tuples(st.integers(0, len(_VALID) - 1), st.integers(0, 255)), max_size=8),
       st.integers(0, len(_VALID)))
def test_mutated_valid_files(flips: list[tuple[int, int]], cut: int) -> None:
    blob = bytearray(_VALID)
    for at, value in flips:
        blob[at] = value
    scan(bytes(blob[:cut]))
    scan(bytes(blob))

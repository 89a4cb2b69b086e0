"""The PyTorch scanner: real checkpoints pass, payloads in every layout are caught, tensor
bytes are never read, and no mutated file makes the scanner raise.

Benign files are what torch writes; malicious ones replace a real archive's pickle with a
payload written as raw opcodes (nothing here pickles a live object). Bypass regressions cite
the advisory.
"""

from __future__ import annotations

import io
import pickle
import struct
import time
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from samples.pytorch import (
    LEGACY_MAGIC,
    legacy_checkpoint,
    payload_pickle,
    rewrite_zip,
    tar_checkpoint,
)

from phalanx.core.findings import Finding, Severity
from phalanx.errors import InvalidParameterError
from phalanx.supplychain.scan import ScanSession, Source, analyse_pickle, scan_paths
from phalanx.supplychain.scan.pickle_vm import COMPILED
from phalanx.supplychain.scan.pytorch import PyTorchScanner
from phalanx.supplychain.scan.sniff import sniff

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

CANARY = Path("/nonexistent/phalanx-canary")


# --------------------------------------------------------------------------------------------
# Helpers


def scan(data: bytes, name: str = "model.pt") -> list[Finding]:
    session = ScanSession()
    return list(session.scan(Source.from_bytes(name, data)))


def rules(findings: list[Finding], at_least: Severity = Severity.INFO) -> set[str]:
    return {str(f.evidence.get("rule")) for f in findings if f.severity >= at_least}


def worst(findings: list[Finding]) -> Severity | None:
    return max((f.severity for f in findings), default=None)


def clean(findings: list[Finding]) -> bool:
    return all(f.severity < Severity.MEDIUM for f in findings)


def describe(findings: list[Finding]) -> str:
    return "; ".join(f"{f.severity.label}:{f.evidence.get('rule')}:{f.title}" for f in findings)


def model() -> Any:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.BatchNorm1d(3))


def saved(obj: Any, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, **kwargs)
    return buf.getvalue()


@pytest.fixture(scope="module")
def state_zip() -> bytes:
    return saved(model().state_dict())


@pytest.fixture(scope="module")
def scripted() -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(model().eval()), buf)
    return buf.getvalue()


def with_code(archive: bytes, line: str) -> bytes:
    marker = "    return torch.linear(input, weight, bias)\n"
    # Found by content: TorchScript mangles class names compiled earlier in the same process.
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        name, code = next(
            (n, zf.read(n).decode()) for n in zf.namelist()
            if n.startswith("archive/code/") and n.endswith(".py")
            and marker in zf.read(n).decode()
        )
    return rewrite_zip(archive, {name: code.replace(marker, line + marker).encode()})


class Counting:
    """Wraps a source's opener and counts the bytes read through it."""

    def __init__(self, opener: Callable[[], BinaryIO]) -> None:
        self.opener = opener
        self.bytes = 0

    def __call__(self) -> BinaryIO:
        counter = self

        class Stream(io.RawIOBase):
            def __init__(self) -> None:
                super().__init__()
                self.raw = counter.opener()

            def readable(self) -> bool:
                return True

            def seekable(self) -> bool:
                return True

            def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
                return self.raw.seek(offset, whence)

            def tell(self) -> int:
                return self.raw.tell()

            def readinto(self, buffer: Any) -> int:
                data = self.raw.read(len(buffer))
                buffer[: len(data)] = data
                counter.bytes += len(data)
                return len(data)

            def close(self) -> None:
                self.raw.close()
                super().close()

        return io.BufferedReader(Stream(), buffer_size=8192)


# --------------------------------------------------------------------------------------------
# Benign files torch writes: nothing at or above MEDIUM


def test_state_dict_zip_is_clean(state_zip: bytes) -> None:
    assert sniff(Source.from_bytes("m.pt", state_zip)) == "pytorch-zip"
    findings = scan(state_zip)
    assert clean(findings), describe(findings)
    assert "pickle-torch-storage" in rules(findings)  # the INFO: storages referenced


def test_the_zip_directory_is_read_once_by_zipfile(state_zip: bytes,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[int] = []
    real = zipfile.ZipFile._RealGetContents

    def counted(self: zipfile.ZipFile) -> None:
        reads.append(1)
        real(self)  # type: ignore[attr-defined]

    monkeypatch.setattr(zipfile.ZipFile, "_RealGetContents", counted)
    session = ScanSession()
    source = Source.from_bytes("m.pt", state_zip)
    assert clean(list(session.scan(source)))
    assert len(reads) == 1  # the sniffer's read, which the PyTorch scanner reuses
    assert not session._zip_directories  # kept only while the source is scanned
    assert [i.filename for i in session.zip_directory(source)] == \
        zipfile.ZipFile(io.BytesIO(state_zip)).namelist()


def test_full_module_zip_is_clean() -> None:
    findings = scan(saved(model()))
    assert clean(findings), describe(findings)


def test_many_dtypes_and_views_are_clean() -> None:
    state = {
        "bf16": torch.ones(3, dtype=torch.bfloat16),
        "f16": torch.ones(2, dtype=torch.float16),
        "i8": torch.ones(2, dtype=torch.int8),
        "c64": torch.ones(2, dtype=torch.complex64),
        "bool": torch.tensor([True]),
        "view": torch.arange(10.0)[3:7],
        "shared": [torch.arange(4.0)] * 2,
        "empty": torch.empty(0),
    }
    findings = scan(saved(state))
    assert clean(findings), describe(findings)
    assert "torch-storage-size" not in rules(findings)


def test_legacy_state_dict_is_clean() -> None:
    data = saved(model().state_dict(), _use_new_zipfile_serialization=False)
    assert sniff(Source.from_bytes("m.pt", data)) == "pytorch-legacy"
    findings = scan(data)
    assert clean(findings), describe(findings)
    assert "torch-legacy-storages" not in rules(findings)  # every storage header matched


def test_legacy_full_module_is_clean() -> None:
    data = saved(model(), _use_new_zipfile_serialization=False)
    findings = scan(data)
    assert clean(findings), describe(findings)


def test_torchscript_is_clean_and_reports_its_code(scripted: bytes) -> None:
    assert sniff(Source.from_bytes("m.pt", scripted)) == "torchscript"
    findings = scan(scripted)
    assert clean(findings), describe(findings)
    code = [f for f in findings if f.evidence.get("rule") == "torchscript-code"]
    assert code and code[0].severity is Severity.INFO


def test_traced_torchscript_with_constants_and_extra_files_is_clean() -> None:
    offset = torch.arange(3.0)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(lambda x: x + offset, torch.zeros(3)), buf,
                       _extra_files={"meta.json": '{"a": 1}'})
    names = zipfile.ZipFile(io.BytesIO(buf.getvalue())).namelist()
    assert "archive/constants/0" in names
    findings = scan(buf.getvalue())
    assert clean(findings), describe(findings)


def test_tar_sample_is_what_torch_loads(tmp_path: Path) -> None:
    """The hand-made tar checkpoint follows torch's own reader (so the samples are real).

    Loading it is safe: it is built here from constants, with no payload.
    """
    path = tmp_path / "ancient.pt"
    path.write_bytes(tar_checkpoint())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = torch.load(path, weights_only=False)
    assert loaded["w"].tolist() == [1.0, 2.0, 3.0]
    findings = scan(tar_checkpoint())
    assert clean(findings), describe(findings)


# --------------------------------------------------------------------------------------------
# Payloads in every layout


def test_payload_data_pkl_is_critical(state_zip: bytes) -> None:
    data = rewrite_zip(state_zip, {"archive/data.pkl": payload_pickle(CANARY)})
    findings = scan(data)
    hit = [f for f in findings if f.evidence.get("callable") == "os.system"]
    assert hit and hit[0].severity is Severity.CRITICAL
    assert hit[0].evidence["file"].endswith("!archive/data.pkl")


@pytest.mark.parametrize("name", ["archive/extra.pkl", "archive/DATA.PKL",
                                  "archive/code/x.debug_pkl", "archive/weights.bin",
                                  "archive/extra/notes"])
def test_payload_in_any_member_is_found(state_zip: bytes, name: str) -> None:
    """CVE-2025-1889: pickles are found by content, not by extension."""
    findings = scan(rewrite_zip(state_zip, add={name: payload_pickle(CANARY)}))
    assert worst(findings) is Severity.CRITICAL, describe(findings)


def test_payload_in_first_entry_folder_is_found(state_zip: bytes) -> None:
    data = rewrite_zip(state_zip, add={"zzz/data.pkl": payload_pickle(CANARY)},
                       first="zzz/data.pkl")
    findings = scan(data)
    assert worst(findings) is Severity.CRITICAL
    assert "torch-zip-layout" in rules(findings)


def test_local_header_name_mismatch_is_still_read(state_zip: bytes) -> None:
    """CVE-2025-1944: zipfile refuses the member, PyTorch's reader (and this scan) read it."""
    data = bytearray(rewrite_zip(state_zip, {"archive/data.pkl": payload_pickle(CANARY)}))
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo("archive/data.pkl")
    data[info.header_offset + 30 + 15] = ord("X")
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(bytes(data))).read("archive/data.pkl")
    assert worst(scan(bytes(data))) is Severity.CRITICAL


@pytest.mark.parametrize("bit", [0x20, 0x40])
def test_flag_bits_do_not_hide_a_member(state_zip: bytes, bit: int) -> None:
    """CVE-2025-1945: flag bits (patched data, strong encryption) make zipfile refuse."""
    data = bytearray(rewrite_zip(state_zip, {"archive/data.pkl": payload_pickle(CANARY)}))
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo("archive/data.pkl")
    data[info.header_offset + 6] |= bit
    central = data.find(b"PK\x01\x02")
    while central >= 0 and data[central + 46:central + 62] != b"archive/data.pkl":
        central = data.find(b"PK\x01\x02", central + 4)
    data[central + 8] |= bit
    with pytest.raises(NotImplementedError):
        zipfile.ZipFile(io.BytesIO(bytes(data))).read("archive/data.pkl")
    assert worst(scan(bytes(data))) is Severity.CRITICAL


def test_legacy_payload_in_each_pickle_is_found() -> None:
    # (a payload instead of the magic number is a plain pickle, for the pickle scanner)
    for index in range(1, 5):
        parts = [LEGACY_MAGIC, b"\x80\x02M\xe9\x03.", b"\x80\x02}.", b"\x80\x02}.",
                 b"\x80\x02]."]
        parts[index] = payload_pickle(CANARY)
        findings = scan(b"".join(parts))
        hit = [f for f in findings if f.evidence.get("callable") == "os.system"]
        assert hit, (index, describe(findings))
        assert hit[0].evidence["pickle"] == [
            "magic number", "protocol version", "system info", "data", "storage keys"][index]


def test_legacy_trailing_pickle_after_storages_is_scanned() -> None:
    data_pickle = (b"\x80\x02}X\x01\x00\x00\x00w(X\x07\x00\x00\x00storagectorch\nFloatStorage\n"
                   b"X\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x02NtQs.")
    storages = struct.pack("<q", 2) + struct.pack("<2f", 1, 2)
    data = legacy_checkpoint(data_pickle, ["0"], storages)
    assert clean(scan(data)), describe(scan(data))
    findings = scan(data + payload_pickle(CANARY))
    assert worst(findings) is Severity.CRITICAL
    assert "torch-legacy-storages" in rules(findings)


def test_invalid_escapes_in_a_legacy_keys_pickle_warn_nobody() -> None:
    # Protocol 0 writes the keys as STRING lines; an invalid escape in one makes pickletools
    # (codecs.escape_decode) warn: attacker-controlled input, not the caller's problem.
    data_pickle = (b"\x80\x02}X\x01\x00\x00\x00w(X\x07\x00\x00\x00storagectorch\nFloatStorage\n"
                   b"X\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x02NtQs.")
    keys = b"\x80\x02](X\x01\x00\x00\x000e."
    data = legacy_checkpoint(data_pickle, ["0"], struct.pack("<q", 2) + struct.pack("<2f", 1, 2))
    assert data.count(keys) == 1
    data = data.replace(keys, b"(lp0\nS'0\\q'\np1\na.")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        findings = scan(data)
    assert "torch-legacy-storages" in rules(findings)  # key '0\\q' names no storage


def test_legacy_storage_header_mismatch_is_reported() -> None:
    data_pickle = (b"\x80\x02}X\x01\x00\x00\x00w(X\x07\x00\x00\x00storagectorch\nFloatStorage\n"
                   b"X\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x02NtQs.")
    data = legacy_checkpoint(data_pickle, ["0"], struct.pack("<q", 7) + b"\x00" * 8)
    findings = scan(data)
    assert "torch-legacy-storages" in rules(findings)
    assert clean(findings)  # nothing hidden: LOW


def test_tar_payload_is_found() -> None:
    findings = scan(tar_checkpoint(payload_pickle(CANARY)))
    assert worst(findings) is Severity.CRITICAL


def test_tar_payload_in_storages_record_is_found() -> None:
    import tarfile

    data = tar_checkpoint()
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(data)) as src, tarfile.open(
            fileobj=out, mode="w:", format=tarfile.PAX_FORMAT) as dst:
        for info in src.getmembers():
            body = src.extractfile(info).read()  # type: ignore[union-attr]
            if info.name == "storages":
                body = body[:5] + payload_pickle(CANARY)  # the record's args pickle
                info.size = len(body)
            dst.addfile(info, io.BytesIO(body))
    assert worst(scan(out.getvalue())) is Severity.CRITICAL


@pytest.mark.parametrize("elements", [1000, 2**62])
def test_tar_storage_record_larger_than_its_member_is_malformed(elements: int) -> None:
    """A record's size comes from the pickle: one past the member's end (2**62 elements once
    overflowed the seek, found by fuzzing) is a damaged checkpoint, not a scanner crash."""
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(tar_checkpoint())) as src, tarfile.open(
            fileobj=out, mode="w:", format=tarfile.PAX_FORMAT) as dst:
        for info in src.getmembers():
            body = src.extractfile(info).read()  # type: ignore[union-attr]
            if info.name == "storages":
                body = body.replace(struct.pack("<q", 3), struct.pack("<q", elements), 1)
            dst.addfile(info, io.BytesIO(body))
    findings = scan(out.getvalue())
    assert "scan-error" not in {f.evidence.get("rule") for f in findings}
    assert any("more than the member holds" in f.title for f in findings), [
        f.title for f in findings]


# --------------------------------------------------------------------------------------------
# TorchScript


def test_torchscript_constants_payload_is_critical(scripted: bytes) -> None:
    data = rewrite_zip(scripted, {"archive/constants.pkl": payload_pickle(CANARY)})
    assert worst(scan(data)) is Severity.CRITICAL


def test_torchscript_names_are_only_allowed_for_torchscript(scripted: bytes) -> None:
    """``__torch__`` classes resolve only in TorchScript's unpickler (with constants.pkl);
    without it torch.load unpickles data.pkl with Python's pickle, which cannot import them."""
    assert clean(scan(scripted))
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(scripted)) as src, zipfile.ZipFile(buf, "w") as out:
        for info in src.infolist():
            if not info.filename.endswith("constants.pkl"):
                out.writestr(info, src.read(info))
    findings = scan(buf.getvalue())
    assert any(str(f.evidence.get("module", "")).startswith("__torch__")
               and f.severity >= Severity.MEDIUM for f in findings), describe(findings)


def test_debug_pickles_use_torchscript_builders(scripted: bytes) -> None:
    names = zipfile.ZipFile(io.BytesIO(scripted)).namelist()
    assert any(n.endswith(".debug_pkl") for n in names)
    findings = scan(scripted)
    assert not any(f.evidence.get("module") == "torch.jit._pickle" for f in findings)


@pytest.mark.parametrize(
    ("line", "rule", "severity"),
    [
        ('    _ = torch.save(input, "/tmp/x")\n', "torchscript-system-op", Severity.HIGH),
        ('    _ = torch.from_file("/etc/passwd", True, 8)\n', "torchscript-system-op",
         Severity.HIGH),
        ('    _ = ops.aten.save(input, "/tmp/x")\n', "torchscript-system-op", Severity.HIGH),
        ("    _ = __import__('os').system('id')\n", "torchscript-python-code", Severity.HIGH),
        ("    _ = os.system('id')\n", "torchscript-python-code", Severity.HIGH),
        ("    _ = eval('1')\n", "torchscript-python-code", Severity.HIGH),
        ('    _ = getattr(input, "__globals__")\n', "torchscript-python-code", Severity.HIGH),
        ("    _ = ops.torchvision.nms(input, input, 0.5)\n", "torchscript-custom-op",
         Severity.LOW),
        ("    _ = torch.classes.mylib.Thing()\n", "torchscript-custom-op", Severity.LOW),
    ],
)
def test_torchscript_code_checks(scripted: bytes, line: str, rule: str,
                                 severity: Severity) -> None:
    findings = scan(with_code(scripted, line))
    hits = [f for f in findings if f.evidence.get("rule") == rule]
    assert hits and hits[0].severity is severity, describe(findings)


def test_torchscript_import_line_of_old_archives_is_fine(scripted: bytes) -> None:
    findings = scan(with_code(scripted, "    import __torch__.torch.nn.modules.linear\n"))
    assert clean(findings), describe(findings)


def test_torchscript_strings_are_not_code(scripted: bytes) -> None:
    line = '    ops.prim.RaiseException("os.system(eval) open( import os", "builtins.Error")\n'
    findings = scan(with_code(scripted, line))
    assert clean(findings), describe(findings)
    findings = scan(with_code(scripted, "    import os\n"))
    assert "torchscript-python-code" in rules(findings)


def test_torchscript_code_that_does_not_tokenize(scripted: bytes) -> None:
    findings = scan(with_code(scripted, '    x = """unterminated\n'))
    assert "torchscript-unreadable-code" in rules(findings, Severity.MEDIUM)


# --------------------------------------------------------------------------------------------
# Storages: referenced, sized, never read


def _tiny_zip(data_pkl: bytes, members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", data_pkl)
        for name, body in members.items():
            zf.writestr(f"archive/{name}", body)
        zf.writestr("archive/byteorder", "little")
        zf.writestr("archive/version", "3\n")
    return buf.getvalue()


def _storage_pickle(numel: int, key: str = "0") -> bytes:
    return (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storage"
            b"ctorch\nFloatStorage\nX" + struct.pack("<I", len(key)) + key.encode() +
            b"X\x03\x00\x00\x00cpuJ" + struct.pack("<i", numel) + b"tQK\x00J" +
            struct.pack("<i", numel) + b"\x85K\x01\x85\x89ccollections\nOrderedDict\n)Rt"
            b"R.")


def test_storage_checks() -> None:
    good = _tiny_zip(_storage_pickle(4), {"data/0": b"\x00" * 16})
    assert clean(scan(good)), describe(scan(good))
    missing = scan(_tiny_zip(_storage_pickle(4), {}))
    assert "torch-storage-missing" in rules(missing, Severity.MEDIUM)
    short = scan(_tiny_zip(_storage_pickle(4), {"data/0": b"\x00" * 8}))
    assert "torch-storage-size" in rules(short, Severity.MEDIUM)
    extra = scan(_tiny_zip(_storage_pickle(4), {"data/0": b"\x00" * 16, "data/9": b"x"}))
    assert "torch-storage-unreferenced" in rules(extra)
    assert clean(extra)


def test_storage_that_looks_like_a_pickle_is_not_scanned() -> None:
    storage = payload_pickle(CANARY).ljust(64, b"\x00")
    data = _tiny_zip(_storage_pickle(16), {"data/0": storage})
    findings = scan(data)
    assert clean(findings), describe(findings)


def test_odd_metadata_is_low() -> None:
    data = _tiny_zip(b"\x80\x02}.", {})
    data = rewrite_zip(data, {"archive/byteorder": b"middle"})
    findings = scan(data)
    assert "torch-metadata" in rules(findings)
    assert clean(findings)


def _sparse_zip(path: Path, size: int) -> int:
    """A torch zip whose one storage is ``size`` bytes of a sparse file (nothing written)."""
    data_pkl = _storage_pickle(size // 4)
    entries = []
    with path.open("wb") as fh:
        for name, length, body in (("archive/data.pkl", len(data_pkl), data_pkl),
                                   ("archive/data/0", size, None)):
            offset = fh.tell()
            raw = name.encode()
            crc = zipfile.crc32(body) if body is not None else 0
            fh.write(struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, 0, 0, 0, crc, length,
                                 length, len(raw), 0) + raw)
            if body is None:
                fh.seek(length, io.SEEK_CUR)
            else:
                fh.write(body)
            entries.append((raw, crc, length, offset))
        central = fh.tell()
        for raw, crc, length, offset in entries:
            fh.write(struct.pack("<4s6H3I5H2I", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, crc, length,
                                 length, len(raw), 0, 0, 0, 0, 0, offset) + raw)
        end = fh.tell()
        fh.write(struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, len(entries), len(entries),
                             end - central, central, 0))
    return path.stat().st_size


def test_two_gigabyte_checkpoint_reads_only_headers(tmp_path: Path) -> None:
    path = tmp_path / "big.pt"
    size = _sparse_zip(path, 2 * 1024**3)
    assert size > 2 * 1024**3
    source = Source.from_path(path)
    counter = Counting(source.opener)
    source = Source(name=source.name, size=source.size, opener=counter, path=None,
                    root=tmp_path)
    started = time.perf_counter()
    findings = list(ScanSession().scan(source))
    assert clean(findings), describe(findings)
    assert counter.bytes < 1024**2, counter.bytes
    assert time.perf_counter() - started < 30


def test_two_gigabyte_legacy_checkpoint_reads_only_headers(tmp_path: Path) -> None:
    numel = 2 * 1024**3 // 4
    data_pickle = (b"\x80\x02}X\x01\x00\x00\x00w(X\x07\x00\x00\x00storagectorch\nFloatStorage\n"
                   b"X\x01\x00\x00\x000X\x03\x00\x00\x00cpuJ" + struct.pack("<i", numel) +
                   b"NtQs.")
    head = legacy_checkpoint(data_pickle, ["0"], struct.pack("<q", numel))
    path = tmp_path / "big-legacy.pt"
    with path.open("wb") as fh:
        fh.write(head)
        fh.truncate(len(head) + numel * 4)
    source = Source.from_path(path)
    counter = Counting(source.opener)
    source = Source(name=source.name, size=source.size, opener=counter, root=tmp_path)
    findings = list(ScanSession().scan(source))
    assert clean(findings), describe(findings)
    assert "torch-legacy-storages" not in rules(findings)
    assert counter.bytes < 1024**2, counter.bytes


# --------------------------------------------------------------------------------------------
# The analyser's stopping point (what the legacy reader relies on)


def test_max_pickles_stops_at_the_stop_opcode() -> None:
    first = pickle.dumps({"a": 1}, protocol=2)
    garbage = b"\xff\xfe not a pickle at all"
    report = analyse_pickle(first + garbage, max_pickles=1)
    assert report.findings == []
    assert report.pickles == 1
    assert report.end_offset == len(first)
    full = analyse_pickle(first + garbage)
    assert full.end_offset is None  # the garbage is analysed, and malformed
    assert not full.allows_unpickling()


def test_max_pickles_from_a_file_position() -> None:
    parts = [pickle.dumps(i, protocol=2) for i in range(3)]
    stream = io.BytesIO(b"".join(parts))
    ends = []
    for _ in parts:
        ends.append(analyse_pickle(stream, max_pickles=1).end_offset)
        stream.seek(ends[-1])
    assert ends == [len(parts[0]), len(parts[0]) + len(parts[1]), len(b"".join(parts))]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_max_pickles_is_validated(bad: Any) -> None:
    # The compiled build checks argument types on entry, as compiled extensions do: a value
    # of another type than the annotation's is a TypeError there, before the range check.
    wrong_type = COMPILED and not isinstance(bad, int)
    with pytest.raises(TypeError if wrong_type else InvalidParameterError):
        analyse_pickle(b"N.", max_pickles=bad)


def test_torch_storages_are_reported(state_zip: bytes) -> None:
    data = zipfile.ZipFile(io.BytesIO(state_zip)).read("archive/data.pkl")
    report = analyse_pickle(data, ecosystems=("torch",))
    assert report.torch_storages
    assert {s.storage_type for s in report.torch_storages} >= {"torch.FloatStorage"}
    assert all(s.key is not None and s.numel is not None for s in report.torch_storages)


def test_scanner_scans_a_path_directly(tmp_path: Path, state_zip: bytes) -> None:
    path = tmp_path / "m.pt"
    path.write_bytes(rewrite_zip(state_zip, {"archive/data.pkl": payload_pickle(CANARY)}))
    assert worst(list(PyTorchScanner().scan(path))) is Severity.CRITICAL
    report = scan_paths([path])
    assert report.failed()


# --------------------------------------------------------------------------------------------
# Fuzzing: mutated files never make the scanner raise, and finish fast


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int) -> bytes:
    out = bytearray(data)
    for pos, value in edits:
        out[pos % len(out)] = value
    return bytes(out[: max(1, len(out) - cut)])


@pytest.fixture(scope="module")
def fuzz_seeds(state_zip: bytes, scripted: bytes) -> dict[str, bytes]:
    return {
        "zip": state_zip,
        "torchscript": scripted,
        "legacy": saved(model().state_dict(), _use_new_zipfile_serialization=False),
        "tar": tar_checkpoint(),
    }


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["zip", "torchscript", "legacy", "tar"]),
       edits=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=8),
       cut=st.integers(0, 64))
def test_mutated_checkpoints_never_raise(fuzz_seeds: dict[str, bytes], kind: str,
                                         edits: list[tuple[int, int]], cut: int) -> None:
    data = _mutate(fuzz_seeds[kind], edits, cut)
    source = Source.from_bytes("fuzz.pt", data)
    session = ScanSession()
    started = time.perf_counter()
    findings = list(PyTorchScanner().scan_source(source, session))
    assert time.perf_counter() - started < 5
    assert all(isinstance(f, Finding) for f in findings)
    assert not any(f.evidence.get("rule") == "scan-error" for f in findings)


@pytest.mark.parametrize("protocol", [3, 4, 5])
def test_legacy_layout_with_other_pickle_protocols(protocol: int) -> None:
    data = saved(model().state_dict(), _use_new_zipfile_serialization=False,
                 pickle_protocol=protocol)
    source = Source.from_bytes("legacy.pt", data)
    findings = list(PyTorchScanner().scan_source(source, ScanSession()))
    assert clean(findings), describe(findings)


def test_legacy_layout_with_protocol_4_sniffs_as_legacy() -> None:
    data = saved(model().state_dict(), _use_new_zipfile_serialization=False, pickle_protocol=4)
    assert sniff(Source.from_bytes("legacy.pt", data)) == "pytorch-legacy"

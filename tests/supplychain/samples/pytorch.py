"""Corpus samples: PyTorch checkpoints (zip, legacy and tar layouts) and TorchScript archives.

Benign samples are what ``torch.save`` and ``torch.jit.save`` write (they need torch), except
the tar layout, which no current torch writes: it is assembled here the way
``torch.serialization._legacy_load`` reads it (``test_pytorch.py`` checks that torch loads it).
Malicious samples start from a real archive where torch is needed for realism and swap in a
payload pickle written as raw opcodes (``os.system('touch CANARY')``); nothing here pickles a
live object.

Not a sample: ``torch.save(model)`` of a model whose class the user wrote. Its pickle imports
that class (``mypackage.MyNet``), which no allowlist can know, so the scan reports an unknown
import (MEDIUM) by design, although the file is not malicious: the user must vouch for their
own package (a policy with their module on the allowlist). The whole-model sample below uses
only ``torch.nn`` layers, which the torch allowlist accepts.

Published techniques reproduced (picklescan advisories, Sonatype, 2025,
https://github.com/mmaitre314/picklescan/security/advisories):

- CVE-2025-1889: pickles whose name lacks a pickle extension were not scanned.
- CVE-2025-1944: a local header name that differs from the central directory made Python's
  ``zipfile`` refuse the member while PyTorch's reader loads it.
- CVE-2025-1945: general-purpose flag bits that make ``zipfile`` refuse the member.
"""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

from corpus import Sample

__all__ = ["SAMPLES", "legacy_checkpoint", "payload_pickle", "rewrite_zip", "tar_checkpoint"]

CVE_EXTENSION = "CVE-2025-1889 (GHSA-769v-p64c-89pr)"
CVE_LOCAL_NAME = "CVE-2025-1944 (GHSA-7q5r-7gvp-wc82)"
CVE_FLAG_BITS = "CVE-2025-1945 (GHSA-w8jq-xcqf-f792)"

#: torch.save's legacy magic number, protocol version and system info, as pickles.
LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."
LEGACY_VERSION = b"\x80\x02M\xe9\x03."
LEGACY_SYS_INFO = (
    b"\x80\x02}q\x00(X\x10\x00\x00\x00protocol_versionq\x01M\xe9\x03X\r\x00\x00\x00"
    b"little_endianq\x02\x88X\n\x00\x00\x00type_sizesq\x03}q\x04(X\x05\x00\x00\x00shortq\x05"
    b"K\x02X\x03\x00\x00\x00intq\x06K\x04X\x04\x00\x00\x00longq\x07K\x04uu."
)


def payload_pickle(canary: Path) -> bytes:
    """A protocol-2 pickle that would run ``touch <canary>`` through ``os.system``."""
    cmd = f"touch {canary}".encode()
    return b"\x80\x02cos\nsystem\nX" + struct.pack("<I", len(cmd)) + cmd + b"\x85R."


def _u(text: str) -> bytes:
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def legacy_checkpoint(data_pickle: bytes, keys: list[str] | None = None,
                      storages: bytes = b"") -> bytes:
    """The legacy layout: magic, version, system info, data, keys, then raw storages."""
    keys_pickle = b"\x80\x02](" + b"".join(_u(k) for k in keys or []) + b"e."
    return (LEGACY_MAGIC + LEGACY_VERSION + LEGACY_SYS_INFO + data_pickle + keys_pickle
            + storages)


def tar_checkpoint(data_pickle: bytes | None = None) -> bytes:
    """The oldest ``torch.save`` layout, with one float storage of 3 elements and one tensor.

    ``pickle`` holds ``{"w": <tensor 0>}`` (persistent id ``"0"``); ``storages`` one record
    (key 1, ``cpu``, ``torch.FloatStorage``) and no views; ``tensors`` one record (key 0
    viewing storage 1, shape ``(3,)``, stride ``(1,)``, offset 0).
    """
    import tarfile

    if data_pickle is None:
        data_pickle = b"\x80\x02}q\x00X\x01\x00\x00\x00wq\x01X\x01\x00\x00\x000q\x02Qs."
    storages = (b"\x80\x02K\x01."
                + b"\x80\x02K\x01X\x03\x00\x00\x00cpuctorch\nFloatStorage\n\x87."
                + struct.pack("<q", 3) + struct.pack("<3f", 1.0, 2.0, 3.0)
                + b"\x80\x02]q\x00.")
    tensors = (b"\x80\x02K\x01."
               + b"\x80\x02K\x00K\x01ctorch\nFloatTensor\n\x87."
               + struct.pack("<i", 1) + b"\x00" * 4 + struct.pack("<q", 3)
               + struct.pack("<q", 1) + struct.pack("<q", 0))
    members = {"sys_info": LEGACY_SYS_INFO, "pickle": data_pickle, "storages": storages,
               "tensors": tensors}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def rewrite_zip(data: bytes, replace: dict[str, bytes] | None = None,
                add: dict[str, bytes] | None = None, *, first: str | None = None) -> bytes:
    """A copy of a zip with members replaced or added (same order and compression)."""
    replace, add = replace or {}, add or {}
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(buf, "w") as out:
        if first is not None:
            out.writestr(first, add.pop(first))
        for info in src.infolist():
            body = replace.get(info.filename, src.read(info))
            out.writestr(zipfile.ZipInfo(info.filename, info.date_time), body,
                         compress_type=info.compress_type)
        for name, body in add.items():
            out.writestr(name, body)
    return buf.getvalue()


def _write(out: Path, name: str, data: bytes) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    path.write_bytes(data)
    return path


def _model():  # type: ignore[no-untyped-def]
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.BatchNorm1d(3))


def _saved(obj: object, folder: str = "archive") -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    data = buf.getvalue()
    # torch names the folder after the file; a BytesIO gives "archive"
    assert zipfile.ZipFile(io.BytesIO(data)).namelist()[0].startswith(folder + "/")
    return data


def _scripted() -> bytes:
    import torch

    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(_model().eval()), buf)
    return buf.getvalue()


# -- benign ------------------------------------------------------------------------------------


def _state_dict(out: Path, canary: Path) -> Path:
    return _write(out, "model.pt", _saved(_model().state_dict()))


def _full_module(out: Path, canary: Path) -> Path:
    return _write(out, "model.pth", _saved(_model()))


def _mixed_dtypes(out: Path, canary: Path) -> Path:
    import torch

    state = {"bf16": torch.ones(3, dtype=torch.bfloat16), "i64": torch.arange(5),
             "bool": torch.tensor([True, False]), "view": torch.arange(10.0)[2:5],
             "epoch": 3, "lr": 0.1, "name": "run-1"}
    return _write(out, "checkpoint.bin", _saved(state))


def _torchscript(out: Path, canary: Path) -> Path:
    return _write(out, "scripted.pt", _scripted())


def _traced(out: Path, canary: Path) -> Path:
    import torch

    offset = torch.arange(3.0)
    traced = torch.jit.trace(lambda x: x * 2 + offset, torch.zeros(3))
    buf = io.BytesIO()
    torch.jit.save(traced, buf, _extra_files={"README.txt": "traced model"})
    return _write(out, "traced.pt", buf.getvalue())


def _legacy_state_dict(out: Path, canary: Path) -> Path:
    import torch

    out.mkdir(parents=True, exist_ok=True)
    path = out / "legacy.pt"
    torch.save(_model().state_dict(), path, _use_new_zipfile_serialization=False)
    return path


def _tar(out: Path, canary: Path) -> Path:
    return _write(out, "ancient.pt", tar_checkpoint())


# -- malicious ---------------------------------------------------------------------------------


def _zip_payload(out: Path, canary: Path) -> Path:
    data = rewrite_zip(_saved(_model().state_dict()),
                       {"archive/data.pkl": payload_pickle(canary)})
    return _write(out, "model.pt", data)


def _zip_no_torch(out: Path, canary: Path) -> Path:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", payload_pickle(canary))
        zf.writestr("archive/byteorder", "little")
        zf.writestr("archive/version", "3\n")
    return _write(out, "pytorch_model.bin", buf.getvalue())


def _zip_second_pickle(out: Path, canary: Path) -> Path:
    data = rewrite_zip(_saved(_model().state_dict()),
                       add={"archive/optimizer.pkl": payload_pickle(canary)})
    return _write(out, "model.pt", data)


def _zip_other_extension(out: Path, canary: Path) -> Path:
    data = rewrite_zip(_saved(_model().state_dict()),
                       add={"archive/extra_state.bin": payload_pickle(canary)})
    return _write(out, "model.pt", data)


def _zip_first_folder(out: Path, canary: Path) -> Path:
    # torch reads records from the folder of the first entry; the decoy sits in another.
    data = rewrite_zip(_saved(_model().state_dict()),
                       add={"zzz/data.pkl": payload_pickle(canary)}, first="zzz/data.pkl")
    return _write(out, "model.pt", data)


def _zip_local_name(out: Path, canary: Path) -> Path:
    data = bytearray(rewrite_zip(_saved(_model().state_dict()),
                                 {"archive/data.pkl": payload_pickle(canary)}))
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo("archive/data.pkl")
    name_at = info.header_offset + 30
    assert data[name_at:name_at + 16] == b"archive/data.pkl"
    data[name_at:name_at + 16] = b"archive/data.pkX"  # local name only: zipfile refuses
    return _write(out, "model.pt", bytes(data))


def _zip_flag_bits(out: Path, canary: Path) -> Path:
    data = bytearray(rewrite_zip(_saved(_model().state_dict()),
                                 {"archive/data.pkl": payload_pickle(canary)}))
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo("archive/data.pkl")
    data[info.header_offset + 6] |= 0x20  # "compressed patched data": zipfile refuses
    central = data.rfind(b"PK\x01\x02" + bytes(data[info.header_offset + 4:
                                                    info.header_offset + 6]))
    while central >= 0:
        at = central + 46
        if data[at:at + 16] == b"archive/data.pkl":
            data[central + 8] |= 0x20
            break
        central = data.rfind(b"PK\x01\x02", 0, central)
    return _write(out, "model.pt", bytes(data))


def _legacy_payload(out: Path, canary: Path) -> Path:
    return _write(out, "legacy.pt", legacy_checkpoint(payload_pickle(canary)))


def _legacy_payload_in_keys(out: Path, canary: Path) -> Path:
    # The storage-keys pickle is loaded too (pickle.load), after the data.
    data = (LEGACY_MAGIC + LEGACY_VERSION + LEGACY_SYS_INFO + b"\x80\x02}." +
            payload_pickle(canary))
    return _write(out, "legacy.pt", data)


def _tar_payload(out: Path, canary: Path) -> Path:
    return _write(out, "ancient.pt", tar_checkpoint(payload_pickle(canary)))


def _torchscript_constants(out: Path, canary: Path) -> Path:
    data = rewrite_zip(_scripted(), {"archive/constants.pkl": payload_pickle(canary)})
    return _write(out, "scripted.pt", data)


def _torchscript_code(out: Path, canary: Path, line: str) -> bytes:
    data = _scripted()
    marker = "    return torch.linear(input, weight, bias)\n"
    # TorchScript mangles class names it has compiled before in the same process
    # (``___torch_mangle_N``), so find the module's code by its content, not its path.
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        name, code = next(
            (n, zf.read(n).decode()) for n in zf.namelist()
            if n.startswith("archive/code/") and n.endswith(".py")
            and marker in zf.read(n).decode()
        )
    code = code.replace(marker, line + marker)
    return rewrite_zip(data, {name: code.encode()})


def _torchscript_file_write(out: Path, canary: Path) -> Path:
    line = f"    _ = torch.save(input, {str(canary)!r})\n"
    return _write(out, "scripted.pt", _torchscript_code(out, canary, line))


def _torchscript_python(out: Path, canary: Path) -> Path:
    line = f"    _ = __import__('os').system('touch {canary}')\n"
    return _write(out, "scripted.pt", _torchscript_code(out, canary, line))


_TORCH = ("torch",)

SAMPLES = [
    # benign
    Sample("torch-zip-state-dict", "pytorch-zip", False, _state_dict,
           "torch.save of a state_dict (zip layout)", needs=_TORCH),
    Sample("torch-zip-full-module", "pytorch-zip", False, _full_module,
           "torch.save of a whole nn.Sequential of torch.nn layers", needs=_TORCH),
    Sample("torch-zip-mixed-dtypes", "pytorch-zip", False, _mixed_dtypes,
           "checkpoint with bfloat16, int64, bool, a tensor view and plain values",
           needs=_TORCH),
    Sample("torchscript-scripted", "torchscript", False, _torchscript,
           "torch.jit.script of a small model, saved with torch.jit.save", needs=_TORCH),
    Sample("torchscript-traced-extra-files", "torchscript", False, _traced,
           "torch.jit.trace with a tensor constant and an extra file", needs=_TORCH),
    Sample("torch-legacy-state-dict", "pytorch-legacy", False, _legacy_state_dict,
           "torch.save(_use_new_zipfile_serialization=False) of a state_dict", needs=_TORCH),
    Sample("torch-tar-checkpoint", "pytorch-tar", False, _tar,
           "the oldest torch.save layout (tar of sys_info, pickle, storages, tensors)"),
    # malicious
    Sample("torch-zip-payload-data-pkl", "pytorch-zip", True, _zip_payload,
           "real torch.save archive whose data.pkl is replaced by an os.system payload",
           min_severity="critical", needs=_TORCH),
    Sample("torch-zip-payload-handmade", "pytorch-zip", True, _zip_no_torch,
           "minimal torch zip (data.pkl, byteorder, version) with a payload data.pkl",
           min_severity="critical"),
    Sample("torch-zip-second-pickle", "pytorch-zip", True, _zip_second_pickle,
           "payload in a second .pkl member next to a benign data.pkl",
           min_severity="critical", needs=_TORCH),
    Sample("torch-zip-pickle-other-extension", "pytorch-zip", True, _zip_other_extension,
           "payload pickle in a member named .bin (torch.load(pickle_file=...) loads any "
           "name); scanners that pick pickles by extension miss it", source=CVE_EXTENSION,
           min_severity="critical", needs=_TORCH),
    Sample("torch-zip-first-folder", "pytorch-zip", True, _zip_first_folder,
           "payload data.pkl in the folder of the first entry (the one torch reads), the "
           "benign checkpoint in another", min_severity="critical", needs=_TORCH),
    Sample("torch-zip-local-name-mismatch", "pytorch-zip", True, _zip_local_name,
           "payload data.pkl whose local header name differs from the central directory: "
           "zipfile refuses it, PyTorch reads it", source=CVE_LOCAL_NAME,
           min_severity="critical", needs=_TORCH),
    Sample("torch-zip-flag-bits", "pytorch-zip", True, _zip_flag_bits,
           "payload data.pkl with general-purpose flag bit 5 set: zipfile refuses to open it",
           source=CVE_FLAG_BITS, min_severity="critical", needs=_TORCH),
    Sample("torch-legacy-payload", "pytorch-legacy", True, _legacy_payload,
           "legacy layout whose data pickle is an os.system payload", min_severity="critical"),
    Sample("torch-legacy-payload-in-keys", "pytorch-legacy", True, _legacy_payload_in_keys,
           "legacy layout with the payload in the storage-keys pickle after the data",
           min_severity="critical"),
    Sample("torch-tar-payload", "pytorch-tar", True, _tar_payload,
           "tar layout whose pickle member is an os.system payload", min_severity="critical"),
    Sample("torchscript-malicious-constants", "torchscript", True, _torchscript_constants,
           "TorchScript archive whose constants.pkl is an os.system payload",
           min_severity="critical", needs=_TORCH),
    Sample("torchscript-file-write-op", "torchscript", True, _torchscript_file_write,
           "TorchScript code that calls torch.save (aten::save) to write a file when run",
           min_severity="high", rule="torchscript-system-op", needs=_TORCH),
    Sample("torchscript-python-code", "torchscript", True, _torchscript_python,
           "Python code (__import__('os').system) spliced into TorchScript source",
           min_severity="high", rule="torchscript-python-code", needs=_TORCH),
]

"""Format detection from content, never from the file name.

Scanners that pick a parser by extension are bypassed by renaming: a pickle called
``weights.safetensors`` is simply not looked at. :func:`sniff` reads a file's first bytes (and,
for zip and tar containers, their member names) and names the format a loader would see.

Format ids:

========================  ==================================================================
``pickle``                pickle stream, protocol 0 to 5 (also joblib files)
``pytorch-legacy``        ``torch.save`` before 1.6: pickles after a magic-number pickle
``pytorch-zip``           ``torch.save`` zip archive (``*/data.pkl``)
``torchscript``           TorchScript archive (``*/code/`` or ``*/constants.pkl``)
``pytorch-tar``           the oldest ``torch.save`` tar layout (``sys_info``, ``pickle``)
``npy`` / ``npz``         NumPy array / zip of arrays
``keras``                 Keras 3 ``.keras`` zip (``config.json`` + ``metadata.json``)
``zip`` / ``tar``         other archives, scanned member by member
``gzip``/``bz2``/``xz``   compressed streams, scanned after bounded decompression
``hdf5``                  HDF5 (Keras ``.h5`` models among them)
``safetensors``           safetensors (length-prefixed JSON header)
``gguf``                  GGUF (llama.cpp)
``onnx``                  ONNX ``ModelProto``
``savedmodel``            TensorFlow ``SavedModel`` protocol buffer
``json`` / ``text``       configuration and text (not a model format)
``empty`` / ``unknown``   nothing to scan / no format recognised
========================  ==================================================================
"""

from __future__ import annotations

import io
import pickletools
import struct
import tarfile
import zipfile
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from phalanx.supplychain.scan.base import Source

__all__ = ["FORMATS", "sniff", "sniff_bytes", "zip_kind"]

FORMATS: tuple[str, ...] = (
    "pickle", "pytorch-legacy", "pytorch-zip", "torchscript", "pytorch-tar", "npy", "npz",
    "keras", "zip", "tar", "gzip", "bz2", "xz", "hdf5", "safetensors", "gguf", "onnx",
    "savedmodel", "json", "text", "empty", "unknown",
)

#: ``torch.save``'s legacy format starts with a pickled magic number (protocol 2, LONG1).
_TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_HEAD = 4096


def sniff(source: Source) -> str:
    """The format of ``source``, from its content (see the module docstring for the ids)."""
    if source.size == 0:
        return "empty"
    head = source.head(_HEAD)
    fmt = sniff_bytes(head, size=source.size)
    if fmt == "zip":
        with source.open() as fh:
            return zip_kind(fh)
    if fmt == "tar":
        with source.open() as fh:
            return _tar_kind(fh)
    if fmt == "hdf5?":
        with source.open() as fh:
            return "hdf5" if _hdf5_userblock(fh) else "unknown"
    if fmt == "protobuf?":
        with source.open() as fh:
            return _protobuf_kind(fh, source.size)
    return fmt


def sniff_bytes(head: bytes, *, size: int | None = None) -> str:
    """The format announced by a file's first bytes (containers not refined).

    May return ``"hdf5?"`` or ``"protobuf?"``, which :func:`sniff` settles by reading more.
    """
    if not head:
        return "empty"
    size = len(head) if size is None else size
    if head.startswith(_ZIP_MAGICS):
        return "zip"
    if head.startswith(_TORCH_LEGACY_MAGIC):
        return "pytorch-legacy"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(_HDF5_MAGIC):
        return "hdf5"
    if head.startswith(b"GGUF"):
        return "gguf"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"BZh") and len(head) > 3 and head[3:4].isdigit():
        return "bz2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if len(head) > 262 and head[257:262] == b"ustar":
        return "tar"
    if _is_safetensors(head, size):
        return "safetensors"
    if head[0] == 0x80 and len(head) > 1 and 2 <= head[1] <= 5:
        return "pickle"
    if _looks_like_pickle(head):
        return "pickle"
    text = _text_kind(head)
    if text:
        return text
    if head[0] == 0x08:  # protobuf field 1, varint: ONNX ir_version, SavedModel schema version
        return "protobuf?"
    if size > 512:  # an HDF5 superblock may follow a user block of 512 * 2**k bytes
        return "hdf5?"
    return "unknown"


def _is_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 2 <= n <= size - 8 and head[8:9] == b"{"


def _looks_like_pickle(head: bytes) -> bool:
    """Protocol 0/1 pickles have no header: parse the first opcodes and see if they hold."""
    if head[:1] not in _PICKLE_START:
        return False
    seen = 0
    try:
        for opcode, _arg, _pos in pickletools.genops(io.BytesIO(head)):
            seen += 1
            if opcode.name == "STOP" or seen >= 64:
                return True
    except (ValueError, UnicodeDecodeError, struct.error):
        # a head cut mid-opcode is still a pickle if what came before parsed
        return len(head) >= _HEAD and seen >= 8
    return False


# Opcodes a protocol 0/1 pickle plausibly starts with.
_PICKLE_START = frozenset(
    bytes([c]) for c in b"(c]})NILFSVUTXGKJMdltiq.\x88\x89\x8a\x8b"
)


def _text_kind(head: bytes) -> str | None:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # a multi-byte character cut at the end of the head is still text
        try:
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return None
    if any(ch in text for ch in "\x00\x01\x02\x03\x04\x05\x06\x07\x0e\x0f\x10\x1b\x7f"):
        return None
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped[:1] in ("{", "["):
        return "json"
    return "text"


def zip_kind(fh: io.BufferedIOBase | io.RawIOBase | io.BytesIO | object) -> str:
    """Refine a zip archive: ``pytorch-zip``, ``torchscript``, ``keras``, ``npz`` or ``zip``."""
    try:
        with zipfile.ZipFile(fh) as zf:  # type: ignore[arg-type]
            names = zf.namelist()[:100_000]
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
        return "zip"  # the archive scanner reports what is wrong with it
    if not names:
        return "zip"
    roots = {n.split("/", 1)[0] for n in names}
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names) and len(roots) == 1:
        return "torchscript"
    if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        return "pytorch-zip"
    if "config.json" in names and ("metadata.json" in names or "model.weights.h5" in names):
        return "keras"
    if all(n.endswith(".npy") for n in names):
        return "npz"
    return "zip"


def _tar_kind(fh: object) -> str:
    try:
        with tarfile.open(fileobj=fh, mode="r:") as tf:  # type: ignore[call-overload]
            names = set()
            for i, member in enumerate(tf):
                names.add(member.name)
                if i > 16:
                    break
    except (tarfile.TarError, OSError, ValueError, EOFError):
        return "tar"
    if {"sys_info", "pickle"} <= names or {"pickle", "storages"} <= names:
        return "pytorch-tar"
    return "tar"


def _hdf5_userblock(fh: object) -> bool:
    offset = 512
    while offset <= 1 << 20:
        fh.seek(offset)  # type: ignore[attr-defined]
        if fh.read(8) == _HDF5_MAGIC:  # type: ignore[attr-defined]
            return True
        offset *= 2
    return False


def _varint(fh: object) -> int | None:
    result = 0
    for shift in range(0, 70, 7):
        b = fh.read(1)  # type: ignore[attr-defined]
        if not b:
            return None
        result |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return result
    return None


def _protobuf_kind(fh: object, size: int) -> str:
    """Walk the top-level protobuf fields (skipping payloads) and name the message."""
    fields: dict[int, int] = {}
    for _ in range(10_000):
        pos = fh.tell()  # type: ignore[attr-defined]
        if pos >= size:
            break
        key = _varint(fh)
        if key is None:
            return "unknown"
        number, wire = key >> 3, key & 7
        if number == 0:
            return "unknown"
        if wire == 0:
            if _varint(fh) is None:
                return "unknown"
        elif wire == 2:
            length = _varint(fh)
            if length is None or fh.tell() + length > size:  # type: ignore[attr-defined]
                return "unknown"
            fh.seek(length, 1)  # type: ignore[attr-defined]
        elif wire == 1:
            fh.seek(8, 1)  # type: ignore[attr-defined]
        elif wire == 5:
            fh.seek(4, 1)  # type: ignore[attr-defined]
        else:
            return "unknown"
        fields[number] = wire
    # ONNX ModelProto: ir_version = 1 (varint), graph = 7, opset_import = 8 (messages).
    if fields.get(1) == 0 and fields.get(7) == 2:
        return "onnx"
    # SavedModel: saved_model_schema_version = 1 (varint), meta_graphs = 2 (messages).
    if fields.get(2) == 2 and set(fields) <= {1, 2}:
        return "savedmodel"
    return "unknown"

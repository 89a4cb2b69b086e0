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
``zlib`` / ``lzma``       bare zlib and LZMA-alone streams (compressed joblib files)
``lz4`` / ``zstd``        frames the scanner cannot decompress: reported, never passed
``hdf5``                  HDF5 (Keras ``.h5`` models among them)
``safetensors``           safetensors (length-prefixed JSON header)
``gguf``                  GGUF (llama.cpp)
``onnx``                  ONNX ``ModelProto``
``savedmodel``            TensorFlow ``SavedModel`` protocol buffer
``json`` / ``text``       configuration and text (JSON: Hugging Face custom code, shards)
``empty`` / ``unknown``   nothing to scan / no format recognised
========================  ==================================================================
"""

from __future__ import annotations

import io
import lzma
import pickletools
import re
import struct
import tarfile
import zipfile
import zlib
from typing import TYPE_CHECKING, BinaryIO

from phalanx.supplychain.scan._quiet import file_text_warnings_ignored

if TYPE_CHECKING:
    from phalanx.supplychain.scan.base import Source

__all__ = ["FORMATS", "UNSCANNABLE", "sniff", "sniff_bytes", "zip_kind"]

FORMATS: tuple[str, ...] = (
    "pickle", "pytorch-legacy", "pytorch-zip", "torchscript", "pytorch-tar", "npy", "npz",
    "keras", "zip", "tar", "gzip", "bz2", "xz", "zlib", "lzma", "lz4", "zstd", "hdf5", "safetensors", "gguf", "onnx",
    "savedmodel", "json", "text", "empty", "unknown",
)

#: Compressed formats the scanner recognises but cannot open (no decompressor in the standard
#: library): a file in one of them fails the scan instead of passing unseen.
UNSCANNABLE: frozenset[str] = frozenset({"lz4", "zstd"})

#: ``torch.save``'s legacy format starts with a pickled magic number (protocol 2, LONG1).
_TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_HEAD = 4096


def sniff(source: Source, *,
          zip_directories: dict[str, list[zipfile.ZipInfo]] | None = None) -> str:
    """The format of ``source``, from its content (see the module docstring for the ids).

    Args:
        source: What to sniff.
        zip_directories: Where a zip's central directory, as :mod:`zipfile` read it to refine
            the format, is kept under the source's name, for its scanner to reuse.
    """
    if source.size == 0:
        return "empty"
    head = source.head(_HEAD)
    fmt = sniff_bytes(head, size=source.size)
    if fmt == "zip":
        with source.open() as fh:
            return _zip_kind(fh, source.name, zip_directories)
    if fmt == "tar":
        with source.open() as fh:
            return _tar_kind(fh)
    if fmt == "protobuf?" or (fmt in ("text", "hdf5?", "unknown") and _protobuf_start(head)):
        # Protobuf fields may come in any order and the SavedModel schema version is
        # optional, so an ONNX or SavedModel file can start with any top-level field's key,
        # even one that looks like text: walk the fields before settling for another answer.
        with source.open() as fh:
            kind = _protobuf_kind(fh, source.size)
        if kind != "unknown":
            return kind
        if fmt == "protobuf?":
            fmt = "hdf5?" if source.size > 512 else "unknown"
    if fmt in ("hdf5?", "text", "json", "unknown") and source.size > 512:
        # The HDF5 library also finds a superblock after a user block of 512 * 2**k bytes,
        # whatever the user block holds (text, or a protobuf-looking first byte).
        with source.open() as fh:
            if _hdf5_userblock(fh):
                return "hdf5"
    fmt = "unknown" if fmt == "hdf5?" else fmt
    if fmt in ("unknown", "text", "json") and source.size >= 22:
        # Python's zipfile (and so Keras, and any loader built on it) finds an archive by the
        # end record at the end of the file, whatever comes first: a zip behind junk.
        with source.open() as fh:
            if _has_zip_end_record(fh, source.size):
                fh.seek(0)
                return _zip_kind(fh, source.name, zip_directories)
    return fmt


def _has_zip_end_record(fh: BinaryIO, size: int) -> bool:
    tail = min(size, 65_535 + 22)
    fh.seek(size - tail)
    data = fh.read(tail)
    at = data.rfind(b"PK\x05\x06")
    return at >= 0 and len(data) - at >= 22


def sniff_bytes(head: bytes, *, size: int | None = None) -> str:
    """The format announced by a file's first bytes (containers not refined).

    May return ``"hdf5?"`` or ``"protobuf?"``, which :func:`sniff` settles by reading more.
    """
    if not head:
        return "empty"
    size = len(head) if size is None else size
    if head.startswith(_ZIP_MAGICS):
        return "zip"
    if head.startswith(_TORCH_LEGACY_MAGIC) or (
        head[:1] == b"\x80" and _TORCH_LEGACY_MAGIC[2:] in head[:32]
    ):  # the magic number pickled with any protocol (torch.save's pickle_protocol)
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
    if head.startswith(b"\x04\x22\x4d\x18"):
        return "lz4"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    if len(head) > 262 and head[257:262] == b"ustar":
        return "tar"
    if _is_safetensors(head, size):
        return "safetensors"
    if head[0] == 0x80 and len(head) > 1 and 2 <= head[1] <= 5:
        return "pickle"
    if _looks_like_pickle(head):
        return "pickle"
    if _is_zlib(head):
        return "zlib"
    if _is_lzma_alone(head):
        return "lzma"
    text = _text_kind(head)
    if text:
        return text
    if head[0] == 0x08:  # protobuf field 1, varint: ONNX ir_version, SavedModel schema version
        return "protobuf?"
    if size > 512:  # an HDF5 superblock may follow a user block of 512 * 2**k bytes
        return "hdf5?"
    return "unknown"


def _is_zlib(head: bytes) -> bool:
    """A zlib stream (RFC 1950): deflate, window <= 32 KiB, header checksum, and it inflates."""
    if len(head) < 3 or head[0] & 0x0F != 8 or head[0] >> 4 > 7:
        return False
    if (head[0] << 8 | head[1]) % 31 or head[1] & 0x20:  # no preset dictionaries
        return False
    try:
        zlib.decompressobj().decompress(head, 256)
    except zlib.error:
        return False
    return True


def _is_lzma_alone(head: bytes) -> bool:
    """An LZMA-alone (``.lzma``) stream: no magic number, so its properties must decode."""
    if len(head) < 14 or head[0] >= 9 * 5 * 5:
        return False
    dict_size = int.from_bytes(head[1:5], "little")
    if dict_size < 4096 or dict_size > 1 << 30:
        return False
    try:
        lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(head, 256)
    except lzma.LZMAError:
        return False
    return True


def _is_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    # A declared length past the end of the file is still safetensors (a malformed one):
    # the scanner reports it rather than letting it pass as an unknown format.
    return n >= 2 and head[8:9] == b"{"


def _looks_like_pickle(head: bytes) -> bool:
    """Protocol 0/1 pickles (and headerless higher-protocol ones) have no magic number.

    The unpickler runs whatever opcodes it finds until ``STOP`` or an error, so a stream is
    taken for a pickle when its opcodes parse to a ``STOP``, or when they parse for a while
    (8 opcodes, or 3 that import or call something) before breaking off: a payload followed
    by garbage still runs.
    """
    if head[0] not in _OPCODE_BYTES:
        return False
    if head[:1] in (b"I", b"L") and _python_int_line(head):
        return True  # INT/LONG arguments the unpickler reads with int(x, 0) but pickletools not
    seen = 0
    imports = False
    with file_text_warnings_ignored():  # invalid escapes in STRING args
        try:
            for opcode, arg, _pos in pickletools.genops(io.BytesIO(head)):
                seen += 1
                if opcode.name in ("GLOBAL", "INST"):
                    if not _IMPORT_ARG.fullmatch(str(arg)):
                        return False  # text that happens to start like a GLOBAL opcode
                    imports = True
                imports = imports or opcode.name == "STACK_GLOBAL"
                if opcode.name == "STOP" or seen >= 64:
                    return True
        except (ValueError, UnicodeDecodeError, struct.error):
            pass
    return seen >= 8 or (imports and seen >= 3)


_OPCODE_BYTES = frozenset(op.code.encode("latin-1")[0] for op in pickletools.opcodes)
#: ``GLOBAL``/``INST`` arguments as pickletools renders them: "module name", dotted names.
_IMPORT_ARG = re.compile(r"[A-Za-z_][\w.]* [A-Za-z_][\w.]*")


def _python_int_line(head: bytes) -> bool:
    line = head[1:].split(b"\n", 1)[0].rstrip(b"L")
    try:
        int(line.decode("ascii"), 0)
    except (UnicodeDecodeError, ValueError):
        return False
    return b"\n" in head


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
    # Whitespace all through the head: a JSON parser skips it, so a config padded past the
    # head is still JSON to its loader, and must be to the scan.
    if not stripped or stripped[:1] in ("{", "["):
        return "json"
    return "text"


def zip_kind(fh: BinaryIO) -> str:
    """Refine a zip archive: ``pytorch-zip``, ``torchscript``, ``keras``, ``npz`` or ``zip``."""
    return _zip_kind(fh, "", None)


def _zip_kind(fh: BinaryIO, name: str,
              directories: dict[str, list[zipfile.ZipInfo]] | None) -> str:
    try:
        with zipfile.ZipFile(fh) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
        return "zip"  # the archive scanner reports what is wrong with it
    if directories is not None:
        directories[name] = infos
    names = [info.filename for info in infos[:100_000]]
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


def _tar_kind(fh: BinaryIO) -> str:
    try:
        with tarfile.open(fileobj=fh, mode="r:") as tf:
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


#: First bytes of the top-level fields of ONNX ``ModelProto`` (ir_version 1, producer 2-3,
#: domain 4, model_version 5, doc_string 6, graph 7, opset_import 8, metadata_props 14,
#: training_info 20, functions 25) and of ``SavedModel`` (schema version 1, meta graphs 2).
_PROTOBUF_KEYS = frozenset({0x08, 0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72})
_PROTOBUF_LONG_KEYS = (b"\xa2\x01", b"\xca\x01")


def _protobuf_start(head: bytes) -> bool:
    return head[0] in _PROTOBUF_KEYS or head.startswith(_PROTOBUF_LONG_KEYS)


def _hdf5_userblock(fh: BinaryIO) -> bool:
    offset = 512
    while offset <= 1 << 20:
        fh.seek(offset)
        if fh.read(8) == _HDF5_MAGIC:
            return True
        offset *= 2
    return False


def _varint(fh: BinaryIO) -> int | None:
    result = 0
    for shift in range(0, 70, 7):
        b = fh.read(1)
        if not b:
            return None
        result |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return result
    return None


def _protobuf_kind(fh: BinaryIO, size: int) -> str:
    """Walk the top-level protobuf fields (skipping payloads) and name the message."""
    fields: dict[int, int] = {}
    for _ in range(10_000):
        pos = fh.tell()
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
            if length is None or fh.tell() + length > size:
                return "unknown"
            fh.seek(length, 1)
        elif wire == 1:
            fh.seek(8, 1)
        elif wire == 5:
            fh.seek(4, 1)
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

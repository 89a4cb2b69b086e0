"""Corpus samples: zip, tar and compressed containers, malicious and benign.

The zip layouts that :mod:`zipfile` refuses to write (overlapping entries, entries missing
from the central directory) are assembled byte by byte with the helpers below, which the unit
tests (``test_archive.py``) use as well. Payload pickles are raw opcodes (``GLOBAL os system``
then ``REDUCE``); nothing here pickles a live object.
"""

from __future__ import annotations

import io
import lzma
import struct
import tarfile
import warnings
import zipfile
import zlib
from pathlib import Path

from corpus import Sample

ZIP_SLIP = "https://github.com/snyk/zip-slip-vulnerability"
FIFIELD = "https://www.bamsoftware.com/hacks/zipbomb/ (Fifield, 'A better zip bomb', WOOT 2019)"
CVE_TARFILE = "CVE-2007-4559"
MASTER_KEY = "CVE-2013-4787"
ZIP_PARSERS = ("'My ZIP isn't your ZIP: Identifying and Exploiting Semantic Gaps Between ZIP "
               "Parsers', USENIX Security 2025")


# --------------------------------------------------------------------------------------------
# Builders shared with the unit tests


def payload_pickle(canary: Path) -> bytes:
    """A protocol-2 pickle that would run ``touch <canary>`` through ``os.system``."""
    cmd = f"touch {canary}".encode()
    return (b"\x80\x02cos\nsystem\nX" + struct.pack("<I", len(cmd)) + cmd
            + b"\x85R.")


#: A harmless pickle: ``{}``.
BENIGN_PICKLE = b"\x80\x02}q\x00."


def zip_bytes(members: list[tuple[str, bytes]],
              compression: int = zipfile.ZIP_STORED) -> bytes:
    """A zip written by :mod:`zipfile` (duplicate names allowed)."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names
        with zipfile.ZipFile(buf, "w", compression=compression) as zf:
            for name, data in members:
                zf.writestr(name, data)
    return buf.getvalue()


def tar_bytes(members: list[tarfile.TarInfo | tuple[str, bytes]], mode: str = "w") -> bytes:
    """A tar (``mode="w:gz"`` etc. for compressed) of ``(name, data)`` or bare headers."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:  # type: ignore[call-overload]
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tf.addfile(member)
            else:
                info = tarfile.TarInfo(member[0])
                info.size = len(member[1])
                tf.addfile(info, io.BytesIO(member[1]))
    return buf.getvalue()


def link(name: str, target: str, *, hard: bool = False) -> tarfile.TarInfo:
    """A tar symbolic (or hard) link header."""
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    return info


def local_header(name: bytes, *, crc: int, csize: int, usize: int, method: int = 0,
                 flags: int = 0) -> bytes:
    """A zip local file header (APPNOTE 4.3.7)."""
    return struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, flags, method, 0, 0x21, crc, csize,
                       usize, len(name), 0) + name


def central_header(name: bytes, *, crc: int, csize: int, usize: int, offset: int,
                   method: int = 0, flags: int = 0) -> bytes:
    """A zip central directory file header (APPNOTE 4.3.12)."""
    return struct.pack("<4s6H3I5H2I", b"PK\x01\x02", 20, 20, flags, method, 0, 0x21, crc,
                       csize, usize, len(name), 0, 0, 0, 0, 0, offset) + name


def end_record(count: int, cd_size: int, cd_offset: int) -> bytes:
    """A zip end-of-central-directory record (APPNOTE 4.3.16)."""
    return struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, count, count, cd_size, cd_offset, 0)


def raw_zip(entries: list[tuple[bytes, bytes]], *, prefix: bytes = b"") -> bytes:
    """A stored zip assembled by hand after ``prefix`` (offsets absolute)."""
    body, central = bytearray(prefix), bytearray()
    for name, data in entries:
        crc = zlib.crc32(data)
        central += central_header(name, crc=crc, csize=len(data), usize=len(data),
                                  offset=len(body))
        body += local_header(name, crc=crc, csize=len(data), usize=len(data)) + data
    return bytes(body + central + end_record(len(entries), len(central), len(body)))


def _deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def overlap_bomb(kernel_size: int = 1 << 20, files: int = 30) -> bytes:
    """Fifield's overlapping zip bomb with quoted local headers ("A better zip bomb", §4).

    Every entry's deflate stream begins with a non-final stored block that quotes the next
    entry's local header, then runs into that entry's data, down to one shared kernel: each
    of the ``files`` entries expands to about ``kernel_size`` bytes although the kernel is
    stored once. All CRCs and sizes are correct, so a loader extracts every entry.
    """
    kernel_out = b"\x00" * kernel_size
    kernel = _deflate(kernel_out)
    names = [f"part{i:02d}.bin".encode() for i in range(files)]
    # Built from the last entry to the first: each header quotes the one after it.
    headers: list[bytes] = []
    csize, usize = len(kernel), kernel_size
    crc = zlib.crc32(kernel_out)
    sizes: list[tuple[int, int, int]] = []
    following = b""  # the local headers quoted after this entry's own, in file order
    for i in reversed(range(files)):
        header = local_header(names[i], crc=crc, csize=csize, usize=usize, method=8)
        headers.insert(0, header)
        sizes.insert(0, (crc, csize, usize))
        following = header + following
        crc = zlib.crc32(kernel_out, zlib.crc32(following))
        csize += 5 + len(header)
        usize += len(header)
    body = bytearray()
    offsets = []
    for i, header in enumerate(headers):
        offsets.append(len(body))
        body += header
        if i + 1 < files:
            quoted = len(headers[i + 1])
            body += b"\x00" + struct.pack("<HH", quoted, quoted ^ 0xFFFF)
    body += kernel
    central = bytearray()
    for name, offset, (crc_i, csize_i, usize_i) in zip(names, offsets, sizes, strict=True):
        central += central_header(name, crc=crc_i, csize=csize_i, usize=usize_i,
                                  offset=offset, method=8)
    return bytes(body + central + end_record(files, len(central), len(body)))


def hidden_entry_zip(hidden: tuple[str, bytes], visible: list[tuple[str, bytes]]) -> bytes:
    """A zip whose first local entry is missing from the central directory.

    Readers of the central directory (Python's zipfile, PyTorch) see only ``visible``;
    readers that stream local headers from the start of the file extract ``hidden`` first.
    """
    name, data = hidden[0].encode(), hidden[1]
    orphan = local_header(name, crc=zlib.crc32(data), csize=len(data), usize=len(data)) + data
    return raw_zip([(n.encode(), d) for n, d in visible], prefix=orphan)


# --------------------------------------------------------------------------------------------
# Samples


def _write(out_dir: Path, name: str, data: bytes) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    path.write_bytes(data)
    return path


def _zip_slip(out: Path, canary: Path) -> Path:
    return _write(out, "update.zip", zip_bytes([
        ("README.txt", b"model update\n"),
        ("../../../../../../tmp/phalanx-zip-slip.sh", f"touch {canary}\n".encode()),
    ]))


def _zip_ratio_bomb(out: Path, canary: Path) -> Path:
    return _write(out, "weights.zip", zip_bytes([("weights.bin", b"\x00" * (32 << 20))],
                                                zipfile.ZIP_DEFLATED))


def _zip_overlap_bomb(out: Path, canary: Path) -> Path:
    return _write(out, "bomb.zip", overlap_bomb())


def _zip_pickle(out: Path, canary: Path) -> Path:
    return _write(out, "bundle.zip", zip_bytes([("config.json", b'{"layers": 2}'),
                                                ("weights/model.pkl", payload_pickle(canary))],
                                               zipfile.ZIP_DEFLATED))


def _zip_nested(out: Path, canary: Path) -> Path:
    inner = zip_bytes([("model.pkl", payload_pickle(canary))], zipfile.ZIP_DEFLATED)
    middle = zip_bytes([("inner.zip", inner)], zipfile.ZIP_DEFLATED)
    return _write(out, "outer.zip", zip_bytes([("README.txt", b"nested\n"),
                                               ("middle.zip", middle)]))


def _zip_duplicate(out: Path, canary: Path) -> Path:
    return _write(out, "dup.zip", zip_bytes([("model.pkl", BENIGN_PICKLE),
                                             ("model.pkl", payload_pickle(canary))]))


def _zip_hidden_entry(out: Path, canary: Path) -> Path:
    return _write(out, "model.zip", hidden_entry_zip(
        ("model.pkl", payload_pickle(canary)),
        [("config.json", b'{"ok": true}'), ("README.txt", b"benign\n")]))


def _tar_traversal(out: Path, canary: Path) -> Path:
    return _write(out, "checkpoint.tar", tar_bytes([
        ("model/config.json", b"{}"),
        ("../../../../tmp/phalanx-tar-escape.sh", f"touch {canary}\n".encode()),
    ]))


def _tar_symlink(out: Path, canary: Path) -> Path:
    return _write(out, "checkpoint.tar", tar_bytes([
        link("cfg", "/etc/cron.d"),
        ("cfg/phalanx", f"* * * * * root touch {canary}\n".encode()),
    ]))


def _targz_pickle(out: Path, canary: Path) -> Path:
    return _write(out, "checkpoint.tar.gz", tar_bytes([
        ("checkpoint/config.json", b'{"epochs": 3}'),
        ("checkpoint/model.pkl", payload_pickle(canary)),
    ], mode="w:gz"))


def _xz_pickle(out: Path, canary: Path) -> Path:
    return _write(out, "model.pkl.xz", lzma.compress(payload_pickle(canary)))


def _zip_benign(out: Path, canary: Path) -> Path:
    return _write(out, "config.zip", zip_bytes([
        ("config.json", b'{"hidden_size": 128, "layers": 4}'),
        ("tokenizer/vocab.txt", b"[PAD]\n[UNK]\nthe\nof\n"),
        ("README.md", b"# Model card\n\nA small model.\n"),
    ], zipfile.ZIP_DEFLATED))


def _targz_benign(out: Path, canary: Path) -> Path:
    return _write(out, "bundle.tar.gz", tar_bytes([
        ("bundle/config.json", b'{"hidden_size": 128}'),
        ("bundle/vocab.txt", b"a\nb\nc\n"),
        link("bundle/latest.json", "config.json"),
    ], mode="w:gz"))


SAMPLES = [
    Sample("zip-path-traversal", "zip", True, _zip_slip,
           "zip member named ../../.. (Zip Slip): extraction writes outside the target",
           ZIP_SLIP, "high", "archive-path-traversal"),
    Sample("zip-bomb-ratio", "zip", True, _zip_ratio_bomb,
           "32 MiB of zeros deflated ~1000:1: a classic decompression bomb",
           FIFIELD, "high", "archive-bomb-ratio"),
    Sample("zip-bomb-overlap", "zip", True, _zip_overlap_bomb,
           "quoted-overlap zip bomb: 30 entries share one deflate kernel",
           FIFIELD, "high", "zip-overlapping-entries"),
    Sample("zip-pickle-payload", "zip", True, _zip_pickle,
           "plain zip holding a pickle that runs os.system", "", "high"),
    Sample("zip-nested-payload", "zip", True, _zip_nested,
           "payload pickle three zips deep (zip in zip in zip)", "", "high"),
    Sample("zip-duplicate-name", "zip", True, _zip_duplicate,
           "two members named model.pkl; zipfile loads the second, malicious one",
           MASTER_KEY, "medium", "archive-duplicate-name"),
    Sample("zip-prepended-hidden-entry", "zip", True, _zip_hidden_entry,
           "payload local entry before the archive, missing from the central directory",
           ZIP_PARSERS, "medium", "zip-prepended-data"),
    Sample("tar-path-traversal", "tar", True, _tar_traversal,
           "tar member named ../../.. (tarfile extractall follows it)",
           CVE_TARFILE, "high", "archive-path-traversal"),
    Sample("tar-symlink-escape", "tar", True, _tar_symlink,
           "symlink to /etc/cron.d, then a member written through it",
           CVE_TARFILE, "high", "archive-link-escape"),
    Sample("targz-pickle-payload", "gzip", True, _targz_pickle,
           "tar.gz checkpoint holding a pickle that runs os.system", "", "high"),
    Sample("xz-pickle-payload", "xz", True, _xz_pickle,
           "xz-compressed pickle that runs os.system", "", "high"),
    Sample("zip-benign-json-text", "zip", False, _zip_benign,
           "deflated zip of JSON and text"),
    Sample("targz-benign", "gzip", False, _targz_benign,
           "tar.gz of configuration files with a link inside the archive"),
]

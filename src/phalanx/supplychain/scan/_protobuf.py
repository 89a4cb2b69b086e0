"""A minimal, bounded reader of the protocol-buffer wire format, for scanners.

Model formats built on protocol buffers (ONNX ``ModelProto``, TensorFlow ``SavedModel``) are
read here without generated code, without TensorFlow and without ``onnx``: a message is a
range of a buffer, and its fields are decoded on demand. Payloads that a scan does not need
(tensor contents, weights) are skipped, never copied, so a memory-mapped multi-gigabyte file
costs little more than its structure.

Every read is bounded: a :class:`Budget` shared by all the messages of one file counts the
fields decoded and limits nesting depth, and any inconsistency (a length past the end of its
message, a truncated varint, a group or reserved wire type) raises :class:`ProtobufError`
with the offset, which scanners turn into a *malformed* finding.

Example:
    >>> msg = Message(b"\\x08\\x01\\x12\\x03abc")
    >>> msg.integer(1), msg.string(2)
    (1, 'abc')
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from phalanx.core.findings import Finding
    from phalanx.supplychain.scan.base import ScanSession, Source

__all__ = ["Budget", "Message", "ProtobufError", "Value", "mapped", "problem_finding",
           "read_varint"]

WIRE_VARINT, WIRE_I64, WIRE_LEN, WIRE_I32 = 0, 1, 2, 5

Buffer = bytes | bytearray | memoryview | mmap.mmap


class ProtobufError(ValueError):
    """The bytes are not a well-formed protocol buffer (or a bound was reached).

    Args:
        message: What is wrong.
        offset: Byte offset in the buffer where it went wrong.
        limit: Whether a resource bound, rather than the data, stopped the read.
    """

    def __init__(self, message: str, offset: int = 0, *, limit: bool = False) -> None:
        super().__init__(message)
        self.offset = offset
        self.limit = limit


def problem_finding(session: ScanSession, source: Source, exc: ProtobufError, *,
                    what: str, scanner: str, fmt: str) -> Finding:
    """The finding for a protocol buffer that stopped the scan: a scan error when a bound
    stopped it (the file may be fine, but is unscanned), malformed otherwise."""
    if exc.limit:
        return session.error(source, f"{what}: {exc}", scanner=scanner, fmt=fmt)
    return session.malformed(source, f"protobuf: {exc}", scanner=scanner, fmt=fmt,
                             offset=exc.offset)


@dataclass
class Budget:
    """Resource bounds shared by every message read from one buffer.

    Args:
        max_fields: Most fields decoded in total (a bound on CPU time).
        max_depth: Deepest message nesting followed.
    """

    max_fields: int = 20_000_000
    max_depth: int = 100
    used: int = 0

    def spend(self, offset: int) -> None:
        """Count one field; raise once the budget is spent."""
        self.used += 1
        if self.used > self.max_fields:
            raise ProtobufError(f"more than {self.max_fields} fields", offset, limit=True)


def read_varint(buf: Buffer, pos: int, end: int) -> tuple[int, int]:
    """Decode a base-128 varint at ``pos``; return ``(value, next position)``."""
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise ProtobufError("truncated varint", pos)
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ProtobufError("varint longer than 10 bytes", pos)


class Message:
    """One message: the bytes ``buf[start:end]``, decoded field by field on demand.

    Args:
        buf: The whole buffer (bytes, or a memoryview of a memory-mapped file).
        start: Offset of the message's first byte.
        end: Offset past its last byte (the buffer's end by default).
        budget: Bounds shared with the messages it contains.
        depth: Nesting depth (0 for the top-level message).
    """

    __slots__ = ("budget", "buf", "depth", "end", "start")

    def __init__(self, buf: Buffer, start: int = 0, end: int | None = None, *,
                 budget: Budget | None = None, depth: int = 0) -> None:
        self.buf = buf
        self.start = start
        self.end = len(buf) if end is None else end
        self.budget = budget if budget is not None else Budget()
        self.depth = depth
        if depth > self.budget.max_depth:
            raise ProtobufError(f"messages nested deeper than {self.budget.max_depth}", start,
                                limit=True)

    def __len__(self) -> int:
        return self.end - self.start

    def fields(self) -> Iterator[tuple[int, int, int, int]]:
        """Every field as ``(number, wire type, value, end)``.

        ``value`` is the integer for varint and fixed-width fields (``end`` is then 0), and
        the payload's first offset for length-delimited ones (``end`` its last offset + 1).
        """
        buf, pos, end, budget = self.buf, self.start, self.end, self.budget
        while pos < end:
            budget.spend(pos)
            key, pos = read_varint(buf, pos, end)
            number, wire = key >> 3, key & 7
            if number == 0:
                raise ProtobufError("field number 0", pos)
            if wire == WIRE_VARINT:
                value, pos = read_varint(buf, pos, end)
                yield number, wire, value, 0
            elif wire == WIRE_LEN:
                length, pos = read_varint(buf, pos, end)
                if length > end - pos:
                    raise ProtobufError(f"field {number} runs past the end of its message", pos)
                yield number, wire, pos, pos + length
                pos += length
            elif wire == WIRE_I64:
                if pos + 8 > end:
                    raise ProtobufError("truncated 64-bit field", pos)
                yield number, wire, int.from_bytes(buf[pos:pos + 8], "little"), 0
                pos += 8
            elif wire == WIRE_I32:
                if pos + 4 > end:
                    raise ProtobufError("truncated 32-bit field", pos)
                yield number, wire, int.from_bytes(buf[pos:pos + 4], "little"), 0
                pos += 4
            else:
                raise ProtobufError(f"unsupported wire type {wire} (field {number})", pos)

    def __iter__(self) -> Iterator[tuple[int, Value]]:
        """Every field as ``(number, Value)``."""
        for number, wire, value, stop in self.fields():
            yield number, Value(self, wire, value, stop)

    def values(self, number: int) -> Iterator[Value]:
        """Every occurrence of field ``number``."""
        for n, wire, value, stop in self.fields():
            if n == number:
                yield Value(self, wire, value, stop)

    def messages(self, number: int) -> Iterator[Message]:
        """Every occurrence of field ``number`` as a sub-message."""
        for value in self.values(number):
            yield value.message()

    def message(self, number: int) -> Message | None:
        """The last occurrence of sub-message ``number`` (``None`` when absent)."""
        found = None
        for value in self.values(number):
            found = value
        return found.message() if found is not None else None

    def integer(self, number: int, default: int = 0) -> int:
        """The last value of integer field ``number``."""
        found = default
        for value in self.values(number):
            found = value.integer()
        return found

    def string(self, number: int, default: str = "", *, limit: int = 1 << 20) -> str:
        """The last value of string field ``number`` (invalid UTF-8 replaced, at most
        ``limit`` bytes)."""
        found = None
        for value in self.values(number):
            found = value
        return found.text(limit) if found is not None else default

    def strings(self, number: int) -> list[str]:
        """Every value of repeated string field ``number``."""
        return [value.text() for value in self.values(number)]

    def map_entries(self, number: int) -> Iterator[tuple[str, Message]]:
        """A ``map<string, Message>`` field as ``(key, value message)`` pairs."""
        for entry in self.messages(number):
            key = entry.string(1)
            value = entry.message(2)
            yield key, value if value is not None else Message(b"", budget=self.budget,
                                                               depth=entry.depth + 1)


class Value:
    """One field's value, decoded as the caller's schema says it should be."""

    __slots__ = ("owner", "raw", "stop", "wire")

    def __init__(self, owner: Message, wire: int, raw: int, stop: int) -> None:
        self.owner = owner
        self.wire = wire
        self.raw = raw
        self.stop = stop

    def _span(self) -> tuple[int, int]:
        if self.wire != WIRE_LEN:
            raise ProtobufError(f"expected a length-delimited field, got wire type {self.wire}",
                                self.owner.start)
        return self.raw, self.stop

    def integer(self) -> int:
        """The integer (varint or fixed width)."""
        if self.wire == WIRE_LEN:
            raise ProtobufError("expected an integer field, got a length-delimited one",
                                self.raw)
        return self.raw

    def signed(self) -> int:
        """The integer read as a two's-complement 64-bit value (``int64`` fields)."""
        value = self.integer()
        return value - (1 << 64) if value >= 1 << 63 else value

    def data(self, limit: int | None = None) -> bytes:
        """The payload bytes (at most ``limit`` of them)."""
        start, end = self._span()
        if limit is not None:
            end = min(end, start + limit)
        return bytes(self.owner.buf[start:end])

    def size(self) -> int:
        """The payload length in bytes."""
        start, end = self._span()
        return end - start

    def text(self, limit: int = 1 << 20) -> str:
        """The payload as UTF-8 text (invalid bytes replaced, at most ``limit`` bytes)."""
        return self.data(limit).decode("utf-8", errors="replace")

    def message(self) -> Message:
        """The payload as a sub-message."""
        start, end = self._span()
        return Message(self.owner.buf, start, end, budget=self.owner.budget,
                       depth=self.owner.depth + 1)


@contextmanager
def mapped(source: Source, max_bytes: int) -> Iterator[Buffer]:
    """The bytes of ``source`` as a read-only buffer: memory-mapped, never read into memory.

    A member of a container is first copied to a temporary file (refused with
    :class:`ValueError` above ``max_bytes``, see :meth:`Source.as_file`).
    """
    with source.as_file(max_bytes) as path, open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            yield b""
            return
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as view:
            yield view

"""The run store's tables, as SQLAlchemy 2 typed models.

Five tables: ``runs``, ``results`` (ordered by ``position`` within a run), and the
``metrics``, ``findings`` and ``artifacts`` of each result. Every child row is deleted with its
parent (``ON DELETE CASCADE``). The migrations in ``phalanx/store/migrations`` create exactly
this schema; a test compares the two.

The column types behave the same on SQLite and PostgreSQL:

- Datetimes are stored in UTC and always come back timezone-aware (SQLite keeps no offset, so
  naive values read from it are marked UTC; naive values written are taken to be UTC).
- Text a database cannot hold is escaped reversibly, in text and JSON columns alike.
  PostgreSQL rejects the NUL character in ``text`` and ``\\u0000`` in ``jsonb``, and no
  UTF-8 database can hold a lone surrogate (``"\\ud800"``, which ``json.loads`` happily
  produces). A string that contains such a character (or that happens to start with the
  marker below) is stored as :data:`ESCAPE_MARKER` followed by the string with ``\\`` doubled
  and each such character written as ``\\uXXXX``; reading undoes it, so evidence comes back
  exactly as written. Only strings that need it are touched.
- JSON holds no ``NaN`` or infinities (PostgreSQL rejects them): non-finite floats inside JSON
  are stored as the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` and come back as
  those strings. Values JSON cannot represent (sets, objects) are refused with a
  ``TypeError``; tuples come back as lists, non-string keys as strings.
- SQLite turns a ``NaN`` float column into ``NULL``, so :class:`NanAsNullFloat` does the same
  on every back end; the store reads a ``NULL`` metric value back as ``NaN``.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

#: Name of the table where Alembic records the schema revision; prefixed so that a database
#: shared with another Alembic-managed application does not collide with it.
VERSION_TABLE = "phalanx_alembic_version"

#: Prefix of a stored string that was escaped (see the module docstring).
ESCAPE_MARKER = "\x1bphalanx-escaped:"

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_ESCAPE_SEQUENCE = re.compile(r"\\(\\|u[0-9a-f]{4})")

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def escape_text(value: str) -> str:
    """``value`` in a form every back end can store; :func:`unescape_text` inverts it."""
    if _UNSTORABLE.search(value) is None and not value.startswith(ESCAPE_MARKER):
        return value
    body = value.replace("\\", "\\\\")
    body = _UNSTORABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", body)
    return ESCAPE_MARKER + body


def unescape_text(value: str) -> str:
    """The string :func:`escape_text` was given."""
    if not value.startswith(ESCAPE_MARKER):
        return value

    def one(m: re.Match[str]) -> str:
        code = m.group(1)
        return "\\" if code == "\\" else chr(int(code[1:], 16))

    return _ESCAPE_SEQUENCE.sub(one, value[len(ESCAPE_MARKER) :])


def _json_to_db(value: Any) -> Any:
    if isinstance(value, str):
        return escape_text(value)
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, Mapping):
        return {
            (escape_text(k) if isinstance(k, str) else k): _json_to_db(v) for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_json_to_db(v) for v in value]
    raise TypeError(f"a {type(value).__name__} is not JSON-serialisable: {value!r:.80}")


def _json_from_db(value: Any) -> Any:
    if isinstance(value, str):
        return unescape_text(value)
    if isinstance(value, dict):
        return {unescape_text(k): _json_from_db(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_from_db(v) for v in value]
    return value


class SafeText(TypeDecorator[str]):
    """Unbounded text that round-trips NUL characters and lone surrogates."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else escape_text(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else unescape_text(value)


class SafeJSON(TypeDecorator[Any]):
    """JSON that PostgreSQL and SQLite both accept, with strings escaped as :class:`SafeText`.

    A Python ``None`` is stored as SQL ``NULL``.
    """

    impl = JSON
    cache_ok = True

    def __init__(self) -> None:
        super().__init__(none_as_null=True)

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else _json_to_db(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else _json_from_db(value)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware datetime, stored in UTC, read back in UTC on every back end."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)


class NanAsNullFloat(TypeDecorator[float]):
    """A float column where ``NaN`` is stored as ``NULL`` on every back end (as SQLite does)."""

    impl = Float
    cache_ok = True

    def process_bind_param(self, value: float | None, dialect: Dialect) -> float | None:
        if value is None:
            return None
        value = float(value)
        return None if math.isnan(value) else value


class Base(DeclarativeBase):
    """Declarative base of the store's tables, with named constraints."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class RunRow(Base):
    """One execution of checks (a :class:`phalanx.core.Run`)."""

    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String, primary_key=True)
    command: Mapped[str] = mapped_column(SafeText)
    status: Mapped[str] = mapped_column(String(16), index=True)
    config: Mapped[dict[str, Any]] = mapped_column(SafeJSON)
    environment: Mapped[dict[str, Any]] = mapped_column(SafeJSON)
    tags: Mapped[dict[str, str]] = mapped_column(SafeJSON)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    host: Mapped[str | None] = mapped_column(SafeText)
    pid: Mapped[int | None] = mapped_column(Integer)
    phalanx_version: Mapped[str | None] = mapped_column(SafeText)

    results: Mapped[list[ResultRow]] = relationship(
        back_populates="run",
        order_by="ResultRow.position",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class ResultRow(Base):
    """What one check returned (a :class:`phalanx.core.Result`), at ``position`` in its run."""

    __tablename__ = "results"
    __table_args__ = (UniqueConstraint("run_id", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    check: Mapped[str] = mapped_column(SafeText)
    title: Mapped[str] = mapped_column(SafeText)
    target: Mapped[str] = mapped_column(SafeText)
    params: Mapped[dict[str, Any]] = mapped_column(SafeJSON)
    threat_model: Mapped[dict[str, Any] | None] = mapped_column(SafeJSON)
    refs: Mapped[list[str]] = mapped_column(SafeJSON)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(SafeText)
    seed: Mapped[int | None] = mapped_column(BigInteger)

    run: Mapped[RunRow] = relationship(back_populates="results")
    metrics: Mapped[list[MetricRow]] = relationship(
        order_by="MetricRow.id", cascade="all, delete-orphan", passive_deletes=True
    )
    findings: Mapped[list[FindingRow]] = relationship(
        order_by="FindingRow.id", cascade="all, delete-orphan", passive_deletes=True
    )
    artifacts: Mapped[list[ArtifactRow]] = relationship(
        order_by="ArtifactRow.id", cascade="all, delete-orphan", passive_deletes=True
    )


class MetricRow(Base):
    """One measured number (a :class:`phalanx.core.Metric`); ``value`` is ``NULL`` for NaN."""

    __tablename__ = "metrics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("results.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(SafeText, index=True)
    value: Mapped[float | None] = mapped_column(NanAsNullFloat)
    lower: Mapped[float | None] = mapped_column(NanAsNullFloat)
    upper: Mapped[float | None] = mapped_column(NanAsNullFloat)
    labels: Mapped[dict[str, Any]] = mapped_column(SafeJSON)
    unit: Mapped[str] = mapped_column(SafeText)


class FindingRow(Base):
    """One issue a human must read (a :class:`phalanx.core.Finding`).

    ``run_id`` repeats the result's run so findings can be queried by run without a join.
    """

    __tablename__ = "findings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("results.id", ondelete="CASCADE"), index=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    finding_id: Mapped[str] = mapped_column(SafeText)
    check: Mapped[str] = mapped_column(SafeText)
    severity: Mapped[int] = mapped_column(Integer, index=True)
    title: Mapped[str] = mapped_column(SafeText)
    detail: Mapped[str] = mapped_column(SafeText)
    evidence: Mapped[dict[str, Any]] = mapped_column(SafeJSON)
    remediation: Mapped[str] = mapped_column(SafeText)
    refs: Mapped[list[str]] = mapped_column(SafeJSON)
    plugin_id: Mapped[str] = mapped_column(SafeText)
    plugin_version: Mapped[str] = mapped_column(SafeText)
    params: Mapped[dict[str, Any]] = mapped_column(SafeJSON)
    seed: Mapped[int | None] = mapped_column(BigInteger)


class ArtifactRow(Base):
    """A file-like output of a check (a :class:`phalanx.core.Artifact`), with its digest."""

    __tablename__ = "artifacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("results.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(SafeText)
    media_type: Mapped[str] = mapped_column(SafeText)
    description: Mapped[str] = mapped_column(SafeText)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)


__all__ = [
    "ESCAPE_MARKER",
    "VERSION_TABLE",
    "ArtifactRow",
    "Base",
    "FindingRow",
    "MetricRow",
    "NanAsNullFloat",
    "ResultRow",
    "RunRow",
    "SafeJSON",
    "SafeText",
    "UTCDateTime",
    "escape_text",
    "unescape_text",
]

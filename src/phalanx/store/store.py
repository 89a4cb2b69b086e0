"""The run store: every run and its results, in SQLite by default or PostgreSQL by URL.

Runs are written as they progress. :meth:`Store.record` creates a run, writes each result the
moment it is added (one transaction per result: a result is stored whole or not at all), and
marks the run ``completed``, ``failed`` or ``interrupted`` when its block ends. A run whose
process died without saying so (``kill -9``, power loss) is marked ``interrupted`` by
:meth:`Store.reconcile` the next time the store is read on the same host, and keeps every
result it finished.

The database is any SQLAlchemy URL: ``PHALANX_DB`` or, by default, a SQLite file in the user
data directory. ``postgresql://`` URLs use psycopg 3 (the ``postgres`` extra). The schema is
migrated to the newest revision with Alembic whenever a store is opened.

Example:
    >>> with Store.open("sqlite:///runs.db") as store:  # doctest: +SKIP
    ...     with store.record(Run(command="robustness")) as recorder:
    ...         recorder.add(check.run(target))
    ...     print(store.list_runs()[0].status)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import importlib.resources
import logging
import math
import os
import platform
import re
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import platformdirs
import sqlalchemy
from sqlalchemy import Engine, create_engine, delete, event, func, select, update
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import (
    ArgumentError,
    IntegrityError,
    NoSuchModuleError,
    SQLAlchemyError,
    StatementError,
)
from sqlalchemy.orm import Session, selectinload, sessionmaker
from sqlalchemy.pool import StaticPool

from phalanx.core import (
    Artifact,
    Finding,
    Metric,
    Result,
    Run,
    RunStatus,
    Severity,
    ThreatModel,
)
from phalanx.core.results import utcnow
from phalanx.errors import RunNotFoundError, StoreError
from phalanx.store.models import (
    VERSION_TABLE,
    ArtifactRow,
    FindingRow,
    MetricRow,
    ResultRow,
    RunRow,
)

logger = logging.getLogger(__name__)

#: Environment variable naming the database (any SQLAlchemy URL).
ENV_VAR = "PHALANX_DB"

#: The fewest leading characters of a run id that :meth:`Store.get_run` accepts as a prefix.
MIN_PREFIX = 4

_POSTGRES_HINT = "pip install 'phalanx[postgres]'"
_FIX_URL_HINT = f"set {ENV_VAR} to another database URL"
# A process that started this long after the run it is said to record has reused its pid.
_PID_REUSE_SLACK_S = 10.0


class RunTerminated(KeyboardInterrupt):
    """Raised in the main thread when SIGTERM arrives while :meth:`Store.record` is active.

    A ``KeyboardInterrupt`` so that code which already stops cleanly on Ctrl-C stops cleanly on
    SIGTERM too; the run is marked ``interrupted``.
    """


def default_url() -> str:
    """The database used when none is given: ``PHALANX_DB`` if set, else a SQLite file.

    The file is ``phalanx.db`` in the user data directory (``platformdirs.user_data_dir``);
    nothing is created until a store is opened.
    """
    configured = os.environ.get(ENV_VAR)
    if configured:
        return configured
    path = Path(platformdirs.user_data_dir("phalanx")) / "phalanx.db"
    return f"sqlite:///{path.as_posix()}"


def normalize_url(url: str) -> str:
    """``url`` with ``postgresql://`` (or ``postgres://``) pointed at the psycopg 3 driver.

    URLs that name a driver (``postgresql+psycopg2://``) are kept as they are.
    """
    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("postgresql", "postgres"):
        return f"postgresql+psycopg://{rest}"
    return url


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, fit for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


@dataclass(frozen=True)
class RunSummary:
    """One line of :meth:`Store.list_runs`: a run without its results.

    Args:
        id: The run id.
        command: What was run.
        status: Where it stands.
        started_at: When it began (UTC).
        finished_at: When it ended, if it did.
        n_results: How many results are stored.
        n_findings: How many findings those results hold.
        max_severity: The most severe finding, or ``None`` when there are none.
    """

    id: str
    command: str
    status: RunStatus
    started_at: dt.datetime
    finished_at: dt.datetime | None
    n_results: int
    n_findings: int
    max_severity: Severity | None

    @property
    def duration_s(self) -> float | None:
        """Wall-clock seconds, if the run finished."""
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class Store:
    """Runs and their results in a SQL database.

    The store connects (and migrates the schema) on :meth:`open`, on entering a ``with`` block,
    or on first use. Every method raises :class:`~phalanx.errors.StoreError` with one line
    naming the database (password masked) when the database fails; a store may be shared by
    threads.

    Args:
        url: A SQLAlchemy database URL; :func:`default_url` when ``None``.

    Example:
        >>> with Store.open("sqlite:///runs.db") as store:  # doctest: +SKIP
        ...     run = store.get_run("3f2a")
    """

    def __init__(self, url: str | None = None) -> None:
        self.url = url if url is not None else default_url()
        self._engine: Engine | None = None
        self._sessions: sessionmaker[Session] | None = None
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"Store({self.display_url!r})"

    @property
    def display_url(self) -> str:
        """The database URL with its password masked."""
        return mask_url(self.url)

    @classmethod
    def open(cls, url: str | None = None) -> Store:
        """Connect to the database at ``url`` and bring its schema up to date.

        Raises:
            StoreError: The URL is malformed, its driver is not installed, the database cannot
                be reached, or its schema was written by a newer phalanx.
        """
        store = cls(url)
        store.connect()
        return store

    def connect(self) -> None:
        """Connect and migrate now, if not already connected (see :meth:`open`)."""
        with self._lock:
            if self._engine is not None:
                return
            engine = _create_engine(self.url)
            try:
                _migrate(engine, self.url)
            except BaseException:
                engine.dispose()
                raise
            self._engine = engine
            self._sessions = sessionmaker(bind=engine, expire_on_commit=False)

    def close(self) -> None:
        """Close every connection. Using the store again reconnects."""
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
            self._engine = None
            self._sessions = None

    def __enter__(self) -> Store:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- writing ----------------------------------------------------------------------------

    def create_run(self, run: Run) -> None:
        """Store ``run`` as ``running``, with any results it already holds.

        The host and pid that :meth:`reconcile` checks come from ``run.environment``
        (``hostname`` and ``pid``, as :func:`phalanx.core.run.environment` records them).

        Raises:
            StoreError: A run with this id is already stored.
        """
        env = run.environment
        host = env.get("hostname")
        pid = env.get("pid")
        version = env.get("phalanx")
        row = RunRow(
            id=run.id,
            command=run.command,
            status=RunStatus.RUNNING.value,
            config=run.config,
            environment=env,
            tags=run.tags,
            started_at=run.started_at,
            finished_at=None,
            host=str(host) if host is not None else None,
            pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
            phalanx_version=str(version) if version is not None else None,
            results=[_result_row(r, run.id, i) for i, r in enumerate(run.results)],
        )
        try:
            with self._session(f"create run {run.id}") as session:
                if session.get(RunRow, run.id) is not None:
                    raise StoreError(f"run {run.id} is already in run store {self.display_url}")
                session.add(row)
        except StoreError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                raise StoreError(
                    f"run {run.id} is already in run store {self.display_url}"
                ) from exc.__cause__
            raise

    def add_result(self, run_id: str, result: Result) -> None:
        """Append ``result`` to run ``run_id``: the result, its metrics, findings and artifacts
        in one transaction, so it is stored whole or not at all.

        Raises:
            RunNotFoundError: No run has exactly this id.
            StoreError: The result cannot be stored (e.g. its evidence is not JSON); nothing of
                it was written.
        """
        # The lock keeps positions unique when threads add results to one run concurrently.
        with self._lock, self._session(f"add a result to run {run_id}") as session:
            if session.get(RunRow, run_id) is None:
                raise self._not_found(run_id)
            last = session.scalar(
                select(func.max(ResultRow.position)).where(ResultRow.run_id == run_id)
            )
            session.add(_result_row(result, run_id, 0 if last is None else last + 1))

    def finish_run(
        self,
        run_id: str,
        status: RunStatus | str,
        finished_at: dt.datetime | None = None,
    ) -> None:
        """Mark run ``run_id`` as ``status``, finished at ``finished_at`` (default: now).

        Raises:
            RunNotFoundError: No run has exactly this id.
        """
        status = RunStatus(status)
        with self._session(f"finish run {run_id}") as session:
            row = session.get(RunRow, run_id)
            if row is None:
                raise self._not_found(run_id)
            row.status = status.value
            row.finished_at = finished_at if finished_at is not None else utcnow()

    def delete_run(self, id_or_prefix: str) -> str:
        """Delete a run and everything it holds; returns the full id deleted.

        Raises:
            RunNotFoundError: No run matches.
            StoreError: The prefix matches several runs.
        """
        with self._session(f"delete run {id_or_prefix}") as session:
            run_id = self._resolve(session, id_or_prefix)
            session.execute(delete(RunRow).where(RunRow.id == run_id))
        return run_id

    def reconcile(self) -> list[str]:
        """Mark ``interrupted`` every ``running`` run whose process on this host is gone.

        Runs recorded on other hosts are left alone: their processes cannot be seen from here.
        Returns the ids it marked.
        """
        host = platform.node()
        with self._session("reconcile runs") as session:
            rows = session.execute(
                select(RunRow.id, RunRow.pid, RunRow.started_at).where(
                    RunRow.status == RunStatus.RUNNING.value, RunRow.host == host
                )
            ).all()
            dead = [
                run_id
                for run_id, pid, started_at in rows
                if pid is not None and not _process_alive(pid, started_at)
            ]
            if dead:
                session.execute(
                    update(RunRow)
                    .where(RunRow.id.in_(dead), RunRow.status == RunStatus.RUNNING.value)
                    .values(status=RunStatus.INTERRUPTED.value)
                )
        for run_id in dead:
            logger.info("run %s: its process is gone; marked interrupted", run_id)
        return dead

    def record(self, run: Run) -> RunRecorder:
        """A context manager that stores ``run`` as it progresses.

        Example:
            >>> with store.record(run) as recorder:  # doctest: +SKIP
            ...     for check in checks:
            ...         recorder.add(check.run(target))
        """
        return RunRecorder(self, run)

    # -- reading ----------------------------------------------------------------------------

    def get_run(self, id_or_prefix: str) -> Run:
        """The full run, results in the order they were added.

        Args:
            id_or_prefix: The run id, or a unique prefix of at least :data:`MIN_PREFIX`
                characters.

        Raises:
            RunNotFoundError: No run matches.
            StoreError: The prefix matches several runs (the message lists them), or a stored
                artifact no longer matches its digest.
        """
        self.reconcile()
        with self._session(f"read run {id_or_prefix}") as session:
            run_id = self._resolve(session, id_or_prefix)
            results = selectinload(RunRow.results)
            row = session.scalars(
                select(RunRow)
                .where(RunRow.id == run_id)
                .options(
                    results.selectinload(ResultRow.metrics),
                    results.selectinload(ResultRow.findings),
                    results.selectinload(ResultRow.artifacts),
                )
            ).one()
            return _run_from_row(row)

    def list_runs(self, limit: int | None = 20, command: str | None = None) -> list[RunSummary]:
        """Summaries of the newest runs first.

        Args:
            limit: At most this many (``None``: all).
            command: Only runs of this command.
        """
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be at least 0, got {limit}")
        self.reconcile()
        n_results = (
            select(func.count(ResultRow.id)).where(ResultRow.run_id == RunRow.id).scalar_subquery()
        )
        n_findings = (
            select(func.count(FindingRow.id))
            .where(FindingRow.run_id == RunRow.id)
            .scalar_subquery()
        )
        worst = (
            select(func.max(FindingRow.severity))
            .where(FindingRow.run_id == RunRow.id)
            .scalar_subquery()
        )
        query = select(
            RunRow.id,
            RunRow.command,
            RunRow.status,
            RunRow.started_at,
            RunRow.finished_at,
            n_results,
            n_findings,
            worst,
        ).order_by(RunRow.started_at.desc(), RunRow.id.desc())
        if command is not None:
            query = query.where(RunRow.command == command)
        if limit is not None:
            query = query.limit(limit)
        with self._session("list runs") as session:
            rows = session.execute(query).all()
        return [
            RunSummary(
                id=run_id,
                command=cmd,
                status=RunStatus(status),
                started_at=started_at,
                finished_at=finished_at,
                n_results=int(n_res or 0),
                n_findings=int(n_find or 0),
                max_severity=Severity(int(sev)) if sev is not None else None,
            )
            for run_id, cmd, status, started_at, finished_at, n_res, n_find, sev in rows
        ]

    # -- internals --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _session(self, action: str) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on any error."""
        self.connect()
        assert self._sessions is not None
        try:
            with self._sessions.begin() as session:
                yield session
        except SQLAlchemyError as exc:
            raise StoreError(
                f"cannot {action} in run store {self.display_url}: {_one_line(exc, self.url)}"
            ) from exc

    def _resolve(self, session: Session, id_or_prefix: str) -> str:
        if session.get(RunRow, id_or_prefix) is not None:
            return id_or_prefix
        if len(id_or_prefix) < MIN_PREFIX:
            raise RunNotFoundError(
                f"no run {id_or_prefix!r} in run store {self.display_url}",
                hint=f"give the full id or at least {MIN_PREFIX} of its first characters",
            )
        # substr, not LIKE: LIKE ignores case on SQLite and not on PostgreSQL.
        matches = session.scalars(
            select(RunRow.id)
            .where(func.substr(RunRow.id, 1, len(id_or_prefix)) == id_or_prefix)
            .order_by(RunRow.id)
            .limit(11)
        ).all()
        if not matches:
            raise self._not_found(id_or_prefix)
        if len(matches) > 1:
            listed = ", ".join(matches[:10]) + (", ..." if len(matches) > 10 else "")
            raise StoreError(
                f"run id prefix {id_or_prefix!r} is ambiguous: it matches {listed}",
                hint="give more characters of the id",
            )
        return matches[0]

    def _not_found(self, run_id: str) -> RunNotFoundError:
        return RunNotFoundError(
            f"no run {run_id!r} in run store {self.display_url}",
            hint="'phalanx runs list' shows the stored runs",
        )


class RunRecorder:
    """Stores a run as it progresses; made by :meth:`Store.record`, used as a context manager.

    On entering, the run is created (``running``). :meth:`add` writes each result as soon as
    it is given, so a run that is killed keeps what it finished. On leaving, the run is marked
    ``completed``; ``interrupted`` if the block raised ``KeyboardInterrupt``, ``SystemExit`` or
    another exception that is not an ``Exception`` (such as ``asyncio.CancelledError``);
    ``failed`` on any other exception, which is re-raised. The in-memory ``run`` follows along
    (its status, finish time and results).

    While recording in the main thread, SIGTERM raises :class:`RunTerminated` (a
    ``KeyboardInterrupt``), so ``kill`` marks the run ``interrupted`` as Ctrl-C does; a SIGTERM
    that arrives while a result is being written is raised once the write is done. The previous
    handler is restored on leaving.
    """

    def __init__(self, store: Store, run: Run) -> None:
        self.store = store
        self.run = run
        self._previous_handler: Any = None
        self._handler_installed = False
        self._writing = False
        self._terminate_pending = False

    def __enter__(self) -> RunRecorder:
        self.store.create_run(self.run)
        self.run.status = RunStatus.RUNNING
        self.run.finished_at = None
        self._install_sigterm_handler()
        return self

    def add(self, result: Result) -> None:
        """Store ``result`` now, whole or not at all, and append it to ``run.results``.

        Raises:
            StoreError: It cannot be stored; the run holds none of it.
        """
        self._writing = True
        try:
            self.store.add_result(self.run.id, result)
        finally:
            self._writing = False
        if not any(r is result for r in self.run.results):
            self.run.results.append(result)
        self._raise_pending_termination()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            status = RunStatus.COMPLETED
        elif issubclass(exc_type, Exception):
            status = RunStatus.FAILED
        else:
            status = RunStatus.INTERRUPTED
        finished_at = utcnow()
        self._writing = True
        try:
            self.store.finish_run(self.run.id, status, finished_at)
            self.run.status = status
            self.run.finished_at = finished_at
        except StoreError:
            if exc_type is None:
                raise
            # Keep the original exception; the status stays "running" until reconcile() sees
            # that the process is gone.
            logger.warning("could not mark run %s %s", self.run.id, status.value, exc_info=True)
        finally:
            self._writing = False
            self._restore_sigterm_handler()
        if exc_type is None:
            self._raise_pending_termination()

    def _install_sigterm_handler(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        try:
            self._previous_handler = signal.getsignal(signal.SIGTERM)
            signal.signal(signal.SIGTERM, self._on_sigterm)
        except (ValueError, OSError):  # not the main interpreter, or no SIGTERM here
            return
        self._handler_installed = True

    def _restore_sigterm_handler(self) -> None:
        if not self._handler_installed:
            return
        previous = self._previous_handler
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        self._handler_installed = False

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        if self._writing:
            self._terminate_pending = True
            return
        raise RunTerminated(f"run {self.run.id} terminated by SIGTERM")

    def _raise_pending_termination(self) -> None:
        if self._terminate_pending:
            self._terminate_pending = False
            raise RunTerminated(f"run {self.run.id} terminated by SIGTERM")


# -- connecting and migrating ---------------------------------------------------------------


def _one_line(exc: BaseException, url: str) -> str:
    """The first line of a database error, without the URL's password."""
    # A StatementError (DBAPIError among them) wraps the driver's or a type's own error.
    source = exc.orig if isinstance(exc, StatementError) and exc.orig is not None else exc
    lines = [line.strip() for line in str(source).splitlines() if line.strip()]
    text = lines[0] if lines else type(source).__name__
    # SQLAlchemy appends "(Background on this error at: ...)" to its own messages.
    text = re.sub(r"\s*\(Background on this error at: [^)]*\)", "", text)
    with contextlib.suppress(ArgumentError):
        password = make_url(normalize_url(url)).password
        if password:
            text = text.replace(str(password), "***")
    return text


def _open_hint(parsed: URL) -> str:
    if parsed.get_backend_name() == "sqlite":
        return f"check that the path names a writable SQLite file, or {_FIX_URL_HINT}"
    return (
        "check that the server is running and reachable and that the user, password and "
        f"database are right, or {_FIX_URL_HINT}"
    )


def _create_engine(url: str) -> Engine:
    shown = mask_url(url)
    try:
        parsed = make_url(normalize_url(url))
    except ArgumentError:
        raise StoreError(
            f"cannot open run store {shown}: not a valid database URL",
            hint="use e.g. sqlite:///path/to/phalanx.db or postgresql://user:password@host/db",
        ) from None
    backend = parsed.get_backend_name()
    options: dict[str, Any] = {}
    if backend == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or parsed.query.get("mode") == "memory":
            # One connection for the whole store, or each connection sees its own database.
            options["poolclass"] = StaticPool
            options["connect_args"] = {"check_same_thread": False}
        else:
            if parsed.query.get("uri") not in ("true", "1"):
                _prepare_sqlite_file(database, shown)
            # Wait for another writer instead of failing at once with "database is locked".
            options["connect_args"] = {"timeout": 30}
    elif backend == "postgresql":
        options["pool_pre_ping"] = True
        if parsed.get_driver_name() in ("psycopg", "psycopg2") and (
            "connect_timeout" not in parsed.query
        ):
            options["connect_args"] = {"connect_timeout": 10}
    try:
        engine = create_engine(parsed, **options)
    except NoSuchModuleError:
        raise StoreError(
            f"cannot open run store {shown}: no database dialect {parsed.drivername!r}",
            hint="use a sqlite:/// or postgresql:// URL",
        ) from None
    except ImportError as exc:
        hint = (
            _POSTGRES_HINT
            if backend == "postgresql" and parsed.get_driver_name() == "psycopg"
            else f"install the database driver {exc.name or parsed.get_driver_name()}"
        )
        raise StoreError(
            f"cannot open run store {shown}: the database driver is not installed ({exc})",
            hint=hint,
        ) from None
    except (ArgumentError, TypeError, ValueError) as exc:
        raise StoreError(f"cannot open run store {shown}: {exc}", hint=_open_hint(parsed)) from None
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_on_connect)
    return engine


def _prepare_sqlite_file(database: str, shown: str) -> None:
    path = Path(database)
    if path.is_dir():
        raise StoreError(
            f"cannot open run store {shown}: {path} is a directory",
            hint=f"name a database file, e.g. sqlite:///{(path / 'phalanx.db').as_posix()}",
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot open run store {shown}: cannot create directory {path.parent}: "
            f"{exc.strerror or exc}",
            hint=f"check the path and its permissions, or {_FIX_URL_HINT}",
        ) from None


def _sqlite_on_connect(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
    finally:
        cursor.close()


#: The newest migration's revision id (a test checks it against the migration scripts). A
#: store already at this revision opens without importing Alembic, which costs a command
#: such as ``phalanx scan`` about half a second at every start.
HEAD_REVISION = "0001"


def _at_head(engine: Engine) -> bool:
    """Whether the database's schema revision is :data:`HEAD_REVISION` (a plain query; any
    failure, such as a new database without the version table, means "ask Alembic")."""
    table = sqlalchemy.table(VERSION_TABLE, sqlalchemy.column("version_num"))
    with engine.connect() as conn:  # a database that cannot be reached raises here
        try:
            rows = conn.execute(select(table.c.version_num)).scalars().all()
        except SQLAlchemyError:
            return False
    return rows == [HEAD_REVISION]


def _migrate(engine: Engine, url: str) -> None:
    """Upgrade the database to the newest schema revision with the packaged migrations."""
    shown = mask_url(url)
    parsed = make_url(normalize_url(url))
    try:
        if _at_head(engine):
            return
    except SQLAlchemyError as exc:
        raise StoreError(
            f"cannot open run store {shown}: {_one_line(exc, url)}", hint=_open_hint(parsed)
        ) from None
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from alembic.util.exc import CommandError

    ini = importlib.resources.files("phalanx.store").joinpath("alembic.ini")
    with importlib.resources.as_file(ini) as ini_path:
        config = Config(str(ini_path))
        script = ScriptDirectory.from_config(config)
        head = script.get_current_head()

        def current_revision() -> str | None:
            with engine.connect() as conn:
                context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
                return context.get_current_revision()

        try:
            current = current_revision()
            if current == head:
                return
            if current is not None:
                try:
                    script.get_revision(current)
                except CommandError:
                    raise StoreError(
                        f"run store {shown} has schema revision {current}, which this version "
                        "of phalanx does not know (a newer phalanx wrote it)",
                        hint=f"upgrade phalanx, or {_FIX_URL_HINT}",
                    ) from None
            logger.info("migrating run store %s from %s to %s", shown, current, head)
            try:
                with engine.begin() as conn:
                    config.attributes["connection"] = conn
                    command.upgrade(config, "head")
            except SQLAlchemyError:
                # Another process may have migrated it at the same moment.
                if current_revision() != head:
                    raise
        except SQLAlchemyError as exc:
            raise StoreError(
                f"cannot open run store {shown}: {_one_line(exc, url)}", hint=_open_hint(parsed)
            ) from None
        except CommandError as exc:
            raise StoreError(
                f"cannot migrate run store {shown}: {_one_line(exc, url)}",
                hint=_open_hint(parsed),
            ) from None


# -- rows <-> core objects --------------------------------------------------------------------


def _result_row(result: Result, run_id: str, position: int) -> ResultRow:
    return ResultRow(
        run_id=run_id,
        position=position,
        check=result.check,
        title=result.title,
        target=result.target,
        params=result.params,
        threat_model=result.threat_model.to_dict() if result.threat_model else None,
        refs=list(result.refs),
        started_at=result.started_at,
        finished_at=result.finished_at,
        error=result.error,
        seed=result.seed,
        metrics=[
            MetricRow(
                name=m.name,
                value=m.value,
                lower=m.lower,
                upper=m.upper,
                labels=m.labels,
                unit=m.unit,
            )
            for m in result.metrics
        ],
        findings=[
            FindingRow(
                run_id=run_id,
                finding_id=f.id,
                check=f.check,
                severity=int(f.severity),
                title=f.title,
                detail=f.detail,
                evidence=f.evidence,
                remediation=f.remediation,
                refs=list(f.refs),
                plugin_id=f.plugin_id,
                plugin_version=f.plugin_version,
                params=f.params,
                seed=f.seed,
            )
            for f in result.findings
        ],
        artifacts=[
            ArtifactRow(
                name=a.name,
                media_type=a.media_type,
                description=a.description,
                data=bytes(a.data),
                sha256=hashlib.sha256(a.data).hexdigest(),
                size=len(a.data),
            )
            for a in result.artifacts
        ],
    )


def _run_from_row(row: RunRow) -> Run:
    return Run(
        id=row.id,
        command=row.command,
        status=RunStatus(row.status),
        config=row.config,
        started_at=row.started_at,
        finished_at=row.finished_at,
        environment=row.environment,
        tags=row.tags,
        results=[_result_from_row(r) for r in row.results],
    )


def _result_from_row(row: ResultRow) -> Result:
    return Result(
        check=row.check,
        title=row.title,
        target=row.target,
        params=row.params,
        threat_model=ThreatModel.from_dict(row.threat_model) if row.threat_model else None,
        metrics=[
            Metric(
                name=m.name,
                value=m.value if m.value is not None else math.nan,
                lower=m.lower,
                upper=m.upper,
                labels=m.labels,
                unit=m.unit,
            )
            for m in row.metrics
        ],
        findings=[
            Finding(
                id=f.finding_id,
                check=f.check,
                severity=Severity(f.severity),
                title=f.title,
                detail=f.detail,
                evidence=f.evidence,
                remediation=f.remediation,
                refs=tuple(f.refs),
                plugin_id=f.plugin_id,
                plugin_version=f.plugin_version,
                params=f.params,
                seed=f.seed,
            )
            for f in row.findings
        ],
        artifacts=[_artifact_from_row(a, row.run_id) for a in row.artifacts],
        refs=tuple(row.refs),
        started_at=row.started_at,
        finished_at=row.finished_at,
        error=row.error,
        seed=row.seed,
    )


def _artifact_from_row(row: ArtifactRow, run_id: str) -> Artifact:
    data = bytes(row.data)
    if len(data) != row.size or hashlib.sha256(data).hexdigest() != row.sha256:
        raise StoreError(
            f"artifact {row.name!r} of run {run_id} is corrupt: its bytes no longer match "
            "the SHA-256 stored with them"
        )
    return Artifact(
        name=row.name, media_type=row.media_type, data=data, description=row.description
    )


# -- is the process that recorded a run still alive? -----------------------------------------


def _process_alive(pid: int, run_started_at: dt.datetime) -> bool:
    """Whether process ``pid`` on this host may still be recording a run begun then.

    Errs towards "alive": a run wrongly left ``running`` is harmless, and one wrongly marked
    ``interrupted`` is corrected when its recorder finishes it.
    """
    if pid <= 0:
        return True  # not a real pid; os.kill(0, ...) would signal our own process group
    if pid == os.getpid():
        return True
    if sys.platform == "win32":
        return _windows_process_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    except OSError:
        return True
    stat = _linux_process_stat(pid)
    if stat is None:
        return True
    state, started = stat
    if state in ("Z", "X"):  # exited, not yet reaped by its parent
        return False
    # A process that started well after the run did has reused the pid.
    return started is None or started <= run_started_at.timestamp() + _PID_REUSE_SLACK_S


def _linux_process_stat(pid: int) -> tuple[str, float | None] | None:
    """State letter and start time (epoch seconds) of ``pid`` from ``/proc``, if available."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        ticks = os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    # The command name (in parentheses) may itself contain spaces and parentheses.
    fields = text[text.rindex(")") + 2 :].split()
    try:
        return fields[0], boot + int(fields[19]) / ticks
    except (IndexError, ValueError, ZeroDivisionError):
        return (fields[0], None) if fields else None


if sys.platform == "win32":

    def _windows_process_alive(pid: int) -> bool:
        import ctypes

        kernel32 = ctypes.windll.kernel32
        process_query_limited_information = 0x1000
        still_active = 259
        handle = kernel32.OpenProcess(process_query_limited_information, False, pid)
        if not handle:
            return bool(kernel32.GetLastError() == 5)  # access denied: it exists
        try:
            code = ctypes.c_ulong()
            if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
                return True
            return code.value == still_active
        finally:
            kernel32.CloseHandle(handle)

else:

    def _windows_process_alive(pid: int) -> bool:
        raise NotImplementedError("only on Windows")


__all__ = [
    "ENV_VAR",
    "MIN_PREFIX",
    "RunRecorder",
    "RunSummary",
    "RunTerminated",
    "Store",
    "default_url",
    "mask_url",
    "normalize_url",
]

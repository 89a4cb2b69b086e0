"""Alembic environment of the run store.

:class:`phalanx.store.Store` runs ``upgrade head`` itself, handing over its open connection in
``config.attributes["connection"]``. Run from the ``alembic`` command line instead, the
database comes from ``-x url=...``, else ``sqlalchemy.url`` in the ini, else ``PHALANX_DB`` or
the default store. Logging is left alone (no ``fileConfig``): the library never configures it.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection

from phalanx.store.models import VERSION_TABLE, Base
from phalanx.store.store import default_url, normalize_url

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    given = context.get_x_argument(as_dictionary=True).get("url")
    return normalize_url(given or config.get_main_option("sqlalchemy.url") or default_url())


def _migrate(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        compare_type=True,
        # SQLite cannot ALTER most things; later revisions rebuild its tables in batches.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    """Write the SQL of the migrations instead of running it (``alembic ... --sql``)."""
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Migrate the connection the store passed in, or one opened from the URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    engine = create_engine(_url())
    try:
        with engine.begin() as conn:
            _migrate(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()

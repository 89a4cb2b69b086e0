"""Opening a store: URLs, errors that name the database in one line, and migrations."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect

from phalanx.core import Result, Run
from phalanx.errors import StoreError
from phalanx.store import Store, default_url, mask_url, normalize_url
from phalanx.store.models import VERSION_TABLE, Base
from phalanx.store.store import HEAD_REVISION


def _alembic_config() -> Config:
    import importlib.resources

    return Config(str(importlib.resources.files("phalanx.store").joinpath("alembic.ini")))


def _open_error(url: str) -> str:
    with pytest.raises(StoreError) as info:
        Store.open(url)
    message = str(info.value)
    assert "\n" not in message, message
    return message


def test_migrations_match_the_models(store_url: str) -> None:
    Store.open(store_url).close()
    engine = create_engine(normalize_url(store_url))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"version_table": VERSION_TABLE, "compare_type": True}
            )
            head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
            assert context.get_current_revision() == head
            # The store's fast path skips Alembic for a database at this revision.
            assert head == HEAD_REVISION
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_downgrade_and_upgrade_again(store_url: str) -> None:
    Store.open(store_url).close()
    engine = create_engine(normalize_url(store_url))
    try:
        config = _alembic_config()
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "base")
        assert set(inspect(engine).get_table_names()) <= {VERSION_TABLE}
    finally:
        engine.dispose()
    with Store.open(store_url) as store:
        run = Run(command="again", results=[Result(check="c")])
        store.create_run(run)
        assert store.get_run(run.id).results[0].check == "c"


def test_reopening_keeps_runs(store_url: str) -> None:
    run = Run(command="demo")
    with Store.open(store_url) as store:
        store.create_run(run)
    with Store(store_url) as store:  # migrated already: opening is a no-op upgrade
        assert store.get_run(run.id).command == "demo"
    store = Store(store_url)  # connects on first use
    try:
        assert [s.id for s in store.list_runs()] == [run.id]
    finally:
        store.close()


def test_unreachable_postgres_is_one_clear_line() -> None:
    message = _open_error("postgresql://nobody:s3cret@127.0.0.1:1/x")
    assert "127.0.0.1:1" in message
    assert "s3cret" not in message
    assert "***" in message
    assert "server is running" in message


def test_unreachable_postgres_without_password() -> None:
    message = _open_error("postgresql://nobody@127.0.0.1:1/x")
    assert message.startswith("cannot open run store postgresql://nobody@127.0.0.1:1/x: ")


def test_directory_as_sqlite_file(tmp_path: Path) -> None:
    message = _open_error(f"sqlite:///{tmp_path.as_posix()}")
    assert "is a directory" in message
    assert "phalanx.db" in message


def test_unwritable_sqlite_parent(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    message = _open_error(f"sqlite:///{tmp_path.as_posix()}/file/t.db")
    assert "cannot" in message


def test_not_a_database_file(tmp_path: Path) -> None:
    (tmp_path / "t.db").write_bytes(b"this is not SQLite" * 100)
    message = _open_error(f"sqlite:///{tmp_path.as_posix()}/t.db")
    assert "not a database" in message


def test_malformed_and_unknown_urls() -> None:
    assert "not a valid database URL" in _open_error("this is not a url")
    assert "no database dialect" in _open_error("nosuchdb://host/db")


def test_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    message = _open_error("postgresql://u:pw@127.0.0.1:1/x")
    assert "pip install 'phalanx[postgres]'" in message
    assert "pw@" not in message


def test_url_helpers() -> None:
    assert normalize_url("postgresql://u@h/d") == "postgresql+psycopg://u@h/d"
    assert normalize_url("postgres://u@h/d") == "postgresql+psycopg://u@h/d"
    assert normalize_url("postgresql+psycopg2://u@h/d") == "postgresql+psycopg2://u@h/d"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"
    assert mask_url("postgresql://u:secret@h/d") == "postgresql://u:***@h/d"
    assert "secret" not in mask_url("not a url://u:secret@h")


def test_in_memory_sqlite() -> None:
    with Store.open("sqlite://") as store:
        run = Run(command="memory")
        store.create_run(run)
        assert store.get_run(run.id).command == "memory"


def test_default_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHALANX_DB", "postgresql://u@h/d")
    assert default_url() == "postgresql://u@h/d"
    assert Store().url == "postgresql://u@h/d"
    monkeypatch.delenv("PHALANX_DB")
    assert default_url().startswith("sqlite:///")
    assert default_url().endswith("/phalanx.db")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG_DATA_HOME is Linux's")
def test_default_directory_is_created_on_open_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PHALANX_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    store = Store()
    assert not (tmp_path / "xdg").exists()
    store.connect()
    try:
        assert (tmp_path / "xdg" / "phalanx" / "phalanx.db").is_file()
    finally:
        store.close()

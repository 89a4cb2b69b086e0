"""Fixtures for the store tests: every test that touches a database runs on SQLite and on
PostgreSQL.

PostgreSQL comes from ``PHALANX_TEST_PG_URL`` (a role allowed to create databases; start a
local server with ``export PHALANX_TEST_PG_URL=$(bash .ci/postgres.sh)``). Each test gets a
fresh database, dropped afterwards. Without the variable the PostgreSQL cases are skipped,
except in CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from phalanx.core import Artifact, Finding, Metric, Result, Run, Severity, ThreatModel
from phalanx.store import Store, normalize_url

PG_ENV = "PHALANX_TEST_PG_URL"
_HOW = f"export {PG_ENV}=$(bash .ci/postgres.sh)"


def _postgres_database() -> Iterator[str]:
    admin = os.environ.get(PG_ENV)
    if not admin:
        if os.environ.get("CI") == "true":
            pytest.fail(
                f"{PG_ENV} is not set, and CI must test the store on PostgreSQL ({_HOW})",
                pytrace=False,
            )
        pytest.skip(f"{PG_ENV} is not set ({_HOW} to run the PostgreSQL cases)")
    admin_url = make_url(normalize_url(admin))
    name = f"phalanx_test_{uuid.uuid4().hex[:16]}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            # Plain postgresql:// so the tests also cover the switch to psycopg 3.
            yield admin_url.set(drivername="postgresql", database=name).render_as_string(
                hide_password=False
            )
        finally:
            with engine.connect() as conn:
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": name},
                )
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of an empty database: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path.as_posix()}/t.db"
    else:
        yield from _postgres_database()


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """An open store on ``store_url``."""
    with Store.open(store_url) as opened:
        yield opened


NASTY_STRINGS = [
    "plain",
    "unicode: Ωμέγα, 漢字, emoji 🛡️, RTL \u202eevil\u202c, zero width \u200b",
    "<script>alert('x')</script>",
    "NUL in the middle: a\x00b and at the end\x00",
    "lone surrogate: \ud800 and \udfff",
    "backslashes \\u0000 and \\\\ that look like escapes",
    "\x1bphalanx-escaped:looks escaped but is not",
    "control chars \x01\x02\x07\x1b[31m",
    "quotes ' \" ` and SQL '); DROP TABLE runs; --",
]


def nasty_result(index: int) -> Result:
    """A result with labelled metrics, hostile findings and binary artifacts."""
    start = dt.datetime(2024, 5, 1, 12, 0, index, 123456, tzinfo=dt.timezone.utc)
    evidence = {
        "strings": NASTY_STRINGS,
        "nested": {"deeper": {"list": [1, 2.5, None, True, {"x": "\x00"}]}, "empty": {}},
        "key with NUL \x00": "value",
        "<script>": "</script>",
        "big": 2**53,
        "negative": -1e-300,
    }
    return Result(
        check=f"check-{index}",
        title=f"Result {index}: {NASTY_STRINGS[index % len(NASTY_STRINGS)]}",
        target="zoo:mnist-cnn\x00",
        params={"eps": 0.1, "steps": [1, 2, 3], "name": "<b>bold</b>"},
        threat_model=ThreatModel(knowledge="black-box", norm="l2", eps=0.5, query_budget=1000),
        metrics=[
            Metric("robust_accuracy", 0.42, 0.39, 0.45, {"eps": 0.1, "attack": "pgd"}),
            Metric("robust_accuracy", 0.12, labels={"eps": 0.3, "attack": "pgd"}),
            Metric("queries", 1234.0, unit="queries"),
            Metric("bound", 1.0, lower=-float("inf"), upper=float("inf")),
        ],
        findings=[
            Finding(
                check=f"check-{index}",
                severity=Severity.HIGH if index % 2 else Severity.LOW,
                title=f"Finding {j} \x00 <img src=x onerror=alert(1)>",
                detail="detail " + NASTY_STRINGS[j],
                evidence=evidence,
                remediation="Do the thing. \u202e",
                refs=("owasp-llm-2025:LLM01", "atlas:AML.T0051"),
                plugin_id="pgd",
                plugin_version="1.0",
                params={"eps": 0.1, "nested": {"a": ["b\x00"]}},
                seed=2**40 + j,
            )
            for j in range(3)
        ],
        artifacts=[
            Artifact("examples.bin", "application/octet-stream", bytes(range(256)) * 4 + b"\x00"),
            Artifact("plot.svg", "image/svg+xml", b"<svg><script>x</script></svg>", "a plot"),
            Artifact("empty", "application/octet-stream", b""),
        ],
        refs=("nist-ai-100-2-e2025:NISTAML.022",),
        started_at=start,
        finished_at=start + dt.timedelta(seconds=1.5),
        error="failed\x00 half way" if index == 2 else None,
        seed=2**63 - 1 if index == 1 else index,
    )


@pytest.fixture
def nasty_strings() -> list[str]:
    """Strings that databases, JSON and HTML each find hard to hold."""
    return list(NASTY_STRINGS)


@pytest.fixture
def make_run() -> Callable[..., Run]:
    """Build a run with ``n_results`` nasty results."""

    def build(n_results: int = 3, **fields: object) -> Run:
        run = Run(
            command="demo",
            config={"target": "zoo:mnist-cnn", "checks": ["robustness"], "x": "\x00"},
            tags={"branch": "main", "note": "<script>"},
            **fields,  # type: ignore[arg-type]
        )
        run.results.extend(nasty_result(i) for i in range(n_results))
        return run

    return build

"""Writing, reading, listing and deleting runs, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable

import pytest
from sqlalchemy import create_engine, func, select

from phalanx.core import Finding, Metric, Result, Run, RunStatus, Severity
from phalanx.errors import RunNotFoundError, StoreError
from phalanx.store import Store, normalize_url
from phalanx.store.models import (
    ESCAPE_MARKER,
    ArtifactRow,
    FindingRow,
    MetricRow,
    ResultRow,
    escape_text,
    unescape_text,
)


def _count(store_url: str, row: type) -> int:
    engine = create_engine(normalize_url(store_url))
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(row)).scalar_one())
    finally:
        engine.dispose()


def test_run_round_trips_exactly(
    store: Store, make_run: Callable[..., Run], nasty_strings: list[str]
) -> None:
    run = make_run(3)
    store.create_run(run)
    store.finish_run(run.id, RunStatus.COMPLETED, run.started_at + dt.timedelta(seconds=9))
    run.status = RunStatus.COMPLETED
    run.finished_at = run.started_at + dt.timedelta(seconds=9)

    loaded = store.get_run(run.id)

    assert loaded.to_dict() == run.to_dict()
    assert [r.check for r in loaded.results] == ["check-0", "check-1", "check-2"]
    assert loaded.results[0].artifacts[0].data == run.results[0].artifacts[0].data
    assert loaded.results[1].findings[0].evidence["strings"] == nasty_strings


def test_results_added_one_by_one_keep_their_order(
    store: Store, make_run: Callable[..., Run]
) -> None:
    run = make_run(0)
    store.create_run(run)
    full = make_run(4)
    for result in full.results:
        store.add_result(run.id, result)

    loaded = store.get_run(run.id)

    assert loaded.status is RunStatus.RUNNING
    assert [r.to_dict() for r in loaded.results] == [r.to_dict() for r in full.results]


def test_datetimes_come_back_aware_in_utc(store: Store) -> None:
    plus_two = dt.timezone(dt.timedelta(hours=2))
    started = dt.datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=plus_two)
    run = Run(command="tz", started_at=started)
    run.results.append(Result(check="c", started_at=dt.datetime(2024, 1, 2, 3, 4, 6)))
    store.create_run(run)

    loaded = store.get_run(run.id)

    assert loaded.started_at == started
    assert loaded.started_at.tzinfo is not None
    assert loaded.started_at.utcoffset() == dt.timedelta(0)
    # A naive datetime is taken to be UTC.
    assert loaded.results[0].started_at == dt.datetime(2024, 1, 2, 3, 4, 6, tzinfo=dt.timezone.utc)
    summary = store.list_runs()[0]
    assert summary.started_at == started
    assert summary.started_at.tzinfo is not None


def test_non_finite_numbers(store: Store) -> None:
    run = Run(command="nan")
    run.results.append(
        Result(
            check="c",
            metrics=[
                Metric("undefined", float("nan"), lower=float("nan")),
                Metric("unbounded", float("inf"), lower=-float("inf")),
            ],
            findings=[
                Finding(
                    check="c",
                    severity=Severity.INFO,
                    title="t",
                    evidence={"values": [float("nan"), float("inf"), -float("inf"), 1.5]},
                )
            ],
        )
    )
    store.create_run(run)

    result = store.get_run(run.id).results[0]

    undefined, unbounded = result.metrics
    assert math.isnan(undefined.value)
    assert undefined.lower is None  # a NaN bound is no bound
    assert unbounded.value == float("inf")
    assert unbounded.lower == -float("inf")
    # JSON has no NaN: non-finite floats in evidence come back as their JSON names.
    assert result.findings[0].evidence == {"values": ["NaN", "Infinity", "-Infinity", 1.5]}


def test_prefix_lookup(store: Store) -> None:
    run = Run(command="demo")
    store.create_run(run)

    assert store.get_run(run.id).id == run.id
    assert store.get_run(run.id[:4]).id == run.id
    assert store.get_run(run.id[:10]).id == run.id
    with pytest.raises(RunNotFoundError, match="at least 4"):
        store.get_run(run.id[:3])


def test_short_ids_match_exactly(store: Store) -> None:
    store.create_run(Run(command="demo", id="ab"))
    assert store.get_run("ab").id == "ab"


def test_unknown_and_ambiguous_ids(store: Store) -> None:
    store.create_run(Run(command="a", id="abcd" + "1" * 28))
    store.create_run(Run(command="b", id="abcd" + "2" * 28))
    store.create_run(Run(command="c", id="ABCD" + "3" * 28))

    with pytest.raises(StoreError, match="ambiguous") as info:
        store.get_run("abcd")
    assert not isinstance(info.value, RunNotFoundError)
    assert "abcd" + "1" * 28 in str(info.value)
    assert "abcd" + "2" * 28 in str(info.value)
    assert "ABCD" not in str(info.value)  # prefixes are case-sensitive on every back end
    assert "\n" not in str(info.value)

    assert store.get_run("abcd1").command == "a"
    assert store.get_run("ABCD").command == "c"
    with pytest.raises(RunNotFoundError):
        store.get_run("ffff")
    with pytest.raises(RunNotFoundError):
        store.get_run("abc%")  # LIKE wildcards mean nothing
    with pytest.raises(RunNotFoundError):
        store.get_run("abc_")
    with pytest.raises(RunNotFoundError):
        store.add_result("ffff" * 8, Result(check="c"))
    with pytest.raises(RunNotFoundError):
        store.finish_run("ffff" * 8, RunStatus.COMPLETED)


def test_duplicate_run_is_refused(store: Store) -> None:
    run = Run(command="demo")
    store.create_run(run)
    with pytest.raises(StoreError, match="already"):
        store.create_run(run)


def test_list_runs_newest_first_with_counts(store: Store, make_run: Callable[..., Run]) -> None:
    base = dt.datetime(2024, 6, 1, tzinfo=dt.timezone.utc)
    old = make_run(2, started_at=base)
    middle = Run(command="scan", started_at=base + dt.timedelta(hours=1))
    new = make_run(1, started_at=base + dt.timedelta(hours=2))
    new.results[0].findings = new.results[0].findings[:1]  # one LOW finding
    for run in (middle, new, old):
        store.create_run(run)
    store.finish_run(old.id, RunStatus.COMPLETED)

    summaries = store.list_runs()

    assert [s.id for s in summaries] == [new.id, middle.id, old.id]
    by_id = {s.id: s for s in summaries}
    assert (by_id[old.id].n_results, by_id[old.id].n_findings) == (2, 6)
    assert by_id[old.id].max_severity is Severity.HIGH
    assert by_id[old.id].status is RunStatus.COMPLETED
    assert by_id[old.id].finished_at is not None
    assert by_id[old.id].duration_s is not None
    assert (by_id[middle.id].n_results, by_id[middle.id].n_findings) == (0, 0)
    assert by_id[middle.id].max_severity is None
    assert by_id[middle.id].status is RunStatus.RUNNING
    assert by_id[new.id].max_severity is Severity.LOW
    assert by_id[new.id].started_at == base + dt.timedelta(hours=2)

    assert [s.id for s in store.list_runs(limit=2)] == [new.id, middle.id]
    assert [s.id for s in store.list_runs(command="demo")] == [new.id, old.id]
    assert store.list_runs(command="nothing") == []
    assert store.list_runs(limit=0) == []
    assert len(store.list_runs(limit=None)) == 3
    with pytest.raises(ValueError, match="limit"):
        store.list_runs(limit=-1)


def test_delete_run_removes_everything(
    store: Store, store_url: str, make_run: Callable[..., Run]
) -> None:
    keep = make_run(1)
    gone = make_run(2)
    store.create_run(keep)
    store.create_run(gone)

    assert store.delete_run(gone.id[:8]) == gone.id

    with pytest.raises(RunNotFoundError):
        store.get_run(gone.id)
    assert store.get_run(keep.id).to_dict()["results"] == keep.to_dict()["results"]
    assert _count(store_url, ResultRow) == 1
    assert _count(store_url, MetricRow) == 4
    assert _count(store_url, FindingRow) == 3
    assert _count(store_url, ArtifactRow) == 3
    with pytest.raises(RunNotFoundError):
        store.delete_run(gone.id)


def test_bad_result_is_rolled_back_whole(store: Store, store_url: str) -> None:
    run = Run(command="demo")
    store.create_run(run)
    bad = Result(
        check="bad",
        metrics=[Metric("m", 1.0)],
        findings=[
            Finding(check="bad", severity=Severity.HIGH, title="t", evidence={"x": object()})
        ],
    )

    with pytest.raises(StoreError, match="JSON") as info:
        store.add_result(run.id, bad)
    assert "\n" not in str(info.value)

    assert store.get_run(run.id).results == []
    assert _count(store_url, ResultRow) == 0
    assert _count(store_url, MetricRow) == 0
    # The store is still usable, and positions continue from what is stored.
    store.add_result(run.id, Result(check="good"))
    assert [r.check for r in store.get_run(run.id).results] == ["good"]


def test_escaping_is_reversible_and_minimal(nasty_strings: list[str]) -> None:
    for text in [*nasty_strings, "", ESCAPE_MARKER, ESCAPE_MARKER + "\\u0000", "\\", "\x00"]:
        escaped = escape_text(text)
        assert "\x00" not in escaped
        assert unescape_text(escaped) == text
        escaped.encode("utf-8")  # storable: no lone surrogates left
    assert escape_text("plain <script> text \\u0000") == "plain <script> text \\u0000"

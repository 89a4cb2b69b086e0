"""Recording runs as they progress, and what happens when they are cut short."""

from __future__ import annotations

import datetime as dt
import os
import platform
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable

import pytest

from phalanx.core import Finding, Metric, Result, Run, RunStatus, Severity
from phalanx.errors import StoreError
from phalanx.store import RunTerminated, Store

needs_posix_signals = pytest.mark.skipif(
    sys.platform == "win32", reason="needs SIGKILL and POSIX signal delivery"
)


def test_record_completes_and_tracks_the_run(store: Store, make_run: Callable[..., Run]) -> None:
    run = Run(command="demo")
    results = make_run(2).results

    with store.record(run) as recorder:
        assert store.get_run(run.id).status is RunStatus.RUNNING
        for result in results:
            recorder.add(result)
            # Written at once, not at the end.
            assert store.get_run(run.id).results[-1].to_dict() == result.to_dict()

    assert run.status is RunStatus.COMPLETED
    assert run.finished_at is not None
    assert run.results == results
    assert store.get_run(run.id).to_dict() == run.to_dict()


def test_keyboard_interrupt_marks_interrupted(store: Store) -> None:
    run = Run(command="demo")

    def interrupted() -> None:
        with store.record(run) as recorder:
            recorder.add(Result(check="first"))
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()

    loaded = store.get_run(run.id)
    assert loaded.status is RunStatus.INTERRUPTED
    assert loaded.finished_at is not None
    assert [r.check for r in loaded.results] == ["first"]
    assert run.status is RunStatus.INTERRUPTED


def test_system_exit_marks_interrupted(store: Store) -> None:
    run = Run(command="demo")
    with pytest.raises(SystemExit), store.record(run):
        sys.exit(3)
    assert store.get_run(run.id).status is RunStatus.INTERRUPTED


def test_exception_marks_failed_and_rolls_back_the_bad_result(store: Store) -> None:
    run = Run(command="demo")
    bad = Result(
        check="bad",
        metrics=[Metric("m", 1.0)],
        findings=[Finding(check="bad", severity=Severity.HIGH, title="t", evidence={"s": {1, 2}})],
    )

    def record() -> None:
        with store.record(run) as recorder:
            recorder.add(Result(check="good", metrics=[Metric("m", 2.0)]))
            recorder.add(bad)

    with pytest.raises(StoreError):
        record()

    loaded = store.get_run(run.id)
    assert loaded.status is RunStatus.FAILED
    assert [(r.check, len(r.metrics)) for r in loaded.results] == [("good", 1)]
    assert [r.check for r in run.results] == ["good"]


def test_other_exception_marks_failed(store: Store) -> None:
    run = Run(command="demo")
    with pytest.raises(ZeroDivisionError), store.record(run):
        _ = 1 / 0
    assert store.get_run(run.id).status is RunStatus.FAILED


@needs_posix_signals
def test_sigterm_interrupts_and_the_handler_is_restored(store: Store) -> None:
    previous = signal.getsignal(signal.SIGTERM)
    run = Run(command="demo")

    def terminated() -> None:
        with store.record(run) as recorder:
            recorder.add(Result(check="first"))
            # Never send SIGTERM to the test runner unless the recorder catches it.
            assert signal.getsignal(signal.SIGTERM) == recorder._on_sigterm
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(100):  # the handler runs between bytecodes, so almost at once
                time.sleep(0.01)
            pytest.fail("SIGTERM did not interrupt the run")

    with pytest.raises(RunTerminated):
        terminated()

    assert signal.getsignal(signal.SIGTERM) == previous
    loaded = store.get_run(run.id)
    assert loaded.status is RunStatus.INTERRUPTED
    assert [r.check for r in loaded.results] == ["first"]


def test_reconcile_leaves_other_hosts_and_live_processes_alone(store: Store) -> None:
    elsewhere = Run(command="demo", environment={"hostname": "elsewhere", "pid": 999_999_999})
    here = Run(command="demo")  # this process: alive
    store.create_run(elsewhere)
    store.create_run(here)

    assert store.reconcile() == []
    assert store.get_run(elsewhere.id).status is RunStatus.RUNNING
    assert store.get_run(here.id).status is RunStatus.RUNNING


@needs_posix_signals
def test_reconcile_notices_a_dead_or_reused_pid(store: Store) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = Run(command="dead", environment={"hostname": platform.node(), "pid": gone.pid})
    # A live process that started long after the run did holds a reused pid.
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        reused = Run(
            command="reused",
            started_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1),
            environment={"hostname": platform.node(), "pid": sleeper.pid},
        )
        store.create_run(dead)
        store.create_run(reused)
        store.create_run(Run(command="finished"))
        store.finish_run(store.list_runs(command="finished")[0].id, RunStatus.COMPLETED)

        summaries = {s.command: s for s in store.list_runs()}  # list_runs reconciles
    finally:
        sleeper.kill()
        sleeper.wait()

    assert summaries["dead"].status is RunStatus.INTERRUPTED
    assert summaries["dead"].finished_at is None  # nobody knows when it died
    if sys.platform.startswith("linux"):
        assert summaries["reused"].status is RunStatus.INTERRUPTED
    assert summaries["finished"].status is RunStatus.COMPLETED


_CHILD = textwrap.dedent(
    """
    import sys, time
    from phalanx.core import Metric, Result, Run
    from phalanx.store import Store

    url, run_id = sys.argv[1], sys.argv[2]
    with Store.open(url) as store, store.record(Run(command="child", id=run_id)) as recorder:
        recorder.add(Result(check="first", metrics=[Metric("m", 1.0, labels={"k": "v"})]))
        print("added", flush=True)
        time.sleep(60)
        recorder.add(Result(check="never"))
    """
)


@needs_posix_signals
@pytest.mark.timeout(120)
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "term"])
def test_killed_run_keeps_its_finished_results(store_url: str, signum: int) -> None:
    run_id = Run(command="x").id
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, store_url, run_id],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = child.stdout.readline() if child.stdout else ""
        assert line.strip() == "added", child.stderr.read() if child.stderr else ""
        with Store.open(store_url) as store:
            # The child is alive: reading the store must not mark its run interrupted.
            assert store.get_run(run_id).status is RunStatus.RUNNING
        child.send_signal(signum)
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for stream in (child.stdout, child.stderr):
            if stream:
                stream.close()

    with Store.open(store_url) as store:
        loaded = store.get_run(run_id)

    assert loaded.status is RunStatus.INTERRUPTED
    assert [r.check for r in loaded.results] == ["first"]
    assert loaded.results[0].metrics == [Metric("m", 1.0, labels={"k": "v"})]
    if signum == signal.SIGTERM:
        assert loaded.finished_at is not None  # the recorder saw it coming
    else:
        assert loaded.finished_at is None  # reconcile found the process gone

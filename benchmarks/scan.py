"""Model-file scanner benchmark: phalanx against picklescan, ModelScan, fickling and ModelAudit.

Every scanner gets the same files: the corpus of ``tests/supplychain/corpus.py`` (malicious
samples reproducing published bypasses, and benign files the real libraries write), written
to a temporary directory, plus large benign files for throughput. Each tool scans each sample
separately, through its own command-line entry point, with a per-sample timeout; phalanx and
picklescan are also run through their library APIs in a long-lived process, timed around the
library call alone, which is the like-for-like measure of scanning speed.

Contenders (peers come from their own virtualenv, ``--peers-venv``, made by
``benchmarks/setup-scan-peers.sh``; a tool that is not installed is skipped with the reason):

===================== ==================================================================
``phalanx``           ``phalanx scan PATH --format json --no-store --output REPORT``
                      (default ``--fail-on medium``), from phalanx's own ``.venv``
``phalanx-api``       ``phalanx.supplychain.scan.scan_paths([PATH])`` in a long-lived
                      process of phalanx's interpreter
``phalanx-compiled``  the same two, ``-api`` row too, with the compiled build first on
                      ``PYTHONPATH`` (``--compiled``: by default built for the run with
                      ``scripts/build-compiled.sh``, the ``PHALANX_COMPILE=1`` build, which
                      compiles the pickle analyser, the sniffer and the scan driver with mypyc)
``picklescan``        ``picklescan -p PATH``
``picklescan-api``    ``picklescan.scanner.scan_file_path(PATH)`` (``scan_directory_path``
                      for a directory) in a long-lived process of the peers' interpreter
``picklescan-strict`` ``picklescan --strict -p PATH`` (unknown globals become dangerous)
``modelscan``         ``modelscan -p PATH -r json -o REPORT``
``fickling``          ``fickling --check-safety --json-output REPORT PATH``
``modelaudit``        ``modelaudit scan --format json --no-cache -o REPORT PATH``
===================== ==================================================================

Modes (``--mode``): **warm** (default) keeps one process per tool that imports the tool once
and then calls its console-script entry point (the function ``bin/<tool>`` runs) for each
sample with that sample's arguments, capturing exit code and output exactly as the CLI would
produce them; a sample that outlives ``--timeout`` kills the process, which is restarted for
the next sample. Start-up (interpreter and imports: 1 to 4 s per call for some tools) would
otherwise dominate the run. **cold** starts a fresh process per sample, as a CI step does;
slower, same verdicts. In warm mode each tool also scans the ``--cold-samples`` smallest
benign samples in fresh processes, to report what one cold invocation costs.

When a tool "detects" a sample (the verdict ``flagged``), per tool:

- ``phalanx``: exit code 1 (a finding at or above ``medium``), or a finding of severity
  ``medium``/``high``/``critical`` in its JSON report. Exit 2 with no such finding: error.
- ``phalanx-api``: a finding of severity ``medium`` or above. An exception: error (both
  libraries run in a process of their own that imports nothing else, timed around the call).
- ``picklescan-api``: ``issues_count`` above 0 (the dangerous globals its CLI counts); no
  issue and ``scan_err``, or an exception: error.
- ``picklescan`` (both modes): a dangerous-globals count above 0 in its summary, which is what
  its exit code 1 means; its exit code 2 (a scan error) still counts as flagged when the
  summary printed dangerous globals first, and as an error otherwise. "Suspicious" globals
  are picklescan's own below-threshold level and do not count (``--strict`` promotes them).
- ``modelscan``: an issue of severity ``MEDIUM``, ``HIGH`` or ``CRITICAL`` in its JSON (its
  exit code is 2 or 3 whenever a scanner failed, even with issues found, so the exit code
  alone cannot be used). No issue, exit code 3 ("nothing scanned") and no scanner error:
  unsupported; no issue and a scanner error: error.
- ``fickling``: exit code 1 (``EXIT_UNSAFE``: some pickle in the file is above
  ``LIKELY_SAFE``). Exit code 2 (parse failure, not a pickle): error.
- ``modelaudit``: an issue of severity ``warning`` or ``critical`` (its medium equivalent and
  above; ``info``/``debug`` do not count), which is also what its exit code 1 means. No such
  issue and exit code 2: error.

Every tool: no result within ``--timeout`` seconds is ``timeout``; a process that ends on an
uncaught exception (a traceback as the last thing on stderr) is a crash, counted as ``error``
even when its exit code is 1, which Python uses for uncaught exceptions and some tools also
use for "issues found". Scoring: a malicious sample counts as detected only when
``flagged``, so errors, unsupported formats and timeouts are misses; a benign sample counts
as a false positive only when ``flagged``, and an error, unsupported format or timeout on it
is counted as an error, not as a false positive.

Speed: **files/s** is the number of samples divided by the sum of the tool's per-sample
wall times in the chosen mode; in warm mode each sample's time is the fastest of
``--sample-repeats`` runs, as ``timeit`` takes the minimum, since one run of a few
milliseconds shows any other load on the machine (MB/s is kept in the JSON, but the corpus's
bytes are almost all one sparse header-bomb file). The **directory** run has each tool scan
the whole corpus directory in one fresh process (tools without a directory mode are listed
apart). **Large-file MB/s** is a fresh process on each large benign file (``--large``: a
pickled NumPy array, and a ``torch.save`` checkpoint when torch is installed, of each size in
``--large-mb``, 200 MB and 2 GB by default) with ``--large-timeout``; **real models**
(``--models``) are run the same way: ResNet-50's and GPT-2's state dicts (``torch.save``)
and a scikit-learn random forest (``joblib.dump``), whose throughput is their bytes over a
tool's time on all of them. The ``-api`` rows of all three are the library call in the
long-lived process. Directory, large-file and model runs are repeated ``--repeats`` times,
one tool at a time, and the median kept (the fastest for the ``-api`` rows, as ``timeit``
takes for a call in a warm process). phalanx's modules are byte-compiled first, as a pip
install leaves them. With ``--jobs`` above 1 several tools run the per-sample pass at once,
so per-sample times include contention; use ``--jobs 1`` on a quiet machine for figures to
quote.

Usage::

    .venv/bin/python benchmarks/scan.py [--tools phalanx,picklescan,...] [--mode warm]
        [--timeout 60] [--jobs 2] [--large numpy,torch] [--large-mb 200,2000]
        [--models resnet50,gpt2,forest] [--repeats 3]
        [--sample-repeats 3] [--out benchmarks/results]
        [--peers-venv benchmarks/.venv-scan-peers] [--keep DIR]

Writes ``scan.json`` (machine, versions, rules, the per-sample matrix, summaries) and
``scan.md`` (tables) to ``--out``, overwriting them. Progress goes to stderr. See
``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime as dt
import json
import os
import platform
import queue
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CORPUS_DIR = ROOT / "tests" / "supplychain"

#: Severity ranks shared by every tool's vocabulary (``medium`` is the detection threshold).
RANK = {
    "debug": 0, "info": 1, "low": 2, "medium": 3, "warning": 3, "high": 4, "error": 4,
    "critical": 5,
}
MEDIUM = RANK["medium"]
PEER_PACKAGES = ("picklescan", "modelscan", "fickling", "modelaudit")
#: Telemetry and hub look-ups off: the benchmark must run offline and not phone home.
QUIET_ENV = {
    "PROMPTFOO_DISABLE_TELEMETRY": "1", "NO_ANALYTICS": "1", "DO_NOT_TRACK": "1",
    "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "PYTHONDONTWRITEBYTECODE": "1",
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- outcomes ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    """One tool on one file.

    Args:
        verdict: ``flagged``, ``clean``, ``error``, ``unsupported``, ``timeout`` or ``skipped``.
        seconds: Wall-clock time of the run (process start-up included for CLI tools).
        exit_code: The process exit code (``None`` in process or on timeout).
        max_severity: The most severe issue the tool reported, in its own words.
        detail: A short reason (the top issue, or the error).
    """

    verdict: str
    seconds: float = 0.0
    exit_code: int | None = None
    max_severity: str | None = None
    detail: str = ""


@dataclass
class Proc:
    """What a finished subprocess left behind."""

    code: int
    stdout: str
    stderr: str
    report: Any  # parsed JSON report file, or None


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return _short(lines[-1]) if lines else ""


def _max_severity(names: Sequence[str]) -> str | None:
    ranked = [(RANK.get(n.lower(), -1), n) for n in names]
    ranked = [r for r in ranked if r[0] >= 0]
    return max(ranked)[1] if ranked else None


# -- tools ------------------------------------------------------------------------------------


@dataclass
class Tool:
    """A command-line scanner: how to call it and how to read its answer.

    Args:
        name: Contender name in the tables.
        program: Its console script (``bin/<program>``; the worker loads the same entry point).
        python: The interpreter of the virtualenv it is installed in.
        args: ``(target, report file) -> arguments`` after the program name.
        judge: Turns a finished run into a verdict (the rules in the module docstring).
        uses_report: Whether it writes a JSON report file that the judge reads.
    """

    name: str
    program: str
    python: Path
    args: Callable[[Path, Path], list[str]]
    judge: Callable[[Proc], Outcome]
    uses_report: bool = False
    missing: str = ""  # why the tool cannot run, when it cannot
    version: str = ""
    env: dict[str, str] = field(default_factory=dict)  # set on top of the run's environment

    @property
    def executable(self) -> Path:
        return self.python.parent / self.program


def _phalanx_findings(report: Any) -> list[dict[str, Any]]:
    """The findings of a phalanx JSON report (``results[].findings[]``)."""
    if not isinstance(report, dict):
        return []
    run = report.get("run") if isinstance(report.get("run"), dict) else report
    found = []
    for result in run.get("results") or []:
        if isinstance(result, dict):
            found += [f for f in result.get("findings") or [] if isinstance(f, dict)]
    return found


def _judge_phalanx(p: Proc) -> Outcome:
    report = p.report if p.report is not None else _load_json_text(p.stdout)
    findings = _phalanx_findings(report)
    sev = _max_severity([str(f.get("severity", "")) for f in findings])
    top = max(findings, key=lambda f: RANK.get(str(f.get("severity", "")).lower(), -1),
              default={})
    detail = _short(f"{top.get('severity')}: {top.get('title')}") if top else ""
    if p.code == 1 or (sev is not None and RANK[sev.lower()] >= MEDIUM):
        return Outcome("flagged", max_severity=sev, detail=detail)
    if p.code == 0:
        return Outcome("clean", max_severity=sev, detail=detail)
    return Outcome("error", max_severity=sev, detail=_last_line(p.stderr or p.stdout))


_PICKLESCAN_DANGEROUS = re.compile(r"Dangerous globals:\s*(\d+)")


def _judge_picklescan(p: Proc) -> Outcome:
    text = p.stdout + p.stderr
    match = _PICKLESCAN_DANGEROUS.search(text)
    dangerous = int(match.group(1)) if match else 0
    lines = [ln for ln in text.splitlines() if "dangerous import" in ln.lower()]
    detail = _short(lines[0]) if lines else ""
    if p.code == 1 or dangerous > 0:
        return Outcome("flagged", max_severity="dangerous", detail=detail)
    if p.code == 0:
        return Outcome("clean")
    return Outcome("error", detail=_last_line(text))


def _judge_modelscan(p: Proc) -> Outcome:
    report = p.report if isinstance(p.report, dict) else None
    if report is None:
        return Outcome("error", detail=_last_line(p.stderr or p.stdout) or "no JSON report")
    issues = report.get("issues") or []
    sev = _max_severity([i.get("severity", "") for i in issues if isinstance(i, dict)])
    if sev is not None and RANK[sev.lower()] >= MEDIUM:
        top = max(issues, key=lambda i: RANK.get(str(i.get("severity", "")).lower(), -1))
        return Outcome("flagged", max_severity=sev, detail=_short(str(top.get("description"))))
    errors = report.get("errors") or []
    if p.code == 3 and not errors:
        return Outcome("unsupported", max_severity=sev, detail="no supported files")
    if p.code in (0, 1) and not errors:
        return Outcome("clean", max_severity=sev)
    first = errors[0] if errors and isinstance(errors[0], dict) else {}
    message = str(first.get("description", ""))
    return Outcome("error", max_severity=sev,
                   detail=_short(f"scanner error: {message}" if message else _last_line(p.stderr)))


def _judge_fickling(p: Proc) -> Outcome:
    sev = None
    if isinstance(p.report, dict):
        sev = p.report.get("severity")
    elif isinstance(p.report, list):
        names = [str(r.get("severity")) for r in p.report if isinstance(r, dict)]
        sev = names[-1] if names else None
    if p.code == 1:
        return Outcome("flagged", max_severity=sev, detail=_fickling_detail(p.report))
    if p.code == 0:
        return Outcome("clean", max_severity=sev)
    return Outcome("error", max_severity=sev, detail=_last_line(p.stderr or p.stdout))


def _fickling_detail(report: Any) -> str:
    if isinstance(report, dict):
        for key in ("analysis", "detailed_results"):
            if report.get(key):
                return _short(str(report[key]))
    return ""


def _judge_modelaudit(p: Proc) -> Outcome:
    report = p.report if isinstance(p.report, dict) else _load_json_text(p.stdout)
    if not isinstance(report, dict):
        return Outcome("error", detail=_last_line(p.stderr or p.stdout) or "no JSON report")
    issues = [i for i in report.get("issues") or [] if isinstance(i, dict)]
    sev = _max_severity([str(i.get("severity", "")) for i in issues])
    if p.code == 1 or (sev is not None and RANK[sev.lower()] >= MEDIUM):
        top = max(issues, key=lambda i: RANK.get(str(i.get("severity", "")).lower(), -1),
                  default={})
        return Outcome("flagged", max_severity=sev, detail=_short(str(top.get("message", ""))))
    if p.code == 0:
        return Outcome("clean", max_severity=sev)
    return Outcome("error", max_severity=sev, detail=_last_line(p.stderr) or "exit code 2")


def _load_json_text(text: str) -> Any:
    text = text.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        start = text.find("{")
        if start < 0:
            return None
        try:
            return json.loads(text[start:])
        except ValueError:
            return None


def _phalanx_args(target: Path, report: Path) -> list[str]:
    return ["scan", str(target), "--format", "json", "--no-store", "--output", str(report)]


def make_tools(peers_venv: Path) -> dict[str, Tool]:
    """Every contender, with ``missing`` set where it cannot run here (``phalanx-compiled``
    gets its build or the reason for none from :func:`use_compiled`)."""
    # absolute, but not resolved: a venv's python is a symlink to the base interpreter
    ours = Path(os.path.abspath(sys.executable))
    peer = Path(os.path.abspath(peers_venv)) / "bin" / "python"
    tools = {
        "phalanx": Tool("phalanx", "phalanx", ours, _phalanx_args, _judge_phalanx,
                        uses_report=True),
        "phalanx-compiled": Tool("phalanx-compiled", "phalanx", ours, _phalanx_args,
                                 _judge_phalanx, uses_report=True),
        "picklescan": Tool("picklescan", "picklescan", peer, lambda t, r: ["-p", str(t)],
                           _judge_picklescan),
        "picklescan-strict": Tool("picklescan-strict", "picklescan", peer,
                                  lambda t, r: ["--strict", "-p", str(t)], _judge_picklescan),
        "modelscan": Tool("modelscan", "modelscan", peer,
                          lambda t, r: ["-p", str(t), "-r", "json", "-o", str(r)],
                          _judge_modelscan, uses_report=True),
        "fickling": Tool("fickling", "fickling", peer,
                         lambda t, r: ["--check-safety", "--json-output", str(r), str(t)],
                         _judge_fickling, uses_report=True),
        "modelaudit": Tool("modelaudit", "modelaudit", peer,
                           lambda t, r: ["scan", "--format", "json", "--no-cache", "-o", str(r),
                                         str(t)],
                           _judge_modelaudit, uses_report=True),
    }
    versions = peer_versions(peers_venv)
    for tool in tools.values():
        if not tool.executable.exists():
            hint = ("run from phalanx's .venv" if tool.program == "phalanx"
                    else "run benchmarks/setup-scan-peers.sh or pass --peers-venv")
            tool.missing = f"{tool.executable} not found: {hint}"
        if tool.program != "phalanx":
            tool.version = versions.get(tool.program, "")
    return tools


def use_compiled(tool: Tool, compiled: Path | None, why_not: str) -> None:
    """Point the ``phalanx-compiled`` tool at the compiled build, or mark it missing."""
    if compiled is None:
        tool.missing = tool.missing or why_not
    else:
        tool.env = {"PYTHONPATH": str(compiled)}


def build_compiled(choice: str, work: Path) -> tuple[Path | None, str]:
    """The compiled build to run (``--compiled``): ``auto`` builds one into ``work`` with
    ``scripts/build-compiled.sh``, a directory is used as it is, ``none`` skips it. Returns
    the directory, or ``None`` and why there is none. A directory whose pickle analyser does
    not import as compiled is refused, so that the source is never timed as the build."""
    if choice == "none":
        return None, "not asked for (--compiled none)"
    if choice == "auto":
        out = work / "compiled"
        log("building the compiled phalanx (scripts/build-compiled.sh)")
        done = subprocess.run(["bash", str(ROOT / "scripts" / "build-compiled.sh"),
                               sys.executable, str(out)], capture_output=True, text=True,
                              check=False)
        if done.returncode != 0:
            return None, "the compiled build failed: " + _last_line(done.stderr)
    else:
        out = Path(choice).resolve()
    probe = subprocess.run(
        [sys.executable, "-c", "import phalanx.supplychain.scan.pickle_vm as m; "
         "print(m.COMPILED, m.__file__)"],
        capture_output=True, text=True, check=False,
        env=dict(os.environ) | {"PYTHONPATH": str(out)})
    if not probe.stdout.startswith("True "):
        return None, f"{out} holds no compiled build ({_last_line(probe.stderr or probe.stdout)})"
    return out, ""


def peer_versions(peers_venv: Path) -> dict[str, str]:
    python = peers_venv / "bin" / "python"
    if not python.exists():
        return {}
    code = ("import importlib.metadata as m, json\n"
            "out = {}\n"
            f"for p in {list(PEER_PACKAGES)!r}:\n"
            "    try: out[p] = m.version(p)\n"
            "    except m.PackageNotFoundError: pass\n"
            "print(json.dumps(out))")
    try:
        done = subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                              timeout=60, check=False)
        return json.loads(done.stdout or "{}")
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return {}


def _finish(tool: Tool, code: int, stdout: str, stderr: str, report_path: Path,
            seconds: float) -> Outcome:
    report = None
    if tool.uses_report and report_path.exists():
        try:
            report = json.loads(report_path.read_text(errors="replace") or "null")
        except ValueError:
            report = None
    if code in (1, -1) and _crashed(stderr):
        # An uncaught exception exits with 1, which some tools also use for "issues found".
        return Outcome("error", seconds, code, None, "crash: " + _last_line(stderr))
    outcome = tool.judge(Proc(code, stdout, stderr, report))
    outcome.seconds, outcome.exit_code = seconds, code
    if outcome.verdict == "error" and "Traceback (most recent call last)" in stderr:
        outcome.detail = "crash: " + (_last_line(stderr) or outcome.detail)
    return outcome


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Warning)\b")


def _crashed(stderr: str) -> bool:
    """Whether the process ended on an uncaught exception (a traceback as its last words)."""
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    return ("Traceback (most recent call last)" in stderr and bool(lines)
            and bool(_EXCEPTION_LINE.match(lines[-1].strip())))


def run_cold(tool: Tool, target: Path, timeout: float, env: dict[str, str]) -> Outcome:
    """Run one CLI tool on one path in a fresh process and a scratch working directory."""
    with tempfile.TemporaryDirectory(prefix=f"scanbench-{tool.name}-") as scratch:
        report_path = Path(scratch) / "report.json"
        argv = [str(tool.executable), *tool.args(target, report_path)]
        started = time.perf_counter()
        try:
            done = subprocess.run(argv, cwd=scratch, env=env | tool.env, stdin=subprocess.DEVNULL,
                                  capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return Outcome("timeout", seconds=time.perf_counter() - started,
                           detail=f"no result within {timeout:g} s")
        except OSError as exc:
            return Outcome("error", seconds=time.perf_counter() - started,
                           detail=f"cannot start: {exc}")
        seconds = time.perf_counter() - started
        return _finish(tool, done.returncode, done.stdout.decode(errors="replace"),
                       done.stderr.decode(errors="replace"), report_path, seconds)


_MARK = "@@scanbench@@ "


class WarmWorker:
    """One long-lived process running a tool's console-script entry point, call after call.

    The same code as the CLI runs (same arguments, same exit codes), minus interpreter start-up
    and imports, so that per-sample runs take seconds rather than minutes. A call that
    outlives its timeout kills the worker (the next call starts a fresh one); a worker that
    dies mid-call is a crash.
    """

    def __init__(self, tool: Tool, env: dict[str, str], mode: str = "--worker") -> None:
        self.tool, self.env, self.mode = tool, env, mode
        self.proc: subprocess.Popen[str] | None = None
        self.replies: queue.Queue[dict[str, Any] | None] = queue.Queue()

    def _start(self) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [str(self.tool.python), str(Path(__file__).resolve()), self.mode, self.tool.program],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=self.env | self.tool.env, text=True, start_new_session=True,
        )
        replies: queue.Queue[dict[str, Any] | None] = queue.Queue()

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith(_MARK):
                    replies.put(json.loads(line[len(_MARK):]))
            replies.put(None)

        threading.Thread(target=read, daemon=True).start()
        self.proc, self.replies = proc, replies
        return proc

    def stop(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def call(self, request: dict[str, Any], timeout: float) -> dict[str, Any] | Outcome:
        """Send one request; the reply, or the ``timeout``/``error`` outcome when none came
        (the worker is then stopped, and the next call starts a fresh one)."""
        proc = self.proc if self.proc is not None else self._start()
        started = time.perf_counter()
        try:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(request) + "\n")
            proc.stdin.flush()
            reply = self.replies.get(timeout=timeout)
        except queue.Empty:
            self.stop()
            return Outcome("timeout", seconds=time.perf_counter() - started,
                           detail=f"no result within {timeout:g} s")
        except (BrokenPipeError, OSError):
            reply = None
        if reply is None:
            self.stop()
            return Outcome("error", seconds=time.perf_counter() - started,
                           detail="crash: the process died")
        reply["wall_s"] = time.perf_counter() - started
        return reply

    def run(self, target: Path, timeout: float) -> Outcome:
        """The tool's CLI on ``target``, judged by its rule."""
        with tempfile.TemporaryDirectory(prefix=f"scanbench-{self.tool.name}-") as scratch:
            report_path = Path(scratch) / "report.json"
            reply = self.call({"args": self.tool.args(target, report_path), "cwd": scratch},
                              timeout)
            if isinstance(reply, Outcome):
                return reply
            return _finish(self.tool, reply["code"], reply["stdout"], reply["stderr"],
                           report_path, reply["wall_s"])


class LibraryApi:
    """A tool's library call (phalanx's ``scan_paths``; picklescan's ``scan_file_path`` and
    ``scan_directory_path``) in a long-lived process of the tool's own interpreter, timed
    around the call only. Both libraries run the same way, in a process that imports nothing
    but the tool, so neither pays for the other's memory (garbage collection in a process
    holding torch costs tens of milliseconds) or for the benchmark's own."""

    def __init__(self, tool: Tool, env: dict[str, str]) -> None:
        # the CLI tool's interpreter, serving library calls instead of command lines
        self.worker = WarmWorker(tool, env, mode="--api-worker")

    def run(self, target: Path, timeout: float) -> Outcome:
        reply = self.worker.call({"path": str(target)}, timeout)
        if isinstance(reply, Outcome):
            return reply
        if reply.get("crash"):
            return Outcome("error", reply["seconds"], detail=_short("crash: " + reply["crash"]))
        return Outcome(reply["verdict"], reply["seconds"], None, reply.get("severity"),
                       _short(reply.get("detail", "")))

    def stop(self) -> None:
        self.worker.stop()


def api_worker(program: str) -> int:
    """``--api-worker PROGRAM``: serve ``{"path"}`` requests with the library of ``phalanx``
    or ``picklescan``, one per line, answering with the call's own time and its verdict by
    the rules of the module docstring (picklescan: its dangerous-globals count and error flag,
    the facts its CLI turns into an exit code; phalanx: a finding of severity medium or above).
    """
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # log lines are not replies
    if program == "phalanx":
        from phalanx.core.findings import Severity
        from phalanx.supplychain.scan import scan_paths

        def scan(path: str) -> dict[str, Any]:
            report = scan_paths([path])
            worst = max(report.findings, key=lambda f: f.severity, default=None)
            if worst is None:
                return {"verdict": "clean"}
            flagged = worst.severity >= Severity.MEDIUM
            return {"verdict": "flagged" if flagged else "clean",
                    "severity": worst.severity.label,
                    "detail": f"{worst.severity.label}: {worst.title}" if flagged else ""}
    else:
        from picklescan.scanner import scan_directory_path, scan_file_path

        def scan(path: str) -> dict[str, Any]:
            result = scan_directory_path(path) if os.path.isdir(path) else scan_file_path(path)
            if result.issues_count > 0:
                return {"verdict": "flagged", "severity": "dangerous",
                        "detail": f"{result.issues_count} dangerous globals"}
            if result.scan_err:
                return {"verdict": "error", "detail": "scan error"}
            return {"verdict": "clean"}

    for line in sys.stdin:
        path = json.loads(line)["path"]
        started = time.perf_counter()
        try:
            reply = scan(path)
        except Exception as exc:  # a crash is a result to report, not a reason to stop
            reply = {"crash": f"{type(exc).__name__}: {exc}"}
        reply["seconds"] = time.perf_counter() - started
        channel.write(_MARK + json.dumps(reply) + "\n")
    return 0


def worker(program: str) -> int:
    """``--worker PROGRAM``: serve requests ``{"args", "cwd"}`` on stdin, one per line.

    Runs the console-script entry point ``PROGRAM`` with ``sys.argv`` set, with file
    descriptors 1 and 2 redirected to temporary files, and answers on the original stdout with
    the exit code and the captured output. Logging handlers a call adds are removed after it.
    """
    import importlib.metadata
    import logging
    import traceback

    channel = os.fdopen(os.dup(1), "w", buffering=1)
    entry: Any = None
    for line in sys.stdin:
        request = json.loads(line)
        loggers = [logging.getLogger()] + [
            lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger)
        ]
        before = {id(lg): list(lg.handlers) for lg in loggers}
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            sys.stdout.flush()
            sys.stderr.flush()
            saved = os.dup(1), os.dup(2)
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            try:
                os.chdir(request["cwd"])
                if entry is None:
                    (point,) = importlib.metadata.entry_points(group="console_scripts",
                                                               name=program)
                    entry = point.load()
                sys.argv = [program, *request["args"]]
                try:
                    result = entry()
                except SystemExit as exc:
                    result = exc.code
                code = 0 if result is None else result if isinstance(result, int) else 1
            except BaseException:  # the tool crashed: report it like a CLI traceback
                traceback.print_exc()
                code = -1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                os.close(saved[0])
                os.close(saved[1])
                os.chdir("/")
            for lg in [logging.getLogger()] + [
                lg for lg in logging.root.manager.loggerDict.values()
                if isinstance(lg, logging.Logger)
            ]:
                keep = before.get(id(lg), [])
                for handler in [h for h in lg.handlers if h not in keep]:
                    lg.removeHandler(handler)
            texts = []
            for fh in (out, err):
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - 65536))
                texts.append(fh.read().decode(errors="replace"))
        channel.write(_MARK + json.dumps({"code": code, "stdout": texts[0],
                                          "stderr": texts[1]}) + "\n")
    return 0


def compile_phalanx(compiled: Path | None) -> None:
    """Byte-compile phalanx's modules (and the Python ones of the compiled build), as
    ``pip install`` does: a source checkout run with ``PYTHONDONTWRITEBYTECODE`` set would
    otherwise compile them at every start, which is not what a user's cold start costs. The
    peers' virtualenv was compiled by pip."""
    import compileall

    import phalanx

    compileall.compile_dir(str(Path(phalanx.__file__).parent), quiet=1)
    if compiled is not None:
        compileall.compile_dir(str(compiled), quiet=1)


def repeated(run: Callable[[], Outcome], repeats: int, *, fastest: bool = False) -> Outcome:
    """Run ``run`` ``repeats`` times; the outcome of the median time (``fastest``: of the
    fastest, as ``timeit`` takes for a call in a warm process, where any other load on the
    machine only adds time: a sample's time is milliseconds), with every time kept. A run
    that timed out or crashed is not repeated."""
    outcomes = [run()]
    while len(outcomes) < repeats and not (
            outcomes[-1].verdict == "timeout" or outcomes[-1].detail.startswith("crash")):
        outcomes.append(run())
    ranked = sorted(outcomes, key=lambda o: o.seconds)
    chosen = ranked[0] if fastest else ranked[(len(ranked) - 1) // 2]
    chosen.detail = (chosen.detail + " " if chosen.detail else "") + (
        "times: " + ", ".join(f"{o.seconds:.3f}" for o in outcomes))
    return chosen


#: Contenders run through their library in a long-lived process rather than their CLI.
API_TOOLS = ("phalanx-api", "phalanx-compiled-api", "picklescan-api")

#: Tools whose command line takes a directory and scans what is under it.
DIRECTORY_TOOLS = {"phalanx", "phalanx-compiled", "picklescan", "picklescan-strict", "modelscan",
                   "modelaudit"}


def scan_directory(cli_tools: list[Tool], corpus_dir: Path, manifest: list[dict[str, Any]],
                   args: argparse.Namespace, env: dict[str, str],
                   apis: dict[str, Callable[[Path], Outcome]]) -> dict[str, Any]:
    """Each tool over the whole corpus directory in one fresh process (how a CI step scans a
    model repository): the median of ``--repeats`` wall times, and files per second."""
    files = sum(1 for p in corpus_dir.rglob("*") if p.is_file())
    out: dict[str, Any] = {"files": files, "samples": len(manifest), "results": {},
                           "not_supported": sorted(t.name for t in cli_tools
                                                   if t.name not in DIRECTORY_TOOLS)}
    for tool in cli_tools:
        if tool.name not in DIRECTORY_TOOLS:
            continue
        outcome = repeated(lambda tool=tool: run_cold(tool, corpus_dir, args.large_timeout,
                                                      env), args.repeats)
        out["results"][tool.name] = asdict(outcome) | {
            "files_per_s": files / outcome.seconds if outcome.seconds else None}
        log(f"directory: {tool.name} in {outcome.seconds:.2f} s ({outcome.verdict})")
    for name, api in apis.items():
        outcome = repeated(lambda api=api: api(corpus_dir), args.repeats, fastest=True)
        out["results"][name] = asdict(outcome) | {
            "files_per_s": files / outcome.seconds if outcome.seconds else None}
        log(f"directory: {name} in {outcome.seconds:.2f} s")
    return out


# -- corpus and large files -------------------------------------------------------------------


def build_corpus(out: Path) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Write the corpus; returns the manifest and the samples skipped (missing libraries)."""
    if str(CORPUS_DIR) not in sys.path:
        sys.path.insert(0, str(CORPUS_DIR))
    import corpus  # tests/supplychain/corpus.py

    skipped = [{"name": s.name, "needs": ", ".join(s.needs)}
               for s in corpus.all_samples() if not s.available()]
    manifest = corpus.build_corpus(out, canary=out.parent / "CANARY")
    for entry in manifest:
        entry["bytes"] = _size(out / str(entry["path"]))
    return manifest, skipped


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _resnet50_shapes() -> dict[str, tuple[int, ...]]:
    """Parameter and buffer names and shapes of torchvision's ResNet-50 state dict (He et
    al., 2016, "Deep Residual Learning for Image Recognition"; bottleneck blocks 3-4-6-3)."""
    shapes: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 7, 7)}

    def batch_norm(prefix: str, n: int) -> None:
        for field_name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{field_name}"] = (n,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    batch_norm("bn1", 64)
    inplanes = 64
    for layer, (blocks, planes) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512), strict=True), 1):
        for b in range(blocks):
            p = f"layer{layer}.{b}"
            shapes[f"{p}.conv1.weight"] = (planes, inplanes, 1, 1)
            batch_norm(f"{p}.bn1", planes)
            shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            batch_norm(f"{p}.bn2", planes)
            shapes[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
            batch_norm(f"{p}.bn3", planes * 4)
            if b == 0:
                shapes[f"{p}.downsample.0.weight"] = (planes * 4, inplanes, 1, 1)
                batch_norm(f"{p}.downsample.1", planes * 4)
            inplanes = planes * 4
    shapes["fc.weight"] = (1000, 2048)
    shapes["fc.bias"] = (1000,)
    return shapes


def _gpt2_shapes() -> dict[str, tuple[int, ...]]:
    """Names and shapes of Hugging Face's GPT-2 (124M) ``GPT2LMHeadModel`` state dict
    (Radford et al., 2019); ``lm_head.weight`` shares ``wte``'s storage, as there."""
    d, ctx, vocab = 768, 1024, 50257
    shapes: dict[str, tuple[int, ...]] = {"transformer.wte.weight": (vocab, d),
                                          "transformer.wpe.weight": (ctx, d)}
    for i in range(12):
        h = f"transformer.h.{i}"
        shapes.update({
            f"{h}.ln_1.weight": (d,), f"{h}.ln_1.bias": (d,),
            f"{h}.attn.c_attn.weight": (d, 3 * d), f"{h}.attn.c_attn.bias": (3 * d,),
            f"{h}.attn.c_proj.weight": (d, d), f"{h}.attn.c_proj.bias": (d,),
            f"{h}.ln_2.weight": (d,), f"{h}.ln_2.bias": (d,),
            f"{h}.mlp.c_fc.weight": (d, 4 * d), f"{h}.mlp.c_fc.bias": (4 * d,),
            f"{h}.mlp.c_proj.weight": (4 * d, d), f"{h}.mlp.c_proj.bias": (d,),
        })
    shapes.update({"transformer.ln_f.weight": (d,), "transformer.ln_f.bias": (d,)})
    return shapes


def build_models(out: Path, kinds: Sequence[str]) -> list[dict[str, Any]]:
    """Benign models as users download them, written by the real libraries: the state dicts
    of ResNet-50 (103 MB, 320 tensors) and GPT-2 (498 MB, 149 tensors and a tied head), and a
    scikit-learn random forest saved with joblib (arrays written inline). Throughput on these
    is what a model repository's scan costs."""
    out.mkdir(parents=True, exist_ok=True)
    made: list[dict[str, Any]] = []
    for kind in kinds:
        if kind in ("resnet50", "gpt2"):
            try:
                import torch
            except ImportError:
                log(f"torch is not installed: no {kind} state dict")
                continue
            shapes = _resnet50_shapes() if kind == "resnet50" else _gpt2_shapes()
            state = {name: (torch.zeros(shape, dtype=torch.int64) if name.endswith("tracked")
                            else torch.zeros(shape)) for name, shape in shapes.items()}
            if kind == "gpt2":
                state["lm_head.weight"] = state["transformer.wte.weight"]
            path = out / f"{kind}-state-dict.pt"
            torch.save(state, path)
            del state
        elif kind == "forest":
            try:
                import joblib
                from sklearn.datasets import make_classification
                from sklearn.ensemble import RandomForestClassifier
            except ImportError:
                log("scikit-learn is not installed: no random forest")
                continue
            x, y = make_classification(n_samples=4000, n_features=32, random_state=0)
            forest = RandomForestClassifier(n_estimators=100, random_state=0).fit(x, y)
            path = out / "random-forest.joblib"
            joblib.dump(forest, path)
        else:
            raise SystemExit(f"unknown --models kind {kind!r} (resnet50, gpt2, forest)")
        made.append({"name": path.name, "kind": kind, "path": str(path),
                     "bytes": path.stat().st_size})
    return made


def build_large(out: Path, kinds: Sequence[str], sizes_mb: Sequence[int]) -> list[dict[str, Any]]:
    """Large benign files for the throughput runs (random float32 data, not compressible),
    one per kind and size."""
    out.mkdir(parents=True, exist_ok=True)
    made: list[dict[str, Any]] = []
    for megabytes in sizes_mb:
        n = max(1, megabytes * 1024 * 1024 // 4)
        for kind in kinds:
            if kind == "numpy":
                import pickle

                import numpy as np

                path = out / f"large-numpy-{megabytes}mb.pkl"
                array = np.random.default_rng(0).random(n, dtype=np.float32)
                with path.open("wb") as fh:
                    pickle.dump({"embedding": array}, fh, protocol=4)
                del array
            elif kind == "torch":
                try:
                    import torch
                except ImportError:
                    log("torch is not installed: no large torch checkpoint")
                    continue
                path = out / f"large-torch-{megabytes}mb.pt"
                tensor = torch.rand(n, generator=torch.Generator().manual_seed(0))
                torch.save({"embedding": tensor}, path)
                del tensor
            else:
                raise SystemExit(f"unknown --large kind {kind!r} (numpy, torch)")
            made.append({"name": path.name, "kind": kind, "path": str(path),
                         "bytes": path.stat().st_size})
    return made


# -- summaries --------------------------------------------------------------------------------


def models_throughput(data: dict[str, Any], tool: str) -> dict[str, Any] | None:
    """A tool's throughput over the real models: their bytes over its time on all of them
    (``None`` when it did not scan every one cleanly: an error or a flag on a benign model
    is not a speed)."""
    models = data.get("models") or []
    outcomes = [data["large_results"].get(m["name"], {}).get(tool) for m in models]
    if not models or any(o is None for o in outcomes):
        return None
    failed = [m["name"] for m, o in zip(models, outcomes, strict=True) if o["verdict"] != "clean"]
    seconds = sum(o["seconds"] for o in outcomes)
    megabytes = sum(m["bytes"] for m in models) / 1e6
    return {"seconds": seconds, "mb_per_s": megabytes / seconds if seconds else 0.0,
            "not_clean": failed}


def _models_table(data: dict[str, Any], tools: Sequence[str]) -> list[str]:
    models = data.get("models") or []
    if not models:
        return []
    lines = ["", "## Real models", "",
             "Benign models with the layouts users download, written by the real libraries "
             "(`--models`): ResNet-50's and GPT-2's state dicts saved with `torch.save`, and a "
             "scikit-learn random forest saved with `joblib.dump`. One fresh process per file "
             f"(median of {data['settings'].get('repeats', 1)} runs); the `-api` rows are the "
             "library call in a long-lived process (fastest of the runs). *Throughput* is all the models' bytes over "
             "the tool's time on all of them, given only when it scanned each one without an "
             "error or a flag.", "",
             "| tool | " + " | ".join(f"{m['name']} ({m['bytes'] / 1e6:.0f} MB)"
                                     for m in models) + " | throughput |",
             "| --- |" + " --- |" * (len(models) + 1)]
    for tool in tools:
        cells = []
        for m in models:
            o = data["large_results"].get(m["name"], {}).get(tool)
            if o is None:
                cells.append("-")
                continue
            verdict = "" if o["verdict"] == "clean" else f", **{o['verdict']}**"
            cells.append(f"{o['seconds'] * 1e3:.0f} ms{verdict}")
        total = models_throughput(data, tool)
        if total is None:
            cells.append("-")
        elif total["not_clean"]:
            cells.append(f"- ({len(total['not_clean'])} not clean)")
        else:
            cells.append(f"{total['mb_per_s']:,.0f} MB/s")
        lines.append(f"| {tool} | " + " | ".join(cells) + " |")
    return lines


def summarise(tool: str, manifest: list[dict[str, Any]],
              matrix: dict[str, dict[str, Outcome]]) -> dict[str, Any]:
    mal = [e for e in manifest if e["malicious"]]
    ben = [e for e in manifest if not e["malicious"]]
    if all(tool not in r for r in matrix.values()):
        return {}

    def verdict(entry: dict[str, Any]) -> str:
        outcome = matrix[entry["name"]].get(tool)
        return outcome.verdict if outcome else "skipped"

    detected = [e["name"] for e in mal if verdict(e) == "flagged"]
    missed = {e["name"]: verdict(e) for e in mal if verdict(e) != "flagged"}
    fps = [e["name"] for e in ben if verdict(e) == "flagged"]
    benign_errors = {e["name"]: verdict(e) for e in ben
                     if verdict(e) in ("error", "unsupported", "timeout")}
    all_outcomes = [matrix[e["name"]][tool] for e in manifest if tool in matrix[e["name"]]]
    seconds = [o.seconds for o in all_outcomes]
    total_bytes = sum(e["bytes"] for e in manifest)
    return {
        "malicious": len(mal),
        "detected": len(detected),
        "detection_rate": len(detected) / len(mal) if mal else None,
        "missed": missed,
        "benign": len(ben),
        "false_positives": len(fps),
        "false_positive_rate": len(fps) / len(ben) if ben else None,
        "false_positive_samples": fps,
        "benign_errors": benign_errors,
        "errors": sum(o.verdict == "error" for o in all_outcomes),
        "crashes": sum(o.verdict == "error" and o.detail.startswith("crash") for o in all_outcomes),
        "unsupported": sum(o.verdict == "unsupported" for o in all_outcomes),
        "timeouts": sum(o.verdict == "timeout" for o in all_outcomes),
        "seconds_total": sum(seconds),
        "seconds_median": statistics.median(seconds) if seconds else None,
        "mb_per_s_files": (total_bytes / 1e6) / sum(seconds) if sum(seconds) else None,
        "files_per_s": len(seconds) / sum(seconds) if sum(seconds) else None,
    }


def by_format(tool: str, manifest: list[dict[str, Any]],
              matrix: dict[str, dict[str, Outcome]]) -> dict[str, str]:
    """``detected/malicious`` per sample format."""
    formats: dict[str, list[int]] = {}
    for entry in manifest:
        if not entry["malicious"] or tool not in matrix[entry["name"]]:
            continue
        tally = formats.setdefault(str(entry["format"]), [0, 0])
        tally[1] += 1
        tally[0] += matrix[entry["name"]][tool].verdict == "flagged"
    return {fmt: f"{d}/{n}" for fmt, (d, n) in sorted(formats.items())}


def time_by_format(tool: str, manifest: list[dict[str, Any]],
                   matrix: dict[str, dict[str, Outcome]]) -> dict[str, float]:
    """Mean milliseconds per sample, per sample format (each sample's fastest run)."""
    times: dict[str, list[float]] = {}
    for entry in manifest:
        outcome = matrix[entry["name"]].get(tool)
        if outcome is not None:
            times.setdefault(str(entry["format"]), []).append(outcome.seconds)
    return {fmt: 1000 * statistics.fmean(ts) for fmt, ts in sorted(times.items())}


# -- machine ----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = round(int(line.split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError):
        pass
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    return {
        "platform": platform.platform(), "python": platform.python_version(), "cpu": cpu,
        "cpus": os.cpu_count(), "memory_gib": memory, "loadavg_start": load,
    }


# -- report -----------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def write_markdown(path: Path, data: dict[str, Any]) -> None:
    tools = [t for t in data["tools"] if data["summary"].get(t)]
    lines = [
        "# Model-file scanner benchmark",
        "",
        f"Generated {data['generated_at']} by `benchmarks/scan.py` on {data['machine']['cpu']} "
        f"({data['machine']['cpus']} CPUs, Python {data['machine']['python']}), "
        f"`--mode {data['settings']['mode']}`, `--jobs {data['settings']['jobs']}`, "
        f"per-sample timeout "
        f"{data['settings']['timeout_s']:g} s. Corpus: {data['corpus']['malicious']} malicious "
        f"and {data['corpus']['benign']} benign samples, {data['corpus']['bytes'] / 1e6:.2f} MB.",
        "",
        "Detection counts a malicious sample only when the tool flags it at its medium-equivalent "
        "severity or above (errors, unsupported formats and timeouts are misses); a false "
        "positive is a benign sample flagged the same way (errors on benign samples are counted "
        "apart). The exact rule per tool is in the docstring of `benchmarks/scan.py`.",
        "",
        "| tool | version | detected | detection rate | false positives | FP rate | errors "
        "(crashes) | unsupported | timeouts | median s/file | files/s | cold start s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for tool in tools:
        s = data["summary"][tool]
        lines.append(
            f"| {tool} | {data['versions'].get(tool, '')} | {s['detected']}/{s['malicious']} | "
            f"{_pct(s['detection_rate'])} | {s['false_positives']}/{s['benign']} | "
            f"{_pct(s['false_positive_rate'])} | {s['errors']} ({s['crashes']}) | "
            f"{s['unsupported']} | {s['timeouts']} | {_num(s['seconds_median'], '{:.3f}')} | "
            f"{_num(s.get('files_per_s'), '{:.0f}')} | {_num(s.get('cold_median_s'))} |"
        )
    lines += ["", "*median s/file* and *files/s* are per-sample runs in the mode above, the "
              f"fastest of {data['settings'].get('sample_repeats', 1)} runs of each sample "
              "(warm: the tool's own CLI entry point called in a long-lived process, so without "
              "interpreter start-up and imports; the `-api` rows: the library call alone, the "
              "like-for-like measure of scanning speed; the `-compiled` rows: the "
              "`PHALANX_COMPILE=1` build, its pickle analyser, sniffer and scan driver compiled "
              "with mypyc); *cold start s* is the median time of a fresh "
              "process on the smallest benign samples, which is what one CI invocation costs. "
              "Files per second rather than MB/s: the corpus's bytes are almost all one sparse "
              "200 MB safetensors header bomb that every tool rejects from its first bytes."]
    directory = data.get("directory")
    if directory and directory["results"]:
        lines += ["", "## Whole corpus directory, one fresh process", "",
                  f"Each tool scans the corpus directory ({directory['files']} files) in one "
                  f"invocation, as a CI step scanning a model repository does; median of "
                  f"{data['settings'].get('repeats', 1)} runs (the `-api` rows: the library "
                  "call on the directory in a long-lived process, without start-up, fastest "
                  "of the runs).", "",
                  "| tool | seconds | files/s |", "| --- | ---: | ---: |"]
        for tool, o in directory["results"].items():
            lines.append(f"| {tool} | {o['seconds']:.2f} | {_num(o['files_per_s'], '{:.0f}')} |")
        if directory["not_supported"]:
            lines += ["", "Not run (no directory mode): " + ", ".join(directory["not_supported"])]
    skipped = {t: r for t, r in data["skipped_tools"].items()}
    if skipped:
        lines += ["", "Skipped tools: " + "; ".join(f"{t} ({r})" for t, r in skipped.items())]
    if data["large"]:
        lines += ["", "## Large benign files", "",
                  f"One fresh process per file (median of {data['settings'].get('repeats', 1)} "
                  "runs); the `-api` rows are the library call in a long-lived process "
                  "(fastest of the runs).", "",
                  "| tool | " + " | ".join(f"{f['name']} ({f['bytes'] / 1e6:.0f} MB)"
                                          for f in data["large"]) + " |",
                  "| --- |" + " --- |" * len(data["large"])]
        for tool in tools:
            cells = []
            for f in data["large"]:
                o = data["large_results"].get(f["name"], {}).get(tool)
                if o is None:
                    cells.append("-")
                    continue
                speed = f["bytes"] / 1e6 / o["seconds"] if o["seconds"] else 0
                verdict = "" if o["verdict"] == "clean" else f", **{o['verdict']}**"
                cells.append(f"{o['seconds']:.2f} s, {speed:.1f} MB/s{verdict}")
            lines.append(f"| {tool} | " + " | ".join(cells) + " |")
    lines += _models_table(data, tools)
    formats = sorted({fmt for t in tools for fmt in data["by_format"].get(t, {})})
    if formats:
        lines += ["", "## Detection by format (malicious samples)", "",
                  "| tool | " + " | ".join(formats) + " |", "| --- |" + " --- |" * len(formats)]
        for tool in tools:
            row = data["by_format"].get(tool, {})
            lines.append(f"| {tool} | " + " | ".join(row.get(f, "-") for f in formats) + " |")
    timed = {t: data.get("time_by_format", {}).get(t, {}) for t in tools}
    formats = sorted({fmt for row in timed.values() for fmt in row})
    if formats:
        counts: dict[str, int] = {}
        for entry in data["samples"]:
            counts[entry["format"]] = counts.get(entry["format"], 0) + 1
        lines += ["", "## Time per sample by format", "",
                  "Mean milliseconds per sample of each format (all samples, malicious and "
                  "benign), from the same runs as *files/s* above. Where a tool detects none of "
                  "a format's malicious samples (the table above), its time is that of looking "
                  "at the file and passing it, not of checking it.", "",
                  "| tool | " + " | ".join(f"{f} ({counts.get(f, 0)})" for f in formats) + " |",
                  "| --- |" + " ---: |" * len(formats)]
        for tool in tools:
            row = timed[tool]
            lines.append(f"| {tool} | " + " | ".join(
                _num(row.get(f), "{:.2f}") for f in formats) + " |")
    lines += ["", "## Per sample", "",
              "F flagged, . clean, E error, U unsupported, T timeout; malicious samples first.",
              "", "| sample | " + " | ".join(tools) + " |", "| --- |" + " --- |" * len(tools)]
    mark = {"flagged": "F", "clean": ".", "error": "E", "unsupported": "U", "timeout": "T"}
    for entry in sorted(data["samples"], key=lambda e: (not e["malicious"], e["name"])):
        cells = [mark.get(entry["results"].get(t, {}).get("verdict", ""), "-") for t in tools]
        label = entry["name"] + (" (malicious)" if entry["malicious"] else "")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if data["skipped_samples"]:
        lines += ["", "Samples not built (library missing): " + ", ".join(
            f"{s['name']} ({s['needs']})" for s in data["skipped_samples"])]
    path.write_text("\n".join(lines) + "\n")


# -- main -------------------------------------------------------------------------------------


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of sizes in MB: {text!r}") from None
    if any(size <= 0 for size in sizes):
        raise argparse.ArgumentTypeError(f"sizes must be positive: {text!r}")
    return sizes


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tools", default="phalanx,phalanx-api,phalanx-compiled,"
                        "phalanx-compiled-api,picklescan,picklescan-api,picklescan-strict,"
                        "modelscan,fickling,modelaudit")
    parser.add_argument("--compiled", default="auto",
                        help="the compiled phalanx: auto (build it for the run), a directory "
                             "made by scripts/build-compiled.sh, or none")
    parser.add_argument("--peers-venv", type=Path, default=ROOT / "benchmarks" / ".venv-scan-peers")
    parser.add_argument("--mode", choices=("warm", "cold"), default="warm",
                        help="warm: one long-lived process per tool; cold: one per sample")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per sample")
    parser.add_argument("--large-timeout", type=float, default=120.0)
    parser.add_argument("--jobs", type=int, default=2, help="tools running at once")
    parser.add_argument("--large", default="numpy,torch",
                        help="large benign files for throughput: numpy,torch or ''")
    parser.add_argument("--models", default="resnet50,gpt2,forest",
                        help="real model layouts for throughput: resnet50,gpt2,forest or ''")
    parser.add_argument("--large-mb", type=_sizes, default="200,2000",
                        help="sizes of the large files in MB, comma-separated ('' for none)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs per large file, model and directory scan (median kept; "
                             "fastest for the -api rows)")
    parser.add_argument("--sample-repeats", type=int, default=3,
                        help="warm mode: runs per sample, the fastest time kept")
    parser.add_argument("--cold-samples", type=int, default=3,
                        help="small samples each tool also scans in a fresh process "
                             "(start-up cost)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--keep", type=Path, default=None,
                        help="write the corpus here and keep it (default: a temp dir)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--api-worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def scan_samples(tool: Tool, entries: list[dict[str, Any]], corpus_dir: Path,
                 args: argparse.Namespace, env: dict[str, str]) -> dict[str, Outcome]:
    """One tool over every sample, in warm or cold mode."""
    results: dict[str, Outcome] = {}
    if args.mode == "cold":
        for entry in entries:
            results[entry["name"]] = run_cold(tool, corpus_dir / str(entry["path"]),
                                              args.timeout, env)
        return results
    warm = WarmWorker(tool, env)
    try:
        smallest = min(entries, key=lambda e: e["bytes"])
        warm.run(corpus_dir / str(smallest["path"]), args.timeout * 3)  # imports, not timed
        for entry in entries:
            results[entry["name"]] = repeated(
                lambda entry=entry: warm.run(corpus_dir / str(entry["path"]), args.timeout),
                args.sample_repeats, fastest=True)
    finally:
        warm.stop()
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker(args.worker)
    if args.api_worker:
        return api_worker(args.api_worker)
    wanted = [t.strip() for t in args.tools.split(",") if t.strip()]
    tools = make_tools(args.peers_venv)
    unknown = [t for t in wanted if t not in tools and t not in API_TOOLS]
    if unknown:
        raise SystemExit(f"unknown tools: {', '.join(unknown)}")
    work = Path(tempfile.mkdtemp(prefix="phalanx-scanbench-"))
    compiled, compiled_missing = None, "not asked for"
    if {"phalanx-compiled", "phalanx-compiled-api"} & set(wanted):
        compiled, compiled_missing = build_compiled(args.compiled, work)
    use_compiled(tools["phalanx-compiled"], compiled, compiled_missing)
    try:
        import phalanx

        phalanx_version = phalanx.__version__
    except ImportError:
        phalanx_version = ""
        tools["phalanx"].missing = "phalanx is not importable from this interpreter"
    versions = {n: t.version for n, t in tools.items() if t.program != "phalanx"}
    versions |= dict.fromkeys(("phalanx", "phalanx-api", "phalanx-compiled",
                               "phalanx-compiled-api"), phalanx_version)
    versions["picklescan-api"] = tools["picklescan"].version
    skipped_tools = {n: tools[n].missing for n in wanted if n in tools and tools[n].missing}
    for api_name in API_TOOLS:
        cli = tools[api_name.removesuffix("-api")]
        if api_name in wanted and cli.missing:
            skipped_tools[api_name] = cli.missing
    cli_tools = [tools[n] for n in wanted if n in tools and not tools[n].missing]
    for name, reason in skipped_tools.items():
        log(f"skipping {name}: {reason}")

    env = dict(os.environ) | QUIET_ENV
    libraries = {name: LibraryApi(tools[name.removesuffix("-api")], env) for name in API_TOOLS}
    apis: dict[str, Callable[[Path], Outcome]] = {
        name: lambda target, lib=lib: lib.run(target, args.large_timeout)
        for name, lib in libraries.items() if name in wanted and name not in skipped_tools}
    if phalanx_version:
        compile_phalanx(compiled)
    corpus_dir = args.keep if args.keep is not None else work / "corpus"
    started = time.perf_counter()
    try:
        log(f"writing the corpus to {corpus_dir}")
        manifest, skipped_samples = build_corpus(corpus_dir)
        large = build_large(work / "large", [k for k in args.large.split(",") if k],
                            args.large_mb)
        models = build_models(work / "large", [k for k in args.models.split(",") if k])
        log(f"{len(manifest)} samples ({sum(e['malicious'] for e in manifest)} malicious), "
            f"{len(large)} large files; {args.mode} mode; tools: "
            + ", ".join([t.name for t in cli_tools] + list(apis)))

        matrix: dict[str, dict[str, Outcome]] = {e["name"]: {} for e in manifest}
        for name, api in apis.items():
            api(corpus_dir / str(manifest[0]["path"]))  # warm-up: load plugins and modules
            for entry in manifest:
                matrix[entry["name"]][name] = repeated(
                    lambda api=api, entry=entry: api(corpus_dir / str(entry["path"])),
                    args.sample_repeats, fastest=True)
            log(f"{name} done")
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            futures = {pool.submit(scan_samples, tool, manifest, corpus_dir, args, env): tool
                       for tool in cli_tools}
            for future in concurrent.futures.as_completed(futures):
                tool = futures[future]
                for name, outcome in future.result().items():
                    matrix[name][tool.name] = outcome
                log(f"{tool.name} done")

        cold: dict[str, dict[str, Any]] = {}
        if args.mode == "warm" and args.cold_samples > 0:
            small = sorted((e for e in manifest if not e["malicious"]),
                           key=lambda e: e["bytes"])[: args.cold_samples]
            for tool in cli_tools:
                times = [run_cold(tool, corpus_dir / str(e["path"]), args.timeout, env).seconds
                         for e in small]
                warm_times = [matrix[e["name"]][tool.name].seconds for e in small]
                cold[tool.name] = {"samples": [e["name"] for e in small],
                                   "cold_median_s": statistics.median(times),
                                   "warm_median_s": statistics.median(warm_times)}
            log("cold start-up runs done")

        directory = scan_directory(cli_tools, corpus_dir, manifest, args, env, apis)

        large_results: dict[str, dict[str, Any]] = {}
        for item in large + models:
            large_results[item["name"]] = {}
            for name, api in apis.items():
                outcome = repeated(lambda api=api, item=item: api(Path(item["path"])),
                                   args.repeats, fastest=True)
                large_results[item["name"]][name] = asdict(outcome)
                log(f"{item['name']}: {name} {outcome.verdict} in {outcome.seconds:.2f} s")
            for tool in cli_tools:
                outcome = repeated(lambda tool=tool, item=item: run_cold(
                    tool, Path(item["path"]), args.large_timeout, env), args.repeats)
                large_results[item["name"]][tool.name] = asdict(outcome)
                log(f"{item['name']}: {tool.name} {outcome.verdict} in {outcome.seconds:.2f} s")
    finally:
        for lib in libraries.values():
            lib.stop()
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
        else:
            shutil.rmtree(work / "large", ignore_errors=True)
            shutil.rmtree(work / "compiled", ignore_errors=True)
            shutil.rmtree(work / "compiled.wheel", ignore_errors=True)

    names = [t.name for t in cli_tools]
    for name in apis:  # each library row right after its command-line row
        base = name.removesuffix("-api")
        names.insert(names.index(base) + 1 if base in names else len(names), name)
    summary = {name: summarise(name, manifest, matrix) for name in names}
    for name, facts in cold.items():
        summary[name] |= facts
    data = {
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine() | {"loadavg_end": [round(v, 2) for v in os.getloadavg()]},
        "settings": {"mode": args.mode, "timeout_s": args.timeout,
                     "large_timeout_s": args.large_timeout, "jobs": args.jobs,
                     "large_mb": args.large_mb, "models": args.models, "repeats": args.repeats,
                     "sample_repeats": args.sample_repeats,
                     "peers_venv": str(args.peers_venv),
                     "compiled": str(compiled) if compiled else compiled_missing,
                     "wall_s": round(time.perf_counter() - started, 1)},
        "versions": versions,
        "tools": names,
        "skipped_tools": skipped_tools,
        "rules": {name: RULES[name if name in RULES else name.split("-")[0]] for name in names}
        | {"every tool": RULES["every tool"]},
        "corpus": {"samples": len(manifest), "malicious": sum(e["malicious"] for e in manifest),
                   "benign": sum(not e["malicious"] for e in manifest),
                   "bytes": sum(e["bytes"] for e in manifest)},
        "summary": summary,
        "by_format": {name: by_format(name, manifest, matrix) for name in names},
        "time_by_format": {name: time_by_format(name, manifest, matrix) for name in names},
        "directory": directory,
        "large": [{k: v for k, v in item.items() if k != "path"} for item in large],
        "models": [{k: v for k, v in item.items() if k != "path"} for item in models],
        "large_results": large_results,
        "samples": [
            {**{k: entry[k] for k in ("name", "format", "malicious", "technique", "source",
                                       "bytes")},
             "results": {t: asdict(o) for t, o in matrix[entry["name"]].items()}}
            for entry in manifest
        ],
        "skipped_samples": skipped_samples,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scan.json").write_text(json.dumps(data, indent=1) + "\n")
    write_markdown(args.out / "scan.md", data)
    log(f"wrote {args.out / 'scan.json'} and {args.out / 'scan.md'} "
        f"in {time.perf_counter() - started:.0f} s")
    return 0


#: The detection rule per tool, as recorded in the JSON (the module docstring explains them).
RULES = {
    "phalanx": "exit 1 (finding >= medium, --fail-on default) or a finding >= medium in the "
               "JSON; exit 2 without one: error",
    "phalanx-api": "a finding >= medium from scan_paths; an exception: error",
    "phalanx-compiled": "as phalanx, with the compiled build",
    "phalanx-compiled-api": "as phalanx-api, with the compiled build",
    "picklescan-api": "issues_count > 0 from scan_file_path/scan_directory_path (what its "
                      "CLI's exit 1 means); scan_err without issues or an exception: error",
    "picklescan": "dangerous globals > 0 (exit 1, or exit 2 after printing them); exit 2 "
                  "otherwise: error; suspicious globals do not count",
    "modelscan": "an issue MEDIUM/HIGH/CRITICAL in the JSON report; without one, exit 3 "
                 "and no scanner error: unsupported, a scanner error: error",
    "fickling": "exit 1 (EXIT_UNSAFE: severity above LIKELY_SAFE); exit 2: error",
    "modelaudit": "exit 1 or an issue of severity warning/critical; exit 2 without: error",
    "every tool": "no result within the timeout: timeout; a traceback as the last words on "
                  "stderr: crash (error), whatever the exit code; malicious samples count only "
                  "when flagged; errors on benign samples are not false positives",
}


if __name__ == "__main__":
    sys.exit(main())

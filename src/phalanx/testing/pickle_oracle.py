"""Soundness properties of the static pickle analyser, checked against the real unpickler.

Shared by the hypothesis tests (``tests/supplychain/test_fuzz_pickle.py``) and the atheris
harness (``fuzz/pickle_fuzz.py``). For any input bytes, :func:`check_pickle_analysis` asserts
that :func:`~phalanx.supplychain.scan.analyse_pickle`:

- returns a :class:`~phalanx.supplychain.scan.PickleReport` without raising and without its
  internal-error fallback (``analyse_pickle`` turns an analyser bug into a "malformed,
  internal analyser error" finding so that a file fails closed; for a fuzzer that fallback
  would hide the bug), with its findings sorted most severe first, optionally within a time
  limit;
- **never loses a denied import** (exact): if :mod:`pickletools` parses a ``GLOBAL`` or
  ``INST`` opcode whose import, after the unpickler's own Python 2 renaming, is on the deny
  list, the report has a finding at least as severe as the deny rule. *Parses* means "is
  parsed as that opcode", opcode by opcode up to the first parse error (an unpickler runs
  everything before the error too), because a mutation can leave ``cos\\nsystem\\n`` inside a
  string constant, where it imports nothing. It holds for the first pickle of a stream, and
  for the pickles after it when the report is complete: after a malformed pickle a load
  fails, and the analyser may stop there too (it reports the malformed stream at ``medium``).
  ``STACK_GLOBAL`` operands are computed, so the next property covers them;
- **judges clean only what the real unpickler would import safely** (differential): when the
  report allows unpickling, the C ``pickle.Unpickler`` run on the same bytes, with a
  ``find_class`` that records each name and refuses it (nothing is imported or called), must
  not ask for a name the policy does not allow. Refusing ends the load, so this observes the
  first import of the stream: weaker than "every import", but it catches any parser
  differential that lets a first import through.

A failed property raises :class:`AssertionError` naming the input.
"""

from __future__ import annotations

import functools
import io
import pickle
import pickletools
import time
import warnings
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING
from typing import Any

from phalanx.core.findings import Severity
from phalanx.supplychain.scan.pickle_vm import PickleLimits, PickleReport, analyse_pickle
from phalanx.supplychain.scan.policy import PicklePolicy, Verdict, load_policy

__all__ = [
    "FUZZ_LIMITS",
    "MAX_MEMO_INDEX",
    "check_clean_means_allowed_imports",
    "check_denied_imports_reported",
    "check_pickle_analysis",
    "parsed_imports",
    "unpickler_name",
]

#: Small enough that a hostile input cannot make one example slow; large enough for every
#: pickle of the test corpus.
FUZZ_LIMITS = PickleLimits(max_opcodes=200_000, max_const_bytes=1 << 20)

#: The C unpickler allocates (and zeroes) its memo up to the largest PUT index it sees, so a
#: 12-byte pickle with a PUT of index 2**30 makes it use gigabytes: the differential check
#: skips such inputs instead of running the real unpickler on them.
MAX_MEMO_INDEX = 100_000


@functools.cache
def _bundled() -> tuple[PicklePolicy, tuple[str, ...]]:
    policy = load_policy()
    return policy, policy.resolve_ecosystems(None)


def _policy(policy: PicklePolicy | None) -> tuple[PicklePolicy, tuple[str, ...]]:
    if policy is None:
        return _bundled()
    return policy, policy.resolve_ecosystems(None)


def _parse_one(stream: io.BytesIO) -> tuple[list[tuple[Any, Any, Any]], bool]:
    """The opcodes of the next pickle, up to its STOP or the first parse error, and whether it
    parsed; quiet about the DeprecationWarning pickletools' escape decoding gives on hostile
    STRING arguments (the analyser silences it the same way)."""
    ops: list[tuple[Any, Any, Any]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            for item in pickletools.genops(stream):
                ops.append(item)
        except Exception:
            return ops, False
    return ops, True


def unpickler_name(module: str, name: str, proto: int) -> tuple[str, str]:
    """The import the unpickler really performs (its Python 2 renaming below protocol 3)."""
    if proto < 3:
        if (module, name) in NAME_MAPPING:
            return NAME_MAPPING[(module, name)]
        if module in IMPORT_MAPPING:
            return IMPORT_MAPPING[module], name
    return module, name


def parsed_imports(data: bytes, *, all_pickles: bool) -> list[tuple[str, str]]:
    """``GLOBAL``/``INST`` imports pickletools parses, up to the first error: in the first
    pickle, or pickle after pickle when ``all_pickles``."""
    found: list[tuple[str, str]] = []
    started = False
    stream = io.BytesIO(data)
    while stream.tell() < len(data) and (all_pickles or not started):
        started = True
        proto = 0  # every load() starts at protocol 0
        ops, parsed = _parse_one(stream)
        for opcode, arg, pos in ops:
            if opcode.name == "PROTO":
                proto = arg
            elif opcode.name in ("GLOBAL", "INST"):
                # the two raw lines, as the unpickler reads them (pickletools joins them with
                # a space, which a module name may itself contain)
                module, name = data[pos + 1 :].split(b"\n", 2)[:2]
                found.append(unpickler_name(module.decode(), name.decode(), proto))
        if not parsed:  # an unpickler stops at the same place
            break
    return found


def _memo_indices_small(data: bytes) -> bool:
    stream = io.BytesIO(data)
    while stream.tell() < len(data):
        ops, parsed = _parse_one(stream)
        if any(op.name in ("PUT", "BINPUT", "LONG_BINPUT") and arg > MAX_MEMO_INDEX
               for op, arg, _pos in ops):
            return False
        if not parsed:
            break
    return True


class _Refused(Exception):
    pass


class _Recorder(pickle.Unpickler):
    """The C unpickler; every import is recorded and refused, so nothing is imported."""

    def __init__(self, stream: io.BytesIO, seen: list[tuple[str, str]]) -> None:
        super().__init__(stream)
        self.seen = seen

    def find_class(self, module: str, name: str) -> Any:
        self.seen.append((module, name))
        raise _Refused

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused


def check_denied_imports_reported(data: bytes, report: PickleReport, *,
                                  policy: PicklePolicy | None = None) -> None:
    """The exact property: every parsed, denied ``GLOBAL``/``INST`` import is reported at
    its deny rule's severity or above."""
    pol, ecosystems = _policy(policy)
    for module, name in parsed_imports(data, all_pickles=report.complete):
        judgement = pol.judge(module, name, ecosystems)
        if judgement.verdict is Verdict.DENIED:
            floor = judgement.severity or Severity.CRITICAL
            if report.max_severity is None or report.max_severity < floor:
                raise AssertionError(
                    f"{module}.{name} is parsed and denied but the report's worst finding is "
                    f"{report.max_severity}: {data[:200]!r}")


def check_clean_means_allowed_imports(data: bytes, report: PickleReport, *,
                                      policy: PicklePolicy | None = None) -> None:
    """The differential property: a stream judged clean makes the real unpickler ask only
    for allowed names."""
    if not report.allows_unpickling() or not _memo_indices_small(data):
        return
    pol, ecosystems = _policy(policy)
    seen: list[tuple[str, str]] = []
    stream = io.BytesIO(data)
    while stream.tell() < len(data):
        try:
            _Recorder(stream, seen).load()
        except Exception:  # _Refused included: the refused import ends what can be observed
            break

    def allowed(module: str, name: str) -> bool:
        return pol.judge(module, name, ecosystems).verdict is Verdict.ALLOWED

    for module, name in seen:
        # find_class receives the raw names and renames them itself below protocol 3; the
        # bundled policy allows no raw name that the renaming changes (a test checks it), so
        # "raw or renamed name allowed" is exactly "the import performed is allowed".
        if not (allowed(module, name) or allowed(*unpickler_name(module, name, 0))):
            raise AssertionError(
                f"judged clean, but the unpickler imports {module}.{name}: {data[:200]!r}")


def check_pickle_analysis(data: bytes, *, limits: PickleLimits = FUZZ_LIMITS,
                          time_limit_s: float | None = None,
                          policy: PicklePolicy | None = None) -> PickleReport:
    """Analyse ``data`` and assert every property in the module docstring.

    Args:
        data: Any bytes.
        limits: The analyser's limits.
        time_limit_s: Fail when one analysis takes longer (``None``: no limit; a fuzzer's
            own timeout catches hangs).
        policy: The import policy (default: the bundled one).

    Returns:
        The analyser's report.

    Raises:
        AssertionError: A property does not hold.
    """
    pol, _ = _policy(policy)
    started = time.perf_counter()
    report = analyse_pickle(data, policy=pol, limits=limits)
    elapsed = time.perf_counter() - started
    if not isinstance(report, PickleReport):
        raise AssertionError(f"analyse_pickle returned {type(report).__name__}")
    if time_limit_s is not None and elapsed > time_limit_s:
        raise AssertionError(f"{elapsed:.2f} s for {len(data)} bytes: {data[:80]!r}")
    for finding in report.findings:
        if "internal analyser error" in str(finding.evidence):
            raise AssertionError(f"analyser bug on {data[:200]!r}: {finding.evidence}")
    severities = [f.severity for f in report.findings]
    if severities != sorted(severities, reverse=True):
        raise AssertionError("findings are not sorted by severity")
    check_denied_imports_reported(data, report, policy=pol)
    check_clean_means_allowed_imports(data, report, policy=pol)
    return report

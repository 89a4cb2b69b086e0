"""Coverage-guided fuzzing of the static pickle analyser with atheris (libFuzzer for Python).

Every input is handed to :func:`phalanx.supplychain.scan.analyse_pickle`, which must:

- return a :class:`PickleReport` and never raise;
- never fall back on its internal-error finding (``analyse_pickle`` turns an analyser bug into
  a "malformed, internal analyser error" finding so that a file fails closed; for the fuzzer
  that fallback is the crash to find);
- keep its findings sorted, most severe first;
- report every ``GLOBAL``/``INST`` import that :mod:`pickletools` parses and the policy denies,
  at the deny rule's severity or above: in the first pickle of the stream always, and in the
  pickles after it when the analysis was complete (when an earlier pickle is malformed, a
  load fails there, and the analyser may stop there too, reporting the malformed stream);
- when it judges a stream clean (nothing at ``medium`` or above), agree with the real
  unpickler: the C ``pickle.Unpickler``, run on the same bytes with a ``find_class`` that
  records the name and refuses it (nothing is imported or called), must not ask for a name
  the policy does not allow. Refusing ends the load, so this observes the first import.

A failed check raises, which atheris reports as a crash with the input saved to
``crash-<sha1>``. The same properties run for a bounded number of examples in
``tests/supplychain/test_fuzz_pickle.py`` (hypothesis); this harness is for long runs.

Usage (see ``fuzz/README.md``)::

    .venv/bin/python fuzz/pickle_fuzz.py --write-seeds fuzz/corpus   # seeds and a dictionary
    .venv/bin/python fuzz/pickle_fuzz.py fuzz/corpus -dict=fuzz/corpus/pickle.dict \\
        -max_total_time=600 -timeout=5 -rss_limit_mb=4096
"""

from __future__ import annotations

import io
import pickle
import pickletools
import sys
import warnings
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING
from pathlib import Path
from typing import Any

import atheris

with atheris.instrument_imports():
    from phalanx.core.findings import Severity
    from phalanx.supplychain.scan import PickleLimits, PickleReport, analyse_pickle, load_policy
    from phalanx.supplychain.scan.policy import Verdict

POLICY = load_policy()
ECOSYSTEMS = POLICY.resolve_ecosystems(None)
#: Bounded so that one input stays fast (libFuzzer's -timeout catches hangs beyond this).
LIMITS = PickleLimits(max_opcodes=200_000, max_const_bytes=1 << 20)


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


def _renamed(module: str, name: str, proto: int) -> tuple[str, str]:
    """What the unpickler imports for ``module``/``name`` (Python 2 names below protocol 3)."""
    if proto < 3:
        if (module, name) in NAME_MAPPING:
            return NAME_MAPPING[(module, name)]
        if module in IMPORT_MAPPING:
            return IMPORT_MAPPING[module], name
    return module, name


def parsed_imports(data: bytes, *, all_pickles: bool) -> list[tuple[str, str]]:
    """``GLOBAL``/``INST`` imports pickletools parses, to the first error: in the first pickle,
    or pickle after pickle when ``all_pickles``."""
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
                found.append(_renamed(module.decode(), name.decode(), proto))
        if not parsed:  # an unpickler stops at the same place
            break
    return found


#: The C unpickler allocates (and zeroes) its memo up to the largest PUT index it sees, so a
#: 12-byte pickle with a PUT of index 2**30 makes it use gigabytes: the differential check
#: skips such inputs instead of running the real unpickler on them.
MAX_MEMO_INDEX = 100_000


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


def _allowed(module: str, name: str) -> bool:
    return POLICY.judge(module, name, ECOSYSTEMS).verdict is Verdict.ALLOWED


def check(data: bytes) -> PickleReport:
    """Analyse ``data`` and assert every property in the module docstring."""
    report = analyse_pickle(data, limits=LIMITS)
    if not isinstance(report, PickleReport):
        raise AssertionError(f"analyse_pickle returned {type(report).__name__}")
    for finding in report.findings:
        if "internal analyser error" in str(finding.evidence):
            raise AssertionError(f"analyser bug: {finding.evidence}")
    severities = [f.severity for f in report.findings]
    if severities != sorted(severities, reverse=True):
        raise AssertionError("findings are not sorted by severity")
    for module, name in parsed_imports(data, all_pickles=report.complete):
        judgement = POLICY.judge(module, name, ECOSYSTEMS)
        floor = judgement.severity or Severity.CRITICAL
        if judgement.verdict is Verdict.DENIED and (
            report.max_severity is None or report.max_severity < floor
        ):
            raise AssertionError(f"denied import {module}.{name} reported below {floor.label}")
    if report.allows_unpickling() and _memo_indices_small(data):
        seen: list[tuple[str, str]] = []
        stream = io.BytesIO(data)
        while stream.tell() < len(data):
            try:
                _Recorder(stream, seen).load()
            except Exception:  # _Refused included: the refusal ends what can be observed
                break
        for module, name in seen:
            if not (_allowed(module, name) or _allowed(*_renamed(module, name, 0))):
                raise AssertionError(f"judged clean, but the unpickler imports {module}.{name}")
    return report


def test_one_input(data: bytes) -> None:
    check(data)


def write_seeds(out: Path) -> None:
    """Write the corpus pickles as seed inputs, and a libFuzzer dictionary of pickle tokens."""
    root = Path(__file__).resolve().parent.parent / "tests" / "supplychain"
    sys.path.insert(0, str(root))
    from samples.pickles import SAMPLES

    out.mkdir(parents=True, exist_ok=True)
    canary = out / "CANARY-never-created"
    scratch = out / ".build"
    count = 0
    for sample in SAMPLES:
        if sample.available():
            built = sample.build(scratch / sample.name, canary)
            (out / f"seed-{sample.name}").write_bytes(built.read_bytes())
            count += 1
    for path in sorted(scratch.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    scratch.rmdir()
    tokens = {op.code.encode("latin-1") for op in pickletools.opcodes}
    tokens |= {b"\x80\x02", b"\x80\x04", b"\x80\x05", b"cos\nsystem\n", b"cbuiltins\neval\n",
               b"c__builtin__\neval\n", b"\x8c\x02os", b"\x8c\x06system", b"\x8c\x08builtins",
               b"\x8c\x0bcollections", b"\x8c\x0bOrderedDict", b"ccopyreg\n_reconstructor\n",
               b"c_codecs\nencode\n", b"Vlatin1\n", b"\x94", b"h\x00", b"q\x00"}
    with (out / "pickle.dict").open("w") as fh:
        for token in sorted(tokens):
            fh.write('"' + "".join(f"\\x{b:02x}" for b in token) + '"\n')
    print(f"wrote {count} seeds and pickle.dict to {out}")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--write-seeds":
        write_seeds(Path(sys.argv[2]))
        return
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

"""Coverage-guided fuzzing of the static pickle analyser with atheris (libFuzzer for Python).

Every input goes through :func:`phalanx.testing.pickle_oracle.check_pickle_analysis`, which
runs :func:`phalanx.supplychain.scan.analyse_pickle` on it and asserts its properties: no
exception and no internal-error fallback, findings sorted, no parsed denied import lost, and,
for a stream judged clean, agreement with the real C unpickler on the first import (that
module's docstring has the details).

A failed check raises, which atheris reports as a crash with the input saved to
``crash-<sha1>``. The same properties run for a bounded number of examples in
``tests/supplychain/test_fuzz_pickle.py`` (hypothesis); this harness is for long runs.

Usage (see ``fuzz/README.md``)::

    .venv/bin/python fuzz/pickle_fuzz.py --write-seeds fuzz/corpus   # seeds and a dictionary
    .venv/bin/python fuzz/pickle_fuzz.py fuzz/corpus -dict=fuzz/corpus/pickle.dict \\
        -max_total_time=600 -timeout=5 -rss_limit_mb=4096
"""

from __future__ import annotations

import pickletools
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from phalanx.testing.pickle_oracle import check_pickle_analysis


def test_one_input(data: bytes) -> None:
    check_pickle_analysis(data)


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

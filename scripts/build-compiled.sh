#!/usr/bin/env bash
# Build phalanx with its scanner's hot path compiled (PHALANX_COMPILE=1, mypyc; setup.py names
# the modules) and unpack the wheel's package into OUT, to be put first on PYTHONPATH (the
# tests and the scan benchmark run the compiled build that way). The wheel itself is left in
# OUT.wheel for installing.
# Usage: scripts/build-compiled.sh PYTHON OUT   (PYTHON: an interpreter with mypy installed)
# Exits 3, having built nothing, when there is no C compiler.
set -euo pipefail
python="$1"
out="$2"
cd "$(dirname "$0")/.."
if ! command -v "${CC:-cc}" >/dev/null 2>&1; then
    echo "build-compiled: no C compiler (${CC:-cc}) found; the compiled build needs one" >&2
    exit 3
fi
rm -rf "$out" "$out.wheel"
mkdir -p "$out.wheel"
# setuptools builds in build/ of the source tree and would carry stale modules from an earlier
# build into the wheel; the C that mypyc generated (build/__native*, build/temp.*) is kept.
rm -rf build/lib build/lib.* build/bdist.*
PHALANX_COMPILE=1 "$python" -m pip wheel --disable-pip-version-check -q --no-build-isolation \
    --no-deps -w "$out.wheel" . >"$out.wheel/build.log" 2>&1 || {
    tail -n 30 "$out.wheel/build.log" >&2
    echo "build-compiled: the compiled build failed (log: $out.wheel/build.log)" >&2
    exit 1
}
# The package and mypyc's shared runtime module (top level, when several modules are
# compiled), not the metadata: that would make a second "phalanx" distribution on the path
# beside the development install, whose entry points the plugin registry reads.
"$python" - "$out.wheel" "$out" <<'PY'
import pathlib
import sys
import zipfile

wheels = sorted(pathlib.Path(sys.argv[1]).glob("phalanx-*.whl"))
if len(wheels) != 1:
    sys.exit(f"build-compiled: expected one wheel in {sys.argv[1]}, found {len(wheels)}")
with zipfile.ZipFile(wheels[0]) as wheel:
    members = [m for m in wheel.namelist() if not m.split("/")[0].endswith(".dist-info")]
    if not any(m.endswith((".so", ".pyd")) for m in members):
        sys.exit(f"build-compiled: {wheels[0].name} holds no compiled module")
    wheel.extractall(sys.argv[2], members)
print(f"build-compiled: {wheels[0].name} unpacked into {sys.argv[2]}")
PY

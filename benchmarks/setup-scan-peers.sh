#!/usr/bin/env bash
# Install the model-file scanners benchmarks/scan.py compares phalanx with, in a virtualenv of
# their own (benchmarks/.venv-scan-peers), so that their pins never touch phalanx's .venv.
#
#   bash benchmarks/setup-scan-peers.sh [PYTHON]
#
# PYTHON defaults to the interpreter phalanx's .venv was made from. The versions are pinned
# to the ones the published figures in benchmarks/results/scan.md were measured with; set
# SCAN_PEERS_UNPINNED=1 to take the latest releases instead (then record what you got:
# benchmarks/scan.py writes every tool's version into results/scan.json).
#
# fickling is LGPL-3.0: it is installed here only to be run as a separate program, never
# imported by phalanx.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
venv="$here/.venv-scan-peers"

if [[ $# -ge 1 ]]; then
    python="$1"
elif [[ -x "$root/.venv/bin/python" ]]; then
    python="$("$root/.venv/bin/python" -c 'import sys; print(sys.base_prefix)')/bin/python3"
else
    python="python3"
fi

pinned=(
    "picklescan==1.0.5"
    "modelscan==0.8.8"
    "fickling==0.1.12"
    "modelaudit==0.2.54"
)
unpinned=(picklescan modelscan fickling modelaudit)

if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
if [[ "${SCAN_PEERS_UNPINNED:-0}" == "1" ]]; then
    "$venv/bin/python" -m pip install "${unpinned[@]}"
else
    "$venv/bin/python" -m pip install "${pinned[@]}"
fi
"$venv/bin/python" -m pip list --format=freeze | grep -iE '^(picklescan|modelscan|fickling|modelaudit)=='

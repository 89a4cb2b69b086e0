"""Build hook for the optional compiled scanner modules; everything else is in pyproject.toml.

A plain build (``pip install .``) is pure Python. With ``PHALANX_COMPILE=1`` the model-file
scanner's hot path (the static pickle analyser, the format sniffer and the scan driver) is
also compiled to C extensions with mypyc, which the interpreter then imports in place of the
sources; it needs mypy and a C compiler in the build environment, so build without
isolation::

    pip install "mypy>=1.10"
    PHALANX_COMPILE=1 pip wheel --no-build-isolation --no-deps -w dist .
"""

from __future__ import annotations

import os
import sys

from setuptools import setup

#: Modules compiled when PHALANX_COMPILE=1, relative to this file. None of them defines a
#: class that other modules or plugins subclass (mypyc forbids that for compiled classes).
COMPILED_MODULES = [
    "src/phalanx/supplychain/scan/pickle_vm.py",
    "src/phalanx/supplychain/scan/sniff.py",
    "src/phalanx/supplychain/scan/engine.py",
]


def ext_modules() -> list:
    flag = os.environ.get("PHALANX_COMPILE", "").strip().lower()
    if flag in ("", "0", "false", "no"):
        return []
    if flag not in ("1", "true", "yes"):
        sys.exit(f"PHALANX_COMPILE must be 1 or 0, got {flag!r}")
    commands = set(sys.argv[1:])
    if {"editable_wheel", "develop"} & commands:
        # In place, a compiled module would shadow its source: edits to it would be ignored.
        sys.exit("PHALANX_COMPILE=1 builds a wheel, not an editable install: use pip wheel "
                 "or pip install without -e")
    if not {"bdist_wheel", "build", "build_ext", "install"} & commands:
        return []  # metadata or an sdist: nothing is compiled for those
    try:
        from mypyc.build import mypycify
    except ImportError:
        sys.exit("PHALANX_COMPILE=1 needs mypy in the build environment: install mypy and "
                 "build with --no-build-isolation")
    here = os.path.dirname(os.path.abspath(__file__))
    # The project's mypy configuration checks the whole tree; compiling one module would
    # report its per-module sections as unused, which mypyc treats as a failure.
    return mypycify(["--no-warn-unused-configs",
                     *(os.path.join(here, m) for m in COMPILED_MODULES)], opt_level="3")


setup(ext_modules=ext_modules())

"""``import phalanx`` (and the light subpackages) must not pull in torch or numpy."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "module",
    ["phalanx", "phalanx.core", "phalanx.errors", "phalanx.evasion", "phalanx.cli.main",
     "phalanx.report", "phalanx.store", "phalanx.adapters", "phalanx.zoo"],
)
def test_import_is_light(module: str) -> None:
    code = (f"import sys, {module}; "
            "print(sorted(m for m in ('torch', 'numpy', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"{module} imports {out.stdout.strip()}"


def test_require_names_the_extra() -> None:
    from phalanx._optional import require
    from phalanx.errors import MissingDependencyError

    with pytest.raises(MissingDependencyError, match=r"pip install 'phalanx\[ml\]'"):
        require("no_such_module_xyz", extra="ml")

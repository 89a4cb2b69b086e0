"""The registry reads entry points lazily, and every registered plugin is well-formed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from phalanx.core import list_plugins, load_plugin
from phalanx.errors import UnknownPluginError


def test_builtins_are_registered_by_entry_points() -> None:
    names = {(p.family, p.name) for p in list_plugins()}
    assert {("attacks", "fgsm"), ("attacks", "pgd"), ("checks", "robustness"),
            ("reporters", "html"), ("reporters", "sarif")} <= names


def test_unknown_plugin_suggests_close_names() -> None:
    with pytest.raises(UnknownPluginError, match="did you mean pgd"):
        load_plugin("attacks", "pdg")
    with pytest.raises(UnknownPluginError, match="unknown plugin family"):
        list_plugins("nope")


def test_listing_plugins_imports_none_of_them() -> None:
    code = ("import sys; from phalanx.core import list_plugins; list_plugins(); "
            "print(any(m.startswith(('phalanx.evasion', 'phalanx.report', 'torch')) "
            "for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


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


def test_plugin_targets_name_what_list_plugins_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import metadata

    from phalanx.core.registry import FAMILIES, plugin_targets

    expected = {family: {p.name: p.target for p in list_plugins(family)} for family in FAMILIES}

    def no_metadata(self: object) -> None:
        raise AssertionError("plugin_targets read a distribution's metadata")

    monkeypatch.setattr(metadata.Distribution, "metadata", property(no_metadata))
    for family in FAMILIES:
        targets = plugin_targets(family)
        assert targets == expected[family]
        assert list(targets) == sorted(targets)


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


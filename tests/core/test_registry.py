"""The registry reads entry points lazily, and every registered plugin is well-formed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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



def _reference(groups: tuple[str, ...]) -> dict[str, list[tuple[str, str, str]]]:
    from importlib import metadata

    eps = metadata.entry_points()
    return {g: [(ep.name, ep.value, str(ep.dist._path))  # type: ignore[union-attr]
                for ep in eps.select(group=g)] for g in groups}


def _fast(groups: tuple[str, ...]) -> dict[str, list[tuple[str, str, str]]] | None:
    from phalanx.core._entry_points import read_entries

    found = read_entries(groups)
    if found is None:
        return None
    return {g: [(e.name, e.value, str(e.origin)) for e in entries] for g, entries in found.items()}


def test_entry_points_are_read_as_importlib_metadata_reads_them() -> None:
    """Every group of every distribution installed here, in the same order, from the same
    distribution (a few hundred distributions beside torch)."""
    from importlib import metadata

    groups = tuple(sorted(metadata.entry_points().groups))
    assert len(groups) > 10
    assert _fast(groups) == _reference(groups)


def _dist(site: Path, dirname: str, text: str | None) -> None:
    d = site / dirname
    d.mkdir(parents=True)
    (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dirname.split('-')[0]}\n")
    if text is not None:
        (d / "entry_points.txt").write_text(text)


def test_entry_points_follow_importlib_rules_on_odd_trees(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    _dist(first, "My.Pkg-1.0.dist-info",
          "# a comment\n\n[phalanx.attacks]\n  one = pkg.one:One  \nbroken line\n"
          "two=pkg.two:Two [extra]\n[other]\nx = y\n")
    # The same distribution again, later on the path and spelt differently: ignored.
    _dist(second, "my_pkg-2.0.dist-info", "[phalanx.attacks]\nshadowed = pkg:X\n")
    _dist(second, "other-1.0.egg-info", "[phalanx.attacks]\nthree = other:Three\n")
    _dist(second, "nothing-1.0.dist-info", None)
    (second / "legacy-1.0.egg-info").write_text("Metadata-Version: 1.0\nName: legacy\n")
    (second / "bad-1.0.dist-info").mkdir()
    (second / "bad-1.0.dist-info" / "entry_points.txt").write_bytes(b"\xff\xfe[")
    monkeypatch.setattr(sys, "path", [str(first), str(tmp_path / "missing"), str(second)])
    groups = ("phalanx.attacks", "other")
    fast = _fast(groups)
    assert fast is not None
    assert fast["phalanx.attacks"][:2] == [
        ("one", "pkg.one:One", str(first / "My.Pkg-1.0.dist-info")),
        ("two", "pkg.two:Two [extra]", str(first / "My.Pkg-1.0.dist-info"))]
    assert {e[0] for e in fast["phalanx.attacks"]} == {"one", "two", "three"}
    assert fast["other"] == [("x", "y", str(first / "My.Pkg-1.0.dist-info"))]
    # importlib.metadata raises on an undecodable file and on a line without "=": those are
    # skipped here, the rest is read alike.
    (second / "bad-1.0.dist-info" / "entry_points.txt").unlink()
    text = first / "My.Pkg-1.0.dist-info" / "entry_points.txt"
    text.write_text(text.read_text().replace("broken line\n", ""))
    assert _fast(groups) == _reference(groups)


def test_entry_points_fall_back_to_importlib_where_its_rules_may_differ(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import zipfile

    from phalanx.core import registry
    from phalanx.core._entry_points import read_entries

    archive = tmp_path / "plugins.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("zipped-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: zipped\n")
        zf.writestr("zipped-1.0.dist-info/entry_points.txt",
                    "[phalanx.attacks]\nzipped = json:dumps\n")
    monkeypatch.setattr(sys, "path", [*sys.path, str(archive)])
    assert read_entries(("phalanx.attacks",)) is None
    registry.refresh()
    try:
        assert registry.plugin_targets("attacks")["zipped"] == "json:dumps"
        assert registry.load_plugin("attacks", "zipped") is json.dumps
        (info,) = [p for p in registry.list_plugins("attacks") if p.name == "zipped"]
        assert info.distribution == "zipped"
    finally:
        monkeypatch.undo()
        registry.refresh()
    assert "zipped" not in registry.plugin_targets("attacks")

    class Finder:  # a meta-path finder that lists distributions of its own
        @staticmethod
        def find_distributions(*args: object, **kwargs: object) -> list[object]:
            return []

    monkeypatch.setattr(sys, "meta_path", [*sys.meta_path, Finder])
    assert read_entries(("phalanx.attacks",)) is None


def test_entry_point_values_load_as_importlib_loads_them() -> None:
    import os.path

    from phalanx.core._entry_points import load_entry

    assert load_entry("os.path:join") is os.path.join
    assert load_entry("json") is json
    assert load_entry("json : dumps [speed]") is json.dumps
    assert load_entry("os:path.join") is os.path.join
    with pytest.raises(ImportError, match="malformed"):
        load_entry("not a value!")
    with pytest.raises(AttributeError):
        load_entry("json:nothing_here")


def test_loading_a_plugin_needs_no_importlib_metadata() -> None:
    code = ("import sys; from phalanx.core import load_plugin; load_plugin('scanners', 'pickle');"
            " print('importlib.metadata' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

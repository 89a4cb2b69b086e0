"""``scan_paths``: directory walking does not follow links out of the tree it was given."""

from __future__ import annotations

from pathlib import Path

import pytest

from phalanx.core.findings import Severity
from phalanx.supplychain.scan import scan_paths


def test_links_out_of_the_tree_are_reported_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "evil.pkl").write_bytes(b"cos\nsystem\n(Vtrue\ntR.")
    tree = tmp_path / "model"
    tree.mkdir()
    (tree / "weights.pkl").write_bytes(b"\x80\x04K\x01.")
    (tree / "link.pkl").symlink_to(outside / "evil.pkl")
    (tree / "linked-dir").symlink_to(outside, target_is_directory=True)
    report = scan_paths([tree])
    assert [f.name for f in report.files] == [str(tree / "weights.pkl")]
    skipped = {f.evidence["file"]: f for f in report.findings}
    assert set(skipped) == {str(tree / "link.pkl"), str(tree / "linked-dir")}
    assert all(f.severity is Severity.LOW and f.evidence["rule"] == "symlink-or-limit"
               for f in skipped.values())
    assert "out of the scanned tree" in skipped[str(tree / "link.pkl")].title


def test_a_link_inside_the_tree_is_scanned(tmp_path: Path) -> None:
    (tmp_path / "a.pkl").write_bytes(b"cos\nsystem\n(Vtrue\ntR.")
    (tmp_path / "b.pkl").symlink_to(tmp_path / "a.pkl")
    report = scan_paths([tmp_path])
    assert sorted(Path(f.name).name for f in report.files) == ["a.pkl", "b.pkl"]
    assert sum(f.severity is Severity.CRITICAL for f in report.findings) == 2


def test_links_named_on_the_command_line(tmp_path: Path) -> None:
    """A link to a file is scanned, a link to a directory is not followed, a dangling link
    cannot be read: each is said, none stops the others."""
    (tmp_path / "a.pkl").write_bytes(b"cos\nsystem\n(Vtrue\ntR.")
    (tmp_path / "dir").mkdir()
    (tmp_path / "to-file").symlink_to(tmp_path / "a.pkl")
    (tmp_path / "to-dir").symlink_to(tmp_path / "dir", target_is_directory=True)
    (tmp_path / "dangling").symlink_to(tmp_path / "nothing")
    report = scan_paths([tmp_path / "to-file", tmp_path / "to-dir", tmp_path / "dangling"])
    by_file = {str(f.evidence["file"]): f for f in report.findings}
    assert by_file[str(tmp_path / "to-file")].severity is Severity.CRITICAL
    assert by_file[str(tmp_path / "to-dir")].title == "symbolic link to a directory, not followed"
    assert "cannot read" in by_file[str(tmp_path / "dangling")].title
    assert [f.name for f in report.files] == [str(tmp_path / "to-file")]



@pytest.mark.timeout(60)
def test_special_files_and_dangling_links_inside_a_directory_are_reported_not_read(
    tmp_path: Path,
) -> None:
    """A pipe, socket or dangling link beside the weights is not model data the scan can read:
    each is said (LOW, like a link out of the tree), none is opened (a pipe would block)."""
    import os
    import socket

    (tmp_path / "weights.pkl").write_bytes(b"\x80\x04K\x01.")
    os.mkfifo(tmp_path / "feed.pkl")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "control.sock"))
    (tmp_path / "gone.pkl").symlink_to(tmp_path / "nothing")
    (tmp_path / "to-feed.pkl").symlink_to(tmp_path / "feed.pkl")
    try:
        report = scan_paths([tmp_path])
    finally:
        sock.close()
    assert [f.name for f in report.files] == [str(tmp_path / "weights.pkl")]
    by_file = {Path(str(f.evidence["file"])).name: f for f in report.findings}
    assert set(by_file) == {"feed.pkl", "control.sock", "gone.pkl", "to-feed.pkl"}
    assert by_file["feed.pkl"].title == "a pipe, not read"
    assert by_file["control.sock"].title == "a socket, not read"
    assert by_file["gone.pkl"].title == "a dangling symbolic link, not read"
    assert by_file["to-feed.pkl"].title == "a pipe, not read"
    for finding in by_file.values():
        assert finding.severity is Severity.LOW
        assert finding.evidence["rule"] == "not-a-regular-file"
        assert "was not opened" in finding.detail
    assert not report.failed()


def test_a_directory_over_the_file_limit_fails_the_scan(tmp_path: Path) -> None:
    """Files past ``max_files`` are never looked at, so the verdict is incomplete: that must
    fail at the default threshold, or a payload sorted last would pass."""
    from phalanx.supplychain.scan.base import ScanLimits

    for name in ("a.pkl", "b.pkl", "z-payload.pkl"):
        (tmp_path / name).write_bytes(b"\x80\x04K\x01.")
    report = scan_paths([tmp_path], limits=ScanLimits(max_files=2))
    assert [Path(f.name).name for f in report.files] == ["a.pkl", "b.pkl"]
    (limit,) = report.findings
    assert limit.severity is Severity.MEDIUM
    assert limit.evidence["rule"] == "file-limit"
    assert limit.evidence["incomplete"] is True
    assert limit.title == "more than 2 files; the rest not scanned"
    assert report.failed()


@pytest.mark.timeout(120)
def test_a_pipe_or_device_named_on_the_command_line_is_not_read(tmp_path: Path) -> None:
    """A FIFO would block the scan on its open, and a device or socket has no size to trust
    (``/dev/zero`` never ends; a pipe read twice loses its head): none is read, and none passes
    as clean. Run in a child so that a regression fails on the timeout instead of hanging."""
    import json
    import os
    import socket
    import stat
    import subprocess
    import sys

    fifo = tmp_path / "model.pkl"
    os.mkfifo(fifo)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "model.sock"))
    code = (
        "import json, sys\n"
        "from phalanx.supplychain.scan import scan_paths\n"
        "report = scan_paths(sys.argv[1:])\n"
        "print(json.dumps([[str(f.evidence['file']), f.severity.label, f.title]"
        " for f in report.findings] + [[f.name] for f in report.files]))\n"
    )
    # A device where the machine has a real one (some containers make /dev files plain files).
    devices = [d for d in ("/dev/zero",) if os.path.exists(d) and stat.S_ISCHR(os.stat(d).st_mode)]
    try:
        out = subprocess.run(
            [sys.executable, "-c", code, *devices, str(fifo), str(tmp_path / "model.sock")],
            capture_output=True, text=True, timeout=60, check=True).stdout
    finally:
        sock.close()
    assert json.loads(out) == [
        *[[d, "medium", "Could not scan: not a regular file (a device), not read"]
          for d in devices],
        [str(fifo), "medium", "Could not scan: not a regular file (a pipe), not read"],
        [str(tmp_path / "model.sock"), "medium",
         "Could not scan: not a regular file (a socket), not read"],
    ]


def test_the_bundled_scanners_handle_the_formats_the_table_gives_them() -> None:
    from phalanx.core.registry import list_plugins, load_plugin
    from phalanx.supplychain.scan.base import BUNDLED_FORMATS
    from phalanx.supplychain.scan.sniff import FORMATS

    bundled = [i for i in list_plugins("scanners")
               if i.target.startswith("phalanx.supplychain.scan.")]
    assert sorted(i.name for i in bundled) == sorted(BUNDLED_FORMATS)
    for info in bundled:
        assert load_plugin("scanners", info.name).formats == BUNDLED_FORMATS[info.name]
    claimed = [f for formats in BUNDLED_FORMATS.values() for f in formats]
    assert len(claimed) == len(set(claimed))
    assert set(claimed) <= set(FORMATS)


def test_a_scan_imports_only_the_scanners_its_files_need(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    (tmp_path / "model.pkl").write_bytes(b"\x80\x04K\x01.")
    code = (
        "import sys\n"
        "from phalanx.supplychain.scan import scan_paths\n"
        f"report = scan_paths([{str(tmp_path / 'model.pkl')!r}])\n"
        "assert [f.format for f in report.files] == ['pickle'], report.files\n"
        "import json\n"
        "print(json.dumps([m.rsplit('.', 1)[1] for m in sys.modules\n"
        "                  if m.startswith('phalanx.supplychain.scan.')]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    loaded = set(json.loads(out))
    assert "pickles" in loaded
    assert not loaded & {"keras", "gguf", "onnx_model", "savedmodel", "safetensors_files",
                         "pytorch", "numpy_files"}


def test_other_scanner_plugins_take_formats_in_registry_name_order(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Registering a plugin needs an installed distribution; the registry's two functions are
    # replaced instead, keeping the bundled entries and adding two plugins around them.
    from phalanx.core import registry
    from phalanx.supplychain.scan import base
    from phalanx.supplychain.scan.base import FileScanner, ScanSession

    class Early(FileScanner):
        formats = ("pickle",)

        def scan_source(self, source, session):  # type: ignore[no-untyped-def]
            yield session.finding(source, "early", Severity.HIGH, "early plugin",
                                  scanner="early")

    class Late(FileScanner):
        formats = ("pickle", "unknown")

        def scan_source(self, source, session):  # type: ignore[no-untyped-def]
            yield session.finding(source, "late", Severity.HIGH, "late plugin",
                                  scanner="late")

    real_targets, real_load = registry.plugin_targets, registry.load_plugin
    extra = {"aaa-early": Early, "zzz-late": Late}

    def fake_targets(family: str) -> dict[str, str]:
        found = real_targets(family)
        found.update({n: f"elsewhere:{c.__name__}" for n, c in extra.items()})
        return dict(sorted(found.items()))

    def fake_load(family: str, name: str) -> object:
        return extra[name] if name in extra else real_load(family, name)

    monkeypatch.setattr(registry, "plugin_targets", fake_targets)
    monkeypatch.setattr(registry, "load_plugin", fake_load)
    base._scanner_class.cache_clear()
    try:
        session = ScanSession()
        assert isinstance(session.scanner_for("pickle"), Early)
        assert isinstance(session.scanner_for("unknown"), Late)
        assert session.scanner_for("npy").plugin_id() == "numpy"  # type: ignore[union-attr]
        assert session.scanner_for("empty") is None
        extra.pop("aaa-early")
        base._scanner_class.cache_clear()
        assert ScanSession().scanner_for("pickle").plugin_id() == "pickle"  # type: ignore[union-attr]
    finally:
        base._scanner_class.cache_clear()


def test_a_scanner_installed_while_the_process_runs_is_used_after_refresh(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import sys

    from phalanx.core import registry
    from phalanx.supplychain.scan.base import ScanSession

    assert ScanSession().scanner_for("pickle").plugin_id() == "pickle"  # type: ignore[union-attr]
    # A real distribution on the path: its metadata directory and its module.
    (tmp_path / "first_scanner.py").write_text(
        "from phalanx.supplychain.scan.base import FileScanner\n"
        "class First(FileScanner):\n"
        "    formats = ('pickle',)\n"
        "    def scan_source(self, source, session):\n"
        "        return iter(())\n"
    )
    meta = tmp_path / "first_scanner-1.0.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: first-scanner\nVersion: 1.0\n")
    (meta / "entry_points.txt").write_text(
        "[phalanx.scanners]\naaa-first = first_scanner:First\n")
    monkeypatch.setattr(sys, "path", [*sys.path, str(tmp_path)])
    registry.refresh()
    try:
        assert type(ScanSession().scanner_for("pickle")).__name__ == "First"
    finally:
        monkeypatch.undo()
        sys.modules.pop("first_scanner", None)
        registry.refresh()
    assert ScanSession().scanner_for("pickle").plugin_id() == "pickle"  # type: ignore[union-attr]


def test_a_small_file_is_read_once_and_a_large_one_lazily(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import builtins
    import os
    import pickle

    small = tmp_path / "small.pkl"
    small.write_bytes(b"cos\nsystem\n(Vtrue\ntR.")
    large = tmp_path / "large.pkl"
    large.write_bytes(pickle.dumps(b"x" * 100_000, protocol=4))
    opened: list[str] = []
    real_open, real_os_open = builtins.open, os.open

    def counting_open(file, *args, **kwargs):  # type: ignore[no-untyped-def]
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    def counting_os_open(file, *args, **kwargs):  # type: ignore[no-untyped-def]
        opened.append(str(file))
        return real_os_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    monkeypatch.setattr(os, "open", counting_os_open)
    report = scan_paths([small, large])
    assert opened.count(str(small)) == 1
    assert opened.count(str(large)) >= 3  # sized, sniffed, analysed: never held in memory
    assert [f.format for f in report.files] == ["pickle", "pickle"]
    assert [f.evidence["file"] for f in report.findings if f.severity >= Severity.MEDIUM] \
        == [str(small)]


def test_paths_that_do_not_exist_are_named_together(tmp_path: Path) -> None:
    # Missing outright, and "under" a regular file (ENOTDIR): both are reported, in one error,
    # before anything is scanned.
    from phalanx.errors import InputError

    (tmp_path / "model.pkl").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(InputError) as info:
        scan_paths([tmp_path / "model.pkl", tmp_path / "gone.pkl",
                    tmp_path / "model.pkl" / "inner.pkl"])
    assert str(info.value) == (f"no such file or directory: {tmp_path / 'gone.pkl'}, "
                               f"{tmp_path / 'model.pkl' / 'inner.pkl'}")


def test_a_plain_file_and_strings_are_scanned_like_paths(tmp_path: Path) -> None:
    (tmp_path / "evil.pkl").write_bytes(b"cos\nsystem\n(Vtrue\ntR.")
    by_path = scan_paths([tmp_path / "evil.pkl"])
    by_str = scan_paths([str(tmp_path / "evil.pkl")])
    assert [f.name for f in by_path.files] == [f.name for f in by_str.files]
    assert [f.title for f in by_path.findings] == [f.title for f in by_str.findings]
    assert by_path.findings[0].severity is Severity.CRITICAL

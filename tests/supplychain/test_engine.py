"""``scan_paths``: directory walking does not follow links out of the tree it was given."""

from __future__ import annotations

from pathlib import Path

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

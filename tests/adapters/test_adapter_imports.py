"""Importing the adapters package must stay cheap: torch is imported only on first use."""

from __future__ import annotations

import subprocess
import sys

import pytest


def modules_after(code: str) -> set[str]:
    script = f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    return set(out.split())


def test_import_phalanx_adapters_does_not_import_torch():
    loaded = modules_after("import phalanx\nimport phalanx.adapters")
    assert "torch" not in loaded
    assert "onnxruntime" not in loaded
    assert "sklearn" not in loaded


def test_first_use_imports_the_adapter():
    loaded = modules_after("from phalanx.adapters import TorchClassifier")
    assert "torch" in loaded
    assert "onnxruntime" not in loaded


def test_unknown_names_raise_attribute_error():
    import phalanx.adapters

    with pytest.raises(AttributeError):
        _ = phalanx.adapters.NoSuchAdapter  # type: ignore[attr-defined]

"""Defenses: procedures that change a model, its data or its inputs and outputs.

Each defense is one plugin class in its own module, registered in the ``phalanx.defenses``
entry-point group. Importing this package does not import torch until a defense is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from phalanx.defenses.adversarial_training import AdversarialTraining  # noqa: F401

_LAZY = {
    "AdversarialTraining": "phalanx.defenses.adversarial_training",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'phalanx.defenses' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])

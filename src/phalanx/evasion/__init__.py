"""Evasion: adversarial examples at inference time, and robustness evaluation.

Attacks share one base class (:class:`~phalanx.evasion.base.Attack`); each is one module.
Importing this package does not import torch until an attack is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from phalanx.evasion.apgd import APGD  # noqa: F401
    from phalanx.evasion.apgd_t import APGDT  # noqa: F401
    from phalanx.evasion.base import Attack, AttackResult  # noqa: F401
    from phalanx.evasion.cw import CarliniWagnerL2  # noqa: F401
    from phalanx.evasion.deepfool import DeepFool  # noqa: F401
    from phalanx.evasion.evaluate import RobustnessCheck, evaluate_robustness  # noqa: F401
    from phalanx.evasion.fab import FAB  # noqa: F401
    from phalanx.evasion.fgsm import FGSM  # noqa: F401
    from phalanx.evasion.hopskipjump import HopSkipJump  # noqa: F401
    from phalanx.evasion.pgd import PGD  # noqa: F401
    from phalanx.evasion.square import Square  # noqa: F401

_LAZY = {
    "APGD": "phalanx.evasion.apgd",
    "APGDT": "phalanx.evasion.apgd_t",
    "CarliniWagnerL2": "phalanx.evasion.cw",
    "DeepFool": "phalanx.evasion.deepfool",
    "FAB": "phalanx.evasion.fab",
    "HopSkipJump": "phalanx.evasion.hopskipjump",
    "Square": "phalanx.evasion.square",
    "Attack": "phalanx.evasion.base",
    "AttackResult": "phalanx.evasion.base",
    "FGSM": "phalanx.evasion.fgsm",
    "PGD": "phalanx.evasion.pgd",
    "RobustnessCheck": "phalanx.evasion.evaluate",
    "evaluate_robustness": "phalanx.evasion.evaluate",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'phalanx.evasion' has no attribute {name!r}")

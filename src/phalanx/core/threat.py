"""ThreatModel: what the attacker knows and may do."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

Knowledge = Literal["white-box", "gray-box", "black-box"]
Norm = Literal["linf", "l2", "l1", "l0"]

NORMS: tuple[str, ...] = ("linf", "l2", "l1", "l0")
KNOWLEDGE: tuple[str, ...] = ("white-box", "gray-box", "black-box")


@dataclass(frozen=True)
class ThreatModel:
    """The attacker's knowledge and capabilities, recorded with every result.

    Args:
        knowledge: ``"white-box"`` (weights and gradients), ``"gray-box"`` or ``"black-box"``
            (queries only).
        goal: ``"untargeted"`` or ``"targeted"`` misclassification, or a free-form goal for
            non-evasion threats (``"membership"``, ``"exfiltration"``...).
        norm: Perturbation norm for evasion (``"linf"``, ``"l2"``, ``"l1"``, ``"l0"``).
        eps: Perturbation budget in that norm, in input units.
        query_budget: Most queries the attacker may make, or ``None`` for unbounded.
        channels: Attacker-controlled channels (``"input"``, ``"training-data"``,
            ``"retrieved-documents"``...).
    """

    knowledge: Knowledge = "white-box"
    goal: str = "untargeted"
    norm: Norm | None = None
    eps: float | None = None
    query_budget: int | None = None
    channels: tuple[str, ...] = ("input",)

    def problems(self) -> list[str]:
        """Every inconsistency in this threat model (empty when valid)."""
        found: list[str] = []
        if self.knowledge not in KNOWLEDGE:
            found.append(f"knowledge must be one of {', '.join(KNOWLEDGE)}, got {self.knowledge!r}")
        if self.norm is not None and self.norm not in NORMS:
            found.append(f"norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        if self.eps is not None and (not math.isfinite(self.eps) or self.eps <= 0):
            found.append(f"eps must be a positive number, got {self.eps!r}")
        if self.query_budget is not None and self.query_budget < 1:
            found.append(f"query_budget must be at least 1, got {self.query_budget!r}")
        return found

    @property
    def targeted(self) -> bool:
        """Whether the attacker aims at a chosen class."""
        return self.goal == "targeted"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        data = asdict(self)
        data["channels"] = list(self.channels)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ThreatModel:
        """Rebuild a threat model written by :meth:`to_dict`."""
        values = dict(data)
        values["channels"] = tuple(values.get("channels") or ("input",))
        return cls(**values)

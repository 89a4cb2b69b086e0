"""Progress events: the library reports progress; the CLI draws it, the server streams it.

The library never prints. Long work emits :class:`Progress` events through the
:class:`~phalanx.core.context.Context` it is given; a sink decides what to do with them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """Work on a task advanced.

    Args:
        task: Stable task key, e.g. ``"pgd@eps=0.1"``.
        description: Human label for a progress bar.
        completed: Units done so far.
        total: Units in all, or ``None`` when unknown.
        unit: What a unit is (``"samples"``, ``"epochs"``, ``"files"``).
        finished: True on the last event of the task.
    """

    task: str
    description: str
    completed: int
    total: int | None = None
    unit: str = "items"
    finished: bool = False


@dataclass(frozen=True)
class Message:
    """A one-line status message (the library's alternative to printing).

    Args:
        text: What to say.
        level: ``"info"`` or ``"warning"``.
    """

    text: str
    level: str = "info"


Event = Progress | Message
EventSink = Callable[[Event], None]


def null_sink(event: Event) -> None:
    """Discard an event (the default sink)."""


class Collector:
    """A sink that keeps every event, for tests and for the server."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

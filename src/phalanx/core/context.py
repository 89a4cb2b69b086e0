"""Context: the explicit state passed to long work (no global configuration)."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import TracebackType

from phalanx.core.events import EventSink, Message, Progress, null_sink


class ProgressTracker:
    """Counts work on one task and emits :class:`Progress` events; use as a context manager.

    Example:
        >>> with Context().progress("pgd", "PGD", total=100) as bar:
        ...     bar.advance(10)
    """

    def __init__(
        self, sink: EventSink, task: str, description: str, total: int | None, unit: str
    ) -> None:
        self._sink = sink
        self.task = task
        self.description = description
        self.total = total
        self.unit = unit
        self.completed = 0

    def _emit(self, finished: bool = False) -> None:
        self._sink(
            Progress(self.task, self.description, self.completed, self.total, self.unit, finished)
        )

    def advance(self, n: int = 1) -> None:
        """Record ``n`` more units done."""
        self.completed += n
        self._emit()

    def __enter__(self) -> ProgressTracker:
        self._emit()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._emit(finished=True)


@dataclass
class Context:
    """What long-running library calls need from their caller.

    Args:
        events: Where progress and messages go; discarded by default.
        seed: Base random seed; every plugin derives its own randomness from it.
        device: Torch device for tensor work (``"cpu"``, ``"cuda"``); ``None`` keeps the model's.
    """

    events: EventSink = field(default=null_sink)
    seed: int | None = 0
    device: str | None = None

    def progress(
        self, task: str, description: str, total: int | None = None, unit: str = "items"
    ) -> ProgressTracker:
        """Start tracking a task; use the result as a context manager."""
        return ProgressTracker(self.events, task, description, total, unit)

    def message(self, text: str, level: str = "info") -> None:
        """Send a one-line status message to the caller."""
        self.events(Message(text, level))

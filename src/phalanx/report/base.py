"""The reporter seam: one class per output format, one method."""

from __future__ import annotations

from typing import ClassVar

from phalanx.core import Plugin, Run


class Reporter(Plugin):
    """Base class of every report format.

    A reporter turns a finished (or interrupted) :class:`~phalanx.core.Run` into the bytes of
    one file. Like every plugin, its constructor is its configuration (keyword-only arguments
    with defaults); the run goes to :meth:`render`.

    Every string in a run may be attacker-controlled (a model's reply, a payload, a file name
    from a scanned archive): a reporter escapes it for its format and never lets it become
    markup or break the file's structure.

    Class attributes a subclass sets:
        name: Format id, as given to ``phalanx report --format``.
        media_type: MIME type of the output.
        extension: File extension, with the dot.

    Example:
        >>> from phalanx.report import JsonReporter
        >>> data = JsonReporter().render(run)  # doctest: +SKIP
    """

    media_type: ClassVar[str] = "application/octet-stream"
    extension: ClassVar[str] = ""

    def __init__(self) -> None:
        """Most formats take no parameters; subclasses that do override this."""

    def render(self, run: Run) -> bytes:
        """The report of ``run``, encoded (UTF-8 for every text format)."""
        raise NotImplementedError

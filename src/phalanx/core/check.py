"""Check: the unit of an audit. It runs attacks or analyses on a target and returns a Result."""

from __future__ import annotations

from typing import Any, ClassVar

from phalanx.core.context import Context
from phalanx.core.plugin import Plugin
from phalanx.core.results import Result


class Check(Plugin):
    """Base class of every check.

    A subclass sets ``name``, ``title`` and ``refs`` and implements :meth:`run`.
    """

    title: ClassVar[str] = ""

    def run(self, target: Any, data: Any = None, *, context: Context | None = None) -> Result:
        """Examine ``target`` (with ``data`` where the check needs it) and return a Result."""
        raise NotImplementedError

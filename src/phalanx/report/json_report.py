"""The JSON report: the whole run in a versioned envelope, for machines.

The layout is described by the JSON Schema ``phalanx/data/schema/report-v1.json`` and
documented in ``docs/report-format.md``.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, ClassVar

from phalanx.core import Run
from phalanx.report._common import json_safe, summary
from phalanx.report.base import Reporter

#: ``schema`` field of every JSON report.
SCHEMA_NAME = "phalanx.report"
#: Bumped in the minor for additive changes and in the major for breaking ones.
SCHEMA_VERSION = "1.0"


class JsonReporter(Reporter):
    """The run as one JSON document: ``{"schema", "schema_version", "generated_at", "run",
    "summary"}``.

    ``run`` is exactly :meth:`Run.to_dict` (artifacts base64-encoded), except that
    non-finite numbers are written as ``null`` so the output is strict JSON.

    Example:
        >>> doc = json.loads(JsonReporter().render(run))  # doctest: +SKIP
        >>> doc["summary"]["max_severity"]  # doctest: +SKIP
        'high'
    """

    name: ClassVar[str] = "json"
    media_type: ClassVar[str] = "application/json"
    extension: ClassVar[str] = ".json"

    def document(self, run: Run) -> dict[str, Any]:
        """The report as a dictionary (what :meth:`render` encodes)."""
        return {
            "schema": SCHEMA_NAME,
            "schema_version": SCHEMA_VERSION,
            "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            "run": json_safe(run.to_dict()),
            "summary": summary(run),
        }

    def render(self, run: Run) -> bytes:
        text = json.dumps(self.document(run), indent=2, ensure_ascii=False, allow_nan=False)
        return (text + "\n").encode("utf-8")

"""The core vocabulary of phalanx. Pure Python: nothing here imports torch or numpy.

See DESIGN.md: a Target is tested by Checks, which run Attacks under a ThreatModel and return
Results made of Metrics, Artifacts and Findings; a Run collects Results and is persisted by the
store and rendered by reports.
"""

from __future__ import annotations

from phalanx.core.check import Check
from phalanx.core.context import Context, ProgressTracker
from phalanx.core.events import Collector, Event, EventSink, Message, Progress, null_sink
from phalanx.core.findings import Finding, Severity
from phalanx.core.plugin import Constraint, Interval, IsInstance, OneOf, Plugin
from phalanx.core.protocols import Classifier
from phalanx.core.registry import PluginInfo, list_plugins, load_plugin
from phalanx.core.results import Artifact, Metric, Result
from phalanx.core.run import Run, RunStatus
from phalanx.core.threat import ThreatModel

__all__ = [
    "Artifact",
    "Check",
    "Classifier",
    "Collector",
    "Constraint",
    "Context",
    "Event",
    "EventSink",
    "Finding",
    "Interval",
    "IsInstance",
    "Message",
    "Metric",
    "OneOf",
    "Plugin",
    "PluginInfo",
    "Progress",
    "ProgressTracker",
    "Result",
    "Run",
    "RunStatus",
    "Severity",
    "ThreatModel",
    "list_plugins",
    "load_plugin",
    "null_sink",
]

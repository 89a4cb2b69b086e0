"""The ONNX scanner: external-data paths, custom operators and Python operators.

An ONNX model is a protocol buffer and holds no code, but loading one can still reach
outside it:

- **External data.** Large tensors live in side files named by a ``location`` relative to the
  model. ``onnx`` before 1.13 followed ``../`` and absolute locations (CVE-2022-25882), and
  symbolic links defeated the first fix (CVE-2024-27318): a model can read ``/etc/passwd``
  or an SSH key into a tensor, and its outputs can carry it out. A location that is
  absolute, has a ``..`` component, or resolves (through links) outside the model's
  directory is HIGH.
- **Custom operators.** A node in a domain that neither ONNX nor ONNX Runtime defines can
  only run with a custom-op library registered by the loading program (MEDIUM): the code it
  runs is not in the file. ``ai.onnx.contrib`` is onnxruntime-extensions, whose operators
  may be Python functions the loading program registered.
- **Python operators.** ONNX Runtime's ``PyOp`` (language-interop builds) imports the module
  and class its attributes name and calls them: HIGH, and CRITICAL when the module is one
  the pickle deny list names (``os``, ``subprocess``...).

Every graph is walked: the main graph, subgraphs in attributes (``If``, ``Loop``, ``Scan``
bodies), model-local functions and training graphs. The file is parsed with phalanx's own
bounded protocol-buffer reader, so neither ``onnx`` nor ``onnxruntime`` is needed and the
model is never run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from phalanx.core.findings import Finding, Severity
from phalanx.supplychain.scan._protobuf import (
    Budget,
    Message,
    ProtobufError,
    mapped,
    problem_finding,
)
from phalanx.supplychain.scan.base import (
    BUNDLED_FORMATS,
    FileScanner,
    ScanSession,
    Source,
    Tally,
    side_file_problem,
)
from phalanx.supplychain.scan.pickle_vm import REFS

__all__ = ["STANDARD_DOMAINS", "OnnxScanner"]

#: Operator domains defined by ONNX and by ONNX Runtime itself.
STANDARD_DOMAINS = frozenset({
    "", "ai.onnx", "ai.onnx.ml", "ai.onnx.training", "ai.onnx.preview.training",
    "com.microsoft", "com.microsoft.nchwc", "com.microsoft.experimental",
    "com.microsoft.mlfeaturizers", "com.ms.internal.nhwc",
})
_EXTENSIONS_DOMAIN = "ai.onnx.contrib"
_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL


class OnnxScanner(FileScanner):
    """ONNX models: external data paths, custom-domain and Python operators.

    Threat model: an attacker who controls the ``.onnx`` file (and perhaps files beside it)
    and a victim who loads it with ``onnx.load`` or creates an ONNX Runtime session from it.
    The scan parses the protocol buffer with a bounded reader; it never loads external data
    and never runs the model.

    Example:
        >>> from phalanx.supplychain.scan.onnx_model import OnnxScanner
        >>> findings = list(OnnxScanner().scan("model.onnx"))  # doctest: +SKIP
    """

    name = "onnx"
    title = "ONNX models"
    paper = ("ONNX external data path traversal, CVE-2022-25882 and CVE-2024-27318, "
             "https://nvd.nist.gov/vuln/detail/CVE-2022-25882")
    refs = REFS
    formats: ClassVar[tuple[str, ...]] = BUNDLED_FORMATS["onnx"]

    def scan_source(self, source: Source, session: ScanSession) -> Iterator[Finding]:
        """Walk every graph and function of the model."""
        hits = Tally()
        model_dir = source.path.parent if source.path is not None else None
        try:
            with mapped(source, session.limits.max_member_bytes) as buf:
                self._model(Message(buf, budget=Budget()), model_dir, session, hits)
        except ProtobufError as exc:
            yield problem_finding(session, source, exc, what="ONNX model",
                                  scanner=self.plugin_id(), fmt="onnx")
        except ValueError as exc:  # a member over the size limit
            yield session.error(source, str(exc), scanner=self.plugin_id(), fmt="onnx")
        yield from hits.findings(session, source, scanner=self.plugin_id(), fmt="onnx",
                                 locations_key="where")

    def _model(self, model: Message, model_dir: Path | None, session: ScanSession,
               hits: Tally) -> None:
        graphs: list[tuple[Message, str]] = []
        functions: list[Message] = []
        for number, value in model:
            if number == 7:
                graphs.append((value.message(), "graph"))
            elif number == 25:
                functions.append(value.message())
            elif number == 20:
                info = value.message()
                for sub_number, sub in info:
                    if sub_number in (1, 3):
                        graphs.append((sub.message(), "training graph"))
        local: set[tuple[str, str]] = set()
        for function in functions:
            local.add((function.string(10), function.string(1)))
        walker = _Walker(model_dir, session, hits, local)
        for function in functions:
            label = f"function {function.string(10)}.{function.string(1)}"
            for node in function.messages(7):
                walker.node(node, label)
        for graph, label in graphs:
            walker.graph(graph, label)
        while walker.pending:
            graph, label = walker.pending.pop()
            walker.graph(graph, label)


class _Walker:
    """Judges nodes and tensors; collects subgraphs to walk next (no recursion)."""

    def __init__(self, model_dir: Path | None, session: ScanSession,
                 hits: Tally, local: set[tuple[str, str]]) -> None:
        self.model_dir = model_dir
        self.session = session
        self.hits = hits
        self.local = local
        self.pending: list[tuple[Message, str]] = []

    def graph(self, graph: Message, label: str) -> None:
        name = graph.string(2) or "?"
        where = f"{label} {name}"
        for number, value in graph:
            if number == 1:
                self.node(value.message(), where)
            elif number == 5:
                self.tensor(value.message(), where)
            elif number == 15:
                self.sparse(value.message(), where)

    def node(self, node: Message, where: str) -> None:
        op_type = ""
        domain = ""
        name = ""
        attributes: list[Message] = []
        for number, value in node:
            if number == 4:
                op_type = value.text(256)
            elif number == 7:
                domain = value.text(256)
            elif number == 3:
                name = value.text(256)
            elif number == 5:
                attributes.append(value.message())
        at = f"{where}: {name or op_type}"
        strings: dict[str, str] = {}
        for attribute in attributes:
            attr_name = ""
            text = None
            for number, value in attribute:
                if number == 1:
                    attr_name = value.text(256)
                elif number == 4:
                    text = value.text(4096)
                elif number == 5:
                    self.tensor(value.message(), at)
                elif number == 6:
                    self.pending.append((value.message(), f"subgraph of {at}"))
                elif number == 10:
                    self.tensor(value.message(), at)
                elif number == 11:
                    self.pending.append((value.message(), f"subgraph of {at}"))
                elif number in (22, 23):
                    self.sparse(value.message(), at)
            if text is not None:
                strings[attr_name] = text
        self.judge_op(op_type, domain, strings, at)

    def judge_op(self, op_type: str, domain: str, strings: dict[str, str], at: str) -> None:
        if op_type == "PyOp":
            module = strings.get("module", "")
            cls = strings.get("class_name", "")
            rule = self.session.policy.denial(module, cls) if module else None
            severity = rule.severity if rule is not None else Severity.HIGH
            reason = f" {module}.{cls} {rule.reason}." if rule is not None else ""
            self.hits.add(("pyop", module, cls), at, "onnx-python-op", severity,
                          f"PyOp node imports and calls Python ({module}.{cls})",
                          "ONNX Runtime's Python operator imports the module and class named "
                          "in the node's attributes and calls them when the model runs, with "
                          f"the loading process's rights.{reason}",
                          {"op_type": op_type, "domain": domain, "module": module,
                           "class_name": cls})
            return
        if (domain, op_type) in self.local or domain in STANDARD_DOMAINS:
            return
        extensions = domain == _EXTENSIONS_DOMAIN
        self.hits.add(("custom", domain, op_type), at, "onnx-custom-op", Severity.MEDIUM,
                      f"Custom operator {domain}.{op_type}",
                      "The operator's domain is neither ONNX's nor ONNX Runtime's, so running the "
                      "model needs a custom-op library that the loading program registers; what "
                      "the operator does is not in this file."
                      + (" ai.onnx.contrib is onnxruntime-extensions, whose operators may be "
                         "Python functions." if extensions else ""),
                      {"op_type": op_type, "domain": domain})

    def sparse(self, sparse: Message, where: str) -> None:
        for number, value in sparse:
            if number in (1, 2):
                self.tensor(value.message(), where)

    def tensor(self, tensor: Message, where: str) -> None:
        external = False
        location = None
        name = ""
        for number, value in tensor:
            if number == 14:
                external = external or value.integer() == _EXTERNAL
            elif number == 13:
                entry = value.message()
                if entry.string(1) == "location":
                    location = entry.string(2, limit=4096)
                    external = True
            elif number == 8:
                name = value.text(256)
        if not external:
            return
        at = f"{where}: tensor {name}"
        problem = side_file_problem(location or "", self.model_dir)
        if problem is None:
            return
        if problem == "missing":
            self.hits.add(("missing", location), at, "onnx-external-data-missing", Severity.LOW,
                          f"External data file {location!r} is missing",
                          "The tensor's data is in a side file that is not beside the model; "
                          "loading fails until it is supplied, and whatever is supplied was not "
                          "scanned.", {"location": location})
            return
        self.hits.add(("traversal", location), at, "onnx-external-data-traversal", Severity.HIGH,
                      f"External data location {location!r} {problem}",
                      "ONNX loads external tensor data from this path when the model is loaded. "
                      "A location outside the model's directory reads any file the loading "
                      "process can read into a tensor (CVE-2022-25882; symbolic links: "
                      "CVE-2024-27318), and the model's outputs can carry it out.",
                      {"location": location, "cve": ["CVE-2022-25882", "CVE-2024-27318"]})

"""The TensorFlow SavedModel scanner: the graph's operations judged without TensorFlow.

A SavedModel cannot hold Python code, but its graph can hold operations that touch the
machine when the model is loaded or called: ``WriteFile`` and ``ReadFile`` read and write any
path, ``PyFunc`` calls into the loading process's Python, RPC and tf.data-service ops talk to
the network. ``saved_model.pb`` is parsed with phalanx's own protocol-buffer reader
(:mod:`._protobuf`), every node of the top-level graph and of every function in its library is
judged, and operations named through function attributes (a ``PartitionedCall`` whose ``f``
names a primitive op) are judged too.

Policy for checkpoint and input operations. ``SaveV2``/``RestoreV2``/``MergeV2Checkpoints``
are in every SavedModel (the saver that writes and restores ``variables/``), and vocabulary
tables read asset files with ``InitializeTableFromTextFileV2``. ModelScan flags only
``ReadFile``/``WriteFile`` and so misses a ``SaveV2`` aimed at ``~/.bashrc``; flagging every
``SaveV2`` (as broad deny lists do) fails every model. Here the question is *who chooses the
path*: each path input is traced back through the graph. A path fed by the loader (the
saver's filename tensor, a placeholder, a function argument, a registered asset) is the
standard wiring and is not reported; a path fixed inside the model (a constant) is HIGH for
checkpoint ops and MEDIUM for input ops; a constant that is absolute or has a ``..``
component is HIGH for both. The trace stays inside one graph or function: a constant passed
to a function through a call is not followed (a known gap, which the other rules narrow).

Keras models saved as SavedModels also keep each layer's Keras config (``keras_metadata.pb``
beside ``saved_model.pb``, or ``SavedUserObject.metadata`` inside it), where a Lambda layer's
bytecode lives: those configs are checked with the Keras scanner's rules.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import ClassVar

from phalanx.core.findings import Finding, Severity
from phalanx.supplychain.scan._protobuf import (
    Budget,
    Message,
    ProtobufError,
    mapped,
    problem_finding,
)
from phalanx.supplychain.scan.base import BUNDLED_FORMATS, FileScanner, ScanSession, Source, Tally
from phalanx.supplychain.scan.keras import analyse_config
from phalanx.supplychain.scan.pickle_vm import REFS

__all__ = ["OP_CATEGORIES", "SavedModelScanner"]

#: Operations flagged wherever they are, by category: (severity, what they do).
OP_CATEGORIES: dict[str, tuple[Severity, str, frozenset[str]]] = {
    "python": (Severity.HIGH, "calls Python functions of the loading process", frozenset({
        "PyFunc", "PyFuncStateless", "EagerPyFunc"})),
    "file-write": (Severity.HIGH, "writes files at paths the graph chooses", frozenset({
        "WriteFile", "DatasetToTFRecord", "ExperimentalDatasetToTFRecord", "SaveDataset",
        "SaveDatasetV2", "DistributedSave", "CreateSummaryFileWriter",
        "CreateSummaryDbWriter"})),
    "file-read": (Severity.HIGH, "reads or lists files at paths the graph chooses", frozenset({
        "ReadFile", "MatchingFiles", "ImmutableConst", "WholeFileReader",
        "WholeFileReaderV2"})),
    "network": (Severity.HIGH, "opens network connections", frozenset({
        "Rpc", "TryRpc", "RpcClient", "RpcServer", "RpcServerStart", "RpcServerRegister",
        "RpcCall", "DataServiceDataset", "DataServiceDatasetV2", "DataServiceDatasetV3",
        "DataServiceDatasetV4", "RegisterDataset", "RegisterDatasetV2"})),
}

#: Checkpoint ops and the inputs that hold their paths (fine when the loader feeds them).
_CHECKPOINT_OPS: dict[str, tuple[int, ...]] = {
    "Save": (0,), "SaveSlices": (0,), "SaveV2": (0,), "Restore": (0,), "RestoreSlice": (0,),
    "RestoreV2": (0,), "MergeV2Checkpoints": (0, 1),
}

#: Input ops that read files named by an input (fine for assets and fed paths).
_INPUT_OPS: dict[str, tuple[int, ...]] = {
    "InitializeTableFromTextFile": (1,), "InitializeTableFromTextFileV2": (1,),
    "TextLineDataset": (0,), "TFRecordDataset": (0,), "TFRecordDatasetV2": (0,),
    "FixedLengthRecordDataset": (0,), "FixedLengthRecordDatasetV2": (0,),
    "CSVDataset": (0,), "CSVDatasetV2": (0,), "ExperimentalCSVDataset": (0,),
    "LMDBDataset": (0,), "ExperimentalLMDBDataset": (0,), "SqlDataset": (1,),
    "ExperimentalSqlDataset": (1,), "LoadAndRemapMatrix": (0,), "SnapshotDataset": (1,),
    "SnapshotDatasetV2": (1,), "LoadDataset": (0,), "MatchingFilesDataset": (0,),
}

_FED_OPS = frozenset({"Placeholder", "PlaceholderV2", "PlaceholderWithDefault", "_Arg"})
_DT_STRING = 7
_TRACE_LIMIT = 512
_SEPARATORS = re.compile(r"[\\/]")


@dataclass
class _Node:
    name: str
    op: str
    inputs: list[str]
    attrs: dict[str, Message]


@dataclass
class _Graph:
    """The top-level graph (``name == ""``) or one library function."""

    name: str
    nodes: dict[str, _Node] = field(default_factory=dict)
    args: set[str] = field(default_factory=set)
    #: Every node in file order: a repeated name must not hide the first node from the scan.
    order: list[_Node] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"function {self.name}" if self.name else "graph"


class SavedModelScanner(FileScanner):
    """TensorFlow SavedModels: graph operations that touch files, Python or the network.

    Parses ``saved_model.pb`` (schema ``SavedModel`` > ``MetaGraphDef`` > ``GraphDef`` >
    ``NodeDef`` and ``FunctionDefLibrary`` > ``FunctionDef`` > ``NodeDef``) with a bounded
    wire-format reader; TensorFlow is never imported. See the module docstring for the policy
    on checkpoint and input operations and how paths are traced.

    Threat model: an attacker who controls the SavedModel directory and a victim who loads it
    with ``tf.saved_model.load`` or ``keras.models.load_model`` and calls it. Custom-op
    libraries (ops TensorFlow does not register) are not recognised by name.

    Example:
        >>> from phalanx.supplychain.scan.savedmodel import SavedModelScanner
        >>> findings = list(SavedModelScanner().scan("model/saved_model.pb"))  # doctest: +SKIP
    """

    name = "savedmodel"
    title = "TensorFlow SavedModel"
    paper = ("TensorFlow security model, 'Using TensorFlow Securely', "
             "https://github.com/tensorflow/tensorflow/blob/master/SECURITY.md")
    refs = REFS
    formats: ClassVar[tuple[str, ...]] = BUNDLED_FORMATS["savedmodel"]

    def scan_source(self, source: Source, session: ScanSession) -> Iterator[Finding]:
        """Judge every operation of every graph and function in ``saved_model.pb``."""
        hits = Tally()
        configs: list[tuple[str, str]] = []
        try:
            with mapped(source, session.limits.max_member_bytes) as buf:
                model = Message(buf, budget=Budget())
                metas = 0
                for meta in model.messages(2):
                    metas += 1
                    self._meta_graph(meta, hits, configs, session.limits.max_header_bytes)
                if metas == 0:
                    yield session.malformed(source, "SavedModel has no MetaGraphDef",
                                            scanner=self.plugin_id(), fmt="savedmodel")
        except ProtobufError as exc:
            yield problem_finding(session, source, exc, what="saved_model.pb",
                                  scanner=self.plugin_id(), fmt="savedmodel")
        except ValueError as exc:  # a member over the size limit
            yield session.error(source, str(exc), scanner=self.plugin_id(), fmt="savedmodel")
        yield from hits.findings(session, source, scanner=self.plugin_id(), fmt="savedmodel",
                                 locations_key="nodes")
        yield from self._keras_metadata(source, session, configs)

    # -- parsing ----------------------------------------------------------------------------

    def _meta_graph(self, meta: Message, hits: Tally,
                    configs: list[tuple[str, str]], limit: int) -> None:
        fed: set[str] = set()
        saver = meta.message(3)
        if saver is not None:
            fed.add(_tensor_node(saver.string(1)))
        for asset in meta.messages(6):
            info = asset.message(1)
            if info is not None:
                fed.add(_tensor_node(info.string(1)))
        for key, collection in meta.map_entries(4):
            if key == "asset_filepaths":
                node_list = collection.message(1)
                if node_list is not None:
                    fed.update(_tensor_node(t) for t in node_list.strings(1))
        graphs: list[_Graph] = []
        graph_def = meta.message(2)
        if graph_def is not None:
            top = _Graph("")
            for node_def in graph_def.messages(1):
                _add_node(top, node_def)
            graphs.append(top)
            library = graph_def.message(2)
            if library is not None:
                for function in library.messages(1):
                    graphs.append(_function(function))
        library_names = {g.name for g in graphs if g.name}
        for graph in graphs:
            for node in graph.order:
                _judge_node(graph, node, fed, library_names, hits)
        objects = meta.message(7)
        if objects is not None:
            for obj in objects.messages(1):
                user = obj.message(4)
                if user is not None and user.string(1).startswith("_tf_keras"):
                    configs.append((f"SavedUserObject {user.string(1)}",
                                    user.string(3, limit=limit + 1)))

    def _keras_metadata(self, source: Source, session: ScanSession,
                        configs: list[tuple[str, str]]) -> Iterator[Finding]:
        """Check the Keras configs stored with a Keras-made SavedModel."""
        limit = session.limits.max_header_bytes
        sidecar = source.path.parent / "keras_metadata.pb" if source.path is not None else None
        if sidecar is not None and sidecar.is_file() and not sidecar.is_symlink():
            side = Source.from_path(sidecar, root=source.root)
            try:
                with mapped(side, session.limits.max_member_bytes) as buf:
                    for obj in Message(buf, budget=Budget()).messages(1):
                        configs.append((f"keras_metadata.pb {obj.string(2)}",
                                        obj.string(4, limit=limit + 1)))
            except (ProtobufError, ValueError) as exc:
                yield session.malformed(side, f"keras_metadata.pb: {exc}",
                                        scanner=self.plugin_id(), fmt="savedmodel")
        for where, text in configs:
            if not text:
                continue
            if len(text.encode("utf-8", errors="replace")) > limit:
                yield session.finding(
                    source, "header-too-large", Severity.MEDIUM,
                    "Keras metadata larger than the scan reads",
                    f"{where} holds more than {limit} bytes of Keras config; it was not "
                    "checked, and Keras would load it.", scanner=self.plugin_id(),
                    fmt="savedmodel", evidence={"where": where, "incomplete": True})
                continue
            try:
                config = json.loads(text)
            except (ValueError, RecursionError) as exc:
                yield session.malformed(source, f"{where}: Keras metadata is not JSON ({exc})",
                                        scanner=self.plugin_id(), fmt="savedmodel")
                continue
            for issue in analyse_config(config, policy=session.policy):
                yield session.finding(source, issue.rule, issue.severity, issue.title,
                                      issue.detail, scanner=self.plugin_id(), fmt="savedmodel",
                                      evidence={"where": where, **issue.evidence})


def _tensor_node(tensor: str) -> str:
    """``"save/Const:0"`` -> ``"save/Const"``."""
    return tensor.lstrip("^").split(":", 1)[0]


def _add_node(graph: _Graph, node: Message) -> None:
    name = ""
    op = ""
    inputs: list[str] = []
    attrs: dict[str, Message] = {}
    for number, value in node:
        if number == 1:
            name = value.text()
        elif number == 2:
            op = value.text()
        elif number == 3:
            inputs.append(value.text())
        elif number == 5:
            entry = value.message()
            attr = entry.message(2)
            if attr is not None:
                attrs[entry.string(1)] = attr
    parsed = _Node(name, op, inputs, attrs)
    graph.nodes.setdefault(name, parsed)
    graph.order.append(parsed)


def _function(function: Message) -> _Graph:
    signature = function.message(1)
    graph = _Graph(signature.string(1) if signature is not None else "?")
    if signature is not None:
        for arg in signature.messages(2):
            graph.args.add(arg.string(1))
    for node in function.messages(3):
        _add_node(graph, node)
    return graph


def _function_refs(attr: Message) -> Iterator[str]:
    """Function names an ``AttrValue`` holds (``func`` or a list of them)."""
    for number, value in attr:
        if number == 10:
            yield value.message().string(1)
        elif number == 1:
            for func in value.message().messages(9):
                yield func.string(1)


def _strings(attr: Message) -> list[str]:
    """The strings of an ``AttrValue`` (``s`` or a list of ``s``)."""
    out = [value.text(4096) for value in attr.values(2)]
    for lst in attr.messages(1):
        out.extend(value.text(4096) for value in lst.values(2))
    return out


def _const_strings(node: _Node) -> list[str]:
    """The string values of a ``Const`` node (``value`` attribute, a DT_STRING tensor)."""
    attr = node.attrs.get("value")
    if attr is None:
        return []
    tensor = attr.message(8)
    if tensor is None or tensor.integer(1) != _DT_STRING:
        return []
    return [value.text(4096) for _, value in zip(range(16), tensor.values(8), strict=False)]


def _escapes(path: str) -> bool:
    if path.startswith(("/", "\\", "~")) or re.match(r"^[A-Za-z]:[\\/]", path):
        return True
    return ".." in _SEPARATORS.split(path)


def _trace(graph: _Graph, node: _Node, indexes: tuple[int, ...],
           fed: set[str]) -> tuple[bool, list[str]]:
    """Where a node's path inputs come from: ``(fed by the loader?, constant strings)``."""
    data_inputs = [i for i in node.inputs if not i.startswith("^")]
    pending = [data_inputs[i] for i in indexes if i < len(data_inputs)]
    if len(pending) < len(indexes):
        return False, []
    is_fed = False
    consts: list[str] = []
    seen: set[str] = set()
    while pending and len(seen) < _TRACE_LIMIT:
        ref = _tensor_node(pending.pop())
        if ref in seen:
            continue
        seen.add(ref)
        source = graph.nodes.get(ref)
        if source is None:
            is_fed = is_fed or ref in graph.args
            continue
        if (not graph.name and ref in fed) or source.op in _FED_OPS:
            is_fed = True
            continue
        if source.op == "Const":
            consts.extend(_const_strings(source))
            continue
        pending.extend(i for i in source.inputs if not i.startswith("^"))
    return is_fed, consts


def _judge_node(graph: _Graph, node: _Node, fed: set[str], library: set[str],
                hits: Tally) -> None:
    where = f"{graph.label}: {node.name}"
    _judge_op(graph, node, node.op, where, fed, hits, via=None)
    for attr_name, attr in node.attrs.items():
        for ref in _function_refs(attr):
            if ref and ref not in library:
                _judge_op(graph, node, ref, where, fed, hits, via=attr_name)
    if node.op.startswith("Debug") and "debug_urls" in node.attrs:
        urls = [u for u in _strings(node.attrs["debug_urls"]) if u]
        if urls:
            hits.add(("debug", node.op), where, "savedmodel-unsafe-op", Severity.HIGH,
                 f"{node.op} sends tensors to {urls[0][:80]}",
                 "A debug op with debug_urls writes every tensor it sees to a file or a "
                 "network address when the graph runs.", {"op": node.op, "urls": urls[:4]})
    if node.op == "PrintV2" and "output_stream" in node.attrs:
        stream = next(iter(_strings(node.attrs["output_stream"])), "")
        if stream.startswith("file://"):
            hits.add(("print", stream), where, "savedmodel-unsafe-op", Severity.HIGH,
                 f"PrintV2 writes to {stream[:80]}",
                 "tf.print with a file:// output stream appends to a file the graph chooses.",
                 {"op": node.op, "output_stream": stream[:300]})


def _judge_op(graph: _Graph, node: _Node, op: str, where: str, fed: set[str],
              hits: Tally, via: str | None) -> None:
    how = f" (called through attribute {via!r})" if via else ""
    for category, (severity, what, ops) in OP_CATEGORIES.items():
        if op in ops:
            hits.add(("op", op), where, "savedmodel-unsafe-op", severity,
                 f"SavedModel graph uses {op}, which {what}",
                 f"The operation {op}{how} {what} when the graph runs; TensorFlow runs it "
                 "on load (initialisers) or on the first call, with the loading process's "
                 "rights. A served model has no reason to contain it.",
                 {"op": op, "category": category})
            return
    table = _CHECKPOINT_OPS if op in _CHECKPOINT_OPS else _INPUT_OPS
    indexes = table.get(op)
    if indexes is None:
        return
    checkpoint = table is _CHECKPOINT_OPS
    consts: list[str] = []
    if via is not None:
        is_fed = False
    else:
        is_fed, consts = _trace(graph, node, indexes, fed)
    escaping = [c for c in consts if _escapes(c)]
    if escaping:
        severity = Severity.HIGH
        why = f"its path is built from {escaping[0][:120]!r}, which leaves the model directory"
    elif is_fed:
        return  # the standard wiring: the loader chooses the path
    else:
        severity = Severity.HIGH if checkpoint else Severity.MEDIUM
        why = ("its path is fixed inside the model" + (f" ({consts[0][:120]!r})" if consts
                                                        else ""))
    kind = "checkpoint" if checkpoint else "input"
    hits.add(("path", op, tuple(escaping[:1])), where, "savedmodel-fixed-path", severity,
         f"{op} {'writes or reads' if checkpoint else 'reads'} a path the model chooses",
         f"The {kind} operation {op}{how} is not wired to a path the loader supplies: {why}. "
         "The standard saver and asset tables take their paths from the loader; a model that "
         "names its own path reads or overwrites files outside the model.",
         {"op": op, "category": kind, "paths": consts[:4]})

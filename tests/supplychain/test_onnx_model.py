"""The ONNX scanner: external-data paths, custom and Python operators in every graph and
function, read without ``onnx`` or ``onnxruntime`` and never run.

Models are built with ``onnx.helper`` (skipped when onnx is not installed); the scanner
itself parses the bytes with phalanx's own protocol-buffer reader.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scanning import mutated

from phalanx.core.findings import Finding, Severity
from phalanx.supplychain.scan.base import ScanLimits, ScanSession, Source
from phalanx.supplychain.scan.onnx_model import OnnxScanner
from phalanx.supplychain.scan.sniff import sniff
from phalanx.testing import check_plugin

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402
from samples import keras_tf_onnx as s  # noqa: E402


def _scan(target: Path | bytes, **limits: Any) -> list[Finding]:
    session = ScanSession(scanners={"onnx": OnnxScanner()}, limits=ScanLimits(**limits))
    source = (Source.from_bytes("model.onnx", target) if isinstance(target, bytes)
              else Source.from_path(target))
    return list(OnnxScanner().scan_source(source, session))


def _rules(findings: list[Finding], level: Severity = Severity.LOW) -> set[str]:
    return {f.evidence["rule"] for f in findings if f.severity >= level}


def _model(nodes: list[Any], **kwargs: Any) -> Any:
    return s._onnx_model(nodes, initializers=s._onnx_weights(), **kwargs)


def _save(tmp_path: Path, model: Any) -> Path:
    return s._save_onnx(tmp_path, model)


def test_scanner_contract() -> None:
    check_plugin(OnnxScanner)


# -- benign --------------------------------------------------------------------------------------


def test_benign_models(tmp_path: Path) -> None:
    plain = s._onnx_benign(tmp_path / "a", tmp_path / "C")
    external = s._onnx_benign_external(tmp_path / "b", tmp_path / "C")
    assert (tmp_path / "b" / "model.onnx.data").exists()
    for path in (plain, external):
        assert sniff(Source.from_path(path)) == "onnx"
        assert _scan(path) == []


def test_microsoft_domain_and_local_functions_pass(tmp_path: Path) -> None:
    fn_body = [helper.make_node("Relu", ["a"], ["b"])]
    local = helper.make_function("com.example.local", "MyRelu", ["a"], ["b"], fn_body,
                                 [helper.make_operatorsetid("", 17)])
    nodes = [*s._onnx_standard_nodes("h"),
             helper.make_node("MyRelu", ["h"], ["g"], domain="com.example.local"),
             helper.make_node("FastGelu", ["g"], ["y"], domain="com.microsoft")]
    model = _model(nodes, opsets=[("com.example.local", 1), ("com.microsoft", 1)],
                   functions=[local])
    assert _scan(_save(tmp_path, model)) == []


def test_scanning_does_not_need_onnx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blob = s._onnx_pyop(tmp_path, tmp_path / "C").read_bytes()
    for name in [m for m in sys.modules if m == "onnx" or m.startswith("onnx.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "onnx", None)
    assert _rules(_scan(blob), Severity.HIGH) == {"onnx-python-op"}


# -- external data ---------------------------------------------------------------------------------


def _with_location(tmp_path: Path, location: str) -> Path:
    weights = s._onnx_weights()
    s._external(weights[0], location)
    return _save(tmp_path, s._onnx_model(s._onnx_standard_nodes(), initializers=weights))


@pytest.mark.parametrize(("location", "why"), [
    ("../../../../etc/passwd", "'..'"),
    ("/etc/passwd", "absolute"),
    ("weights/../../secret.bin", "'..'"),
    ("..\\..\\secret.bin", "'..'"),
    ("C:\\Windows\\win.ini", "absolute"),
    ("~/.ssh/id_rsa", "absolute"),
    ("data\x00.bin", "NUL"),
])
def test_escaping_locations_are_high(tmp_path: Path, location: str, why: str) -> None:
    # CVE-2022-25882: onnx < 1.13 followed such locations out of the model directory.
    (finding,) = _scan(_with_location(tmp_path, location))
    assert finding.evidence["rule"] == "onnx-external-data-traversal"
    assert finding.severity is Severity.HIGH and why in finding.title
    assert finding.evidence["location"] == location


def test_symlink_out_of_the_model_directory(tmp_path: Path) -> None:
    # CVE-2024-27318: a symbolic link beside the model defeated the '..' check.
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\x00" * 64)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    os.symlink(secret, model_dir / "weights.bin")
    (finding,) = _scan(_with_location(model_dir, "weights.bin"))
    assert "symbolic link" in finding.title and finding.severity is Severity.HIGH


def test_missing_external_file_is_low(tmp_path: Path) -> None:
    (finding,) = _scan(_with_location(tmp_path, "gone.bin"))
    assert finding.evidence["rule"] == "onnx-external-data-missing"
    assert finding.severity is Severity.LOW


def test_external_data_in_attributes_sparse_initializers_and_subgraphs(tmp_path: Path) -> None:
    const = helper.make_tensor("c", TensorProto.FLOAT, [2], [1.0, 2.0])
    s._external(const, "/etc/shadow")
    values = helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])
    s._external(values, "../sparse.bin")
    sparse = helper.make_sparse_tensor(values, helper.make_tensor("i", TensorProto.INT64, [1],
                                                                  [0]), [2])
    then = helper.make_graph([helper.make_node("Constant", [], ["t"], value=const)], "then",
                             [], [helper.make_tensor_value_info("t", TensorProto.FLOAT, [2])])
    other = helper.make_graph([helper.make_node("Constant", [], ["e"], value_floats=[0., 0.])],
                              "else", [],
                              [helper.make_tensor_value_info("e", TensorProto.FLOAT, [2])])
    nodes = [*s._onnx_standard_nodes(),
             helper.make_node("Constant", ["cond"], ["cond_out"], sparse_value=sparse),
             helper.make_node("If", ["cond_out"], ["z2"], then_branch=then, else_branch=other)]
    findings = _scan(_save(tmp_path, _model(nodes)))
    locations = {f.evidence["location"] for f in findings}
    assert locations == {"/etc/shadow", "../sparse.bin"}
    shadow = next(f for f in findings if f.evidence["location"] == "/etc/shadow")
    assert "subgraph of" in shadow.evidence["where"][0]


# -- operators ------------------------------------------------------------------------------------


def test_custom_domain_is_medium(tmp_path: Path) -> None:
    (finding,) = _scan(s._onnx_custom_domain(tmp_path, tmp_path / "C"))
    assert finding.evidence["rule"] == "onnx-custom-op"
    assert finding.severity is Severity.MEDIUM
    assert (finding.evidence["domain"], finding.evidence["op_type"]) == (
        "com.example.private", "Decrypt")


def test_extensions_domain_mentions_python(tmp_path: Path) -> None:
    nodes = [*s._onnx_standard_nodes("h"),
             helper.make_node("StringRegexReplace", ["h"], ["y"], domain="ai.onnx.contrib")]
    (finding,) = _scan(_save(tmp_path, _model(nodes, opsets=[("ai.onnx.contrib", 1)])))
    assert finding.severity is Severity.MEDIUM and "Python" in finding.detail


def test_custom_ops_hidden_in_subgraphs_and_functions(tmp_path: Path) -> None:
    hidden = helper.make_node("Evil", ["a"], ["b"], domain="com.evil")
    body = helper.make_graph([hidden], "body", [helper.make_tensor_value_info(
        "a", TensorProto.FLOAT, [1])], [helper.make_tensor_value_info("b", TensorProto.FLOAT,
                                                                      [1])])
    loop_body = helper.make_graph([helper.make_node("If", ["c"], ["d"], then_branch=body,
                                                    else_branch=body)], "loop", [], [])
    fn = helper.make_function("com.example.local", "Wrapped", ["a"], ["b"],
                              [helper.make_node("Run", ["a"], ["b"], domain="com.evil.fn")],
                              [helper.make_operatorsetid("", 17)])
    nodes = [*s._onnx_standard_nodes("h"),
             helper.make_node("Loop", ["m", "c"], ["y"], body=loop_body),
             helper.make_node("Wrapped", ["h"], ["q"], domain="com.example.local")]
    findings = _scan(_save(tmp_path, _model(nodes, functions=[fn])))
    found = {(f.evidence["domain"], f.evidence["op_type"]): f for f in findings}
    assert set(found) == {("com.evil", "Evil"), ("com.evil.fn", "Run")}
    assert found[("com.evil", "Evil")].evidence["count"] == 2  # both branches
    assert found[("com.evil.fn", "Run")].evidence["where"][0].startswith(
        "function com.example.local.Wrapped")


def test_pyop_severity_follows_the_module(tmp_path: Path) -> None:
    (critical,) = _scan(s._onnx_pyop(tmp_path / "a", tmp_path / "C"))
    assert critical.severity is Severity.CRITICAL
    assert (critical.evidence["module"], critical.evidence["class_name"]) == ("os", "system")
    nodes = [*s._onnx_standard_nodes("h"),
             helper.make_node("PyOp", ["h"], ["y"], domain="pyopmulti_1",
                              module="mymodule", class_name="Multi_1")]
    (high,) = _scan(_save(tmp_path / "b", _model(nodes)))
    assert high.severity is Severity.HIGH and high.evidence["rule"] == "onnx-python-op"


# -- malformed and bounds ------------------------------------------------------------------------


def test_malformed_and_limits(tmp_path: Path) -> None:
    blob = s._onnx_benign(tmp_path, tmp_path / "C").read_bytes()
    (finding,) = _scan(blob[:-7])
    assert finding.evidence["rule"] == "malformed"
    assert _rules(_scan(blob, max_member_bytes=10)) == {"scan-error"}


def test_reordered_fields_are_still_sniffed(tmp_path: Path) -> None:
    blob = s._onnx_pyop(tmp_path, tmp_path / "C").read_bytes()
    assert blob[:1] == b"\x08"
    model = onnx.load_model_from_string(blob)
    ir = model.ir_version
    model.ClearField("ir_version")
    reordered = model.SerializeToString() + bytes([0x08, ir])  # ir_version last
    assert sniff(Source.from_bytes("model.onnx", reordered)) == "onnx"
    assert _rules(_scan(reordered), Severity.HIGH) == {"onnx-python-op"}


@pytest.fixture(scope="module")
def pyop_model(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    base = tmp_path_factory.mktemp("onnx")
    return s._onnx_pyop(base, Path("/nonexistent/CANARY")).read_bytes()


@settings(max_examples=150, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(st.data())
def test_mutated_models_never_raise(pyop_model: bytes, data: st.DataObject) -> None:
    blob = mutated(data, pyop_model)
    started = time.perf_counter()
    findings = _scan(blob)
    assert time.perf_counter() - started < 2.0
    assert all(isinstance(f, Finding) for f in findings)

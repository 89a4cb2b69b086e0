"""Tests for the taxonomy data files and their loader.

The expected counts and names below were counted by hand from the project's taxonomy
reference (OWASP LLM 2025/2023, MITRE ATLAS data 5.6.0, NIST AI 100-2 E2025, NIST AI 600-1,
NIST AI RMF 1.0), not read back from the YAML files.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from phalanx.core.taxonomy import (
    ENTRY_KINDS,
    ID_PATTERNS,
    Taxonomy,
    TaxonomyEntry,
    load_taxonomy,
    make_ref,
    parse_ref,
)

FRAMEWORKS = (
    "owasp-llm-2025",
    "owasp-llm-2023",
    "atlas",
    "nist-aml-2025",
    "nist-ai-600-1",
    "nist-ai-rmf-1.0",
)

# Reference §1.1 / §1.2.
OWASP_2025 = [
    "Prompt Injection",
    "Sensitive Information Disclosure",
    "Supply Chain",
    "Data and Model Poisoning",
    "Improper Output Handling",
    "Excessive Agency",
    "System Prompt Leakage",
    "Vector and Embedding Weaknesses",
    "Misinformation",
    "Unbounded Consumption",
]
OWASP_2023 = [
    "Prompt Injection",
    "Insecure Output Handling",
    "Training Data Poisoning",
    "Model Denial of Service",
    "Supply Chain Vulnerabilities",
    "Sensitive Information Disclosure",
    "Insecure Plugin Design",
    "Excessive Agency",
    "Overreliance",
    "Model Theft",
]

# Reference §2: "16 tactics, 101 techniques + 69 sub-techniques, 35 mitigations"; the §2.3 table
# has 101 technique rows carrying 69 sub-technique suffixes, the §2.4 table M0000-M0034.
ATLAS_COUNTS = {"tactic": 16, "technique": 101, "sub-technique": 69, "mitigation": 35}
# Reference §2.2, matrix order.
ATLAS_TACTICS = [
    ("AML.TA0002", "Reconnaissance"),
    ("AML.TA0003", "Resource Development"),
    ("AML.TA0004", "Initial Access"),
    ("AML.TA0000", "AI Model Access"),
    ("AML.TA0005", "Execution"),
    ("AML.TA0006", "Persistence"),
    ("AML.TA0012", "Privilege Escalation"),
    ("AML.TA0007", "Defense Evasion"),
    ("AML.TA0013", "Credential Access"),
    ("AML.TA0008", "Discovery"),
    ("AML.TA0015", "Lateral Movement"),
    ("AML.TA0009", "Collection"),
    ("AML.TA0001", "AI Attack Staging"),
    ("AML.TA0014", "Command and Control"),
    ("AML.TA0010", "Exfiltration"),
    ("AML.TA0011", "Impact"),
]
# Reference §2.1 "other high-value IDs" plus the table above it.
ATLAS_KNOWN = {
    "AML.T0051": "LLM Prompt Injection",
    "AML.T0051.000": "Direct",
    "AML.T0051.001": "Indirect",
    "AML.T0051.002": "Triggered",
    "AML.T0043.004": "Insert Backdoor Trigger",
    "AML.T0020": "Poison Training Data",
    "AML.T0024": "Exfiltration via AI Inference API",
    "AML.T0024.002": "Extract AI Model",
    "AML.T0010": "AI Supply Chain Compromise",
    "AML.T0010.005": "AI Agent Tool",
    "AML.T0054": "LLM Jailbreak",
    "AML.T0056": "Extract LLM System Prompt",
    "AML.T0057": "LLM Data Leakage",
    "AML.T0053": "AI Agent Tool Invocation",
    "AML.T0086": "Exfiltration via AI Agent Tool Invocation",
    "AML.T0077": "LLM Response Rendering",
    "AML.T0070": "RAG Poisoning",
    "AML.T0071": "False RAG Entry Injection",
    "AML.T0066": "Retrieval Content Crafting",
    "AML.T0068": "LLM Prompt Obfuscation",
    "AML.T0065": "LLM Prompt Crafting",
    "AML.T0060": "Publish Hallucinated Entities",
    "AML.T0011.000": "Unsafe AI Artifacts",
    "AML.T0018.002": "Embed Malware",
    "AML.T0058": "Publish Poisoned Models",
    "AML.T0076": "Corrupt AI Model",
    "AML.T0080.000": "Memory",
    "AML.T0080.001": "Thread",
    "AML.T0081": "Modify AI Agent Configuration",
    "AML.T0083": "Credentials from AI Agent Configuration",
    "AML.T0099": "AI Agent Tool Data Poisoning",
    "AML.T0104": "Publish Poisoned AI Agent Tool",
    "AML.T0105": "Escape to Host",
    "AML.T0109": "AI Supply Chain Rug Pull",
    "AML.T0110": "AI Agent Tool Poisoning",
    "AML.T0112.001": "AI Artifacts",
    "AML.T0029": "Denial of AI Service",
    "AML.T0034.002": "Agentic Resource Consumption",
    "AML.T0048.004": "AI Intellectual Property Theft",
    "AML.M0000": "Limit Public Release of Information",
    "AML.M0023": "AI Bill of Materials",
    "AML.M0029": "Human In-the-Loop for AI Agent Actions",
    "AML.M0034": "Deepfake Detection",
}
# Reference §2.1 alias table (old name -> id).
ATLAS_ALIASES = {
    "ML Model Access": "AML.TA0000",
    "ML Attack Staging": "AML.TA0001",
    "ML Supply Chain Compromise": "AML.T0010",
    "Exfiltration via ML Inference API": "AML.T0024",
    "Backdoor ML Model": "AML.T0018",
    "Unsafe ML Artifacts": "AML.T0011.000",
    "Evade ML Model": "AML.T0015",
    "Denial of ML Service": "AML.T0029",
    "Erode ML Model Integrity": "AML.T0031",
    "Full ML Model Access": "AML.T0044",
    "ML-Enabled Product or Service": "AML.T0047",
    "Acquire Public ML Artifacts": "AML.T0002",
    "Create Proxy ML Model": "AML.T0005",
    "Discover ML Artifacts": "AML.T0007",
    "LLM Plugin Compromise": "AML.T0053",
}
# Reference §2.1: absent from v5.6.0 (retired or never used).
ATLAS_RETIRED = [
    "AML.T0009",
    "AML.T0022",
    "AML.T0023",
    "AML.T0026",
    "AML.T0027",
    "AML.T0028",
    "AML.T0030",
    "AML.T0032",
    "AML.T0033",
    "AML.T0038",
    "AML.T0039",
    "AML.T0045",
]
# Reference §3.2 / §3.3.
NIST_AML_OBJECTIVES = ["NISTAML.01", "NISTAML.02", "NISTAML.03", "NISTAML.04", "NISTAML.05"]
NIST_AML_ATTACKS = {
    "NISTAML.011": "Model Poisoning (availability)",
    "NISTAML.012": "Clean-label Poisoning",
    "NISTAML.013": "Data Poisoning",
    "NISTAML.014": "Energy-latency",
    "NISTAML.015": "Indirect Prompt Injection",
    "NISTAML.018": "Prompt Injection (direct prompting)",
    "NISTAML.021": "Clean-label Backdoor",
    "NISTAML.022": "Evasion",
    "NISTAML.023": "Backdoor Poisoning",
    "NISTAML.024": "Targeted Poisoning",
    "NISTAML.025": "Black-box Evasion",
    "NISTAML.026": "Model Poisoning (integrity)",
    "NISTAML.027": "Misaligned Outputs",
    "NISTAML.031": "Model Extraction",
    "NISTAML.032": "Reconstruction (incl. model inversion)",
    "NISTAML.033": "Membership Inference",
    "NISTAML.034": "Property Inference",
    "NISTAML.035": "Prompt Extraction",
    "NISTAML.036": "Leaking information from user interactions",
    "NISTAML.037": "Training Data Attacks",
    "NISTAML.038": "Data Extraction",
    "NISTAML.039": "Compromising connected resources",
    "NISTAML.051": "Model Poisoning (supply chain)",
}
# Reference §4.
NIST_600_1 = {
    "2.1": "CBRN Information or Capabilities",
    "2.2": "Confabulation",
    "2.3": "Dangerous, Violent, or Hateful Content",
    "2.4": "Data Privacy",
    "2.5": "Environmental Impacts",
    "2.6": "Harmful Bias and Homogenization",
    "2.7": "Human-AI Configuration",
    "2.8": "Information Integrity",
    "2.9": "Information Security",
    "2.10": "Intellectual Property",
    "2.11": "Obscene, Degrading, and/or Abusive Content",
    "2.12": "Value Chain and Component Integration",
}
# Reference §5: 4 functions, 19 categories (6/5/4/4), 72 subcategories (19/18/22/13).
RMF_CATEGORIES = {"GOVERN": 6, "MAP": 5, "MEASURE": 4, "MANAGE": 4}
RMF_SUBCATEGORIES = {"GOVERN": 19, "MAP": 18, "MEASURE": 22, "MANAGE": 13}


@pytest.fixture(scope="module")
def tax() -> Taxonomy:
    return load_taxonomy()


def _write(directory: Path, name: str, text: str) -> None:
    (directory / name).write_text(textwrap.dedent(text), encoding="utf-8")


# ---------------------------------------------------------------------- loading


def test_every_framework_loads(tax: Taxonomy) -> None:
    assert [fw.prefix for fw in tax.frameworks()] == list(FRAMEWORKS)
    for fw in tax.frameworks():
        assert fw.name
        assert fw.version
        assert fw.source
        assert any(label in fw.source for label in ("[V", "[S", "[P"))
        assert tax.entries(fw.prefix), fw.prefix


def test_load_is_cached(tax: Taxonomy) -> None:
    assert load_taxonomy() is tax


def test_import_is_light_and_lazy() -> None:
    code = (
        "import sys\n"
        "import phalanx.core.taxonomy as t\n"
        "assert t.load_taxonomy.cache_info().currsize == 0, 'loaded at import time'\n"
        "t.load_taxonomy()\n"
        "heavy = [m for m in ('torch', 'numpy') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------------- integrity


def test_refs_unique_and_well_formed(tax: Taxonomy) -> None:
    refs = [e.ref for e in tax.entries()]
    assert len(refs) == len(set(refs))
    assert len(tax) == len(refs)
    for entry in tax.entries():
        assert entry.ref == f"{entry.framework}:{entry.id}"
        assert parse_ref(entry.ref) == (entry.framework, entry.id)
        assert ID_PATTERNS[entry.framework].fullmatch(entry.id)
        assert entry.kind in ENTRY_KINDS
        assert entry.name.strip() == entry.name
        assert entry.name


def test_ids_unique_within_each_framework(tax: Taxonomy) -> None:
    for prefix in FRAMEWORKS:
        ids = [e.id for e in tax.entries(prefix)]
        assert len(ids) == len(set(ids)), prefix


def test_parent_and_tactic_refs_resolve(tax: Taxonomy) -> None:
    for entry in tax.entries():
        if entry.parent is not None:
            assert entry.parent in tax, entry.ref
            assert tax.get(entry.parent).framework == entry.framework
        for tactic in entry.tactics:
            assert tactic in tax, (entry.ref, tactic)


def test_atlas_structure(tax: Taxonomy) -> None:
    for entry in tax.entries("atlas"):
        if entry.kind == "technique":
            assert entry.parent is None
            assert entry.tactics
            assert all(tax.get(t).kind == "tactic" for t in entry.tactics)
        elif entry.kind == "sub-technique":
            assert entry.parent is not None
            parent = tax.get(entry.parent)
            assert parent.kind == "technique"
            assert entry.id.startswith(parent.id + ".")
            assert entry.tactics == parent.tactics
        if entry.kind != "tactic":
            assert entry.url.startswith("https://atlas.mitre.org/")


# ---------------------------------------------------------------------- counts and names


def test_owasp_lists(tax: Taxonomy) -> None:
    for prefix, names in (("owasp-llm-2025", OWASP_2025), ("owasp-llm-2023", OWASP_2023)):
        entries = tax.entries(prefix)
        assert len(entries) == 10
        assert [e.id for e in entries] == [f"LLM{i:02d}" for i in range(1, 11)]
        assert [e.name for e in entries] == names
        assert {e.kind for e in entries} == {"risk"}


def test_llm06_means_different_things_per_edition(tax: Taxonomy) -> None:
    assert tax.get("owasp-llm-2023:LLM06").name == "Sensitive Information Disclosure"
    assert tax.get("owasp-llm-2025:LLM06").name == "Excessive Agency"


def test_atlas_counts(tax: Taxonomy) -> None:
    kinds = Counter(e.kind for e in tax.entries("atlas"))
    assert dict(kinds) == ATLAS_COUNTS


def test_atlas_tactics_in_matrix_order(tax: Taxonomy) -> None:
    tactics = [(e.id, e.name) for e in tax.entries("atlas") if e.kind == "tactic"]
    assert tactics == ATLAS_TACTICS


def test_atlas_mitigation_ids_contiguous(tax: Taxonomy) -> None:
    ids = [e.id for e in tax.entries("atlas") if e.kind == "mitigation"]
    assert ids == [f"AML.M{i:04d}" for i in range(35)]


@pytest.mark.parametrize(("ident", "name"), sorted(ATLAS_KNOWN.items()))
def test_atlas_known_ids(tax: Taxonomy, ident: str, name: str) -> None:
    assert tax.get(f"atlas:{ident}").name == name


def test_atlas_tactic_assignment(tax: Taxonomy) -> None:
    assert tax.get("atlas:AML.T0051").tactics == ("atlas:AML.TA0005",)
    assert tax.get("atlas:AML.T0020").tactics == ("atlas:AML.TA0003", "atlas:AML.TA0006")
    assert tax.get("atlas:AML.T0051.001").tactics == ("atlas:AML.TA0005",)
    assert tax.get("atlas:AML.T0051.001").parent == "atlas:AML.T0051"


def test_atlas_retired_ids_are_unknown(tax: Taxonomy) -> None:
    refs = [f"atlas:{i}" for i in ATLAS_RETIRED]
    assert tax.unknown(refs) == refs
    with pytest.raises(KeyError, match="retired"):
        tax.get("atlas:AML.T0009")


def test_nist_aml(tax: Taxonomy) -> None:
    entries = tax.entries("nist-aml-2025")
    objectives = [e.id for e in entries if e.kind == "category"]
    attacks = {e.id: e.name for e in entries if e.kind == "attack-class"}
    assert objectives == NIST_AML_OBJECTIVES
    assert attacks == NIST_AML_ATTACKS
    # The id's middle digit is the objective the attack was first placed under.
    for entry in entries:
        if entry.kind == "attack-class":
            assert entry.parent == f"nist-aml-2025:{entry.id[:10]}"
            assert entry.tactics
    direct = tax.get("nist-aml-2025:NISTAML.018")
    assert "nist-aml-2025:NISTAML.04" in direct.tactics  # misuse (GenAI only)


def test_nist_600_1(tax: Taxonomy) -> None:
    assert {e.id: e.name for e in tax.entries("nist-ai-600-1")} == NIST_600_1
    assert tax.get("nist-ai-600-1:2.9").name == "Information Security"


def test_nist_rmf_counts(tax: Taxonomy) -> None:
    entries = tax.entries("nist-ai-rmf-1.0")
    kinds = Counter(e.kind for e in entries)
    assert kinds == Counter({"function": 4, "category": 19, "subcategory": 72})
    for function, count in RMF_CATEGORIES.items():
        cats = [e for e in entries if e.kind == "category" and e.id.startswith(function + "-")]
        assert len(cats) == count, function
        assert all(c.parent == f"nist-ai-rmf-1.0:{function}" for c in cats)
    for function, count in RMF_SUBCATEGORIES.items():
        subs = [e for e in entries if e.kind == "subcategory" and e.id.startswith(function + "-")]
        assert len(subs) == count, function
        for sub in subs:
            assert sub.parent == f"nist-ai-rmf-1.0:{sub.id.split('.')[0]}"


def test_nist_rmf_known_subcategories(tax: Taxonomy) -> None:
    assert "Security and resilience" in tax.get("nist-ai-rmf-1.0:MEASURE-2.7").name
    assert "Privacy" in tax.get("nist-ai-rmf-1.0:MEASURE-2.10").name
    assert "inventory" in tax.get("nist-ai-rmf-1.0:GOVERN-1.6").name
    for ref in (
        "nist-ai-rmf-1.0:MAP-3.5",
        "nist-ai-rmf-1.0:MANAGE-2.4",
        "nist-ai-rmf-1.0:MEASURE-4.3",
    ):
        assert ref in tax
    assert "nist-ai-rmf-1.0:MEASURE-2.14" not in tax


# ---------------------------------------------------------------------- names and aliases


def test_by_name_current_and_old_names(tax: Taxonomy) -> None:
    entry = tax.by_name("Exfiltration via ML Inference API")
    assert entry is not None
    assert entry.ref == "atlas:AML.T0024"
    assert entry.name == "Exfiltration via AI Inference API"
    assert tax.by_name("exfiltration via ai inference api") == entry
    assert tax.by_name("  Exfiltration   via AI Inference API ") == entry


@pytest.mark.parametrize(("old", "ident"), sorted(ATLAS_ALIASES.items()))
def test_by_name_reference_aliases(tax: Taxonomy, old: str, ident: str) -> None:
    entry = tax.by_name(old)
    assert entry is not None
    assert entry.id == ident
    assert old in entry.aliases


def test_by_name_qualified_sub_technique(tax: Taxonomy) -> None:
    entry = tax.by_name("User Execution: Unsafe AI Artifacts")
    assert entry is not None
    assert entry.ref == "atlas:AML.T0011.000"
    entry = tax.by_name("Manipulate AI Model: Embed Malware")
    assert entry is not None
    assert entry.ref == "atlas:AML.T0018.002"


def test_by_name_misses_and_other_frameworks(tax: Taxonomy) -> None:
    assert tax.by_name("Definitely Not An ATLAS Technique") is None
    assert tax.by_name("Prompt Injection") is None  # an OWASP name, not an ATLAS one
    entry = tax.by_name("CBRN Information", framework="nist-ai-600-1")  # April 2024 draft name
    assert entry is not None
    assert entry.ref == "nist-ai-600-1:2.1"
    with pytest.raises(KeyError):
        tax.by_name("Prompt Injection", framework="owasp-llm-2099")


# ---------------------------------------------------------------------- crosswalk


def test_crosswalk_2023_to_2025(tax: Taxonomy) -> None:
    assert tax.crosswalk("owasp-llm-2023:LLM06") == ["owasp-llm-2025:LLM02"]
    assert tax.crosswalk("owasp-llm-2023:LLM01") == ["owasp-llm-2025:LLM01"]
    assert tax.crosswalk("owasp-llm-2023:LLM02") == ["owasp-llm-2025:LLM05"]
    assert tax.crosswalk("owasp-llm-2023:LLM04") == ["owasp-llm-2025:LLM10"]
    assert tax.crosswalk("owasp-llm-2023:LLM07") == ["owasp-llm-2025:LLM06", "owasp-llm-2025:LLM05"]


def test_crosswalk_covers_every_2023_risk(tax: Taxonomy) -> None:
    for entry in tax.entries("owasp-llm-2023"):
        targets = tax.crosswalk(entry.ref)
        assert targets, entry.ref
        assert all(t.startswith("owasp-llm-2025:") and t in tax for t in targets)
    # 2025 LLM07 and LLM08 are new: nothing maps to them.
    reached = {t for e in tax.entries("owasp-llm-2023") for t in tax.crosswalk(e.ref)}
    assert "owasp-llm-2025:LLM07" not in reached
    assert "owasp-llm-2025:LLM08" not in reached


def test_crosswalk_identity_and_other_frameworks(tax: Taxonomy) -> None:
    assert tax.crosswalk("owasp-llm-2025:LLM06") == ["owasp-llm-2025:LLM06"]
    assert tax.crosswalk("atlas:AML.T0051") == []
    with pytest.raises(KeyError):
        tax.crosswalk("owasp-llm-2023:LLM11")


# ---------------------------------------------------------------------- lookup errors


def test_unknown_reports_made_up_refs(tax: Taxonomy) -> None:
    refs = [
        "owasp-llm-2025:LLM01",
        "atlas:AML.T0009",
        "owasp-llm-2025:LLM11",
        "atlas:AML.T0051.001",
        "owasp-llm-2025:LLM11",
        "not a ref",
        "mlc-hazard:S14",
    ]
    assert tax.unknown(refs) == [
        "atlas:AML.T0009",
        "owasp-llm-2025:LLM11",
        "not a ref",
        "mlc-hazard:S14",
    ]
    assert tax.unknown([]) == []
    assert tax.unknown("owasp-llm-2025:LLM11") == ["owasp-llm-2025:LLM11"]


def test_get_unknown_names_close_matches(tax: Taxonomy) -> None:
    with pytest.raises(KeyError, match="owasp-llm-2025:LLM1"):
        tax.get("owasp-llm-2025:LLM11")
    with pytest.raises(KeyError, match="did you mean 'owasp-llm-2025'"):
        tax.get("owsap-llm-2025:LLM01")


def test_find_and_contains(tax: Taxonomy) -> None:
    found = tax.find("nist-aml-2025:NISTAML.015")
    assert isinstance(found, TaxonomyEntry)
    assert found.name == "Indirect Prompt Injection"
    assert tax.find("nist-aml-2025:NISTAML.016") is None
    assert tax.find("garbage") is None
    assert "atlas:AML.T0051.001" in tax
    assert "garbage" not in tax
    assert 42 not in tax


@pytest.mark.parametrize(
    "ref",
    [
        "LLM01",
        "",
        ":LLM01",
        "owasp-llm-2025:",
        "owasp-llm-2025:llm01",
        "owasp-llm-2025:LLM01:2025",
        "OWASP-LLM-2025:LLM01",
        "atlas:T0051",
        "atlas:AML.T51",
        "atlas:AML.T0051.1",
        "nist-aml-2025:NISTAML15",
        "nist-ai-600-1:2",
        "nist-ai-rmf-1.0:MEASURE 2.7",
        "nist-ai-rmf-1.0:measure-2.7",
        "atlas: AML.T0051",
    ],
)
def test_malformed_refs_raise_value_error(tax: Taxonomy, ref: str) -> None:
    with pytest.raises(ValueError, match="expected 'framework:id'"):
        parse_ref(ref)
    with pytest.raises(ValueError, match="expected 'framework:id'"):
        tax.get(ref)


def test_parse_and_make_ref() -> None:
    assert parse_ref("atlas:AML.T0051.001") == ("atlas", "AML.T0051.001")
    assert parse_ref("nist-ai-rmf-1.0:MEASURE-2.7") == ("nist-ai-rmf-1.0", "MEASURE-2.7")
    assert parse_ref("nist-ai-600-1:2.10") == ("nist-ai-600-1", "2.10")
    # Frameworks without a pattern accept any id (e.g. importer tags).
    assert parse_ref("avid-effect:security:S0403") == ("avid-effect", "security:S0403")
    assert make_ref("owasp-llm-2025", "LLM01") == "owasp-llm-2025:LLM01"
    with pytest.raises(ValueError, match="expected 'framework:id'"):
        make_ref("atlas", "T0051")


# ---------------------------------------------------------------------- reporting helpers


def test_labels(tax: Taxonomy) -> None:
    assert tax.label("owasp-llm-2025:LLM01") == "OWASP LLM 2025 LLM01: Prompt Injection"
    assert (
        tax.label("owasp-llm-2023:LLM06")
        == "OWASP LLM 2023 LLM06: Sensitive Information Disclosure"
    )
    assert (
        tax.label("atlas:AML.T0051.001")
        == "MITRE ATLAS AML.T0051.001: LLM Prompt Injection: Indirect"
    )
    assert tax.label("nist-ai-600-1:2.9") == "NIST AI 600-1 §2.9: Information Security"
    assert tax.label("nist-ai-rmf-1.0:MEASURE-2.7").startswith("NIST AI RMF 1.0 MEASURE 2.7: ")
    assert tax.label("nist-aml-2025:NISTAML.015") == (
        "NIST AI 100-2 E2025 NISTAML.015: Indirect Prompt Injection"
    )
    assert tax.label("atlas:AML.T0009") == "atlas:AML.T0009"


def test_group_key(tax: Taxonomy) -> None:
    assert tax.group_key("atlas:AML.T0051.001", "atlas") == "atlas:AML.T0051"
    assert tax.group_key("atlas:AML.T0051", "atlas") == "atlas:AML.T0051"
    assert tax.group_key("owasp-llm-2023:LLM06", "owasp-llm-2025") == "owasp-llm-2025:LLM02"
    assert tax.group_key("owasp-llm-2025:LLM02", "owasp-llm-2025") == "owasp-llm-2025:LLM02"
    assert tax.group_key("atlas:AML.T0051", "owasp-llm-2025") is None
    assert tax.group_key("nist-ai-rmf-1.0:MEASURE-2.7", "nist-ai-rmf-1.0") == (
        "nist-ai-rmf-1.0:MEASURE-2.7"
    )
    assert tax.group_key("atlas:AML.T0009", "atlas") is None
    with pytest.raises(KeyError):
        tax.group_key("atlas:AML.T0051", "no-such-framework")


def test_entries_unknown_framework(tax: Taxonomy) -> None:
    with pytest.raises(KeyError, match="did you mean"):
        tax.entries("atlass")


# ---------------------------------------------------------------------- validation of data files

_GOOD = """\
    framework: owasp-llm-2025
    name: Test list
    version: "2025"
    source: test [P]
    entries:
      - {id: LLM01, name: One, kind: risk}
      - {id: LLM02, name: Two, kind: risk}
    """


def test_from_directory_minimal(tmp_path: Path) -> None:
    _write(tmp_path, "owasp-llm-2025.yaml", _GOOD)
    tax = Taxonomy.from_directory(tmp_path)
    assert [e.ref for e in tax.entries()] == ["owasp-llm-2025:LLM01", "owasp-llm-2025:LLM02"]
    assert tax.frameworks()[0].version == "2025"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_GOOD.replace("LLM02, name: Two", "LLM01, name: Two"), "duplicate"),
        (_GOOD.replace("kind: risk}\n      - {id: LLM02", "kind: risk}\n      - {id: L2"), "LLM01"),
        (_GOOD.replace("name: Two, kind: risk", "name: Two, kind: risk, parent: LLM09"), "parent"),
        (_GOOD.replace("name: Two, kind: risk", "name: Two, kind: rsik"), "unknown kind"),
        (
            _GOOD.replace("name: Two, kind: risk", "name: Two, kind: risk, colour: red"),
            "unexpected",
        ),
        (
            _GOOD.replace("name: Two, kind: risk", "name: Two, kind: risk, tactics: [LLM07]"),
            "tactic",
        ),
        (_GOOD.replace("    source: test [P]\n", ""), "source"),
        ("- just a list\n", "mapping"),
        ("framework: [unclosed\n", "invalid YAML"),
    ],
)
def test_from_directory_rejects_bad_data(tmp_path: Path, body: str, message: str) -> None:
    _write(tmp_path, "owasp-llm-2025.yaml", body)
    with pytest.raises(ValueError, match=message):
        Taxonomy.from_directory(tmp_path)


def test_from_directory_rejects_numeric_ids(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "nist-ai-600-1.yaml",
        """\
        framework: nist-ai-600-1
        name: Test
        version: "1"
        source: test [P]
        entries:
          - {id: 2.10, name: Ten, kind: risk}
        """,
    )
    with pytest.raises(ValueError, match="quote"):
        Taxonomy.from_directory(tmp_path)


def test_from_directory_rejects_bad_crosswalk(tmp_path: Path) -> None:
    _write(tmp_path, "owasp-llm-2025.yaml", _GOOD)
    _write(
        tmp_path,
        "owasp-llm-2023.yaml",
        _GOOD.replace("owasp-llm-2025", "owasp-llm-2023").replace('"2025"', '"1.1"'),
    )
    _write(
        tmp_path,
        "crosswalk.yaml",
        """\
        from: owasp-llm-2023
        to: owasp-llm-2025
        source: test [P]
        mappings:
          - {from: LLM01, to: [LLM01]}
          - {from: LLM02, to: [LLM07]}
        """,
    )
    with pytest.raises(ValueError, match="crosswalk target"):
        Taxonomy.from_directory(tmp_path)

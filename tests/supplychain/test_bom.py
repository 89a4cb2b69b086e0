"""ML-BOM: schema-valid CycloneDX 1.6 (JSON and XML), file hashes and formats, the model card,
frameworks, and the scan verdict."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("cyclonedx")

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from phalanx.core.taxonomy import load_taxonomy
from phalanx.errors import InputError
from phalanx.supplychain.bom import build_ml_bom, read_model_card

README = """---
license: apache-2.0
datasets:
  - imdb
  - stanfordnlp/sst2
base_model: distilbert/distilbert-base-uncased
language:
  - en
  - fr
tags: [sentiment, text-classification]
pipeline_tag: text-classification
library_name: transformers
---
# tiny-sentiment

A model card body that is not YAML: {{ not: [parsed
"""


class _Exec:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("echo pwned",))


def _safetensors() -> bytes:
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    return struct.pack("<Q", len(header)) + header + b"\x00" * 4


def _torch_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"layer.weight": 1}, protocol=2))
        zf.writestr("archive/version", "3\n")
    return buffer.getvalue()


@pytest.fixture
def hf_model(tmp_path: Path) -> Path:
    root = tmp_path / "tiny-sentiment"
    (root / "onnx").mkdir(parents=True)
    (root / "README.md").write_text(README)
    (root / "config.json").write_text(json.dumps({
        "transformers_version": "4.37.2", "model_type": "distilbert",
        "architectures": ["DistilBertForSequenceClassification"]}))
    (root / "model.safetensors").write_bytes(_safetensors())
    (root / "pytorch_model.bin").write_bytes(_torch_zip())
    (root / "onnx" / "notes.txt").write_text("exported later")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    return root


def _validate_json(text: str) -> dict[str, Any]:
    errors = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    assert errors is None, errors
    return json.loads(text)


def _props(component: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for prop in component.get("properties", []):
        out.setdefault(prop["name"], []).append(prop["value"])
    return out


def test_json_bom_is_schema_valid_and_complete(hf_model: Path) -> None:
    bom = build_ml_bom(hf_model)
    doc = _validate_json(bom.to_json())
    assert doc["bomFormat"] == "CycloneDX" and doc["specVersion"] == "1.6"
    model = doc["metadata"]["component"]
    assert model["type"] == "machine-learning-model" and model["name"] == "tiny-sentiment"
    assert model["licenses"] == [{"license": {"id": "Apache-2.0"}}]
    assert model["tags"] == ["sentiment", "text-classification"]
    assert model["modelCard"]["modelParameters"] == {
        "task": "text-classification", "architectureFamily": "distilbert",
        "modelArchitecture": "DistilBertForSequenceClassification",
        "datasets": [{"ref": "data:imdb"}, {"ref": "data:stanfordnlp/sst2"}],
    }
    (base,) = model["pedigree"]["ancestors"]
    assert base["purl"] == "pkg:huggingface/distilbert/distilbert-base-uncased"
    props = _props(model)
    assert props["phalanx:language"] == ["en", "fr"]
    assert props["phalanx:scan:verdict"] == ["pass"]

    components = {c["bom-ref"]: c for c in doc["components"]}
    files = {ref[5:]: c for ref, c in components.items() if ref.startswith("file:")}
    assert set(files) == {"README.md", "config.json", "model.safetensors",
                          "pytorch_model.bin", "onnx/notes.txt"}  # no .git internals
    for rel, component in files.items():
        digest = hashlib.sha256((hf_model / rel).read_bytes()).hexdigest()
        assert component["hashes"] == [{"alg": "SHA-256", "content": digest}]
    assert _props(files["model.safetensors"])["phalanx:format"] == ["safetensors"]
    assert _props(files["pytorch_model.bin"])["phalanx:format"] == ["pytorch-zip"]
    assert components["data:imdb"]["type"] == "data"
    libraries = {c["name"]: c for c in components.values() if c["type"] == "library"}
    assert libraries["transformers"]["purl"] == "pkg:pypi/transformers@4.37.2"
    assert {"torch", "safetensors"} <= set(libraries)
    depends = {d["ref"]: d.get("dependsOn", []) for d in doc["dependencies"]}
    assert set(depends["model"]) == {c["bom-ref"] for c in libraries.values()}


def test_xml_bom_is_schema_valid(hf_model: Path) -> None:
    pytest.importorskip("lxml")
    from cyclonedx.validation.xml import XmlValidator

    text = build_ml_bom(hf_model).render("xml")
    assert XmlValidator(SchemaVersion.V1_6).validate_str(text) is None
    assert "<modelCard>" in text and "<task>text-classification</task>" in text


def test_scan_verdict_and_findings_as_vulnerabilities(hf_model: Path) -> None:
    (hf_model / "optimizer.pt").write_bytes(pickle.dumps(_Exec()))
    bom = build_ml_bom(hf_model)
    assert bom.max_severity() is not None
    doc = _validate_json(bom.to_json())
    props = _props(doc["metadata"]["component"])
    assert props["phalanx:scan:verdict"] == ["fail"]
    assert props["phalanx:scan:max-severity"] == [bom.max_severity().label]
    assert int(props["phalanx:scan:findings"][0]) == len(bom.findings()) >= 1
    vulns = doc["vulnerabilities"]
    assert any(v["affects"] == [{"ref": "file:optimizer.pt"}] for v in vulns)
    worst = next(v for v in vulns if v["affects"] == [{"ref": "file:optimizer.pt"}])
    assert worst["ratings"][0]["severity"] in ("critical", "high")
    assert worst["recommendation"]
    refs = [p["value"] for p in worst["properties"] if p["name"] == "phalanx:taxonomy"]
    assert refs and load_taxonomy().unknown(refs) == []


def test_model_card_edge_cases(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("# no front matter\n")
    assert read_model_card(tmp_path) == (read_model_card(tmp_path / "nowhere")[0], [])
    (tmp_path / "README.md").write_text("---\nlicense: [unclosed\n---\n")
    card, notes = read_model_card(tmp_path)
    assert card.license == () and "not valid YAML" in notes[0]
    (tmp_path / "README.md").write_text(
        "---\nlicense: other\nlicense_name: tiny-model-license\nlicense_link: "
        "https://example.org/LICENSE\ndatasets: {nested: true}\ntags: [1, true, x, x]\n"
        "pipeline_tag: [summarization]\n---\n")
    card, notes = read_model_card(tmp_path)
    assert card.license == ("tiny-model-license",) and card.datasets == ()
    assert card.tags == ("1", "x") and card.pipeline_tag == "summarization" and notes == []
    doc = _validate_json(build_ml_bom(tmp_path).to_json())
    model = doc["metadata"]["component"]
    assert model["licenses"] == [{"license": {"name": "tiny-model-license"}}]
    assert model["externalReferences"][0]["url"] == "https://example.org/LICENSE"


def test_plain_directory_and_single_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    doc = _validate_json(build_ml_bom(empty).to_json())
    assert "modelCard" not in doc["metadata"]["component"]
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(_safetensors())
    bom = build_ml_bom(weights, name="weights-only", version="1.0")
    doc = _validate_json(bom.to_json())
    assert doc["metadata"]["component"]["name"] == "weights-only"
    assert doc["metadata"]["component"]["version"] == "1.0"
    assert [c["name"] for c in doc["components"] if c["type"] == "file"] == [
        "model.safetensors"]
    with pytest.raises(InputError, match="no such model"):
        build_ml_bom(tmp_path / "missing")
    with pytest.raises(InputError, match="unknown BOM format"):
        bom.render("spdx")


def test_unreadable_config_is_a_note(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    bom = build_ml_bom(tmp_path)
    assert any("config.json" in note for note in bom.notes)
    _validate_json(bom.to_json())

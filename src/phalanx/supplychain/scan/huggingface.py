"""The Hugging Face repository scanner: custom code a model runs, and shard paths it reads.

A model repository is more than its weight files. ``transformers`` and
sentence-transformers read JSON files beside them, and some of their fields make loading reach
beyond the weights:

- **``auto_map``** (``config.json``, ``tokenizer_config.json``, processor configs) and
  ``custom_pipelines`` name classes in Python modules. Loaded with ``trust_remote_code=True``,
  ``transformers`` imports those modules, so whatever they contain runs on the loading
  machine: code the weights' scanners never judge. A reference such as
  ``"other-org/repo--modeling_x.Model"`` fetches the module from *another* repository, which a
  scan of this one never saw (HIGH); a module of this repository is MEDIUM, which fails the
  scan at the default threshold, as any import the pickle allowlist does not know does. A
  module path that leaves the directory is HIGH.
- **``model_index.json``** (diffusers) names the pipeline class and each component's
  library and class. A ``_class_name`` of ``[module, class]`` is a pipeline in the
  repository's ``module.py``; a component from a library other than diffusers' own is code in
  ``<component>/<library>.py``. With ``trust_remote_code=True`` diffusers runs either: MEDIUM.
- **``modules.json``** (sentence-transformers) lists the class of each module by a dotted
  ``type``, which is imported and its ``load`` called. One outside ``sentence_transformers``
  is code from the repository or an installed package (``trust_remote_code=True``; before
  sentence-transformers 6.0 a local directory did not need it): MEDIUM. A type that is not a
  class (a module such as ``torch`` or ``pickle`` reached through an attribute), or that the
  pickle policy denies, is never what the library writes: HIGH.
- **``chat_template``** (``tokenizer_config.json``, ``chat_template.json``, and the
  ``chat_template.jinja`` and ``additional_chat_templates/*.jinja`` files transformers 4.52+
  saves, found by those names as transformers finds them): the Jinja2 templates a server
  renders for every request, checked for template injection as GGUF
  templates are (:func:`~phalanx.supplychain.scan.gguf.analyse_chat_template`).
  ``transformers`` renders them in Jinja2's sandbox, which blocks the plain constructs;
  sandbox escapes have been found (CVE-2024-56326, CVE-2025-27516), and other servers render
  the same templates. No legitimate template needs them.
- **``weight_map``** (``model.safetensors.index.json``, ``pytorch_model.bin.index.json``) names
  the shard file of each tensor, which the loader joins to the model directory and opens. A
  shard that is absolute, climbs out with ``..`` or resolves outside through a link reads a
  file the repository does not hold (HIGH), like ONNX external data (CVE-2022-25882).

The JSON files are found by content (a JSON object with those fields), not by name; the
template files by the names transformers reads. Nothing is imported, run or rendered.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from phalanx.core.findings import Finding, Severity
from phalanx.supplychain.scan.base import (
    BUNDLED_FORMATS,
    FileScanner,
    ScanSession,
    Source,
    Tally,
    side_file_problem,
)
from phalanx.supplychain.scan.pickle_vm import REFS

__all__ = ["HuggingFaceScanner", "chat_templates", "code_references", "diffusers_references",
           "module_types"]

_TRANSFORMERS = "https://huggingface.co/docs/transformers/custom_models"


class HuggingFaceScanner(FileScanner):
    """Hugging Face repository files: custom code (``auto_map``, diffusers pipelines and
    components, sentence-transformers module types), chat templates and ``weight_map`` shards.

    Threat model: an attacker who publishes a model repository and a victim who loads it with
    ``transformers``, diffusers or sentence-transformers (``from_pretrained``), with or
    without ``trust_remote_code=True``, or serves it. The scan reads the JSON; it never
    imports the modules it names and never renders a template.

    Example:
        >>> from phalanx.supplychain.scan.huggingface import HuggingFaceScanner
        >>> findings = list(HuggingFaceScanner().scan("config.json"))  # doctest: +SKIP
    """

    name = "huggingface"
    title = "Hugging Face repository files"
    paper = ("Hugging Face, Building custom models (trust_remote_code), " + _TRANSFORMERS)
    refs = REFS
    formats: ClassVar[tuple[str, ...]] = BUNDLED_FORMATS["huggingface"]

    def scan_source(self, source: Source, session: ScanSession) -> Iterator[Finding]:
        """Judge the code references, chat templates and shard paths of one JSON file, or the
        chat template of a ``.jinja`` file transformers reads (any other text passes)."""
        if _is_template_file(source.name):
            yield from self._template_file(source, session)
            return
        if session.format_of(source) != "json":
            return
        limit = session.limits.max_header_bytes
        if source.size > limit:
            if _may_name_code_or_shards(source):
                yield session.finding(
                    source, "json-too-large", Severity.MEDIUM,
                    "JSON file larger than the scan reads names custom code or shards",
                    f"The file holds {source.size} bytes and mentions a field this scan judges "
                    "(auto_map, weight_map, custom_pipelines, a diffusers pipeline, a chat "
                    "template or a module type), or escapes letters that could spell one; the "
                    f"scan parses JSON files up to {limit} bytes, so it was not checked.",
                    scanner=self.plugin_id(), fmt="json",
                    evidence={"bytes": source.size, "incomplete": True})
            return
        with source.open() as fh:
            raw = fh.read(limit + 1)
        if not _may_spell_a_key(raw) and not _may_list_modules(raw):
            return  # cannot hold the fields: most JSON files a repository holds
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError):
            return  # not JSON a loader would read either; JSON is not a model format
        model_dir = source.path.parent if source.path is not None else None
        hits = Tally()
        if isinstance(doc, list):
            for where, reference in module_types(doc):
                _module_type(where, reference, model_dir, session, hits)
        elif isinstance(doc, dict):
            _shards(doc.get("weight_map"), model_dir, hits)
            for where, reference in code_references(doc):
                _code(where, reference, model_dir, hits)
            for where, reference, component in diffusers_references(doc):
                _code(where, reference, model_dir, hits, loader="diffusers",
                      only_if_present=component)
            for where, template in chat_templates(doc):
                _template(where, template, hits)
        yield from hits.findings(session, source, scanner=self.plugin_id(), fmt="json",
                                 locations_key="where")

    def _template_file(self, source: Source, session: ScanSession) -> Iterator[Finding]:
        from phalanx.supplychain.scan.gguf import MAX_TEMPLATE_CHARS

        hits = Tally()
        where = PurePosixPath(source.name.replace("\\", "/")).name
        if source.size > 4 * MAX_TEMPLATE_CHARS:  # 4 bytes a character at most
            hits.add(("template", "chat-template-too-large"), where, "chat-template-too-large",
                     Severity.MEDIUM, *_template_rule("chat-template-too-large"),
                     {"template_key": where, "bytes": source.size, "incomplete": True})
        else:
            with source.open() as fh:
                text = fh.read(4 * MAX_TEMPLATE_CHARS).decode("utf-8", errors="replace")
            _template(where, text, hits)
        yield from hits.findings(session, source, scanner=self.plugin_id(), fmt="text",
                                 locations_key="where")


#: Where transformers (4.52 and later) saves chat templates: ``chat_template.jinja`` beside the
#: tokenizer or processor files, and further named templates in ``additional_chat_templates``.
_TEMPLATE_FILE = "chat_template.jinja"
_TEMPLATE_DIR = "additional_chat_templates"


def _is_template_file(name: str) -> bool:
    """Whether a source is a chat-template file by the name transformers looks it up by (the
    loader finds templates by name, so the scan does too); a member's own name counts."""
    path = PurePosixPath(name.rpartition("!")[2].replace("\\", "/"))
    return path.name == _TEMPLATE_FILE or (path.parent.name == _TEMPLATE_DIR
                                           and path.suffix == ".jinja")


#: The fields this scanner judges, as they appear in a file that spells them plainly.
_KEYS = (b'"auto_map"', b'"weight_map"', b'"custom_pipelines"', b'"_diffusers_version"',
         b'"chat_template"')
#: A JSON escape that decodes to a character the keys are made of (``_`` and ``a``-``z``,
#: U+005F to U+007A): a key spelt with escapes (``"\u0061uto_map"``) holds one. Escapes of
#: other characters (``\u0120``, ``\n``, ``\\``) cannot spell a key, and a tokenizer file
#: is full of them.
_KEY_ESCAPE = re.compile(rb"\\u00(?:5[fF]|6[0-9a-fA-F]|7[0-9aA])")
_CHUNK = 1 << 20


def _may_spell_a_key(data: bytes) -> bool:
    """Whether ``data`` can hold one of the fields: it spells one plainly, or has an escape
    that could be part of one spelt otherwise."""
    return any(key in data for key in _KEYS) or _KEY_ESCAPE.search(data) is not None


def _may_list_modules(data: bytes) -> bool:
    """Whether ``data`` can be a ``modules.json``: a JSON list that spells ``"type"``, or has
    an escape that could spell it."""
    return (data.lstrip(b" \t\r\n").startswith(b"[")
            and (b'"type"' in data or _KEY_ESCAPE.search(data) is not None))


def _may_name_code_or_shards(source: Source) -> bool:
    """Whether a file too large to parse could hold one of the fields, or be a
    ``modules.json`` (read in chunks that overlap by a key's length)."""
    overlap = max(len(k) for k in _KEYS)
    tail = b""
    listing: bool | None = None  # whether the document is a list, once its start is seen
    with source.open() as fh:
        while chunk := fh.read(_CHUNK):
            window = tail + chunk
            if listing is None and window.strip(b" \t\r\n"):
                listing = window.lstrip(b" \t\r\n").startswith(b"[")
            if _may_spell_a_key(window) or (listing and b'"type"' in window):
                return True
            tail = window[-overlap:]
    return False


def code_references(doc: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """``(field, reference)`` for every class a config names in Python code: the values of
    ``auto_map`` (a string, or a list of them with ``None`` for a missing slow or fast
    tokenizer) and the ``impl`` of each ``custom_pipelines`` entry."""
    auto_map = doc.get("auto_map")
    if isinstance(auto_map, dict):
        for key, value in auto_map.items():
            values = value if isinstance(value, list) else [value]
            for item in values:
                if isinstance(item, str) and item:
                    yield f"auto_map.{key}", item
    pipelines = doc.get("custom_pipelines")
    if isinstance(pipelines, dict):
        for task, entry in pipelines.items():
            impl = entry.get("impl") if isinstance(entry, dict) else None
            if isinstance(impl, str) and impl:
                yield f"custom_pipelines.{task}.impl", impl


#: The libraries diffusers imports components from by name; any other library a
#: ``model_index.json`` names is a module of the repository (or one already imported).
_DIFFUSERS_LIBRARIES = frozenset({"diffusers", "transformers", "onnxruntime.training"})


def diffusers_references(doc: dict[str, Any]) -> Iterator[tuple[str, str, bool]]:
    """``(field, reference, component)`` for the custom code a diffusers ``model_index.json``
    names: a ``_class_name`` of ``[module, class]`` (a pipeline in ``module.py``), and each
    component ``[library, class]`` outside diffusers' own libraries, whose code diffusers
    loads from ``<component>/<library>.py`` when that file exists (``component`` is true)."""
    if "_diffusers_version" not in doc:
        return
    pipeline = doc.get("_class_name")
    if (isinstance(pipeline, list) and len(pipeline) == 2
            and all(isinstance(p, str) and p for p in pipeline)):
        yield "_class_name", f"{pipeline[0]}.{pipeline[1]}", False
    for name, value in doc.items():
        if (name.startswith("_") or not isinstance(value, list) or len(value) != 2
                or not all(isinstance(v, str) and v for v in value)):
            continue
        library, cls = value
        if library not in _DIFFUSERS_LIBRARIES:
            yield name, f"{name}/{library}.{cls}", True


def module_types(doc: list[Any]) -> Iterator[tuple[str, str]]:
    """``(field, type)`` for every module of a sentence-transformers ``modules.json``."""
    for i, entry in enumerate(doc):
        kind = entry.get("type") if isinstance(entry, dict) else None
        if isinstance(kind, str) and kind:
            yield f"modules[{i}].type", kind


_ST_NAMESPACE = "sentence_transformers."
#: A class name as sentence-transformers' own module types end (``Transformer``, ``Pooling``).
_CLASS_NAME = re.compile(r"_?[A-Z][A-Za-z0-9]*")


def _module_type(where: str, reference: str, model_dir: Path | None, session: ScanSession,
                 hits: Tally) -> None:
    module, _, name = reference.rpartition(".")
    evidence = {"reference": reference[:300], "module": module[:200]}
    rule = session.policy.denial(module, name)
    if rule is not None or not _CLASS_NAME.fullmatch(name):
        why = (f"the pickle policy's {rule.id} rule names it: it {rule.reason}" if rule
               else f"{name!r} is not a class but a module or function attribute, so the "
                    "call reaches whatever that object's load does (torch.load, pickle.load)")
        hits.add(("st-anomalous", reference), where, "hf-module-type-dangerous", Severity.HIGH,
                 f"Sentence-transformers module type {reference[:80]!r} is not a module class",
                 f"{where} names {reference[:200]!r}; sentence-transformers imports it and calls "
                 f"its load() with the module's path, and {why}. sentence-transformers only "
                 "writes its own classes and a repository's custom classes here."
                 + (" A type under sentence_transformers. is imported without "
                    "trust_remote_code." if reference.startswith(_ST_NAMESPACE) else ""),
                 {**evidence, **({"deny_rule": rule.id} if rule is not None else {})})
        return
    if reference.startswith(_ST_NAMESPACE):
        return  # the library's own module classes
    first = module.partition(".")[0]
    present = None if model_dir is None or not first else side_file_problem(
        f"{first}.py", model_dir) is None
    where_it_is = {True: " The module is in the repository.",
                   False: " No such module is in the repository: an installed package of "
                          "that name is imported instead, or the code is fetched.", None: ""}
    hits.add(("st-module", reference), where, "hf-remote-code", Severity.MEDIUM,
             f"Custom sentence-transformers module: {reference[:80]}",
             f"{where} names {reference[:200]!r}, a class outside sentence-transformers, which "
             "it imports and calls .load() on when the model is loaded with "
             "trust_remote_code=True (before sentence-transformers 6.0, a local directory did "
             f"not need it). The scan does not judge that code.{where_it_is[present]}",
             {**evidence, "file_present": present})


def _code(where: str, reference: str, model_dir: Path | None, hits: Tally, *,
          loader: str = "transformers", only_if_present: bool = False) -> None:
    """Judge one code reference. ``only_if_present``: the loader runs the module only when its
    file is in the repository (diffusers' components), so report nothing otherwise."""
    # transformers: "[repo--]module.Class"; the module is a .py file of the repository.
    repo, _, local = reference.rpartition("--")
    module = local.rpartition(".")[0] or local
    evidence = {"reference": reference[:300], "module": module[:200]}
    if repo:
        hits.add(("other-repo", repo, module), where, "hf-remote-code-other-repo", Severity.HIGH,
                 f"Custom code from another repository ({repo[:80]})",
                 f"{where} names {reference[:200]!r}: with trust_remote_code=True, {loader} "
                 f"downloads {module}.py from the repository {repo!r} and runs it. That code is "
                 "not in the scanned files, and its owner can change it at any time.",
                 {**evidence, "repository": repo[:200]})
        return
    problem = side_file_problem(f"{module}.py", model_dir)
    if problem not in (None, "missing"):
        hits.add(("module-path", module), where, "hf-remote-code-path", Severity.HIGH,
                 f"Custom-code module {module[:80]!r} {problem}",
                 f"{where} names {reference[:200]!r}: {loader} opens the module's file by "
                 "joining its name to the model directory, so a path that leaves it imports "
                 "Python from elsewhere on the loading machine.", evidence)
        return
    # Whether the module is beside the config; unknown for a member of an archive.
    present = None if model_dir is None else problem is None
    if only_if_present and not present:
        return
    where_it_is = {True: " It is in the repository.",
                   False: " It is not beside this file, so it was not scanned.", None: ""}
    hits.add(("module", module), where, "hf-remote-code", Severity.MEDIUM,
             f"Custom code run with trust_remote_code: {module[:80]}.py",
             f"{where} names {reference[:200]!r}: loaded with trust_remote_code=True, "
             f"{loader} imports {module}.py and runs it. The scan does not judge Python "
             f"code; read the module before trusting it.{where_it_is[present]}",
             {**evidence, "file_present": present})


def chat_templates(doc: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """``(field, template)`` for each chat template: ``chat_template`` as a string, or as the
    list of ``{"name", "template"}`` that tokenizers with several templates save."""
    value = doc.get("chat_template")
    if isinstance(value, str):
        yield "chat_template", value
    elif isinstance(value, list):
        for i, entry in enumerate(value):
            template = entry.get("template") if isinstance(entry, dict) else None
            if isinstance(template, str):
                name = entry.get("name")
                yield f"chat_template[{name if isinstance(name, str) else i}]", template


def _template(where: str, template: str, hits: Tally) -> None:
    # The GGUF module holds the template analysis; imported only when a template is met.
    from phalanx.supplychain.scan.gguf import analyse_chat_template

    for issue in analyse_chat_template(template):
        hits.add(("template", issue.rule), f"{where}, line {issue.line}: {issue.message}",
                 issue.rule, issue.severity, *_template_rule(issue.rule),
                 {"template_key": where})


def _template_rule(rule: str) -> tuple[str, str]:
    from phalanx.supplychain.scan.gguf import template_rule

    title, detail = template_rule(rule)
    return title, (detail + " transformers renders chat templates in Jinja2's sandbox, which "
                   "blocks the plain forms; sandbox escapes exist (CVE-2024-56326, "
                   "CVE-2025-27516), and other servers render the same template.")



def _shards(weight_map: Any, model_dir: Path | None, hits: Tally) -> None:
    if not isinstance(weight_map, dict):
        return
    for tensor, shard in weight_map.items():
        if not isinstance(shard, str):
            continue
        problem = side_file_problem(shard, model_dir)
        if problem is None or problem == "missing":
            continue  # a missing shard fails the load; it reads nothing else
        hits.add(("shard", shard), f"weight_map[{str(tensor)[:100]!r}]",
                 "hf-shard-path-traversal", Severity.HIGH,
                 f"Weight shard {shard[:80]!r} {problem}",
                 "The loader joins each shard name to the model directory and opens it, so a "
                 "shard outside the directory reads a file the repository does not hold (a "
                 "local file, or an attacker's checkpoint placed elsewhere) as model weights.",
                 {"shard": shard[:300]})

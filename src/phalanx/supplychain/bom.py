"""ML-BOM: a CycloneDX 1.6 bill of materials for a model directory.

An inventory a consumer can check a model against before loading it: what files it is made
of (each with its SHA-256 and its format, sniffed from the bytes), what it says about itself
(the Hugging Face model card's license, datasets, base model, task, languages and tags), what
it needs to run (framework libraries, with versions where the files record them), and what
a static scan found in it.

Where things go (chosen for what CycloneDX tools display):

* the model is ``metadata.component``, of type ``machine-learning-model``: the BOM's
  subject. Its ``modelCard`` carries the task (``pipeline_tag``), the architecture (from
  ``config.json``) and references to the datasets; the license becomes ``licenses``, the
  tags ``tags``, the base models ``pedigree.ancestors`` (what the model is derived from),
  the languages and library name ``properties``.
* every file is a ``file`` component with its SHA-256 hash and a ``phalanx:format``
  property; every dataset is a ``data`` component; every framework a ``library`` component
  with a ``pkg:pypi`` purl, which the model ``dependsOn``.
* the scan verdict is both a summary on the model (properties ``phalanx:scan:verdict``,
  ``phalanx:scan:max-severity``, ``phalanx:scan:findings``), which a policy can test
  without knowing phalanx, and one entry per finding (LOW and above) in ``vulnerabilities``,
  rated, pointing at the file it concerns, with the remediation: the section that SBOM
  viewers and vulnerability tools list and filter by severity.

cyclonedx-python-lib has no model-card class yet, so the model card is added to the
serialised document (JSON or XML) after the library writes it.

Nothing is loaded or executed: files are hashed and sniffed, ``README.md`` front matter is
read with a safe YAML loader, ``config.json`` as JSON, both size-bounded.

Example:
    >>> from phalanx.supplychain.bom import build_ml_bom
    >>> bom = build_ml_bom("my-model/")  # doctest: +SKIP
    >>> bom.to_json()[:40]  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from xml.dom import minidom

from phalanx import __version__
from phalanx._optional import require
from phalanx._yaml import YAMLError, safe_load
from phalanx.core.findings import Finding, Severity
from phalanx.errors import InputError
from phalanx.supplychain.scan import ScanLimits, ScanReport, scan_paths
from phalanx.supplychain.scan.engine import iter_files

__all__ = ["MlBom", "ModelCard", "build_ml_bom", "read_model_card"]

logger = logging.getLogger(__name__)

_NS = "http://cyclonedx.org/schema/bom/1.6"
_MODEL_REF = "model"
_MAX_README = 1024 * 1024
_MAX_CONFIG = 16 * 1024 * 1024
_MAX_TEXT = 1000
_MAX_ITEMS = 200
_CHUNK = 1 << 20

#: Sniffed format -> the library a loader of that format needs.
_FORMAT_LIBRARIES: dict[str, str] = {
    "pytorch-zip": "torch",
    "pytorch-legacy": "torch",
    "pytorch-tar": "torch",
    "torchscript": "torch",
    "safetensors": "safetensors",
    "onnx": "onnx",
    "keras": "keras",
    "savedmodel": "tensorflow",
    "hdf5": "h5py",
    "npy": "numpy",
    "npz": "numpy",
    "gguf": "gguf",
}

#: Hugging Face ``library_name`` values that are not the PyPI name.
_LIBRARY_ALIASES: dict[str, str] = {
    "sklearn": "scikit-learn",
    "open_clip": "open-clip-torch",
    "pytorch": "torch",
    "tf-keras": "tf-keras",
}

#: Names known to be PyPI distributions (get a ``pkg:pypi`` purl).
_PYPI = frozenset({
    "torch", "safetensors", "onnx", "keras", "tf-keras", "tensorflow", "h5py", "numpy", "gguf",
    "transformers", "diffusers", "sentence-transformers", "timm", "peft", "scikit-learn",
    "open-clip-torch", "setfit", "flair", "fastai", "spacy", "stable-baselines3", "mlx",
    "adapter-transformers", "joblib", "xgboost", "lightgbm", "onnxruntime", "span-marker",
})

_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass(frozen=True)
class ModelCard:
    """What a Hugging Face ``README.md`` front matter says about a model.

    Args:
        license: License ids or names (``license``, or ``license_name`` for ``other``).
        datasets: Training/evaluation dataset ids.
        base_models: Models this one is derived from.
        languages: Languages (ISO 639 codes as written).
        tags: Free tags.
        pipeline_tag: The task, e.g. ``text-classification``.
        library_name: The library that loads it, e.g. ``transformers``.
        license_link: A URL to the license text, if given.
    """

    license: tuple[str, ...] = ()
    datasets: tuple[str, ...] = ()
    base_models: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    pipeline_tag: str = ""
    library_name: str = ""
    license_link: str = ""


@dataclass(frozen=True)
class FileEntry:
    """One file of the model: path relative to the model directory, size, hash, format."""

    path: str
    size: int
    sha256: str
    format: str


@dataclass(frozen=True)
class Library:
    """A framework the model needs, and why we think so."""

    name: str
    version: str = ""
    evidence: tuple[str, ...] = ()


@dataclass
class MlBom:
    """A built ML-BOM and what went into it.

    Args:
        bom: The ``cyclonedx.model.bom.Bom``.
        model_card: The CycloneDX ``modelCard`` object (JSON form), added on output.
        files: The files inventoried.
        card: What the model card said.
        libraries: The frameworks inferred.
        scan: The scan of the files.
        notes: Things the user should know (unreadable metadata, skipped links).
    """

    bom: Any
    model_card: dict[str, Any]
    files: list[FileEntry]
    card: ModelCard
    libraries: list[Library]
    scan: ScanReport
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        """The BOM as CycloneDX 1.6 JSON."""
        require("cyclonedx", extra="supplychain", purpose="ML-BOM")
        from cyclonedx.output.json import JsonV1Dot6

        with _quiet_dependency_graph():
            doc = json.loads(JsonV1Dot6(self.bom).output_as_string())
        if self.model_card:
            doc["metadata"]["component"]["modelCard"] = self.model_card
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"

    def to_xml(self) -> str:
        """The BOM as CycloneDX 1.6 XML."""
        require("cyclonedx", extra="supplychain", purpose="ML-BOM")
        from cyclonedx.output.xml import XmlV1Dot6

        # Our own output, parsed back only to add the model card (no DTD, nothing external).
        with _quiet_dependency_graph():
            xml_text = XmlV1Dot6(self.bom).output_as_string()
        doc = minidom.parseString(xml_text)
        if self.model_card:
            metadata = _child(doc.documentElement, "metadata")
            component = _child(metadata, "component") if metadata is not None else None
            if component is None:  # pragma: no cover - the library always writes it
                raise RuntimeError("the serialised BOM has no metadata component")
            _insert_model_card(doc, component, self.model_card)
        return doc.toprettyxml(indent="  ", encoding="UTF-8").decode("utf-8")

    def render(self, fmt: str = "json") -> str:
        """``to_json()`` or ``to_xml()`` by name."""
        if fmt == "json":
            return self.to_json()
        if fmt == "xml":
            return self.to_xml()
        raise InputError(f"unknown BOM format {fmt!r}", hint="use json or xml")

    def max_severity(self) -> Severity | None:
        """The scan's highest severity, ``None`` when it found nothing."""
        return self.scan.max_severity()

    def findings(self) -> list[Finding]:
        """The scan's findings."""
        return list(self.scan.findings)


@contextlib.contextmanager
def _quiet_dependency_graph() -> Iterator[None]:
    """A model with no framework found legitimately depends on nothing we can name; the
    library's warning that the graph is incomplete says nothing the BOM does not."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The Component this BOM is describing",
                                category=UserWarning)
        yield


def read_model_card(model_dir: str | Path) -> tuple[ModelCard, list[str]]:
    """Read the YAML front matter of ``MODEL_DIR/README.md`` (Hugging Face model card).

    Returns:
        The card (empty when there is none) and notes on anything unreadable.
    """
    readme = Path(model_dir) / "README.md"
    if not readme.is_file():
        return ModelCard(), []
    try:
        with readme.open("rb") as fh:
            head = fh.read(_MAX_README)
        text = head.decode("utf-8", errors="replace")
    except OSError as exc:
        return ModelCard(), [f"README.md: cannot read ({exc.strerror})"]
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        return ModelCard(), []
    try:
        end = next(i for i, line in enumerate(lines[1:], 1) if line.strip() in ("---", "..."))
    except StopIteration:
        return ModelCard(), ["README.md: front matter is not closed with '---'; ignored"]
    try:
        meta = safe_load("\n".join(lines[1:end]))
    except YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "invalid YAML"
        return ModelCard(), [f"README.md: front matter is not valid YAML ({first}); ignored"]
    if not isinstance(meta, Mapping):
        return ModelCard(), []
    licenses = _strings(meta.get("license"))
    name = _strings(meta.get("license_name"))
    if name and (not licenses or licenses == ("other",)):
        licenses = name
    return ModelCard(
        license=licenses,
        datasets=_strings(meta.get("datasets")),
        base_models=_strings(meta.get("base_model")),
        languages=_strings(meta.get("language")),
        tags=_strings(meta.get("tags")),
        pipeline_tag=next(iter(_strings(meta.get("pipeline_tag"))), ""),
        library_name=next(iter(_strings(meta.get("library_name"))), ""),
        license_link=next(iter(_strings(meta.get("license_link"))), ""),
    ), []


def build_ml_bom(
    model_dir: str | Path,
    *,
    name: str | None = None,
    version: str | None = None,
    limits: ScanLimits | None = None,
) -> MlBom:
    """Inventory a model directory (or one model file) as a CycloneDX 1.6 ML-BOM.

    Every file is hashed and scanned (:func:`phalanx.supplychain.scan.scan_paths`); nothing
    is loaded. A ``.git`` directory is left out.

    Args:
        model_dir: The model directory, or a single model file.
        name: The model's name (default: the directory's name).
        version: The model's version or revision, if it has one.
        limits: Scan bounds (defaults when ``None``).

    Raises:
        InputError: The path does not exist.
    """
    require("cyclonedx", extra="supplychain", purpose="ML-BOM")
    root = Path(model_dir)
    if not root.exists():
        raise InputError(f"no such model directory or file: {root}")
    limits = limits or ScanLimits()
    notes: list[str] = []
    paths: list[Path] = []
    for path, skipped in iter_files(root, limits):
        if skipped:
            notes.append(f"{path}: {skipped}")
            continue
        rel = _relative(root, path)
        if rel.parts and rel.parts[0] == ".git":
            continue
        paths.append(path)
    scan = scan_paths(paths, limits=limits) if paths else ScanReport()
    formats = {f.name: f.format for f in scan.top_level()}
    files: list[FileEntry] = []
    names: dict[str, str] = {}  # the name the scan reports a file by -> its relative path
    for path in paths:
        try:
            size, digest = _sha256(path)
        except OSError as exc:
            notes.append(f"{path}: cannot read ({exc.strerror}); left out")
            continue
        files.append(FileEntry(str(_relative(root, path)), size, digest,
                               formats.get(str(path), "unknown")))
        names[str(path)] = files[-1].path
    directory = root if root.is_dir() else root.parent
    card, card_notes = read_model_card(directory) if root.is_dir() else (ModelCard(), [])
    notes.extend(card_notes)
    config, config_notes = _read_config(directory) if root.is_dir() else ({}, [])
    notes.extend(config_notes)
    libraries = _libraries(files, card, config)
    model_name = name or (root.resolve().name if root.is_dir() else root.name)
    bom, model_card = _assemble(model_name, version, files, card, config, libraries, scan,
                                names)
    return MlBom(bom=bom, model_card=model_card, files=files, card=card,
                 libraries=libraries, scan=scan, notes=notes)


# -- gathering -----------------------------------------------------------------------------


def _relative(root: Path, path: Path) -> PurePosixPath:
    if root.is_dir():
        return PurePosixPath(path.relative_to(root).as_posix())
    return PurePosixPath(path.name)


def _sha256(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _strings(value: Any) -> tuple[str, ...]:
    """A string or list of strings from untrusted YAML, bounded; anything else dropped."""
    items = [value] if isinstance(value, (str, int, float)) else value
    if not isinstance(items, list):
        return ()
    out = []
    for item in items[:_MAX_ITEMS]:
        if isinstance(item, (str, int, float)) and not isinstance(item, bool):
            text = str(item).strip()[:_MAX_TEXT]
            if text and text not in out:
                out.append(text)
    return tuple(out)


def _read_config(directory: Path) -> tuple[dict[str, Any], list[str]]:
    config = directory / "config.json"
    if not config.is_file():
        return {}, []
    try:
        if config.stat().st_size > _MAX_CONFIG:
            return {}, [f"config.json: larger than {_MAX_CONFIG} bytes; ignored"]
        data = json.loads(config.read_text(encoding="utf-8", errors="replace"))
    except (OSError, ValueError):
        return {}, ["config.json: not readable JSON; ignored"]
    return (data, []) if isinstance(data, dict) else ({}, [])


def _config_string(config: Mapping[str, Any], key: str) -> str:
    value = config.get(key)
    if isinstance(value, list) and value:
        value = value[0]
    return str(value)[:_MAX_TEXT] if isinstance(value, (str, int, float)) else ""


def _libraries(files: list[FileEntry], card: ModelCard,
               config: Mapping[str, Any]) -> list[Library]:
    found: dict[str, Library] = {}

    def add(name: str, version: str, evidence: str) -> None:
        name = _LIBRARY_ALIASES.get(name.lower(), name.lower())
        known = found.get(name, Library(name))
        found[name] = Library(name, known.version or version,
                              tuple(dict.fromkeys((*known.evidence, evidence))))

    for key, lib in (("transformers_version", "transformers"),
                     ("_diffusers_version", "diffusers")):
        version = _config_string(config, key)
        if version:
            add(lib, version, f"config.json {key}")
    if card.library_name:
        add(card.library_name, "", "README.md library_name")
    for fmt in sorted({f.format for f in files}):
        if fmt in _FORMAT_LIBRARIES:
            add(_FORMAT_LIBRARIES[fmt], "", f"file format {fmt}")
    return sorted(found.values(), key=lambda lib: lib.name)


# -- assembling ----------------------------------------------------------------------------


def _assemble(model_name: str, version: str | None, files: list[FileEntry], card: ModelCard,
              config: Mapping[str, Any], libraries: list[Library], scan: ScanReport,
              names: Mapping[str, str]) -> tuple[Any, dict[str, Any]]:
    try:
        from cyclonedx.contrib.license.factories import LicenseFactory
    except ImportError:  # cyclonedx-python-lib before 11
        from cyclonedx.factory.license import LicenseFactory
    from cyclonedx.model import (
        ExternalReference,
        ExternalReferenceType,
        HashAlgorithm,
        HashType,
        Property,
        XsUri,
    )
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType, Pedigree
    from packageurl import PackageURL

    def hf_link(kind: str, ident: str) -> list[Any]:
        if not _HF_ID.match(ident):
            return []
        prefix = "datasets/" if kind == "data" else ""
        return [ExternalReference(type=ExternalReferenceType.DISTRIBUTION,
                                  url=XsUri(f"https://huggingface.co/{prefix}{ident}"))]

    bom = Bom()
    tool = Component(type=ComponentType.APPLICATION, name="phalanx", version=__version__,
                     bom_ref="tool:phalanx")
    bom.metadata.tools.components.add(tool)

    file_refs: dict[str, str] = {}
    for entry in files:
        ref = f"file:{entry.path}"
        file_refs[entry.path] = ref
        bom.components.add(Component(
            type=ComponentType.FILE, name=entry.path, bom_ref=ref,
            hashes=[HashType(alg=HashAlgorithm.SHA_256, content=entry.sha256)],
            properties=[Property(name="phalanx:format", value=entry.format),
                        Property(name="phalanx:size", value=str(entry.size))],
        ))

    dataset_refs = []
    for ident in card.datasets:
        ref = f"data:{ident}"
        dataset_refs.append(ref)
        bom.components.add(Component(type=ComponentType.DATA, name=ident, bom_ref=ref,
                                     external_references=hf_link("data", ident)))

    library_components = []
    for lib in libraries:
        purl = (PackageURL(type="pypi", name=lib.name, version=lib.version or None)
                if lib.name in _PYPI else None)
        component = Component(
            type=ComponentType.LIBRARY, name=lib.name, version=lib.version or None,
            bom_ref=f"library:{lib.name}", purl=purl,
            properties=[Property(name="phalanx:evidence", value=e) for e in lib.evidence],
        )
        library_components.append(component)
        bom.components.add(component)

    ancestors = []
    for ident in card.base_models:
        group, _, base = ident.rpartition("/")
        purl = (PackageURL(type="huggingface", namespace=group or None, name=base)
                if _HF_ID.match(ident) else None)
        ancestors.append(Component(
            type=ComponentType.MACHINE_LEARNING_MODEL, name=base or ident, group=group or None,
            bom_ref=f"base-model:{ident}", purl=purl,
            external_references=hf_link("model", ident),
        ))

    properties = [Property(name=f"phalanx:scan:{k}", value=v) for k, v in _verdict(scan)]
    properties += [Property(name="phalanx:language", value=lang) for lang in card.languages]
    if card.library_name:
        properties.append(Property(name="phalanx:library-name", value=card.library_name))
    factory = LicenseFactory()
    licenses = [factory.make_from_string(value) for value in card.license]
    model = Component(
        type=ComponentType.MACHINE_LEARNING_MODEL, name=model_name, version=version,
        bom_ref=_MODEL_REF, licenses=licenses, properties=properties, tags=card.tags,
        pedigree=Pedigree(ancestors=ancestors) if ancestors else None,
        external_references=(
            [ExternalReference(type=ExternalReferenceType.LICENSE, url=XsUri(card.license_link))]
            if card.license_link.startswith(("https://", "http://")) else None
        ),
    )
    bom.metadata.component = model
    bom.register_dependency(model, library_components)
    for component in bom.components:
        bom.register_dependency(component)

    targets = {name: file_refs[rel] for name, rel in names.items()}
    for vulnerability in _vulnerabilities(scan, targets):
        bom.vulnerabilities.add(vulnerability)

    parameters: dict[str, Any] = {}
    if card.pipeline_tag:
        parameters["task"] = card.pipeline_tag
    family = _config_string(config, "model_type")
    architecture = _config_string(config, "architectures")
    if family:
        parameters["architectureFamily"] = family
    if architecture:
        parameters["modelArchitecture"] = architecture
    if dataset_refs:
        parameters["datasets"] = [{"ref": ref} for ref in dataset_refs]
    return bom, ({"modelParameters": parameters} if parameters else {})


def _verdict(scan: ScanReport) -> list[tuple[str, str]]:
    worst = scan.max_severity()
    counts = Counter(f.severity for f in scan.findings)
    incomplete = [f for f in scan.files if not f.complete]
    verdict = "fail" if scan.failed(Severity.MEDIUM) else "pass"
    pairs = [
        ("verdict", verdict),
        ("max-severity", worst.label if worst is not None else "none"),
        ("findings", str(len(scan.findings))),
        ("files-scanned", str(len(scan.top_level()))),
        ("complete", "false" if incomplete else "true"),
    ]
    pairs += [(f"findings:{s.label}", str(counts[s])) for s in sorted(counts, reverse=True)]
    return pairs


_SEVERITY_NAMES = {Severity.CRITICAL: "critical", Severity.HIGH: "high",
                   Severity.MEDIUM: "medium", Severity.LOW: "low", Severity.INFO: "info"}


def _vulnerabilities(scan: ScanReport, targets: Mapping[str, str]) -> Iterable[Any]:
    """One CycloneDX vulnerability per finding (LOW and above), aimed at its file."""
    from cyclonedx.model import Property
    from cyclonedx.model.vulnerability import (
        BomTarget,
        Vulnerability,
        VulnerabilityRating,
        VulnerabilityScoreSource,
        VulnerabilitySeverity,
        VulnerabilitySource,
    )

    seen: set[str] = set()
    for finding in scan.findings:
        if finding.severity < Severity.LOW or finding.id in seen:
            continue
        seen.add(finding.id)
        # A member of a container is named "outer!inner": it affects the outer file.
        location = str(finding.evidence.get("file", "")).split("!", 1)[0]
        target = targets.get(location, _MODEL_REF)
        props = [Property(name="phalanx:check", value=finding.check)]
        props += [Property(name="phalanx:taxonomy", value=ref) for ref in finding.refs]
        yield Vulnerability(
            bom_ref=f"finding:{finding.id}", id=finding.id,
            source=VulnerabilitySource(name=f"phalanx {finding.check}"),
            ratings=[VulnerabilityRating(
                severity=VulnerabilitySeverity(_SEVERITY_NAMES[finding.severity]),
                method=VulnerabilityScoreSource.OTHER)],
            description=finding.title, detail=finding.detail or None,
            recommendation=finding.remediation or None,
            affects=[BomTarget(ref=target)], properties=props,
        )


def _child(element: Any, tag: str) -> Any:
    return next((n for n in element.childNodes
                 if n.nodeType == n.ELEMENT_NODE and n.localName == tag), None)


def _insert_model_card(doc: Any, component: Any, card: Mapping[str, Any]) -> None:
    """Add ``<modelCard>`` where the 1.6 schema wants it: before data, crypto and tags.

    Elements made with ``createElement`` have no namespace of their own, so they inherit
    the document's default (CycloneDX 1.6) namespace.
    """

    def element(tag: str, text: str | None = None) -> Any:
        node = doc.createElement(tag)
        if text is not None:
            node.appendChild(doc.createTextNode(text))
        return node

    model_card = element("modelCard")
    params = model_card.appendChild(element("modelParameters"))
    values = card.get("modelParameters", {})
    for key in ("task", "architectureFamily", "modelArchitecture"):
        if key in values:
            params.appendChild(element(key, str(values[key])))
    if values.get("datasets"):
        datasets = params.appendChild(element("datasets"))
        for item in values["datasets"]:
            datasets.appendChild(element("ref", str(item["ref"])))
    later = {"data", "cryptoProperties", "tags", "signature"}
    anchor = next((n for n in component.childNodes
                   if n.nodeType == n.ELEMENT_NODE and n.localName in later), None)
    component.insertBefore(model_card, anchor)

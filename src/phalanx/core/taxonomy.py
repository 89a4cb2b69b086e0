"""Security taxonomies as versioned data, and the loader that resolves references into them.

Every finding is tagged with *refs*: canonical ``framework:id`` strings that always carry the
framework edition, never a bare id (``LLM06`` is *Sensitive Information Disclosure* in the
OWASP 2023 list but *Excessive Agency* in 2025). The frameworks themselves live as YAML files
in ``phalanx/data/taxonomy/``; this module reads them lazily, validates them and answers
look-ups.

Canonical forms:

==================  ==========================  ==============================
Framework prefix    Id form                     Example ref
==================  ==========================  ==============================
``owasp-llm-2025``  ``LLMnn``                   ``owasp-llm-2025:LLM01``
``owasp-llm-2023``  ``LLMnn``                   ``owasp-llm-2023:LLM06``
``atlas``           ``AML.<TA|T|M>nnnn[.nnn]``  ``atlas:AML.T0051.001``
``nist-aml-2025``   ``NISTAML.nn[n]``           ``nist-aml-2025:NISTAML.015``
``nist-ai-600-1``   ``<section>``               ``nist-ai-600-1:2.9``
``nist-ai-rmf-1.0`` ``FUNCTION[-cat[.sub]]``    ``nist-ai-rmf-1.0:MEASURE-2.7``
==================  ==========================  ==============================

Example:
    >>> from phalanx.core.taxonomy import load_taxonomy
    >>> tax = load_taxonomy()
    >>> tax.get("owasp-llm-2025:LLM01").name
    'Prompt Injection'
    >>> tax.crosswalk("owasp-llm-2023:LLM06")
    ['owasp-llm-2025:LLM02']

This module imports only the standard library and PyYAML.
"""

from __future__ import annotations

import difflib
import functools
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from phalanx._yaml import YAMLError, safe_load

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from importlib.resources.abc import Traversable
    else:
        from importlib.abc import Traversable

__all__ = [
    "ENTRY_KINDS",
    "ID_PATTERNS",
    "Framework",
    "Taxonomy",
    "TaxonomyEntry",
    "load_taxonomy",
    "make_ref",
    "parse_ref",
]

_DATA_PACKAGE = "phalanx.data"
_DATA_DIR = "taxonomy"
_CROSSWALK_FILE = "crosswalk.yaml"

#: Data files listed first, in this order; any other framework file follows alphabetically.
_FILE_ORDER = (
    "owasp-llm-2025.yaml",
    "owasp-llm-2023.yaml",
    "atlas.yaml",
    "nist-aml-2025.yaml",
    "nist-ai-600-1.yaml",
    "nist-ai-rmf-1.0.yaml",
)

_FRAMEWORK_RE = re.compile(r"[a-z][a-z0-9]*(?:[.-][a-z0-9]+)*")

#: Id syntax per known framework (matched against the whole id). A well-formed id need not
#: exist in the data: ``owasp-llm-2025:LLM11`` is well-formed but unknown.
ID_PATTERNS: Mapping[str, re.Pattern[str]] = {
    "owasp-llm-2025": re.compile(r"LLM\d{2}"),
    "owasp-llm-2023": re.compile(r"LLM\d{2}"),
    "atlas": re.compile(r"AML\.(?:TA\d{4}|T\d{4}(?:\.\d{3})?|M\d{4}|CS\d{4})"),
    "nist-aml-2025": re.compile(r"NISTAML\.\d{2,3}"),
    "nist-ai-600-1": re.compile(r"\d+\.\d+"),
    "nist-ai-rmf-1.0": re.compile(r"(?:GOVERN|MAP|MEASURE|MANAGE)(?:-\d+(?:\.\d+)?)?"),
}

_ID_EXAMPLES: Mapping[str, str] = {
    "owasp-llm-2025": "LLM01",
    "owasp-llm-2023": "LLM06",
    "atlas": "AML.T0051.001",
    "nist-aml-2025": "NISTAML.015",
    "nist-ai-600-1": "2.9",
    "nist-ai-rmf-1.0": "MEASURE-2.7",
}

#: Values the ``kind`` field of an entry may take.
ENTRY_KINDS: frozenset[str] = frozenset(
    {
        "risk",
        "tactic",
        "technique",
        "sub-technique",
        "mitigation",
        "attack-class",
        "category",
        "subcategory",
        "function",
    }
)

_HEADER_KEYS = frozenset(
    {"framework", "name", "short_name", "version", "source", "url", "retired", "entries"}
)
_ENTRY_KEYS = frozenset(
    {"id", "name", "kind", "parent", "aliases", "tactics", "description", "url"}
)
_CROSSWALK_KEYS = frozenset({"from", "to", "source", "mappings"})
_MAPPING_KEYS = frozenset({"from", "to", "relation", "note"})


def parse_ref(ref: str) -> tuple[str, str]:
    """Split a canonical ref into its framework prefix and id, checking the syntax.

    The framework prefix must be a lower-case slug. For the frameworks in
    :data:`ID_PATTERNS` the id must also match that framework's pattern; for other
    prefixes (e.g. ``mlc-hazard:S14``) any non-empty id without whitespace is accepted.
    Whether the ref exists in the data is not checked here (see :meth:`Taxonomy.get`).

    Args:
        ref: A ref such as ``"atlas:AML.T0051.001"``.

    Returns:
        ``(framework, id)``, e.g. ``("atlas", "AML.T0051.001")``.

    Raises:
        ValueError: If ``ref`` is not of the form ``framework:id`` or its id does not match
            the framework's id pattern.
    """
    if not isinstance(ref, str):
        raise ValueError(f"malformed taxonomy ref {ref!r}: expected 'framework:id' string")
    framework, sep, ident = ref.partition(":")
    if not sep or not framework or not ident:
        raise ValueError(
            f"malformed taxonomy ref {ref!r}: expected 'framework:id', "
            "e.g. 'owasp-llm-2025:LLM01' or 'atlas:AML.T0051.001'"
        )
    if not _FRAMEWORK_RE.fullmatch(framework):
        raise ValueError(
            f"malformed taxonomy ref {ref!r}: expected 'framework:id' with a lower-case "
            f"framework prefix such as 'owasp-llm-2025', got {framework!r}"
        )
    if any(ch.isspace() for ch in ident):
        raise ValueError(f"malformed taxonomy ref {ref!r}: expected 'framework:id' without spaces")
    pattern = ID_PATTERNS.get(framework)
    if pattern is not None and not pattern.fullmatch(ident):
        raise ValueError(
            f"malformed taxonomy ref {ref!r}: expected 'framework:id' with a {framework} id "
            f"like {_ID_EXAMPLES[framework]!r}, got {ident!r}"
        )
    return framework, ident


def make_ref(framework: str, ident: str) -> str:
    """Build a canonical ref from a framework prefix and an id, checking the syntax.

    Args:
        framework: Framework prefix, e.g. ``"atlas"``.
        ident: Id within the framework, e.g. ``"AML.T0024"``.

    Returns:
        The ref ``"framework:id"``.

    Raises:
        ValueError: If the result is not a well-formed ref (see :func:`parse_ref`).
    """
    ref = f"{framework}:{ident}"
    parse_ref(ref)
    return ref


def _display_id(framework: str, ident: str) -> str:
    if framework == "nist-ai-rmf-1.0":
        return ident.replace("-", " ")
    if framework == "nist-ai-600-1":
        return f"§{ident}"
    return ident


@dataclass(frozen=True)
class TaxonomyEntry:
    """One item of a framework: a risk, tactic, technique, mitigation, subcategory and so on.

    Attributes:
        ref: Canonical ``framework:id`` string, e.g. ``"atlas:AML.T0051.001"``.
        framework: Framework prefix, e.g. ``"atlas"``.
        id: Id within the framework, e.g. ``"AML.T0051.001"``.
        name: Current official (or, where the data says so, short) name.
        kind: What the entry is; one of :data:`ENTRY_KINDS`.
        parent: Ref of the enclosing entry (technique of a sub-technique, category of a
            subcategory, ...), or ``None`` for top-level entries.
        aliases: Earlier or alternative names (e.g. ATLAS "ML ..." names, NIST 600-1 draft
            names), for matching input from older tools.
        tactics: Refs this entry is listed under: ATLAS tactics of a technique (sub-techniques
            inherit their parent's), NIST AML objectives of an attack.
        description: Short one-line scope, possibly empty.
        url: Link to the entry, or to the framework when no entry page is known.
    """

    ref: str
    framework: str
    id: str
    name: str
    kind: str
    parent: str | None = None
    aliases: tuple[str, ...] = ()
    tactics: tuple[str, ...] = ()
    description: str = ""
    url: str = ""

    @property
    def display_id(self) -> str:
        """The id as printed in headings (``MEASURE 2.7``, ``§2.9``, ``LLM01``)."""
        return _display_id(self.framework, self.id)


@dataclass(frozen=True)
class Framework:
    """Header of one taxonomy data file.

    Attributes:
        prefix: Canonical framework prefix used in refs, e.g. ``"owasp-llm-2025"``.
        name: Display name.
        version: Edition or data version, e.g. ``"5.6.0"`` for ATLAS.
        source: Where the data came from, with its evidence label ([V] read from the primary
            source, [S] secondary copy, [P] paraphrase).
        short_name: Short display name used in labels, e.g. ``"OWASP LLM 2025"``.
        url: Link to the framework.
    """

    prefix: str
    name: str
    version: str
    source: str
    short_name: str = ""
    url: str = ""


def _norm_name(name: str) -> str:
    return " ".join(name.split()).casefold()


class Taxonomy:
    """All loaded frameworks, their entries and the OWASP 2023 → 2025 crosswalk.

    Usually obtained from :func:`load_taxonomy`. The constructor validates its input: refs
    must be well formed and unique, and every ``parent``, ``tactics`` and crosswalk ref must
    resolve.

    Args:
        frameworks: Framework headers, in display order.
        entries: All entries, each belonging to one of ``frameworks``.
        crosswalk: Map from a ref to the refs that succeed it in a newer edition.
        retired: Well-formed refs known to be withdrawn (e.g. retired ATLAS ids), used only to
            give a clearer error message.

    Raises:
        ValueError: If the data is inconsistent.
    """

    def __init__(
        self,
        frameworks: Iterable[Framework],
        entries: Iterable[TaxonomyEntry],
        crosswalk: Mapping[str, Sequence[str]] | None = None,
        retired: Iterable[str] = (),
    ) -> None:
        self._frameworks: dict[str, Framework] = {}
        for fw in frameworks:
            if fw.prefix in self._frameworks:
                raise ValueError(f"duplicate taxonomy framework {fw.prefix!r}")
            if not _FRAMEWORK_RE.fullmatch(fw.prefix):
                raise ValueError(f"invalid taxonomy framework prefix {fw.prefix!r}")
            self._frameworks[fw.prefix] = fw

        self._entries: dict[str, TaxonomyEntry] = {}
        self._by_framework: dict[str, list[TaxonomyEntry]] = {p: [] for p in self._frameworks}
        for entry in entries:
            self._check_entry(entry)
            if entry.ref in self._entries:
                raise ValueError(f"duplicate taxonomy ref {entry.ref!r}")
            self._entries[entry.ref] = entry
            self._by_framework[entry.framework].append(entry)

        for entry in self._entries.values():
            if entry.parent is not None and entry.parent not in self._entries:
                raise ValueError(f"{entry.ref}: parent {entry.parent!r} is not a known ref")
            for tactic in entry.tactics:
                if tactic not in self._entries:
                    raise ValueError(f"{entry.ref}: tactic {tactic!r} is not a known ref")

        self._crosswalk: dict[str, tuple[str, ...]] = {}
        self._crosswalk_targets: set[str] = set()
        for source, targets in (crosswalk or {}).items():
            if source not in self._entries:
                raise ValueError(f"crosswalk source {source!r} is not a known ref")
            if not targets:
                raise ValueError(f"crosswalk for {source!r} lists no targets")
            for target in targets:
                if target not in self._entries:
                    raise ValueError(f"crosswalk target {target!r} (from {source!r}) is unknown")
                self._crosswalk_targets.add(self._entries[target].framework)
            self._crosswalk[source] = tuple(targets)

        self._retired: frozenset[str] = frozenset(retired)
        self._names: dict[str, tuple[dict[str, list[str]], dict[str, list[str]]]] = {}
        self._index_names()

    # ------------------------------------------------------------------ construction

    def _check_entry(self, entry: TaxonomyEntry) -> None:
        if entry.framework not in self._frameworks:
            raise ValueError(f"{entry.ref}: framework {entry.framework!r} has no header")
        if entry.ref != f"{entry.framework}:{entry.id}":
            raise ValueError(
                f"{entry.ref}: ref does not match framework {entry.framework!r} and id {entry.id!r}"
            )
        parse_ref(entry.ref)
        if entry.kind not in ENTRY_KINDS:
            raise ValueError(
                f"{entry.ref}: unknown kind {entry.kind!r}; expected one of {sorted(ENTRY_KINDS)}"
            )
        if not entry.name.strip():
            raise ValueError(f"{entry.ref}: empty name")

    def _index_names(self) -> None:
        for prefix, entries in self._by_framework.items():
            current: dict[str, list[str]] = {}
            old: dict[str, list[str]] = {}
            for entry in entries:
                names = [(entry.name, current)] + [(a, old) for a in entry.aliases]
                parent = self._entries[entry.parent] if entry.parent else None
                if parent is not None and entry.kind == "sub-technique":
                    # "User Execution: Unsafe AI Artifacts", the way ATLAS prints them in full
                    parent_names = [(parent.name, True)] + [(a, False) for a in parent.aliases]
                    child_names = [(entry.name, True)] + [(a, False) for a in entry.aliases]
                    for pname, pcur in parent_names:
                        for cname, ccur in child_names:
                            names.append((f"{pname}: {cname}", current if pcur and ccur else old))
                for name, table in names:
                    refs = table.setdefault(_norm_name(name), [])
                    if entry.ref not in refs:
                        refs.append(entry.ref)
            self._names[prefix] = (current, old)

    @classmethod
    def from_directory(cls, directory: Traversable) -> Taxonomy:
        """Build a taxonomy from a directory of YAML files.

        Every ``*.yaml`` file other than ``crosswalk.yaml`` is a framework file; a
        ``crosswalk.yaml`` file, if present, holds edition crosswalks.

        Args:
            directory: A directory (a :class:`pathlib.Path` or an importlib resource).

        Returns:
            The validated taxonomy.

        Raises:
            ValueError: If a file is malformed or the data is inconsistent.
        """
        children = {child.name: child for child in directory.iterdir() if child.is_file()}
        yaml_names = [n for n in children if n.endswith(".yaml") and n != _CROSSWALK_FILE]
        ordered = [n for n in _FILE_ORDER if n in yaml_names]
        ordered += sorted(n for n in yaml_names if n not in _FILE_ORDER)

        frameworks: list[Framework] = []
        entries: list[TaxonomyEntry] = []
        retired: list[str] = []
        for file_name in ordered:
            doc = _load_yaml(children[file_name].read_text(encoding="utf-8"), file_name)
            framework, fw_entries, fw_retired = _parse_framework(doc, file_name)
            frameworks.append(framework)
            entries.extend(fw_entries)
            retired.extend(fw_retired)

        crosswalk: dict[str, list[str]] = {}
        if _CROSSWALK_FILE in children:
            text = children[_CROSSWALK_FILE].read_text(encoding="utf-8")
            crosswalk = _parse_crosswalk(_load_yaml(text, _CROSSWALK_FILE), _CROSSWALK_FILE)
        return cls(frameworks, entries, crosswalk, retired)

    # ------------------------------------------------------------------ look-ups

    def __contains__(self, ref: object) -> bool:
        """Whether ``ref`` is a known ref (malformed refs and non-strings are simply absent)."""
        return isinstance(ref, str) and ref in self._entries

    def __len__(self) -> int:
        """Number of entries across all frameworks."""
        return len(self._entries)

    def get(self, ref: str) -> TaxonomyEntry:
        """Return the entry for ``ref``.

        Args:
            ref: Canonical ref, e.g. ``"owasp-llm-2025:LLM01"``.

        Returns:
            The entry.

        Raises:
            ValueError: If ``ref`` is malformed.
            KeyError: If ``ref`` is well formed but not in the data; the message names close
                matches where there are any.
        """
        framework, _ = parse_ref(ref)
        entry = self._entries.get(ref)
        if entry is not None:
            return entry
        if framework not in self._frameworks:
            close = difflib.get_close_matches(framework, list(self._frameworks), n=3)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            known = ", ".join(self._frameworks)
            raise KeyError(
                f"unknown taxonomy framework {framework!r} in {ref!r}{hint} (known: {known})"
            )
        retired = (
            " (retired or never used: absent from this edition)" if ref in self._retired else ""
        )
        candidates = [e.ref for e in self._by_framework[framework]]
        close = difflib.get_close_matches(ref, candidates, n=3, cutoff=0.6)
        hint = f"; close matches: {', '.join(close)}" if close else ""
        version = self._frameworks[framework].version
        raise KeyError(f"unknown taxonomy ref {ref!r}{retired} in {framework} {version}{hint}")

    def find(self, ref: str) -> TaxonomyEntry | None:
        """Return the entry for ``ref``, or ``None`` if it is unknown or malformed.

        Args:
            ref: Canonical ref.

        Returns:
            The entry, or ``None``.
        """
        return self._entries.get(ref) if isinstance(ref, str) else None

    def unknown(self, refs: Iterable[str]) -> list[str]:
        """Return the refs that are not in the data (malformed ones included).

        Args:
            refs: Refs to check. A single string counts as one ref.

        Returns:
            Each unknown ref once, in the order first seen.
        """
        items: Iterable[str] = [refs] if isinstance(refs, str) else refs
        missing: list[str] = []
        for ref in items:
            if ref not in self and ref not in missing:
                missing.append(ref)
        return missing

    def frameworks(self) -> list[Framework]:
        """Return the framework headers, in display order."""
        return list(self._frameworks.values())

    def entries(self, framework: str | None = None) -> list[TaxonomyEntry]:
        """Return entries in data-file order.

        Args:
            framework: A framework prefix to restrict to, or ``None`` for all.

        Returns:
            The entries.

        Raises:
            KeyError: If ``framework`` is not a loaded framework.
        """
        if framework is None:
            return list(self._entries.values())
        self._require_framework(framework)
        return list(self._by_framework[framework])

    def by_name(self, name: str, framework: str = "atlas") -> TaxonomyEntry | None:
        """Find an entry by its name, case-insensitively.

        Current names win over aliases (earlier names such as "Exfiltration via ML Inference
        API"). Sub-techniques also match as ``"Technique: Sub-technique"``, e.g.
        ``"User Execution: Unsafe AI Artifacts"``. When several entries share a name the first
        in data order (tactics, then techniques with their sub-techniques, then mitigations)
        is returned.

        Args:
            name: Name to look up; surrounding and repeated whitespace is ignored.
            framework: Framework to search; ATLAS by default.

        Returns:
            The entry, or ``None`` if no name or alias matches.

        Raises:
            KeyError: If ``framework`` is not a loaded framework.
        """
        self._require_framework(framework)
        key = _norm_name(name)
        for table in self._names[framework]:
            refs = table.get(key)
            if refs:
                return self._entries[refs[0]]
        return None

    def crosswalk(self, ref: str) -> list[str]:
        """Translate a ref to the newer edition it was succeeded by.

        An OWASP LLM 2023 ref maps to its 2025 successor(s) (``owasp-llm-2023:LLM07`` has
        two); a ref already in the newer edition maps to itself. Refs of frameworks without a
        crosswalk map to an empty list.

        Args:
            ref: Canonical ref.

        Returns:
            Successor refs, most relevant first.

        Raises:
            ValueError: If ``ref`` is malformed.
            KeyError: If ``ref`` is unknown.
        """
        entry = self.get(ref)
        if ref in self._crosswalk:
            return list(self._crosswalk[ref])
        if entry.framework in self._crosswalk_targets:
            return [ref]
        return []

    def label(self, ref: str) -> str:
        """Return a human-readable heading for ``ref``.

        Args:
            ref: Canonical ref.

        Returns:
            E.g. ``"OWASP LLM 2025 LLM01: Prompt Injection"``,
            ``"MITRE ATLAS AML.T0051.001: LLM Prompt Injection: Indirect"`` (a sub-technique
            is named with its technique, as ATLAS prints it) or ``"NIST AI RMF 1.0 MEASURE
            2.7: Security and resilience evaluated and documented"``; an unknown or malformed
            ref is returned unchanged.
        """
        entry = self.find(ref)
        if entry is None:
            return ref
        fw = self._frameworks[entry.framework]
        name = entry.name
        if entry.kind == "sub-technique" and entry.parent is not None:
            name = f"{self._entries[entry.parent].name}: {name}"
        return f"{fw.short_name or fw.name} {entry.display_id}: {name}"

    def group_key(self, ref: str, framework: str) -> str | None:
        """Return the ref under which ``ref`` is grouped in a report section for ``framework``.

        * Same framework: the ref itself, except that an ATLAS sub-technique rolls up to its
          technique (``atlas:AML.T0051.001`` → ``atlas:AML.T0051``).
        * Through the crosswalk: an OWASP 2023 ref grouped under ``owasp-llm-2025`` gives its
          first 2025 successor (``owasp-llm-2023:LLM06`` → ``owasp-llm-2025:LLM02``).
        * Otherwise ``None``: the ref has no place in that framework's section.

        Args:
            ref: Canonical ref of a finding.
            framework: Framework prefix of the report section.

        Returns:
            A ref in ``framework``, or ``None`` (also for unknown or malformed refs).

        Raises:
            KeyError: If ``framework`` is not a loaded framework.
        """
        self._require_framework(framework)
        entry = self.find(ref)
        if entry is None:
            return None
        if entry.framework == framework:
            if entry.kind == "sub-technique" and entry.parent is not None:
                return entry.parent
            return entry.ref
        for target in self._crosswalk.get(entry.ref, ()):
            if self._entries[target].framework == framework:
                return target
        return None

    def _require_framework(self, framework: str) -> None:
        if framework not in self._frameworks:
            close = difflib.get_close_matches(framework, list(self._frameworks), n=3)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise KeyError(f"unknown taxonomy framework {framework!r}{hint}")


# ---------------------------------------------------------------------- data parsing


def _load_yaml(text: str, origin: str) -> Any:
    try:
        return safe_load(text)
    except YAMLError as exc:
        raise ValueError(f"{origin}: invalid YAML: {exc}") from exc


def _mapping(value: object, where: str, allowed: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(value).__name__}")
    extra = sorted(str(k) for k in value if k not in allowed)
    if extra:
        raise ValueError(f"{where}: unexpected key(s) {extra}; allowed: {sorted(allowed)}")
    return value


def _text(data: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> str:
    value = data.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        hint = " (quote numeric-looking values)" if isinstance(value, (int, float)) else ""
        raise ValueError(f"{where}: {key!r} must be a non-empty string{hint}, got {value!r}")
    return value


def _text_list(data: Mapping[str, Any], key: str, where: str) -> list[str]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{where}: {key!r} must be a list of non-empty strings, got {value!r}")
    return list(value)


def _as_ref(value: str, framework: str) -> str:
    """Turn a bare id from a data file into a ref of ``framework`` (refs pass through)."""
    return value if ":" in value else f"{framework}:{value}"


def _parse_framework(doc: object, origin: str) -> tuple[Framework, list[TaxonomyEntry], list[str]]:
    header = _mapping(doc, origin, _HEADER_KEYS)
    prefix = _text(header, "framework", origin)
    if not _FRAMEWORK_RE.fullmatch(prefix):
        raise ValueError(f"{origin}: invalid framework prefix {prefix!r}")
    version = header.get("version")
    if isinstance(version, (int, float)) and not isinstance(version, bool):
        version = str(version)
    framework = Framework(
        prefix=prefix,
        name=_text(header, "name", origin),
        version=_text({"version": version}, "version", origin),
        source=_text(header, "source", origin),
        short_name=_text(header, "short_name", origin, required=False),
        url=_text(header, "url", origin, required=False),
    )
    raw_entries = header.get("entries")
    if not isinstance(raw_entries, list) or not raw_entries:
        raise ValueError(f"{origin}: 'entries' must be a non-empty list")

    entries: list[TaxonomyEntry] = []
    for index, raw in enumerate(raw_entries):
        where = f"{origin}: entries[{index}]"
        data = _mapping(raw, where, _ENTRY_KEYS)
        ident = _text(data, "id", where)
        where = f"{origin}: {ident}"
        parent = data.get("parent")
        if parent is not None and not (isinstance(parent, str) and parent):
            raise ValueError(f"{where}: 'parent' must be a non-empty string, got {parent!r}")
        entries.append(
            TaxonomyEntry(
                ref=f"{prefix}:{ident}",
                framework=prefix,
                id=ident,
                name=_text(data, "name", where),
                kind=_text(data, "kind", where),
                parent=_as_ref(parent, prefix) if parent else None,
                aliases=tuple(_text_list(data, "aliases", where)),
                tactics=tuple(_as_ref(t, prefix) for t in _text_list(data, "tactics", where)),
                description=_text(data, "description", where, required=False).strip(),
                url=_text(data, "url", where, required=False) or framework.url,
            )
        )

    # Sub-techniques sit under their technique's tactics unless the data says otherwise.
    by_ref = {e.ref: e for e in entries}
    for i, entry in enumerate(entries):
        if entry.kind == "sub-technique" and not entry.tactics and entry.parent in by_ref:
            parent_entry = by_ref[entry.parent]
            entries[i] = TaxonomyEntry(
                ref=entry.ref,
                framework=entry.framework,
                id=entry.id,
                name=entry.name,
                kind=entry.kind,
                parent=entry.parent,
                aliases=entry.aliases,
                tactics=parent_entry.tactics,
                description=entry.description,
                url=entry.url,
            )

    retired = [_as_ref(r, prefix) for r in _text_list(header, "retired", origin)]
    for ref in retired:
        parse_ref(ref)
    return framework, entries, retired


def _parse_crosswalk(doc: object, origin: str) -> dict[str, list[str]]:
    header = _mapping(doc, origin, _CROSSWALK_KEYS)
    source_fw = _text(header, "from", origin)
    target_fw = _text(header, "to", origin)
    mappings = header.get("mappings")
    if not isinstance(mappings, list):
        raise ValueError(f"{origin}: 'mappings' must be a list")
    result: dict[str, list[str]] = {}
    for index, raw in enumerate(mappings):
        where = f"{origin}: mappings[{index}]"
        data = _mapping(raw, where, _MAPPING_KEYS)
        source = _as_ref(_text(data, "from", where), source_fw)
        targets = [_as_ref(t, target_fw) for t in _text_list(data, "to", where)]
        if parse_ref(source)[0] != source_fw:
            raise ValueError(f"{where}: {source!r} is not in framework {source_fw!r}")
        for target in targets:
            if parse_ref(target)[0] != target_fw:
                raise ValueError(f"{where}: {target!r} is not in framework {target_fw!r}")
        if source in result:
            raise ValueError(f"{where}: duplicate mapping for {source!r}")
        result[source] = targets
    return result


@functools.lru_cache(maxsize=1)
def load_taxonomy() -> Taxonomy:
    """Load the taxonomies shipped in ``phalanx/data/taxonomy`` (cached after the first call).

    Returns:
        The shared :class:`Taxonomy`.

    Raises:
        ValueError: If the shipped data is malformed (a packaging bug).
    """
    return Taxonomy.from_directory(files(_DATA_PACKAGE) / _DATA_DIR)

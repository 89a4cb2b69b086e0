"""The pickle import policy: allowlist per ecosystem, denylist with reasons, one verdict per import.

Unpickling imports every global a pickle names (``GLOBAL``, ``STACK_GLOBAL``, ``INST``) and
may call it. Deny lists alone lose: each of picklescan's many advisories is a callable its deny
list lacked (``pip.main``, ``pkgutil.resolve_name``, ``timeit.timeit``, ...). So the policy is
**allowlist first**: an import is fine only when an enabled ecosystem allows it; a denied import
is reported with the reason it is dangerous; anything else is *unknown*, which fails a scan at
the default threshold. The data lives in ``phalanx/data/allowlists/pickle.yaml``; this module
loads and validates it and answers one question, :meth:`PicklePolicy.judge`.

Matching follows the unpickler: ``module`` is the module the pickle names, ``name`` the
attribute path inside it. Dotted names (protocol 4 resolves ``"a.b"`` as ``getattr(getattr(m,
"a"), "b")``) are checked part by part, so ``posixpath`` + ``"os.system"`` is recognised as
``os.system``, and a path through a dunder attribute (``"__init__.__globals__"``) is an
attribute walk. Class rules allow names written as classes (CapWords) in listed modules; see
the header of the YAML file for the exact rule.

The bundled YAML is also shipped parsed, as ``pickle.json`` (``make allowlist`` writes it; a
test keeps it current), which spares every scan PyYAML's import and parse (about 30 ms of a
command's start-up). The copy records the SHA-256 of the YAML it was made from and is used
only when that matches the YAML beside it, so the YAML stays the one source.

Example:
    >>> from phalanx.supplychain.scan.policy import load_policy
    >>> policy = load_policy()
    >>> policy.judge("os", "system", ("python",)).verdict.value
    'denied'
    >>> policy.judge("builtins", "set", ("python",)).verdict.value
    'allowed'
"""

from __future__ import annotations

import enum
import functools
import hashlib
import json
import re
from _compat_pickle import IMPORT_MAPPING
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from phalanx.core.findings import Severity
from phalanx.errors import DataFormatError, InvalidParameterError

__all__ = [
    "ClassRule",
    "DenyRule",
    "Ecosystem",
    "Judgement",
    "PicklePolicy",
    "Verdict",
    "load_policy",
    "parse_policy",
]

_DATA_PACKAGE = "phalanx.data"
_POLICY_FILE = "allowlists/pickle.yaml"
_COMPILED_FILE = "allowlists/pickle.json"

#: The ecosystem every scan includes: Python's own containers and pickling helpers.
BASE_ECOSYSTEM = "python"

#: A class name as PEP 8 writes it: CapWords, acronyms included, at least two characters, at
#: most one leading underscore and no other (so ``LogisticRegression``, ``_BinMapper``, ``SVC``,
#: but neither ``load``, ``TREE_LEAF`` nor a one-letter alias such as ``F`` for a module).
_CLASS_NAME = re.compile(r"_?[A-Z][A-Za-z0-9]+")
_CYTHON_UNPICKLE = "__pyx_unpickle_"
#: Dotted attribute paths longer than this are not matched part by part (and never allowed).
_MAX_NAME_PARTS = 32

_TOP_KEYS = frozenset({"version", "ecosystems", "deny", "pickle_loaders"})
_ECOSYSTEM_KEYS = frozenset({"description", "globals", "classes"})
_CLASS_RULE_KEYS = frozenset({"modules", "exclude", "reason", "construct"})
_DENY_KEYS = frozenset({"id", "reason", "severity", "modules", "globals", "source"})


class Verdict(str, enum.Enum):
    """What the policy says about one import."""

    ALLOWED = "allowed"
    DENIED = "denied"
    UNKNOWN = "unknown"
    #: ``STACK_GLOBAL`` whose module or name is not a constant string.
    UNRESOLVABLE = "unresolvable"
    #: ``EXT1/2/4``: an import through the copyreg extension registry.
    EXTENSION = "extension"


@dataclass(frozen=True)
class ClassRule:
    """Allow names written as classes under some modules.

    Args:
        modules: Module prefixes; a rule covers each module and all of its submodules.
        exclude: Class-like names the rule never allows (re-exports from elsewhere).
        reason: Why these classes are safe to construct.
        construct: Whether a pickle may *call* these classes (``REDUCE``, ``INST``, ``OBJ``),
            which runs their ``__init__`` with the pickle's arguments. ``False`` allows only
            what pickling itself writes for such objects: the class named, created with
            ``NEWOBJ`` (``cls.__new__``, no ``__init__``) and its state restored by ``BUILD``.
    """

    modules: tuple[str, ...]
    exclude: frozenset[str] = frozenset()
    reason: str = ""
    construct: bool = True

    def matches(self, module: str, name: str) -> bool:
        """Whether ``module``/``name`` is a class this rule allows."""
        if name in self.exclude or not _under(module, self.modules):
            return False
        if name.startswith(_CYTHON_UNPICKLE):
            name = name[len(_CYTHON_UNPICKLE) :]
        return bool(_CLASS_NAME.fullmatch(name))


@dataclass(frozen=True)
class Ecosystem:
    """The imports one ecosystem's pickles need.

    Args:
        name: Ecosystem id, e.g. ``"numpy"``.
        description: One line for humans.
        globals: Exact ``(module, name)`` pairs allowed.
        classes: Class rules.
    """

    name: str
    description: str = ""
    globals: frozenset[tuple[str, str]] = frozenset()
    classes: tuple[ClassRule, ...] = ()

    def allows(self, module: str, name: str) -> bool:
        """Whether this ecosystem allows the import."""
        return (module, name) in self.globals or any(r.matches(module, name) for r in self.classes)

    def allows_calls(self, module: str, name: str) -> bool:
        """Whether this ecosystem also lets a pickle call the import (see ``construct``)."""
        return (module, name) in self.globals or any(
            r.construct and r.matches(module, name) for r in self.classes)


@dataclass(frozen=True)
class DenyRule:
    """A family of imports known to be dangerous.

    Args:
        id: Short id, e.g. ``"process-execution"``.
        reason: Why importing or calling them is dangerous (a clause: "starts processes").
        severity: Severity of a finding for such an import.
        sources: Advisories and references the entry comes from.
        modules: Module trees denied whatever the name.
        globals: Names denied, each with every dotted path below it, keyed by module.
    """

    id: str
    reason: str
    severity: Severity = Severity.CRITICAL
    sources: tuple[str, ...] = ()
    modules: tuple[str, ...] = ()
    globals: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def matches(self, module: str, name: str) -> bool:
        """Whether ``module``/``name`` falls under this rule."""
        if _under(module, self.modules):
            return True
        names = self.globals.get(module)
        if not names:
            return False
        return any(name == n or name.startswith(n + ".") for n in names)


@dataclass(frozen=True)
class Judgement:
    """The policy's verdict on one import.

    Args:
        verdict: Allowed, denied or unknown.
        reason: Why, in a clause a report can quote.
        rule: Id of the deny rule or the ecosystem that decided.
        severity: Severity a denied import carries (``None`` otherwise).
        sources: The deny rule's references.
        callable: For an allowed import, whether the pickle may also call it; ``False`` for
            a class allowed only by a rule with ``construct: false``.
    """

    verdict: Verdict
    reason: str
    rule: str = ""
    severity: Severity | None = None
    sources: tuple[str, ...] = ()
    callable: bool = True


_ATTRIBUTE_WALK = DenyRule(
    id="attribute-walk",
    reason=(
        "walks through a private or dunder attribute (such as __globals__ or __builtins__), "
        "which reaches any object in the interpreter"
    ),
    sources=("https://docs.python.org/3/library/pickle.html#restricting-globals",),
)


@dataclass(frozen=True)
class PicklePolicy:
    """Allowlists per ecosystem, the deny list, and the pickle-loading callables.

    Args:
        version: Schema version of the data.
        ecosystems: Allowlists by ecosystem name.
        deny: Deny rules, checked in order.
        loaders: ``(module, name)`` of callables whose first argument is a pickle.
    """

    version: int
    ecosystems: Mapping[str, Ecosystem]
    deny: tuple[DenyRule, ...]
    loaders: frozenset[tuple[str, str]] = frozenset()
    #: Verdicts already reached, by (module, name, ecosystems): a policy is immutable, and
    #: one pickle imports the same few names over and over.
    _judged: dict[tuple[str, str, tuple[str, ...]], Judgement] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    def resolve_ecosystems(self, names: Iterable[str] | None) -> tuple[str, ...]:
        """The ecosystems a scan uses: all of them for ``None``, else ``names`` plus ``python``.

        Raises:
            InvalidParameterError: Some name is not an ecosystem of this policy.
        """
        if names is None:
            return tuple(self.ecosystems)
        if isinstance(names, str):
            names = (names,)
        chosen = list(dict.fromkeys([BASE_ECOSYSTEM, *names]))
        unknown = [n for n in chosen if n not in self.ecosystems]
        if unknown:
            known = ", ".join(sorted(self.ecosystems))
            raise InvalidParameterError(
                [f"unknown pickle ecosystem {n!r}; expected some of {known}" for n in unknown]
            )
        return tuple(chosen)

    def denial(self, module: str, name: str) -> DenyRule | None:
        """The deny rule an import falls under, looking through dotted attribute paths."""
        for mod, attr in _candidates(module, name):
            for rule in self.deny:
                if rule.matches(mod, attr):
                    return rule
        return None

    def judge(self, module: str, name: str, ecosystems: Iterable[str]) -> Judgement:
        """Judge one import.

        Args:
            module: Module as the unpickler imports it (after Python 2 renaming).
            name: Attribute path inside the module.
            ecosystems: Names of the enabled ecosystems (see :meth:`resolve_ecosystems`).

        Returns:
            Denied (with the rule's reason and severity), allowed, or unknown.
        """
        chosen = tuple(ecosystems)
        key = (module, name, chosen)
        judgement = self._judged.get(key)
        if judgement is None:
            if len(self._judged) >= _MAX_JUDGED:  # hostile pickles name endless imports
                self._judged.clear()
            judgement = self._judged[key] = self._judge(module, name, chosen)
        return judgement

    def _judge(self, module: str, name: str, ecosystems: tuple[str, ...]) -> Judgement:
        rule = self.denial(module, name)
        parts = name.split(".")
        if rule is None and len(parts) > 1 and any(p.startswith("__") for p in parts):
            rule = _ATTRIBUTE_WALK
        if rule is not None:
            return Judgement(Verdict.DENIED, rule.reason, rule.id, rule.severity, rule.sources)
        if module and all(parts) and len(parts) <= _MAX_NAME_PARTS:
            new_only = ""  # the first ecosystem that allows the name but not a call to it
            for eco in ecosystems:
                ecosystem = self.ecosystems.get(eco)
                if ecosystem is not None and ecosystem.allows(module, name):
                    if ecosystem.allows_calls(module, name):
                        return Judgement(Verdict.ALLOWED, f"allowlisted ({eco})", eco)
                    new_only = new_only or eco
            if new_only:
                return Judgement(Verdict.ALLOWED, f"allowlisted ({new_only})", new_only,
                                 callable=False)
        return Judgement(Verdict.UNKNOWN, "unknown import, not on the allowlist")

    def is_loader(self, module: str, name: str) -> bool:
        """Whether the callable deserialises a pickle given as its first argument."""
        return (module, name) in self.loaders


#: Bound on the verdicts a policy remembers.
_MAX_JUDGED = 4096


def _under(module: str, prefixes: Iterable[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _candidates(module: str, name: str) -> Iterator[tuple[str, str]]:
    """Every ``(module, name)`` a dotted lookup may really reach, for the deny check.

    ``find_class("posixpath", "os.system")`` returns ``os.system`` through the ``os`` attribute
    of ``posixpath``; ``find_class("os", "path.join")`` reaches the ``os.path`` module. The
    attribute path is bounded so the number of candidates stays small.
    """
    yield module, name
    renamed = IMPORT_MAPPING.get(module)
    if renamed:
        yield renamed, name
    parts = name.split(".")[:_MAX_NAME_PARTS]
    for i in range(1, len(parts)):
        rest = ".".join(parts[i:])
        yield f"{module}.{'.'.join(parts[:i])}", rest
        for j in range(i):
            yield ".".join(parts[j:i]), rest


@functools.lru_cache(maxsize=1)
def _bundled_policy() -> PicklePolicy:
    data = files(_DATA_PACKAGE)
    source = data.joinpath(_POLICY_FILE).read_bytes()
    try:
        compiled: bytes | None = data.joinpath(_COMPILED_FILE).read_bytes()
    except OSError:
        compiled = None
    return parse_policy(_policy_data(source, compiled), origin=f"{_DATA_PACKAGE}/{_POLICY_FILE}")


def _policy_data(source: bytes, compiled: bytes | None) -> Any:
    """The parsed policy: from ``compiled`` (the JSON copy) when it was made from exactly
    ``source``, else by parsing ``source`` as YAML."""
    if compiled is not None:
        try:
            doc = json.loads(compiled)
        except ValueError:
            doc = None
        if (isinstance(doc, dict) and "policy" in doc
                and doc.get("source_sha256") == hashlib.sha256(source).hexdigest()):
            return doc["policy"]
    from phalanx._yaml import safe_load

    return safe_load(source.decode("utf-8"))


def compile_bundled_policy(directory: str | Path | None = None) -> Path:
    """Write the bundled policy's parsed JSON copy (``pickle.json``) beside its YAML, or into
    ``directory``; returns its path. ``make allowlist`` runs this after the YAML is edited.

    Raises:
        DataFormatError: The YAML does not follow the schema.
    """
    from phalanx._yaml import safe_load

    source_file = Path(str(files(_DATA_PACKAGE).joinpath(_POLICY_FILE)))
    source = source_file.read_bytes()
    data = safe_load(source.decode("utf-8"))
    parse_policy(data, origin=str(source_file))  # a broken policy is not compiled
    doc = {"generated_from": Path(_POLICY_FILE).name, "do_not_edit": "make allowlist",
           "source_sha256": hashlib.sha256(source).hexdigest(), "policy": data}
    target = (Path(directory) if directory is not None else source_file.parent) / Path(
        _COMPILED_FILE).name
    target.write_text(json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n",
                      encoding="utf-8")
    return target


def load_policy(path: str | Path | None = None) -> PicklePolicy:
    """Load a pickle policy: the bundled one (cached) by default, or a YAML file.

    Args:
        path: A policy file with the bundled file's schema, or ``None`` for the bundled one.

    Raises:
        DataFormatError: The file does not follow the schema (every problem is listed).
    """
    if path is None:
        return _bundled_policy()
    from phalanx._yaml import YAMLError, safe_load

    text = Path(path).read_text(encoding="utf-8")
    try:
        data = safe_load(text)
    except YAMLError as exc:
        raise DataFormatError(f"{path}: not valid YAML: {exc}") from None
    return parse_policy(data, origin=str(path))


def parse_policy(data: Any, *, origin: str = "<policy>") -> PicklePolicy:
    """Build a policy from parsed YAML, checking the whole schema at once.

    Raises:
        DataFormatError: Listing every problem found, not only the first.
    """
    problems: list[str] = []
    if not isinstance(data, Mapping):
        raise DataFormatError(f"{origin}: expected a mapping at the top level")
    _unknown_keys(data, _TOP_KEYS, "top level", problems)
    version = data.get("version")
    if version != 1:
        problems.append(f"version must be 1, got {version!r}")

    ecosystems: dict[str, Ecosystem] = {}
    raw_ecos = data.get("ecosystems")
    if not isinstance(raw_ecos, Mapping) or not raw_ecos:
        problems.append("ecosystems must be a non-empty mapping")
        raw_ecos = {}
    for eco_name, raw in raw_ecos.items():
        where = f"ecosystems.{eco_name}"
        if not isinstance(raw, Mapping):
            problems.append(f"{where} must be a mapping")
            continue
        _unknown_keys(raw, _ECOSYSTEM_KEYS, where, problems)
        pairs = _name_table(raw.get("globals", {}), f"{where}.globals", problems)
        rules: list[ClassRule] = []
        raw_rules = raw.get("classes", [])
        if not isinstance(raw_rules, list):
            problems.append(f"{where}.classes must be a list")
            raw_rules = []
        for i, rule in enumerate(raw_rules):
            rwhere = f"{where}.classes[{i}]"
            if not isinstance(rule, Mapping):
                problems.append(f"{rwhere} must be a mapping")
                continue
            _unknown_keys(rule, _CLASS_RULE_KEYS, rwhere, problems)
            modules = _str_list(rule.get("modules"), f"{rwhere}.modules", problems)
            if not modules:
                problems.append(f"{rwhere}.modules must name at least one module")
            exclude = _str_list(rule.get("exclude", []), f"{rwhere}.exclude", problems)
            construct = rule.get("construct", True)
            if not isinstance(construct, bool):
                problems.append(f"{rwhere}.construct must be true or false")
                construct = True
            rules.append(ClassRule(tuple(modules), frozenset(exclude), str(rule.get("reason", "")),
                                   construct=construct))
        ecosystems[str(eco_name)] = Ecosystem(
            name=str(eco_name),
            description=str(raw.get("description", "")).strip(),
            globals=frozenset((m, n) for m, names in pairs.items() for n in names),
            classes=tuple(rules),
        )
    if raw_ecos and BASE_ECOSYSTEM not in ecosystems:
        problems.append(f"ecosystems must include {BASE_ECOSYSTEM!r}")

    deny: list[DenyRule] = []
    raw_deny = data.get("deny")
    if not isinstance(raw_deny, list):
        problems.append("deny must be a list")
        raw_deny = []
    seen_ids: set[str] = set()
    for i, entry in enumerate(raw_deny):
        where = f"deny[{i}]"
        if not isinstance(entry, Mapping):
            problems.append(f"{where} must be a mapping")
            continue
        _unknown_keys(entry, _DENY_KEYS, where, problems)
        rule_id = entry.get("id")
        if not isinstance(rule_id, str) or not rule_id:
            problems.append(f"{where}.id must be a non-empty string")
            rule_id = f"deny-{i}"
        elif rule_id in seen_ids:
            problems.append(f"{where}.id {rule_id!r} is used twice")
        seen_ids.add(rule_id)
        reason = entry.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            problems.append(f"{where}.reason must be a non-empty string")
            reason = ""
        try:
            severity = Severity.parse(entry.get("severity", "critical"))
        except (ValueError, AttributeError):
            problems.append(f"{where}.severity must name a severity, got {entry.get('severity')!r}")
            severity = Severity.CRITICAL
        modules = _str_list(entry.get("modules", []), f"{where}.modules", problems)
        names = _name_table(entry.get("globals", {}), f"{where}.globals", problems)
        if not modules and not names:
            problems.append(f"{where} must list modules or globals")
        sources = _str_list(entry.get("source"), f"{where}.source", problems)
        if not sources:
            problems.append(f"{where}.source must cite at least one advisory or reference")
        deny.append(
            DenyRule(
                id=rule_id,
                reason=" ".join(reason.split()),
                severity=severity,
                sources=tuple(sources),
                modules=tuple(modules),
                globals={m: frozenset(n) for m, n in names.items()},
            )
        )

    loaders = _name_table(data.get("pickle_loaders", {}), "pickle_loaders", problems)
    if problems:
        raise DataFormatError(f"{origin}: " + "; ".join(problems))
    return PicklePolicy(
        version=1,
        ecosystems=ecosystems,
        deny=tuple(deny),
        loaders=frozenset((m, n) for m, names in loaders.items() for n in names),
    )


def _unknown_keys(
    raw: Mapping[Any, Any], allowed: frozenset[str], where: str, out: list[str]
) -> None:
    for key in raw:
        if key not in allowed:
            out.append(f"{where}: unknown key {key!r}")


def _str_list(value: Any, where: str, out: list[str]) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        out.append(f"{where} must be a list of non-empty strings")
        return []
    return list(value)


def _name_table(value: Any, where: str, out: list[str]) -> dict[str, list[str]]:
    if not isinstance(value, Mapping):
        out.append(f"{where} must map module names to lists of names")
        return {}
    table: dict[str, list[str]] = {}
    for module, names in value.items():
        if not isinstance(module, str) or not module:
            out.append(f"{where}: module names must be non-empty strings, got {module!r}")
            continue
        table[module] = _str_list(names, f"{where}.{module}", out)
    return table

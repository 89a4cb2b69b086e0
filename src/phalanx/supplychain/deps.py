"""Audit Python dependencies: known vulnerabilities, and ML frameworks unsafe to load with.

Two sources, reported together:

* **a vulnerability service** (OSV by default, or PyPI's JSON API), queried through
  pip-audit for every installed or pinned package. It needs the network; when the service
  cannot be reached the audit says so and is not complete: it never reports "no
  vulnerabilities" for what it could not ask about.
* **a bundled table** of ML-framework vulnerabilities that turn loading a model into code
  execution or file access (``phalanx/data/advisories/ml-frameworks.yaml``: torch, keras,
  transformers, numpy, onnx ...). It works offline, so a torch that still runs code from
  ``torch.load(weights_only=True)`` is flagged on an air-gapped build machine too.

What is audited: the packages installed in the running Python environment (as
``importlib.metadata`` sees them), or the pinned requirements (``name==version``) of
requirements files. Requirements are not resolved: unpinned lines and URLs are listed as
skipped, so pin (``pip freeze``, ``pip-compile``) for a complete audit.

Threat model: a known-vulnerable library in the environment that will load models (MITRE
ATLAS AML.T0010.001, AI software supply chain). The audit does not look at the model files;
``phalanx scan`` does.

Example:
    >>> from phalanx.supplychain.deps import audit_dependencies
    >>> report = audit_dependencies(["requirements.txt"], offline=True)  # doctest: +SKIP
    >>> [f.title for f in report.findings]  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from phalanx._yaml import safe_load
from phalanx.core.context import Context
from phalanx.core.findings import Finding, Severity
from phalanx.errors import DataFormatError, InputError

__all__ = [
    "REFS",
    "SERVICES",
    "Advisory",
    "DepsReport",
    "Package",
    "Skipped",
    "audit_dependencies",
    "check_advisories",
    "installed_packages",
    "load_advisories",
    "read_requirements",
]

logger = logging.getLogger(__name__)

CHECK_ID = "dependency-audit"

#: Taxonomy refs of a vulnerable dependency: compromised or vulnerable AI software.
REFS: tuple[str, ...] = ("atlas:AML.T0010.001", "owasp-llm-2025:LLM03",
                         "nist-aml-2025:NISTAML.05")

#: Vulnerability services pip-audit can query.
SERVICES: tuple[str, ...] = ("osv", "pypi")

_ADVISORY_SCHEMA = "phalanx.advisories/v1"
_KINDS = ("code-execution", "path-traversal")
_MAX_REQUIREMENTS_BYTES = 16 * 1024 * 1024
_MAX_INCLUDE_DEPTH = 10


@dataclass(frozen=True)
class Package:
    """A distribution at one version, and where it was found."""

    name: str
    version: str
    source: str = "environment"

    @property
    def key(self) -> str:
        """The canonical (PEP 503) name."""
        return canonicalize_name(self.name)


@dataclass(frozen=True)
class Skipped:
    """A requirement or distribution that could not be audited, and why."""

    name: str
    reason: str
    source: str = ""


@dataclass(frozen=True)
class Advisory:
    """One known vulnerability from the bundled table.

    Args:
        id: The CVE id.
        packages: Canonical PyPI names it affects.
        affected: Version ranges; a version in any of them is affected.
        fixed: The first fixed release (text for the remediation).
        severity: How bad it is for a model loader.
        kind: ``code-execution`` or ``path-traversal``.
        summary: One line.
        url: The advisory.
        aliases: Other ids (GHSA ...).
    """

    id: str
    packages: tuple[str, ...]
    affected: tuple[SpecifierSet, ...]
    fixed: str
    severity: Severity
    kind: str
    summary: str
    url: str = ""
    aliases: tuple[str, ...] = ()

    def affects(self, package: Package) -> bool:
        """Whether ``package`` is one of ours at an affected version."""
        if package.key not in self.packages:
            return False
        try:
            version = Version(package.version)
        except InvalidVersion:
            return False
        return any(spec.contains(version, prereleases=True) for spec in self.affected)


@dataclass
class DepsReport:
    """What a dependency audit found.

    Args:
        packages: Everything audited.
        skipped: What could not be audited (unpinned, URL, unparsable version).
        findings: One per vulnerable package and advisory, most severe first.
        service: The vulnerability service asked, or ``""`` when offline.
        service_error: Why the service could not answer; when set, packages were not
            checked against it and the audit is incomplete.
    """

    packages: list[Package] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    service: str = ""
    service_error: str | None = None

    @property
    def complete(self) -> bool:
        """Whether the vulnerability service answered for every package."""
        return bool(self.service) and self.service_error is None

    def max_severity(self) -> Severity | None:
        """The highest severity found, ``None`` when nothing was found."""
        return max((f.severity for f in self.findings), default=None)

    def failed(self, threshold: Severity | str = Severity.MEDIUM) -> bool:
        """Whether any finding is at or above ``threshold``."""
        level = Severity.parse(threshold)
        return any(f.severity >= level for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return {
            "schema": "phalanx.deps/v1",
            "service": {
                "name": self.service or None,
                "status": ("not queried" if not self.service
                           else "unreachable" if self.service_error else "ok"),
                "error": self.service_error,
            },
            "complete": self.complete,
            "packages": [{"name": p.name, "version": p.version, "source": p.source}
                         for p in self.packages],
            "skipped": [{"name": s.name, "reason": s.reason, "source": s.source}
                        for s in self.skipped],
            "findings": [f.to_dict() for f in self.findings],
        }


# -- the bundled advisory table ------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def load_advisories() -> tuple[Advisory, ...]:
    """The bundled ML-framework advisories (``data/advisories/ml-frameworks.yaml``).

    Raises:
        DataFormatError: The file is malformed; every problem is listed.
    """
    resource = files("phalanx.data").joinpath("advisories").joinpath("ml-frameworks.yaml")
    return parse_advisories(safe_load(resource.read_text(encoding="utf-8")))


def parse_advisories(data: Any) -> tuple[Advisory, ...]:
    """Validate and build advisories from the YAML structure; all problems at once.

    Raises:
        DataFormatError: Anything is wrong.
    """
    if not isinstance(data, Mapping) or data.get("schema") != _ADVISORY_SCHEMA:
        raise DataFormatError(f"advisory table: expected schema {_ADVISORY_SCHEMA}")
    problems: list[str] = []
    out: list[Advisory] = []
    seen: set[str] = set()
    for i, entry in enumerate(data.get("advisories") or []):
        where = f"advisory #{i + 1}"
        if not isinstance(entry, Mapping):
            problems.append(f"{where}: not a mapping")
            continue
        ident = str(entry.get("id", ""))
        where = f"{where} ({ident or 'no id'})"
        if not re.fullmatch(r"CVE-\d{4}-\d{4,}", ident):
            problems.append(f"{where}: id must be a CVE id")
        if ident in seen:
            problems.append(f"{where}: duplicate id")
        seen.add(ident)
        packages = entry.get("packages")
        if not isinstance(packages, list) or not packages:
            problems.append(f"{where}: packages must be a non-empty list")
            packages = []
        ranges: list[SpecifierSet] = []
        for text in entry.get("affected") or []:
            try:
                spec = SpecifierSet(str(text))
            except InvalidSpecifier:
                problems.append(f"{where}: invalid version range {text!r}")
                continue
            if not str(spec):
                problems.append(f"{where}: empty version range")
            ranges.append(spec)
        if not ranges:
            problems.append(f"{where}: affected needs at least one version range")
        try:
            severity = Severity.parse(str(entry.get("severity", "")))
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
            severity = Severity.HIGH
        kind = str(entry.get("kind", ""))
        if kind not in _KINDS:
            problems.append(f"{where}: kind must be one of {', '.join(_KINDS)}")
        for key in ("summary", "fixed"):
            if not str(entry.get(key, "")).strip():
                problems.append(f"{where}: {key} is required")
        out.append(Advisory(
            id=ident, packages=tuple(canonicalize_name(str(p)) for p in packages),
            affected=tuple(ranges), fixed=str(entry.get("fixed", "")), severity=severity,
            kind=kind, summary=" ".join(str(entry.get("summary", "")).split()),
            url=str(entry.get("url", "")),
            aliases=tuple(str(a) for a in entry.get("aliases") or ()),
        ))
    if problems:
        raise DataFormatError("advisory table: " + "; ".join(problems))
    return tuple(out)


def check_advisories(packages: Iterable[Package],
                     advisories: Iterable[Advisory] | None = None) -> list[Finding]:
    """Findings for packages at versions the advisory table lists (offline)."""
    table = tuple(advisories) if advisories is not None else load_advisories()
    findings = []
    for package in packages:
        for advisory in table:
            if advisory.affects(package):
                findings.append(_advisory_finding(package, advisory))
    return findings


def _advisory_finding(package: Package, advisory: Advisory) -> Finding:
    what = ("execute code" if advisory.kind == "code-execution"
            else "read or write files outside the model's directory")
    return Finding(
        check=CHECK_ID,
        severity=advisory.severity,
        title=f"{package.name} {package.version} is affected by {advisory.id}",
        detail=(f"{advisory.summary} A model or file crafted for this flaw can {what} in the "
                f"process that loads it with {package.name} {package.version}."),
        evidence={"package": package.name, "version": package.version,
                  "source": package.source, "advisory": advisory.id,
                  "aliases": list(advisory.aliases), "kind": advisory.kind,
                  "affected": [str(s) for s in advisory.affected], "fixed": advisory.fixed,
                  "url": advisory.url, "database": "bundled"},
        remediation=(f"Upgrade {package.name} to {advisory.fixed} or later; until then load "
                     "only models from trusted, verified sources."),
        refs=REFS,
    )


# -- what to audit -------------------------------------------------------------------------


def installed_packages(paths: Sequence[str] | None = None) -> tuple[list[Package], list[Skipped]]:
    """The distributions installed in this Python environment (or on ``paths``).

    The first distribution of a name on the path wins, as for imports.
    """
    found: dict[str, Package] = {}
    skipped: list[Skipped] = []
    dists = (importlib.metadata.distributions(path=list(paths)) if paths is not None
             else importlib.metadata.distributions())
    for dist in dists:
        name = dist.metadata["Name"] if dist.metadata else None
        if not name:
            continue
        key = canonicalize_name(name)
        if key in found:
            continue
        try:
            Version(dist.version)
        except InvalidVersion:
            skipped.append(Skipped(name, f"version {dist.version!r} is not PEP 440",
                                   "environment"))
            continue
        found[key] = Package(name, dist.version, "environment")
    return sorted(found.values(), key=lambda p: p.key), skipped


def read_requirements(paths: Iterable[str | Path]) -> tuple[list[Package], list[Skipped]]:
    """The pinned requirements (``name==version``) of requirements files.

    Follows ``-r``/``--requirement`` includes; ignores options (``--hash``, ``--index-url``,
    ``-c`` constraints); evaluates environment markers for this interpreter. Nothing is
    resolved: unpinned requirements, ranges, editables and URLs are returned as skipped.

    Raises:
        InputError: A file is missing or unreadable, or lines are not valid requirements
            (all such lines at once).
    """
    packages: dict[str, Package] = {}
    skipped: list[Skipped] = []
    problems: list[str] = []
    visited: set[Path] = set()
    for path in paths:
        _read_requirements_file(Path(path), packages, skipped, problems, visited, 0)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more"
                                           if len(problems) > 5 else "")
        raise InputError(f"invalid requirements: {shown}")
    return sorted(packages.values(), key=lambda p: p.key), skipped


def _requirement_lines(text: str) -> Iterable[tuple[int, str]]:
    """Logical lines (continuations joined, comments dropped) with their first line number."""
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = re.sub(r"(^|\s)#.*$", "", raw)
        if not buffer:
            start = number
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        buffer += line
        if buffer.strip():
            yield start, buffer.strip()
        buffer = ""
    if buffer.strip():
        yield start, buffer.strip()


def _read_requirements_file(path: Path, packages: dict[str, Package], skipped: list[Skipped],
                            problems: list[str], visited: set[Path], depth: int) -> None:
    if not path.is_file():
        raise InputError(f"no such requirements file: {path}")
    real = path.resolve()
    if real in visited:
        return
    if depth > _MAX_INCLUDE_DEPTH:
        raise InputError(f"{path}: requirements include more than {_MAX_INCLUDE_DEPTH} "
                         "levels deep")
    visited.add(real)
    try:
        if path.stat().st_size > _MAX_REQUIREMENTS_BYTES:
            raise InputError(f"{path} is too large to be a requirements file")
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text") from None
    except OSError as exc:
        raise InputError(f"cannot read requirements file {path}: {exc.strerror}") from None
    for number, line in _requirement_lines(text):
        where = f"{path}:{number}"
        include = re.match(r"^(-r|--requirement)(\s+|=)(\S+)$", line)
        if include:
            target = Path(include.group(3))
            _read_requirements_file(target if target.is_absolute() else path.parent / target,
                                    packages, skipped, problems, visited, depth + 1)
            continue
        if line.startswith(("-e", "--editable")):
            skipped.append(Skipped(line.split(None, 1)[-1], "editable requirement", where))
            continue
        if line.startswith("-"):
            continue  # pip options: -c, -i, --hash on its own line, --index-url ...
        spec = re.split(r"\s+--?[a-z]", line, maxsplit=1)[0].strip()  # drop --hash=...
        try:
            req = Requirement(spec)
        except InvalidRequirement as exc:
            if re.match(r"^[a-z][a-z0-9+.-]*://|^\.{0,2}/", spec, re.IGNORECASE):
                skipped.append(Skipped(spec, "URL or path requirement", where))
            else:
                problems.append(f"{where}: {str(exc).splitlines()[0]}")
            continue
        if req.marker is not None and not req.marker.evaluate():
            continue
        if req.url:
            skipped.append(Skipped(req.name, "URL requirement", where))
            continue
        pins = [s for s in req.specifier if s.operator in ("==", "===")
                and "*" not in s.version]
        if len(pins) != 1 or len(req.specifier) != 1:
            wanted = str(req.specifier) or "no version"
            skipped.append(Skipped(req.name, f"not pinned to one version ({wanted})", where))
            continue
        try:
            Version(pins[0].version)
        except InvalidVersion:
            skipped.append(Skipped(req.name, f"version {pins[0].version!r} is not PEP 440",
                                   where))
            continue
        key = canonicalize_name(req.name)
        known = packages.get(key)
        if known is not None and Version(known.version) != Version(pins[0].version):
            problems.append(f"{where}: {req.name} pinned to {pins[0].version} but to "
                            f"{known.version} at {known.source}")
            continue
        packages.setdefault(key, Package(req.name, pins[0].version, where))


# -- the audit -----------------------------------------------------------------------------


def audit_dependencies(
    requirements: Sequence[str | Path] | None = None,
    *,
    offline: bool = False,
    service: str = "osv",
    timeout: float = 15.0,
    osv_url: str | None = None,
    cache_dir: str | Path | None = None,
    context: Context | None = None,
) -> DepsReport:
    """Audit the environment (or requirements files) for known vulnerabilities.

    The bundled ML-framework table is always checked. Unless ``offline``, every package is
    also looked up in the vulnerability service; if the service cannot be reached the
    report's ``service_error`` says so (nothing is raised, so the offline findings are kept).

    Args:
        requirements: Requirements files; ``None`` audits the running environment.
        offline: Check only the bundled table.
        service: ``"osv"`` (default) or ``"pypi"``.
        timeout: Seconds to wait for each service response.
        osv_url: Query endpoint of an OSV-compatible service (default: api.osv.dev); a
            mirror or a local server.
        cache_dir: HTTP cache for service responses (default: pip-audit's cache dir).
        context: Receives progress events.

    Raises:
        InputError: The service name is unknown or a requirements file is unusable.
    """
    if service not in SERVICES:
        raise InputError(f"unknown vulnerability service {service!r}",
                         hint=f"use one of {', '.join(SERVICES)}")
    if requirements:
        packages, skipped = read_requirements(requirements)
    else:
        packages, skipped = installed_packages()
    table = load_advisories()
    report = DepsReport(packages=packages, skipped=skipped,
                        findings=check_advisories(packages, table))
    if not offline:
        report.service = service
        known = {(f.evidence["package"], a) for f in report.findings
                 for a in (f.evidence["advisory"], *f.evidence["aliases"])}
        try:
            results = _query_with_pip_audit(packages, service=service, timeout=timeout,
                                            osv_url=osv_url, cache_dir=cache_dir,
                                            context=context)
        except _ServiceUnavailable as exc:
            report.service_error = str(exc)
        else:
            for package, vulns in results:
                for vuln in vulns:
                    if any((package.name, i) in known for i in vuln.ids):
                        continue  # already reported from the bundled table
                    report.findings.append(_service_finding(package, vuln, service))
    report.findings.sort(key=lambda f: (-f.severity, str(f.evidence.get("package", "")).lower(),
                                        f.title))
    return report


def _short_reason(exc: BaseException) -> str:
    """A few words on why a request failed, instead of urllib3's nested repr."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    text = " ".join(str(e) for e in chain)
    for needle, reason in (("Name or service not known", "DNS lookup failed"),
                           ("NameResolutionError", "DNS lookup failed"),
                           ("Temporary failure in name resolution", "DNS lookup failed"),
                           ("Connection refused", "connection refused"),
                           ("timed out", "timed out"), ("Timeout", "timed out"),
                           ("CERTIFICATE_VERIFY_FAILED", "TLS certificate not trusted")):
        if needle in text:
            return reason
    for error in chain:
        response = getattr(error, "response", None)
        if response is not None and getattr(response, "status_code", None):
            return f"HTTP {response.status_code}"
    first = next((str(e) for e in chain if str(e)), type(exc).__name__)
    return first.splitlines()[0][:160]


@dataclass(frozen=True)
class _Vulnerability:
    """A service result, in our terms (pip-audit's classes stay inside one function)."""

    ids: tuple[str, ...]
    description: str
    fixed: tuple[str, ...]


class _ServiceUnavailable(Exception):
    """The vulnerability service could not be reached or did not answer."""


def _service_finding(package: Package, vuln: _Vulnerability, service: str) -> Finding:
    primary = vuln.ids[0]
    fix = (f"Upgrade {package.name} to {vuln.fixed[0]} or later." if vuln.fixed
           else f"No fixed release of {package.name} is known; remove it or mitigate.")
    return Finding(
        check=CHECK_ID,
        # Services do not rate severity consistently: a known vulnerability is at least
        # MEDIUM, the default threshold of `phalanx deps`, so it fails like pip-audit would.
        severity=Severity.MEDIUM,
        title=f"{package.name} {package.version} has a known vulnerability: {primary}",
        detail=vuln.description,
        evidence={"package": package.name, "version": package.version,
                  "source": package.source, "advisory": primary, "aliases": list(vuln.ids[1:]),
                  "fixed": list(vuln.fixed), "database": service},
        remediation=fix,
        refs=REFS,
    )


def _query_with_pip_audit(
    packages: Sequence[Package], *, service: str, timeout: float, osv_url: str | None,
    cache_dir: str | Path | None, context: Context | None,
) -> list[tuple[Package, list[_Vulnerability]]]:
    """Ask OSV or PyPI about every package, through pip-audit.

    pip-audit has no stable library API: its services live in ``pip_audit._service``. This
    function is the only place that touches them, so a change there is fixed here.

    Raises:
        _ServiceUnavailable: The service could not be reached or answered with an error.
    """
    from phalanx._optional import require

    require("pip_audit", extra="supplychain", purpose="the dependency audit")
    import requests
    from pip_audit._service import OsvService, PyPIService
    from pip_audit._service.interface import ResolvedDependency, ServiceError

    cache = Path(cache_dir) if cache_dir is not None else None
    if service == "osv":
        svc: Any = OsvService(cache_dir=cache, timeout=timeout,
                              **({"osv_url": osv_url} if osv_url else {}))
        where = osv_url or getattr(OsvService, "DEFAULT_OSV_URL", "https://api.osv.dev")
    else:
        svc = PyPIService(cache_dir=cache, timeout=timeout)
        where = "https://pypi.org"
    out: list[tuple[Package, list[_Vulnerability]]] = []
    progress = (context or Context()).progress("deps", f"querying {service}",
                                               total=len(packages), unit="packages")
    with progress:
        for package in packages:
            dependency = ResolvedDependency(name=package.name, version=Version(package.version))
            try:
                _, results = svc.query(dependency)
            except (ServiceError, requests.RequestException, OSError) as exc:
                raise _ServiceUnavailable(
                    f"cannot reach the {service} vulnerability service at {where} "
                    f"({_short_reason(exc)})") from exc
            except ValueError as exc:  # a malformed answer (bad JSON, bad version)
                raise _ServiceUnavailable(
                    f"the {service} vulnerability service at {where} gave an unusable "
                    f"answer ({exc})") from exc
            out.append((package, [
                _Vulnerability(ids=tuple(str(i) for i in (r.id, *sorted(r.aliases))),
                               description=r.description,
                               fixed=tuple(str(v) for v in r.fix_versions))
                for r in results
            ]))
            progress.advance()
    return out

"""``phalanx sign``, ``verify``, ``bom`` and ``deps``: model provenance and inventory."""

from __future__ import annotations

import functools
import json
import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from phalanx.cli._common import (
    EXIT_FINDINGS,
    EXIT_OK,
    SEVERITY_STYLE,
    STORE_HELP,
    State,
    make_context,
    parse_fail_on,
    recording,
    say_stored,
    state,
    write_output,
)
from phalanx.core.findings import Finding
from phalanx.core.results import Metric, Result
from phalanx.core.run import Run
from phalanx.errors import InputError, PhalanxError

if TYPE_CHECKING:
    from phalanx.supplychain.deps import DepsReport

_PASSWORD_ENV = "PHALANX_KEY_PASSWORD"


def _choice(value: str, allowed: tuple[str, ...], option: str) -> str:
    value = value.strip().lower()
    if value not in allowed:
        raise InputError(f"unknown {option} {value!r}; expected one of {', '.join(allowed)}")
    return value


def _output_dir_exists(output: Path | None) -> None:
    if output is not None and not output.parent.exists():
        raise InputError(f"directory {output.parent} does not exist")


def _say(st: State, text: str) -> None:
    """A summary line on stderr, unwrapped (logs are grepped), unless --quiet."""
    if not st.quiet:
        st.stderr.print(text, soft_wrap=True)


def _counts(findings: list[Finding]) -> str:
    counts = Counter(f.severity for f in findings)
    parts = [f"[{SEVERITY_STYLE[s]}]{n} {s.label}[/]"
             for s, n in sorted(counts.items(), reverse=True) if n]
    return ", ".join(parts) if parts else "none"


# -- sign / verify ---------------------------------------------------------------------------


def sign(
    ctx: typer.Context,
    model: Path | None = typer.Argument(None, help="Model directory (or single model file) "
                                                   "to sign.", show_default=False),
    key: Path | None = typer.Option(None, "--key", "-k", envvar="PHALANX_SIGNING_KEY",
                                    help="EC private key (PEM, P-256/P-384/P-521). An "
                                         "encrypted key's password is read from "
                                         f"{_PASSWORD_ENV}."),
    signature: Path | None = typer.Option(None, "--signature", "-s",
                                          envvar="PHALANX_SIGNATURE",
                                          help="Where to write the signature (default: "
                                               "MODEL/model.sig, or FILE.sig)."),
    keyless: bool = typer.Option(False, "--keyless", envvar="PHALANX_KEYLESS",
                                 help="Sign with Sigstore (OIDC identity, public "
                                      "transparency log; needs the network)."),
    identity_token: str | None = typer.Option(None, "--identity-token",
                                              envvar="PHALANX_SIGSTORE_TOKEN",
                                              help="OIDC token for --keyless (default: "
                                                   "ambient CI credentials or a browser "
                                                   "sign-in)."),
    staging: bool = typer.Option(False, "--staging", help="Use Sigstore's staging instance."),
    generate_key: Path | None = typer.Option(None, "--generate-key",
                                             help="Create a new key pair here (and "
                                                  "KEY.pub), then sign MODEL with it if "
                                                  "given."),
    curve: str = typer.Option("P-256", "--curve", envvar="PHALANX_KEY_CURVE",
                              help="Curve of --generate-key: P-256, P-384 or P-521."),
    ignore: list[str] = typer.Option([], "--ignore", help="Path inside MODEL to leave out "
                                                         "(repeatable)."),
    store: bool = typer.Option(True, "--store/--no-store", help=STORE_HELP),
) -> None:
    """Sign a model directory in the OpenSSF model-signing format (offline with a key).

    Every file is hashed: a file added, removed or changed afterwards fails verification,
    and so does a signature checked with another key.
    """
    from phalanx.supplychain import signing

    st = state(ctx)
    password = os.environ.get(_PASSWORD_ENV) or None
    modes = sum(x for x in (key is not None, keyless, generate_key is not None))
    if modes > 1:
        raise InputError("give only one of --key, --keyless and --generate-key")
    if generate_key is not None:
        private, public = signing.generate_key_pair(generate_key, curve=curve,
                                                    password=password)
        _say(st, f"wrote private key [bold]{escape(str(private))}[/] (keep it secret) and "
               f"public key [bold]{escape(str(public))}[/] (publish it)")
        if model is None:
            raise typer.Exit(EXIT_OK)
        key = private
    if model is None:
        raise InputError("missing MODEL", hint="phalanx sign MODEL_DIR --key KEY")
    if keyless:
        sign_it = functools.partial(signing.sign_model_keyless, model, signature=signature,
                                    identity_token=identity_token, use_staging=staging,
                                    ignore=ignore)
    elif key is not None:
        sign_it = functools.partial(signing.sign_model, model, key, signature=signature,
                                    password=password, ignore=ignore)
    else:
        raise InputError("no signing key", hint="give --key KEY, --generate-key KEY or "
                                                "--keyless")
    run = Run(command="sign", config={"model": str(model), "keyless": keyless,
                                      "signature": str(signature) if signature else None,
                                      "ignore": list(ignore)})
    with recording(st, run, store=store) as keep:
        signed = sign_it()
        keep(Result(check="model-signature", title="Model signing", target=str(model),
                    params={"method": signed.method, "signature": str(signed.signature),
                            "digest": f"sha256:{signed.digest}", "ignore": list(ignore)},
                    metrics=[Metric("files_signed", float(signed.files))],
                    refs=signing.REFS))
    _say(st, f"signed {signed.files} file(s) of [bold]{escape(str(signed.model))}[/] "
           f"({signed.method}); signature: [bold]{escape(str(signed.signature))}[/]; "
           f"digest sha256:{signed.digest}")
    say_stored(st, run, stored=store)
    raise typer.Exit(EXIT_OK)


def verify(
    ctx: typer.Context,
    model: Path = typer.Argument(..., help="Model directory (or file) to verify.",
                                 show_default=False),
    key: Path | None = typer.Option(None, "--key", "-k", envvar="PHALANX_VERIFY_KEY",
                                    help="The signer's EC public key (PEM)."),
    signature: Path | None = typer.Option(None, "--signature", "-s",
                                          envvar="PHALANX_SIGNATURE",
                                          help="The signature (default: MODEL/model.sig, or "
                                               "FILE.sig)."),
    identity: str | None = typer.Option(None, "--identity", envvar="PHALANX_SIGSTORE_IDENTITY",
                                        help="Sigstore signatures: the signer's identity "
                                             "(e-mail or workflow URI)."),
    issuer: str | None = typer.Option(None, "--issuer", envvar="PHALANX_SIGSTORE_ISSUER",
                                      help="Sigstore signatures: the identity's OIDC issuer."),
    staging: bool = typer.Option(False, "--staging", help="Use Sigstore's staging instance."),
    fmt: str = typer.Option("text", "--format", "-f", envvar="PHALANX_VERIFY_FORMAT",
                            help="text (a line on stderr) or json (on stdout)."),
    output: Path | None = typer.Option(None, "--output", "-o",
                                       help="Write the JSON result here (default: stdout)."),
    store: bool = typer.Option(True, "--store/--no-store", help=STORE_HELP),
) -> None:
    """Verify a model against its signature: exit 0 if every file matches, 1 if not."""
    from phalanx.supplychain import signing

    st = state(ctx)
    fmt = _choice(fmt, ("text", "json"), "--format")
    _output_dir_exists(output)
    if key is not None and (identity or issuer):
        raise InputError("give either --key or --identity/--issuer, not both")
    if key is not None:
        verify_it = functools.partial(signing.verify_model, model, key, signature=signature)
    elif identity and issuer:
        verify_it = functools.partial(signing.verify_model_keyless, model, identity=identity,
                                      issuer=issuer, signature=signature,
                                      use_staging=staging)
    elif identity or issuer:
        raise InputError("Sigstore verification needs both --identity and --issuer")
    else:
        raise InputError("nothing to verify with",
                         hint="give the signer's public key with --key")
    run = Run(command="verify", config={"model": str(model), "key": str(key) if key else None,
                                        "identity": identity, "issuer": issuer,
                                        "signature": str(signature) if signature else None})
    with recording(st, run, store=store) as keep:
        result = verify_it()
        keep(Result(check="model-signature", title="Model signature verification",
                    target=str(model),
                    params={"signature": str(result.signature),
                            "digest": f"sha256:{result.digest}" if result.digest else ""},
                    metrics=[Metric("verified", float(result.verified)),
                             Metric("files", float(result.files))],
                    findings=result.findings(), refs=signing.REFS))
    if fmt == "json":
        write_output((json.dumps(result.to_dict(), indent=2) + "\n").encode(), output)
    if result.verified:
        _say(st, f"[green]verified[/]: {escape(str(result.model))} matches "
               f"{escape(str(result.signature))} ({result.message}; digest "
               f"sha256:{result.digest})")
        say_stored(st, run, stored=store)
        raise typer.Exit(EXIT_OK)
    # A failed verification is the result, not noise: shown even with --quiet.
    st.stderr.print(f"[bold red]verification failed[/]: {escape(str(result.model))}: "
                    f"{escape(result.message)}", soft_wrap=True)
    say_stored(st, run, stored=store)
    raise typer.Exit(EXIT_FINDINGS)


# -- bom ---------------------------------------------------------------------------------------


def bom(
    ctx: typer.Context,
    model: Path = typer.Argument(..., help="Model directory (or single model file).",
                                 show_default=False),
    output: Path | None = typer.Option(None, "--output", "-o",
                                       help="Write the BOM here (default: stdout)."),
    fmt: str = typer.Option("json", "--format", "-f", envvar="PHALANX_BOM_FORMAT",
                            help="json or xml (CycloneDX 1.6)."),
    name: str | None = typer.Option(None, "--name", help="Model name (default: the "
                                                         "directory's name)."),
    version: str | None = typer.Option(None, "--model-version",
                                       help="Model version or revision, if it has one."),
    fail_on: str = typer.Option("none", "--fail-on", envvar="PHALANX_BOM_FAIL_ON",
                                help="Exit 1 if the scan finds this severity (default: "
                                     "none; the verdict is in the BOM)."),
    store: bool = typer.Option(True, "--store/--no-store", help=STORE_HELP),
) -> None:
    """Write a CycloneDX 1.6 ML-BOM: files and hashes, model card, frameworks, scan verdict."""
    from phalanx.supplychain.bom import build_ml_bom

    st = state(ctx)
    threshold = parse_fail_on(fail_on)
    fmt = _choice(fmt, ("json", "xml"), "--format")
    _output_dir_exists(output)
    if not model.exists():
        raise InputError(f"no such model directory or file: {model}")
    run = Run(command="bom", config={"model": str(model), "name": name, "version": version,
                                     "format": fmt})
    with recording(st, run, store=store) as keep:
        result = build_ml_bom(model, name=name, version=version)
        write_output(result.render(fmt).encode("utf-8"), output)
        found = result.findings()
        keep(Result(check="ml-bom", title="ML bill of materials", target=str(model),
                    params={"name": name, "version": version, "format": fmt,
                            "output": str(output) if output else None},
                    metrics=[Metric("files", float(len(result.files))),
                             Metric("datasets_named", float(len(result.card.datasets)))],
                    findings=found, refs=tuple(sorted({r for f in found for r in f.refs}))))
    for note in result.notes:
        _say(st, f"[yellow]note:[/] {escape(note)}")
    formats = Counter(f.format for f in result.files)
    card = result.card
    libs = ", ".join(f"{lib.name} {lib.version}".strip() for lib in result.libraries)
    worst = result.max_severity()
    _say(st, f"ML-BOM for [bold]{escape(str(model))}[/]: {len(result.files)} file(s) "
             f"({escape(', '.join(f'{n} {k}' for k, n in formats.most_common()))})")
    _say(st, f"  license: {escape(', '.join(card.license) or 'unknown')}; datasets: "
             f"{escape(', '.join(card.datasets) or 'none listed')}; frameworks: "
             f"{escape(libs or 'none found')}")
    _say(st, f"  scan: {len(result.scan.findings)} finding(s), worst "
             f"{worst.label if worst is not None else 'none'}: {_counts(result.findings())}")
    if output is not None:
        _say(st, f"  written to {escape(str(output))}")
    say_stored(st, run, stored=store)
    failed = threshold is not None and any(f.severity >= threshold for f in result.findings())
    raise typer.Exit(EXIT_FINDINGS if failed else EXIT_OK)


# -- deps --------------------------------------------------------------------------------------


def deps(
    ctx: typer.Context,
    requirement: list[Path] = typer.Option([], "--requirement", "-r", metavar="FILE",
                                           help="Audit this requirements file (repeatable; "
                                                "only pinned name==version lines) instead "
                                                "of the running environment."),
    fail_on: str = typer.Option("medium", "--fail-on", envvar="PHALANX_FAIL_ON",
                                help="Exit 1 if a finding reaches this severity (or none)."),
    fmt: str = typer.Option("table", "--format", "-f", envvar="PHALANX_DEPS_FORMAT",
                            help="table (on stderr) or json (on stdout)."),
    output: Path | None = typer.Option(None, "--output", "-o",
                                       help="Write the JSON report here (default: stdout)."),
    offline: bool = typer.Option(False, "--offline", envvar="PHALANX_OFFLINE",
                                 help="Only the bundled ML-framework advisories; no "
                                      "vulnerability service."),
    service: str = typer.Option("osv", "--service", envvar="PHALANX_VULN_SERVICE",
                                help="osv or pypi."),
    osv_url: str | None = typer.Option(None, "--osv-url", envvar="PHALANX_OSV_URL",
                                       help="Query endpoint of an OSV mirror."),
    timeout: float = typer.Option(15.0, "--timeout", envvar="PHALANX_VULN_TIMEOUT",
                                  help="Seconds to wait for each service answer."),
    store: bool = typer.Option(True, "--store/--no-store", help=STORE_HELP),
) -> None:
    """Audit Python dependencies for known vulnerabilities (pip-audit), and flag ML frameworks
    whose versions let a crafted model execute code (bundled table, works offline)."""
    from phalanx.supplychain.deps import SERVICES, audit_dependencies

    st = state(ctx)
    threshold = parse_fail_on(fail_on)
    fmt = _choice(fmt, ("table", "json"), "--format")
    service = _choice(service, SERVICES, "--service")
    _output_dir_exists(output)
    if timeout <= 0:
        raise InputError("--timeout must be positive")
    from phalanx.supplychain.deps import CHECK_ID, REFS

    context, sink = make_context(st, None)
    target = ", ".join(str(r) for r in requirement) or "the running Python environment"
    run = Run(command="deps", config={"requirement": [str(r) for r in requirement],
                                      "offline": offline, "service": service})
    with recording(st, run, store=store) as keep:
        with sink.active():
            report = audit_dependencies(requirement or None, offline=offline, service=service,
                                        timeout=timeout, osv_url=osv_url, context=context)
        keep(Result(check=CHECK_ID, title="Dependency audit", target=target,
                    params={"service": report.service or "offline", "offline": offline},
                    metrics=[Metric("packages_audited", float(len(report.packages))),
                             Metric("packages_skipped", float(len(report.skipped)))],
                    findings=list(report.findings), refs=REFS, error=report.service_error))
    if fmt == "json":
        write_output((json.dumps(report.to_dict(), indent=2) + "\n").encode(), output)
    if not st.quiet:
        _deps_summary(st, report, table=fmt == "table", offline=offline)
    say_stored(st, run, stored=store)
    if report.service_error:
        # The offline findings above stand; the audit as a whole is not complete.
        raise PhalanxError(report.service_error,
                           hint="nothing was checked against it; rerun with network access, "
                                "or use --offline for the bundled ML-framework advisories "
                                "only")
    failed = threshold is not None and report.failed(threshold)
    raise typer.Exit(EXIT_FINDINGS if failed else EXIT_OK)


def _deps_summary(st: State, report: DepsReport, *, table: bool, offline: bool) -> None:
    if table and report.findings:
        grid = Table(title="Dependency audit", title_justify="left")
        for column in ("severity", "package", "version", "advisory", "fixed in", "database"):
            grid.add_column(column, no_wrap=column in ("severity", "advisory"),
                            overflow="fold")
        for f in report.findings:
            ev = f.evidence
            fixed = ev.get("fixed")
            fixed_text = ", ".join(fixed) if isinstance(fixed, list) else str(fixed or "")
            grid.add_row(f"[{SEVERITY_STYLE[f.severity]}]{f.severity.label}[/]",
                         escape(str(ev.get("package", ""))), escape(str(ev.get("version", ""))),
                         escape(str(ev.get("advisory", ""))), escape(fixed_text or "-"),
                         escape(str(ev.get("database", ""))))
        st.stderr.print(grid)
    where = (f"{report.service} and the bundled ML-framework advisories" if not offline
             else "the bundled ML-framework advisories only (--offline)")
    _say(st, f"audited {len(report.packages)} package(s) against {where}; findings: "
             f"{_counts(report.findings)}")
    if report.skipped:
        names = ", ".join(f"{s.name} ({s.reason})" for s in report.skipped[:5])
        more = f" and {len(report.skipped) - 5} more" if len(report.skipped) > 5 else ""
        _say(st, f"[yellow]not audited:[/] {escape(names)}{more}")
    if report.service_error:
        _say(st, f"[yellow]incomplete:[/] {report.service} was not reached; only the "
                 "bundled advisories were checked")


__all__ = ["bom", "deps", "sign", "verify"]

"""Sign a model and verify it, in the OpenSSF model-signing format.

A signature covers every file of a model directory: the signer hashes each file (SHA-256 by
default), writes the digests into an in-toto statement, and signs that statement inside a
Sigstore bundle (DSSE envelope). Verification re-hashes the directory and fails on any file
added, removed or changed, on a signature altered after signing, and on a key other than the
signer's. The format is the one of the ``model_signing`` package (OpenSSF Model Signing,
https://github.com/sigstore/model-transparency), which does the hashing and the cryptography
here, so a signature made by its ``model_signing`` command verifies with ``phalanx verify``
and the other way round.

Threat model: an attacker who can change files between the signer and the loader (a
compromised registry, mirror or cache: MITRE ATLAS AML.T0010.003) but holds neither the
private key nor, for Sigstore signatures, the signer's identity. Signing says who published
the files, not that they are safe to load: scan them too (``phalanx scan``).

Two ways to sign:

* **a key pair** (elliptic curve P-256, P-384 or P-521, PEM): works offline.
  :func:`generate_key_pair` makes one.
* **Sigstore, keyless**: a short-lived certificate bound to an OpenID Connect identity and
  logged in a public transparency log. Needs the network.

The signature goes to ``model.sig`` inside the model directory unless told otherwise (the
name the ``model_signing`` command uses), so it travels with the model; it is left out of
what it signs. A single-file model gets ``<file>.sig`` beside it.

Example:
    >>> from phalanx.supplychain.signing import generate_key_pair, sign_model, verify_model
    >>> private, public = generate_key_pair("signing-key.pem")  # doctest: +SKIP
    >>> sign_model("my-model/", private)  # doctest: +SKIP
    >>> verify_model("my-model/", public).verified  # doctest: +SKIP
    True
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import logging
import os
import stat
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from phalanx._optional import require
from phalanx.core.findings import Finding, Severity
from phalanx.errors import InputError, PhalanxError, PhalanxWarning

__all__ = [
    "DEFAULT_SIGNATURE_NAME",
    "REFS",
    "Signed",
    "Verification",
    "default_signature_path",
    "generate_key_pair",
    "sign_model",
    "sign_model_keyless",
    "verify_model",
    "verify_model_keyless",
]

logger = logging.getLogger(__name__)

#: File name of a directory's signature (the ``model_signing`` command's default).
DEFAULT_SIGNATURE_NAME = "model.sig"

#: Taxonomy refs of a failed verification: a tampered model in the supply chain.
REFS: tuple[str, ...] = (
    "atlas:AML.T0010.003",
    "owasp-llm-2025:LLM03",
    "nist-aml-2025:NISTAML.051",
)

_CHECK = "model-signature"
_CURVES = {"P-256": "SECP256R1", "P-384": "SECP384R1", "P-521": "SECP521R1"}
_SUPPORTED_CURVES = {"secp256r1", "secp384r1", "secp521r1"}
_MAX_SIGNATURE_BYTES = 256 * 1024**2
#: Where the command line reads a private key's password from (never from an option).
_PASSWORD_ENV = "PHALANX_KEY_PASSWORD"


@dataclass(frozen=True)
class Signed:
    """A signature written.

    Args:
        model: The model signed (a directory or one file).
        signature: Where the signature was written.
        files: How many files it covers.
        digest: SHA-256 over the sorted file digests: the statement's subject digest, one
            value that names this exact set of files.
        method: ``"key"`` or ``"sigstore"``.
    """

    model: Path
    signature: Path
    files: int
    digest: str
    method: str


@dataclass(frozen=True)
class Verification:
    """The outcome of verifying a model against its signature.

    ``verified`` is true only when the signature is authentic for the key (or identity) and
    every file matches it. Otherwise ``reason`` says why, one of ``"modified"`` (files added,
    removed or changed), ``"wrong-key"``, ``"bad-signature"`` (the signature does not match
    what it claims to sign: altered after signing) and ``"malformed-signature"``.

    Args:
        model: The model verified.
        signature: The signature file read.
        verified: Whether the model is exactly what was signed.
        reason: ``"verified"`` or why not.
        message: One line for a human.
        files: How many files the signature covers.
        digest: The signed subject digest (empty when the signature could not be read).
        added: Files present but not signed.
        removed: Files signed but missing.
        modified: Files whose content changed.
    """

    model: Path
    signature: Path
    verified: bool
    reason: str
    message: str
    files: int = 0
    digest: str = ""
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    modified: tuple[str, ...] = ()

    def findings(self) -> list[Finding]:
        """One HIGH finding when verification failed, none when it passed."""
        if self.verified:
            return []
        return [Finding(
            check=_CHECK,
            severity=Severity.HIGH,
            title=f"Model does not match its signature: {self.message}",
            detail=(
                "The model's files are not the ones that were signed, or the signature is "
                "not authentic for the given key. Loading it runs whatever the files now "
                "contain; a model changed after signing is the supply-chain compromise that "
                "signing exists to catch."
            ),
            evidence={
                "model": str(self.model), "signature": str(self.signature),
                "reason": self.reason, "added": list(self.added),
                "removed": list(self.removed), "modified": list(self.modified),
            },
            remediation=(
                "Do not load the model. Fetch it again from its publisher and verify it; if "
                "the publisher re-signed it, obtain their new public key out of band."
            ),
            refs=REFS,
        )]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return {
            "model": str(self.model),
            "signature": str(self.signature),
            "verified": self.verified,
            "reason": self.reason,
            "message": self.message,
            "files": self.files,
            "digest": self.digest,
            "added": list(self.added),
            "removed": list(self.removed),
            "modified": list(self.modified),
            "findings": [f.to_dict() for f in self.findings()],
        }


def default_signature_path(model: str | Path) -> Path:
    """``MODEL/model.sig`` for a directory, ``MODEL.sig`` for a single file."""
    path = Path(model)
    if path.is_dir():
        return path / DEFAULT_SIGNATURE_NAME
    return path.with_name(path.name + ".sig")


def generate_key_pair(
    private_key: str | Path,
    public_key: str | Path | None = None,
    *,
    curve: str = "P-256",
    password: str | None = None,
) -> tuple[Path, Path]:
    """Write a new elliptic-curve key pair as PEM files.

    The private key file is created readable by its owner only; existing files are never
    overwritten.

    Args:
        private_key: Where to write the private key.
        public_key: Where to write the public key (default: the private key's path with the
            suffix ``.pub``).
        curve: ``"P-256"`` (default), ``"P-384"`` or ``"P-521"``.
        password: Encrypt the private key with this password (default: unencrypted).

    Returns:
        The private and public key paths.

    Raises:
        InputError: A file exists already, its directory does not, or the curve is unknown.
    """
    require("cryptography", extra="supplychain", purpose="model signing")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    if curve not in _CURVES:
        raise InputError(f"unknown curve {curve!r}", hint=f"use one of {', '.join(_CURVES)}")
    priv = Path(private_key)
    pub = Path(public_key) if public_key is not None else priv.with_suffix(".pub")
    if priv == pub:
        raise InputError("the private and public key paths are the same")
    for path in (priv, pub):
        if path.exists():
            raise InputError(f"{path} exists already", hint="choose another name; keys are "
                             "never overwritten")
        if not path.parent.is_dir():
            raise InputError(f"directory {path.parent} does not exist")
    key = ec.generate_private_key(getattr(ec, _CURVES[curve])())
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode()) if password
        else serialization.NoEncryption()
    )
    private_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8, encryption)
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    fd = os.open(priv, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(private_pem)
    pub.write_bytes(public_pem)
    return priv, pub


def sign_model(
    model: str | Path,
    private_key: str | Path,
    *,
    signature: str | Path | None = None,
    password: str | None = None,
    ignore: Iterable[str | Path] = (),
) -> Signed:
    """Sign a model directory (or file) with an elliptic-curve private key, offline.

    Args:
        model: The model directory or file.
        private_key: PEM private key (P-256, P-384 or P-521).
        signature: Where to write the signature (default: :func:`default_signature_path`).
        password: The key's password if it is encrypted.
        ignore: Paths inside the model to leave out of the signature (git files and the
            signature itself are always left out).

    Returns:
        What was signed.

    Raises:
        InputError: The model, key or signature location is unusable.
    """
    ms = _model_signing()
    model_path = _existing_model(model)
    sig_path = _signature_target(model_path, signature)
    key_path = Path(private_key)
    _load_private_key(key_path, password)
    # model_signing 1.1 hands the password straight to cryptography, which wants bytes
    # (its own annotation says str, and a str fails there).
    secret: Any = password.encode() if password else None
    config = (ms.signing.Config()
              .use_elliptic_key_signer(private_key=key_path, password=secret)
              .set_hashing_config(_hashing_for_signing(ms, model_path, sig_path, ignore)))
    with _library_errors(model_path):
        config.sign(model_path, sig_path)
    return _signed(sig_path, model_path, "key")


def sign_model_keyless(
    model: str | Path,
    *,
    signature: str | Path | None = None,
    identity_token: str | None = None,
    use_staging: bool = False,
    ignore: Iterable[str | Path] = (),
) -> Signed:
    """Sign with Sigstore: a short-lived certificate for your OpenID Connect identity.

    Uses ambient credentials (in CI) or ``identity_token`` when given, and otherwise opens
    the browser for an interactive sign-in. Needs the network.

    Args:
        model: The model directory or file.
        signature: Where to write the signature (default: :func:`default_signature_path`).
        identity_token: An OIDC identity token to sign with.
        use_staging: Use Sigstore's staging instance (for tests of the signing setup).
        ignore: Paths inside the model to leave out of the signature.

    Raises:
        PhalanxError: Sigstore cannot be reached or refused to sign.
        InputError: The model or signature location is unusable.
    """
    ms = _model_signing()
    model_path = _existing_model(model)
    sig_path = _signature_target(model_path, signature)
    with _sigstore_errors("sign"):
        config = ms.signing.Config().use_sigstore_signer(
            identity_token=identity_token, use_staging=use_staging,
            use_ambient_credentials=identity_token is None,
        )
    config.set_hashing_config(_hashing_for_signing(ms, model_path, sig_path, ignore))
    with _sigstore_errors("sign"), _library_errors(model_path):
        config.sign(model_path, sig_path)
    return _signed(sig_path, model_path, "sigstore")


def verify_model(
    model: str | Path,
    public_key: str | Path,
    *,
    signature: str | Path | None = None,
) -> Verification:
    """Verify a model against a signature made with an elliptic-curve key.

    Args:
        model: The model directory or file.
        public_key: The signer's PEM public key.
        signature: The signature (default: :func:`default_signature_path`).

    Returns:
        The outcome; ``verified`` is false for a modified model, a wrong key or an altered
        signature. Nothing is raised for those.

    Raises:
        InputError: The model, key or signature file is missing or unreadable.
    """
    ms = _model_signing()
    model_path = _existing_model(model)
    key_path = Path(public_key)
    _load_public_key(key_path)
    return _verify(ms, model_path, signature,
                   lambda cfg: cfg.use_elliptic_key_verifier(public_key=key_path),
                   key_path=key_path, rejections=())


def verify_model_keyless(
    model: str | Path,
    *,
    identity: str,
    issuer: str,
    signature: str | Path | None = None,
    use_staging: bool = False,
) -> Verification:
    """Verify a Sigstore (keyless) signature: who signed it, and that nothing changed.

    Args:
        model: The model directory or file.
        identity: The signer's identity in the certificate (an e-mail or a workflow URI).
        issuer: The OpenID Connect issuer that vouched for it.
        signature: The signature (default: :func:`default_signature_path`).
        use_staging: Use Sigstore's staging instance.

    Raises:
        PhalanxError: Sigstore's trust root cannot be fetched.
        InputError: The model or signature is missing.
    """
    ms = _model_signing()
    model_path = _existing_model(model)
    sigstore_errors = require("sigstore.errors", extra="supplychain")
    with _sigstore_errors("verify"):
        return _verify(ms, model_path, signature,
                       lambda cfg: cfg.use_sigstore_verifier(
                           identity=identity, oidc_issuer=issuer, use_staging=use_staging),
                       key_path=None, rejections=(sigstore_errors.Error,))


# -- internals ---------------------------------------------------------------------------


def _model_signing() -> Any:
    return require("model_signing", extra="supplychain", purpose="model signing")


def _existing_model(model: str | Path) -> Path:
    path = Path(model)
    if not path.exists():
        raise InputError(f"no such model directory or file: {path}")
    if not (path.is_dir() or path.is_file()):
        raise InputError(f"{path} is neither a directory nor a regular file")
    return path


def _signature_target(model: Path, signature: str | Path | None) -> Path:
    sig = Path(signature) if signature is not None else default_signature_path(model)
    if sig.is_dir():
        raise InputError(f"{sig} is a directory", hint="give the signature a file name")
    if not sig.parent.is_dir():
        raise InputError(f"directory {sig.parent} does not exist")
    if model.is_file() and sig.resolve() == model.resolve():
        raise InputError("the signature path is the model file itself")
    return sig


def _inside(model: Path, path: Path) -> PurePosixPath | None:
    """``path`` relative to the model directory, or ``None`` when it lies outside."""
    if not model.is_dir():
        return None
    try:
        return PurePosixPath(path.resolve().relative_to(model.resolve()).as_posix())
    except ValueError:
        return None


def _hashing_for_signing(ms: Any, model: Path, sig: Path, ignore: Iterable[str | Path]) -> Any:
    ignored: list[PurePosixPath] = []
    for item in [sig, *[Path(p) if Path(p).is_absolute() else model / p for p in ignore]]:
        rel = _inside(model, item)
        if rel is not None and str(rel) != ".":
            ignored.append(rel)
    return ms.hashing.Config().set_ignored_paths(paths=ignored, ignore_git_paths=True)


def _load_private_key(path: Path, password: str | None) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    data = _read_key_file(path)
    try:
        key = serialization.load_pem_private_key(
            data, password.encode() if password else None)
    except TypeError as exc:
        if "encrypted" in str(exc) and not password:
            raise InputError(f"private key {path} is encrypted",
                             hint=f"give its password ({_PASSWORD_ENV} on the command line)"
                             ) from None
        raise InputError(f"cannot read private key {path}: {exc}") from None
    except ValueError:
        hint = "is the password right?" if password else "expected a PEM private key"
        raise InputError(f"{path} is not a usable PEM private key", hint=hint) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InputError(f"{path} is not an elliptic-curve key",
                         hint="model signing uses P-256, P-384 or P-521 keys")
    _check_curve(path, key.curve.name)


def _load_public_key(path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    data = _read_key_file(path)
    if b"PRIVATE KEY" in data:
        raise InputError(f"{path} is a private key",
                         hint="verify with the signer's public key")
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise InputError(f"{path} is not a PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise InputError(f"{path} is not an elliptic-curve public key",
                         hint="model signing uses P-256, P-384 or P-521 keys")
    _check_curve(path, key.curve.name)


def _read_key_file(path: Path) -> bytes:
    if not path.is_file():
        raise InputError(f"no such key file: {path}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read key file {path}: {exc.strerror}") from None
    if len(data) > 1024 * 1024:
        raise InputError(f"{path} is too large to be a key file")
    return data


def _check_curve(path: Path, curve: str) -> None:
    if curve not in _SUPPORTED_CURVES:
        raise InputError(f"{path} uses curve {curve}",
                         hint="model signing supports P-256, P-384 and P-521")


@contextlib.contextmanager
def _library_errors(model: Path) -> Iterator[None]:
    """Turn the hashing errors a user can fix into one-line input errors."""
    try:
        yield
    except ValueError as exc:
        if "symlink" in str(exc):
            raise InputError(f"{model} contains a symbolic link; links are not signed",
                             hint="replace it with the file it points to") from None
        if "special file" in str(exc):  # the library's words for a pipe, socket or device
            special = _special_file(model)
            raise InputError(f"{special or model} is not a regular file (a pipe, socket or "
                             "device); it cannot be hashed",
                             hint="move it out of the model directory: model_signing refuses "
                             "one even when --ignore names it") from None
        raise
    except OSError as exc:
        raise InputError(f"cannot read {exc.filename or model}: {exc.strerror}") from None


def _special_file(model: Path) -> Path | None:
    """The first path under ``model`` (or ``model`` itself) that is neither a regular file, a
    directory nor a link: what the hashing refuses."""
    for path in [model, *sorted(model.rglob("*"))] if model.is_dir() else [model]:
        try:
            mode = path.lstat().st_mode
        except OSError:
            continue
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
            return path
    return None


_NETWORK_ERRORS = ("ConnectionError", "DownloadError", "SlowRetrievalError", "Timeout",
                   "NameResolutionError", "MaxRetryError", "NewConnectionError", "gaierror")


def _network_failure(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        names = {cls.__name__ for cls in type(current).__mro__}
        if names & set(_NETWORK_ERRORS) or isinstance(current, OSError):
            return True
        if "TUF metadata" in str(current):
            return True
        current = current.__cause__ or current.__context__
    return False


@contextlib.contextmanager
def _sigstore_errors(action: str) -> Iterator[None]:
    """Sigstore's failures as one line; unreachable services said plainly."""
    sigstore_errors = require("sigstore.errors", extra="supplychain")
    requests = require("requests", extra="supplychain")
    try:
        yield
    except (sigstore_errors.Error, requests.RequestException, OSError) as exc:
        if _network_failure(exc):
            raise PhalanxError(
                f"cannot reach Sigstore to {action} ({_first_line(exc)})",
                hint="check the network, or use a key pair (--key), which works offline",
            ) from exc
        raise PhalanxError(f"Sigstore refused to {action}: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _signed(sig: Path, model: Path, method: str) -> Signed:
    statement = _statement(json.loads(sig.read_text(encoding="utf-8")))
    resources = _resources(statement)
    return Signed(model=model, signature=sig, files=len(_file_names(resources)),
                  digest=_subject_digest(statement), method=method)


def _statement(bundle: Any) -> dict[str, Any]:
    """The in-toto statement inside a Sigstore bundle (not yet authenticated)."""
    envelope = bundle["dsseEnvelope"]
    statement = json.loads(base64.b64decode(envelope["payload"], validate=True))
    if not isinstance(statement, dict):
        raise ValueError("the signed payload is not a JSON object")
    return statement


def _subject_digest(statement: Mapping[str, Any]) -> str:
    subjects = statement.get("subject") or [{}]
    return str(subjects[0].get("digest", {}).get("sha256", ""))


def _resources(statement: Mapping[str, Any]) -> dict[str, str]:
    """Signed resource name -> hex digest (v1.0 predicate; v0.1 kept the files as subjects)."""
    predicate = statement.get("predicate") or {}
    if "resources" in predicate:
        return {str(r["name"]): str(r["digest"]) for r in predicate["resources"]}
    return {str(s["name"]): str(s["digest"]["sha256"]) for s in statement.get("subject", [])}


def _file_names(resources: Iterable[str]) -> set[str]:
    """File names of manifest resources; shard resources are ``path:start:end``."""
    names = set()
    for name in resources:
        parts = name.rsplit(":", 2)
        is_shard = len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit()
        names.add(parts[0] if is_shard else name)
    return names


def _hashing_for_verifying(ms: Any, model: Path, sig: Path, statement: Mapping[str, Any]) -> Any:
    """The hashing the signer used, read from the statement, plus this signature's path."""
    serialization = (statement.get("predicate") or {}).get("serialization")
    config = ms.hashing.Config()
    if isinstance(serialization, Mapping):
        method = serialization.get("method")
        algorithm = serialization.get("hash_type", "sha256")
        symlinks = bool(serialization.get("allow_symlinks", False))
        if method == "files":
            config.use_file_serialization(hashing_algorithm=algorithm, allow_symlinks=symlinks)
        elif method == "shards":
            config.use_shard_serialization(hashing_algorithm=algorithm, allow_symlinks=symlinks,
                                           shard_size=int(serialization["shard_size"]))
        else:
            raise ValueError(f"unknown serialization method {method!r}")
        config.set_allow_symlinks(symlinks)
        signed_ignores = [str(p) for p in serialization.get("ignore_paths", [])]
    else:
        signed_ignores = []
    ignored = [PurePosixPath(p) for p in signed_ignores]
    rel = _inside(model, sig)
    if rel is not None:
        ignored.append(rel)
    # The signer's own ignore list (git files included, when it left them out) is in the
    # statement, so git files are not ignored here on our own account.
    return config.set_ignored_paths(paths=ignored, ignore_git_paths=False)


def _verify(ms: Any, model: Path, signature: str | Path | None, use_verifier: Any,
            key_path: Path | None,
            rejections: tuple[type[BaseException], ...]) -> Verification:
    sig = Path(signature) if signature is not None else default_signature_path(model)
    if not sig.is_file():
        raise InputError(f"no signature at {sig}",
                         hint="sign the model with 'phalanx sign', or give --signature")
    try:
        raw = sig.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read signature {sig}: {exc.strerror}") from None

    def outcome(reason: str, message: str, **extra: Any) -> Verification:
        return Verification(model=model, signature=sig, verified=reason == "verified",
                            reason=reason, message=message, **extra)

    if len(raw) > _MAX_SIGNATURE_BYTES:
        return outcome("malformed-signature", f"{sig} is too large to be a signature")
    try:
        bundle = json.loads(raw)
        statement = _statement(bundle)
        resources = _resources(statement)
        hashing_config = _hashing_for_verifying(ms, model, sig, statement)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError):
        return outcome("malformed-signature", f"{sig} is not a model signature (Sigstore "
                       "bundle with a DSSE envelope); it is damaged or was altered")
    digest = _subject_digest(statement)
    files = len(_file_names(resources))
    if key_path is not None and _key_hint_mismatch(bundle, key_path):
        return outcome("wrong-key", f"{sig} was not made with the key matching {key_path}",
                       files=files, digest=digest)

    from cryptography.exceptions import InvalidSignature

    config = use_verifier(ms.verifying.Config()).set_hashing_config(hashing_config)
    library_output = io.StringIO()
    # The library reads the signature from a path: hand it the very bytes parsed above, so
    # the statement reported is the statement verified.
    with tempfile.TemporaryDirectory(prefix="phalanx-verify-") as tmp:
        copy = Path(tmp, "model.sig")
        copy.write_bytes(raw)
        try:
            with contextlib.redirect_stdout(library_output), _library_errors(model):
                config.verify(model, copy)
        except InvalidSignature:
            return outcome("bad-signature", f"{sig} does not match the content it signs: it "
                           "was altered after signing", files=files, digest=digest)
        except ValueError as exc:
            return _mismatch(hashing_config, model, resources, outcome, exc, files, digest)
        except rejections as exc:  # Sigstore: wrong identity, bad certificate or log entry
            if _network_failure(exc):
                raise
            return outcome("bad-signature", f"Sigstore rejected {sig}: {_first_line(exc)}",
                           files=files, digest=digest)
        finally:
            for line in library_output.getvalue().splitlines():
                if line.strip():
                    warnings.warn(f"model_signing: {line.strip()}", PhalanxWarning,
                                  stacklevel=3)
    return outcome("verified", f"{files} file(s) match the signature", files=files,
                   digest=digest)


def _key_hint_mismatch(bundle: Mapping[str, Any], key_path: Path) -> bool:
    """Whether the bundle names another key (the signer records a hash of its public key)."""
    from cryptography.hazmat.primitives import serialization

    material = bundle.get("verificationMaterial") or {}
    hint = (material.get("publicKey") or {}).get("hint")
    if not hint:
        return False
    key = serialization.load_pem_public_key(key_path.read_bytes())
    pem = key.public_bytes(serialization.Encoding.PEM,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return bool(hashlib.sha256(pem).hexdigest() != hint)


def _mismatch(hashing_config: Any, model: Path, expected: Mapping[str, str],
              outcome: Callable[..., Verification],
              exc: ValueError, files: int, digest: str) -> Verification:
    """Name the files that differ from the (authenticated) signed manifest."""
    with _library_errors(model):
        actual_manifest = hashing_config.hash(model)
    actual = {rd.identifier: rd.digest.digest_hex
              for rd in actual_manifest.resource_descriptors()}
    added = sorted(_file_names(set(actual) - set(expected)))
    removed = sorted(_file_names(set(expected) - set(actual)))
    changed = sorted(_file_names(k for k in set(actual) & set(expected)
                                 if actual[k] != expected[k]))
    if not (added or removed or changed):
        logger.debug("verification failed without a file difference: %s", exc)
        return outcome("malformed-signature", f"the signature is not valid: {_first_line(exc)}",
                       files=files, digest=digest)
    parts = []
    for label, names in (("modified", changed), ("added", added), ("removed", removed)):
        if names:
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5
                                            else "")
            parts.append(f"{label}: {shown}")
    return outcome("modified", "; ".join(parts), files=files, digest=digest,
                   added=tuple(added), removed=tuple(removed), modified=tuple(changed))

"""Model signing: round trips, every kind of tampering, bad keys, and interop with
the OpenSSF ``model_signing`` package (API and command line) in both directions."""

from __future__ import annotations

import base64
import json
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("model_signing")

from phalanx.core.taxonomy import load_taxonomy
from phalanx.errors import InputError, PhalanxError, PhalanxWarning
from phalanx.supplychain.signing import (
    DEFAULT_SIGNATURE_NAME,
    default_signature_path,
    generate_key_pair,
    sign_model,
    sign_model_keyless,
    verify_model,
)


def _network_reachable(host: str = "tuf-repo-cdn.sigstore.dev") -> bool:
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("keys")
    private, public = generate_key_pair(root / "signer.pem")
    other_private, other_public = generate_key_pair(root / "other.pem", curve="P-384")
    return {"private": private, "public": public, "other_private": other_private,
            "other_public": other_public}


@pytest.fixture
def model(tmp_path: Path) -> Path:
    root = tmp_path / "tiny-model"
    (root / "tokenizer").mkdir(parents=True)
    (root / "config.json").write_text('{"model_type": "tiny"}')
    (root / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    (root / "tokenizer" / "vocab.txt").write_text("a\nb\n")
    (root / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    return root


def test_sign_then_verify(model: Path, keys: dict[str, Path]) -> None:
    signed = sign_model(model, keys["private"])
    assert signed.signature == model / DEFAULT_SIGNATURE_NAME == default_signature_path(model)
    assert signed.files == 3  # .gitattributes and the signature itself are left out
    assert len(signed.digest) == 64
    result = verify_model(model, keys["public"])
    assert result.verified and result.reason == "verified"
    assert result.files == 3 and result.digest == signed.digest
    assert result.findings() == []


@pytest.mark.parametrize(
    ("change", "field", "name"),
    [
        (lambda m: (m / "model.safetensors").write_bytes(b"evil"), "modified",
         "model.safetensors"),
        (lambda m: (m / "tokenizer" / "extra.py").write_text("import os"), "added",
         "tokenizer/extra.py"),
        (lambda m: (m / "config.json").unlink(), "removed", "config.json"),
    ],
    ids=["modified", "added", "removed"],
)
def test_any_change_fails_and_names_the_file(model: Path, keys: dict[str, Path], change,
                                             field: str, name: str) -> None:
    sign_model(model, keys["private"])
    change(model)
    result = verify_model(model, keys["public"])
    assert not result.verified and result.reason == "modified"
    assert getattr(result, field) == (name,)
    assert name in result.message
    (finding,) = result.findings()
    assert finding.evidence[field] == [name]
    assert load_taxonomy().unknown(finding.refs) == []


def test_wrong_key_fails(model: Path, keys: dict[str, Path]) -> None:
    sign_model(model, keys["private"])
    result = verify_model(model, keys["other_public"])
    assert not result.verified and result.reason == "wrong-key"
    assert "other.pub" in result.message


def _rewrite_bundle(sig: Path, edit) -> None:
    bundle = json.loads(sig.read_text())
    edit(bundle)
    sig.write_text(json.dumps(bundle))


def test_wrong_key_without_key_hint_still_fails(model: Path, keys: dict[str, Path]) -> None:
    sig = sign_model(model, keys["private"]).signature
    _rewrite_bundle(sig, lambda b: b["verificationMaterial"]["publicKey"].pop("hint"))
    with pytest.warns(PhalanxWarning, match="older verification material"):
        result = verify_model(model, keys["other_public"])
    assert not result.verified and result.reason == "bad-signature"


def test_tampered_signed_manifest_fails(model: Path, keys: dict[str, Path]) -> None:
    """An attacker who swaps a file and edits its digest in the signature is caught."""
    sig = sign_model(model, keys["private"]).signature
    (model / "model.safetensors").write_bytes(b"evil")

    def forge(bundle: dict) -> None:
        statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
        for resource in statement["predicate"]["resources"]:
            if resource["name"] == "model.safetensors":
                import hashlib

                resource["digest"] = hashlib.sha256(b"evil").hexdigest()
        bundle["dsseEnvelope"]["payload"] = base64.b64encode(
            json.dumps(statement).encode()).decode()

    _rewrite_bundle(sig, forge)
    result = verify_model(model, keys["public"])
    assert not result.verified and result.reason == "bad-signature"
    assert "altered" in result.message


@pytest.mark.parametrize("content", [b"", b"not json", b'{"dsseEnvelope": {}}',
                                     b'{"dsseEnvelope": {"payload": "!!!"}}'])
def test_damaged_signature_fails(model: Path, keys: dict[str, Path], content: bytes) -> None:
    sig = sign_model(model, keys["private"]).signature
    sig.write_bytes(content)
    result = verify_model(model, keys["public"])
    assert not result.verified and result.reason == "malformed-signature"


def test_signature_kept_outside_then_moved_inside(model: Path, keys: dict[str, Path],
                                                  tmp_path: Path) -> None:
    outside = tmp_path / "release.sig"
    sign_model(model, keys["private"], signature=outside)
    assert not (model / DEFAULT_SIGNATURE_NAME).exists()
    assert verify_model(model, keys["public"], signature=outside).verified
    inside = model / "release.sig"
    inside.write_bytes(outside.read_bytes())
    assert verify_model(model, keys["public"], signature=inside).verified


def test_ignored_paths_are_not_signed(model: Path, keys: dict[str, Path]) -> None:
    (model / "notes.md").write_text("draft")
    signed = sign_model(model, keys["private"], ignore=["notes.md"])
    assert signed.files == 3
    (model / "notes.md").write_text("changed, and not signed")
    assert verify_model(model, keys["public"]).verified


def test_single_file_model(tmp_path: Path, keys: dict[str, Path]) -> None:
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"\x00" * 100)
    signed = sign_model(weights, keys["private"])
    assert signed.signature == tmp_path / "weights.bin.sig" and signed.files == 1
    assert verify_model(weights, keys["public"]).verified
    weights.write_bytes(b"\x01" * 100)
    assert verify_model(weights, keys["public"]).reason == "modified"


def test_encrypted_key(model: Path, tmp_path: Path) -> None:
    private, public = generate_key_pair(tmp_path / "enc.pem", password="s3cret")
    with pytest.raises(InputError, match="encrypted"):
        sign_model(model, private)
    with pytest.raises(InputError, match="password"):
        sign_model(model, private, password="wrong")
    sign_model(model, private, password="s3cret")
    assert verify_model(model, public).verified


def test_generated_keys(tmp_path: Path) -> None:
    private, public = generate_key_pair(tmp_path / "k.pem", curve="P-521")
    assert public == tmp_path / "k.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"BEGIN PUBLIC KEY" in public.read_bytes()
    with pytest.raises(InputError, match="exists already"):
        generate_key_pair(private)
    with pytest.raises(InputError, match="unknown curve"):
        generate_key_pair(tmp_path / "x.pem", curve="P-192")


def test_bad_keys_and_paths(model: Path, keys: dict[str, Path], tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    rsa_key = tmp_path / "rsa.pem"
    rsa_key.write_bytes(rsa.generate_private_key(public_exponent=65537, key_size=2048)
                        .private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("hello")
    with pytest.raises(InputError, match="not an elliptic-curve key"):
        sign_model(model, rsa_key)
    with pytest.raises(InputError, match="not a usable PEM private key"):
        sign_model(model, garbage)
    with pytest.raises(InputError, match="no such key file"):
        sign_model(model, tmp_path / "missing.pem")
    with pytest.raises(InputError, match="no such model"):
        sign_model(tmp_path / "nope", keys["private"])
    with pytest.raises(InputError, match="does not exist"):
        sign_model(model, keys["private"], signature=tmp_path / "no" / "dir" / "x.sig")
    sign_model(model, keys["private"])
    with pytest.raises(InputError, match="is a private key"):
        verify_model(model, keys["private"])
    with pytest.raises(InputError, match="not a PEM public key"):
        verify_model(model, garbage)
    with pytest.raises(InputError, match="no signature"):
        verify_model(model, keys["public"], signature=tmp_path / "absent.sig")


def test_symbolic_link_is_an_input_error(model: Path, keys: dict[str, Path]) -> None:
    (model / "link.bin").symlink_to(model / "config.json")
    with pytest.raises(InputError, match="symbolic link"):
        sign_model(model, keys["private"])


def test_a_pipe_in_the_model_is_an_input_error(model: Path, keys: dict[str, Path]) -> None:
    """The hashing cannot read a FIFO (nor a socket or device): signing and verifying say
    which file it is, in one line; without it the model verifies again."""
    import os

    sign_model(model, keys["private"])
    pipe = model / "weights.fifo"
    os.mkfifo(pipe)
    with pytest.raises(InputError, match=f"{pipe} is not a regular file"):
        verify_model(model, keys["public"])
    with pytest.raises(InputError, match=f"{pipe} is not a regular file"):
        sign_model(model, keys["private"])
    pipe.unlink()
    assert verify_model(model, keys["public"]).verified


# -- interoperability with the model_signing package ----------------------------------------


def test_model_signing_api_signature_verifies_with_phalanx(model: Path,
                                                           keys: dict[str, Path]) -> None:
    import model_signing

    sig = model / "model.sig"
    (model_signing.signing.Config()
     .use_elliptic_key_signer(private_key=keys["private"])
     .set_hashing_config(model_signing.hashing.Config().set_ignored_paths(
         paths=["model.sig"], ignore_git_paths=True))
     .sign(model, sig))
    assert verify_model(model, keys["public"]).verified
    (model / "config.json").write_text("{}")
    assert verify_model(model, keys["public"]).modified == ("config.json",)


def test_phalanx_signature_verifies_with_model_signing_api(model: Path,
                                                           keys: dict[str, Path]) -> None:
    import model_signing

    sig = sign_model(model, keys["private"]).signature
    verifier = model_signing.verifying.Config().use_elliptic_key_verifier(
        public_key=keys["public"])
    verifier.verify(model, sig)  # raises on failure
    (model / "tokenizer" / "vocab.txt").write_text("changed")
    with pytest.raises(ValueError, match=r"vocab\.txt"):
        model_signing.verifying.Config().use_elliptic_key_verifier(
            public_key=keys["public"]).verify(model, sig)


def _model_signing_cli(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "model_signing", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120, check=False)


def test_model_signing_cli_interop_both_ways(model: Path, keys: dict[str, Path],
                                            tmp_path: Path) -> None:
    # The model_signing command's default: model.sig in the current directory.
    done = _model_signing_cli("sign", "key", model, "--private_key", keys["private"],
                              cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert verify_model(model, keys["public"], signature=tmp_path / "model.sig").verified

    ours = sign_model(model, keys["private"]).signature
    done = _model_signing_cli("verify", "key", model, "--signature", ours, "--public_key",
                              keys["public"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr + done.stdout
    (model / "model.safetensors").write_bytes(b"changed")
    done = _model_signing_cli("verify", "key", model, "--signature", ours, "--public_key",
                              keys["public"], cwd=tmp_path)
    assert done.returncode != 0


@pytest.mark.skipif(_network_reachable(), reason="the network is reachable; this test "
                    "checks the error without it")
def test_keyless_without_network_is_one_clear_error(model: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # Sigstore's trust-root cache goes to the XDG directories: keep it in the test's.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    with pytest.raises(PhalanxError, match="cannot reach Sigstore") as info:
        sign_model_keyless(model)
    assert "\n" not in str(info.value)
    assert not (model / DEFAULT_SIGNATURE_NAME).exists()

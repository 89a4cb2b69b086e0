"""The bundled pickle policy's parsed JSON copy: current, used only for the exact YAML it was
made from, and enough to load the policy without PyYAML."""

from __future__ import annotations

import hashlib
import json
from importlib.resources import files
from pathlib import Path

from phalanx._yaml import safe_load
from phalanx.supplychain.scan.policy import _policy_data, compile_bundled_policy, load_policy

_DIR = files("phalanx.data").joinpath("allowlists")


def test_committed_json_copy_is_current() -> None:
    source = _DIR.joinpath("pickle.yaml").read_bytes()
    doc = json.loads(_DIR.joinpath("pickle.json").read_bytes())
    assert doc["source_sha256"] == hashlib.sha256(source).hexdigest(), (
        "pickle.json is stale: run `make allowlist` after editing pickle.yaml")
    assert doc["policy"] == safe_load(source.decode())


def test_compile_writes_the_copy_the_loader_accepts(tmp_path: Path) -> None:
    written = compile_bundled_policy(tmp_path)
    assert written == tmp_path / "pickle.json"
    assert written.read_bytes() == _DIR.joinpath("pickle.json").read_bytes()


def test_copy_is_used_only_for_the_yaml_it_was_made_from() -> None:
    yaml_a = b"version: 1\necosystems: {}\n"
    yaml_b = b"version: 1\necosystems: {python: {globals: {builtins: [set]}}}\n"
    copy_of_a = json.dumps({"source_sha256": hashlib.sha256(yaml_a).hexdigest(),
                            "policy": {"from": "copy"}}).encode()
    assert _policy_data(yaml_a, copy_of_a) == {"from": "copy"}
    # The YAML was edited after the copy was made: the YAML wins.
    assert _policy_data(yaml_b, copy_of_a) == safe_load(yaml_b.decode())
    # No copy, or a damaged one: the YAML is parsed.
    assert _policy_data(yaml_a, None) == {"version": 1, "ecosystems": {}}
    assert _policy_data(yaml_a, b"{not json") == {"version": 1, "ecosystems": {}}
    assert _policy_data(yaml_a, b"[1, 2]") == {"version": 1, "ecosystems": {}}


def test_bundled_policy_loads_without_pyyaml() -> None:
    import subprocess
    import sys

    code = ("import sys\n"
            "from phalanx.supplychain.scan.policy import load_policy\n"
            "verdict = load_policy().judge('os', 'system', ('python',)).verdict.value\n"
            "print(verdict, 'yaml' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["denied", "False"]
    assert load_policy().judge("builtins", "set", ("python",)).verdict.value == "allowed"

"""Contract checks shipped for plugin authors.

Run them in your own test suite on your plugin, the way phalanx runs them on every registered
built-in (``tests/contract/``)::

    from phalanx.testing import check_plugin, check_attack

    def test_my_attack(classifier, x, y):
        check_plugin(MyAttack)
        check_attack(MyAttack(eps=0.1), classifier, x, y)

Each check raises ``AssertionError`` naming every broken rule.
"""

from __future__ import annotations

import inspect
from typing import Any

from phalanx.core.plugin import Plugin
from phalanx.core.taxonomy import load_taxonomy

__all__ = ["check_attack", "check_plugin", "check_scanner"]


def check_plugin(cls: type[Plugin]) -> None:
    """Check the rules every plugin follows.

    - the constructor takes keyword-only arguments with defaults (the constructor is the
      configuration) and a default instance round-trips through ``get_params``;
    - the class docstring has a one-line summary, an ``Example`` and, for attacks and
      checks, the paper it implements (with a link);
    - every declared taxonomy ref exists in the bundled taxonomy data.
    """
    problems: list[str] = []
    signature = inspect.signature(cls.__init__)
    for p in list(signature.parameters.values())[1:]:
        if p.kind is not p.KEYWORD_ONLY:
            problems.append(f"parameter {p.name!r} must be keyword-only")
        elif p.default is p.empty:
            problems.append(f"parameter {p.name!r} needs a default")
    if not problems:
        instance = cls()
        params = instance.get_params()
        if type(instance)(**params).get_params() != params:
            problems.append("get_params() does not round-trip through the constructor")
        if instance.param_problems():
            problems.append(f"the defaults break constraints: {instance.param_problems()}")
    doc = inspect.getdoc(cls) or ""
    if not doc.strip():
        problems.append("missing docstring")
    elif "Example" not in doc:
        problems.append("docstring has no Example section")
    is_algorithm = getattr(cls, "knowledge", None) is not None or cls.__name__.endswith("Check")
    if is_algorithm and "http" not in (cls.paper or ""):
        problems.append("paper must cite the publication with a link")
    unknown = load_taxonomy().unknown(cls.refs)
    if unknown:
        problems.append(f"unknown taxonomy refs: {unknown}")
    assert not problems, f"{cls.__name__}: " + "; ".join(problems)


def check_attack(attack: Any, classifier: Any, x: Any, y: Any, *, tol: float = 1e-5) -> None:
    """Run ``attack`` and check the invariants every evasion attack keeps.

    - outputs have the inputs' shape and stay inside ``classifier.bounds``;
    - the perturbation stays inside the ``eps`` ball of the attack's norm;
    - ``success`` agrees with the model's predictions on the outputs;
    - the same seed gives the same outputs.
    """
    import torch

    from phalanx.evasion.base import lp_norm

    first = attack.run(classifier, x, y)
    x = torch.as_tensor(x, dtype=torch.float32)
    y = torch.as_tensor(y)
    problems: list[str] = []
    if first.x_adv.shape != x.shape:
        problems.append(f"output shape {tuple(first.x_adv.shape)} != input {tuple(x.shape)}")
    low, high = classifier.bounds
    if float(first.x_adv.min()) < low - tol or float(first.x_adv.max()) > high + tol:
        problems.append("outputs leave the classifier's bounds")
    norm = getattr(attack, "norm", "linf")
    size = float(lp_norm(first.x_adv - x, norm).max()) if len(x) else 0.0
    if size > attack.eps * (1 + 1e-4) + tol:
        problems.append(f"perturbation {size:.6g} exceeds eps={attack.eps:g} in {norm}")
    with torch.no_grad():
        pred = classifier.logits(first.x_adv).argmax(dim=1)
    expected = (pred == first.target) if first.target is not None else (pred != y)
    if not torch.equal(expected.cpu(), first.success.cpu()):
        problems.append("success flags disagree with the model's predictions")
    if getattr(attack, "seed", None) is not None:
        again = attack.run(classifier, x, y)
        if not torch.equal(again.x_adv, first.x_adv):
            problems.append("the same seed gave different outputs")
    assert not problems, f"{type(attack).__name__}: " + "; ".join(problems)


#: Bytes a scanner must survive whatever format it expects: empty, tiny, random, magic
#: numbers of every sniffed format followed by junk, and truncations of them.
_JUNK_PREFIXES: tuple[bytes, ...] = (
    b"", b"\x00", b"\x80", b"\x80\x05\x95", b"PK\x03\x04", b"PK\x05\x06" + b"\x00" * 18,
    b"\x93NUMPY\x01\x00", b"\x89HDF\r\n\x1a\n", b"GGUF\x03\x00\x00\x00", b"\x1f\x8b\x08",
    b"BZh9", b"\xfd7zXZ\x00", b"\x08\x07\x12\x04", b"\x10\x00\x00\x00\x00\x00\x00\x00{",
    b'{"a": ', b"cos\nsystem\n(",
)


def check_scanner(scanner: Any, *, seed: int = 0, rounds: int = 8) -> None:
    """Check the rules every model-file scanner keeps.

    - it declares the formats it handles, each one the sniffer knows;
    - on any bytes, whatever their format, ``scan_source`` yields findings and never raises:
      magic numbers of every format followed by junk, truncations, random bytes;
    - every finding it yields is a ``model-scan`` finding whose evidence names the file, the
      format and the rule.
    """
    import random

    from phalanx.core.findings import Finding
    from phalanx.supplychain.scan.base import ScanSession, Source
    from phalanx.supplychain.scan.sniff import FORMATS

    problems: list[str] = []
    formats = tuple(getattr(scanner, "formats", ()))
    if not formats:
        problems.append("declares no formats")
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        problems.append(f"formats unknown to the sniffer: {unknown}")
    rng = random.Random(seed)
    inputs = [p + rng.randbytes(rng.randrange(0, 600)) for p in _JUNK_PREFIXES
              for _ in range(rounds)]
    session = ScanSession()
    for i, data in enumerate(inputs):
        source = Source.from_bytes(f"junk-{i}", data)
        try:
            findings = list(scanner.scan_source(source, session))
        except Exception as exc:  # the contract is exactly that nothing escapes
            problems.append(f"raised {type(exc).__name__}: {exc} on {data[:16]!r}...")
            break
        for f in findings:
            if not isinstance(f, Finding) or f.check != "model-scan":
                problems.append(f"yielded {f!r}, not a model-scan Finding")
                break
            missing = {"file", "format", "rule"} - set(f.evidence)
            if missing:
                problems.append(f"finding {f.title!r} lacks evidence {sorted(missing)}")
                break
    assert not problems, f"{type(scanner).__name__}: " + "; ".join(problems)

"""The bundled policy's class rules, checked against the libraries installed here.

A class rule allows every name written as a class under some modules (``sklearn.ensemble``,
``torch.nn.modules``, ...). Unpickling resolves a name with ``getattr`` on the module, so the
rule also allows whatever class-like names those modules *import* from elsewhere: if a new
scikit-learn release did ``from subprocess import Popen`` in one of them, a pickle naming
``sklearn.<module>.Popen`` would pass as allowlisted. These tests walk every module under
every rule, take each name the rule allows, and check what it really is, so that such a
re-export fails here (and gets an ``exclude`` entry) instead of widening the allowlist.
"""

from __future__ import annotations

import builtins
import importlib
import inspect
import pkgutil
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from phalanx.supplychain.scan.policy import ClassRule, PicklePolicy, Verdict, load_policy

#: Standard-library modules whose classes are abstract bases, typing constructs or plain
#: containers: constructing one runs no code of the pickle's choosing.
_INERT_STDLIB = frozenset({"abc", "collections", "collections.abc", "numbers", "typing",
                           "types", "enum", "dataclasses"})


def _rules() -> list[tuple[str, ClassRule]]:
    policy = load_policy()
    return [(eco, rule) for eco, ecosystem in sorted(policy.ecosystems.items())
            for rule in ecosystem.classes]


def _modules(root: str) -> Iterator[Any]:
    package = pytest.importorskip(root)
    yield package
    for info in pkgutil.walk_packages(getattr(package, "__path__", []), root + "."):
        if ".tests" in info.name or "._tests" in info.name:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield importlib.import_module(info.name)
        except Exception:  # optional backends, missing extras: unpickling would fail too
            continue


def _allowed(rule: ClassRule) -> Iterator[tuple[str, str, Any]]:
    """Every (module, name, object) the rule allows among the installed modules."""
    for root in rule.modules:
        for module in _modules(root):
            for name in dir(module):
                if rule.matches(module.__name__, name):
                    yield module.__name__, name, getattr(module, name, None)


def _trusted_home(policy: PicklePolicy, rule: ClassRule, name: str, obj: Any) -> bool:
    home = getattr(obj, "__module__", None) or ""
    qualname = getattr(obj, "__qualname__", "")
    if home.partition(".")[0] in {m.partition(".")[0] for m in rule.modules}:
        return True  # the library's own classes, which the rule is there to allow
    if home in _INERT_STDLIB:
        return True
    everything = tuple(policy.ecosystems)
    if qualname and policy.judge(home, qualname, everything).verdict is Verdict.ALLOWED:
        return True  # allowed under its own name anyway (BSpline, OrderedDict, ...)
    if inspect.isclass(obj) and issubclass(obj, BaseException):
        return True  # exceptions the library raises and imports
    # An extension type that names no module of its own reports "builtins" (scipy's SuperLU);
    # a real builtin reached this way would be the object of that name in builtins.
    return home == "builtins" and getattr(builtins, name, None) is not obj


@pytest.mark.parametrize(("eco", "rule"), _rules(),
                         ids=lambda v: v if isinstance(v, str) else v.modules[0])
def test_class_rules_allow_only_classes_from_trusted_homes(eco: str, rule: ClassRule) -> None:
    policy = load_policy()
    seen = 0
    problems = []
    for module, name, obj in _allowed(rule):
        seen += 1
        where = f"{module}.{name}"
        if not callable(obj):
            continue  # constants (dicts, dtypes' instances): calling them fails at load
        home, qualname = getattr(obj, "__module__", "") or "", getattr(obj, "__qualname__", "")
        if qualname and policy.denial(home, qualname) is not None:
            problems.append(f"{where} is {home}.{qualname}, on the deny list")
        elif not (inspect.isclass(obj) or name.startswith("__pyx_unpickle_")
                  or home == "typing"):
            problems.append(f"{where} is a {type(obj).__name__}, not a class")
        elif not _trusted_home(policy, rule, name, obj):
            problems.append(f"{where} is {home}.{qualname}, imported from outside the rule")
    assert seen > 0, f"the {eco} rule for {rule.modules[0]} allows nothing installed here"
    assert not problems, ("class rule allows a re-export; add it to the rule's exclude list "
                          "in pickle.yaml:\n  " + "\n  ".join(problems))


def test_the_check_catches_a_dangerous_re_export(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test above would fail if an allowed module imported ``Popen``: a module of the
    sklearn rule gets one for the length of this test."""
    import subprocess

    sklearn_rule = next(rule for eco, rule in _rules() if eco == "sklearn"
                        and "sklearn.ensemble" in rule.modules)
    ensemble = pytest.importorskip("sklearn.ensemble")
    monkeypatch.setattr(ensemble, "Runner", subprocess.Popen, raising=False)
    with pytest.raises(AssertionError, match=r"sklearn\.ensemble\.Runner is subprocess\.Popen"):
        test_class_rules_allow_only_classes_from_trusted_homes("sklearn", sklearn_rule)
    assert sklearn_rule.matches("sklearn.ensemble", "Runner")

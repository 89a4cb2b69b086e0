"""Every registered plugin passes the contract checks shipped in ``phalanx.testing``."""

from __future__ import annotations

from typing import Any

import pytest

from phalanx.core import PluginInfo, list_plugins, load_plugin
from phalanx.testing import check_attack, check_plugin


@pytest.mark.parametrize("info", list_plugins(), ids=lambda p: f"{p.family}:{p.name}")
def test_plugin_contract(info: PluginInfo) -> None:
    cls = load_plugin(info.family, info.name)
    assert cls.plugin_id() == info.name
    check_plugin(cls)


FAST = {"max_iter": 10, "binary_search_steps": 3, "max_queries": 300, "restarts": 1,
        "n_target_classes": 2, "max_num_evals": 100, "init_num_evals": 20}


@pytest.mark.parametrize("info", list_plugins("attacks"), ids=lambda p: p.name)
def test_attack_contract(info: PluginInfo) -> None:
    torch = pytest.importorskip("torch")
    from phalanx.zoo import load_dataset, load_model

    data = load_dataset("digits", "test")
    x, y = torch.as_tensor(data.x[:48]), torch.as_tensor(data.y[:48])
    model = load_model("digits-mlp")
    cls: Any = load_plugin("attacks", info.name)
    names = set(cls.param_names())
    # The invariants do not depend on the budget of iterations: keep the contract run cheap.
    cheap = {k: v for k, v in FAST.items() if k in names}
    for norm in cls.norms:
        attack = cls(eps=0.2 if norm == "linf" else 1.5, norm=norm, seed=1, **cheap)
        check_attack(attack, model, x, y)


def test_contract_catches_a_broken_plugin() -> None:
    from phalanx.core import Plugin

    class Broken(Plugin):
        refs = ("atlas:AML.T9999",)

        def __init__(self, eps: float) -> None:
            self.eps = eps

    with pytest.raises(AssertionError) as info:
        check_plugin(Broken)
    text = str(info.value)
    assert "keyword-only" in text and "Example" in text and "AML.T9999" in text


@pytest.mark.parametrize("info", list_plugins("scanners"), ids=lambda p: p.name)
def test_scanner_contract(info: PluginInfo) -> None:
    from phalanx.testing import check_scanner

    check_scanner(load_plugin("scanners", info.name)())


def test_scanner_contract_catches_a_crashing_scanner() -> None:
    from phalanx.supplychain.scan import FileScanner

    class Fragile(FileScanner):
        formats = ("pickle",)

        def scan_source(self, source: Any, session: Any) -> Any:
            yield from ()
            raise ValueError(source.head()[:1])

    from phalanx.testing import check_scanner

    with pytest.raises(AssertionError, match="raised ValueError"):
        check_scanner(Fragile())

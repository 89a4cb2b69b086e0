"""Turning what a user names on the command line into a target and data.

A model is named as ``zoo:NAME``, ``module:factory`` (like uvicorn's ``module:app``; the factory
returns an ``nn.Module`` or a ready :class:`~phalanx.core.protocols.Classifier`), or a file whose
format is read from its content, never its extension: a TorchScript archive, an ONNX model, or a
scikit-learn pickle. A pickle is unpickled **only after** the static pickle analyser has
passed it (:mod:`phalanx.supplychain.scan.pickle_vm`): unpickling runs code, so an unscanned or
suspicious pickle is refused.

Data is ``zoo:NAME`` or an ``.npz`` file with arrays ``x`` and ``y`` (loaded with
``allow_pickle=False``).
"""

from __future__ import annotations

import importlib
import re
import sys
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phalanx._optional import require
from phalanx.core.context import Context
from phalanx.errors import DataFormatError, InputError

_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_PICKLE_PROTOCOL_MARK = 0x80


@dataclass(frozen=True)
class Data:
    """Evaluation data: inputs, labels and where they came from."""

    x: Any
    y: Any
    name: str


def load_data(spec: str, *, split: str = "test") -> Data:
    """Load ``zoo:NAME`` or an ``.npz`` file with arrays ``x`` and ``y``.

    Raises:
        InputError: The file is missing.
        DataFormatError: The file is not an ``.npz`` with ``x`` and ``y`` of matching length.
    """
    np = require("numpy", extra="ml")
    if spec.startswith("zoo:"):
        from phalanx.zoo import load_dataset

        data = load_dataset(spec[4:], split)
        return Data(data.x, data.y, spec)
    path = Path(spec)
    if not path.exists():
        raise InputError(f"data file not found: {path}",
                         hint="give zoo:NAME or an .npz file with arrays x and y")
    if path.is_dir():
        raise InputError(f"{path} is a directory, not a data file")
    if not zipfile.is_zipfile(path):
        raise DataFormatError(f"{path} is not an .npz archive",
                              hint="save it with numpy.savez(path, x=..., y=...)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in ("x", "y") if k not in npz.files]
            if missing:
                raise DataFormatError(
                    f"{path} has arrays {sorted(npz.files)} but needs {' and '.join(missing)}")
            x, y = npz["x"], npz["y"]
    except ValueError as exc:  # object arrays would need pickle
        raise DataFormatError(f"{path} cannot be read without unpickling: {exc}") from None
    if not np.issubdtype(x.dtype, np.number) or not np.issubdtype(y.dtype, np.number):
        raise DataFormatError(f"{path}: x and y must be numeric arrays")
    if len(x) != len(y) or y.ndim != 1:
        raise DataFormatError(f"{path}: x has {len(x)} samples but y has shape {y.shape}")
    return Data(x.astype("float32"), y.astype("int64"), str(path))


def load_target(
    spec: str,
    *,
    input_shape: tuple[int, ...] | None = None,
    bounds: tuple[float, float] = (0.0, 1.0),
    context: Context | None = None,
) -> Any:
    """Resolve a model spec to a Classifier.

    Args:
        spec: ``zoo:NAME``, ``module:factory`` or a model file path.
        input_shape: Shape of one input (taken from the data by the CLI); needed for
            factories and files that do not declare it.
        bounds: Valid input range.
        context: Progress events (zoo models train on first use).

    Raises:
        InputError: The spec names nothing loadable.
        DataFormatError: The file's format is unknown or unsupported.
        UnsafeModelError: A pickle failed the static scan and was not loaded.
    """
    if spec.startswith("zoo:"):
        from phalanx.zoo import load_model

        model = load_model(spec[4:], context=context)
        if bounds != tuple(model.bounds):
            model.bounds = bounds
        return model
    path = Path(spec)
    if path.exists():
        return _load_file(path, input_shape=input_shape, bounds=bounds)
    if _FACTORY.match(spec):
        return _from_factory(spec, input_shape=input_shape, bounds=bounds)
    raise InputError(f"model not found: {spec}",
                     hint="give zoo:NAME, module:factory, or a model file")


def _from_factory(spec: str, *, input_shape: tuple[int, ...] | None,
                  bounds: tuple[float, float]) -> Any:
    module_name, attr = spec.split(":")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # like `python -m`: modules in the working directory resolve
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"cannot import {module_name!r} for {spec}: {exc}") from None
    factory = getattr(module, attr, None)
    if factory is None:
        raise InputError(f"{module_name!r} has no attribute {attr!r}")
    obj = factory() if callable(factory) and not _is_module(factory) else factory
    if hasattr(obj, "logits") and hasattr(obj, "num_classes"):
        return obj
    if _is_module(obj):
        from phalanx.adapters import TorchClassifier

        return TorchClassifier(obj, input_shape=input_shape, bounds=bounds)
    raise InputError(f"{spec} returned {type(obj).__name__}, not an nn.Module or Classifier")


def _is_module(obj: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def _load_file(path: Path, *, input_shape: tuple[int, ...] | None,
               bounds: tuple[float, float]) -> Any:
    if path.is_dir():
        raise InputError(f"{path} is a directory, not a model file")
    with path.open("rb") as fh:
        head = fh.read(8)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
        if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
            return _torchscript(path, input_shape=input_shape, bounds=bounds)
        if any(n.endswith("/data.pkl") for n in names):
            raise DataFormatError(
                f"{path} is a pickled PyTorch checkpoint (torch.save), which runs code when "
                "loaded", hint="export it with torch.jit.save or to ONNX, or pass a "
                "module:factory that builds the model and loads its state_dict")
        raise DataFormatError(f"{path} is a zip archive but not a TorchScript model")
    if head[:1] == bytes([_PICKLE_PROTOCOL_MARK]) or path.suffix in (".pkl", ".pickle"):
        return _sklearn_pickle(path, input_shape=input_shape, bounds=bounds)
    if _looks_like_onnx(path):
        from phalanx.adapters import OnnxClassifier

        return OnnxClassifier(path, input_shape=input_shape, bounds=bounds)
    raise DataFormatError(f"{path}: unknown model format",
                          hint="supported: TorchScript, ONNX, scanned scikit-learn pickles")


def _looks_like_onnx(path: Path) -> bool:
    onnx = require("onnx", extra="onnx", purpose="reading ONNX models")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:
        return False
    return bool(model.graph.node)


def _torchscript(path: Path, *, input_shape: tuple[int, ...] | None,
                 bounds: tuple[float, float]) -> Any:
    torch = require("torch", extra="ml")
    from phalanx.adapters import TorchClassifier

    try:
        with warnings.catch_warnings():  # TorchScript is deprecated upstream but still loads
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu")
    except RuntimeError as exc:
        raise DataFormatError(f"{path}: not a loadable TorchScript archive: "
                              f"{str(exc).splitlines()[0]}") from None
    return TorchClassifier(module, input_shape=input_shape, bounds=bounds)


class UnsafeModelError(InputError):
    """A model file failed the static scan and was not loaded."""


def _sklearn_pickle(path: Path, *, input_shape: tuple[int, ...] | None,
                    bounds: tuple[float, float]) -> Any:
    from phalanx.core.findings import Severity
    from phalanx.supplychain.scan.pickle_vm import scan_pickle_file

    report = scan_pickle_file(path)
    if not report.allows_unpickling(Severity.MEDIUM):
        blocking = [f for f in report.findings if f.severity >= Severity.MEDIUM]
        worst = max(blocking, key=lambda f: f.severity)
        raise UnsafeModelError(
            f"refusing to unpickle {path}: the static scan found {len(blocking)} problem(s), "
            f"worst {worst.severity.label}: {worst.title}",
            hint=f"inspect it with `phalanx scan {path}`; export the model to ONNX instead")
    import pickle

    with path.open("rb") as fh:
        estimator = pickle.load(fh)
    from phalanx.adapters import SklearnClassifier

    if not hasattr(estimator, "predict"):
        raise DataFormatError(f"{path} holds a {type(estimator).__name__}, not an estimator")
    return SklearnClassifier(estimator, input_shape=input_shape, bounds=bounds)

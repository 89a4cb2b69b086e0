"""The Keras scanner: ``.h5`` models (Keras 2 and the legacy format), ``.keras`` archives
(Keras 3) and any HDF5 file, read without Keras and without running what they contain.

Where code hides in a Keras model:

- **Lambda layers.** Keras serialises a ``lambda`` as its *marshalled bytecode* (base64), and
  ``load_model`` rebuilds and later runs it: code execution as soon as the model is called
  (CVE-2024-3660 for Keras < 2.13, which had no ``safe_mode``; CVE-2025-9905, ``safe_mode``
  ignored for ``.h5`` files before Keras 3.11.3). Every Lambda layer is CRITICAL; the
  bytecode is described statically (names it uses, constants, functions), never loaded with
  :func:`marshal.loads` (its docs warn it is not safe against crafted data, and it has
  crashed on such data before) and never executed.
- **Module references.** Keras 3 configs name a ``module`` and a ``class_name`` (or a
  function), which Keras before 3.9 imports and calls during loading even with
  ``safe_mode=True`` (CVE-2025-1550): a ``config.json`` that names ``os``, ``subprocess`` or
  ``builtins.exec`` is CRITICAL. References to other non-Keras modules are *custom objects*
  (MEDIUM: loading needs code that is not in the file).
- **Keras's own gadgets.** Functions inside Keras that defeat ``safe_mode`` when a config
  calls them: ``keras.utils.get_file`` (CVE-2025-8747, download and overwrite any file),
  ``keras.config.enable_unsafe_deserialization`` (CVE-2025-9906), ``func_load``; layers that
  load outside data: ``TFSMLayer`` (CVE-2026-1462, runs an external SavedModel),
  ``StringLookup``/``IntegerLookup``/``TextVectorization`` with a vocabulary *path*
  (CVE-2025-12058, reads local files or URLs), ``TorchModuleWrapper`` (unpickles a PyTorch
  module), and layer names with ``..`` (CVE-2026-12479, path traversal on save/load).
- **HDF5 pointers out of the file.** External links, external storage and virtual datasets
  make an HDF5 reader open other files (MEDIUM).

Module names are judged with the pickle policy's deny list (:mod:`.policy`), so ``os``,
``subprocess``, ``builtins.eval`` and the rest are recognised with the same reasons as in a
pickle.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import importlib.util
import io
import json
import logging
import os
import re
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, cast

from phalanx.core.findings import Finding, Severity
from phalanx.supplychain.scan.base import BUNDLED_FORMATS, FileScanner, ScanSession, Source
from phalanx.supplychain.scan.pickle_vm import REFS
from phalanx.supplychain.scan.policy import PicklePolicy

__all__ = ["ConfigIssue", "KerasScanner", "analyse_config", "describe_code", "hdf5_probe"]

logger = logging.getLogger(__name__)

_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_MISSING_H5PY = "h5py is not installed (pip install 'phalanx[supplychain]')"

#: Packages whose modules Keras 3.9+ agrees to import while loading (plus Keras 2's homes).
KERAS_PACKAGES = frozenset({"keras", "keras_hub", "keras_cv", "keras_nlp", "keras_rs",
                            "tf_keras"})
_KERAS_PREFIXES = ("tensorflow.keras", "tensorflow.python.keras")

#: Objects Keras encodes as ``{"class_name": "__x__", ...}``: values, not code references.
_VALUE_TYPES = frozenset({
    "__tuple__", "__bytes__", "__numpy__", "__tensor__", "__keras_tensor__", "__slice__",
    "__ellipsis__", "__typespec__", "TensorShape", "TypeSpec",
})

#: Public Keras classes (Keras 2 and 3): layers, models, initializers, regularizers,
#: constraints, optimizers, schedules, losses, metrics, dtype policies. A Keras 2 config
#: names classes without a module, so a name outside this set is a custom object.
BUILTIN_CLASSES = frozenset({
    "Activation", "ActivityRegularization", "Add", "AdditiveAttention", "AlphaDropout",
    "Attention", "AugMix", "AutoContrast", "Average", "AveragePooling1D", "AveragePooling2D",
    "AveragePooling3D", "AvgPool1D", "AvgPool2D", "AvgPool3D", "BatchNormalization",
    "Bidirectional", "CategoryEncoding", "CenterCrop", "Concatenate", "Conv1D", "Conv1DTranspose",
    "Conv2D", "Conv2DTranspose", "Conv3D", "Conv3DTranspose", "ConvLSTM1D", "ConvLSTM2D",
    "ConvLSTM3D", "Convolution1D", "Convolution1DTranspose", "Convolution2D",
    "Convolution2DTranspose", "Convolution3D", "Convolution3DTranspose", "Cropping1D",
    "Cropping2D", "Cropping3D", "CuDNNGRU", "CuDNNLSTM", "CutMix", "Dense", "DenseFeatures",
    "DepthwiseConv1D", "DepthwiseConv2D", "Discretization", "Dot", "Dropout", "ELU", "EinsumDense",
    "Embedding", "Equalization", "Flatten", "GRU", "GRUCell", "GaussianDropout", "GaussianNoise",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D",
    "GlobalAvgPool1D", "GlobalAvgPool2D", "GlobalAvgPool3D", "GlobalMaxPool1D", "GlobalMaxPool2D",
    "GlobalMaxPool3D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D",
    "GroupNormalization", "GroupQueryAttention", "HashedCrossing", "Hashing", "Identity", "Input",
    "InputLayer", "InputSpec", "IntegerLookup", "LSTM", "LSTMCell", "Layer", "LayerNormalization",
    "LeakyReLU", "LocallyConnected1D", "LocallyConnected2D", "Masking", "MaxPool1D", "MaxPool2D",
    "MaxPool3D", "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "Maximum", "MelSpectrogram",
    "Minimum", "MixUp", "MultiHeadAttention", "Multiply", "Normalization", "PReLU", "Permute",
    "Pipeline", "RMSNormalization", "RNN", "RandAugment", "RandomBrightness",
    "RandomColorDegeneration", "RandomColorJitter", "RandomContrast", "RandomCrop",
    "RandomErasing", "RandomFlip", "RandomGaussianBlur", "RandomGrayscale", "RandomHeight",
    "RandomHue", "RandomInvert", "RandomPerspective", "RandomPosterization", "RandomRotation",
    "RandomSaturation", "RandomSharpness", "RandomShear", "RandomTranslation", "RandomWidth",
    "RandomZoom", "ReLU", "RepeatVector", "Rescaling", "Reshape", "Resizing", "STFTSpectrogram",
    "SeparableConv1D", "SeparableConv2D", "SeparableConvolution1D", "SeparableConvolution2D",
    "SimpleRNN", "SimpleRNNCell", "Softmax", "Solarization", "SpatialDropout1D",
    "SpatialDropout2D", "SpatialDropout3D", "SpectralNormalization", "StackedRNNCells",
    "StringLookup", "Subtract", "TextVectorization", "ThresholdedReLU", "TimeDistributed",
    "UnitNormalization", "UpSampling1D", "UpSampling2D", "UpSampling3D", "Wrapper",
    "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Functional", "Model", "Sequential",
    "Constant", "GlorotNormal", "GlorotUniform", "HeNormal", "HeUniform", "IdentityInitializer",
    "LecunNormal", "LecunUniform", "Ones", "Orthogonal", "OrthogonalInitializer", "RandomNormal",
    "RandomUniform", "STFTInitializer", "TruncatedNormal", "VarianceScaling", "Zeros", "L1",
    "L1L2", "L2", "OrthogonalRegularizer", "Regularizer", "Constraint", "MaxNorm", "MinMaxNorm",
    "NonNeg", "RadialConstraint", "UnitNorm", "Adadelta", "Adafactor", "Adagrad", "Adam", "AdamW",
    "Adamax", "Ftrl", "Lamb", "Lion", "LossScaleOptimizer", "Muon", "Nadam", "RMSprop", "SGD",
    "CosineDecay", "CosineDecayRestarts", "ExponentialDecay", "InverseTimeDecay",
    "LearningRateSchedule", "PiecewiseConstantDecay", "PolynomialDecay", "BinaryCrossentropy",
    "BinaryFocalCrossentropy", "CTC", "CategoricalCrossentropy", "CategoricalFocalCrossentropy",
    "CategoricalHinge", "Circle", "CosineSimilarity", "Dice", "Hinge", "Huber", "KLDivergence",
    "LogCosh", "Loss", "LossFunctionWrapper", "MeanAbsoluteError", "MeanAbsolutePercentageError",
    "MeanSquaredError", "MeanSquaredLogarithmicError", "Poisson", "SparseCategoricalCrossentropy",
    "SquaredHinge", "Tversky", "AUC", "Accuracy", "BinaryAccuracy", "BinaryIoU",
    "CategoricalAccuracy", "ConcordanceCorrelation", "F1Score", "FBetaScore", "FalseNegatives",
    "FalsePositives", "IoU", "LogCoshError", "Mean", "MeanIoU", "MeanMetricWrapper", "Metric",
    "OneHotIoU", "OneHotMeanIoU", "PearsonCorrelation", "PrecisionAtRecall", "Precision",
    "R2Score", "Recall", "RecallAtPrecision", "RootMeanSquaredError", "SensitivityAtSpecificity",
    "SparseCategoricalAccuracy", "SparseTopKCategoricalAccuracy", "SpecificityAtSensitivity",
    "Sum", "TopKCategoricalAccuracy", "TrueNegatives", "TruePositives", "DTypePolicy",
    "DTypePolicyMap", "FloatDTypePolicy", "Policy", "PolicyV1", "QuantizedDTypePolicy",
    "QuantizedFloat8DTypePolicy",
})

#: Names of Keras's built-in functions (activations, losses, metrics, initializers...),
#: which configs may name as plain strings or under ``module: "builtins"``.
BUILTIN_FUNCTIONS = frozenset({
    "celu", "elu", "exponential", "gelu", "glu", "hard_shrink", "hard_sigmoid", "hard_silu",
    "hard_swish", "hard_tanh", "leaky_relu", "linear", "log_sigmoid", "log_softmax", "mish",
    "relu", "relu6", "selu", "sigmoid", "silu", "soft_shrink", "softmax", "softplus", "softsign",
    "sparse_plus", "sparse_sigmoid", "sparsemax", "squareplus", "swish", "tanh", "tanh_shrink",
    "threshold", "binary_crossentropy", "binary_focal_crossentropy", "categorical_crossentropy",
    "categorical_focal_crossentropy", "categorical_hinge", "circle", "cosine_similarity", "ctc",
    "dice", "hinge", "huber", "kl_divergence", "kld", "kullback_leibler_divergence", "log_cosh",
    "logcosh", "mae", "mape", "mean_absolute_error", "mean_absolute_percentage_error",
    "mean_squared_error", "mean_squared_logarithmic_error", "mse", "msle", "poisson",
    "sparse_categorical_crossentropy", "squared_hinge", "tversky", "acc", "accuracy",
    "binary_accuracy", "categorical_accuracy", "ce", "crossentropy", "sparse_categorical_accuracy",
    "sparse_top_k_categorical_accuracy", "top_k_categorical_accuracy", "constant", "glorot_normal",
    "glorot_uniform", "he_normal", "he_uniform", "identity", "lecun_normal", "lecun_uniform",
    "normal", "one", "ones", "orthogonal", "random_normal", "random_uniform", "truncated_normal",
    "uniform", "variance_scaling", "zero", "zeros", "l1", "l1_l2", "l2", "orthogonal_regularizer",
    "max_norm", "min_max_norm", "non_neg", "radial_constraint", "unit_norm",
})

#: Functions inside Keras that a config can reach while ``safe_mode`` lets it through.
_GADGETS: dict[str, tuple[Severity, str, str]] = {
    "get_file": (Severity.CRITICAL, "CVE-2025-8747",
                 "downloads a URL to any local path (arbitrary file overwrite)"),
    "enable_unsafe_deserialization": (Severity.CRITICAL, "CVE-2025-9906",
                                      "switches safe_mode off for the rest of the load"),
    "func_load": (Severity.CRITICAL, "CVE-2025-1550",
                  "rebuilds a function from marshalled bytecode"),
    "load_model": (Severity.HIGH, "CVE-2025-1550", "loads another model file"),
    "load_weights": (Severity.HIGH, "CVE-2025-1550", "reads another weights file"),
}

#: Layers whose configuration makes Keras read outside data.
_LOOKUP_LAYERS = frozenset({"StringLookup", "IntegerLookup", "TextVectorization",
                            "IndexLookup"})

#: Names a code object may use that mean it reaches the system (reported as evidence).
_SUSPICIOUS_NAMES = frozenset({
    "os", "posix", "nt", "system", "popen", "Popen", "subprocess", "call", "check_call",
    "check_output", "run", "spawn", "spawnv", "execv", "execve", "execl", "fork", "eval", "exec",
    "compile", "__import__", "__builtins__", "builtins", "open", "getattr", "setattr", "globals",
    "socket", "urllib", "request", "requests", "http", "urlopen", "shutil", "rmtree", "remove",
    "unlink", "pickle", "marshal", "loads", "ctypes", "importlib", "import_module", "pty",
    "webbrowser",
})

_SEPARATORS = re.compile(r"[\\/]")
_MAX_PATH = 400


@dataclass(frozen=True)
class ConfigIssue:
    """One problem found in a Keras config (turned into a finding by the scanner).

    Args:
        rule: Stable rule id (``"keras-lambda"``).
        severity: How bad.
        title: One line.
        detail: Why it matters.
        evidence: What was found, where (``paths`` are JSON paths in the config).
    """

    rule: str
    severity: Severity
    title: str
    detail: str
    evidence: dict[str, Any] = field(default_factory=dict)


# -- the config walk ---------------------------------------------------------------------------


def _is_keras_module(module: str) -> bool:
    return module.split(".", 1)[0] in KERAS_PACKAGES or module.startswith(_KERAS_PREFIXES)


def _escapes(name: str) -> bool:
    """Whether a name used as a path leaves its directory (``..``, absolute, drive)."""
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:[\\/]", name):
        return True
    return ".." in _SEPARATORS.split(name)


class _Walk:
    """The state of one config walk: issues collapsed by what they are about."""

    def __init__(self, policy: PicklePolicy | None, max_nodes: int) -> None:
        self.policy = policy
        self.max_nodes = max_nodes
        self.issues: dict[tuple[Any, ...], ConfigIssue] = {}
        self.handled: set[int] = set()

    def add(self, key: tuple[Any, ...], issue: ConfigIssue, path: str) -> None:
        known = self.issues.get(key)
        if known is None:
            issue.evidence.setdefault("paths", [])
            issue.evidence["paths"].append(path)
            issue.evidence["count"] = 1
            self.issues[key] = issue
            return
        known.evidence["count"] += 1
        if len(known.evidence["paths"]) < 8:
            known.evidence["paths"].append(path)

    def denial(self, module: str, name: str) -> tuple[Severity, str, str] | None:
        if self.policy is None:
            return None
        rule = self.policy.denial(module, name)
        if rule is None:
            return None
        return rule.severity, rule.id, rule.reason


def analyse_config(config: Any, *, policy: PicklePolicy | None = None,
                   max_nodes: int = 2_000_000) -> list[ConfigIssue]:
    """Every issue in a parsed Keras config (``model_config``, ``config.json``, metadata).

    The walk visits every dict and list (iteratively, so deep nesting cannot overflow the
    stack) and judges every object reference in it: ``{"class_name": ..., "module": ...,
    "config": ...}`` anywhere, whatever key holds it, so nested models, wrappers
    (``TimeDistributed``, ``Bidirectional``), ``compile_config`` and ``training_config`` are
    all covered.

    Args:
        config: The decoded JSON.
        policy: The pickle policy whose deny list judges module names (``None``: only the
            Keras-specific rules apply).
        max_nodes: Most JSON values visited; past it an ``incomplete`` issue is returned.

    Returns:
        Issues, most severe first; repeated ones collapsed with a count and their paths.
    """
    walk = _Walk(policy, max_nodes)
    stack: list[tuple[Any, str]] = [(config, "$")]
    seen = 0
    while stack:
        value, path = stack.pop()
        seen += 1
        if seen > max_nodes:
            walk.add(("limit",), ConfigIssue(
                "keras-config-limit", Severity.MEDIUM, "Keras config too large to check",
                f"The config has more than {max_nodes} values; the rest was not checked.",
                {"incomplete": True}), path)
            break
        long = len(path) > _MAX_PATH  # deep nesting: stop growing the path (cost, not safety)
        if isinstance(value, dict):
            if isinstance(value.get("class_name"), str) and id(value) not in walk.handled:
                _judge_object(walk, value, path)
            for key, child in value.items():
                where = path if long else f"{path}.{str(key)[:64]}"
                if isinstance(child, (dict, list)):
                    stack.append((child, where))
                elif key in ("activation", "recurrent_activation") and isinstance(child, str):
                    _judge_function_name(walk, child, where)
        elif isinstance(value, list):
            for i, child in enumerate(value):
                if isinstance(child, (dict, list)):
                    stack.append((child, path if long else f"{path}[{i}]"))
    return sorted(walk.issues.values(), key=lambda issue: -issue.severity)


def _judge_function_name(walk: _Walk, name: str, path: str) -> None:
    if name in BUILTIN_FUNCTIONS or not name:
        return
    walk.add(("custom-fn", name), ConfigIssue(
        "keras-custom-object", Severity.LOW, f"Custom function {name!r} named in the config",
        "The config names a function Keras does not define. A name alone cannot run code: "
        "loading fails unless the loading program registers a function of that name.",
        {"name": name}), path)


def _judge_object(walk: _Walk, obj: dict[str, Any], path: str) -> None:
    cls: str = obj["class_name"]
    inner = obj.get("config")
    module = obj.get("module")
    name = inner if cls == "function" and isinstance(inner, str) else cls

    if cls == "Lambda":
        _judge_lambda(walk, obj, path)
    elif cls == "__lambda__":
        _judge_serialised_lambda(walk, obj, path)
    elif cls == "TFSMLayer":
        filepath = inner.get("filepath") if isinstance(inner, dict) else None
        walk.add(("tfsm", str(filepath)), ConfigIssue(
            "keras-external-model", Severity.HIGH, "TFSMLayer loads an external SavedModel",
            "A TFSMLayer loads and runs the TensorFlow SavedModel at a path the config "
            "chooses, even with safe_mode=True (CVE-2026-1462): the graph it runs is not in "
            "this file and was not scanned.",
            {"filepath": str(filepath)[:300], "cve": "CVE-2026-1462"}), path)
    elif cls == "TorchModuleWrapper":
        walk.add(("torch-wrapper",), ConfigIssue(
            "keras-torch-module", Severity.CRITICAL,
            "TorchModuleWrapper embeds a pickled PyTorch module",
            "Keras rebuilds a TorchModuleWrapper by unpickling the PyTorch module stored in "
            "its config (torch.load without weights_only), which runs any code the pickle "
            "names.", {}), path)
    if cls in _LOOKUP_LAYERS and isinstance(inner, dict):
        vocabulary = inner.get("vocabulary")
        if isinstance(vocabulary, str):
            walk.add(("vocab", vocabulary), ConfigIssue(
                "keras-file-reference", Severity.HIGH,
                f"{cls} reads its vocabulary from a path",
                "Keras opens the vocabulary path while loading the model, even with "
                "safe_mode=True (CVE-2025-12058): it reads a local file into the model, or "
                "fetches a URL through tf.io.gfile (server-side request forgery).",
                {"vocabulary": vocabulary[:300], "cve": "CVE-2025-12058"}), path)
    if isinstance(inner, dict) and isinstance(inner.get("name"), str) and _escapes(inner["name"]):
        walk.add(("name", inner["name"]), ConfigIssue(
            "keras-path-traversal", Severity.HIGH,
            f"Object name {inner['name'][:80]!r} escapes its directory",
            "Keras builds directories from layer names when it saves and loads large models "
            "(CVE-2026-12479): a '..' component or an absolute name writes outside the "
            "temporary directory.", {"name": inner["name"][:300], "cve": "CVE-2026-12479"}),
            path)

    if cls in _VALUE_TYPES:
        if cls == "__typespec__" and isinstance(module, str):
            top = module.split(".", 1)[0]
            if top != "tensorflow" and not _is_keras_module(module):
                _judge_module(walk, module, str(obj.get("spec_name", "")), path)
        return
    if isinstance(module, str) and module:
        if _is_keras_module(module):
            gadget = _GADGETS.get(name) if cls == "function" else None
            if gadget is not None:
                severity, cve, what = gadget
                walk.add(("gadget", module, name), ConfigIssue(
                    "keras-safe-mode-bypass", severity,
                    f"Config calls {module}.{name}, which {what}",
                    f"{module}.{name} is inside Keras, so the module check Keras added for "
                    f"CVE-2025-1550 lets it through and safe_mode does not stop it ({cve}).",
                    {"module": module, "name": name, "cve": cve}), path)
            return
        if module == "builtins" and cls == "function" and name in BUILTIN_FUNCTIONS:
            return  # Keras looks these names up in its own activations, losses, metrics
        _judge_module(walk, module, name, path, registered=obj.get("registered_name"))
        return
    if "module" in obj and module is None and cls not in BUILTIN_CLASSES and cls != "function":
        _custom(walk, cls, None, obj.get("registered_name"), path)
        return
    if cls == "function":
        if isinstance(inner, str) and inner not in BUILTIN_FUNCTIONS:
            _custom(walk, inner, None, obj.get("registered_name"), path)
        return
    base = cls.split(">", 1)[1] if cls.startswith("Custom>") else cls
    if base not in BUILTIN_CLASSES and cls != "Lambda":
        _custom(walk, cls, None, obj.get("registered_name"), path)


def _judge_module(walk: _Walk, module: str, name: str, path: str,
                  registered: Any = None) -> None:
    denied = walk.denial(module, name)
    if denied is not None:
        severity, rule_id, reason = denied
        walk.add(("import", module, name), ConfigIssue(
            "keras-unsafe-import", severity,
            f"Config makes Keras import {module}.{name}",
            f"Loading this model imports {module}.{name}, which {reason}. Keras before 3.9 "
            "imports the module and calls what a config names even with safe_mode=True "
            "(CVE-2025-1550); older tf.keras has no safe_mode at all (CVE-2024-3660).",
            {"module": module, "name": name, "deny_rule": rule_id,
             "cve": ["CVE-2025-1550", "CVE-2024-3660"]}), path)
        return
    _custom(walk, name, module, registered, path)


def _custom(walk: _Walk, name: str, module: str | None, registered: Any, path: str) -> None:
    where = f"{module}.{name}" if module else name
    walk.add(("custom", module, name), ConfigIssue(
        "keras-custom-object", Severity.MEDIUM, f"Custom object {where} needed to load",
        "The model refers to a class or function that is not part of Keras. Loading it needs "
        "code that is not in the file (a registered custom object, or a module Keras imports "
        "by name), so what loading does depends on that code.",
        {"name": name, "module": module,
         "registered_name": registered if isinstance(registered, str) else None}), path)


def _judge_lambda(walk: _Walk, layer: dict[str, Any], path: str) -> None:
    """A Lambda layer: CRITICAL when it carries bytecode, MEDIUM when it names a function.

    A named function runs only if the loading program (or a module import, judged by the
    module rules) supplies it; bytecode runs whatever it holds.
    """
    raw = layer.get("config")
    inner: dict[str, Any] = raw if isinstance(raw, dict) else {}
    layer_name = str(inner.get("name", ""))[:200]
    evidence: dict[str, Any] = {"layer": layer_name}
    payloads = []
    for key, kind_key in (("function", "function_type"), ("output_shape", "output_shape_type")):
        value = inner.get(key)
        if isinstance(value, dict) and value.get("class_name") == "__lambda__":
            walk.handled.add(id(value))
            payloads.append((key, value.get("config")))
        elif isinstance(value, dict) and value.get("class_name") == "function":
            evidence[key] = f"{value.get('module')}.{value.get('config')}"[:300]
        elif isinstance(value, str) and key == "function":
            evidence[key] = f"{inner.get('module')}.{value}"[:300]
        elif value is not None and (key == "function" or inner.get(kind_key) == "lambda"):
            payloads.append((key, value))
    for key, value in payloads:
        evidence[key] = "bytecode"
        evidence["code" if key == "function" else "output_shape_code"] = (
            _lambda_payload(value).get("code", {"error": "no bytecode found"}))
    if not payloads:
        target = evidence.get("function", "no function")
        walk.add(("lambda", path), ConfigIssue(
            "keras-lambda", Severity.MEDIUM, f"Lambda layer {layer_name!r} calls {target}",
            "A Lambda layer calls whatever function its config names, with arguments taken "
            "from the file. Loading needs that function, and a function that Keras itself "
            "exports can be turned against the loader (see the safe-mode rules).",
            evidence), path)
        return
    code = evidence.get("code") or evidence.get("output_shape_code")
    evidence["cve"] = ["CVE-2024-3660", "CVE-2025-9905"]
    walk.add(("lambda", path), ConfigIssue(
        "keras-lambda", Severity.CRITICAL,
        f"Lambda layer {layer_name!r} runs Python code stored in the model",
        "A Lambda layer holds a Python function; for a lambda it is marshalled bytecode that "
        "Keras rebuilds at load time and runs whenever the model is called. tf.keras before "
        "2.13 loads it unconditionally (CVE-2024-3660) and Keras 3 before 3.11.3 ignored "
        "safe_mode for .h5 files (CVE-2025-9905)."
        + (f" The bytecode uses: {', '.join(code['suspicious'])}."
           if isinstance(code, dict) and code.get("suspicious") else ""),
        evidence), path)


def _judge_serialised_lambda(walk: _Walk, obj: dict[str, Any], path: str) -> None:
    evidence = {"cve": ["CVE-2025-1550"], **_lambda_payload(obj.get("config"))}
    code = evidence.get("code")
    walk.add(("__lambda__", path), ConfigIssue(
        "keras-lambda", Severity.CRITICAL, "Serialised Python lambda in the config",
        "Keras 3 stores a lambda as marshalled bytecode and rebuilds it when safe_mode is "
        "off (and older versions whenever asked)."
        + (f" The bytecode uses: {', '.join(code['suspicious'])}."
           if isinstance(code, dict) and code.get("suspicious") else ""),
        evidence), path)


def _lambda_payload(value: Any) -> dict[str, Any]:
    """Find the base64 bytecode in the shapes Keras writes and describe it."""
    if isinstance(value, dict):
        if value.get("class_name") == "__tuple__":
            value = value.get("items")
        else:
            value = value.get("code", value.get("value"))
    if isinstance(value, dict) and value.get("class_name") == "__tuple__":
        value = value.get("items")
    if isinstance(value, (list, tuple)) and value:
        value = value[0]
    if not isinstance(value, str):
        return {}
    try:
        blob = base64.b64decode(value.encode("ascii", errors="ignore"), validate=False)
    except (binascii.Error, ValueError):
        return {"code": {"error": "not base64"}}
    return {"code": describe_code(blob)}


# -- marshalled bytecode, read without marshal --------------------------------------------------


class _BadMarshal(ValueError):
    pass


_CODE = object()  # stands for a nested code object (never built)


#: Code-object layouts by Python version: the 32-bit integers before the first field, the
#: object fields, and which of them are (kind) names, constants, the name and qualname.
_LAYOUTS: tuple[tuple[str, int, tuple[str, ...]], ...] = (
    ("3.11+", 5, ("code", "consts", "names", "localsplusnames", "localspluskinds", "filename",
                  "name", "qualname", "#firstlineno", "linetable", "exceptiontable")),
    ("3.8-3.10", 6, ("code", "consts", "names", "varnames", "freevars", "cellvars", "filename",
                     "name", "#firstlineno", "lnotab")),
    ("3.0-3.7", 5, ("code", "consts", "names", "varnames", "freevars", "cellvars", "filename",
                    "name", "#firstlineno", "lnotab")),
    ("2.x", 4, ("code", "consts", "names", "varnames", "freevars", "cellvars", "filename",
                "name", "#firstlineno", "lnotab")),
)


class _Marshal:
    """A reader of the marshal format that builds only inert values (never code objects)."""

    def __init__(self, data: bytes, layout: tuple[str, int, tuple[str, ...]],
                 max_objects: int = 200_000) -> None:
        self.data = data
        self.pos = 0
        self.refs: list[Any] = []
        self.layout = layout
        self.left = max_objects
        self.names: list[str] = []
        self.strings: list[str] = []
        self.functions: list[str] = []

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise _BadMarshal("truncated")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def i32(self) -> int:
        return int(struct.unpack("<i", self.take(4))[0])

    def count(self) -> int:
        n = self.i32()
        if n < 0 or n > len(self.data) - self.pos:
            raise _BadMarshal("bad length")
        return n

    def obj(self, depth: int = 0) -> Any:
        self.left -= 1
        if self.left < 0 or depth > 100:
            raise _BadMarshal("too many or too deep objects")
        code = self.take(1)[0]
        flag, kind = code & 0x80, chr(code & 0x7F)
        slot = None
        if flag and kind in "()[{<>c:":
            slot = len(self.refs)
            self.refs.append(None)
        value = self._read(kind, depth)
        if flag:
            if slot is None:
                self.refs.append(value)
            else:
                self.refs[slot] = value
        return value

    def _read(self, kind: str, depth: int) -> Any:
        simple = {"N": None, "T": True, "F": False, ".": Ellipsis, "S": StopIteration}
        if kind in simple:
            return simple[kind]
        if kind == "0":
            raise _BadMarshal("NULL object")
        if kind == "i":
            return self.i32()
        if kind == "I":
            return struct.unpack("<q", self.take(8))[0]
        if kind == "l":
            n = self.i32()
            if abs(n) > 100_000:
                raise _BadMarshal("huge long")
            self.take(2 * abs(n))
            return 0
        if kind == "g":
            return struct.unpack("<d", self.take(8))[0]
        if kind == "y":
            self.take(16)
            return 0j
        if kind in "fx":
            for _ in range(1 if kind == "f" else 2):
                self.take(self.take(1)[0])
            return 0.0
        if kind == "s":
            return self.take(self.count())
        if kind in "tuaA":
            return self.take(self.count()).decode("utf-8", errors="replace")
        if kind in "zZ":
            return self.take(self.take(1)[0]).decode("latin-1")
        if kind == "r":
            index = self.i32()
            if not 0 <= index < len(self.refs):
                raise _BadMarshal("bad reference")
            return self.refs[index]
        if kind in "([<>":
            n = self.count()
            return tuple(self.obj(depth + 1) for _ in range(n))
        if kind == ")":
            n = self.take(1)[0]
            return tuple(self.obj(depth + 1) for _ in range(n))
        if kind == "{":
            items = []
            while self.data[self.pos:self.pos + 1] != b"0":
                items.append((self.obj(depth + 1), self.obj(depth + 1)))
            self.pos += 1
            return tuple(items)
        if kind == ":":
            return tuple(self.obj(depth + 1) for _ in range(3))
        if kind == "c":
            return self._code(depth)
        raise _BadMarshal(f"unknown type {kind!r}")

    def _code(self, depth: int) -> object:
        _label, ints, fields = self.layout
        for _ in range(ints):
            self.i32()
        got: dict[str, Any] = {}
        for name in fields:
            if name.startswith("#"):
                self.i32()
                continue
            got[name] = self.obj(depth + 1)
        if not isinstance(got["code"], bytes) or not isinstance(got["consts"], tuple):
            raise _BadMarshal("not a code object of this layout")
        for key in ("names", "varnames", "localsplusnames", "freevars", "cellvars"):
            names = got.get(key, ())
            if not isinstance(names, tuple) or not all(isinstance(n, (str, bytes))
                                                         for n in names):
                raise _BadMarshal("names are not strings")
        if not isinstance(got["name"], (str, bytes)):
            raise _BadMarshal("name is not a string")
        self.names.extend(_text(n) for n in got["names"])
        self.strings.extend(_text(c) for c in got["consts"] if isinstance(c, str))
        label = got.get("qualname", got["name"])
        self.functions.append(_text(label) if isinstance(label, (str, bytes)) else "?")
        return _CODE


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def describe_code(blob: bytes) -> dict[str, Any]:
    """What a marshalled code object uses, read statically (nothing is built or run).

    Tries the code-object layouts of Python 3.11+, 3.8-3.10, 3.0-3.7 and 2 and keeps the one
    that parses the whole blob. Returns its size, the layout, the global and attribute names
    the code uses (``co_names`` of it and of nested functions), its string constants, the
    functions defined, and which names look like system access.

    Example:
        >>> import marshal
        >>> src = compile("lambda x: __import__('os').system('id')", "<l>", "eval")
        >>> lam = next(c for c in src.co_consts if hasattr(c, "co_code"))
        >>> describe_code(marshal.dumps(lam))["suspicious"]
        ['__import__', 'os', 'system']
    """
    summary: dict[str, Any] = {"bytes": len(blob)}
    if not blob or blob[0] & 0x7F != ord("c"):
        summary["error"] = "not a marshalled code object"
        return summary
    for layout in _LAYOUTS:
        reader = _Marshal(blob, layout)
        try:
            reader.obj()
        except (_BadMarshal, struct.error, IndexError):
            continue
        if reader.pos != len(blob):
            continue
        names = sorted(set(reader.names))
        tokens = set(names) | {w for s in reader.strings for w in re.findall(r"\w+", s)}
        summary.update({
            "python": layout[0],
            "names": names[:64],
            "strings": [s[:200] for s in reader.strings[:16]],
            "functions": reader.functions[:16],
            "suspicious": sorted(tokens & _SUSPICIOUS_NAMES),
        })
        return summary
    summary["error"] = "bytecode of no known Python layout"
    return summary


# -- the scanner -------------------------------------------------------------------------------


class KerasScanner(FileScanner):
    """Keras models (``.h5``, ``.keras``) and HDF5 files, checked without Keras.

    Reads the model config (the ``model_config`` attribute of an HDF5 file, ``config.json``
    in a ``.keras`` zip) as JSON and judges every layer and object reference in it, nested
    models included; the rest of a ``.keras`` archive (weights, assets) is handed back to the
    session. HDF5 files are opened read-only with h5py in a child process (see
    :func:`hdf5_probe`), their attributes read within ``max_header_bytes``, and their links
    listed without following any.

    Threat model: an attacker who controls the file and knows this scanner, and a victim who
    calls ``keras.models.load_model`` (any version, ``safe_mode`` on or off). The HDF5 C
    library still parses the file's structure, and crafted files can crash it or make it
    loop (a mutated attribute type was seen to hang it): that is why it runs in a child
    process with a memory cap and a time limit, and a crash or a timeout fails the file
    closed instead of stopping the scan. The child is forked once per process and kept for
    the next HDF5 file; one that crashed or timed out is replaced.

    Args:
        hdf5_timeout: Seconds the HDF5 reader may take for one file (default 60).

    Example:
        >>> from phalanx.supplychain.scan.keras import KerasScanner
        >>> findings = list(KerasScanner().scan("model.h5"))  # doctest: +SKIP
    """

    name = "keras"
    title = "Keras models and HDF5 files"
    paper = ("Keras security advisories, "
             "https://github.com/keras-team/keras/security/advisories")
    refs = REFS
    formats: ClassVar[tuple[str, ...]] = BUNDLED_FORMATS["keras"]

    def __init__(self, *, hdf5_timeout: float = 60.0) -> None:
        self.hdf5_timeout = hdf5_timeout

    def scan_source(self, source: Source, session: ScanSession) -> Iterator[Finding]:
        """Scan a ``.keras`` archive or an HDF5 file."""
        if source.head(4).startswith(_ZIP_MAGICS):
            yield from self._scan_archive(source, session)
        else:
            yield from self._scan_hdf5(source, session)

    # -- shared ---------------------------------------------------------------------------

    def _config_findings(self, source: Source, session: ScanSession, text: str | bytes,
                         where: str, fmt: str) -> Iterator[Finding]:
        try:
            config = json.loads(text)
        except (ValueError, RecursionError) as exc:
            yield session.malformed(source, f"{where} is not valid JSON ({exc})",
                                    scanner=self.plugin_id(), fmt=fmt)
            return
        for issue in analyse_config(config, policy=session.policy):
            yield session.finding(source, issue.rule, issue.severity, issue.title,
                                  issue.detail, scanner=self.plugin_id(), fmt=fmt,
                                  evidence={"where": where, **issue.evidence})

    # -- HDF5 -----------------------------------------------------------------------------

    def _scan_hdf5(self, source: Source, session: ScanSession) -> Iterator[Finding]:
        limits = session.limits
        try:
            if not _has_superblock(source):  # not HDF5 at all: no h5py child process needed
                yield session.malformed(source, "no HDF5 superblock signature",
                                        scanner=self.plugin_id(), fmt="hdf5")
                return
            with source.as_file(limits.max_member_bytes) as path:
                report = _run_probe(path, limits.max_header_bytes, limits.max_members,
                                    self.hdf5_timeout)
        except ValueError as exc:  # a member over the size limit
            yield session.error(source, str(exc), scanner=self.plugin_id(), fmt="hdf5")
            return
        except _DamagedMember as exc:
            yield session.malformed(source, str(exc), scanner=self.plugin_id(), fmt="hdf5")
            return
        if "missing" in report:
            yield session.error(source, _MISSING_H5PY, scanner=self.plugin_id(), fmt="hdf5")
            return
        if "failed" in report:
            yield session.error(source, report["failed"], scanner=self.plugin_id(),
                                fmt="hdf5")
            return
        for ext in report.get("external", []):
            yield self._external(source, session, ext)
        if report.get("truncated"):
            yield session.finding(
                source, "hdf5-too-many-objects", Severity.MEDIUM,
                "HDF5 file has more objects than the scan visits",
                f"More than {limits.max_members} links; the rest were not checked.",
                scanner=self.plugin_id(), fmt="hdf5", evidence={"incomplete": True})
        for key, attr in report.get("attrs", {}).items():
            if "bytes" in attr:
                yield session.finding(
                    source, "header-too-large", Severity.MEDIUM,
                    f"Keras {key} larger than the scan reads",
                    f"The {key} attribute holds {attr['bytes']} bytes; the scan reads at most "
                    f"{limits.max_header_bytes}. It was not checked, and Keras would load it.",
                    scanner=self.plugin_id(), fmt="hdf5",
                    evidence={"bytes": attr["bytes"], "incomplete": True})
            elif "text" in attr:
                yield from self._config_findings(source, session, attr["text"], key, "hdf5")
            else:
                yield session.malformed(source, f"{key} is not a string",
                                        scanner=self.plugin_id(), fmt="hdf5")
        if "error" in report:
            yield session.malformed(source, f"HDF5 does not parse ({report['error']})",
                                    scanner=self.plugin_id(), fmt="hdf5")

    def _external(self, source: Source, session: ScanSession, ext: dict[str, str]) -> Finding:
        kind, filename, where = ext["kind"], ext["file"], ext["object"]
        return session.finding(
            source, "hdf5-external-reference", Severity.MEDIUM,
            f"HDF5 {kind} to another file ({filename[:80]})",
            f"The object {where} is a {kind}: reading it makes the HDF5 library open "
            f"{filename!r}. A model file that reads other files can pull in data the scan "
            "never saw, or probe the loading machine's file system.",
            scanner=self.plugin_id(), fmt="hdf5",
            evidence={"object": where, "kind": kind, "target_file": filename,
                      "target_path": ext.get("path", "")},
            remediation="Do not load the file; ask for a self-contained model file.")

    # -- .keras archives ------------------------------------------------------------------

    def _scan_archive(self, source: Source, session: ScanSession) -> Iterator[Finding]:
        archive_module: Any
        try:
            from phalanx.supplychain.scan import archive as archive_module
        except ImportError:
            archive_module = None
        check = getattr(archive_module, "check_zip_structure", None)
        if check is not None:
            yield from check(source, session, scanner=self.plugin_id())
        try:
            with source.open() as fh, zipfile.ZipFile(fh) as zf:
                infos = zf.infolist()
                yield from self._archive_members(source, session, zf, infos,
                                                 structure_checked=check is not None)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, RuntimeError,
                NotImplementedError, ValueError, struct.error, zlib.error) as exc:
            yield session.malformed(source, f"zip does not open ({exc})",
                                    scanner=self.plugin_id(), fmt="keras")

    def _archive_members(self, source: Source, session: ScanSession, zf: zipfile.ZipFile,
                         infos: list[zipfile.ZipInfo], *,
                         structure_checked: bool) -> Iterator[Finding]:
        limits = session.limits
        if "config.json" in zf.NameToInfo:
            info = zf.getinfo("config.json")
            if info.file_size > limits.max_header_bytes:
                yield session.finding(
                    source, "header-too-large", Severity.MEDIUM,
                    "config.json larger than the scan reads",
                    f"config.json holds {info.file_size} bytes; the scan reads at most "
                    f"{limits.max_header_bytes}. Keras would load it unchecked.",
                    scanner=self.plugin_id(), fmt="keras",
                    evidence={"bytes": info.file_size, "incomplete": True})
            else:
                with zf.open(info) as member:
                    text = member.read(limits.max_header_bytes + 1)
                yield from self._config_findings(source, session, text, "config.json",
                                                 "keras")
        for i, info in enumerate(infos):
            if i >= limits.max_members:
                yield session.finding(
                    source, "too-many-members", Severity.MEDIUM,
                    "Archive has more members than the scan reads",
                    f"Only the first {limits.max_members} members were scanned.",
                    scanner=self.plugin_id(), fmt="keras", evidence={"incomplete": True})
                return
            if info.is_dir() or info.filename in ("config.json", "metadata.json"):
                continue
            if not structure_checked and _escapes(info.filename):
                yield session.finding(
                    source, "zip-path-traversal", Severity.HIGH,
                    f"Archive member {info.filename[:80]!r} escapes the archive",
                    "An extracting loader would write it outside its directory.",
                    scanner=self.plugin_id(), fmt="keras",
                    evidence={"member": info.filename[:300]})
            if info.file_size > limits.max_member_bytes:
                yield session.finding(
                    source, "member-too-large", Severity.MEDIUM,
                    f"Member {info.filename[:80]} larger than the scan reads",
                    f"It expands to {info.file_size} bytes; the limit is "
                    f"{limits.max_member_bytes}. It was not scanned.",
                    scanner=self.plugin_id(), fmt="keras",
                    evidence={"member": info.filename[:300], "incomplete": True})
                continue
            session.bytes_expanded += info.file_size
            if session.bytes_expanded > limits.max_total_bytes:
                yield session.finding(
                    source, "archive-too-large", Severity.MEDIUM,
                    "Archive expands to more than the scan reads",
                    f"Members expand to more than {limits.max_total_bytes} bytes together; "
                    "the rest were not scanned.", scanner=self.plugin_id(), fmt="keras",
                    evidence={"incomplete": True})
                return
            child = source.child(info.filename, info.file_size, _member_opener(source, info))
            yield from session.scan(child)


# -- the HDF5 probe, run in a child process -----------------------------------------------------

#: What the child runs: the probe, its report as JSON on stdout.
_PROBE_CALL = ("import json, sys; from phalanx.supplychain.scan.keras import hdf5_probe; "
               "json.dump(hdf5_probe(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])), "
               "sys.stdout)")


def _run_probe(path: Path, max_attr_bytes: int, max_links: int, timeout: float,
               ) -> dict[str, Any]:
    """Run :func:`hdf5_probe` in a child process, so that a crash or a hang of the HDF5 C
    library (it parses untrusted structure) fails this file instead of the whole scan."""
    if importlib.util.find_spec("h5py") is None:
        return {"missing": True}
    if sys.platform.startswith("linux") and hasattr(os, "fork"):
        # A forked worker kept for the next file: no interpreter start-up (about 0.4 s per
        # file with a fresh one) and no fork per file; the same isolation.
        return _WORKER.probe(path, max_attr_bytes, max_links, timeout)
    package_root = str(Path(__file__).resolve().parents[3])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE_CALL, str(path), str(max_attr_bytes), str(max_links)],
            capture_output=True, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        return {"failed": f"the HDF5 library did not finish within {timeout:g} s"}
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", errors="replace").strip().splitlines()[-1:]
        how = (f"signal {-proc.returncode}" if proc.returncode < 0
               else f"exit status {proc.returncode}")
        return {"failed": f"the HDF5 reader failed ({how}{': ' + tail[0] if tail else ''})"}
    return _decoded_report(proc.stdout)


def _decoded_report(data: bytes) -> dict[str, Any]:
    """The probe's JSON report as the child wrote it, or why there is none."""
    try:
        report = json.loads(data)
    except ValueError:
        return {"failed": "the HDF5 reader returned no report"}
    return report if isinstance(report, dict) else {"failed": "bad HDF5 report"}


class _ProbeWorker:
    """A forked child that runs :func:`hdf5_probe` on request, one file at a time.

    Requests and reports are length-prefixed JSON frames over two pipes. A report that does
    not come within the time limit gets the child killed; a child that dies (a crash of the
    HDF5 library) fails that file. Either way the next file gets a fresh child. A process
    forked from this one does not share its parent's child: it starts its own.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner = 0  # the pid that started the child
        self._pid = 0
        self._requests = self._reports = -1

    def probe(self, path: Path, max_attr_bytes: int, max_links: int, timeout: float,
              ) -> dict[str, Any]:
        request = json.dumps([str(path), max_attr_bytes, max_links]).encode()
        with self._lock:
            if self._owner != os.getpid():
                self._start()
            try:
                _write_frame(self._requests, request)
            except OSError:  # the child is gone since the last file: start a fresh one
                self._start()
                _write_frame(self._requests, request)
            try:
                report = _read_frame(self._reports, time.monotonic() + timeout)
            except TimeoutError:
                self._stop(kill=True)
                return {"failed": f"the HDF5 library did not finish within {timeout:g} s"}
            except (EOFError, OSError):  # the child died on this file
                status = self._stop(kill=False)
                how = (f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
                       else f"exit status {os.WEXITSTATUS(status)}")
                return {"failed": f"the HDF5 reader failed ({how})"}
        return _decoded_report(report)

    def _start(self) -> None:
        import h5py  # noqa: F401  imported before the fork, so the child has it loaded

        if self._owner == os.getpid():
            self._stop(kill=True)
        elif self._owner:  # a forked copy of the owner: let go of the owner's child
            for fd in (self._requests, self._reports):
                with contextlib.suppress(OSError):
                    os.close(fd)
        requests_r, requests_w = os.pipe()
        reports_r, reports_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: serve until the parent closes its end, exit without cleanup
            code = 0
            try:
                import faulthandler

                faulthandler.disable()  # a crash is reported by the parent, not dumped twice
                os.close(requests_w)
                os.close(reports_r)
                _serve(requests_r, reports_w)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(requests_r)
        os.close(reports_w)
        self._owner, self._pid = os.getpid(), pid
        self._requests, self._reports = requests_w, reports_r

    def close(self) -> None:
        """End the child, if any (the next request starts a fresh one)."""
        with self._lock:
            self._stop(kill=True)

    def _stop(self, *, kill: bool) -> int:
        """End the child (killed, or reaped after it died); returns its wait status. The
        caller holds the lock."""
        if self._owner != os.getpid():
            return 0
        for fd in (self._requests, self._reports):
            with contextlib.suppress(OSError):
                os.close(fd)
        status = 0
        if kill:
            with contextlib.suppress(OSError):
                os.kill(self._pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            _, status = os.waitpid(self._pid, 0)
        self._owner = self._pid = 0
        self._requests = self._reports = -1
        return status


def _serve(requests: int, reports: int) -> None:
    """The worker's loop: one report per request, until the requests pipe closes."""
    while True:
        try:
            request = _read_frame(requests, None)
        except EOFError:
            return
        path, max_attr_bytes, max_links = json.loads(request)
        _write_frame(reports, json.dumps(hdf5_probe(path, max_attr_bytes, max_links)).encode())


def _write_frame(fd: int, data: bytes) -> None:
    view = memoryview(struct.pack("<Q", len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def _read_frame(fd: int, deadline: float | None) -> bytes:
    """One length-prefixed frame. Raises EOFError when the pipe closes first, TimeoutError
    when ``deadline`` (a ``time.monotonic()`` value; ``None``: wait for ever) passes."""
    header = _read_exact(fd, 8, deadline)
    return _read_exact(fd, struct.unpack("<Q", header)[0], deadline)


def _read_exact(fd: int, size: int, deadline: float | None) -> bytes:
    chunks: list[bytes] = []
    while size:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


_WORKER = _ProbeWorker()


def stop_hdf5_worker() -> None:
    """End this process's HDF5 worker, if any (the next HDF5 file starts a fresh one)."""
    _WORKER.close()


def hdf5_probe(path: str | Path, max_attr_bytes: int, max_links: int) -> dict[str, Any]:
    """Read what the scan needs from an HDF5 file with h5py (read-only, nothing followed).

    Returns the Keras attributes (``model_config``, ``training_config``) as text, or their
    size when over ``max_attr_bytes``; every external link, external-storage dataset and
    virtual dataset sourcing another file; ``truncated`` when more than ``max_links`` links
    were met; ``error`` when the file does not parse. Run by the scanner in a child process.
    """
    _limit_memory(max(4 << 30, 8 * max_attr_bytes))
    try:
        import h5py
    except ImportError:
        return {"missing": True}
    report: dict[str, Any] = {"attrs": {}, "external": []}
    try:
        with h5py.File(path, "r", locking=False) as h5:
            for key in ("model_config", "training_config"):
                if key in h5.attrs:
                    report["attrs"][key] = _probe_attr(h5, key, max_attr_bytes)
            _probe_links(h5, report, max_links)
    except Exception as exc:  # any h5py failure means the file does not parse
        report["error"] = f"{type(exc).__name__}: {exc}"[:500]
    return report


def _limit_memory(limit: int) -> None:
    try:
        import resource
    except ImportError:  # not on this platform
        return
    try:  # on top of what the process maps already (a forked child inherits it all)
        with open("/proc/self/statm") as fh:
            limit += int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard == resource.RLIM_INFINITY or hard > limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _probe_attr(h5: Any, key: str, limit: int) -> dict[str, Any]:
    size = h5.attrs.get_id(key).get_storage_size()
    if size > limit:
        return {"bytes": int(size)}
    value = h5.attrs[key]
    if hasattr(value, "shape") and getattr(value, "size", 0) == 1:
        value = value.reshape(-1)[0]
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        if len(value) > limit:
            return {"bytes": len(value)}
        return {"text": value}
    return {"type": type(value).__name__}


def _probe_links(h5: Any, report: dict[str, Any], max_links: int) -> None:
    """Every link in the file, through HDF5's own link iterator (``H5Lvisit``: depth first,
    each group entered once however many links lead to it), with h5py's low-level API: the
    high-level objects cost ten times as much per link. Only datasets are opened, each once,
    to read their creation properties."""
    from h5py import h5d, h5g, h5l, h5o

    root = h5g.open(h5.id, b"/")
    external = report["external"]
    seen: set[tuple[int, Any]] = set()
    visited = 0

    def visit(name: bytes, info: Any) -> int | None:
        nonlocal visited
        visited += 1
        if visited > max_links:
            report["truncated"] = True
            return 1  # stops the iteration
        where = "/" + name.decode("utf-8", "replace")
        if info.type == h5l.TYPE_EXTERNAL:
            filename, path = root.links.get_val(name)
            external.append({"kind": "external link", "object": where,
                             "file": _utf8(filename), "path": _utf8(path)})
            return None
        if info.type != h5l.TYPE_HARD:
            return None  # soft links point inside this file
        obj = h5o.get_info(root, name)
        key = (obj.fileno, getattr(obj, "addr", name))  # one report per dataset
        if obj.type != h5o.TYPE_DATASET or key in seen:
            return None
        seen.add(key)
        dcpl = h5d.open(root, name).get_create_plist()
        count = dcpl.get_external_count()
        if count:
            files = sorted({_utf8(dcpl.get_external(i)[0]) for i in range(count)})
            external.append({"kind": "external storage", "object": where,
                             "file": ", ".join(files)[:300]})
        if dcpl.get_layout() == h5d.VIRTUAL:
            files = sorted({_utf8(dcpl.get_virtual_filename(i))
                            for i in range(dcpl.get_virtual_count())} - {"."})
            if files:
                external.append({"kind": "virtual dataset", "object": where,
                                 "file": ", ".join(files)[:300]})
        return None

    root.links.visit(visit, info=True)


def _utf8(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _member_opener(source: Source, info: zipfile.ZipInfo) -> Callable[[], BinaryIO]:
    def opener() -> BinaryIO:
        return cast(BinaryIO, _ZipMember(source, info))
    return opener


#: What zipfile raises for a damaged member (bad CRC, corrupt or truncated compressed data).
_MEMBER_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError,
                  struct.error)


class _DamagedMember(OSError):
    """A ``.keras`` member that zipfile cannot read back (an ``OSError``, as an unreadable
    file is, so readers that expect one handle it)."""


class _ZipMember(io.RawIOBase):
    """A stream over one zip member that closes the archive and its file when closed. A
    damaged member (bad CRC, corrupt data) raises :class:`_DamagedMember`, naming it."""

    def __init__(self, source: Source, info: zipfile.ZipInfo) -> None:
        super().__init__()
        self._name = info.filename
        self._outer = source.open()
        try:
            self._zip = zipfile.ZipFile(self._outer)
            self._member = self._zip.open(info)
        except _MEMBER_ERRORS as exc:
            self._outer.close()
            raise self._damaged(exc) from None
        except BaseException:
            self._outer.close()
            raise

    def _damaged(self, exc: BaseException) -> _DamagedMember:
        return _DamagedMember(f"member {self._name!r} is damaged ({type(exc).__name__}: {exc})")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        try:
            return self._member.read(size)
        except _MEMBER_ERRORS as exc:
            raise self._damaged(exc) from None

    def seekable(self) -> bool:
        return self._member.seekable()

    def seek(self, offset: int, whence: int = 0) -> int:
        try:
            return self._member.seek(offset, whence)
        except _MEMBER_ERRORS as exc:
            raise self._damaged(exc) from None

    def tell(self) -> int:
        return self._member.tell()

    def close(self) -> None:
        if not self.closed:
            self._member.close()
            self._zip.close()
            self._outer.close()
        super().close()


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _has_superblock(source: Source) -> bool:
    """Whether the HDF5 signature is at 0 or after a user block of 512 * 2**k bytes."""
    with source.open() as fh:
        offset = 0
        while offset <= max(source.size - 8, 0):
            fh.seek(offset)
            if fh.read(8) == _HDF5_SIGNATURE:
                return True
            offset = 512 if offset == 0 else offset * 2
    return False

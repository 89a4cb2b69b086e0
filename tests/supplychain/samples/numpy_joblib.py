"""Corpus samples: NumPy ``.npy``/``.npz`` files (joblib samples are added to ``SAMPLES``).

Malicious NumPy samples are object arrays whose data is a payload pickle: ``np.load`` runs it
when called with ``allow_pickle=True`` (the default before NumPy 1.16.3, CVE-2019-6446). The
headers are written by hand, so these samples need no NumPy; the benign ones are written by
NumPy itself. Payload pickles are raw opcodes; nothing here pickles a live object.
"""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

from corpus import Sample

CVE_NUMPY = "CVE-2019-6446"


def payload_pickle(canary: Path) -> bytes:
    """A protocol-2 pickle that would run ``touch <canary>`` through ``os.system``."""
    cmd = f"touch {canary}".encode()
    return b"\x80\x02cos\nsystem\nX" + struct.pack("<I", len(cmd)) + cmd + b"\x85R."


def npy_header(descr: object, shape: tuple[int, ...], *, version: int = 1) -> bytes:
    """An ``.npy`` magic, version and header dict, padded to 64 bytes as NumPy pads it."""
    text = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {shape!r}, }}"
    prefix = 10 if version == 1 else 12
    pad = -(prefix + len(text) + 1) % 64
    header = (text + " " * pad + "\n").encode("latin1")
    size = struct.pack("<H", len(header)) if version == 1 else struct.pack("<I", len(header))
    return b"\x93NUMPY" + bytes([version, 0]) + size + header


def object_npy(canary: Path) -> bytes:
    """An object-dtype array whose data is a payload pickle."""
    return npy_header("|O", (1,)) + payload_pickle(canary)


def _write(out_dir: Path, name: str, data: bytes) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    path.write_bytes(data)
    return path


def _npy_object(out: Path, canary: Path) -> Path:
    return _write(out, "embeddings.npy", object_npy(canary))


def _npz_object(out: Path, canary: Path) -> Path:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("weights.npy", npy_header("<f4", (2,)) + b"\x00" * 8)
        zf.writestr("labels.npy", object_npy(canary))
    return _write(out, "arrays.npz", buf.getvalue())


def _npy_appended_pickle(out: Path, canary: Path) -> Path:
    data = npy_header("<f4", (4,)) + struct.pack("<4f", 1, 2, 3, 4) + payload_pickle(canary)
    return _write(out, "vector.npy", data)


def _npy_float32(out: Path, canary: Path) -> Path:
    import numpy as np

    out.mkdir(parents=True, exist_ok=True)
    path = out / "weights.npy"
    np.save(path, np.random.default_rng(0).standard_normal((16, 8)).astype(np.float32))
    return path


def _npz_compressed(out: Path, canary: Path) -> Path:
    import numpy as np

    out.mkdir(parents=True, exist_ok=True)
    path = out / "arrays.npz"
    rng = np.random.default_rng(0)
    np.savez_compressed(path, w=rng.standard_normal((32, 16)), b=np.arange(16, dtype=np.int64),
                        names=np.array(["alpha", "beta"]))
    return path


NUMPY_SAMPLES = [
    Sample("npy-object-payload", "npy", True, _npy_object,
           "object-dtype .npy whose data is a pickle running os.system", CVE_NUMPY, "high"),
    Sample("npz-object-payload", "npz", True, _npz_object,
           ".npz with an object-array member holding a payload pickle", CVE_NUMPY, "high"),
    Sample("npy-appended-pickle", "npy", True, _npy_appended_pickle,
           "float32 .npy with a payload pickle appended after the array data", "", "medium",
           "npy-trailing-data"),
    Sample("npy-float32", "npy", False, _npy_float32, "np.save of a float32 matrix",
           needs=("numpy",)),
    Sample("npz-savez-compressed", "npz", False, _npz_compressed,
           "np.savez_compressed of float, int and fixed-width string arrays",
           needs=("numpy",)),
]

SAMPLES = [*NUMPY_SAMPLES]


# --------------------------------------------------------------------------------------------
# joblib (added by the PyTorch/joblib scanner work): joblib.dump writes each array's bytes
# into the pickle stream right after its NumpyArrayWrapper (padded to 16 bytes since joblib
# 1.2; object arrays as an inline pickle). Benign samples are joblib.dump output; malicious
# ones edit real dumps byte for byte (the payload is raw opcodes, never a pickled object).


def _joblib_bytes(obj: object, **kwargs: object) -> bytes:
    import joblib

    buf = io.BytesIO()
    joblib.dump(obj, buf, **kwargs)
    return buf.getvalue()


def _fitted(kind: str) -> object:
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = make_classification(n_samples=60, n_features=5, random_state=0)
    if kind == "forest":
        return RandomForestClassifier(n_estimators=4, max_depth=3, random_state=0).fit(x, y)
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)


def _joblib_pipeline(out: Path, canary: Path) -> Path:
    return _write(out, "model.joblib", _joblib_bytes(_fitted("pipeline")))


def _joblib_forest(out: Path, canary: Path) -> Path:
    return _write(out, "forest.joblib", _joblib_bytes(_fitted("forest")))


def _joblib_arrays(out: Path, canary: Path) -> Path:
    import numpy as np

    arrays = {"w": np.arange(12.0).reshape(3, 4), "f": np.asfortranarray(np.ones((2, 3))),
              "labels": np.array(["cat", "dog"]), "empty": np.empty((0, 4)),
              "scalar": np.array(7, dtype=np.int16),
              "records": np.zeros(2, dtype=[("a", "<f4"), ("b", "<i8")]),
              "objects": np.array([{"k": 1}, None, "x"], dtype=object)}
    return _write(out, "arrays.pkl", _joblib_bytes(arrays, protocol=4))


def _joblib_gzip(out: Path, canary: Path) -> Path:
    return _write(out, "model.joblib.gz",
                  _joblib_bytes(_fitted("pipeline"), compress=("gzip", 3)))


def _object_array_payload(canary: Path) -> bytes:
    import pickle

    import numpy as np

    array = np.array([None, 1], dtype=object)
    data = _joblib_bytes([np.arange(3.0), array])
    inline = pickle.dumps(array, protocol=5)  # what write_array writes for object arrays
    assert data.count(inline) == 1
    return data.replace(inline, payload_pickle(canary))


def _joblib_object_payload(out: Path, canary: Path) -> Path:
    return _write(out, "model.joblib", _object_array_payload(canary))


def _joblib_gzip_payload(out: Path, canary: Path) -> Path:
    import gzip

    return _write(out, "model.joblib.gz", gzip.compress(_object_array_payload(canary)))


def padding_polyglot(canary: Path) -> bytes:
    """A joblib file that joblib.load reads normally and pickle.load turns into a payload.

    The padding-length byte before the array data is 0x94 (``MEMOIZE``), so joblib skips 148
    bytes of "padding" which ``pickle.load`` runs as ``os.system('touch CANARY')``.
    """
    import re

    import numpy as np

    data = _joblib_bytes(np.arange(4.0))
    match = re.search(rb"b([\x01-\x10])(\xff*)", data)
    assert match and len(match.group(2)) == match.group(1)[0]
    cmd = f"touch {canary}".encode()
    pad = b"cos\nsystem\nX" + struct.pack("<I", len(cmd)) + cmd + b"\x85R."
    assert len(pad) <= 0x94
    pad = pad.ljust(0x94, b"\xff")
    return data[: match.start(1)] + b"\x94" + pad + data[match.end(2):]


def _joblib_padding_polyglot(out: Path, canary: Path) -> Path:
    return _write(out, "model.joblib", padding_polyglot(canary))


def _joblib_object_pointers(out: Path, canary: Path) -> Path:
    import numpy as np

    data = _joblib_bytes(np.array([0x4141414141414141] * 2, dtype=np.int64))
    assert data.count(b"\x8c\x02i8") == 1
    # an object dtype whose flags say "no objects": joblib reads the bytes as pointers
    return _write(out, "model.joblib", data.replace(b"\x8c\x02i8", b"\x8c\x02O8"))


_JOBLIB = ("joblib", "numpy")
_SKLEARN = ("joblib", "numpy", "sklearn")

JOBLIB_SAMPLES = [
    Sample("joblib-sklearn-pipeline", "pickle", False, _joblib_pipeline,
           "joblib.dump of a fitted StandardScaler + LogisticRegression pipeline",
           needs=_SKLEARN),
    Sample("joblib-random-forest", "pickle", False, _joblib_forest,
           "joblib.dump of a fitted RandomForestClassifier", needs=_SKLEARN),
    Sample("joblib-numpy-arrays", "pickle", False, _joblib_arrays,
           "joblib.dump of float, Fortran-order, string, empty, 0-d, structured and object "
           "arrays", needs=_JOBLIB),
    Sample("joblib-gzip-pipeline", "gzip", False, _joblib_gzip,
           "joblib.dump(compress=('gzip', 3)) of a fitted pipeline", needs=_SKLEARN),
    Sample("joblib-object-array-payload", "pickle", True, _joblib_object_payload,
           "joblib file whose object array's inline pickle is an os.system payload "
           "(joblib.load unpickles it)", min_severity="critical", needs=_JOBLIB),
    Sample("joblib-gzip-object-array-payload", "gzip", True, _joblib_gzip_payload,
           "the same payload in a gzip-compressed joblib file", min_severity="critical",
           needs=_JOBLIB),
    Sample("joblib-padding-polyglot", "pickle", True, _joblib_padding_polyglot,
           "joblib.load skips the array padding, pickle.load runs it: a padding-length byte "
           "that is a pickle opcode", min_severity="critical", needs=_JOBLIB),
    Sample("joblib-object-pointers", "pickle", True, _joblib_object_pointers,
           "an int64 array re-labelled as object dtype without the object flag: joblib.load "
           "reads attacker bytes as object pointers", min_severity="high", needs=_JOBLIB),
]

SAMPLES += JOBLIB_SAMPLES

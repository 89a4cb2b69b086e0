"""Where trained zoo models are kept, and how they are written safely.

Weights live in ``$PHALANX_CACHE_DIR/zoo`` (default: ``platformdirs.user_cache_dir("phalanx")/zoo``)
as ``<name>-v<version>.pt`` beside a JSON sidecar with metrics and the weights' SHA-256. Files are
written to a temporary name and moved into place with ``os.replace``, so a reader never sees half a
file; a lock file serialises two processes that would train the same model at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from phalanx.errors import ConfigurationError


def cache_dir() -> Path:
    """The folder that holds cached zoo models (not created here)."""
    env = os.environ.get("PHALANX_CACHE_DIR")
    if env:
        base = Path(env).expanduser()
    else:
        import platformdirs

        base = Path(platformdirs.user_cache_dir("phalanx"))
    return base / "zoo"


def weights_path(name: str, version: int | str) -> Path:
    """Path of the cached weights of zoo model ``name`` at ``version``."""
    return cache_dir() / f"{name}-v{version}.pt"


def sidecar_path(weights: Path) -> Path:
    """Path of the JSON metadata written beside ``weights``."""
    return weights.with_suffix(".json")


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Write ``path`` through ``write(file)`` so that it appears whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically write ``data`` as indented JSON."""
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or ``None`` when it is absent or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@contextmanager
def file_lock(path: Path, *, timeout: float = 3600.0) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` + ``.lock`` across processes.

    Uses ``fcntl.flock`` (POSIX) or ``msvcrt.locking`` (Windows); the lock is released when
    the block ends or the process dies.

    Raises:
        ConfigurationError: The lock was not obtained within ``timeout`` seconds.
    """
    lock = path.with_name(path.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a+b") as f:
        _acquire(f, lock, timeout)
        try:
            yield
        finally:
            _release(f)


try:
    import fcntl

    def _try_lock(f: IO[bytes]) -> bool:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _release(f: IO[bytes]) -> None:
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)

except ImportError:  # Windows
    import msvcrt

    def _try_lock(f: IO[bytes]) -> bool:
        f.seek(0)
        try:
            msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError:
            return False
        return True

    def _release(f: IO[bytes]) -> None:
        f.seek(0)
        msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]


def _acquire(f: IO[bytes], lock: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not _try_lock(f):
        if time.monotonic() > deadline:
            raise ConfigurationError(
                f"timed out waiting for {lock}",
                hint="another process may be training this model; delete the lock if not",
            )
        time.sleep(0.2)

"""The one way phalanx imports an optional dependency.

Heavy packages (torch, onnxruntime, psycopg, ...) sit behind extras. Importing them through
:func:`require` turns a bare ``ModuleNotFoundError`` into an error that names the extra to
install, so that a user scanning model files never needs torch.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from phalanx.errors import MissingDependencyError

# Distribution names differ from module names for some packages.
_DISTRIBUTION = {"sklearn": "scikit-learn", "yaml": "pyyaml", "psycopg": "psycopg[binary]"}


def require(module: str, *, extra: str, purpose: str | None = None) -> ModuleType:
    """Import ``module`` or raise an error naming the extra that provides it.

    Args:
        module: Dotted module name, e.g. ``"torch"``.
        extra: The phalanx extra that installs it, e.g. ``"ml"``.
        purpose: Optional words on what needs it, for the message.

    Returns:
        The imported module.

    Raises:
        MissingDependencyError: The module is not installed.

    Example:
        >>> torch = require("torch", extra="ml")  # doctest: +SKIP
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top = module.split(".")[0]
        if exc.name is not None and exc.name != top and not module.startswith(exc.name):
            raise  # the package is there but one of its own imports is broken
        dist = _DISTRIBUTION.get(top, top)
        what = f" (needed for {purpose})" if purpose else ""
        raise MissingDependencyError(
            f"the optional dependency '{dist}' is not installed{what}",
            hint=f"pip install 'phalanx[{extra}]'",
        ) from exc


def available(module: str) -> bool:
    """Say whether ``module`` can be imported, without importing it."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False

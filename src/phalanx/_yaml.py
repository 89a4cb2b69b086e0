"""YAML parsing with libyaml's C loader where PyYAML was built with it (about ten times faster
than the pure-Python one, which matters for data read at every start, such as the pickle
allowlist). Both loaders are the *safe* ones: plain data only, never Python objects."""

from __future__ import annotations

from typing import Any

import yaml

YAMLError = yaml.YAMLError

_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def safe_load(text: str) -> Any:
    """Parse one YAML document into plain data (``yaml.safe_load`` semantics).

    Raises:
        yaml.YAMLError: The text is not valid YAML.
    """
    return yaml.load(text, Loader=_LOADER)

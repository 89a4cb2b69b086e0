"""Every exception phalanx raises on purpose.

The tree::

    PhalanxError                          base of everything below
    ├── ConfigurationError                a setting, plan or environment variable is wrong
    │   └── InvalidParameterError (ValueError)   a plugin parameter breaks its constraints
    ├── InputError (ValueError)           user-supplied data or model is unusable
    │   ├── DataFormatError               a file is not in the expected format
    │   └── ShapeError                    tensors do not match the model's input shape
    ├── MissingDependencyError (ImportError)     an optional extra is not installed
    ├── DataNotFoundError (FileNotFoundError)    bundled data is absent; names the package
    ├── PluginError                       a plugin cannot be found or loaded
    │   └── UnknownPluginError (LookupError)
    ├── TargetError                       the system under test failed or misbehaved
    │   └── NotDifferentiableError (TypeError)   a white-box attack got a black-box target
    ├── StoreError                        the run store cannot be reached or is inconsistent
    │   └── RunNotFoundError (LookupError)
    └── ReportError                       a report cannot be rendered

    PhalanxWarning (UserWarning)          caveats a user must see (e.g. a weak evaluation)

The CLI turns any ``PhalanxError`` into one line on stderr and exit code 2.
"""

from __future__ import annotations

from collections.abc import Sequence


class PhalanxError(Exception):
    """Base class of every error phalanx raises on purpose.

    Args:
        message: One line saying what went wrong.
        hint: Optional one line saying how to fix it.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigurationError(PhalanxError):
    """A setting, plan or environment variable is wrong."""


class InvalidParameterError(ConfigurationError, ValueError):
    """One or more plugin parameters break their declared constraints.

    Args:
        problems: Every problem found, not only the first.
    """

    def __init__(self, problems: Sequence[str], *, hint: str | None = None) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems), hint=hint)


class InputError(PhalanxError, ValueError):
    """User-supplied data or model is unusable."""


class DataFormatError(InputError):
    """A file is not in the expected format."""


class ShapeError(InputError):
    """Tensors do not match the model's input shape."""


class MissingDependencyError(PhalanxError, ImportError):
    """An optional dependency is not installed; the message names the extra."""


class DataNotFoundError(PhalanxError, FileNotFoundError):
    """Bundled or packaged data is absent; the message names what to install."""


class PluginError(PhalanxError):
    """A plugin cannot be found, loaded or run."""


class UnknownPluginError(PluginError, LookupError):
    """No plugin is registered under that name."""


class TargetError(PhalanxError):
    """The system under test failed or returned something unusable."""


class NotDifferentiableError(TargetError, TypeError):
    """A white-box attack needs gradients that the target cannot give."""


class StoreError(PhalanxError):
    """The run store cannot be reached or is inconsistent."""


class RunNotFoundError(StoreError, LookupError):
    """No run with that id (or id prefix) is in the store."""


class ReportError(PhalanxError):
    """A report cannot be rendered."""


class PhalanxWarning(UserWarning):
    """A caveat the user must see, e.g. that an evaluation may overestimate robustness."""


__all__ = [
    "ConfigurationError",
    "DataFormatError",
    "DataNotFoundError",
    "InputError",
    "InvalidParameterError",
    "MissingDependencyError",
    "NotDifferentiableError",
    "PhalanxError",
    "PhalanxWarning",
    "PluginError",
    "ReportError",
    "RunNotFoundError",
    "ShapeError",
    "StoreError",
    "TargetError",
    "UnknownPluginError",
]

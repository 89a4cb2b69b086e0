"""The plugin base class: parameters read from the signature, constraints checked at run time.

Every attack, check, scanner and reporter subclasses :class:`Plugin`. The constructor is the
configuration: keyword-only arguments with defaults, stored unchanged on attributes of the
same name, no logic in ``__init__``. That lets any plugin be written into a plan or a finding
(:meth:`Plugin.get_params`) and rebuilt from it (``type(p)(**params)``).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from phalanx.errors import InvalidParameterError

P = TypeVar("P", bound="Plugin")


class Constraint:
    """A rule one parameter must satisfy."""

    def problem(self, name: str, value: Any) -> str | None:
        """A one-line description of how ``value`` breaks the rule, or ``None``."""
        raise NotImplementedError

    def describe(self) -> str:
        """The rule in words, for docs and error messages."""
        raise NotImplementedError


@dataclass(frozen=True)
class Interval(Constraint):
    """A number in a range.

    Args:
        low: Lower end, or ``None`` for unbounded.
        high: Upper end, or ``None`` for unbounded.
        closed: Which ends are included: ``"both"``, ``"left"``, ``"right"`` or ``"neither"``.
        integer: Whether the value must be an integer.
        optional: Whether ``None`` is allowed.
    """

    low: float | None = None
    high: float | None = None
    closed: str = "both"
    integer: bool = False
    optional: bool = False

    def describe(self) -> str:
        left = "[" if self.closed in ("both", "left") else "("
        right = "]" if self.closed in ("both", "right") else ")"
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        kind = "an integer" if self.integer else "a number"
        return f"{kind} in {left}{low}, {high}{right}"

    def problem(self, name: str, value: Any) -> str | None:
        if value is None and self.optional:
            return None
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not numeric or (self.integer and not float(value).is_integer()):
            return f"{name} must be {self.describe()}, got {value!r}"
        if not math.isfinite(float(value)):
            return f"{name} must be finite, got {value!r}"
        low_ok = (
            self.low is None
            or value > self.low
            or (value == self.low and self.closed in ("both", "left"))
        )
        high_ok = (
            self.high is None
            or value < self.high
            or (value == self.high and self.closed in ("both", "right"))
        )
        if not (low_ok and high_ok):
            return f"{name} must be {self.describe()}, got {value!r}"
        return None


@dataclass(frozen=True)
class OneOf(Constraint):
    """One of a fixed set of values."""

    values: tuple[Any, ...]

    def describe(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)

    def problem(self, name: str, value: Any) -> str | None:
        if value in self.values:
            return None
        return f"{name} must be {self.describe()}, got {value!r}"


@dataclass(frozen=True)
class IsInstance(Constraint):
    """A value of given types (``None`` allowed when ``optional``)."""

    types: tuple[type, ...]
    optional: bool = False

    def describe(self) -> str:
        return "of type " + " or ".join(t.__name__ for t in self.types)

    def problem(self, name: str, value: Any) -> str | None:
        if (value is None and self.optional) or isinstance(value, self.types):
            return None
        return f"{name} must be {self.describe()}, got {type(value).__name__}"


class Plugin:
    """Base class of every plugin.

    Class attributes a subclass sets:
        name: Registry id, e.g. ``"pgd"``.
        version: Bumped when results change for the same parameters.
        paper: The paper it implements, as a citation with a link.
        refs: Taxonomy refs its findings carry, e.g. ``("atlas:AML.T0015",)``.
        constraints: Per-parameter rules checked by :meth:`check_params`.
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1.0"
    paper: ClassVar[str] = ""
    refs: ClassVar[tuple[str, ...]] = ()
    constraints: ClassVar[Mapping[str, Constraint]] = {}

    @classmethod
    def plugin_id(cls) -> str:
        """The registry id, falling back to the lower-case class name."""
        return cls.name or cls.__name__.lower()

    @classmethod
    def param_names(cls) -> list[str]:
        """The constructor's parameter names, read from its signature."""
        signature = inspect.signature(cls.__init__)
        return [
            p.name
            for p in signature.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_params(self) -> dict[str, Any]:
        """The parameters this plugin was built with (enough to rebuild it)."""
        return {name: getattr(self, name) for name in self.param_names()}

    def with_params(self: P, **changes: Any) -> P:
        """A copy with some parameters changed.

        Raises:
            InvalidParameterError: A name in ``changes`` is not a parameter.
        """
        unknown = sorted(set(changes) - set(self.param_names()))
        if unknown:
            raise InvalidParameterError(
                [f"{type(self).__name__} has no parameter {n!r}" for n in unknown]
            )
        return type(self)(**{**self.get_params(), **changes})

    def param_problems(self) -> list[str]:
        """Every parameter problem (empty when the configuration is valid)."""
        problems: list[str] = []
        for name, rule in self.constraints.items():
            problem = rule.problem(name, getattr(self, name))
            if problem:
                problems.append(problem)
        problems.extend(self._extra_problems())
        return problems

    def _extra_problems(self) -> Sequence[str]:
        """Hook for rules that involve several parameters at once."""
        return ()

    def check_params(self) -> None:
        """Validate every parameter at once.

        Raises:
            InvalidParameterError: Listing every problem, not only the first.
        """
        problems = self.param_problems()
        if problems:
            raise InvalidParameterError(problems)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

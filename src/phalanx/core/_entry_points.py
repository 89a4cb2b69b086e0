"""Entry points read straight from the installed distributions' ``entry_points.txt`` files.

``importlib.metadata.entry_points()`` costs every command about 20 ms before it does anything
(measured with the 120 distributions of the development environment; more with more installed):
importing the module (which imports the e-mail parser) and building a distribution object for
each installed package. The registry needs only phalanx's groups, so it reads them here by the
discovery rules of ``importlib.metadata`` (Python 3.10 to 3.13):

- every entry of ``sys.path`` in order (``""`` is the current directory), and in each the
  ``*.dist-info`` and ``*.egg-info`` directories, in directory-listing order;
- a distribution is known by the name its directory spells before the first ``-``, normalised
  as ``importlib.metadata`` does (runs of ``-``, ``_`` and ``.`` become ``_``, lower case); the
  first distribution of a name on the path is used and later ones are ignored;
- ``entry_points.txt``: lines stripped, blank lines and ``#`` comments skipped, ``[group]``
  headers, then ``name = value`` pairs split at the first ``=``.

Where those rules may not be the whole story, :func:`read_entries` returns ``None`` and the
caller asks ``importlib.metadata``: a ``sys.path`` entry that is a file (a zip archive) or not
a string, an unpacked ``.egg`` directory, a metadata directory whose suffix is not in lower
case, or a finder on ``sys.meta_path`` other than the standard path finder that can list
distributions.
"""

from __future__ import annotations

import functools
import importlib
import importlib.machinery
import os
import re
import sys
from dataclasses import dataclass
from typing import Any

__all__ = ["Entry", "load_entry", "read_entries"]

_SUFFIXES = (".dist-info", ".egg-info")
_SEPARATORS = re.compile(r"[-_.]+")
#: ``module``, ``module:attr.path``, either with ``[extras]`` (ignored when loading).
_VALUE = re.compile(r"(?P<module>[\w.]+)\s*(?::\s*(?P<attr>[\w.]+)\s*)?(?:\[.*\]\s*)?$")


@dataclass(frozen=True)
class Entry:
    """One entry point: its ``name``, its ``value`` (``module:attribute``), and the
    distribution that declared it: the path of its metadata directory, or the
    ``importlib.metadata`` distribution when that found it."""

    name: str
    value: str
    origin: object


def read_entries(groups: tuple[str, ...]) -> dict[str, list[Entry]] | None:
    """The entry points of ``groups``, in discovery order; ``None`` when the caller must ask
    ``importlib.metadata`` instead (see the module docstring)."""
    for finder in sys.meta_path:
        if (getattr(finder, "find_distributions", None) is not None
                and finder is not importlib.machinery.PathFinder):
            return None
    found: dict[str, list[Entry]] = {group: [] for group in groups}
    seen: set[str] = set()
    for entry in sys.path:
        if not isinstance(entry, str):
            return None
        root = entry or "."
        try:
            children = os.listdir(root)
        except NotADirectoryError:
            return None  # a zip archive on the path
        except OSError:
            continue  # a path entry that does not exist (importlib skips it too)
        if root.lower().endswith(".egg"):
            return None
        for child in children:
            low = child.lower()
            if not low.endswith(_SUFFIXES):
                continue
            if not child.endswith(_SUFFIXES):
                return None  # importlib would name it from its METADATA file
            key = _SEPARATORS.sub("_", child.rpartition(".")[0].partition("-")[0]).lower()
            if key in seen:
                continue
            seen.add(key)
            origin = os.path.join(root, child)
            for group, name, value in _pairs(os.path.join(origin, "entry_points.txt")):
                if group in found:
                    found[group].append(Entry(name, value, origin))
    return found


def _pairs(path: str) -> list[tuple[str, str, str]]:
    """``(group, name, value)`` of one ``entry_points.txt``; none for a missing or unreadable
    file."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError):
        return []
    out: list[tuple[str, str, str]] = []
    group: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            group = line.strip("[]")
            continue
        if group is None:
            continue
        name, sep, value = line.partition("=")
        if sep:
            out.append((group, name.strip(), value.strip()))
    return out


def load_entry(value: str) -> Any:
    """Import what an entry point's ``value`` names (``module:attr.path``), as
    ``EntryPoint.load`` does.

    Raises:
        ImportError: The module does not import, or the value is not an entry point's.
        AttributeError: The module has no such attribute.
    """
    match = _VALUE.match(value)
    if match is None:
        raise ImportError(f"malformed entry point value {value!r}")
    module = importlib.import_module(match["module"])
    attrs = [a for a in (match["attr"] or "").split(".") if a]
    return functools.reduce(getattr, attrs, module)

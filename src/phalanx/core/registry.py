"""The plugin registry: entry points, read lazily.

Built-in plugins are registered exactly like third-party ones, in ``pyproject.toml``::

    [project.entry-points."phalanx.attacks"]
    pgd = "phalanx.evasion.pgd:PGD"

Listing plugins reads entry-point metadata only and imports nothing; loading one imports just
its module. The entry points are read from the installed distributions' ``entry_points.txt``
files by :mod:`phalanx.core._entry_points`, by the rules of ``importlib.metadata`` (asked
instead where those rules may not be the whole story), which spares every command about 20 ms
of start-up.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phalanx.core._entry_points import Entry, load_entry, read_entries
from phalanx.errors import PluginError, UnknownPluginError

#: Plugin families and their entry-point groups.
FAMILIES: dict[str, str] = {
    "attacks": "phalanx.attacks",
    "checks": "phalanx.checks",
    "defenses": "phalanx.defenses",
    "detectors": "phalanx.detectors",
    "scanners": "phalanx.scanners",
    "probes": "phalanx.probes",
    "reporters": "phalanx.reporters",
}


@dataclass(frozen=True)
class PluginInfo:
    """A registered plugin, described without importing it.

    Args:
        family: Plugin family, e.g. ``"attacks"``.
        name: Registry id, e.g. ``"pgd"``.
        target: Where it lives, ``"module:attribute"``.
        distribution: The installed package that registered it.
    """

    family: str
    name: str
    target: str
    distribution: str


def _group(family: str) -> str:
    try:
        return FAMILIES[family]
    except KeyError:
        known = ", ".join(FAMILIES)
        raise UnknownPluginError(f"unknown plugin family {family!r}; known: {known}") from None


def _entry_points(family: str) -> tuple[Entry, ...]:
    return _cached_entry_points().get(_group(family), ())


@functools.cache
def _cached_entry_points() -> dict[str, tuple[Entry, ...]]:
    # What is installed does not change while a process runs, so every family's group is read
    # in one walk, once. ``refresh()`` forgets them (after installing a plugin in a running
    # interpreter).
    groups = tuple(FAMILIES.values())
    found = read_entries(groups)
    if found is None:
        from importlib import metadata

        eps = metadata.entry_points()
        found = {group: [Entry(ep.name, ep.value, ep.dist) for ep in eps.select(group=group)]
                 for group in groups}
    return {group: tuple(sorted(entries, key=lambda ep: ep.name))
            for group, entries in found.items()}


#: Callables that forget what was worked out from the entry points (see :func:`on_refresh`).
_REFRESH_HOOKS: list[Callable[[], object]] = []


def refresh() -> None:
    """Forget the cached entry points, and what was worked out from them (:func:`on_refresh`),
    so plugins installed since are found."""
    _cached_entry_points.cache_clear()
    for hook in _REFRESH_HOOKS:
        hook()


def on_refresh(hook: Callable[[], object]) -> None:
    """Have :func:`refresh` call ``hook`` too: for a cache of plugins chosen from the registry
    (such as the scanner for each file format), which must be chosen again after it."""
    if hook not in _REFRESH_HOOKS:
        _REFRESH_HOOKS.append(hook)


def list_plugins(family: str | None = None) -> list[PluginInfo]:
    """Every registered plugin (of one family, or all), without importing any."""
    families = [family] if family else list(FAMILIES)
    found: list[PluginInfo] = []
    for fam in families:
        for ep in _entry_points(fam):
            found.append(PluginInfo(fam, ep.name, ep.value, _distribution_name(ep.origin)))
    return found


def _distribution_name(origin: object) -> str:
    """The distribution's name as its metadata spells it (``""`` when it cannot be read)."""
    from importlib import metadata

    if isinstance(origin, str):
        origin = metadata.PathDistribution(Path(origin))
    if not isinstance(origin, metadata.Distribution):
        return ""
    return origin.name or ""


def plugin_targets(family: str) -> dict[str, str]:
    """Registry name to ``module:attribute`` for one family, in name order.

    Unlike :func:`list_plugins` it reads no distribution's metadata (about 1 ms a plugin), so
    it is what code that picks a plugin at run time should call.
    """
    return {ep.name: ep.value for ep in _entry_points(family)}


def load_plugin(family: str, name: str) -> Any:
    """Import and return the plugin class registered as ``name`` in ``family``.

    Raises:
        UnknownPluginError: Nothing is registered under that name (the message suggests
            close names).
        PluginError: The plugin is registered but fails to import.
    """
    eps = {ep.name: ep for ep in _entry_points(family)}
    if name not in eps:
        close = difflib.get_close_matches(name, list(eps), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "see `phalanx plugins list`"
        raise UnknownPluginError(f"no {family[:-1]} plugin named {name!r}", hint=hint)
    try:
        return load_entry(eps[name].value)
    except ImportError as exc:
        raise PluginError(f"plugin {family}/{name} failed to import: {exc}") from exc

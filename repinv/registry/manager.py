"""The plugin manager: loads the core's own plugin and the ``repinv`` entry points, once and lazily.

Registrations from every plugin are collected into one :class:`Registry`. A name registered twice keeps its first
owner (built-ins load first, so they cannot be hijacked silently) and a warning names both plugins; a plugin that
fails to import or register becomes a warning naming it while the rest keep working. ``REPINV_PLUGINS=a,b``
restricts which entry-point plugins load (the core's own plugin always loads).
"""

from __future__ import annotations

import importlib
import inspect
import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

import pluggy

from repinv.errors import UnknownName
from repinv.registry import hookspecs

__all__ = ["Entry", "Registry", "get_plugin_manager", "get_registry", "register_plugin", "unregister_plugin",
           "reset_plugins", "RepinvPluginWarning"]

#: The core's own plugins, registered by name before any entry point (so they always load and their names win):
#: the modules that implement the built-in decoders, loss terms and perturbations declare their hook implementations
#: themselves, and are imported by name here, like an entry point, so the registry imports nothing above it.
CORE_PLUGINS = ("repinv.decoders.paper", "repinv.decoders.residual", "repinv.losses.pixel", "repinv.losses.perceptual",
                "repinv.losses.adversarial", "repinv.analysis.perturbations")


class RepinvPluginWarning(UserWarning):
    """A plugin could not be loaded, or tried to take a name another plugin owns."""


@dataclass
class Entry:
    """One registered thing.

    Attributes:
        name: the registered name (a representation family, a decoder, loss term or perturbation name).
        obj: the factory, builder or function.
        plugin: the name of the plugin that registered it.
        description: one line for listings.
        variants: for representations, an optional callable listing variant names; it may take one argument,
            what the user asked for after ``family:`` (or ``None``), for families too large to list whole.
    """

    name: str
    obj: Callable[..., Any]
    plugin: str
    description: str = ""
    variants: Callable[..., Iterable[str]] | None = None

    @property
    def factory(self) -> Callable[..., Any]:
        """Alias of :attr:`obj` for representation factories."""
        return self.obj

    def list_variants(self, asked: str | None = None) -> list[str]:
        """The variant names, or ``[]`` when the family has none or does not list them.

        Args:
            asked: what the user asked for after ``family:``, passed on to a ``variants`` callable that takes it.
        """
        if not self.variants:
            return []
        takes_argument = bool(inspect.signature(self.variants).parameters)
        return list(self.variants(asked) if takes_argument else self.variants())


@dataclass
class Registry:
    """Everything the loaded plugins registered, by kind."""

    representations: dict[str, Entry] = field(default_factory=dict)
    decoders: dict[str, Entry] = field(default_factory=dict)
    perturbations: dict[str, Entry] = field(default_factory=dict)
    losses: dict[str, Entry] = field(default_factory=dict)

    def get(self, kind: str, name: str) -> Entry:
        """Look up ``name`` among ``kind`` (``"decoder"``, ``"loss"``, ``"perturbation"`` or ``"representation"``);
        raise :class:`UnknownName`."""
        table = {"decoder": self.decoders, "perturbation": self.perturbations, "loss": self.losses,
                 "representation": self.representations}[kind]
        if name not in table:
            raise UnknownName(kind, name, table)
        return table[name]

    def _tables(self) -> tuple[tuple[str, dict[str, Entry]], ...]:
        return (("representations", self.representations), ("decoders", self.decoders),
                ("losses", self.losses), ("perturbations", self.perturbations))

    def by_plugin(self) -> dict[str, dict[str, list[str]]]:
        """For each plugin, the names it registered per kind."""
        owners: dict[str, dict[str, list[str]]] = {}
        for kind, table in self._tables():
            for entry in table.values():
                owners.setdefault(entry.plugin, {}).setdefault(kind, []).append(entry.name)
        return owners


_manager: pluggy.PluginManager | None = None
_registry: Registry | None = None


def _allowed_entry_points() -> set[str] | None:
    value = os.environ.get("REPINV_PLUGINS")
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


def get_plugin_manager() -> pluggy.PluginManager:
    """The one plugin manager, created and loaded on first use."""
    global _manager
    if _manager is None:
        manager = pluggy.PluginManager(hookspecs.PROJECT)
        manager.add_hookspecs(hookspecs)
        for core in CORE_PLUGINS:
            manager.register(importlib.import_module(core), name=core)
        allowed = _allowed_entry_points()
        for point in entry_points(group=hookspecs.PROJECT):
            if allowed is not None and point.name not in allowed:
                continue
            try:
                manager.register(point.load(), name=point.name)
            except Exception as error:  # a broken plugin must not take the others down
                warnings.warn(f"plugin {point.name!r} ({point.value}) failed to load and is skipped: "
                              f"{type(error).__name__}: {error}", RepinvPluginWarning, stacklevel=2)
        _manager = manager
    return _manager


def _collect(manager: pluggy.PluginManager) -> Registry:
    registry = Registry()
    for kind, table in registry._tables():
        singular = "loss term" if kind == "losses" else kind[:-1]
        hook_name = f"register_{kind}"
        # Core first, then plugins in registration order, so first-wins favours built-ins.
        for plugin in getattr(manager.hook, hook_name).get_hookimpls():
            plugin_name = plugin.plugin_name

            def register(name: str, obj: Callable[..., Any], *, description: str = "",
                         variants: Callable[..., Iterable[str]] | None = None,
                         _table: dict[str, Entry] = table, _plugin: str = plugin_name, _kind: str = singular) -> None:
                if not isinstance(name, str) or not name or ":" in name:
                    raise ValueError(f"{_kind} names are non-empty and contain no colon, got {name!r}")
                if name in _table:
                    warnings.warn(f"plugin {_plugin!r} tried to register {_kind} {name!r}, which plugin "
                                  f"{_table[name].plugin!r} already registered; keeping {_table[name].plugin!r}'s",
                                  RepinvPluginWarning, stacklevel=2)
                    return
                _table[name] = Entry(name, obj, _plugin, description, variants)

            try:
                plugin.function(register=register)
            except Exception as error:
                warnings.warn(f"plugin {plugin_name!r} failed in {hook_name}: {type(error).__name__}: {error}",
                              RepinvPluginWarning, stacklevel=2)
    return registry


def get_registry() -> Registry:
    """Everything registered by the loaded plugins (loads them on first use)."""
    global _registry
    if _registry is None:
        _registry = _collect(get_plugin_manager())
    return _registry


def register_plugin(plugin: ModuleType | object, name: str | None = None) -> str:
    """Register a plugin object (a module or any object with hook implementations) at run time.

    Args:
        plugin: the plugin.
        name: its name in listings (default: pluggy's canonical name).

    Returns:
        The name it was registered under (pass it to :func:`unregister_plugin`).
    """
    global _registry
    manager = get_plugin_manager()
    registered = manager.register(plugin, name=name)
    if registered is None:
        raise ValueError(f"plugin {name!r} is already registered")
    _registry = None
    return registered


def unregister_plugin(name: str) -> None:
    """Remove a plugin registered with :func:`register_plugin`."""
    global _registry
    get_plugin_manager().unregister(name=name)
    _registry = None


def reset_plugins() -> None:
    """Forget the loaded plugins, so the next use loads them again (e.g. after changing ``REPINV_PLUGINS``)."""
    global _manager, _registry
    _manager, _registry = None, None

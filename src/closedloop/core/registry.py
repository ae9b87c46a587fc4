"""Registries of named kinds (the plant registry here; agents, learning rules and loggers
keep theirs with their base classes): what a config's ``plant.kind`` may name beyond the
built-ins.

A user adds a kind in one of two ways:

* in Python, before training: ``closedloop.register_plant("cart", Cart)`` (or
  ``register_agent``);
* in an installed package, with an entry point, so that the command line and every worker
  process of a sweep find it without being told::

      [project.entry-points."closedloop.plants"]
      cart = "mypackage.plants:Cart"

Entry points are loaded when a config names a kind that is not registered yet. A config file
names kinds only; it never carries code.

Example
-------
>>> from dataclasses import dataclass
>>> import jax.numpy as jnp
>>> from closedloop.core.mechanics import NonlinearPlant
>>> @dataclass(frozen=True)
... class Drift(NonlinearPlant):
...     state_names = ("x",)
...     input_names = ("u",)
...     def dynamics(self, x, u):
...         return x + self.dt * u
>>> register_plant("drift-example", Drift)
>>> PLANTS.get("drift-example") is Drift
True
"""

from __future__ import annotations

import dataclasses
from importlib.metadata import entry_points
from typing import Any

from closedloop.core.mechanics import BUILTIN_PLANTS, NonlinearPlant
from closedloop.core.muscle_arm import MuscleArm
from closedloop.errors import ConfigError

LINEAR_PLANT_KINDS = ("integrator", "point_mass_2d", "linear")
"""Plant kinds built from matrices (:mod:`closedloop.core.plants`)."""

class Registry:
    """Kinds by name: built-ins, registered classes and entry points of ``group``."""

    def __init__(self, what: str, group: str, builtin: dict[str, Any], reserved: tuple[str, ...],
                 key: str | None = None, label: str | None = None) -> None:
        self.what, self.group = what, group
        self.key, self.label = key or f"{what}.kind", label or f"{what} kind"
        self.builtin, self.reserved = dict(builtin), reserved
        self.registered: dict[str, Any] = {}

    def names(self) -> list[str]:
        """Every kind known now (entry points are listed without being loaded)."""
        found = {point.name for point in entry_points(group=self.group)}
        return sorted({*self.reserved, *self.builtin, *self.registered, *found})

    def register(self, name: str, cls: Any) -> None:
        """Add (or replace) kind ``name``."""
        if not isinstance(name, str) or not name or name in self.reserved or name in self.builtin:
            raise ConfigError(f"'{name}' cannot be registered: it is a built-in "
                              f"{self.label} or not a name")
        self.check(name, cls)
        self.registered[name] = cls

    def check(self, name: str, cls: Any) -> None:
        """Hook: refuse a class that cannot be a kind of this registry."""

    def get(self, name: str) -> Any:
        """The class of kind ``name`` (loading its entry point if need be)."""
        if name in self.builtin:
            return self.builtin[name]
        if name in self.registered:
            return self.registered[name]
        for point in entry_points(group=self.group, name=name):
            try:
                cls = point.load()
            except Exception as exc:          # a broken plug-in: one clear line
                raise ConfigError(f"{self.label} '{name}': its entry point {point.value} "
                                  f"failed to load ({type(exc).__name__}: {exc})") from None
            self.check(name, cls)
            self.registered[name] = cls
            return cls
        raise ConfigError(f"invalid value for '{self.key}': '{name}' (allowed: "
                          f"{', '.join(self.names())}; a new kind is added with "
                          f"closedloop.register_{self.what} or a '{self.group}' entry point)")


class SubclassRegistry(Registry):
    """Named classes that must subclass ``base`` (no built-ins at construction: the module
    that defines them adds them to ``builtin``).

    Example
    -------
    >>> registry = SubclassRegistry("thing", "example.things", int, key="--thing")
    >>> registry.register("flag", bool)
    >>> registry.get("flag")
    <class 'bool'>
    """

    def __init__(self, what: str, group: str, base: type, *, key: str | None = None,
                 label: str | None = None) -> None:
        super().__init__(what, group, {}, (), key=key, label=label)
        self.base = base

    def check(self, name: str, cls: Any) -> None:
        """Refuse anything but a subclass of ``base`` that defines its abstract methods."""
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise ConfigError(f"{self.label} '{name}': {cls!r} must subclass "
                              f"{self.base.__module__}.{self.base.__qualname__}")
        if getattr(cls, "__abstractmethods__", None):
            raise ConfigError(f"{self.label} '{name}': {cls.__name__} must define "
                              f"{', '.join(sorted(cls.__abstractmethods__))}()")


class _PlantRegistry(Registry):
    def check(self, name: str, cls: Any) -> None:
        if not (isinstance(cls, type) and issubclass(cls, NonlinearPlant)
                and dataclasses.is_dataclass(cls)):
            raise ConfigError(f"plant kind '{name}': {cls!r} must be a dataclass subclassing "
                              "closedloop.NonlinearPlant (decorate it with "
                              "@dataclass(frozen=True))")
        if getattr(cls, "__abstractmethods__", None):
            raise ConfigError(f"plant kind '{name}': {cls.__name__} must define "
                              f"{', '.join(sorted(cls.__abstractmethods__))}(x, u)")
        if not cls.state_names or not cls.input_names:
            raise ConfigError(f"plant kind '{name}': {cls.__name__} must name its states and "
                              "inputs (state_names, input_names)")


PLANTS = _PlantRegistry("plant", "closedloop.plants", {**BUILTIN_PLANTS, "muscle_arm": MuscleArm},
                        LINEAR_PLANT_KINDS)


def register_plant(name: str, cls: type[NonlinearPlant]) -> None:
    """Make ``plant.kind: name`` build ``cls`` (a frozen dataclass subclassing
    :class:`~closedloop.core.mechanics.NonlinearPlant`; its fields are ``plant.params``).

    Example
    -------
    >>> from closedloop.core.mechanics import Pendulum
    >>> register_plant("my-pendulum", Pendulum)
    """
    PLANTS.register(name, cls)

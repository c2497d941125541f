"""Name -> object registries.

Every pluggable part (losses, networks, data sets, feature extractors) is chosen by name from a
:class:`Registry`; the CLI offers ``choices=registry.keys()`` and an unknown name is a
:class:`ConfigError` that names the closest valid one.
"""
from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A user error in a configuration: reported as one line, exit code 2."""


def closest(name: str, options: list[str] | tuple[str, ...]) -> str:
    """Return a ``"; did you mean 'x'?"`` hint for ``name`` among ``options`` (or ``""``)."""
    match = difflib.get_close_matches(name, list(options), n=1, cutoff=0.4)
    return f"; did you mean '{match[0]}'?" if match else ""


class Registry(Generic[T]):
    """A named collection that refuses duplicate names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, obj: T | None = None, help: str = "") -> Callable[[T], T] | T:
        """Register ``obj`` under ``name``; usable directly or as a decorator."""

        def add(o: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is already registered")
            self._items[name] = o
            self._help[name] = help or (getattr(o, "__doc__", "") or "").strip().split("\n")[0]
            return o

        return add(obj) if obj is not None else add

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} '{name}'{closest(name, self.keys())} "
                f"(choices: {', '.join(self.keys())})"
            ) from None

    def describe(self, name: str) -> str:
        return self._help.get(name, "")

    def keys(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

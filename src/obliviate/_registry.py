"""A small name -> object registry shared by models, datasets, methods and metrics.

Registering a name twice is an error; an unknown name lists the choices and suggests the
nearest one (``Unknown method 'scrubb'. Did you mean 'scrub'?``).
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """Raised when a registry lookup fails; the message names the choices."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


class Registry(Generic[T]):
    """Maps names to objects (classes or factories) of one kind, e.g. ``"method"``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@REGISTRY.register("ssd")``. Names are lower-case identifiers."""
        if not name or name != name.strip() or any(c.isspace() for c in name):
            raise ValueError(f"{self.kind} name must be a non-empty word, got {name!r}")

        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        msg = f"Unknown {self.kind} {name!r}."
        near = difflib.get_close_matches(name, list(self._items), n=1, cutoff=0.5)
        if near:
            msg += f" Did you mean {near[0]!r}?"
        return msg + f" Available: {', '.join(sorted(self._items))}."

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted names matching a shell-style wildcard (``"resnet*"``)."""
        return sorted(n for n in self._items if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def __len__(self) -> int:
        return len(self._items)

"""Name -> component registries filled by a one-line decorator.

    DATASETS = Registry("dataset")

    @DATASETS.register("digits")
    def load_digits(...): ...
"""
from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


def did_you_mean(name: str, choices: list[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


class UnknownName(KeyError):
    """Raised for a name missing from a registry; the text lists the valid choices."""

    def __init__(self, kind: str, name: str, choices: list[str]):
        self.kind, self.name, self.choices = kind, name, choices
        self.text = (f"unknown {kind} '{name}'{did_you_mean(name, choices)}; "
                     f"expected one of: {', '.join(choices)}")
        super().__init__(self.text)

    def __str__(self) -> str:
        return self.text


class Registry(Generic[T]):
    """An ordered mapping from snake_case name to a registered object."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = obj
            return obj
        return decorator

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise UnknownName(self.kind, name, self.names())
        return self._entries[name]

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def items(self):
        return self._entries.items()

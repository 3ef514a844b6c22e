"""Targets: where a regularizer's ``modules:`` globs and ``types:`` class names let module
surgery change a model, and the refusal of a target that matches no place.

Surgery (:mod:`regbench.models.surgery`) lists every place a slot could change as the modules
that place concerns (its anchors, with their paths); a :class:`Target` admits a place where
one anchor matches every criterion given. Paths are the plain model's ``named_modules()``
names matched as globs (``fnmatch``: ``*`` also crosses dots, so ``layer4.*`` is everything
inside ``layer4``); types match a module's class name or a base class's.
"""
from __future__ import annotations

import dataclasses
import difflib
from fnmatch import fnmatchcase
from typing import Optional

from torch import nn

from regbench.errors import RegbenchError

WHERE = {                                # the places each slot can change, for Unmatched
    "linear": "hidden nn.Linear layers", "conv": "hidden nn.Conv2d layers",
    "output": "the output layer", "norm": "hidden linear/conv layers",
    "dropout": "hidden activations and the hidden layers feeding them",
    "residual_drop": "residual blocks and their branches' last layers",
}
CLOSEST = 3                              # paths or types an Unmatched error names

Anchor = tuple[str, nn.Module]           # a module a change concerns, with its path


@dataclasses.dataclass(frozen=True)
class Target:
    """Where a regularizer's changes may go: ``modules`` globs on the module path, ``types``
    class names (a module's or a base class's); an empty criterion admits everything."""

    owner: str                           # the regularizer that set it, for messages
    modules: tuple[str, ...] = ()
    types: tuple[str, ...] = ()

    def __str__(self) -> str:
        parts = [f"{key} {', '.join(map(repr, values))}" for key, values in
                 (("modules", self.modules), ("types", self.types)) if values]
        return " and ".join(parts)

    def matching(self, anchors: list[Anchor]) -> tuple[str, ...]:
        """The paths of the anchors that match every criterion (none: the change is not
        placed)."""
        return tuple(path for path, module in anchors
                     if (not self.modules or any(fnmatchcase(path, g) for g in self.modules))
                     and (not self.types or type_names(module) & set(self.types)))


class Unmatched(RegbenchError):
    """A ``modules:`` glob or ``types:`` name that matches no place its regularizer could
    change. ``path`` is the key it was given at: ``(owner, key)`` until a caller that knows
    where the regularizer sits in the config prefixes it (:meth:`under`)."""

    def __init__(self, owner: str, key: str, message: str, path: tuple[str, ...] = ()):
        self.owner, self.key, self.message = owner, key, message
        self.path = path or (owner, key)
        super().__init__(f"{'.'.join(self.path)}: {message}")

    def under(self, *prefix: str) -> Unmatched:
        """The same refusal at ``prefix`` + its path (e.g. ``recipes.<recipe>``)."""
        return Unmatched(self.owner, self.key, self.message, (*prefix, *self.path))


def type_names(module: nn.Module) -> set[str]:
    """The class names a ``types:`` entry may give for ``module``: its own and its bases'."""
    return {cls.__name__ for cls in type(module).__mro__}


def check_targets(targets: dict[str, Target], places: dict[str, list[list[Anchor]]],
                  no_place: Optional[dict[str, dict[str, str]]] = None) -> None:
    """Refuse (:class:`Unmatched`) a glob or type of a target that matches no place its slots
    could change, or criteria that each match somewhere but never at one place together. A
    target whose slots have no place at all is left to the caller (the regularizer changes
    nothing: refused with what it needs). ``no_place`` says, per slot, why a path a user may
    aim at is no place for it (the output layer, for dropout)."""
    by_target: dict[Target, list[str]] = {}
    for slot, target in targets.items():
        by_target.setdefault(target, []).append(slot)
    for target, owned in by_target.items():
        anchors = [anchor for slot in owned for spot in places[slot] for anchor in spot]
        if not anchors:
            continue
        can = f"{target.owner} can change ({', '.join(dict.fromkeys(WHERE[s] for s in owned))})"
        paths = list(dict.fromkeys(path for path, _ in anchors))
        why_not = {path: why for slot in owned for path, why in (no_place or {}).get(slot, {})
                   .items()}
        for glob in target.modules:
            if not any(fnmatchcase(path, glob) for path in paths):
                aimed = [path for path in why_not if fnmatchcase(path, glob)]
                why = f" ({aimed[0]} is {why_not[aimed[0]]})" if aimed else ""
                raise Unmatched(target.owner, "modules", f"'{glob}' matches no place {can}"
                                f"{why}; closest paths: {_closest(glob, paths)}")
        names = list(dict.fromkeys(type(module).__name__ for _, module in anchors))
        for name in target.types:
            if not any(name in type_names(module) for _, module in anchors):
                raise Unmatched(target.owner, "types", f"'{name}' matches no place {can}; "
                                f"closest types: {_closest(name, names)}")
        if not any(target.matching(spot) for slot in owned for spot in places[slot]):
            raise Unmatched(target.owner, "modules", f"{target} each match somewhere, but no "
                            f"module at one place {can} matches both; closest paths: "
                            f"{_closest(target.modules[0], paths)}")


def _closest(text: str, choices: list[str]) -> str:
    """The choices most like ``text`` (a glob's wildcards aside), else the first ones."""
    plain = text.replace("*", "").replace("?", "")
    return ", ".join(difflib.get_close_matches(plain, choices, n=CLOSEST, cutoff=0.4)
                     or choices[:CLOSEST])

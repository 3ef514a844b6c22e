"""Targeted placement: the ``modules:`` and ``types:`` keys every architecture regularizer takes.

A regularizer whose ``build`` hook sets layer-factory slots (dropout, the norms, the weight-layer
replacements, stochastic depth) has Params that inherit :class:`Placed`; the trainer turns the
two keys into a :class:`~regbench.models.targets.Target` on every slot the hook set
(:func:`target_of`), and module surgery changes only the places it matches (see
regbench/models/surgery.py for which module each slot's change concerns: for dropout, the
activation it follows or the hidden layers feeding that call of it). Unset, the keys are left
out of the resolved config (:attr:`Placed.hash_neutral`), so a config without them keeps its run
ids and config hashes.
"""
from __future__ import annotations

import json
from typing import Any, ClassVar, Optional, Union

from pydantic import (
    SerializerFunctionWrapHandler,
    ValidationInfo,
    field_validator,
    model_serializer,
)

from regbench.config.schema import StrictModel
from regbench.models.targets import Target

Names = Optional[Union[str, list[str]]]   # one, or a list: read as a list


class Placed(StrictModel):
    """The placement keys, shared by every architecture regularizer's Params."""

    modules: Names = None   # glob(s) on the module path as model.named_modules() names it (fc*, head.*, layer4.*); unset: every place
    types: Names = None     # module class name(s), or a base class's (Linear, Conv2d, BasicBlock); unset: every type

    # keys added after runs were made -> the value that reproduces those runs: left out of the
    # dumped params (the resolved config, hence run ids and config hashes) at that value. A
    # serializer rather than Field(exclude_if=…), which needs pydantic 2.12
    hash_neutral: ClassVar[dict[str, Any]] = {"modules": None, "types": None}

    @model_serializer(mode="wrap")
    def _without_neutral(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {key: value for key, value in handler(self).items()
                if key not in self.hash_neutral or value != self.hash_neutral[key]}

    @field_validator("modules", "types", mode="before")
    @classmethod
    def _one_or_more(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return None
        names = [value] if isinstance(value, str) else value
        what = "glob" if info.field_name == "modules" else "module class name"
        if not (isinstance(names, list) and names
                and all(isinstance(name, str) and name.strip() for name in names)):
            raise ValueError(f"must be a {what} or a non-empty list of them (got {value!r})")
        if info.field_name == "types":
            for name in names:
                if not name.isidentifier():
                    raise ValueError(f"must be class names as type(module).__name__ gives them, "
                                     f"e.g. Linear or Conv2d (got {name!r})")
        return names

    def target(self, owner: str) -> Optional[Target]:
        """Where ``owner``'s changes may go; None: everywhere."""
        if self.modules is None and self.types is None:
            return None
        return Target(owner, _names(self.modules), _names(self.types))


def _names(value: Union[str, list[str], None]) -> tuple[str, ...]:
    return () if value is None else (value,) if isinstance(value, str) else tuple(value)


def target_of(regularizer: Any) -> Optional[Target]:
    """A regularizer's target (None for one without placement keys, or with them unset)."""
    params = regularizer.params
    return params.target(regularizer.name) if isinstance(params, Placed) else None


def placement_key(params: dict[str, Any], *also: str) -> str:
    """What fused members must share of the placement keys (and of ``also``, other keys that
    decide which layers the model gets): members' models must have the same layers."""
    keys = ("modules", "types", *also)
    return json.dumps({key: params.get(key) for key in keys}, sort_keys=True)


def placement_text(params: Placed) -> str:
    """" where modules fc* match" for a describe line ("" untargeted)."""
    target = params.target("")
    return f" where {target} match" if target is not None else ""

"""Gradient clipping by global norm (or by value).

Paper: Pascanu, Mikolov & Bengio 2013.
Hook: after_backward (before the optimizer step).
Formula: with ``max_norm`` c, if ‖g‖₂ over all parameters > c then g ← g·c/‖g‖₂; with ``value``
v, each gradient entry is clamped to [−v, v]. The pre-clip global norm is logged as grad_norm.
As torch.nn.utils.clip_grad_norm_ (factor min(1, c/(‖g‖₂ + 1e-6))), with ‖g‖₂ summed in the
order a fused group sums each member's (each tensor's squares, then across tensors), so a run
clips the same alone or fused.
Deviations from the paper: none.
"""
from __future__ import annotations

from typing import Optional

import torch
from pydantic import Field, model_validator

from regbench.config.schema import StrictModel
from regbench.regularizers._streams import member_column
from regbench.regularizers.base import Regularizer, register


class Params(StrictModel):
    max_norm: Optional[float] = Field(None, gt=0)  # largest global L2 norm of the gradient
    value: Optional[float] = Field(None, gt=0)     # largest absolute value of any gradient entry

    @model_validator(mode="after")
    def _one_of(self):
        if self.max_norm is not None and self.value is not None:
            raise ValueError("give either max_norm or value, not both")
        if self.max_norm is None and self.value is None:
            self.max_norm = 1.0
        return self


@register
class GradClip(Regularizer):
    name = "grad_clip"
    summary = "clip the global gradient norm to max_norm (or each entry to ±value) before the step"
    paper = "Pascanu et al. 2013"
    Params = Params
    # far below the tiny models' gradient norms (≈0.7–1), so every step clips; the default
    # max_norm 1 binds on some steps only
    conformance = {"max_norm": 0.1}

    def wrap(self, model):
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        return model

    fusable = True      # every member's gradients at once, on the stacked ones

    def after_backward(self, model):
        grads = [p.grad[None] for p in self.parameters if p.grad is not None]
        clip_members(grads, [self.params], self.columns)

    @classmethod
    def stacked_after_backward(cls, members, parameters):
        grads = [p.grad for p in parameters if p.grad is not None]
        clip_members(grads, [m.params for m in members], members[0].columns)

    @classmethod
    def fusion_key(cls, params: dict) -> str:
        return "by norm" if params.get("value") is None else "by value"   # one mode per group


@torch.no_grad()
def clip_members(grads: list[torch.Tensor], params: list[Params],
                 cache: Optional[dict] = None) -> None:
    """Each member's gradients (``grads``: [M, ...] each) clipped in place by its own setting,
    all by norm or all by value: one arithmetic for a solo run (M = 1) and a fused group
    (``cache``: see member_column)."""
    like = grads[0]
    if params[0].max_norm is not None:
        total = sum(g.flatten(1).pow(2).sum(1) for g in grads).sqrt()            # [M]
        limit = member_column([p.max_norm for p in params], like, cache).view(-1)
        factor = (limit / (total + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(factor.view(-1, *[1] * (g.dim() - 1)))
    else:
        bound = member_column([p.value for p in params], like, cache).view(-1)
        for g in grads:
            column = bound.view(-1, *[1] * (g.dim() - 1))
            torch.maximum(torch.minimum(g, column), -column, out=g)

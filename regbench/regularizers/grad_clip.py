"""Gradient clipping by global norm (or by value).

Paper: Pascanu, Mikolov & Bengio 2013.
Hook: after_backward (before the optimizer step).
Formula: with ``max_norm`` c, if ‖g‖₂ over all parameters > c then g ← g·c/‖g‖₂; with ``value``
v, each gradient entry is clamped to [−v, v]. The pre-clip global norm is logged as grad_norm.
Deviations from the paper: none.
"""
from __future__ import annotations

from typing import Optional

import torch
from pydantic import Field, model_validator

from regbench.config.schema import StrictModel
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

    def after_backward(self, model):
        if self.params.max_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.parameters, self.params.max_norm, foreach=True)
        else:
            torch.nn.utils.clip_grad_value_(self.parameters, self.params.value, foreach=True)

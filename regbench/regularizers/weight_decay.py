"""Decoupled weight decay (AdamW-style), applied outside the gradient.

Paper: Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization".
Hook: after_step.
Formula: after each optimizer step, w ← w − η·λ·w (η = the current learning rate). Under plain
SGD this equals ``l2`` with λ_l2 = n·λ; under Adam or momentum it differs.
"""
from __future__ import annotations

import torch
from pydantic import Field

from regbench.config.schema import StrictModel
from regbench.regularizers.base import WeightRegularizer, register


class Params(StrictModel):
    lambda_: float = Field(5e-4, alias="lambda", ge=0)  # λ: fraction of w removed per unit of η
    include_bias: bool = False                          # also decay biases


@torch.no_grad()
def decay_weights(weights: list[torch.Tensor], lr: float, lam: float) -> None:
    """w ← (1 − ηλ)·w in place."""
    torch._foreach_mul_(weights, 1.0 - lr * lam)


@register
class WeightDecay(WeightRegularizer):
    name = "weight_decay"
    try_rank = 30
    summary = "decoupled: after each step w ← w − ηλw (AdamW-style); differs from l2 under Adam"
    paper = "Loshchilov & Hutter 2019"
    Params = Params
    penalizes = True

    def after_step(self, model):
        decay_weights(self.weights, self.ctx.lr, self.params.lambda_)

    def describe(self) -> str:
        lam, lr = self.params.lambda_, self.ctx.configured_lr
        return (f"weight_decay: after each step w ← (1 − ηλ)·w, λ={lam:g}; factor per step "
                f"{1 - lr * lam:.6g} at the configured η={lr:g} (follows any lr schedule)")

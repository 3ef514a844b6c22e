"""Decoupled weight decay (AdamW-style), applied outside the gradient.

Paper: Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization".
Hook: after_backward (the gradients are computed, the optimizer has not stepped).
Formula: w_{t+1} = (1 − η·λ)·w_t − η·u_t, where u_t is the optimizer's update from the gradient at
w_t and η the current learning rate: the decay acts on the pre-step weights, exactly as
``torch.optim.AdamW(weight_decay=λ)`` does for the parameters it decays (weights; biases with
``include_bias``). torch's AdamW also decays biases and norm parameters, so ``optimizer: adam``
+ ``weight_decay`` with ``include_bias: true`` on a model without norm layers is AdamW.
Under plain SGD (no momentum) this equals ``l2`` with λ_l2 = n·λ; under Adam or momentum it
differs (the decay is not rescaled by the optimizer).
Deviations from the paper: none.
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
    summary = ("decoupled: w ← (1 − ηλ)·w − η·update, exactly torch's AdamW order; differs from "
               "l2 under Adam")
    paper = "Loshchilov & Hutter 2019"
    Params = Params
    penalizes = True
    fusable = True

    def after_backward(self, model):
        decay_weights(self.weights, self.ctx.lr, self.params.lambda_)

    @classmethod
    def check(cls, params, ctx):
        optimizer = ctx.train.get("optimizer") or {}
        if optimizer.get("name") == "adamw" and optimizer.get("weight_decay") != 0:
            return ["weight_decay: the optimizer is adamw, which already decays the weights "
                    f"(weight_decay {optimizer.get('weight_decay') or 0.01:g}): the recipe decays "
                    "twice; use optimizer adam with this regularizer, or set "
                    "train.optimizer.weight_decay: 0"]
        return []

    def describe(self) -> str:
        lam, lr = self.params.lambda_, self.ctx.configured_lr
        return (f"weight_decay: after each step w ← (1 − ηλ)·w, λ={lam:g}; factor per step "
                f"{1 - lr * lam:.6g} at the configured η={lr:g} (follows any lr schedule)")

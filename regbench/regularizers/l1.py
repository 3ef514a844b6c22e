"""L1 weight penalty (lasso).

Paper: Tibshirani 1996.
Hook: penalty.
Formula: loss += λ/n · Σ |w| over weight matrices and kernels (biases excluded unless
``include_bias``), n = training samples. Pushes many weights to (near) zero.
Deviations from the paper: none (λ is scaled by 1/n).
"""
from __future__ import annotations

import torch
from pydantic import Field

from regbench.config.schema import StrictModel
from regbench.regularizers.base import WeightRegularizer, member_values, register


class Params(StrictModel):
    lambda_: float = Field(1.0, alias="lambda", ge=0)  # λ, per the λ/n convention
    include_bias: bool = False                         # also penalise biases


def l1_penalty(weights: list[torch.Tensor], lam: float, n: int) -> torch.Tensor:
    """λ/n · Σ|w|."""
    return lam / n * sum(w.abs().sum() for w in weights)


@register
class L1(WeightRegularizer):
    name = "l1"
    try_rank = 170
    summary = "loss += λ/n·Σ|w| on weights; drives many weights to zero (sparsity)"
    paper = "Tibshirani 1996"
    Params = Params
    sparsifying = True
    penalizes = True
    fusable = True

    def penalty(self, model):
        return l1_penalty(self.weights, self.params.lambda_, self.ctx.n_train)

    @classmethod
    def stacked_penalty(cls, members, weights):
        n = members[0].ctx.n_train     # λ/n divided as the solo penalty divides it (l2's)
        coefficient = member_values([m.params.lambda_ / n for m in members], weights[0])
        return coefficient * sum(w.abs().flatten(1).sum(1) for w in weights)

    def describe(self) -> str:
        lam, n = self.params.lambda_, self.ctx.n_train
        return f"l1: loss += λ/n·Σ|w|, λ={lam:g}, n={n}; coefficient λ/n = {lam / n:.4g}"

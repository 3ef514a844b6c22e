"""Elastic net: a mix of the L1 and L2 penalties.

Paper: Zou & Hastie 2005.
Hook: penalty.
Formula: loss += λ/n · (ρ·Σ|w| + (1−ρ)/2 · Σw²), ρ = ``l1_ratio``; ρ=1 is ``l1``, ρ=0 is ``l2``.
Deviations from the paper: none (λ is scaled by 1/n, as regbench's l1 and l2 are).
"""
from __future__ import annotations

import torch
from pydantic import Field

from regbench.config.schema import StrictModel
from regbench.regularizers.base import WeightRegularizer, member_values, register


class Params(StrictModel):
    lambda_: float = Field(1.0, alias="lambda", ge=0)  # λ, per the λ/n convention
    l1_ratio: float = Field(0.5, ge=0, le=1)          # ρ: share of the L1 term
    include_bias: bool = False                        # also penalise biases


def elastic_net_penalty(weights: list[torch.Tensor], lam: float, l1_ratio: float,
                        n: int) -> torch.Tensor:
    """λ/n · (ρ·Σ|w| + (1−ρ)/2 · Σw²)."""
    l1 = sum(w.abs().sum() for w in weights)
    l2 = sum((w * w).sum() for w in weights)
    return lam / n * (l1_ratio * l1 + (1 - l1_ratio) / 2 * l2)


@register
class ElasticNet(WeightRegularizer):
    name = "elastic_net"
    try_rank = 160
    summary = "loss += λ/n·(ρ·Σ|w| + (1−ρ)/2·Σw²); between l1 (ρ=1) and l2 (ρ=0)"
    paper = "Zou & Hastie 2005"
    Params = Params
    sparsifying = True
    penalizes = True
    fusable = True

    def penalty(self, model):
        p = self.params
        return elastic_net_penalty(self.weights, p.lambda_, p.l1_ratio, self.ctx.n_train)

    @classmethod
    def stacked_penalty(cls, members, weights):
        n, like = members[0].ctx.n_train, weights[0]   # each factor as the solo penalty's
        coefficient = member_values([m.params.lambda_ / n for m in members], like)
        rho = member_values([m.params.l1_ratio for m in members], like)
        half_rest = member_values([(1 - m.params.l1_ratio) / 2 for m in members], like)
        l1 = sum(w.abs().flatten(1).sum(1) for w in weights)
        l2 = sum((w * w).flatten(1).sum(1) for w in weights)
        return coefficient * (rho * l1 + half_rest * l2)

    def describe(self) -> str:
        p, n = self.params, self.ctx.n_train
        return (f"elastic_net: λ={p.lambda_:g}, ρ={p.l1_ratio:g}, n={n}; L1 coefficient ρλ/n = "
                f"{p.l1_ratio * p.lambda_ / n:.4g}, L2 gradient coefficient (1−ρ)λ/n = "
                f"{(1 - p.l1_ratio) * p.lambda_ / n:.4g}")

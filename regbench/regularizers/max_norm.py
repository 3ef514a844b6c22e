"""Max-norm constraint on each unit's incoming weights.

Paper: Srebro & Shraibman 2005; used with dropout by Srivastava et al. 2014.
Hook: after_step.
Formula: after each step, for every unit (row of a linear weight, output channel of a conv
kernel) with ‖w‖₂ > c, w ← c · w / ‖w‖₂.
Deviations from the paper: none.
"""
from __future__ import annotations

from typing import Optional

import torch
from pydantic import Field

from regbench.config.schema import StrictModel
from regbench.regularizers._streams import member_column
from regbench.regularizers.base import WeightRegularizer, register


class Params(StrictModel):
    c: float = Field(3.0, gt=0)  # largest allowed L2 norm of a unit's incoming weight vector


@torch.no_grad()
def apply_max_norm(weight: torch.Tensor, c: float, cache: Optional[dict] = None) -> None:
    """Rescale rows (dim 0) of ``weight`` in place so that each has L2 norm ≤ c (``cache``:
    see member_column)."""
    max_norm_members(weight[None], member_column([c], weight[None], cache).view(-1))


@torch.no_grad()
def max_norm_members(weights: torch.Tensor, c: torch.Tensor) -> None:
    """Each member's rows (dim 1 of ``weights`` [M, O, ...]) rescaled in place to L2 norm ≤
    c[m]: one arithmetic for a solo run (M = 1) and a fused group."""
    norms = weights.reshape(weights.shape[0], weights.shape[1], -1).norm(dim=2)
    scale = (c.view(-1, 1) / norms.clamp_min(1e-12)).clamp(max=1.0)
    weights.mul_(scale.view(*scale.shape, *([1] * (weights.dim() - 2))))


@register
class MaxNorm(WeightRegularizer):
    name = "max_norm"
    try_rank = 140
    summary = "after each step rescale every unit's incoming weights to L2 norm ≤ c"
    paper = "Srebro & Shraibman 2005; Srivastava et al. 2014"
    Params = Params
    # below every freshly initialised unit's norm (≈0.6 in the tiny models): the default c = 3
    # never binds in a 3-epoch check
    conformance = {"c": 0.1}

    fusable = True      # every member's rows at once, on the stacked weights

    def after_step(self, model):
        for weight in self.weights:
            apply_max_norm(weight, self.params.c, self.columns)

    @classmethod
    def stacked_after_step(cls, members, weights):
        c = member_column([m.params.c for m in members], weights[0], members[0].columns)
        for weight in weights:
            max_norm_members(weight, c.view(-1))

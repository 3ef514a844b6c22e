"""Max-norm constraint on each unit's incoming weights.

Paper: Srebro & Shraibman 2005; used with dropout by Srivastava et al. 2014.
Hook: after_step.
Formula: after each step, for every unit (row of a linear weight, output channel of a conv
kernel) with ‖w‖₂ > c, w ← c · w / ‖w‖₂.
Deviations from the paper: none.
"""
from __future__ import annotations

import torch
from pydantic import Field

from regbench.config.schema import StrictModel
from regbench.regularizers.base import WeightRegularizer, register


class Params(StrictModel):
    c: float = Field(3.0, gt=0)  # largest allowed L2 norm of a unit's incoming weight vector


@torch.no_grad()
def apply_max_norm(weight: torch.Tensor, c: float) -> None:
    """Rescale rows (dim 0) of ``weight`` in place so that each has L2 norm ≤ c."""
    norms = weight.reshape(weight.shape[0], -1).norm(dim=1)
    scale = (c / norms.clamp_min(1e-12)).clamp(max=1.0)
    weight.mul_(scale.view(-1, *([1] * (weight.dim() - 1))))


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

    def after_step(self, model):
        for weight in self.weights:
            apply_max_norm(weight, self.params.c)

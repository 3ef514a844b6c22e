"""Adaptive gradient clipping: each unit's gradient clipped relative to the norm of its weights.

Paper: Brock, De, Smith & Simonyan 2021, "High-Performance Large-Scale Image Recognition Without
Normalization" (NFNets).
Hook: after_backward (before the optimizer step; build collects the clipped parameters).
Formula: for every unit i of every clipped parameter W with gradient G: if
‖G_i‖ > λ·max(‖W_i‖, ε) then G_i ← λ·max(‖W_i‖, ε)·G_i/‖G_i‖ (Frobenius norms; λ =
``clipping``, ε = ``eps``). A unit is a row of a linear weight [out, in] (one output unit's
incoming weights), an output channel of a conv kernel [out, in, kh, kw], and a whole vector for
a bias or a norm layer's gain (the paper's reference code: a parameter of one dimension is one
unit). Every trainable parameter is clipped but, with ``exclude_output`` (the paper's choice),
the output layer's weight and bias: the last linear/conv layer of the model.
Deviations from the paper: none (the paper pairs AGC with normaliser-free networks and batch
sizes in the thousands, where λ = 0.01; its ablation finds that smaller batches tolerate a
larger λ).
"""
from __future__ import annotations

from typing import Optional

import torch
from pydantic import Field

from regbench.config.schema import StrictModel
from regbench.errors import RegbenchError
from regbench.models.base import weight_layers
from regbench.regularizers._streams import member_column
from regbench.regularizers.base import Incompatible, Regularizer, register


class Params(StrictModel):
    clipping: float = Field(0.01, gt=0)      # λ: largest ‖G_i‖/max(‖W_i‖, ε) of any unit
    eps: float = Field(1e-3, gt=0)           # ε: floor of ‖W_i‖, so units at zero still move
    exclude_output: bool = True              # leave the output layer's gradients unclipped


def unit_norms(t: torch.Tensor) -> torch.Tensor:
    """Norms of each member's units of ``t`` [M, ...] (see the module docstring), shaped to
    broadcast over it: [M, out, 1, …], or [M, 1, …] for a parameter of one dimension."""
    if t.dim() <= 2:
        norms = torch.linalg.vector_norm(t.reshape(t.shape[0], -1), dim=1)
        return norms.view(-1, *[1] * (t.dim() - 1))
    norms = torch.linalg.vector_norm(t.flatten(2), dim=2)
    return norms.view(*norms.shape, *[1] * (t.dim() - 2))


@torch.no_grad()
def clip_unitwise(weights: list[torch.Tensor], grads: list[torch.Tensor],
                  clipping: list[float], eps: list[float], cache: Optional[dict] = None
                  ) -> None:
    """Clip ``grads`` in place unit by unit against ``weights`` ([M, ...] each, pairwise),
    member m by its own λ and ε: one arithmetic for a solo run (M = 1) and a fused group
    (``cache``: see member_column)."""
    for weight, grad in zip(weights, grads):
        floor = member_column(eps, weight, cache)
        limit = member_column(clipping, weight, cache) * torch.maximum(unit_norms(weight), floor)
        norm = unit_norms(grad)
        grad.mul_(torch.where(norm > limit, limit / norm, torch.ones_like(norm)))


def agc(parameters: list[torch.Tensor], clipping: float = 0.01, eps: float = 1e-3,
        cache: Optional[dict] = None) -> None:
    """Adaptive gradient clipping of the gradients of ``parameters`` (in place); ``cache``
    keeps the per-device constants between calls."""
    chosen = [p for p in parameters if p.grad is not None]
    clip_unitwise([p.detach()[None] for p in chosen], [p.grad[None] for p in chosen],
                  [clipping], [eps], cache)


@register
class AGC(Regularizer):
    name = "agc"
    summary = ("clip each unit's gradient to λ·max(‖W_i‖, ε) of its weights' norm before the "
               "step (output layer left out)")
    paper = "Brock et al. 2021"
    Params = Params
    # λ 0.01 binds on most units of the tiny models from the first step; a much larger λ
    # would leave their runs equal to the baseline's
    conformance = {"clipping": 0.01}

    @classmethod
    def check(cls, params, ctx):
        if params.exclude_output and ctx.model_name == "linear":
            raise Incompatible("model 'linear' has only its output layer, which exclude_output "
                               "leaves unclipped: set exclude_output: false")
        return []

    @classmethod
    def conflicts_with(cls, other):
        if other.name == "grad_clip":
            return ("both clip the gradients before the step: whichever runs second clips what "
                    "the first left, so neither's setting is what the run used; keep one")
        return None

    def wrap(self, model):
        trainable = [p for p in model.parameters() if p.requires_grad]
        left_out: set[int] = set()
        layers = weight_layers(model)
        if self.params.exclude_output and layers:
            left_out = {id(p) for p in layers[-1][1].parameters()}
        # positions in the model's trainable parameters: the fused loop's stacked ones are in
        # the same order
        self.positions = [i for i, p in enumerate(trainable) if id(p) not in left_out]
        if not self.positions:
            raise RegbenchError("agc cannot apply to this model: its only trainable "
                                "parameters are the output layer's, which exclude_output leaves "
                                "unclipped; set agc.exclude_output: false")
        self.parameters = [trainable[i] for i in self.positions]
        return model

    fusable = True      # every member's gradients at once, on the stacked ones

    def after_backward(self, model):
        agc(self.parameters, self.params.clipping, self.params.eps, self.columns)

    @classmethod
    def stacked_after_backward(cls, members, parameters):
        chosen = [p for p in (parameters[i] for i in members[0].positions) if p.grad is not None]
        clip_unitwise([p.detach() for p in chosen], [p.grad for p in chosen],
                      [m.params.clipping for m in members], [m.params.eps for m in members],
                      members[0].columns)

    @classmethod
    def fusion_key(cls, params: dict) -> str:
        # the clipped parameters differ with it: one choice per group
        return "output excluded" if params.get("exclude_output", True) else "all"

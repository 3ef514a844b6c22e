"""Layer normalisation after every hidden linear/conv layer, before the activation.

Paper: Ba, Kiros & Hinton 2016, "Layer Normalization".
Hook: build (the layer factory's ``norm``).
Placement: ``modules`` and ``types`` narrow it to the hidden layers that match
(``modules: "fc*"``: after fc1, fc2, …; regularizers/_placement.py).
Formula: per sample, ŷ = γ ⊙ (y − μ)/√(σ² + eps) + β with μ, σ² over the layer's features;
for a conv layer over all of (C, H, W) (implemented as GroupNorm with one group, so the same
statistics, with one γ, β per channel because H, W are not known when the layer is made).
Same computation in training and eval.
Deviations from the paper: after a conv layer the scale and shift are per channel, not per element
of (C, H, W).
"""
from __future__ import annotations

from pydantic import Field
from torch import nn

from regbench.regularizers._placement import Placed
from regbench.regularizers.base import Regularizer, register


class Params(Placed):
    eps: float = Field(1e-5, gt=0)  # added to the variance for numerical stability


@register
class LayerNorm(Regularizer):
    name = "layernorm"
    solo_because = ("the stacked model runs linear layers, activations and dropout only, and "
                    "fusing norm layers through vmap is not measured to pay yet")
    summary = "LayerNorm after every hidden linear (conv: over C,H,W), before the activation"
    paper = "Ba et al. 2016"
    Params = Params
    exclusive = "norm"

    def build(self, factory):
        eps = self.params.eps
        factory.norm = lambda features, kind: (
            nn.GroupNorm(1, features, eps=eps) if kind == "conv"
            else nn.LayerNorm(features, eps=eps))

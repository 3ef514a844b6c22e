"""Group normalisation after every hidden conv layer, before the activation.

Paper: Wu & He 2018, "Group Normalization".
Hook: build (the layer factory's ``norm``; conv layers only, fully connected layers are left
as they are: the slot gives no layer for them).
Placement: ``modules`` and ``types`` narrow it to the hidden conv layers that match
(``modules: "layer4.*"``; regularizers/_placement.py).
Formula: per sample, the C channels are split into G groups and each group is normalised over
its channels and all positions: ŷ = γ_c·(y − μ_g)/√(σ²_g + eps) + β_c. G is ``groups`` or, when
that does not divide a layer's C, the largest divisor of C below it (a layer with 6 channels and
groups 4 uses 3 groups). A model without conv layers is refused: use layernorm (a plugin's
model once it is built).
Deviations from the paper: when ``groups`` does not divide a layer's channels, the largest divisor
below it is used.
"""
from __future__ import annotations

from pydantic import Field
from torch import nn

from regbench.regularizers._placement import Placed
from regbench.regularizers.base import Incompatible, Regularizer, register


class Params(Placed):
    groups: int = Field(8, ge=1)    # G, channel groups per layer (at most; see the docstring)
    eps: float = Field(1e-5, gt=0)  # added to the variance for numerical stability


def group_count(channels: int, groups: int) -> int:
    """The largest divisor of ``channels`` that is ≤ ``groups``."""
    return max(g for g in range(1, min(groups, channels) + 1) if channels % g == 0)


@register
class GroupNorm(Regularizer):
    name = "groupnorm"
    solo_because = ("the stacked model runs linear layers, activations and dropout only, and "
                    "fusing norm layers through vmap is not measured to pay yet")
    summary = "GroupNorm (G groups of channels) after every hidden conv, before the activation"
    paper = "Wu & He 2018"
    Params = Params
    exclusive = "norm"
    model_needs = "a hidden nn.Conv2d layer to normalise (layernorm also normalises linear ones)"

    @classmethod
    def check(cls, params, ctx):
        if ctx.model_convolutional is False:
            raise Incompatible(f"groupnorm normalises conv channels; model '{ctx.model_name}' "
                               "has no conv layers (name layernorm instead)")
        return []

    def build(self, factory):
        groups, eps = self.params.groups, self.params.eps
        factory.norm = lambda features, kind: (
            nn.GroupNorm(group_count(features, groups), features, eps=eps) if kind == "conv"
            else None)

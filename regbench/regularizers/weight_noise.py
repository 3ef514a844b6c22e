"""Weight noise: every training forward uses weights perturbed by fresh Gaussian noise.

Paper: Graves 2011, "Practical Variational Inference for Neural Networks" (fixed-σ weight
noise); An 1996.
Hook: build (every linear and conv layer, the output layer included).
Placement: ``modules`` and ``types`` narrow it to the linear/conv layers that match
(``modules: "head.*"``, ``types: Linear``; regularizers/_placement.py).
Formula: a training forward uses W + σ·ε with ε ~ N(0, 1) drawn fresh per weight for every
batch; the gradient of that forward is applied to the clean W (the noise is not stored), and
eval uses the clean W. Biases are not perturbed. ε comes from the layer's own stream (seeded
from the run id and the layer's number, regularizers/_streams.py): the same alone or fused.
Deviations from the paper: one noise draw per weight per batch, shared by the batch's samples;
biases are not perturbed.
"""
from __future__ import annotations

import torch
from pydantic import Field

from regbench.regularizers._placement import Placed, placement_key
from regbench.regularizers._streams import member_column
from regbench.regularizers._weight_layers import WeightTransform, conv_factory, linear_factory
from regbench.regularizers.base import Regularizer, register


class Params(Placed):
    sigma: float = Field(0.01, ge=0)  # σ, std of the additive noise on each weight


def noisy_weights(weight: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor
                  ) -> torch.Tensor:
    """W + σ·ε for weights with a member axis, W [M, out, ...], σ [M, 1, ...] and ε ~ N(0, 1)
    like W: one arithmetic for a solo run (M = 1) and a fused group; gradients flow to W
    unchanged."""
    return weight + sigma * noise


class WeightNoiseTransform(WeightTransform):
    """A layer's noisy weight, from its own stream, at the run's σ."""

    def __init__(self, sigma: float, stream: str):
        super().__init__(stream)
        self.sigma = sigma

    @classmethod
    def stacked(cls, transforms, weight, bias):
        # one row of ε per output unit, as the solo layer takes them: [M, out, ...]
        draws = cls.uniforms(transforms, weight.device, normal=True)
        noise = draws.take(weight.shape[1], tuple(weight.shape[2:]))
        sigma = member_column([t.sigma for t in transforms], weight, transforms[0].columns)
        return noisy_weights(weight, sigma, noise), bias


@register
class WeightNoise(Regularizer):
    name = "weight_noise"
    try_rank = 120
    summary = "each training forward uses w + N(0, σ²), fresh per batch; clean w updated and used in eval"
    paper = "Graves 2011"
    Params = Params
    exclusive = "weight_layer"
    fusable = True      # each member's own noise on its slice of the stacked weights (MLPs)

    @classmethod
    def fusion_key(cls, params):
        return placement_key(params)

    def build(self, factory):
        made = iter(range(1_000_000))      # the layers' numbers, in the order surgery adds them

        def transform() -> WeightNoiseTransform:
            return WeightNoiseTransform(self.params.sigma,
                                        f"{self.ctx.run_id} {self.name} {next(made)}")

        factory.linear = linear_factory(transform)
        factory.output = factory.linear
        factory.conv = conv_factory(transform)

"""Batch normalisation after every hidden linear/conv layer, before the activation.

Paper: Ioffe & Szegedy 2015, "Batch Normalization: Accelerating Deep Network Training by
Reducing Internal Covariate Shift".
Hook: build (the layer factory's ``norm``).
Placement: ``modules`` and ``types`` narrow it to the hidden layers that match
(``types: Conv2d``: after the conv layers only; regularizers/_placement.py).
Formula: in training ŷ = γ·(y − μ_B)/√(σ²_B + eps) + β with the batch's per-feature (per-channel
for conv) mean and variance, and running estimates updated as
r ← (1 − momentum)·r + momentum·stat; in eval the running estimates replace the batch's.
A training batch of one sample per feature (e.g. the last, short batch of an epoch with 1 left
over) has no batch variance, so that one forward uses the running estimates instead of failing.
Deviations from the paper: a training batch with one sample per feature uses the running estimates
for that forward instead of failing.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from regbench.regularizers._placement import Placed
from regbench.regularizers.base import Incompatible, Regularizer, register


class Params(Placed):
    momentum: float = Field(0.1, gt=0, le=1)  # weight of the newest batch in the running statistics
    eps: float = Field(1e-5, gt=0)            # added to the variance for numerical stability


class _SingleSampleSafe:
    """Use the running statistics for a training batch with one value per feature."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.numel() // x.shape[1] <= 1:
            return F.batch_norm(x, self.running_mean, self.running_var, weight=self.weight,
                                bias=self.bias, training=False, momentum=0.0, eps=self.eps)
        return super().forward(x)


class BatchNorm1d(_SingleSampleSafe, nn.BatchNorm1d):
    pass


class BatchNorm2d(_SingleSampleSafe, nn.BatchNorm2d):
    pass


@register
class BatchNorm(Regularizer):
    name = "batchnorm"
    solo_because = ("its running statistics are buffers, which the stacked model does not hold "
                    "per member")
    summary = "BatchNorm after every hidden linear/conv, before the activation; running stats in eval"
    paper = "Ioffe & Szegedy 2015"
    Params = Params
    exclusive = "norm"

    @classmethod
    def check(cls, params, ctx):
        if ctx.batch_size < 2:
            raise Incompatible("batch_size 1 gives no batch statistics to normalise with; "
                               "use batch_size >= 2 or layernorm")
        if ctx.batch_size < 8:
            return [f"batch_size {ctx.batch_size}: batch statistics of so few samples are "
                    "very noisy"]
        return []

    def build(self, factory):
        momentum, eps = self.params.momentum, self.params.eps
        factory.norm = lambda features, kind: (
            BatchNorm2d(features, eps=eps, momentum=momentum) if kind == "conv"
            else BatchNorm1d(features, eps=eps, momentum=momentum))

"""Stochastic depth: drop whole residual branches, per sample, deeper blocks more often.

Paper: Huang, Sun, Liu, Sedra & Weinberger 2016, "Deep Networks with Stochastic Depth".
Hook: build (the layer factory's ``residual_drop``; residual models only: resnet, resmlp).
Formula: block l of L (counted from 1) keeps its branch with probability 1 − p_l, where
p_l = p·l/L (the linear decay rule; p is the last block's drop probability). In training,
mode ``row`` draws b ~ Bernoulli(1 − p_l) independently per sample and mode ``batch`` once per
batch; the block computes act(x + b·f(x)/(1 − p_l)). The 1/(1 − p_l) scaling (as in
torchvision.ops.StochasticDepth) replaces the paper's test-time scaling by (1 − p_l), so in
eval every branch is used unchanged: act(x + f(x)).
"""
from __future__ import annotations

from typing import Literal, Optional

import torch
from pydantic import Field
from torch import nn

from regbench.config.schema import StrictModel
from regbench.regularizers import Regularizer, register


class Params(StrictModel):
    p: float = Field(0.5, ge=0, lt=1)   # drop probability of the last block (paper: 0.5)
    mode: Literal["row", "batch"] = "row"  # row: one draw per sample; batch: one per batch


def drop_path(x: torch.Tensor, p: float, mode: str = "row", training: bool = True,
              generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Zero the whole branch output of each sample (row) or of the batch with prob p,
    scaling the kept ones by 1/(1 − p)."""
    if not training or p == 0:
        return x
    shape = (x.shape[0],) + (1,) * (x.dim() - 1) if mode == "row" else (1,) * x.dim()
    keep = torch.rand(shape, device=x.device, generator=generator) >= p
    return x * keep.to(x.dtype) / (1 - p)


class StochasticDepthDrop(nn.Module):
    """drop_path with a fixed probability; identity in eval."""

    def __init__(self, p: float, mode: str = "row"):
        super().__init__()
        self.p, self.mode = p, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.p, self.mode, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p:.4g}, mode={self.mode}"


@register
class StochasticDepth(Regularizer):
    name = "stochastic_depth"
    summary = "drop residual branch l of L per sample with prob p·l/L in training; all kept in eval"
    paper = "Huang et al. 2016"
    Params = Params
    needs_residual = True

    def build(self, factory):
        p, mode = self.params.p, self.params.mode
        factory.residual_drop = lambda depth: StochasticDepthDrop(p * depth, mode)

    def describe(self) -> str:
        return (f"stochastic_depth: block l of L dropped with prob {self.params.p:g}·l/L "
                f"(mode {self.params.mode})")

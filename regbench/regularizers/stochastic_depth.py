"""Stochastic depth: drop whole residual branches, per sample, deeper blocks more often.

Paper: Huang, Sun, Liu, Sedra & Weinberger 2016, "Deep Networks with Stochastic Depth".
Hook: build (the layer factory's ``residual_drop``; residual models only: resnet, resmlp).
Placement: ``modules`` and ``types`` narrow it to the residual blocks where the block or its
branch's last layer matches (``modules: "layer4.*"``, ``types: BasicBlock``); a targeted
block keeps its p_l = p·l/L, l and L counted over all of the model's blocks.
Formula: block l of L (counted from 1) keeps its branch with probability 1 − p_l, where
p_l = p·l/L (the linear decay rule; p is the last block's drop probability). In training,
mode ``row`` draws b ~ Bernoulli(1 − p_l) independently per sample and mode ``batch`` once per
batch; the block computes act(x + b·f(x)/(1 − p_l)), with torchvision's
``torchvision.ops.StochasticDepth`` as the drop layer (0.58–0.86× the time of the former
hand-written one, ``python benchmarks/drop_path.py``).
Deviations from the paper: the 1/(1 − p_l) scaling in training replaces the paper's test-time
scaling by (1 − p_l), so in eval every branch is used unchanged: act(x + f(x)).
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from regbench.regularizers._placement import Placed, placement_text
from regbench.regularizers.base import Regularizer, register


class Params(Placed):
    p: float = Field(0.5, ge=0, lt=1)   # drop probability of the last block (paper: 0.5)
    mode: Literal["row", "batch"] = "row"  # row: one draw per sample; batch: one per batch


@register
class StochasticDepth(Regularizer):
    name = "stochastic_depth"
    solo_because = ("it drops residual branches, which only the vmap path runs, and its draws "
                    "there would not be each member's own")
    try_rank = 150
    summary = "drop residual branch l of L per sample with prob p·l/L in training; all kept in eval"
    paper = "Huang et al. 2016"
    Params = Params
    needs_residual = True

    def build(self, factory):
        from torchvision.ops import StochasticDepth as Drop  # deferred: ~1.3 s to import

        p, mode = self.params.p, self.params.mode
        factory.residual_drop = lambda depth: Drop(p * depth, mode)

    def describe(self) -> str:
        return (f"stochastic_depth: block l of L dropped with prob {self.params.p:g}·l/L "
                f"(mode {self.params.mode}){placement_text(self.params)}")

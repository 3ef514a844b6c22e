"""Label smoothing of classification targets.

Paper: Szegedy et al. 2016 (Inception v3); Müller, Kornblith & Hinton 2019.
Hook: batch (targets become soft).
Formula: target = (1−ε)·y + ε/K for one-hot (or already soft) y over K classes; with K=3 and
ε=0.3, [0, 1, 0] becomes [0.1, 0.8, 0.1].
Deviations from the paper: none.
"""
from __future__ import annotations

from typing import Optional

import torch
from pydantic import Field

from regbench.config.schema import StrictModel
from regbench.regularizers._streams import member_column
from regbench.regularizers.base import Regularizer, register, soft_targets


class Params(StrictModel):
    epsilon: float = Field(0.1, ge=0, lt=1)  # ε: probability mass spread uniformly over classes


def smooth_labels(y: torch.Tensor, num_classes: int, epsilon: float) -> torch.Tensor:
    """(1−ε)·onehot(y) + ε/K (y may be class indices or soft targets)."""
    return smooth_members(y[None], num_classes, [epsilon])[0]


def smooth_members(y: torch.Tensor, num_classes: int, epsilons: list[float],
                   cache: Optional[dict] = None) -> torch.Tensor:
    """Each member's smoothed targets, y [M, R(, K)] with its own ε: one arithmetic for a solo
    run (M = 1) and a fused group (``cache``: see member_column)."""
    soft = soft_targets(y, num_classes)
    keep = member_column([1 - e for e in epsilons], soft, cache)
    share = member_column([e / num_classes for e in epsilons], soft, cache)
    return soft * keep + share


@register
class LabelSmoothing(Regularizer):
    name = "label_smoothing"
    batch_stage = "targets"
    try_rank = 100
    summary = "target = (1−ε)·onehot + ε/K; discourages over-confident predictions"
    paper = "Szegedy et al. 2016; Müller et al. 2019"
    Params = Params
    tasks = frozenset({"classification"})
    fusable = True      # each member's own ε (stacked_batches); no random draws

    def batch(self, x, y):
        return x, smooth_members(y[None], self.ctx.output_dim, [self.params.epsilon],
                                 self.columns)[0]

    @classmethod
    def stacked_batches(cls, members, x, y, batch_size):
        epsilons = [m.params.epsilon for m in members]
        return x, smooth_members(y, members[0].ctx.output_dim, epsilons, members[0].columns)

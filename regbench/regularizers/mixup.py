"""Mixup: train on convex combinations of pairs of samples and of their labels.

Paper: Zhang, Cisse, Dauphin & Lopez-Paz 2018, "mixup: Beyond Empirical Risk Minimization".
Hook: batch (targets become soft, so label smoothing and cutmix stack on them).
Formula: λ ~ Beta(α, α), x̃ = λ·x_i + (1−λ)·x_j, ỹ = λ·y_i + (1−λ)·y_j, where j is the
partner of i in a random pairing of the batch. λ is drawn independently for every sample
(the paper draws one per batch; per-sample draws are the usual vectorised variant). With an odd
batch size one sample per batch has no partner and stays unmixed (a compatibility warning).
Deviations from the paper: λ is drawn per sample, not once per batch as in the paper; with an odd
batch size one sample per batch stays unmixed.
"""
from __future__ import annotations

import torch
from pydantic import Field

from regbench.config.schema import StrictModel
from regbench.regularizers._sampling import PairMixer, Stockpile, pair_partners, sample_beta
from regbench.regularizers.base import register


class Params(StrictModel):
    alpha: float = Field(0.2, gt=0)  # α of Beta(α, α); small α keeps λ near 0 or 1


def mixup(x: torch.Tensor, y_soft: torch.Tensor, alpha: float
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mix each sample with its partner. Returns (x̃, ỹ, λ per sample, partner index)."""
    size = x.shape[0]
    lam = sample_beta(alpha, size, x.device).to(x.dtype)
    partner = pair_partners(size, x.device)
    return (*mix(x, y_soft, lam, partner), lam, partner)


def mix(x: torch.Tensor, y_soft: torch.Tensor, lam: torch.Tensor, partner: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """λ·(x, y) + (1−λ)·(x, y)[partner], per sample."""
    # λ·a + (1−λ)·b as b + λ·(a − b): one fused op per tensor; index_select: the same rows as
    # x[partner], several times faster on the CPU
    mixed_x = torch.lerp(x.index_select(0, partner), x, lam.view(-1, *([1] * (x.dim() - 1))))
    mixed_y = torch.lerp(y_soft.index_select(0, partner), y_soft,
                         lam.view(-1, 1).to(y_soft.dtype))
    return mixed_x, mixed_y


@register
class Mixup(PairMixer):
    name = "mixup"
    try_rank = 60
    summary = "train on λ·(x_i, y_i) + (1−λ)·(x_j, y_j) of sample pairs, λ ~ Beta(α, α) per sample"
    paper = "Zhang et al. 2018"
    Params = Params

    def __init__(self, params, ctx):
        super().__init__(params, ctx)
        alpha, generator = params.alpha, self.own_generator()   # λ: many batches at a time
        self.lams = Stockpile(lambda count, device: sample_beta(alpha, count, device, generator))

    def mix_with(self, x, y_soft, partner):
        return mix(x, y_soft, self.lams.take(x.shape[0], x.device).to(x.dtype), partner)

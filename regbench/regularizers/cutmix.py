"""CutMix: paste a box cut from a paired sample; labels mixed by the box's true area.

Paper: Yun, Han, Oh, Chun, Choe & Yoo 2019, "CutMix: Regularization Strategy to Train Strong
Classifiers with Localizable Features".
Hook: batch (targets become soft).
Formula: per sample, λ ~ Beta(α, α); a box of side (H·√(1−λ), W·√(1−λ)) centred uniformly in
the image, clipped at the border, is filled from the partner j. With A = (clipped box area)/(H·W),
ỹ = (1−A)·y_i + A·y_j: the label uses the area actually pasted, not the drawn λ.
Deviations from the paper: none.
"""
from __future__ import annotations

from typing import Optional

import torch
from pydantic import Field

from regbench.config.schema import StrictModel
from regbench.regularizers._sampling import PairMixer, box_mask, pair_partners, sample_beta, uniform
from regbench.regularizers.base import register


class Params(StrictModel):
    alpha: float = Field(1.0, gt=0)  # α of Beta(α, α); 1 draws the box's area ratio uniformly


def cutmix(x: torch.Tensor, y_soft: torch.Tensor, alpha: float,
           partner: Optional[torch.Tensor] = None, generator: Optional[torch.Generator] = None
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Paste partner boxes into (B, C, H, W) images. Returns (x̃, ỹ, pasted area A, partner).
    ``partner`` (default: a random pairing of all rows) says whom each row pairs with; the
    draws come from ``generator`` (default: torch's global one)."""
    size, _, height, width = x.shape
    device = x.device
    lam = sample_beta(alpha, size, device, generator)
    if partner is None:
        partner = pair_partners(size, device, generator)
    cut = torch.sqrt(1 - lam)
    centre_y = uniform((size,), 0, height, device, generator)
    centre_x = uniform((size,), 0, width, device, generator)
    half_h, half_w = cut * height / 2, cut * width / 2
    top = torch.round(centre_y - half_h).clamp(0, height).long()
    bottom = torch.round(centre_y + half_h).clamp(0, height).long()
    left = torch.round(centre_x - half_w).clamp(0, width).long()
    right = torch.round(centre_x + half_w).clamp(0, width).long()
    mask = box_mask(top, left, bottom, right, (height, width)).unsqueeze(1)  # (B, 1, H, W)
    mixed_x = torch.where(mask, x.index_select(0, partner), x)
    area = mask.flatten(1).sum(dim=1).to(y_soft.dtype) / (height * width)
    mixed_y = torch.lerp(y_soft, y_soft.index_select(0, partner), area.view(-1, 1))
    return mixed_x, mixed_y, area, partner


@register
class CutMix(PairMixer):
    name = "cutmix"
    try_rank = 90
    summary = "paste a random box from a paired sample; labels mixed by the pasted area"
    paper = "Yun et al. 2019"
    Params = Params
    needs_images = True

    def mix_with(self, x, y_soft, partner):
        return cutmix(x, y_soft, self.params.alpha, partner=partner,
                      generator=self.own_generator())[:2]

"""Cutout: zero square patches at random centres, independently per sample.

Paper: DeVries & Taylor 2017, "Improved Regularization of Convolutional Neural Networks with
Cutout".
Hook: batch (training images only).
Formula: for each sample and each of ``holes`` patches, a centre (c_y, c_x) is drawn uniformly
over the pixels and the square rows [c_y − ⌊s/2⌋, c_y − ⌊s/2⌋ + s) × the same for columns is set
to 0 in every channel — the training mean, since inputs are normalised. A patch near the border
is clipped, as in the paper (so on average less than s² pixels are erased).
Deviations from the paper: none.
"""
from __future__ import annotations

from typing import Optional

import torch
from pydantic import Field

from regbench.config.schema import StrictModel
from regbench.regularizers._sampling import box_mask
from regbench.regularizers.base import Regularizer, register


class Params(StrictModel):
    size: int = Field(8, ge=1)   # s, side of each square patch in pixels (paper: 16 on CIFAR-10)
    holes: int = Field(1, ge=1, le=1000)  # patches per image


def cutout(x: torch.Tensor, size: int, holes: int = 1,
           generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero ``holes`` clipped s×s patches per (B, C, H, W) image. Returns (x̃, erased mask)."""
    batch, _, height, width = x.shape
    device = x.device
    centre_y = torch.randint(0, height, (batch * holes,), device=device, generator=generator)
    centre_x = torch.randint(0, width, (batch * holes,), device=device, generator=generator)
    top, left = centre_y - size // 2, centre_x - size // 2
    masks = box_mask(top, left, top + size, left + size, (height, width))
    erased = masks.view(batch, holes, height, width).any(dim=1)
    return x.masked_fill(erased.unsqueeze(1), 0.0), erased


@register
class Cutout(Regularizer):
    name = "cutout"
    batch_stage = "erase"
    try_rank = 70
    summary = "zero `holes` s×s patches at random centres per image (clipped at the border)"
    paper = "DeVries & Taylor 2017"
    Params = Params
    needs_images = True

    @classmethod
    def check(cls, params, ctx):
        side = min(ctx.input_shape[1:]) if ctx.is_image else None
        if side is not None and params.size >= 2 * side:
            return [f"size {params.size} px covers the whole {side}-px image wherever the "
                    "centre falls: every training image is blanked"]
        return []

    fusable = True      # every draw from the run's own generator: fuses member by member
    batches_by_member = True

    def batch(self, x, y):
        return cutout(x, self.params.size, self.params.holes, self.own_generator())[0], y

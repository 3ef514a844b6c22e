"""Random erasing: with probability p, overwrite a random rectangle of each training image.

Paper: Zhong, Zheng, Kang, Li & Yang 2020, "Random Erasing Data Augmentation".
Hook: batch (training images only).
Formula: per sample, with probability p: target area S_e ~ U(s_l, s_h)·H·W and aspect ratio
r_e drawn log-uniformly in [r_1, r_2]; the rectangle is h = √(S_e·r_e) by w = √(S_e/r_e) at a
uniform position that keeps it inside the image. A draw that does not fit is redrawn (up to
``ATTEMPTS`` draws, all made at once; if none fits the image is left as is, as torchvision does).
The rectangle is filled with ``value`` (a number in normalised units, 0 = the mean) or, with
``value: random``, with per-pixel values uniform between the per-channel min and max of the
samples transformed together (a block of batches, about the data's range: the paper's random
fill, kept inside it).
Deviations from the paper: the default fill is 0 (the training mean of normalised inputs); the
paper's random fill is ``value: random``.
"""
from __future__ import annotations

import math
from typing import Literal, Optional, Union

import torch
from pydantic import Field, field_validator

from regbench.config.schema import StrictModel
from regbench.regularizers._sampling import box_mask, uniform
from regbench.regularizers.base import Regularizer, register

ATTEMPTS = 10  # rectangle draws per sample before giving up on it


class Params(StrictModel):
    p: float = Field(0.5, ge=0, le=1)                    # probability that an image is erased
    scale: tuple[float, float] = (0.02, 0.4)             # (s_l, s_h): erased fraction of the area
    ratio: tuple[float, float] = (0.3, 3.3)              # (r_1, r_2): aspect ratio h/w range
    value: Union[float, Literal["random"]] = 0.0         # fill, normalised units; "random": uniform in the data range

    @field_validator("scale")
    @classmethod
    def _scale(cls, value):
        if not 0 < value[0] <= value[1] <= 1:
            raise ValueError("scale must be (low, high) with 0 < low <= high <= 1")
        return value

    @field_validator("ratio")
    @classmethod
    def _ratio(cls, value):
        if not 0 < value[0] <= value[1]:
            raise ValueError("ratio must be (low, high) with 0 < low <= high")
        return value


def random_erasing(x: torch.Tensor, p: float, scale: tuple[float, float],
                   ratio: tuple[float, float], value: Union[float, str] = 0.0,
                   generator: Optional[torch.Generator] = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Erase one rectangle in a random subset of (B, C, H, W) images. Returns (x̃, mask)."""
    batch, channels, height, width = x.shape
    device = x.device
    area = uniform((batch, ATTEMPTS), scale[0], scale[1], device, generator) * height * width
    log_ratio = uniform((batch, ATTEMPTS), math.log(ratio[0]), math.log(ratio[1]), device,
                        generator)
    h = torch.round(torch.sqrt(area * torch.exp(log_ratio))).long()
    w = torch.round(torch.sqrt(area / torch.exp(log_ratio))).long()
    fits = (h >= 1) & (w >= 1) & (h <= height) & (w <= width)
    first = torch.where(fits, torch.arange(ATTEMPTS, device=device), ATTEMPTS).min(dim=1).values
    pick = first.clamp_max(ATTEMPTS - 1).view(-1, 1)
    h, w = h.gather(1, pick).squeeze(1), w.gather(1, pick).squeeze(1)
    top = (uniform((batch,), 0, 1, device, generator) * (height - h + 1)).long()
    left = (uniform((batch,), 0, 1, device, generator) * (width - w + 1)).long()
    erase = (uniform((batch,), 0, 1, device, generator) < p) & (first < ATTEMPTS)
    mask = box_mask(top, left, top + h, left + w, (height, width)) & erase.view(-1, 1, 1)
    if value == "random":
        low = x.amin(dim=(0, 2, 3)).view(1, channels, 1, 1)
        high = x.amax(dim=(0, 2, 3)).view(1, channels, 1, 1)
        fill = uniform(tuple(x.shape), 0, 1, device, generator).to(x.dtype) * (high - low) + low
    else:
        fill = float(value)  # a scalar: no full-size fill tensor per batch
    return torch.where(mask.unsqueeze(1), fill, x), mask


@register
class RandomErasing(Regularizer):
    name = "random_erasing"
    batch_stage = "erase"
    try_rank = 80
    summary = "with prob p erase a random rectangle (area, aspect drawn per image) to `value`"
    paper = "Zhong et al. 2020"
    Params = Params
    needs_images = True

    fusable = True      # every draw from the run's own generator: fuses member by member
    batches_by_member = True

    def batch(self, x, y):
        params = self.params
        return random_erasing(x, params.p, params.scale, params.ratio, params.value,
                              generator=self.own_generator())[0], y

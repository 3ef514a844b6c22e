"""RandAugment: N operations per image, drawn uniformly from 14, all at one magnitude M.

Paper: Cubuk, Zoph, Shlens & Le 2020, "RandAugment: Practical automated data augmentation with
a reduced search space".
Hook: batch (training images only, on the device; stage geometry).
Formula: for each sample independently, ``num_ops`` times in sequence: an operation o drawn
uniformly from {Identity, ShearX, ShearY, TranslateX, TranslateY, Rotate, Brightness, Color,
Contrast, Sharpness, Posterize, Solarize, AutoContrast, Equalize}, applied at magnitude bin
``magnitude`` of ``num_magnitude_bins`` bins spanning o's range (torchvision's table: shear
0–0.3, translation 0–150/331 of the side in px, rotation 0–30°, enhancement factors 1 ± 0–0.9,
posterize 8–4 bits, solarize threshold 1–0 of the range), negated with probability 1/2 where
o is signed. The operations, their ranges and implementations are
``torchvision.transforms.v2.RandAugment``'s; the draws are made per sample from the run's own
generator and the samples that drew the same operation are transformed together
(regularizers/_autoaugment.py, which also says how a normalised image is turned into the uint8
image the policy takes and back).
Deviations from the paper: torchvision's implementation (tensor ops, nearest interpolation,
fill 0 = each channel's darkest value) rather than the paper's PIL one; each image is
transformed through its own per-channel range, so the colour operations act on the image
stretched to full range (for images that span their raw range, as MNIST's and most photos do,
that is the image itself).
"""
from __future__ import annotations

from typing import Literal, Optional

import torch
from pydantic import Field, model_validator

from regbench.config.schema import StrictModel
from regbench.regularizers._autoaugment import FULL, Policy, PolicyRegularizer, from_unit, to_uint8
from regbench.regularizers.base import register


class Params(StrictModel):
    num_ops: int = Field(2, ge=1, le=10)               # N: operations applied in turn to each image
    magnitude: int = Field(9, ge=0)                    # M: the magnitude bin of every operation, 0 … num_magnitude_bins − 1
    num_magnitude_bins: int = Field(31, ge=2, le=1000)  # bins each operation's range is split into
    interpolation: Literal["nearest", "bilinear"] = "nearest"  # resampling of shear, translation, rotation

    @model_validator(mode="after")
    def _magnitude_in_range(self):
        if self.magnitude >= self.num_magnitude_bins:
            raise ValueError(f"magnitude {self.magnitude} must be below num_magnitude_bins "
                             f"{self.num_magnitude_bins}")
        return self


def randaugment(x: torch.Tensor, num_ops: int = 2, magnitude: int = 9,
                num_magnitude_bins: int = 31, interpolation: str = "nearest",
                generator: Optional[torch.Generator] = None
                ) -> tuple[torch.Tensor, torch.Tensor, Policy]:
    """RandAugment (B, C, H, W) normalised images, one draw per sample. Returns (x̃, the
    drawn keys [num_ops, B], the policy that decodes them)."""
    from torchvision.transforms import v2  # deferred: torchvision takes seconds to import

    transform = v2.RandAugment(num_ops=num_ops, magnitude=magnitude,
                               num_magnitude_bins=num_magnitude_bins, interpolation=interpolation)
    policy = Policy(transform, num_magnitude_bins, *x.shape[-2:])
    images, low, span = to_uint8(x)
    keys = []
    for _ in range(num_ops):
        keys.append(policy.draw(len(x), generator, x.device, bin_index=magnitude))
        images = policy.apply(images, keys[-1])
    return from_unit(images.to(x.dtype) / FULL, low, span), torch.stack(keys), policy


@register
class RandAugment(PolicyRegularizer):
    name = "randaugment"
    summary = ("num_ops operations per image drawn from 14 (shear, translate, rotate, colour, "
               "contrast, …) at one magnitude, independently per sample (torchvision's policy)")
    paper = "Cubuk et al. 2020"
    Params = Params

    policy = staticmethod(randaugment)

    def batch(self, x, y):
        return self.transformed(x), y

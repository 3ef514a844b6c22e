"""TrivialAugment (Wide): one operation per image at a uniformly drawn magnitude; nothing to tune.

Paper: Müller & Hutter 2021, "TrivialAugment: Tuning-free Yet State-of-the-Art Data
Augmentation".
Hook: batch (training images only, on the device; stage geometry).
Formula: for each sample independently, one operation o drawn uniformly from {Identity, ShearX,
ShearY, TranslateX, TranslateY, Rotate, Brightness, Color, Contrast, Sharpness, Posterize,
Solarize, AutoContrast, Equalize} at a magnitude bin drawn uniformly from the
``num_magnitude_bins`` bins spanning o's "wide" range (shear 0–0.99, translation 0–32 px,
rotation 0–135°, enhancement factors 1 ± 0–0.99, posterize 8–2 bits, solarize threshold 1–0 of
the range), negated with probability 1/2 where o is signed. The operations, their ranges and
implementations are ``torchvision.transforms.v2.TrivialAugmentWide``'s; the draws are made per
sample from the run's own generator and the samples that drew the same operation and magnitude
are transformed together (regularizers/_autoaugment.py, which also says how a normalised image
is turned into the uint8 image the policy takes and back).
Deviations from the paper: torchvision's implementation (tensor ops, nearest interpolation,
fill 0 = each channel's darkest value) rather than the paper's PIL one; each image is
transformed through its own per-channel range, so the colour operations act on the image
stretched to full range (for images that span their raw range, that is the image itself).
"""
from __future__ import annotations

from typing import Literal, Optional

import torch
from pydantic import Field

from regbench.config.schema import StrictModel
from regbench.regularizers._autoaugment import FULL, Policy, PolicyRegularizer, from_unit, to_uint8
from regbench.regularizers.base import register

WIDE_SHIFT = 32.0       # px: the wide space's largest translation, whatever the image size
TRANSLATIONS = 2 / 14   # the share of draws that translate (TranslateX, TranslateY)


class Params(StrictModel):
    num_magnitude_bins: int = Field(31, ge=2, le=1000)  # bins each operation's range is split into; a magnitude is drawn uniformly from them
    interpolation: Literal["nearest", "bilinear"] = "nearest"  # resampling of shear, translation, rotation


def trivialaugment(x: torch.Tensor, num_magnitude_bins: int = 31,
                   interpolation: str = "nearest",
                   generator: Optional[torch.Generator] = None
                   ) -> tuple[torch.Tensor, torch.Tensor, Policy]:
    """TrivialAugment Wide on (B, C, H, W) normalised images, one draw per sample. Returns
    (x̃, the drawn keys [B], the policy that decodes them)."""
    from torchvision.transforms import v2  # deferred: torchvision takes seconds to import

    transform = v2.TrivialAugmentWide(num_magnitude_bins=num_magnitude_bins,
                                      interpolation=interpolation)
    policy = Policy(transform, num_magnitude_bins, *x.shape[-2:])
    images, low, span = to_uint8(x)
    keys = policy.draw(len(x), generator, x.device)
    images = policy.apply(images, keys)
    return from_unit(images.to(x.dtype) / FULL, low, span), keys, policy


@register
class TrivialAugment(PolicyRegularizer):
    name = "trivialaugment"
    summary = ("one operation per image from 14 at a uniformly drawn magnitude (wide ranges), "
               "independently per sample (torchvision's TrivialAugmentWide)")
    paper = "Müller & Hutter 2021"
    Params = Params

    @classmethod
    def check(cls, params, ctx):
        super().check(params, ctx)
        side = min(ctx.input_shape[1:])
        # bins of the translation range [0, 32] px that shift a side-px image out of view
        out = sum(WIDE_SHIFT * k / (params.num_magnitude_bins - 1) >= side
                  for k in range(params.num_magnitude_bins)) / params.num_magnitude_bins
        if TRANSLATIONS * out > 0.05:
            return [f"translations of up to {WIDE_SHIFT:g} px (the wide space's fixed range) "
                    f"shift {TRANSLATIONS * out:.0%} of the training images wholly out of their "
                    f"{side}-px frame"]
        return []

    policy = staticmethod(trivialaugment)

    def batch(self, x, y):
        return self.transformed(x), y

"""AugMix: each image blended with a random mixture of short chains of augmentations.

Paper: Hendrycks, Mu, Cubuk, Zoph, Gilmer & Lakshminarayanan 2020, "AugMix: A Simple Data
Processing Method to Improve Robustness and Uncertainty".
Hook: batch (training images only, on the device; stage geometry).
Formula: for each sample independently, m ~ Beta(α, α) and (w_1, …, w_k) ~ Dirichlet(α, …, α)
with k = ``mixture_width``; chain i applies d_i operations in turn (d_i = ``chain_depth``, or
drawn uniformly from {1, 2, 3} when it is −1), each drawn uniformly from the operation space
(ShearX, ShearY, TranslateX, TranslateY, Rotate, Posterize, Solarize, AutoContrast, Equalize;
with ``all_ops`` also Brightness, Color, Contrast, Sharpness) at a magnitude bin drawn uniformly
from the ``severity`` lowest of 10, negated with probability 1/2 where the operation is
signed; x̃ = m·x + (1 − m)·Σ_i w_i·chain_i(x), the blend taken on the [0, 1] image. The
operations, their ranges and implementations are ``torchvision.transforms.v2.AugMix``'s; the
draws are made per sample from the run's own generator and the samples that drew the same
operation and magnitude at a step of a chain are transformed together
(regularizers/_autoaugment.py, which also says how a normalised image is turned into the uint8
image the policy takes and back).
Deviations from the paper: the Jensen–Shannon consistency loss between the clean image and two
AugMix views is not part of this one (it needs three forwards per step, which a batch hook
cannot ask of the loop): this is AugMix's augmentation alone, as torchvision's transform is,
and it fuses; ``augmix_jsd`` is the paper's whole method (solo). all_ops
defaults to false, as the paper, which leaves out the operations that overlap ImageNet-C's
corruptions (torchvision's default is true). torchvision's implementation (tensor ops, bilinear
interpolation, discrete magnitude bins) rather than the paper's PIL one with continuous levels;
each image is transformed through its own per-channel range (see randaugment).
"""
from __future__ import annotations

from typing import Literal, Optional

import torch
from pydantic import Field, field_validator

from regbench.config.schema import StrictModel
from regbench.regularizers._autoaugment import (
    FULL,
    Policy,
    PolicyRegularizer,
    from_unit,
    sample_dirichlet,
    to_uint8,
)
from regbench.regularizers.base import register

MAX_DEPTH = 3           # a chain of random depth has 1 to 3 operations (chain_depth −1)


class Params(StrictModel):
    severity: int = Field(3, ge=1, le=10)          # magnitude bins drawn from: the lowest `severity` of 10
    mixture_width: int = Field(3, ge=1, le=10)     # k: augmentation chains mixed per image
    chain_depth: int = Field(-1, ge=-1, le=10)     # operations per chain; −1: drawn from 1–3 per chain and image
    alpha: float = Field(1.0, gt=0)                # α of Beta(α, α) (m) and Dirichlet(α, …, α) (w)
    all_ops: bool = False                          # also brightness, color, contrast, sharpness (ImageNet-C overlaps)
    interpolation: Literal["nearest", "bilinear"] = "bilinear"  # resampling of shear, translation, rotation

    @field_validator("chain_depth")
    @classmethod
    def _not_zero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("must be −1 (a depth of 1–3 drawn per chain) or 1 to 10")
        return value


def augmix(x: torch.Tensor, severity: int = 3, mixture_width: int = 3, chain_depth: int = -1,
           alpha: float = 1.0, all_ops: bool = False, interpolation: str = "bilinear",
           generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, dict]:
    """AugMix (B, C, H, W) normalised images, one draw per sample. Returns (x̃, the draws:
    ``m`` [B], ``weights`` [B, k], ``keys`` [k, depth, B] and ``depth`` [k, B] of each chain,
    ``policy`` to decode the keys)."""
    from torchvision.transforms import v2  # deferred: torchvision takes seconds to import

    transform = v2.AugMix(severity=severity, mixture_width=mixture_width,
                          chain_depth=chain_depth, alpha=alpha, all_ops=all_ops,
                          interpolation=interpolation)
    space = transform._AUGMENTATION_SPACE if all_ops else transform._PARTIAL_AUGMENTATION_SPACE
    policy = Policy(transform, transform._PARAMETER_MAX, *x.shape[-2:], space=space)
    count, device = len(x), x.device
    images, low, span = to_uint8(x)
    m = sample_dirichlet(torch.full((count, 2), alpha, device=device), generator)[:, 0]
    weights = sample_dirichlet(torch.full((count, mixture_width), alpha, device=device),
                               generator) * (1 - m)[:, None]
    shape = (count,) + (1,) * (x.dim() - 1)
    mixed = images.to(x.dtype).div_(FULL).mul_(m.to(x.dtype).view(shape))
    steps = MAX_DEPTH if chain_depth < 0 else chain_depth
    all_keys, depths = [], []
    for chain in range(mixture_width):
        depth = (torch.randint(1, MAX_DEPTH + 1, (count,), generator=generator, device=device)
                 if chain_depth < 0 else torch.full((count,), chain_depth, device=device))
        augmented, keys = images, []
        for step in range(steps):
            keys.append(policy.draw(count, generator, device, max_bin=severity))
            augmented = policy.apply(augmented, keys[-1], active=depth > step)
        mixed += weights[:, chain].to(x.dtype).view(shape) * augmented.to(x.dtype).div_(FULL)
        all_keys.append(torch.stack(keys))
        depths.append(depth)
    draws = {"m": m, "weights": weights, "keys": torch.stack(all_keys),
             "depth": torch.stack(depths), "policy": policy}
    return from_unit(mixed.clamp_(0, 1), low, span), draws


@register
class AugMix(PolicyRegularizer):
    name = "augmix"
    summary = ("each image blended (Beta/Dirichlet weights) with mixture_width chains of 1–3 "
               "random operations, independently per sample (torchvision's AugMix; with the JS "
               "loss: augmix_jsd)")
    paper = "Hendrycks et al. 2020"
    Params = Params

    policy = staticmethod(augmix)

    def batch(self, x, y):
        return self.transformed(x), y

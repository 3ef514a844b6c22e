"""torchvision's automatic augmentation policies (RandAugment, TrivialAugment Wide, AugMix) with
one draw per sample, applied to a whole block of images a group at a time.

A v2 transform draws one operation and magnitude per call, for every image it is given, from
torch's global generator. The policies here draw per sample, from the run's own generator, the
same distributions the transform's ``forward`` draws (the operation uniformly from its
``_AUGMENTATION_SPACE``, the magnitude bin, the sign with probability 1/2 where the operation is
signed), then apply each operation through the transform's own
``_apply_image_or_video_transform`` to all the samples that drew the same operation and
magnitude at once: torchvision's ops act on each image of a batch on its own (equalize and
autocontrast take per-image statistics), so a group's output is each sample's own. On a block of
1024 MNIST-sized images RandAugment costs ~50 µs per sample this way against ~430 µs calling the
transform once per sample (2 ops; 1 CPU thread).

The policies take uint8 images. regbench's inputs are normalised floats, so each image is seen
by the policy through its own per-channel range: x ↦ round(255·(x − min)/(max − min)), a uint8
image (the dataset's per-channel normalisation is affine, so this is the same whatever its mean
and std: the raw image stretched to full range per channel, i.e. its autocontrast); the policy's
[0, 255] output maps back through the inverse, so every value stays within the image's own range
and the fill of the geometric ops (0) is each channel's darkest value.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar, Optional

import torch

from regbench.regularizers.base import CheckContext, Incompatible, Regularizer

FULL = 255.0


def check_channels(name: str, ctx: CheckContext) -> None:
    """Refuse images the policies' colour operations cannot take (grayscale or RGB only)."""
    channels = ctx.input_shape[0] if ctx.is_image else None
    if channels not in (1, 3):
        raise Incompatible(f"{name}'s colour operations take grayscale or RGB images (1 or 3 "
                           f"channels); the dataset's images have {channels}")


class PolicyRegularizer(Regularizer):
    """What randaugment, trivialaugment and augmix share: a geometry-stage batch hook on
    grayscale or RGB images whose every draw comes from the run's own generator, so its runs
    fuse member by member."""

    batch_stage = "geometry"
    needs_images = True
    fusable = True
    batches_by_member = True
    # the functional form, policy(x, **params, generator=...) -> (x̃, its draws…), and the
    # parameters that are not its arguments
    policy: ClassVar[Callable[..., tuple]]
    not_policy_params: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def check(cls, params, ctx):
        check_channels(cls.name, ctx)
        return []

    def transformed(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` through the policy with this run's parameters and its own generator."""
        return type(self).policy(x, **self.params.model_dump(exclude=self.not_policy_params),
                                 generator=self.own_generator())[0]


def to_uint8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, C, H, W) floats -> (uint8 images, per-channel low, span) with x ≈ low + span·u/255."""
    low = x.amin(dim=(2, 3), keepdim=True)
    span = x.amax(dim=(2, 3), keepdim=True) - low
    span = torch.where(span > 0, span, torch.ones_like(span))   # a flat channel stays flat
    images = ((x - low) / span).mul_(FULL).round_().clamp_(0, FULL).to(torch.uint8)
    return images, low, span


def from_unit(unit: torch.Tensor, low: torch.Tensor, span: torch.Tensor) -> torch.Tensor:
    """Values in [0, 1] back to each image's own range (the inverse of :func:`to_uint8`)."""
    return torch.addcmul(low, unit, span)


class Policy:
    """A v2 auto-augment transform's operations, magnitudes and op implementations for images of
    one size: ``names[k]`` is operation k, ``magnitudes[k]`` its bins (None: no magnitude)."""

    def __init__(self, transform: Any, bins: int, height: int, width: int,
                 space: Optional[dict] = None):
        self.transform = transform
        space = transform._AUGMENTATION_SPACE if space is None else space
        self.names = list(space)
        self.magnitudes = [space[name][0](bins, height, width) for name in self.names]
        self.signed = [space[name][1] for name in self.names]
        self.bins = bins
        self.flags: dict = {}

    def draw(self, count: int, generator: torch.Generator, device: torch.device,
             bin_index: Optional[int] = None, max_bin: Optional[int] = None) -> torch.Tensor:
        """``count`` independent (operation, magnitude) draws as one integer key each:
        operation uniform; magnitude bin ``bin_index`` (RandAugment), else uniform below
        ``max_bin`` (default: every bin); sign negative with probability 1/2 for a signed
        operation (torchvision: ``torch.rand(()) <= 0.5``). An operation without a magnitude
        or sign gets bin 0 or a positive sign, so that its draws share a group."""
        op = torch.randint(len(self.names), (count,), generator=generator, device=device)
        if bin_index is None:
            level = torch.randint(max_bin or self.bins, (count,), generator=generator,
                                  device=device)
        else:
            level = torch.full((count,), bin_index, device=device)
        negative = torch.rand(count, generator=generator, device=device) <= 0.5
        has_magnitude, signed = self._flags(device)
        level = level * has_magnitude[op]
        negative = negative & signed[op]
        return (op * self.bins + level) * 2 + negative

    def apply(self, images: torch.Tensor, keys: torch.Tensor,
              active: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Each image through the operation its key names (``active``: only where True), a
        group of samples with the same key per call of torchvision's op."""
        if active is not None:
            keys = torch.where(active, keys, -1)        # -1: left as it is
        order = keys.argsort()
        groups, counts = torch.unique_consecutive(keys[order], return_counts=True)
        out = images.clone()
        for key, rows in zip(groups.tolist(), order.split(counts.tolist())):
            if key < 0:
                continue
            op, rest = divmod(key, 2 * self.bins)
            level, negative = divmod(rest, 2)
            out[rows] = self.operation(images[rows], op, level, bool(negative))
        return out

    def operation(self, images: torch.Tensor, op: int, level: int, negative: bool
                  ) -> torch.Tensor:
        """torchvision's operation ``op`` at magnitude bin ``level`` (negated) on ``images``."""
        bins = self.magnitudes[op]
        magnitude = 0.0 if bins is None else float(bins[level]) * (-1 if negative else 1)
        transform = self.transform
        return transform._apply_image_or_video_transform(
            images, self.names[op], magnitude, interpolation=transform.interpolation,
            fill=transform._fill)

    def _flags(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Per operation: whether it has a magnitude (0/1), whether it is signed; copied to
        ``device`` once."""
        if device not in self.flags:
            has_magnitude = torch.tensor([m is not None for m in self.magnitudes], device=device)
            self.flags[device] = (has_magnitude.long(), torch.tensor(self.signed, device=device))
        return self.flags[device]


def sample_dirichlet(concentration: torch.Tensor,
                     generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """One Dirichlet draw per row of ``concentration`` [B, K], as normalised Gamma draws
    (torch._sample_dirichlet, which AugMix uses, takes no generator; torch._standard_gamma
    does)."""
    gammas = torch._standard_gamma(concentration, generator=generator)
    gammas = gammas.clamp_(min=torch.finfo(gammas.dtype).tiny)
    return gammas / gammas.sum(dim=1, keepdim=True)

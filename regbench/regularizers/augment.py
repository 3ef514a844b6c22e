"""Random geometric augmentation of training images, independent parameters per sample.

Paper: the standard recipe of Krizhevsky et al. 2012 and He et al. 2016 (random crop with
padding, horizontal flip), plus rotation and translation (Simard et al. 2003).
Hook: batch (training images only, on the device).
Formula: every sample i draws its own angle θ_i ~ U(−rotate, rotate) degrees, flip f_i ~
Bernoulli(hflip), integer crop offset o_i ~ U{−pad, …, pad}² (a random crop of the image padded
by ``crop_padding`` zero pixels) and translation t_i ~ U(−translate, translate)² × (W, H) pixels.
They compose into one affine map per sample, x̃_i(u) = x_i(R(θ_i)·F(f_i)·u − o_i − t_i) about
the image centre, applied to the whole batch by one GEMM (the sampling grid) and one
``grid_sample`` (bilinear, zero fill = the training mean, since inputs are normalised). torchvision's v2 transforms would
draw one set of parameters for a whole batched tensor; this draws one per sample.
Deviations from the paper: none for the crop and flip recipe; rotation and translation are drawn
per sample and applied with bilinear sampling (Simard et al. used elastic distortions as well).
"""
from __future__ import annotations

import functools
import math
from typing import Optional

import torch
import torch.nn.functional as F
from pydantic import Field

from regbench.config.schema import StrictModel
from regbench.regularizers._sampling import Stockpile
from regbench.regularizers.base import Regularizer, register


class Params(StrictModel):
    rotate: float = Field(0.0, ge=0, le=180)       # largest |rotation| in degrees
    crop_padding: int = Field(4, ge=0, le=1024)           # zero padding in px before a random crop back to size
    hflip: float = Field(0.5, ge=0, le=1)          # probability of a horizontal flip
    translate: float = Field(0.0, ge=0, lt=1)      # largest |shift| as a fraction of width/height


def augment(x: torch.Tensor, rotate: float = 0.0, crop_padding: int = 0, hflip: float = 0.0,
            translate: float = 0.0, generator: Optional[torch.Generator] = None
            ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Transform (B, C, H, W) images. Returns (x̃, per-sample angle/flip/shift in pixels)."""
    batch, _, height, width = x.shape
    draws = draw_transforms(batch, (height, width, x.device, x.dtype), rotate=rotate,
                            crop_padding=crop_padding, hflip=hflip, translate=translate,
                            generator=generator)
    out = warp(x, draws.pop("theta"), nearest=rotate == 0 and translate == 0)
    return out, draws


def draw_transforms(count: int, images: tuple[int, int, torch.device, torch.dtype], *,
                    rotate: float, crop_padding: int, hflip: float, translate: float,
                    generator: Optional[torch.Generator] = None) -> dict[str, torch.Tensor]:
    """``count`` independent transforms of ``images`` (height, width, device, dtype): their
    (count, 6) grid maps ``theta`` and the angle (degrees), flip and shift (pixels) they were
    made of."""
    height, width, device, dtype = images
    scale, offset, coef = _draw_maps(rotate, crop_padding, translate, images)
    # one draw of six uniforms per sample, mapped in one op to: angle (rad), flip uniform,
    # crop offset before flooring (x, y) and translation in pixels (x, y)
    draw = torch.addcmul(offset, torch.rand(count, 6, device=device, dtype=dtype,
                                            generator=generator), scale)
    angle = draw[:, 0]
    flip = draw[:, 1] < hflip
    # floor(U·(2p+1)) − p is uniform on the integers −p … p (U < 1)
    shift = torch.floor(draw[:, 2:4]).clamp_max_(2 * crop_padding).sub_(crop_padding)
    shift += draw[:, 4:6]
    cos, sin = torch.cos(angle), torch.sin(angle)
    sign = torch.where(flip, -1.0, 1.0).to(dtype)   # −1 mirrors the x axis
    # Pixel-space map u_in = R·F·u_out − shift, rewritten in grid_sample's [−1, 1] coordinates
    # (x scaled by W/2, y by H/2, by ``coef``), so non-square images rotate without shearing.
    theta = torch.stack([cos * sign, sin, shift[:, 0], sin * sign, cos, shift[:, 1]], dim=1)
    theta *= coef
    return {"theta": theta, "angle": angle * (180 / math.pi), "flip": flip, "shift": shift}


def warp(x: torch.Tensor, theta: torch.Tensor, nearest: bool = False) -> torch.Tensor:
    """Resample each image of ``x`` through its own map (a row of ``theta``), zero fill.

    Crops and flips alone land every sample point on a pixel centre: ``nearest`` is then exact
    (bilinear weights would be 1 and 0) and 3× faster."""
    height, width = x.shape[-2:]
    return F.grid_sample(x, affine_grid(theta, height, width),
                         mode="nearest" if nearest else "bilinear", padding_mode="zeros",
                         align_corners=False)


def affine_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``F.affine_grid(theta, (B, C, H, W), align_corners=False)`` for theta of shape (B, 2, 3)
    or (B, 6), as one GEMM with a cached basis: the same grid, about 10× faster on the CPU."""
    batch = theta.shape[0]
    basis = _grid_basis(height, width, theta.device, theta.dtype)
    return (theta.reshape(batch, 6) @ basis).view(batch, height, width, 2)


@functools.lru_cache(maxsize=16)
def _draw_maps(rotate: float, crop_padding: int, translate: float,
               images: tuple[int, int, torch.device, torch.dtype]
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Constants of :func:`augment`: the affine map (scale, offset) from six U(0, 1) draws to
    its parameters, and the factors turning (cos, sin, shift) into grid_sample coordinates."""
    height, width, device, dtype = images
    radians = rotate * math.pi / 180
    spread = 2 * translate
    scale = [2 * radians, 1.0, 2 * crop_padding + 1, 2 * crop_padding + 1,
             spread * width, spread * height]
    offset = [-radians, 0.0, 0.0, 0.0, -translate * width, -translate * height]
    coef = [1.0, -height / width, -2 / width, width / height, 1.0, -2 / height]
    return tuple(torch.tensor(values, device=device, dtype=dtype)
                 for values in (scale, offset, coef))


@functools.lru_cache(maxsize=16)
def _grid_basis(height: int, width: int, device: torch.device, dtype: torch.dtype
                ) -> torch.Tensor:
    """The (6, H·W·2) matrix M with grid[b] = theta[b] · M: entry (k, j), (p, k') is the j-th
    homogeneous coordinate (x, y, 1) of pixel p when k = k', else 0. Its output is laid out
    (B, H, W, 2) as grid_sample wants, with no transposing copy."""
    xs = (torch.arange(width, dtype=torch.float64) * 2 + 1) / width - 1
    ys = (torch.arange(height, dtype=torch.float64) * 2 + 1) / height - 1
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    coords = torch.stack([grid_x, grid_y, torch.ones_like(grid_x)]).view(3, -1)  # (3, P)
    basis = torch.zeros(2, 3, height * width, 2, dtype=torch.float64)
    basis[0, :, :, 0] = coords
    basis[1, :, :, 1] = coords
    return basis.view(6, -1).to(device=device, dtype=dtype)


@register
class Augment(Regularizer):
    name = "augment"
    batch_stage = "geometry"
    try_rank = 50
    summary = ("random rotation, padded crop, horizontal flip and translation, drawn "
               "independently per sample, on the device")
    paper = "Krizhevsky et al. 2012; He et al. 2016; Simard et al. 2003"
    Params = Params
    needs_images = True
    stock: Optional[Stockpile] = None   # transforms drawn a few thousand at a time
    stock_key: Optional[tuple] = None

    @classmethod
    def check(cls, params, ctx):
        warnings = []
        side = min(ctx.input_shape[1:]) if ctx.is_image else None
        if side is not None and params.crop_padding + params.translate * side >= side / 2:
            warnings.append(f"shifts up to {params.crop_padding + params.translate * side:g} px "
                            f"on a {side}-px image can move half the image out of view")
        if params.hflip and ctx.mirror_changes_class:
            warnings.append(f"hflip {params.hflip:g} mirrors handwritten digits (or other samples "
                            "whose class changes under a flip); set hflip: 0 for this dataset")
        return warnings

    fusable = True      # every draw from the run's own generator: fuses member by member
    batches_by_member = True

    def batch(self, x, y):
        params = self.params
        key = (*x.shape[-2:], x.dtype)         # the maps depend on the image size and dtype
        if self.stock is None or self.stock_key != key:
            (height, width), dtype = x.shape[-2:], x.dtype
            generator = self.own_generator()
            self.stock, self.stock_key = Stockpile(lambda count, device: draw_transforms(
                count, (height, width, device, dtype), rotate=params.rotate,
                crop_padding=params.crop_padding, hflip=params.hflip,
                translate=params.translate, generator=generator)["theta"]), key
        theta = self.stock.take(x.shape[0], x.device)
        return warp(x, theta, nearest=params.rotate == 0 and params.translate == 0), y

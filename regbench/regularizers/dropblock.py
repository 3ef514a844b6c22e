"""DropBlock: drop contiguous square blocks of conv feature maps, at a rate that ramps up.

Paper: Ghiasi, Lin & Le 2018, "DropBlock: A regularization method for convolutional networks".
Hook: build (a DropBlock layer, ``torchvision.ops.drop_block2d``, after every hidden activation
fed by a conv layer; none after linear layers), epoch_end (the next epoch's drop rate).
Placement: ``modules`` (globs on the module path) and ``types`` (class names) narrow it to the
activations where the activation itself, or the conv layer feeding it, matches (as dropout).
Formula: in training, per sample and channel of a feature map [N, C, H, W], block seeds are
drawn with probability γ = p_e·H·W / (s²·(H − s + 1)·(W − s + 1)) at each of the
(H − s + 1)·(W − s + 1) positions where an s×s block fits (s = ``block_size``, odd, clipped
to the largest odd size that fits the map); every block is zeroed and the kept activations are scaled by count(all)/count(kept) of
the batch's mask (torchvision.ops.drop_block2d); in eval the layer is the identity. The rate of
epoch e of E is p_e = p·e/E with ``schedule: linear`` (p in the last epoch), p throughout with
``constant``.
Deviations from the paper: the paper ramps the rate per step from 0; here it steps once per
epoch, so epoch 1 already drops at p/E. The masks are torchvision's (one per channel, seeds
from torch's global generator; the paper's reference code also masks channels separately).
"""
from __future__ import annotations

from typing import Callable, Literal

import torch
from pydantic import Field, field_validator
from torch import nn

from regbench.regularizers._placement import Placed, placement_text
from regbench.regularizers.base import Incompatible, Regularizer, register


class Params(Placed):
    p: float = Field(0.1, ge=0, lt=1)            # drop rate reached in the last epoch (the paper: keep_prob 0.9, i.e. 0.1)
    block_size: int = Field(7, ge=1, le=1023)    # s: side of each dropped square in feature-map pixels, odd (clipped to the map)
    schedule: Literal["linear", "constant"] = "linear"  # linear: rate p·e/E in epoch e of E; constant: p from the start

    @field_validator("block_size")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"must be odd (torchvision's drop_block2d centres each block on a "
                             f"pixel; got {value})")
        return value


class DropBlockLayer(nn.Module):
    """DropBlock at drop rate ``p`` through torchvision's ``drop_block2d`` (``function``, given
    by the caller so that importing this module does not import torchvision), with the block
    clipped to the largest odd size that fits the feature map; the identity in eval."""

    def __init__(self, p: float, block_size: int, function: Callable[..., torch.Tensor]):
        super().__init__()
        self.p, self.block_size, self.function = p, block_size, function

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        size = min(self.block_size, *x.shape[-2:])
        return self.function(x, self.p, size - 1 + size % 2)

    def extra_repr(self) -> str:
        return f"p={self.p:g}, block_size={self.block_size}"


@register
class DropBlock(Regularizer):
    name = "dropblock"
    summary = ("zero s×s blocks of conv feature maps in training (rate ramped linearly to p over "
               "the epochs); off in eval")
    paper = "Ghiasi et al. 2018"
    Params = Params
    exclusive = "dropout"       # it fills the model's dropout slot, as dropout does
    model_needs = ("an activation module (nn.ReLU, …) after a hidden nn.Conv2d layer "
                   "(DropBlock drops blocks of conv feature maps; after a linear layer it "
                   "places none)")
    solo_because = ("its masks come from torch's global generator (torchvision.ops."
                    "drop_block2d takes no generator), not from the run's own stream")

    @classmethod
    def check(cls, params, ctx):
        if ctx.model_convolutional is False:
            raise Incompatible(f"dropblock drops blocks of conv feature maps; model "
                               f"'{ctx.model_name}' has no conv layers (use dropout)")
        side = min(ctx.input_shape[1:]) if ctx.is_image else None
        if side is not None and params.block_size >= side:
            return [f"block_size {params.block_size} is not below the {side}-px input: each "
                    "block covers a whole feature map (drop_block2d clips it to the map)"]
        return []

    def rate(self, epoch: int) -> float:
        """The drop rate p_e of ``epoch`` (1-based)."""
        if self.params.schedule == "constant":
            return self.params.p
        epochs = self.ctx.train["epochs"]
        return self.params.p * min(epoch, epochs) / epochs

    def build(self, factory):
        from torchvision.ops import drop_block2d  # deferred: ~1.3 s to import

        made: list[nn.Module] = []
        self.made = made

        def drop(kind: str):
            if kind != "conv":
                return None
            made.append(DropBlockLayer(self.rate(1), self.params.block_size, drop_block2d))
            return made[-1]
        factory.dropout = drop

    def wrap(self, model):
        placed = {id(module) for module in model.modules()}
        self.layers = [layer for layer in self.made if id(layer) in placed]
        del self.made
        return model

    def epoch_end(self, epoch, row, model):
        for layer in self.layers:
            layer.p = self.rate(epoch + 1)

    def describe(self) -> str:
        p = self.params
        rate = (f"p·e/E (p={p.p:g}) in epoch e of E" if p.schedule == "linear"
                else f"p={p.p:g}")
        return (f"dropblock: {p.block_size}×{p.block_size} blocks after conv activations, "
                f"rate {rate}{placement_text(p)}")

"""Inverted dropout on hidden activations (and optionally on the inputs).

Paper: Srivastava, Hinton, Krizhevsky, Sutskever & Salakhutdinov 2014; ``mode: channel``:
Tompson, Goroshin, Jain, LeCun & Bregler 2015 (SpatialDropout, torch's ``nn.Dropout2d``).
Hook: build (a dropout layer after every hidden activation; one on the inputs if p_input > 0).
Placement: ``modules`` (globs on the module path) and ``types`` (class names) narrow it to the
activations where the activation itself, or the hidden linear/conv layer feeding it, matches
(``modules: "fc*"`` puts dropout after the activations of fc1, fc2, …; ``types: Conv2d`` after
those of the conv layers); the inputs' dropout (p_input) is not targeted. An activation module
that the model calls more than once (one ``self.act`` after fc1, fc2 and fc3; the ReLU of a
ResNet block) is matched per call, by the layers feeding that call: ``modules: fc3`` drops
after its third call only, ``modules: layer4.1.conv2`` after the block's sum, ``modules: act``
after every call. Dropout goes after activations only, never directly before the output layer:
a glob naming the output layer (``fc`` of a torchvision ResNet) is refused, and timm's
``drop_rate`` (dropout on the classifier's inputs) needs a plugin model that has it.
Formula: in training each activation is zeroed with probability p and the survivors are scaled
by 1/(1−p); in eval the layer is the identity. The keep mask is U < 1 − p for one uniform U per
activation (keep probability 1 − p), drawn from the layer's own stream: a generator seeded from
the run's id and the layer's number (regularizers/_streams.py), so a run draws the same masks
alone, fused in any group, or resumed. On the CPU this is 2–2.4× faster than ``nn.Dropout``,
whose Bernoulli kernel draws one element at a time. ``mode: channel`` draws one U per (sample,
channel) of a conv feature map [N, C, H, W] from the same stream and zeroes or scales the whole
H×W map; it goes only after activations fed by a conv layer (those fed by a linear layer have no
channels and get none), and a model without any is refused. The inputs' dropout is element-wise
in both modes.
Deviations from the paper: none.
"""
from __future__ import annotations

from typing import Any, ClassVar, Literal, Optional

import torch
from pydantic import Field
from torch import nn

from regbench.regularizers._placement import Placed, placement_key
from regbench.regularizers._streams import Uniforms, kept_scaled, member_column
from regbench.regularizers.base import Incompatible, Regularizer, register

CHANNEL_NEEDS = ("an activation module (nn.ReLU, …) after a hidden nn.Conv2d layer (mode channel "
                 "drops whole conv feature maps; after a linear layer it places none)")


class Params(Placed):
    p: float = Field(0.5, ge=0, lt=1)        # drop probability of hidden activations
    p_input: float = Field(0.0, ge=0, lt=1)  # drop probability of inputs (0: none)
    mode: Literal["element", "channel"] = "element"  # element: each activation its own draw; channel: one per (sample, channel) of a conv feature map (Dropout2d)

    hash_neutral: ClassVar[dict[str, Any]] = {**Placed.hash_neutral, "mode": "element"}


class InvertedDropout(nn.Dropout):
    """``nn.Dropout(p)`` drawing its masks from its own stream (``stream``: the key its
    generator is seeded from); the fused trainer draws a member's masks from the same stream."""

    def __init__(self, p: float, stream: str):
        super().__init__(p)
        self.stream = stream
        self.draws: Optional[Uniforms] = None      # made on the first training forward
        self.keep: dict = {}                       # 1 − p on each device, copied there once

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if self.draws is None or self.draws.device != x.device:
            self.draws = Uniforms([self.stream], x.device)
        # float32, as the fused trainer's keep: the same threshold on every path and dtype
        keep = member_column([1 - self.p], x[None], self.keep, dtype=torch.float32)
        return kept_scaled(x[None], keep, self.draws.take(x.shape[0], self.mask_shape(x)))[0]

    def mask_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        """The shape of one sample's draws: one per activation."""
        return tuple(x.shape[1:])


class ChannelDropout(InvertedDropout):
    """``mode: channel``: one draw per (sample, channel), broadcast over the feature map's
    positions, as ``nn.Dropout2d`` drops; from the layer's own stream like the element mode."""

    def mask_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        return (x.shape[1],) + (1,) * (x.dim() - 2)


@register
class Dropout(Regularizer):
    name = "dropout"
    try_rank = 40
    summary = "zero hidden activations with prob p (×1/(1−p) on survivors) in training; off in eval"
    paper = "Srivastava et al. 2014"
    Params = Params
    exclusive = "dropout"   # the model's dropout slot has one owner (dropblock fills it too)
    fusable = True      # fused members draw their own masks at their own p (engine.fused)

    @property
    def model_needs(self) -> Optional[str]:  # type: ignore[override]  (depends on the mode)
        """What a model must have for dropout to change it: in channel mode, conv feature
        maps (the class-wide default, an activation after a hidden layer, otherwise)."""
        return CHANNEL_NEEDS if self.params.mode == "channel" else None

    @classmethod
    def check(cls, params, ctx):
        if params.mode == "channel" and ctx.model_convolutional is False:
            raise Incompatible(f"mode channel drops whole conv feature maps; model "
                               f"'{ctx.model_name}' has no conv layers (use mode element)")
        return []

    @classmethod
    def fusion_key(cls, params):
        return placement_key(params, "mode")

    @classmethod
    def conflicts_with(cls, other):
        if other.name == "batchnorm":
            return ("dropout before a batchnorm layer shifts its variance between training and "
                    "eval (Li et al. 2019); expect a train/eval mismatch")
        return None

    def build(self, factory):
        p, p_input = self.params.p, self.params.p_input
        made = iter(range(1_000_000))      # the layers' numbers, in the order surgery adds them
        if self.params.mode == "channel":
            factory.dropout = lambda kind: (ChannelDropout(p, self._stream(next(made)))
                                            if kind == "conv" else None)
        else:
            factory.dropout = lambda kind: InvertedDropout(p, self._stream(next(made)))
        if p_input > 0:
            factory.input_dropout = lambda: InvertedDropout(p_input, self._stream("input"))

    def describe(self) -> str:
        if self.params.mode == "element":
            return ""
        return (f"dropout: p={self.params.p:g}, one draw per (sample, channel) of each conv "
                "feature map (Dropout2d); none after linear layers")

    def _stream(self, layer) -> str:
        return f"{self.ctx.run_id} {self.name} {layer}"

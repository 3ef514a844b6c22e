"""DropConnect: drop individual weights and biases (not activations) of the hidden layers.

Paper: Wan, Zeiler, Zhang, LeCun & Fergus 2013, "Regularization of Neural Networks using
DropConnect".
Hook: build (hidden linear and conv layers become DropConnect layers; the output layer is kept).
Placement: ``modules`` and ``types`` narrow it to the hidden linear/conv layers that match
(``types: Linear``, ``modules: "fc*"``; regularizers/_placement.py).
Formula: in every training forward, for each example b of the batch its own masks
M_b ~ Bernoulli(1 − p) per weight and m_b per bias: r_b = ((M_b ⊙ W) x_b + m_b ⊙ bias)/(1 − p)
(``mode: per_example``, the paper's definition). ``mode: per_batch`` draws one mask for the
whole batch: the cheaper variant many implementations use, which correlates the examples of a
batch. The 1/(1 − p) scaling keeps E[r] = W x + bias, so eval uses the full weights.
Deviations from the paper: eval uses the mean network (the full weights W), not the paper's
Gaussian moment-matching inference.
p is applied in steps of 2⁻¹⁵ (masks compare 15-bit random integers; the scaling uses the
same value, so E[r] = W x + bias holds exactly). Every mask comes from the layer's own stream
(seeded from the run id and the layer's number, regularizers/_streams.py): a run draws the
same masks alone or, per_batch, fused (each member its own mask on its slice of the stacked
weights).
Cost: per_example draws a mask for every weight of every example and builds the masked copies
in cache-sized chunks: a step of a 784-256-256 MLP costs tens of times a plain one on the CPU
(``python benchmarks/dropconnect.py``; per_batch costs about 2–3×). That work is per
example, not dispatch, which is all fusing saves: per_example runs train solo
(``PER_EXAMPLE_SOLO``), per_batch runs fuse.
"""
from __future__ import annotations

import math
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from pydantic import Field

from regbench.regularizers._placement import Placed, placement_key, placement_text
from regbench.regularizers._streams import member_column, run_generator
from regbench.regularizers._weight_layers import (
    TransformedConv2d,
    TransformedLinear,
    WeightTransform,
)
from regbench.regularizers.base import Regularizer, register

CHUNK_ELEMENTS = 1 << 19    # masked weight values per chunk of examples: 2 MiB of float32,
                            # about the CPU's cache (4–8 examples of a 784×256 layer were
                            # fastest, benchmarks/dropconnect.py)
LEVELS = 1 << 15            # masks compare uniform 15-bit integers: p is applied in steps of 2⁻¹⁵


class Params(Placed):
    p: float = Field(0.5, ge=0, lt=1)  # probability that a weight (or bias) is dropped in a training forward
    mode: Literal["per_example", "per_batch"] = "per_example"  # per_example: each example its own mask (the paper); per_batch: one mask per batch


def drop_threshold(p: float) -> int:
    """Masks keep a value where a uniform integer in [0, LEVELS) is at least this."""
    return min(LEVELS - 1, round(p * LEVELS))


def random_levels(shape: tuple[int, ...], generator: Optional[torch.Generator] = None,
                  device=None) -> torch.Tensor:
    """Uniform integers in [0, LEVELS) (int16), cut from random 64-bit words: on the CPU 2.5×
    faster than ``torch.rand(shape)``, which costs most of a per-example DropConnect step."""
    count = math.prod(shape)
    words = torch.empty((count + 3) // 4, dtype=torch.int64, device=device)
    words.random_(generator=generator)          # uniform on [0, 2⁶³): every 16-bit lane but
    lanes = words.view(torch.int16)[:count]     # the top one has 16 random bits, that one 15
    return (lanes & (LEVELS - 1)).view(shape)


def keep_mask(shape: tuple[int, ...], p: float, device=None,
              generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Independent Bernoulli(1 − p) booleans, p rounded to a multiple of 2⁻¹⁵."""
    return random_levels(shape, generator, device) >= drop_threshold(p)


def kept_fraction(p: float) -> float:
    """1 − p as the masks apply it (the 1/(1 − p) scaling uses the same value)."""
    return 1 - drop_threshold(p) / LEVELS


def dropconnect(weight: Optional[torch.Tensor], p: float,
                generator: Optional[torch.Generator] = None) -> Optional[torch.Tensor]:
    """(M ⊙ W)/(1 − p) with an independent Bernoulli(1 − p) keep mask per value (None for a
    layer without bias)."""
    if weight is None:
        return None
    keep = keep_mask(tuple(weight.shape), p, weight.device, generator)
    return weight * keep / kept_fraction(p)


def _chunk(per_example: int) -> int:
    """Examples per chunk: their masked weight copies hold at most CHUNK_ELEMENTS values."""
    return max(1, CHUNK_ELEMENTS // max(1, per_example))


class PerExampleLinear(torch.autograd.Function):
    """out_b = x_b · (M_b ⊙ W)ᵀ for a chunk of examples b, saving the boolean masks (not the
    masked float weights) and rebuilding M_b ⊙ W in the backward pass."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight, keep)       # x: (n, positions, in); keep: (n, out, in)
        return torch.bmm(x, (weight * keep).transpose(1, 2))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight, keep = ctx.saved_tensors
        grad_x = torch.bmm(grad, weight * keep) if ctx.needs_input_grad[0] else None
        grad_w = None
        if ctx.needs_input_grad[1]:
            grad_w = torch.bmm(grad.transpose(1, 2), x).mul_(keep).sum(0)
        return grad_x, grad_w, None


class BatchMasks(WeightTransform):
    """``mode: per_batch``: one mask of the layer's weight and bias per training forward, at
    the run's p, from the layer's own stream."""

    def __init__(self, p: float, stream: str):
        super().__init__(stream)
        self.p = p

    @classmethod
    def stacked(cls, transforms, weight, bias):
        # a row of levels per output unit, its weights then its bias: [M, out, in (+ 1)]
        per_unit = weight[0, 0].numel()
        draws = cls.uniforms(transforms, weight.device, draw=random_levels)
        levels = draws.take(weight.shape[1], (per_unit + (bias is not None),))
        cache = transforms[0].columns
        threshold = member_column([drop_threshold(t.p) for t in transforms], levels, cache)
        kept = member_column([kept_fraction(t.p) for t in transforms], levels, cache,
                             dtype=weight.dtype)
        keep = levels >= threshold
        weight = (weight * keep[..., :per_unit].reshape(weight.shape)).div(
            kept.view(-1, *[1] * (weight.dim() - 1)))
        if bias is not None:
            bias = (bias * keep[..., per_unit]).div(kept.view(-1, 1))
        return weight, bias


class DropConnectLinear(TransformedLinear):
    """nn.Linear with DropConnect masks in training forwards (``stream``: the key of the
    layer's own generator)."""

    def __init__(self, in_features: int, out_features: int, p: float, mode: str,
                 bias: bool = True, stream: str = "dropconnect"):
        super().__init__(in_features, out_features, BatchMasks(p, stream), bias=bias)
        self.p, self.mode = p, mode
        self.generator: Optional[torch.Generator] = None    # per_example's, made on first use

    @property
    def stackable(self) -> bool:
        return self.mode == "per_batch"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return F.linear(x, self.weight, self.bias)
        if self.mode == "per_batch":
            return super().forward(x)
        self.generator = _generator(self.generator, self.transform.stream, x.device)
        outputs = []
        for part in x.split(_chunk(self.weight.numel())):
            n = part.shape[0]
            keep = keep_mask((n, *self.weight.shape), self.p, x.device, self.generator)
            flat = part.reshape(n, -1, self.in_features)            # (n, positions, in)
            out = PerExampleLinear.apply(flat, self.weight, keep)
            if self.bias is not None:
                out = out + (self.bias * keep_mask((n, self.out_features), self.p,
                                                   x.device, self.generator)).unsqueeze(1)
            outputs.append(out.reshape(*part.shape[:-1], self.out_features))
        return torch.cat(outputs) / kept_fraction(self.p)


class DropConnectConv2d(TransformedConv2d):
    """nn.Conv2d with DropConnect masks in training forwards; per example, the chunk's kernels
    run as one grouped convolution (one group per example)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 padding: int, p: float, mode: str, bias: bool = True,
                 stream: str = "dropconnect"):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride,
                         padding=padding, transform=BatchMasks(p, stream), bias=bias)
        self.p, self.mode = p, mode
        self.generator: Optional[torch.Generator] = None    # per_example's, made on first use

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return self._conv_forward(x, self.weight, self.bias)
        if self.mode == "per_batch":
            return super().forward(x)
        self.generator = generator = _generator(self.generator, self.transform.stream, x.device)
        outputs = []
        for part in x.split(_chunk(self.weight.numel())):
            n, channels, height, width = part.shape
            weights = self.weight * keep_mask((n, *self.weight.shape), self.p, x.device,
                                              generator)
            biases = (None if self.bias is None else
                      (self.bias * keep_mask((n, self.out_channels), self.p, x.device,
                                             generator)).reshape(-1))
            out = F.conv2d(part.reshape(1, n * channels, height, width),
                           weights.reshape(n * self.out_channels, *self.weight.shape[1:]),
                           biases, stride=self.stride, padding=self.padding,
                           dilation=self.dilation, groups=n)
            outputs.append(out.reshape(n, self.out_channels, *out.shape[2:]))
        return torch.cat(outputs) / kept_fraction(self.p)


def _generator(current: Optional[torch.Generator], stream: str,
               device: torch.device) -> torch.Generator:
    """The layer's per-example stream on ``device`` (made once; again only on another one)."""
    if current is None or current.device != device:
        return run_generator(stream, device)
    return current


# Why per_example runs train solo (--dry-run). Measured at one thread (benchmarks/fused.py
# --only dropconnect-per-example): a step of 20 digits MLPs 64-128-10 at batch 32 took
# 28.3 ms solo and 39.5 ms stacked (0.72×: members × examples of masked weights in batched
# chunks); even with its masks and products at their solo cost a fused step would gain at
# most 1.17× (the plain step's dispatch, 5.2 ms solo vs 1.1 ms stacked, is all it saves).
PER_EXAMPLE_SOLO = ("mode per_example draws a mask of every weight for every example: its "
                    "step is per-example work, not dispatch, so fusing would not pay; "
                    "mode per_batch fuses")


@register
class DropConnect(Regularizer):
    name = "dropconnect"
    solo_because = PER_EXAMPLE_SOLO
    fusable = True      # mode per_batch: each member's own masks on its slice of the stacked
                        # weights (MLPs); per_example trains solo (trains_solo)
    try_rank = 130
    summary = ("zero each hidden weight and bias with prob p, a fresh mask per example "
               "(×1/(1−p)); full weights in eval")
    paper = "Wan et al. 2013"
    Params = Params
    exclusive = "weight_layer"

    @classmethod
    def trains_solo(cls, params: dict) -> str:
        return cls.solo_because if Params.model_validate(params).mode == "per_example" else ""

    @classmethod
    def fusion_key(cls, params: dict) -> str:
        return placement_key(params)

    def build(self, factory):
        p, mode = self.params.p, self.params.mode
        made = iter(range(1_000_000))      # the layers' numbers, in the order surgery adds them

        def stream() -> str:
            return f"{self.ctx.run_id} {self.name} {next(made)}"

        factory.linear = lambda i, o, bias=True: DropConnectLinear(i, o, p=p, mode=mode,
                                                                   bias=bias, stream=stream())
        factory.conv = (lambda i, o, k, stride=1, padding=0, bias=True:
                        DropConnectConv2d(i, o, k, stride=stride, padding=padding, p=p,
                                          mode=mode, bias=bias, stream=stream()))

    def describe(self) -> str:
        return (f"DropConnect p={self.params.p:g} on every hidden weight and bias"
                f"{placement_text(self.params)}, "
                + ("a mask per example" if self.params.mode == "per_example"
                   else "one mask per batch"))

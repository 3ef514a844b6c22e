"""Exponential moving average of the weights: the run is evaluated with the average.

Paper: Polyak & Juditsky 1992, "Acceleration of Stochastic Approximation by Averaging"; the
exponential form and its warmup as timm's ``ModelEmaV3`` (``timm.utils.model_ema``).
Hooks: after_step (the average takes in the weights after every optimizer step), eval_weights
(every epoch's train and val metrics, the test metrics, the weight statistics and model.pt
are the average's; training never uses it).
Formula: after optimizer step t = 1, 2, … of the run, every floating-point parameter and
buffer (batch norm's running statistics too) of the average becomes
θ̄_t = d_t·θ̄_{t−1} + (1 − d_t)·θ_t, where d_1 = 0 (the first step's weights are copied) and
d_t = ``decay`` for t > 1, or with ``warmup`` d_t = min(decay, 1 − (1 + (t − 1)/γ)^(−p))
(γ = ``warmup_gamma`` steps, p = ``warmup_power``); integer buffers (batch norm's count) are
copied. This is timm's ``ModelEmaV3(model, decay, use_warmup=warmup, warmup_gamma,
warmup_power).update(model, step=t)`` with its other defaults, stepped as timm's train.py
steps it, kept by torch's ``AveragedModel`` (regularizers/_averaging.py).
Rules: one average per recipe (not with swa). With early stopping, the best epoch is the
average's (its val metrics are measured with the average), and the restore at the end brings
back that epoch's average with the weights: the run is tested and saved with it.
Deviations from the paper: Polyak and Juditsky average all iterates with equal weights; this
is the exponential moving average practice uses (timm, TensorFlow's ExponentialMovingAverage),
which forgets early iterates at rate d per step (a window of about 1/(1 − d) steps). The
warmup's default power is 3/4, timm's advice for runs under a million steps (ModelEmaV3's own
default, 2/3, is for longer ones).
"""
from __future__ import annotations

import torch
from pydantic import Field
from torch.optim.swa_utils import AveragedModel

from regbench.config.schema import StrictModel
from regbench.regularizers._averaging import WeightAverage
from regbench.regularizers.base import register


class Params(StrictModel):
    decay: float = Field(0.9998, ge=0, lt=1)  # d: the average's share kept at each step (timm train.py's default)
    warmup: bool = False                      # ramp d up from 0: d_t = min(decay, 1 − (1 + (t − 1)/γ)^(−p)) (timm's use_warmup)
    warmup_gamma: float = Field(1.0, gt=0)    # γ: the warmup's scale, in steps (timm's warmup_gamma)
    warmup_power: float = Field(0.75, gt=0)   # p: the warmup's power (timm's advice for runs under ~1M steps; its default 2/3 for longer)


def ema_decay(step: int, decay: float, warmup: bool = False, warmup_gamma: float = 1.0,
              warmup_power: float = 0.75) -> float:
    """d_t of optimizer step ``step`` = t (1-based): timm's ``ModelEmaV3.get_decay(t)``."""
    t = step - 1
    if t <= 0:
        return 0.0
    if warmup:
        return max(min(1 - (1 + t / warmup_gamma) ** -warmup_power, decay), 0.0)
    return decay


@torch.no_grad()
def ema_update(averaged: list[torch.Tensor], current: list[torch.Tensor], decay: float) -> None:
    """θ̄ ← d·θ̄ + (1 − d)·θ in place for floating-point tensors; integer ones are copied."""
    floating = [(a, c) for a, c in zip(averaged, current) if a.is_floating_point()]
    for a, c in zip(averaged, current):
        if not a.is_floating_point():
            a.copy_(c)
    if floating:
        torch._foreach_lerp_([a for a, _ in floating], [c for _, c in floating], 1.0 - decay)


class TimmDecay:
    """``AveragedModel``'s multi_avg_fn: the update of step ``step`` at timm's d_t, the step
    set before each update. (AveragedModel copies the weights itself at step 1: d_1 = 0.)"""

    def __init__(self, params: Params):
        self.params, self.step = params, 1

    def __call__(self, averaged, current, averaged_so_far) -> None:
        p = self.params
        ema_update(averaged, current, ema_decay(self.step, p.decay, p.warmup, p.warmup_gamma,
                                                p.warmup_power))


@register
class EMA(WeightAverage):
    name = "ema"
    summary = ("evaluate an exponential moving average of the weights, updated after every "
               "step (timm's ModelEmaV3: decay, optional warmup)")
    paper = "Polyak & Juditsky 1992"
    Params = Params
    # the default d (0.9998) keeps the initial weights through a 6-step check; 0.9 with the
    # warmup moves the average within it (and exercises the warmup)
    conformance = {"decay": 0.9, "warmup": True}

    def averaged_model(self, model):
        # buffers averaged like the weights (timm's default, exclude_buffers=False)
        return AveragedModel(model, multi_avg_fn=TimmDecay(self.params), use_buffers=True)

    def after_step(self, model):
        average = self.started(model)
        # t = steps taken in so far + 1, read from the average's count on the CPU (the
        # multi_avg_fn gets a copy on the device, which would cost a sync per step)
        average.multi_avg_fn.step = int(average.n_averaged) + 1
        average.update_parameters(model)

    def describe(self) -> str:
        p = self.params
        warmup = (f", warmed up as 1 − (1 + (t − 1)/{p.warmup_gamma:g})^(−{p.warmup_power:.3g})"
                  if p.warmup else "")
        return (f"ema: evaluated with the exponential moving average of the weights, decay "
                f"{p.decay:g} per step{warmup}")

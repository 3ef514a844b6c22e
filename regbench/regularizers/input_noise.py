"""Gaussian noise on the (normalised) training inputs.

Paper: Bishop 1995, "Training with Noise is Equivalent to Tikhonov Regularization".
Hook: batch (training batches only; evaluation never sees noise).
Formula: x ← x + ε, ε ~ N(0, σ²) drawn fresh for every element of every batch; σ is in units of
the normalised inputs (i.e. of each feature's training standard deviation). ε comes from the
run's own stream (regularizers/_streams.py): the same alone or fused.
Deviations from the paper: none.
"""
from __future__ import annotations

from typing import Optional

import torch
from pydantic import Field

from regbench.config.schema import StrictModel
from regbench.regularizers._streams import Uniforms, member_column
from regbench.regularizers.base import Regularizer, register


class Params(StrictModel):
    sigma: float = Field(0.1, ge=0)  # σ, noise std in normalised input units


def add_input_noise(x: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """x + σ·ε for inputs with a member axis, x [M, R, ...], σ [M, 1, ...] and ε ~ N(0, 1)
    like x: one arithmetic for a solo run (M = 1) and a fused group."""
    return x + sigma * noise


@register
class InputNoise(Regularizer):
    name = "input_noise"
    batch_stage = "noise"
    try_rank = 110
    summary = "x += N(0, σ²) on normalised training inputs; eval inputs are clean"
    paper = "Bishop 1995"
    Params = Params
    fusable = True      # each member adds its own σ times its own stream (stacked_batches)

    def __init__(self, params, ctx):
        super().__init__(params, ctx)
        self.stream = f"{ctx.run_id} {self.name}"
        self.draws: Optional[Uniforms] = None

    def batch(self, x, y):
        self.draws = _draws([self], x.device, self.draws)
        noise = self.draws.take(x.shape[0], tuple(x.shape[1:]))
        sigma = member_column([self.params.sigma], x[None], self.columns)
        return add_input_noise(x[None], sigma, noise)[0], y

    @classmethod
    def stacked_batches(cls, members, x, y, batch_size):
        first = members[0]
        first.group_draws = _draws(members, x.device, getattr(first, "group_draws", None))
        noise = first.group_draws.take(x.shape[1], tuple(x.shape[2:]))
        sigma = member_column([m.params.sigma for m in members], x, first.columns)
        return add_input_noise(x, sigma, noise), y


def _draws(members: list[InputNoise], device: torch.device,
           current: Optional[Uniforms]) -> Uniforms:
    """The members' noise streams on ``device`` (made once; again only on another device)."""
    if current is None or current.device != device:
        return Uniforms([m.stream for m in members], device, normal=True)
    return current

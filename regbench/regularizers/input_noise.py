"""Gaussian noise on the (normalised) training inputs.

Paper: Bishop 1995, "Training with Noise is Equivalent to Tikhonov Regularization".
Hook: batch (training batches only; evaluation never sees noise).
Formula: x ← x + ε, ε ~ N(0, σ²) drawn fresh for every element of every batch; σ is in units of
the normalised inputs (i.e. of each feature's training standard deviation).
Deviations from the paper: none.
"""
from __future__ import annotations

from typing import Optional

import torch
from pydantic import Field

from regbench.config.schema import StrictModel
from regbench.regularizers.base import Regularizer, register


class Params(StrictModel):
    sigma: float = Field(0.1, ge=0)  # σ, noise std in normalised input units


def add_input_noise(x: torch.Tensor, sigma: float,
                    generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """x + N(0, σ²), independently per element."""
    noise = torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)
    return x + sigma * noise


@register
class InputNoise(Regularizer):
    name = "input_noise"
    batch_stage = "noise"
    try_rank = 110
    summary = "x += N(0, σ²) on normalised training inputs; eval inputs are clean"
    paper = "Bishop 1995"
    Params = Params

    def batch(self, x, y):
        return add_input_noise(x, self.params.sigma), y

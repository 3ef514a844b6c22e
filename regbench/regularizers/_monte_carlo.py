"""Prediction as the mean of several stochastic forward passes (for Bayesian layers).

In training the wrapped model runs once (one posterior sample per batch). In eval it runs
``samples`` times and averages: class probabilities for classification (returned as their log,
which the loss and metrics treat as logits: log_softmax(log p) = log p when Σp = 1), outputs for
regression. Eval noise comes from a generator re-seeded at every call, so the same inputs always
get the same prediction (metrics are reproducible and comparable across epochs).
"""
from __future__ import annotations

import torch
from torch import nn


class MonteCarloAverage(nn.Module):
    """Average ``samples`` stochastic forwards in eval; record the predictive entropy."""

    def __init__(self, model: nn.Module, samples: int, classification: bool, seed: int = 0):
        super().__init__()
        self.model = model
        self.samples = samples
        self.classification = classification
        self.seed = seed
        self._entropy_sum = 0.0
        self._entropy_count = 0

    def stochastic_layers(self) -> list[nn.Module]:
        return [m for m in self.model.modules() if hasattr(m, "generator")]

    def train(self, mode: bool = True) -> "MonteCarloAverage":
        # Entering eval starts a new evaluated split (the trainer switches to eval before each
        # split), so the recorded entropy is that of the last split evaluated.
        if not mode:
            self._entropy_sum, self._entropy_count = 0.0, 0
        return super().train(mode)

    @property
    def predictive_entropy(self) -> float:
        """Mean entropy −Σ p̄·log p̄ of the averaged predictions since eval was entered."""
        return self._entropy_sum / max(self._entropy_count, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return self.model(x)
        generator = torch.Generator(device=x.device).manual_seed(self.seed)
        layers = self.stochastic_layers()
        for layer in layers:
            layer.generator = generator
        try:
            outputs = torch.stack([self.model(x) for _ in range(self.samples)])
        finally:
            for layer in layers:
                layer.generator = None
        if not self.classification:
            return outputs.mean(dim=0)
        probs = outputs.softmax(dim=-1).mean(dim=0)
        log_probs = probs.clamp_min(torch.finfo(probs.dtype).tiny).log()
        self._entropy_sum += float(-(probs * log_probs).sum())
        self._entropy_count += probs.shape[0]
        return log_probs

"""Confidence penalty: reward high-entropy (less confident) output distributions.

Paper: Pereyra, Tucker, Chorowski, Kaiser & Hinton 2017, "Regularizing Neural Networks by
Penalizing Confident Output Distributions".
Hook: output_penalty (a term of the loss computed from the batch's outputs, after the forward).
Formula: loss −= β·H̄, H̄ = (1/B)·Σ_b H(p_b), H(p) = −Σ_k p_k·log p_k in nats, p_b the softmax
of sample b's logits over the K classes (torch.distributions.Categorical's entropy). β ≥ 0 is
unitless; the term lies in [−β·log K, 0] and is logged in the penalty column.
Deviations from the paper: none (the paper's thresholded variant, which penalizes only an
entropy below a threshold Γ, is not offered).
"""
from __future__ import annotations

import torch
from pydantic import Field

from regbench.config.schema import StrictModel
from regbench.regularizers.base import Regularizer, register


class Params(StrictModel):
    beta: float = Field(0.1, ge=0)   # β: weight of the mean output entropy subtracted from the loss


def mean_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean entropy (nats) of the softmax distributions of ``logits`` [B, K]."""
    distribution = torch.distributions.Categorical(logits=logits, validate_args=False)
    return distribution.entropy().mean()


def confidence_penalty(logits: torch.Tensor, beta: float) -> torch.Tensor:
    """The term added to the loss: −β·H̄."""
    return -beta * mean_entropy(logits)


@register
class ConfidencePenalty(Regularizer):
    name = "confidence_penalty"
    summary = "loss −= β·H(p), the mean entropy of the softmax outputs: penalizes over-confidence"
    paper = "Pereyra et al. 2017"
    Params = Params
    tasks = frozenset({"classification"})
    solo_because = ("its term reads the batch's outputs (the output_penalty hook), which the "
                    "fused loop does not call")

    @classmethod
    def conflicts_with(cls, other):
        if other.name == "label_smoothing":
            return ("both pull the outputs toward the uniform distribution (Pereyra et al. 2017 "
                    "compare them as alternatives): their effects add, so tune one at a time")
        return None

    def output_penalty(self, output, y):
        return confidence_penalty(output, self.params.beta)

    def describe(self) -> str:
        return (f"confidence_penalty: loss −= {self.params.beta:g}·H̄, the batch's mean softmax "
                "entropy in nats")

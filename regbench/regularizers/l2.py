"""L2 weight penalty (ridge / Tikhonov; "weight decay" under plain SGD).

Paper: Hoerl & Kennard 1970 (ridge); Krogh & Hertz 1992 (weight decay in neural nets).
Hook: penalty.
Formula: loss += λ/(2n) · Σ w² over the weight matrices and kernels (biases excluded unless
``include_bias``), n = training samples. With plain SGD one step is
w ← (1 − ηλ/n)·w − η·∂C₀/∂w.
Deviations from the paper: none (λ is scaled by 1/(2n)).
"""
from __future__ import annotations

import torch
from pydantic import Field

from regbench.config.schema import StrictModel
from regbench.regularizers.base import WeightRegularizer, member_values, register


class Params(StrictModel):
    lambda_: float = Field(1.0, alias="lambda", ge=0)  # λ, per the λ/(2n) convention
    include_bias: bool = False                         # also penalise biases


def l2_penalty(weights: list[torch.Tensor], lam: float, n: int) -> torch.Tensor:
    """λ/(2n) · Σ w². Squared as w·w: the same values as w.pow(2), and the same gradient
    2·(g·w) unless g·w underflows to a subnormal, for about 2/3 of pow's backward time."""
    return lam / (2 * n) * sum((w * w).sum() for w in weights)


@register
class L2(WeightRegularizer):
    name = "l2"
    try_rank = 20
    summary = "loss += λ/(2n)·Σw² on weights; shrinks all weights towards zero"
    paper = "Hoerl & Kennard 1970; Krogh & Hertz 1992"
    Params = Params
    penalizes = True
    fusable = True

    def penalty(self, model):
        return l2_penalty(self.weights, self.params.lambda_, self.ctx.n_train)

    @classmethod
    def stacked_penalty(cls, members, weights):
        # λ/(2n) divided as the solo penalty divides it (in double precision, then float32):
        # dividing a float32 λ by 2n would differ from it in the last bit for about a
        # quarter of (λ, n) pairs, and a fused member would drift from its solo run
        n = members[0].ctx.n_train
        coefficient = member_values([m.params.lambda_ / (2 * n) for m in members], weights[0])
        return coefficient * sum((w * w).flatten(1).sum(1) for w in weights)

    def describe(self) -> str:
        lam, n, lr = self.params.lambda_, self.ctx.n_train, self.ctx.configured_lr
        optimizer = self.ctx.train["optimizer"]["name"]
        step = (f"with {optimizer} at η={lr:g} each step shrinks w by ηλ/n = {lr * lam / n:.4g}"
                if optimizer == "sgd" and not self.ctx.train["optimizer"]["momentum"] else
                f"under {optimizer} with momentum/adaptive steps the shrink per step is not ηλ/n "
                "(use weight_decay for a decoupled decay)")
        return (f"l2: loss += λ/(2n)·Σw², λ={lam:g}, n={n}; gradient coefficient λ/n = "
                f"{lam / n:.4g}; {step}")

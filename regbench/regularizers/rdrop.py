"""R-Drop: two dropout forwards of each batch, pulled together by a symmetric KL term.

Paper: Liang, Wu, Li, Wang, Meng, Qin, Chen, Zhang & Liu 2021, "R-Drop: Regularized Dropout
for Neural Networks".
Hook: consistency_penalty (the loop forwards each training batch twice through the model's
stochastic layers, fresh masks each time, and averages the two data losses).
Formula: loss = ½·(C₀(P₁, y) + C₀(P₂, y)) + α·½·(KL(P₁‖P₂) + KL(P₂‖P₁)), where P₁ and P₂ are the
softmax distributions of the two forwards' logits, each KL summed over the K classes in nats
(torch.distributions.kl_divergence) and averaged over the batch as C₀ is; α ≥ 0 is unitless and
the term is logged in the penalty column. Regression: each output is read as the mean of a
unit-variance Gaussian (the likelihood behind the house loss C₀ = ½‖y − a‖²), whose symmetric KL
is ½‖a₁ − a₂‖², averaged over the batch. It needs a stochastic layer to compare: the recipe must
hold one of dropout, dropconnect, dropblock, weight_noise, stochastic_depth, bayes_by_backprop
or variational_dropout; without one the two forwards agree and the recipe is refused.
Deviations from the paper: the KL is averaged over the batch like the data loss, so α weighs
one sample's KL against its data loss, as the paper's fairseq code does with both summed over
tokens (its README's classification snippet sums the KL over the batch but averages the
cross-entropy, making α scale with the batch size). The regression form is regbench's (the
paper has classification and generation tasks only).
"""
from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from regbench.config.schema import StrictModel
from regbench.regularizers.base import REGULARIZERS, Incompatible, Regularizer, register

# the regularizers that make a training forward random, and the parameters that, all zero,
# make it deterministic again (none: random at any setting)
STOCHASTIC: dict[str, tuple[str, ...]] = {
    "dropout": ("p", "p_input"), "dropconnect": ("p",), "dropblock": ("p",),
    "weight_noise": ("sigma",), "stochastic_depth": ("p",), "bayes_by_backprop": (),
    "variational_dropout": (),
}


class Params(StrictModel):
    alpha: float = Field(1.0, ge=0)   # α: weight of the symmetric KL between the two forwards
                                      # (the paper: 0.1–1 on GLUE, 0.6 on ViT, 5 on translation)


def symmetric_kl(logits: torch.Tensor, again: torch.Tensor) -> torch.Tensor:
    """½·(KL(P‖Q) + KL(Q‖P)) in nats, averaged over the batch, of the softmax distributions P
    and Q of ``logits`` and ``again`` [B, K]."""
    p = torch.distributions.Categorical(logits=logits, validate_args=False)
    q = torch.distributions.Categorical(logits=again, validate_args=False)
    kl = torch.distributions.kl_divergence
    return (0.5 * (kl(p, q) + kl(q, p))).mean()


def gaussian_symmetric_kl(output: torch.Tensor, again: torch.Tensor) -> torch.Tensor:
    """The symmetric KL of unit-variance Gaussians at ``output`` and ``again`` [B, T]:
    ½‖a₁ − a₂‖² per sample, averaged over the batch."""
    return 0.5 * (output - again).pow(2).sum(dim=-1).mean()


def rdrop_penalty(output: torch.Tensor, again: torch.Tensor, alpha: float,
                  task: str = "classification") -> torch.Tensor:
    """R-Drop's term added to the mean of the two forwards' data losses."""
    if task == "classification":
        return alpha * symmetric_kl(output, again)
    return alpha * gaussian_symmetric_kl(output, again)


def _random_at(name: str, params: dict[str, Any]) -> bool:
    """Whether regularizer ``name`` with ``params`` makes a training forward random."""
    keys = STOCHASTIC[name]
    resolved = REGULARIZERS.get(name).Params.model_validate(params or {})
    return not keys or any(getattr(resolved, key) for key in keys)


@register
class RDrop(Regularizer):
    name = "rdrop"
    summary = ("forward each batch twice through the dropout layers; loss = mean of both losses "
               "+ α·symmetric KL between the two outputs")
    paper = "Liang et al. 2021"
    Params = Params
    solo_because = ("its second forward of each batch (the consistency_penalty hook) is not "
                    "part of the fused loop")
    # the shared tests train it beside the paper's usual dropout rate
    conformance_with = {"dropout": {"p": 0.1}}

    @classmethod
    def check(cls, params, ctx):
        stochastic = [name for name in ctx.recipe if name in STOCHASTIC]
        if not stochastic:
            raise Incompatible(
                "R-Drop compares two forwards through the model's stochastic layers, and this "
                "recipe has none, so both forwards would agree; add one of "
                f"{', '.join(STOCHASTIC)} to the recipe (the paper: dropout)")
        if not any(_random_at(name, ctx.recipe[name]) for name in stochastic):
            verb = "draws" if len(stochastic) == 1 else "draw"
            return [f"{' and '.join(stochastic)} at rate 0 {verb} nothing: the two forwards "
                    "agree and R-Drop's term is zero"]
        return []

    def consistency_penalty(self, output, again, y):
        return rdrop_penalty(output, again, self.params.alpha, self.ctx.task)

    def describe(self) -> str:
        return (f"rdrop: loss = mean of two forwards' losses + {self.params.alpha:g}·symmetric "
                "KL between them")

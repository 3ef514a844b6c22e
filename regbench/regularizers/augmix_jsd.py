"""AugMix with its Jensen–Shannon consistency loss: the clean batch and two AugMix views of it,
their predictions pulled together.

Paper: Hendrycks, Mu, Cubuk, Zoph, Gilmer & Lakshminarayanan 2020, "AugMix: A Simple Data
Processing Method to Improve Robustness and Uncertainty", §3 (Jensen–Shannon divergence
consistency loss).
Hook: view_penalty (the loop forwards the clean batch and the two views this regularizer makes
of it: three forwards per step, as the paper's).
Formula: loss = C₀(p_orig, y) + λ·JS(p_orig; p_augmix1; p_augmix2), with p the softmax of each
forward's logits, M = (p_orig + p_augmix1 + p_augmix2)/3 and JS = ⅓·(KL(p_orig‖M) +
KL(p_augmix1‖M) + KL(p_augmix2‖M)) in nats, averaged over the batch as C₀ is; each view is
``augmix``'s transform of the clean images with its own per-sample draws (regularizers/augmix.py,
the same parameters), both from this run's own generator. λ ≥ 0 is unitless (the paper: 12) and
the term is logged in the penalty column. The data loss is the clean batch's alone.
Deviations from the paper: none in the loss (the paper's code clamps M at 1e-7 before its log;
here each KL is taken between the distributions, M ≥ p/3 > 0, so no clamp is needed). The views
are torchvision's AugMix operations, as ``augmix``'s are (see there). Classification only.
"""
from __future__ import annotations

import torch
from pydantic import Field

from regbench.regularizers._autoaugment import PolicyRegularizer
from regbench.regularizers.augmix import Params as AugMixParams, augmix
from regbench.regularizers.base import register


class Params(AugMixParams):
    js_weight: float = Field(12.0, ge=0)   # λ: weight of the Jensen–Shannon term (the paper: 12)


def jensen_shannon(*logits: torch.Tensor) -> torch.Tensor:
    """JS(p_1; …; p_n) = (1/n)·Σ KL(p_i‖M), M the mean of the softmax distributions of the
    ``logits`` [B, K], in nats, averaged over the batch."""
    distributions = [torch.distributions.Categorical(logits=z, validate_args=False)
                     for z in logits]
    mixture = torch.distributions.Categorical(
        probs=torch.stack([d.probs for d in distributions]).mean(0), validate_args=False)
    kl = torch.distributions.kl_divergence
    return torch.stack([kl(d, mixture) for d in distributions]).mean(0).mean()


@register
class AugMixJSD(PolicyRegularizer):
    name = "augmix_jsd"
    summary = ("AugMix's Jensen–Shannon consistency: the clean batch and two AugMix views of "
               "it forwarded, loss = clean loss + λ·JS of the three predictions")
    paper = "Hendrycks et al. 2020"
    Params = Params
    tasks = frozenset({"classification"})
    batch_stage = None
    fusable = False
    batches_by_member = False
    policy = staticmethod(augmix)
    not_policy_params = frozenset({"js_weight"})
    solo_because = ("its two extra forwards of each batch (the view_penalty hook) are not part "
                    "of the fused loop")

    @classmethod
    def conflicts_with(cls, other):
        if other.name == "augmix":
            return ("augmix also augments the clean batch that augmix_jsd compares its views "
                    "with; the paper trains on the clean images plus the two views (use "
                    "augmix_jsd alone)")
        return None

    def views(self, x):
        return [self.transformed(x), self.transformed(x)]

    def view_penalty(self, output, others, y):
        return self.params.js_weight * jensen_shannon(output, *others)

    def describe(self) -> str:
        return (f"augmix_jsd: loss = clean loss + {self.params.js_weight:g}·JS(clean, two AugMix "
                "views), three forwards per step")

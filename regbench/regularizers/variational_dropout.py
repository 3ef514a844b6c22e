"""Sparse variational dropout: a learned dropout rate per weight that prunes most of them.

Paper: Molchanov, Ashukha & Vetrov 2017, "Variational Dropout Sparsifies Deep Neural
Networks" (building on Kingma, Salimans & Welling 2015).
Hooks: build (every linear/conv layer, output included), penalty (KL), epoch_metrics (kl,
prunable_fraction).
Placement: ``modules`` and ``types`` narrow it to the linear/conv layers that match
(``types: Linear``); the KL and prunable_fraction then cover those layers only
(regularizers/_placement.py).
Formula: w = θ·(1 + √α·ε), i.e. q(w) = N(θ, σ²) with σ² = α·θ², parameterised by θ and
log σ² (additive reparameterisation); log α = log σ² − log θ², clipped to [−8, 8].
Training forwards sample pre-activations (local reparameterisation):
a = x·θᵀ + b + ε ⊙ √(x²·(α ⊙ θ²)ᵀ). With the log-uniform prior the KL is approximated by
KL ≈ Σ [k₁ − k₁·sigmoid(k₂ + k₃·log α) + ½·log(1 + 1/α)], k₁ = 0.63576, k₂ = 1.87320,
k₃ = 1.48695; loss += kl_weight·KL/n. A weight with log α > threshold (default 3, i.e. a
dropout rate α/(1+α) > 0.95) is prunable. Eval is deterministic: it uses θ, with the prunable
weights set to 0 when ``prune_eval`` (the paper's sparse network). Logged: kl (nats) and
prunable_fraction (over all weights of the variational layers).
Deviations from the paper: none.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from regbench.regularizers._placement import Placed
from regbench.regularizers.base import Regularizer, register

K1, K2, K3 = 0.63576, 1.87320, 1.48695   # Molchanov et al. 2017, eq. 14
LOG_ALPHA_CLIP = 8.0                      # log α is clipped to [−8, 8]
LOG_SIGMA2_INIT = -10.0                   # start almost deterministic (α ≈ e⁻¹⁰/θ²)


class Params(Placed):
    threshold: float = Field(3.0)          # log α above this: the weight is prunable (dropout rate > 0.95)
    kl_weight: float = Field(1.0, ge=0)    # scale of the KL/n term (1: the variational bound)
    prune_eval: bool = True                # eval with prunable weights set to 0 (else all θ)


def log_alpha(theta: torch.Tensor, log_sigma2: torch.Tensor) -> torch.Tensor:
    """log α = log σ² − log θ², clipped to [−8, 8]."""
    return (log_sigma2 - torch.log(theta * theta + 1e-16)).clamp(-LOG_ALPHA_CLIP, LOG_ALPHA_CLIP)


def sparse_vd_kl(log_alpha_value: torch.Tensor) -> torch.Tensor:
    """Σ KL(q‖log-uniform prior) ≈ Σ [k₁ − k₁·σ(k₂ + k₃·log α) + ½·log(1 + e^(−log α))]."""
    return (K1 - K1 * torch.sigmoid(K2 + K3 * log_alpha_value)
            + 0.5 * F.softplus(-log_alpha_value)).sum()


class _SparseVD:
    """Shared by the linear and conv versions: ``weight`` is θ."""

    is_weight_layer = True
    threshold: float = 3.0
    prune_eval: bool = True

    def _init_variance(self, threshold: float, prune_eval: bool) -> None:
        self.log_sigma2 = nn.Parameter(torch.full_like(self.weight, LOG_SIGMA2_INIT))
        self.threshold, self.prune_eval = threshold, prune_eval

    def log_alpha(self) -> torch.Tensor:
        return log_alpha(self.weight, self.log_sigma2)

    def kl(self) -> torch.Tensor:
        return sparse_vd_kl(self.log_alpha())

    def eval_weight(self) -> torch.Tensor:
        if not self.prune_eval:
            return self.weight
        return self.weight * (self.log_alpha() <= self.threshold).to(self.weight.dtype)

    def variance_weight(self) -> torch.Tensor:
        return torch.exp(self.log_alpha()) * self.weight * self.weight

    def _sample(self, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        return mean + torch.randn_like(mean) * torch.sqrt(var + 1e-8)


class SparseVDLinear(_SparseVD, nn.Linear):
    def __init__(self, in_features: int, out_features: int, threshold: float, prune_eval: bool,
                 bias: bool = True):
        super().__init__(in_features, out_features, bias=bias)
        self._init_variance(threshold, prune_eval)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return F.linear(x, self.eval_weight(), self.bias)
        return self._sample(F.linear(x, self.weight, self.bias),
                            F.linear(x * x, self.variance_weight()))


class SparseVDConv2d(_SparseVD, nn.Conv2d):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 padding: int, threshold: float, prune_eval: bool, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         bias=bias)
        self._init_variance(threshold, prune_eval)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self._conv_forward(x, self.eval_weight(), self.bias)
        return self._sample(self._conv_forward(x, self.weight, self.bias),
                            self._conv_forward(x * x, self.variance_weight(), None))


def prunable_fraction(layers: list[_SparseVD]) -> float:
    """Fraction of all weights with log α above their layer's threshold."""
    above = sum(int((layer.log_alpha() > layer.threshold).sum()) for layer in layers)
    return above / max(sum(layer.weight.numel() for layer in layers), 1)


@register
class VariationalDropout(Regularizer):
    name = "variational_dropout"
    solo_because = ("its layers with a learned log α per weight replace the linear layers the "
                    "stacked model runs")
    try_rank = 180
    summary = ("sparse VD: learned log α per weight, KL approximation in the loss; weights "
               "with log α > threshold are pruned")
    paper = "Molchanov et al. 2017"
    Params = Params
    sparsifying = True
    exclusive = "weight_layer"

    @classmethod
    def conflicts_with(cls, other):
        if other.is_weight_penalty():
            return (f"{other.name} shrinks θ and so raises log α = log σ² − log θ²: the pruned "
                    "fraction then reflects the penalty, not only the data")
        return None

    def build(self, factory):
        threshold, prune = self.params.threshold, self.params.prune_eval
        factory.linear = lambda i, o, bias=True: SparseVDLinear(i, o, threshold, prune, bias)
        factory.output = factory.linear
        factory.conv = lambda i, o, k, stride=1, padding=0, bias=True: SparseVDConv2d(
            i, o, k, stride=stride, padding=padding, threshold=threshold, prune_eval=prune,
            bias=bias)

    def wrap(self, model):
        self.layers = [m for m in model.modules() if isinstance(m, _SparseVD)]
        return model

    def kl(self) -> torch.Tensor:
        return sum(layer.kl() for layer in self.layers)

    def penalty(self, model):
        return self.params.kl_weight * self.kl() / self.ctx.n_train

    @torch.no_grad()
    def epoch_metrics(self, model):
        return {"kl": float(self.kl()), "prunable_fraction": prunable_fraction(self.layers)}

    def describe(self) -> str:
        p = self.params
        return (f"variational_dropout: loss += {p.kl_weight:g}·KL/n (n={self.ctx.n_train}); "
                f"prunable when log α > {p.threshold:g}; eval "
                f"{'prunes them' if p.prune_eval else 'keeps all weights'}")

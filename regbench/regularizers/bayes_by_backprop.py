"""Bayes by Backprop: a Gaussian posterior over every weight, trained by variational inference.

Paper: Blundell, Cornebise, Kavukcuoglu & Wierstra 2015, "Weight Uncertainty in Neural
Networks"; local reparameterisation from Kingma, Salimans & Welling 2015.
Hooks: build (every linear/conv layer, output included, becomes Bayesian), wrap (prediction is
the mean of ``samples`` forwards), penalty (KL), epoch_metrics (kl, predictive_entropy).
Placement: ``modules`` and ``types`` narrow it to the linear/conv layers that match
(``modules: "head.*"``); the KL and the prior then cover those layers only
(regularizers/_placement.py).
Formula: q(w) = N(μ, σ²) per weight and bias with σ = softplus(ρ); prior p(w) = N(0, σ_p²).
Training forwards sample pre-activations by local reparameterisation:
a = x·μᵀ + μ_b + ε ⊙ √(x²·(σ²)ᵀ + σ_b²), ε ~ N(0, 1) per sample and unit.
loss += kl_weight · KL(q‖p) / n with KL = Σ [log(σ_p/σ) + (σ² + μ²)/(2σ_p²) − 1/2] (≥ 0, and 0
exactly when q = p). Prediction = mean of ``samples`` stochastic forwards (probabilities for
classification). Logged: kl (nats, whole network) and predictive_entropy (mean entropy of the
averaged prediction on the validation split, nats).
Deviations from the paper: the prior is one Gaussian N(0, σ_p²), not the paper's scale mixture of
two, and pre-activations are sampled by local reparameterisation (Kingma et al. 2015) rather than
by sampling the weights, a lower-variance estimator of the same objective.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from regbench.regularizers._monte_carlo import MonteCarloAverage
from regbench.regularizers._placement import Placed
from regbench.regularizers.base import Regularizer, register

RHO_INIT = -5.0  # initial ρ: σ = softplus(−5) ≈ 0.0067, near-deterministic at the start


class Params(Placed):
    prior_sigma: float = Field(0.1, gt=0)  # σ_p, std of the N(0, σ_p²) prior on every weight and bias
    samples: int = Field(10, ge=1, le=1000)  # stochastic forwards averaged for a prediction (eval)
    kl_weight: float = Field(1.0, ge=0)    # scale of the KL/n term (1: the variational bound)


def gaussian_kl(mu: torch.Tensor, sigma: torch.Tensor, prior_sigma: float) -> torch.Tensor:
    """Σ KL(N(μ, σ²) ‖ N(0, σ_p²)) = Σ [log(σ_p/σ) + (σ² + μ²)/(2σ_p²) − 1/2]."""
    return (math.log(prior_sigma) - torch.log(sigma)
            + (sigma ** 2 + mu ** 2) / (2 * prior_sigma ** 2) - 0.5).sum()


class _Bayesian:
    """Shared by the linear and conv versions: ``weight``/``bias`` are the posterior means."""

    is_weight_layer = True
    generator: Optional[torch.Generator] = None   # set by MonteCarloAverage for eval draws

    def _init_posterior(self) -> None:
        self.weight_rho = nn.Parameter(torch.full_like(self.weight, RHO_INIT))
        self.bias_rho = (None if self.bias is None else
                         nn.Parameter(torch.full_like(self.bias, RHO_INIT)))
        self.generator = None

    def kl(self, prior_sigma: float) -> torch.Tensor:
        kl = gaussian_kl(self.weight, F.softplus(self.weight_rho), prior_sigma)
        if self.bias is None:
            return kl
        return kl + gaussian_kl(self.bias, F.softplus(self.bias_rho), prior_sigma)

    def _variances(self) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        bias = None if self.bias_rho is None else F.softplus(self.bias_rho) ** 2
        return F.softplus(self.weight_rho) ** 2, bias

    def _sample(self, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(mean.shape, device=mean.device, dtype=mean.dtype,
                            generator=self.generator)
        return mean + noise * torch.sqrt(var + 1e-16)


class BayesLinear(_Bayesian, nn.Linear):
    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__(in_features, out_features, bias=bias)
        self._init_posterior()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = F.linear(x, self.weight, self.bias)
        var = F.linear(x * x, *self._variances())
        return self._sample(mean, var)


class BayesConv2d(_Bayesian, nn.Conv2d):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         bias=bias)
        self._init_posterior()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = self._conv_forward(x, self.weight, self.bias)
        var = self._conv_forward(x * x, *self._variances())
        return self._sample(mean, var)


def bayesian_layers(model: nn.Module) -> list[_Bayesian]:
    return [m for m in model.modules() if isinstance(m, _Bayesian)]


@register
class BayesByBackprop(Regularizer):
    name = "bayes_by_backprop"
    solo_because = "its Bayesian layers replace the linear layers the stacked model runs"
    try_rank = 190
    summary = ("Gaussian posterior per weight (local reparameterisation), loss += "
               "kl_weight·KL/n; predicts the mean of `samples` forwards")
    paper = "Blundell et al. 2015"
    Params = Params
    exclusive = "weight_layer"

    @classmethod
    def conflicts_with(cls, other):
        if other.is_weight_penalty():
            return ("the KL to the Gaussian prior already penalises the posterior means; "
                    f"{other.name} counts a second prior on them")
        return None

    def build(self, factory):
        factory.linear = BayesLinear
        factory.output = BayesLinear
        factory.conv = BayesConv2d

    def wrap(self, model):
        self.layers = bayesian_layers(model)
        self.averager = MonteCarloAverage(model, self.params.samples,
                                          classification=self.ctx.task == "classification")
        return self.averager

    def kl(self) -> torch.Tensor:
        return sum(layer.kl(self.params.prior_sigma) for layer in self.layers)

    def penalty(self, model):
        return self.params.kl_weight * self.kl() / self.ctx.n_train

    @torch.no_grad()
    def epoch_metrics(self, model):
        metrics = {"kl": float(self.kl())}
        if self.ctx.task == "classification":
            metrics["predictive_entropy"] = self.averager.predictive_entropy
        return metrics

    def describe(self) -> str:
        p, n = self.params, self.ctx.n_train
        return (f"bayes_by_backprop: loss += {p.kl_weight:g}·KL/n (n={n}), prior N(0, "
                f"{p.prior_sigma:g}²), prediction = mean of {p.samples} forwards")

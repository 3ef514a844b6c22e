"""Bayes by Backprop and sparse variational dropout: the KL terms are right (against independent
computations), predictions average `samples` forwards, and variational dropout prunes most
weights of a small over-parameterised net without costing accuracy."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from regbench.data import prepare
from regbench.engine.train import Trainer, train_run
from regbench.models import LayerFactory, build_model, penalized_parameters
from regbench.regularizers import REGULARIZERS, RunContext
from regbench.regularizers._monte_carlo import MonteCarloAverage
from regbench.regularizers.bayes_by_backprop import BayesConv2d, BayesLinear, gaussian_kl
from regbench.regularizers.variational_dropout import (
    SparseVDLinear,
    log_alpha,
    prunable_fraction,
    sparse_vd_kl,
)


def inverse_softplus(value: float) -> float:
    """ρ with softplus(ρ) = value: the posterior parameter that gives σ = value."""
    return math.log(math.expm1(value))

DIGITS = (1, 8, 8)


def make(name: str, params: dict, model: dict, task: str = "classification", n_train: int = 100,
         input_shape=DIGITS, output_dim: int = 10):
    ctx = RunContext(task=task, n_train=n_train, output_dim=output_dim, input_shape=input_shape,
                     device=torch.device("cpu"), train={})
    cls = REGULARIZERS.get(name)
    reg = cls(cls.Params.model_validate(params), ctx)
    factory = LayerFactory()
    reg.build(factory)
    return reg, reg.wrap(build_model(model, input_shape, output_dim, factory))


# ----------------------------------------------------------------------------- bayes by backprop
def test_gaussian_kl_matches_torch_distributions_and_vanishes_at_the_prior():
    mu, sigma = torch.randn(50), torch.rand(50) + 0.05
    reference = torch.distributions.kl_divergence(torch.distributions.Normal(mu, sigma),
                                                  torch.distributions.Normal(0.0, 0.3)).sum()
    torch.testing.assert_close(gaussian_kl(mu, sigma, 0.3), reference)
    assert gaussian_kl(mu, sigma, 0.3) > 0
    assert abs(gaussian_kl(torch.zeros(50), torch.full((50,), 0.3), 0.3)) < 1e-5


def test_bbb_kl_is_positive_and_shrinks_to_zero_as_the_posterior_approaches_the_prior():
    torch.manual_seed(0)
    reg, net = make("bayes_by_backprop", {"prior_sigma": 0.2},
                    {"name": "cnn", "channels": [4], "hidden": [16], "kernel_size": 3})
    assert {type(layer) for layer in reg.layers} == {BayesConv2d, BayesLinear}
    start = [(l.weight.detach().clone(), l.weight_rho.detach().clone(), l.bias.detach().clone(),
              l.bias_rho.detach().clone()) for l in reg.layers]
    prior_rho = inverse_softplus(0.2)
    kls = []
    for t in (0.0, 0.5, 0.9, 1.0):           # move every posterior linearly onto the prior
        with torch.no_grad():
            for layer, (w, w_rho, b, b_rho) in zip(reg.layers, start):
                layer.weight.copy_((1 - t) * w)
                layer.bias.copy_((1 - t) * b)
                layer.weight_rho.copy_((1 - t) * w_rho + t * prior_rho)
                layer.bias_rho.copy_((1 - t) * b_rho + t * prior_rho)
        kls.append(float(reg.kl().detach()))
    assert kls[0] > 0 and kls[0] > kls[1] > kls[2] > kls[3]
    assert abs(kls[3]) < 1e-3 * kls[0] and abs(kls[3]) < 0.05
    torch.testing.assert_close(reg.penalty(net), torch.tensor(kls[3] / 100))


def test_bbb_penalty_is_kl_weight_times_kl_over_n():
    reg, net = make("bayes_by_backprop", {"kl_weight": 0.3}, {"name": "mlp", "hidden": [8]},
                    n_train=250)
    torch.testing.assert_close(reg.penalty(net), 0.3 * reg.kl() / 250)
    assert "bayes_by_backprop" in reg.describe() and float(reg.kl().detach()) > 0


def test_bbb_local_reparameterisation_has_the_posterior_moments():
    torch.manual_seed(0)
    layer = BayesLinear(5, 3)
    with torch.no_grad():
        layer.weight_rho.fill_(inverse_softplus(0.3))
        layer.bias_rho.fill_(inverse_softplus(0.1))
    x = torch.randn(1, 5).repeat(20000, 1)        # one input, 20,000 independent draws
    out = layer(x)
    mean = F.linear(x[:1], layer.weight, layer.bias)
    var = (x[:1] ** 2).sum() * 0.09 + 0.01
    torch.testing.assert_close(out.mean(0, keepdim=True), mean.detach(), atol=0.03, rtol=0)
    torch.testing.assert_close(out.var(0), var.expand(3).detach(), rtol=0.05, atol=0)


def test_bbb_prediction_is_the_mean_of_samples_forwards_and_reproducible():
    torch.manual_seed(0)
    reg, net = make("bayes_by_backprop", {"samples": 7, "prior_sigma": 1.0},
                    {"name": "mlp", "hidden": [16]})
    assert isinstance(net, MonteCarloAverage)
    with torch.no_grad():
        for layer in reg.layers:  # wide posteriors so the forwards really differ
            layer.weight_rho.fill_(inverse_softplus(0.2))
    x = torch.randn(40, *DIGITS)
    net.eval()
    with torch.no_grad():
        prediction = net(x)
        again = net(x)
        # independent recomputation: 7 forwards of the inner model, same seeded noise
        generator = torch.Generator().manual_seed(net.seed)
        for layer in reg.layers:
            layer.generator = generator
        forwards = [net.model(x).softmax(1) for _ in range(7)]
        for layer in reg.layers:
            layer.generator = None
    expected = torch.stack(forwards).mean(0)
    torch.testing.assert_close(prediction.exp(), expected)
    torch.testing.assert_close(prediction, again, rtol=0, atol=0)
    assert not torch.allclose(forwards[0], forwards[1])
    assert not torch.allclose(prediction.exp(), forwards[0], atol=1e-3)  # more than one forward
    entropy = -(expected * expected.log()).sum(1).mean()
    torch.testing.assert_close(torch.tensor(net.predictive_entropy), entropy, rtol=1e-4, atol=1e-6)
    net.train()
    with torch.no_grad():
        assert not torch.allclose(net(x), net(x))


def test_bbb_regression_averages_outputs():
    torch.manual_seed(0)
    reg, net = make("bayes_by_backprop", {"samples": 5}, {"name": "mlp", "hidden": [8]},
                    task="regression", input_shape=(6,), output_dim=2)
    x = torch.randn(10, 6)
    net.eval()
    with torch.no_grad():
        generator = torch.Generator().manual_seed(net.seed)
        for layer in reg.layers:
            layer.generator = generator
        expected = torch.stack([net.model(x) for _ in range(5)]).mean(0)
        for layer in reg.layers:
            layer.generator = None
        torch.testing.assert_close(net(x), expected)


def run_spec(regularizers: dict, model: dict, epochs: int, lr: float = 0.01) -> dict:
    return {"seed": 0, "run_id": "r", "recipe": "r", "config_hash": "h", "model": model,
            "regularizers": regularizers,
            "train": {"epochs": epochs, "batch_size": 64, "scheduler": None,
                      "optimizer": {"name": "adam", "lr": lr, "momentum": 0.0,
                                    "nesterov": False, "betas": (0.9, 0.999)}}}


def test_bbb_logs_kl_and_predictive_entropy_of_the_validation_split():
    data = prepare({"name": "digits", "train_subset": 128, "val_fraction": 0.1,
                    "test_fraction": 0.2, "split_seed": 0}, 1000)
    spec = run_spec({"bayes_by_backprop": {"samples": 3}}, {"name": "mlp", "hidden": [16]}, 2)
    trainer = Trainer(spec, data, torch.device("cpu"))
    result = trainer.fit()
    row = result.rows[-1]
    assert row["kl"] > 0 and 0 < row["predictive_entropy"] <= math.log(10)
    reg = trainer.regularizers[0]
    trainer.predict(data.x_val)                   # entropy of exactly the val split
    assert row["predictive_entropy"] == pytest.approx(reg.averager.predictive_entropy)
    assert row["penalty"] > 0


# ----------------------------------------------------------------------------- variational dropout
def test_sparse_vd_kl_approximation_matches_a_monte_carlo_estimate():
    """Molchanov et al.'s approximation against the exact KL to the log-uniform prior:
    for q = N(θ, αθ²), −KL = ½·log α − E log|1 + √α·ε| − k₁ (Kingma et al. 2015; the constant
    makes KL → 0 as α → ∞, since E log|ε| = −(γ + log 2)/2 ≈ −k₁)."""
    epsilon = torch.randn(2_000_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for value in (-4.0, -1.0, 0.0, 1.0, 3.0):
        alpha = math.exp(value)
        negative_kl = 0.5 * value - torch.log(torch.abs(1 + math.sqrt(alpha) * epsilon)).mean()
        approx = -sparse_vd_kl(torch.tensor([value], dtype=torch.float64)) + 0.63576
        assert abs(float(approx) - float(negative_kl)) < 0.02, value
    kl = sparse_vd_kl(torch.tensor([-8.0])), sparse_vd_kl(torch.tensor([8.0]))
    assert kl[0] > 3.5 and 0 <= kl[1] < 1e-3     # large for deterministic weights, ~0 when pruned


def test_log_alpha_is_clipped():
    theta = torch.tensor([1.0, 1e-6, 1.0])
    values = log_alpha(theta, torch.tensor([-20.0, 5.0, 0.0]))
    torch.testing.assert_close(values, torch.tensor([-8.0, 8.0, 0.0]))


def test_vd_eval_zeroes_exactly_the_weights_above_the_threshold():
    torch.manual_seed(0)
    layer = SparseVDLinear(6, 4, threshold=3.0, prune_eval=True)
    with torch.no_grad():
        layer.log_sigma2.copy_(torch.log(layer.weight ** 2) + torch.randn(4, 6) * 4)
    pruned = layer.log_alpha() > 3.0
    assert 0 < pruned.sum() < 24
    x = torch.randn(5, 6)
    layer.eval()
    torch.testing.assert_close(layer(x), F.linear(x, layer.weight * ~pruned, layer.bias))
    assert prunable_fraction([layer]) == pytest.approx(float(pruned.float().mean()))
    layer.prune_eval = False
    torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias))
    layer.train()
    assert not torch.allclose(layer(x), layer(x))


def test_vd_penalty_covers_every_layer_and_weights_stay_penalizable():
    reg, net = make("variational_dropout", {"kl_weight": 2.0}, {"name": "mlp", "hidden": [8]})
    assert len(reg.layers) == 2                     # hidden and output
    torch.testing.assert_close(reg.penalty(net), 2.0 * sum(l.kl() for l in reg.layers) / 100)
    names = [name for name, _ in penalized_parameters(net)]
    assert names == ["1.weight", "3.weight"]         # θ; log σ² is not a weight to penalise


def test_variational_dropout_prunes_most_weights_and_keeps_accuracy():
    """Few informative features, many weights: sparse VD should find that most are useless.

    Measured (seed 0): about 83% of weights prunable after 20 epochs, test accuracy 0.875 with
    pruning against 0.842 for the unregularized net.
    """
    data = prepare({"name": "synthetic_classification", "n_samples": 4000, "n_features": 20,
                    "n_informative": 5, "n_classes": 3, "noise": 0.0, "class_sep": 1.0,
                    "seed": 0, "val_fraction": 0.2, "test_fraction": 0.2, "split_seed": 0},
                   10_000)
    model = {"name": "mlp", "hidden": [100]}
    plain = train_run(run_spec({}, model, 20), data, torch.device("cpu"))
    sparse = train_run(run_spec({"variational_dropout": {}}, model, 20), data,
                       torch.device("cpu"))
    fraction = sparse.rows[-1]["prunable_fraction"]
    print(f"prunable fraction {fraction:.3f}; test accuracy {sparse.summary['test_accuracy']:.3f}"
          f" (pruned) vs {plain.summary['test_accuracy']:.3f} unregularized")
    assert fraction > 0.7
    assert sparse.summary["test_accuracy"] >= plain.summary["test_accuracy"] - 0.03
    assert sparse.rows[-1]["kl"] < sparse.rows[0]["kl"]
    # summary.json carries the regularizer's own final columns, as metrics.csv's last row
    assert sparse.summary["prunable_fraction"] == fraction
    assert sparse.summary["kl"] == sparse.rows[-1]["kl"]
    assert "prunable_fraction" not in plain.summary

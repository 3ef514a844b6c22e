"""The weight penalties and step-wise regularizers do exactly what their docstrings in
regbench/regularizers/ say."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from builders import trainer_for

from regbench.regularizers.elastic_net import elastic_net_penalty
from regbench.regularizers.l1 import l1_penalty
from regbench.regularizers.l2 import l2_penalty

MLP_DIGITS = """\
name: step
dataset: {{name: digits, train_subset: 200}}
model: {{name: mlp, hidden: [16]}}
train: {{epochs: 1, batch_size: {batch}, optimizer: {{name: sgd, lr: {lr}}}}}
recipes:
  reg: {recipe}
"""


def _data_gradients(trainer):
    """∂C₀/∂θ on the whole training split, from an independent copy of the model."""
    model = copy.deepcopy(trainer.model)
    model.train()
    data = trainer.data
    loss = torch.nn.functional.cross_entropy(model(data.x_train), data.y_train)
    loss.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def test_l2_sgd_step_matches_the_weight_decay_formula(tmp_path):
    lam, lr = 5.0, 0.5
    trainer = trainer_for(tmp_path, MLP_DIGITS.format(batch=10_000, lr=lr,
                                                      recipe=f"{{l2: {{lambda: {lam}}}}}"), "reg")
    n = trainer.data.n_train
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    grads = _data_gradients(trainer)
    trainer.train_epoch()  # one full-batch step
    after = dict(trainer.model.named_parameters())
    for name, w in before.items():
        if name.endswith("weight"):
            expected = (1 - lr * lam / n) * w - lr * grads[name]
        else:  # biases are not penalised: b <- b - η ∂C₀/∂b
            expected = w - lr * grads[name]
        torch.testing.assert_close(after[name].detach(), expected, rtol=1e-5, atol=1e-6)
    # and the penalty did act: the weights differ from a step without it
    w = "1.weight"
    assert not torch.allclose(after[w].detach(), before[w] - lr * grads[w], atol=1e-7)


def test_weight_decay_is_decoupled(tmp_path):
    """Under SGD: w ← (1 − ηλ)·w − η·∂C₀/∂w, the decay acting on the pre-step weights."""
    lam, lr = 0.1, 0.5
    trainer = trainer_for(tmp_path, MLP_DIGITS.format(
        batch=10_000, lr=lr, recipe=f"{{weight_decay: {{lambda: {lam}}}}}"), "reg")
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    grads = _data_gradients(trainer)
    trainer.train_epoch()
    n = trainer.data.n_train
    for name, p in trainer.model.named_parameters():
        decayed = before[name] * (1 - lr * lam) if name.endswith("weight") else before[name]
        torch.testing.assert_close(p.detach(), decayed - lr * grads[name], rtol=1e-5, atol=1e-6)
    # exactly l2 with λ_l2 = n·λ under plain SGD
    l2 = trainer_for(tmp_path, MLP_DIGITS.format(
        batch=10_000, lr=lr, recipe=f"{{l2: {{lambda: {n * lam}}}}}"), "reg")
    l2.train_epoch()
    for (_, a), (_, b) in zip(trainer.model.named_parameters(), l2.model.named_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


ADAM_DIGITS = """\
name: adam
dataset: {{name: digits, train_subset: 200}}
model: {{name: mlp, hidden: [16]}}
train: {{epochs: 1, batch_size: 10000, optimizer: {optimizer}}}
recipes:
  reg: {recipe}
"""


def test_adam_with_weight_decay_is_torch_adamw_and_differs_from_l2(tmp_path):
    lam, lr, steps = 0.3, 0.01, 4
    trainer = trainer_for(tmp_path, ADAM_DIGITS.format(
        optimizer=f"{{name: adam, lr: {lr}}}",
        recipe=f"{{weight_decay: {{lambda: {lam}, include_bias: true}}}}"), "reg")
    reference = copy.deepcopy(trainer.model)
    adamw = torch.optim.AdamW(reference.parameters(), lr=lr, weight_decay=lam)
    data = trainer.data
    for _ in range(steps):                       # one full-batch step per epoch
        trainer.train_epoch()
        adamw.zero_grad()
        reference.train()
        torch.nn.functional.cross_entropy(reference(data.x_train), data.y_train).backward()
        adamw.step()
    for a, b in zip(trainer.model.parameters(), reference.parameters()):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-6, atol=1e-7)
    n = data.n_train
    l2 = trainer_for(tmp_path, ADAM_DIGITS.format(
        optimizer=f"{{name: adam, lr: {lr}}}",
        recipe=f"{{l2: {{lambda: {n * lam}, include_bias: true}}}}"), "reg")
    for _ in range(steps):
        l2.train_epoch()
    gaps = [(a - b).abs().max().item() for a, b in zip(trainer.model.parameters(),
                                                        l2.model.parameters())]
    assert max(gaps) > 1e-3                      # L2 under Adam is not decoupled decay


def test_optimizer_adamw_decays_and_weight_decay_elsewhere_is_refused(tmp_path):
    from typer.testing import CliRunner

    from regbench.cli import app

    trainer = trainer_for(tmp_path, ADAM_DIGITS.format(
        optimizer="{name: adamw, lr: 0.01}", recipe="{}"), "reg")
    assert isinstance(trainer.optimizer, torch.optim.AdamW)
    assert trainer.optimizer.param_groups[0]["weight_decay"] == 0.01      # torch's default
    own = trainer_for(tmp_path, ADAM_DIGITS.format(
        optimizer="{name: adamw, lr: 0.01, weight_decay: 0.2}", recipe="{}"), "reg")
    assert own.optimizer.param_groups[0]["weight_decay"] == 0.2
    config = tmp_path / "sgd_decay.yaml"
    config.write_text(ADAM_DIGITS.format(optimizer="{name: sgd, lr: 0.1, weight_decay: 0.1}",
                                         recipe="{}"))
    result = CliRunner().invoke(app, ["validate", str(config)])
    assert result.exit_code == 2
    assert "weight_decay is only an optimizer setting of adamw" in result.output
    twice = tmp_path / "twice.yaml"
    twice.write_text(ADAM_DIGITS.format(optimizer="{name: adamw, lr: 0.01}",
                                        recipe="{weight_decay: {lambda: 0.1}}"))
    result = CliRunner().invoke(app, ["validate", str(twice)])
    assert result.exit_code == 0 and "decays twice" in result.output


def test_penalty_formulas():
    weights = [torch.tensor([[1.0, -2.0], [0.5, 0.0]]), torch.tensor([3.0])]
    n = 10
    assert l1_penalty(weights, 2.0, n).item() == pytest.approx(2.0 / n * 6.5)
    assert l2_penalty(weights, 2.0, n).item() == pytest.approx(2.0 / (2 * n) * 14.25)
    assert elastic_net_penalty(weights, 2.0, 1.0, n).item() == pytest.approx(
        l1_penalty(weights, 2.0, n).item())
    assert elastic_net_penalty(weights, 2.0, 0.0, n).item() == pytest.approx(
        l2_penalty(weights, 2.0, n).item())
    assert elastic_net_penalty(weights, 2.0, 0.25, n).item() == pytest.approx(
        2.0 / n * (0.25 * 6.5 + 0.75 / 2 * 14.25))


def test_penalties_cover_weights_not_biases(tmp_path):
    trainer = trainer_for(tmp_path, MLP_DIGITS.format(batch=32, lr=0.1,
                                                      recipe="{l1: {lambda: 1.0}}"), "reg")
    (l1,) = trainer.regularizers
    names = [name for name, _ in l1.penalized(trainer.model)]
    assert names == ["1.weight", "3.weight"]
    trainer_b = trainer_for(tmp_path, MLP_DIGITS.format(
        batch=32, lr=0.1, recipe="{l1: {lambda: 1.0, include_bias: true}}"), "reg")
    names_b = [name for name, _ in trainer_b.regularizers[0].penalized(trainer_b.model)]
    assert "1.bias" in names_b and "3.bias" in names_b


RIDGE = """\
name: ridge
dataset: {{name: synthetic_regression, n_samples: 300, n_features: 8, noise: 20.0, seed: 3}}
model: {{name: linear}}
train: {{epochs: 400, batch_size: 100000, optimizer: {{name: sgd, lr: 0.5}}}}
recipes:
  ridge: {{l2: {{lambda: {lam}}}}}
"""


def test_linear_l2_reaches_the_closed_form_ridge_solution(tmp_path):
    lam = 40.0
    trainer = trainer_for(tmp_path, RIDGE.format(lam=lam), "ridge")
    result = trainer.fit()
    assert result.status == "completed"
    data = trainer.data
    x, y = data.x_train.double().numpy(), data.y_train.double().numpy()
    x_mean, y_mean = x.mean(0), y.mean(0)
    xc, yc = x - x_mean, y - y_mean
    w = np.linalg.solve(xc.T @ xc + lam * np.eye(x.shape[1]), xc.T @ yc)
    b = y_mean - x_mean @ w
    x_val, y_val = data.x_val.double().numpy(), data.y_val.double().numpy()
    closed_mse = float(np.mean((x_val @ w + b - y_val) ** 2))
    assert result.summary["val_mse"] == pytest.approx(closed_mse, rel=0.01)
    layer = trainer.model[-1]
    np.testing.assert_allclose(layer.weight.detach().double().numpy().T, w, rtol=1e-3, atol=1e-3)
    # λ matters: an unregularized fit is measurably different
    w_ols = np.linalg.lstsq(xc, yc, rcond=None)[0]
    assert np.abs(w_ols - w).max() > 0.05 * np.abs(w).max()


SPARSITY = """\
name: sparsity
dataset: {name: synthetic_classification, n_samples: 600, n_features: 50, n_informative: 5}
model: {name: mlp, hidden: [32]}
train: {epochs: 30, batch_size: 50, optimizer: {name: sgd, lr: 0.05}}
recipes:
  l1: {l1: {lambda: 5.0}}
  l2: {l2: {lambda: 10.0}}
"""


def test_l1_leaves_far_more_near_zero_weights_than_l2(tmp_path):
    sparsity = {}
    for recipe in ("l1", "l2"):
        trainer = trainer_for(tmp_path, SPARSITY, recipe)
        result = trainer.fit()
        weights = torch.cat([w.detach().flatten() for w in trainer.weights])
        sparsity[recipe] = (weights.abs() < 1e-3).float().mean().item()
        assert result.summary["sparsity"] == pytest.approx(sparsity[recipe], abs=1e-6)
        # matched strength: both penalties shrink the weights to a similar overall scale
        sparsity[recipe + "_norm"] = result.summary["weight_norm"]
    print(f"near-zero fraction: l1 {sparsity['l1']:.3f}, l2 {sparsity['l2']:.3f}")
    assert sparsity["l1"] > 0.5
    assert sparsity["l1"] > 10 * max(sparsity["l2"], 0.01)
    # matched strength: neither penalty crushes the weights far more than the other
    ratio = sparsity["l1_norm"] / sparsity["l2_norm"]
    assert 1 / 3 < ratio < 3, ratio


def test_max_norm_bounds_every_units_incoming_weights(tmp_path):
    trainer = trainer_for(tmp_path, MLP_DIGITS.format(batch=16, lr=2.0,
                                                      recipe="{max_norm: {c: 0.5}}"), "reg")
    trainer.train_epoch()
    for weight in trainer.weights:
        norms = weight.detach().reshape(weight.shape[0], -1).norm(dim=1)
        assert norms.max().item() <= 0.5 + 1e-5
        assert norms.max().item() > 0.49  # the constraint is active, not vacuous


def test_grad_clip_bounds_the_global_norm_and_logs_the_pre_clip_norm(tmp_path):
    trainer = trainer_for(tmp_path, MLP_DIGITS.format(batch=64, lr=0.1,
                                                      recipe="{grad_clip: {max_norm: 0.01}}"), "reg")
    (clip,) = trainer.regularizers
    data = trainer.data
    loss = trainer.data_loss(trainer.model(data.x_train[:64]), data.y_train[:64])
    loss.backward()
    pre = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in trainer.parameters]))
    clip.after_backward(trainer.model)
    post = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in trainer.parameters]))
    assert pre.item() > 0.01
    assert post.item() == pytest.approx(0.01, rel=1e-4)
    trainer.optimizer.zero_grad()
    row = trainer.run_epoch(1)
    assert row["grad_norm"] > 0.01  # the logged norm is measured before clipping


def test_grad_clip_by_value(tmp_path):
    trainer = trainer_for(tmp_path, MLP_DIGITS.format(batch=64, lr=0.1,
                                                      recipe="{grad_clip: {value: 0.001}}"), "reg")
    data = trainer.data
    trainer.data_loss(trainer.model(data.x_train[:64]), data.y_train[:64]).backward()
    trainer.regularizers[0].after_backward(trainer.model)
    largest = max(p.grad.abs().max().item() for p in trainer.parameters)
    assert largest == pytest.approx(0.001)


def test_grad_clip_clips_as_torch_does_for_every_member_at_once():
    """clip_members (solo: one member; fused: the stacked gradients) against torch's own
    clip_grad_norm_ and clip_grad_value_ applied to each member's gradients."""
    from regbench.regularizers.grad_clip import Params, clip_members

    torch.manual_seed(0)
    grads = [torch.randn(3, 16, 8) * 0.2, torch.randn(3, 16)]
    for params in ([Params(max_norm=0.5), Params(max_norm=5.0), Params(max_norm=0.05)],
                   [Params(value=0.01), Params(value=0.1), Params(value=1.0)]):
        ours = [g.clone() for g in grads]
        clip_members(ours, params)
        for member, setting in enumerate(params):
            theirs = [torch.nn.Parameter(g[member].clone()) for g in grads]
            for p, g in zip(theirs, grads):
                p.grad = g[member].clone()
            if setting.max_norm is not None:
                torch.nn.utils.clip_grad_norm_(theirs, setting.max_norm)
            else:
                torch.nn.utils.clip_grad_value_(theirs, setting.value)
            for mine, p in zip(ours, theirs):
                torch.testing.assert_close(mine[member], p.grad, rtol=1e-6, atol=1e-9)

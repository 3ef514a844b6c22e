"""Dropout, early stopping and label smoothing prove their effect (the formulas are in each
regularizer's docstring, regbench/regularizers/)."""
from __future__ import annotations

import copy

import pytest
import torch
from builders import trainer_for
from torch import nn

from regbench.regularizers.label_smoothing import smooth_labels

CONFIG = """\
name: t
dataset: {{name: digits, train_subset: 300}}
model: {{name: mlp, hidden: [64, 64]}}
train: {{epochs: {epochs}, batch_size: 16, optimizer: {{name: sgd, lr: 0.1, momentum: 0.9}}}}
recipes:
  reg: {recipe}
"""


def test_dropout_is_active_in_train_mode_and_absent_in_eval(tmp_path):
    trainer = trainer_for(tmp_path, CONFIG.format(epochs=1, recipe="{dropout: {p: 0.5}}"), "reg")
    model, x = trainer.model, trainer.data.x_val[:64]
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == 2  # one after each hidden activation, none after the output
    model.train()
    a, b = model(x), model(x)
    assert not torch.allclose(a, b)
    # about half of the first hidden layer's activations are zeroed in training
    linear, activation = model[1], model[2]           # activation: Sequential(ReLU, dropout)
    active = activation(linear(model[0](x)))
    clean = activation[0](linear(model[0](x)))
    dropped = ((active == 0) & (clean != 0)).float().sum() / (clean != 0).float().sum()
    assert 0.4 < dropped.item() < 0.6
    model.eval()
    torch.testing.assert_close(model(x), model(x))
    plain = nn.Sequential(*[m for m in model.modules()
                            if isinstance(m, (nn.Linear, nn.ReLU, nn.Flatten))])
    torch.testing.assert_close(model(x), plain(x))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_layer_drops_with_probability_p_and_scales_survivors(p, monkeypatch):
    from regbench.regularizers.dropout import InvertedDropout

    torch.manual_seed(0)
    layer = InvertedDropout(p, stream=f"test {p}")
    x = (torch.rand(400, 500) + 0.5).requires_grad_()
    with monkeypatch.context() as patch:  # never torch's Bernoulli dropout: the layer's stream
        patch.setattr(nn.functional, "dropout", lambda *a, **k: pytest.fail("nn.Dropout path"))
        out = layer(x)
    dropped = out == 0
    assert abs(dropped.float().mean().item() - p) < 0.005
    torch.testing.assert_close(out[~dropped], x[~dropped] / (1 - p))
    out.sum().backward()  # the gradient is the same mask and scale
    torch.testing.assert_close(x.grad, (~dropped).float() / (1 - p))
    assert abs(out.mean().item() - x.mean().item()) < 0.01   # E[out] = x
    layer.eval()
    assert torch.equal(layer(x), x)
    layer.train()                 # the masks are the stream's: the same for the same key,
    again = InvertedDropout(p, stream=f"test {p}")   # whatever the global RNG did since
    torch.manual_seed(1)
    assert torch.equal(again(x.detach()) == 0, dropped)


def test_input_dropout_adds_a_layer_on_the_inputs(tmp_path):
    trainer = trainer_for(tmp_path, CONFIG.format(epochs=1, recipe="{dropout: {p: 0.2, p_input: 0.1}}"),
                          "reg")
    drops = [m.p for m in trainer.model.modules() if isinstance(m, nn.Dropout)]
    assert drops == [0.1, 0.2, 0.2]


def test_early_stopping_stops_and_restores_the_best_epoch(tmp_path):
    recipe = "{early_stopping: {monitor: val_loss, patience: 2}}"
    trainer = trainer_for(tmp_path, CONFIG.format(epochs=40, recipe=recipe), "reg")
    states = {}

    def snapshot(row):
        states[row["epoch"]] = copy.deepcopy(trainer.model.state_dict())

    result = trainer.fit(on_epoch=snapshot)
    rows = result.rows
    best = min(rows, key=lambda r: r["val_loss"])["epoch"]
    assert result.summary["stopped_epoch"] < 40, "stopped early"
    assert result.summary["stopped_epoch"] == best + 2  # patience 2 after the best epoch
    assert result.summary["chosen_epoch"] == best
    for key, value in trainer.model.state_dict().items():
        torch.testing.assert_close(value, states[best][key])
    # reported val metrics and test metrics come from the restored epoch
    assert result.summary["val_loss"] == pytest.approx(rows[best - 1]["val_loss"])
    test_now = trainer.measure(trainer.data.x_test, trainer.data.y_test)["accuracy"].item()
    assert result.summary["test_accuracy"] == pytest.approx(test_now)


def test_label_smoothing_target_matches_the_formula():
    target = smooth_labels(torch.tensor([1]), 3, 0.3)
    torch.testing.assert_close(target, torch.tensor([[0.1, 0.8, 0.1]]))
    soft = torch.tensor([[0.5, 0.5, 0.0]])
    torch.testing.assert_close(smooth_labels(soft, 3, 0.3), torch.tensor([[0.45, 0.45, 0.1]]))


def test_label_smoothing_changes_the_training_targets(tmp_path):
    trainer = trainer_for(tmp_path, CONFIG.format(epochs=1, recipe="{label_smoothing: {epsilon: 0.3}}"),
                          "reg")
    (smoothing,) = trainer.regularizers
    y = trainer.data.y_train[:4]
    x_out, y_out = smoothing.batch(trainer.data.x_train[:4], y)
    assert y_out.shape == (4, 10)
    torch.testing.assert_close(y_out.sum(1), torch.ones(4))
    assert torch.allclose(y_out[torch.arange(4), y], torch.full((4,), 0.7 + 0.03))

"""Metrics agree with scikit-learn and an independent ECE on random predictions."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn import metrics as sk

from regbench.engine.metrics import classification_metrics, regression_loss, regression_metrics


def _ece_reference(probs: np.ndarray, target: np.ndarray, bins: int = 15) -> float:
    confidence = probs.max(1)
    correct = probs.argmax(1) == target
    total = 0.0
    edges = np.linspace(0, 1, bins + 1)
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (confidence > low) & (confidence <= high)
        if low == 0:
            inside |= confidence == 0
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return total


@pytest.mark.parametrize("seed,classes,absent", [(0, 2, False), (1, 5, False), (2, 10, False),
                                                 (3, 10, True)])
def test_classification_metrics_match_sklearn(seed, classes, absent):
    """scikit-learn's defaults: macro over the labels present in targets or predictions."""
    rng = np.random.default_rng(seed)
    n = 500
    # ``absent``: class 9 is in neither the targets nor the predictions of this split (a small
    # split of a many-class dataset); it must not pull the macro averages down
    target = rng.integers(0, classes - 1 if absent else classes, n)
    logits = rng.normal(size=(n, classes)) * 2
    logits[np.arange(n), target] += rng.random(n) * 2  # better than chance, not perfect
    if classes == 10:
        logits[:, 9] = -50  # a class never predicted: zero_division must give 0
    got = {k: v.item() for k, v in classification_metrics(
        torch.tensor(logits, dtype=torch.float32), torch.tensor(target), classes).items()}
    predicted = logits.argmax(1)
    p, r, f, _ = sk.precision_recall_fscore_support(target, predicted, average="macro",
                                                    zero_division=0)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    assert got["accuracy"] == pytest.approx(sk.accuracy_score(target, predicted), abs=1e-6)
    assert got["precision"] == pytest.approx(p, abs=1e-5)
    assert got["recall"] == pytest.approx(r, abs=1e-5)
    assert got["f1"] == pytest.approx(f, abs=1e-5)
    shifted = logits - logits.max(1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    assert got["loss"] == pytest.approx(-log_probs[np.arange(n), target].mean(), rel=1e-5)
    assert got["ece"] == pytest.approx(_ece_reference(probs, target), abs=1e-5)


@pytest.mark.parametrize("outputs", [1, 3])
def test_regression_metrics_match_sklearn(outputs):
    rng = np.random.default_rng(outputs)
    target = rng.normal(size=(200, outputs)) * 3
    prediction = target + rng.normal(size=target.shape)
    got = {k: v.item() for k, v in regression_metrics(
        torch.tensor(prediction, dtype=torch.float32),
        torch.tensor(target, dtype=torch.float32)).items()}
    assert got["mse"] == pytest.approx(sk.mean_squared_error(target, prediction), rel=1e-5)
    assert got["mae"] == pytest.approx(sk.mean_absolute_error(target, prediction), rel=1e-5)
    assert got["r2"] == pytest.approx(sk.r2_score(target, prediction), rel=1e-5)
    # C0 = 1/(2n) Σ ||y - a||²
    c0 = ((target - prediction) ** 2).sum() / (2 * len(target))
    assert got["loss"] == pytest.approx(c0, rel=1e-5)
    assert regression_loss(torch.tensor(prediction), torch.tensor(target)).item() == \
        pytest.approx(c0, rel=1e-9)


def test_a_member_axis_gives_each_members_metrics_as_scikit_learn_does():
    """Fused training measures M models at once: logits [M, N, C] against one target [N]; each
    member's values equal scikit-learn's on that member's predictions alone (one member is
    perfect, one never predicts class 0)."""
    rng = np.random.default_rng(7)
    members, n, classes = 4, 300, 5
    target = rng.integers(0, classes, n)
    logits = rng.normal(size=(members, n, classes)) * 2
    logits[0, np.arange(n), target] += 50
    logits[2, :, 0] = -50
    got = classification_metrics(torch.tensor(logits, dtype=torch.float32), torch.tensor(target),
                                 classes)
    assert all(value.shape == (members,) for value in got.values())
    for m in range(members):
        predicted = logits[m].argmax(1)
        _, _, f, _ = sk.precision_recall_fscore_support(target, predicted, average="macro",
                                                        zero_division=0)
        probs = np.exp(logits[m] - logits[m].max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        assert got["accuracy"][m].item() == pytest.approx(sk.accuracy_score(target, predicted))
        assert got["f1"][m].item() == pytest.approx(f, abs=1e-5)
        shifted = logits[m] - logits[m].max(1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
        assert got["loss"][m].item() == pytest.approx(-log_probs[np.arange(n), target].mean(),
                                                      rel=1e-5, abs=1e-6)
        assert got["ece"][m].item() == pytest.approx(_ece_reference(probs, target), abs=1e-5)
    prediction = rng.normal(size=(members, 80, 2))
    truth = rng.normal(size=(80, 2))
    reg = regression_metrics(torch.tensor(prediction, dtype=torch.float32),
                             torch.tensor(truth, dtype=torch.float32))
    for m in range(members):
        assert reg["mse"][m].item() == pytest.approx(sk.mean_squared_error(truth, prediction[m]),
                                                     rel=1e-5)
        assert reg["r2"][m].item() == pytest.approx(sk.r2_score(truth, prediction[m]), rel=1e-5)

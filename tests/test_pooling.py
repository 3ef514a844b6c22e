"""MaxPool2x2 equals torch's nn.MaxPool2d(2) exactly: values in evaluation (the fast CPU path,
with tied maxima, NaN and odd sizes), and torch's own kernel, gradients included, in training."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from regbench.models import pooling
from regbench.models.pooling import MaxPool2x2


def inputs(shape, kind: str) -> torch.Tensor:
    generator = torch.Generator().manual_seed(sum(shape))
    if kind == "ties":  # three levels: most windows hold a tied maximum
        return torch.randint(0, 3, shape, generator=generator).float()
    if kind == "nan":
        x = torch.randn(shape, generator=generator)
        x.view(-1)[::7] = float("nan")
        return x
    return torch.relu(torch.randn(shape, generator=generator))  # ties at zero, as after ReLU


SHAPES = [(4, 3, 8, 8), (2, 2, 7, 9), (1, 1, 2, 2), (3, 5, 3, 6)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", ["continuous", "ties", "nan"])
def test_evaluation_values_equal_torchs_max_pool(shape, kind, monkeypatch):
    x = inputs(shape, kind)
    expected = F.max_pool2d(x, 2)

    def forbidden(*args, **kwargs):
        raise AssertionError("evaluation on the CPU must take the fast path")

    monkeypatch.setattr(pooling.nn.functional, "max_pool2d", forbidden)
    with torch.inference_mode():
        torch.testing.assert_close(MaxPool2x2()(x), expected, rtol=0, atol=0, equal_nan=True)
    with torch.no_grad():
        torch.testing.assert_close(MaxPool2x2()(x.contiguous(memory_format=torch.channels_last)),
                                   expected, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("shape", SHAPES)
def test_training_uses_torchs_kernel_with_its_gradients(shape, monkeypatch):
    def forbidden(x):
        raise AssertionError("the fast path has no argmax: it must not run under autograd")

    monkeypatch.setattr(pooling, "max_of_window_corners", forbidden)
    x = inputs(shape, "ties")
    upstream = torch.randn(*shape[:2], shape[2] // 2, shape[3] // 2)
    results = []
    for pool in (MaxPool2x2(), lambda t: F.max_pool2d(t, 2)):
        leaf = x.clone().requires_grad_()
        out = pool(leaf)
        out.backward(upstream)
        results.append((out.detach(), leaf.grad))
    assert torch.equal(results[0][0], results[1][0])
    assert torch.equal(results[0][1], results[1][1])

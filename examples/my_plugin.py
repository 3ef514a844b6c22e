"""A complete regbench plugin: your own model, dataset and regularizer.

    regbench list models --plugin examples/my_plugin.py
    regbench run examples/my_plugin.yaml --plugin examples/my_plugin.py
    python -m pytest -n 0 examples/test_my_plugin.py    # the conformance kit on all three

The model is plain torch (no regbench layer factory): regbench reaches it by module surgery, so
dropout goes after its ReLU modules, batchnorm after its hidden Linear layers, DropConnect
replaces them. ``regbench validate`` lists what each regularizer changed.
"""
import numpy as np
import torch
from torch import nn

import regbench
from regbench.plugins import Field, StrictModel


@regbench.register_model("tinynet")
def tinynet(input_shape, output_dim, width: int = 32, depth: int = 2) -> nn.Module:
    """A small fully connected net built from plain torch modules."""
    layers, features = [nn.Flatten()], int(np.prod(input_shape))
    for _ in range(depth):
        layers += [nn.Linear(features, width), nn.ReLU()]
        features = width
    return nn.Sequential(*layers, nn.Linear(features, output_dim))


@regbench.register_dataset("moons", task="classification")
def moons(n_samples: int = 500, noise: float = 0.25, seed: int = 0):
    """Two interleaving half circles (2 features, 2 classes)."""
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, np.pi, n_samples)
    label = rng.integers(0, 2, n_samples)
    x = np.stack([np.cos(angle) + label * 1.0, np.sin(angle) * (1 - 2 * label) + label * 0.5], 1)
    return x + rng.normal(0, noise, x.shape), label


@regbench.register_regularizer("weight_l4")
class WeightL4(regbench.Regularizer):
    """loss += λ/n · Σ w⁴: punishes the largest weights far more than l2.

    Paper: none; an example of a plugin regularizer.
    Hook: penalty (wrap collects the penalized weights once).
    Formula: loss += λ/n · Σ w⁴ over the weight matrices and kernels (biases excluded), n the
    number of training samples; λ (``lambda``) is dimensionless.
    Deviations from the paper: none (no paper).
    """

    summary = "loss += λ/n·Σw⁴ on the weights; punishes the largest weights most"
    paper = "an example plugin"
    penalizes = True

    class Params(StrictModel):
        lambda_: float = Field(1.0, alias="lambda", ge=0)

    def wrap(self, model):
        self.weights = [w for _, w in self.penalized(model)]
        return model

    def penalty(self, model) -> torch.Tensor:
        return self.params.lambda_ / self.ctx.n_train * sum(w.pow(4).sum() for w in self.weights)

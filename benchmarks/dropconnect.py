"""DropConnect's cost: one training step (forward, backward, SGD update) of a model whose hidden
layers are plain, DropConnect with one mask per batch, or DropConnect with a mask per example
(Wan et al.'s definition), side by side in one process.

    python benchmarks/dropconnect.py        # about a minute

Prints the median milliseconds per step of each and the ratios to the plain model.
"""
from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from regbench.models import LayerFactory, build_model
from regbench.regularizers import REGULARIZERS, RunContext

MODELS = {
    "mlp 784-[256,256]-10, batch 64": ({"name": "mlp", "hidden": [256, 256]}, (1, 28, 28), 64),
    "cnn [16,32] on 28x28, batch 64": ({"name": "cnn", "channels": [16, 32], "hidden": [64],
                                        "kernel_size": 3}, (1, 28, 28), 64),
}


def make(model: dict, shape: tuple, regularizers: dict) -> nn.Module:
    ctx = RunContext(task="classification", n_train=1000, output_dim=10, input_shape=shape,
                     device=torch.device("cpu"), train={})
    regs = [REGULARIZERS.get(name)(REGULARIZERS.get(name).Params.model_validate(params), ctx)
            for name, params in regularizers.items()]
    factory = LayerFactory()
    for reg in regs:
        reg.build(factory)
    net = build_model(model, shape, 10, factory)
    for reg in regs:
        net = reg.wrap(net)
    return net


def step_ms(net: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 30) -> float:
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
    net.train()
    times = []
    for index in range(steps + 5):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()
        if index >= 5:
            times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> None:
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    variants = {"plain": {}, "per_batch": {"dropconnect": {"p": 0.5, "mode": "per_batch"}},
                "per_example": {"dropconnect": {"p": 0.5, "mode": "per_example"}}}
    for label, (model, shape, batch) in MODELS.items():
        x, y = torch.randn(batch, *shape), torch.randint(0, 10, (batch,))
        nets = {name: make(model, shape, regs) for name, regs in variants.items()}
        times = {name: [] for name in variants}
        for _ in range(5):   # interleaved rounds: background load hits every variant alike
            for name, net in nets.items():
                times[name].append(step_ms(net, x, y))
        ms = {name: statistics.median(values) for name, values in times.items()}
        print(f"{label}: plain {ms['plain']:.2f} ms | per_batch {ms['per_batch']:.2f} ms "
              f"({ms['per_batch'] / ms['plain']:.2f}×) | per_example {ms['per_example']:.2f} ms "
              f"({ms['per_example'] / ms['plain']:.2f}×)")


if __name__ == "__main__":
    main()

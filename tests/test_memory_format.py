"""Conv nets train channels-last on the CPU (faster, see benchmarks/memory_format.py) unless a
norm layer over few channels makes that slower. The layout leaves the model's function alone
(up to float rounding); random masks drawn in memory order differ between layouts, so the
choice follows from the model and device only and reruns repeat bit for bit."""
from __future__ import annotations

import torch

from regbench.models import LayerFactory, build_model, memory_format_for, place
from tests.builders import trainer_for

CPU = torch.device("cpu")
CNN = {"name": "cnn", "channels": [6, 16], "hidden": [32], "kernel_size": 5}


def built(config, factory=None, shape=(1, 28, 28)):
    torch.manual_seed(0)
    return build_model(config, shape, 10, factory or LayerFactory())


def test_layout_choice():
    assert memory_format_for(built(CNN), CPU) == torch.channels_last
    assert memory_format_for(built({"name": "mlp", "hidden": [8]}), CPU) == torch.contiguous_format
    assert memory_format_for(built(CNN), torch.device("cuda")) == torch.contiguous_format
    small_norm = LayerFactory(norm=lambda n, kind: torch.nn.BatchNorm2d(n) if kind == "conv"
                              else torch.nn.BatchNorm1d(n))
    assert memory_format_for(built(CNN, small_norm), CPU) == torch.contiguous_format
    wide = {**CNN, "channels": [16, 32]}
    assert memory_format_for(built(wide, small_norm), CPU) == torch.channels_last


def test_channels_last_computes_the_same_function_and_gradients():
    x = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    plain, fast = built(CNN), place(built(CNN), CPU)
    assert fast[0].weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(fast(x), plain(x), rtol=1e-5, atol=1e-5)
    for net in (plain, fast):
        net(x).square().sum().backward()
    for a, b in zip(plain.parameters(), fast.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5)


def test_trainer_trains_a_cnn_channels_last_and_reproduces_itself(tmp_path):
    text = """
name: layout
dataset: {name: digits, split_seed: 0}
model: {name: cnn, channels: [8], hidden: [16], kernel_size: 3}
train: {epochs: 2, batch_size: 64, optimizer: {name: sgd, lr: 0.1}}
recipes: {plain: {}}
"""
    rows = []
    for _ in range(2):  # one after the other: each trainer seeds torch's RNG when built
        trainer = trainer_for(tmp_path, text, "plain")
        assert trainer.model[0].weight.is_contiguous(memory_format=torch.channels_last)
        rows.append([trainer.run_epoch(epoch) for epoch in (1, 2)])
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in rows[0]] == \
        [{k: v for k, v in r.items() if k != "seconds"} for r in rows[1]]
    assert rows[0][1]["train_loss"] < rows[0][0]["train_loss"]


def test_a_narrow_residual_net_trains_contiguous_and_learns(tmp_path):
    """Channels-last training of this resnet aborts the process inside oneDNN's backward on
    some CPUs (torch 2.14.1, AMD EPYC): it must train contiguous, and train."""
    text = """
name: narrow_resnet
dataset: {name: digits, train_subset: 200}
model: {name: resnet, channels: [4, 8], blocks: 1}
train: {epochs: 2, batch_size: 32, optimizer: {name: adam, lr: 0.01}, threads: 1}
recipes: {plain: {}}
"""
    trainer = trainer_for(tmp_path, text, "plain")
    weights = [p for p in trainer.model.parameters() if p.dim() == 4]
    assert weights and all(p.is_contiguous() for p in weights)
    rows = [trainer.run_epoch(epoch) for epoch in (1, 2)]
    assert rows[1]["train_loss"] < rows[0]["train_loss"]
    wide = {"name": "resnet", "channels": [16, 32], "blocks": 1}
    assert memory_format_for(built(wide, shape=(1, 8, 8)), CPU) == torch.channels_last

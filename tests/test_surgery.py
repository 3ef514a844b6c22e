"""Module surgery: the built-in models are plain torch modules that regularizers reach the same
way as any user's model; replaced layers keep their bias (or lack of one), convs the slots
cannot rebuild keep their layer, placement follows the forward pass, and residual branches a
model declares get stochastic depth."""
from __future__ import annotations

from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

from regbench.cli import app
from regbench.models import LayerFactory, build_model
from regbench.models.surgery import operate
from regbench.regularizers import REGULARIZERS, RunContext
from tests.conftest import write_config

IMAGES = (1, 8, 8)
BUILT_IN = [{"name": "linear"}, {"name": "mlp", "hidden": [8, 8]},
            {"name": "cnn", "channels": [4], "hidden": [8], "kernel_size": 3},
            {"name": "resnet", "channels": [4, 8]}, {"name": "resmlp", "width": 8}]


def factory_for(regularizers: dict) -> LayerFactory:
    ctx = RunContext(task="classification", n_train=100, output_dim=3, input_shape=IMAGES,
                     device=torch.device("cpu"), train={})
    factory = LayerFactory()
    for name, params in regularizers.items():
        cls = REGULARIZERS.get(name)
        cls(cls.Params.model_validate(params), ctx).build(factory)
    return factory


def operated(net: nn.Module, regularizers: dict, input_shape=IMAGES) -> tuple[nn.Module, Counter]:
    calls: Counter = Counter()
    factory = factory_for(regularizers)
    return operate(net, factory, set(factory.changed()), calls, input_shape), calls


@pytest.mark.parametrize("config", BUILT_IN, ids=lambda c: c["name"])
def test_built_in_models_are_plain_torch_modules(config):
    net = build_model(config, IMAGES, 3)
    weights = [type(m) for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    assert weights and set(weights) <= {nn.Linear, nn.Conv2d}     # torch's own layers
    assert not any(isinstance(m, (nn.Dropout, nn.BatchNorm1d, nn.BatchNorm2d))
                   for m in net.modules())
    # the same surgery as a plugin's model: applied by hand to the plain model, it gives the
    # model build_model gives with the regularizer
    torch.manual_seed(0)
    by_hand, _ = operated(build_model(config, IMAGES, 3), {"weight_noise": {"sigma": 0.1}})
    torch.manual_seed(0)
    built = build_model(config, IMAGES, 3, factory_for({"weight_noise": {"sigma": 0.1}}))
    assert repr(by_hand) == repr(built)
    for a, b in zip(by_hand.state_dict().values(), built.state_dict().values()):
        assert torch.equal(a, b)


def without_bias() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 8 * 8, 6, bias=False), nn.ReLU(), nn.Linear(6, 3))


@pytest.mark.parametrize("name", ["dropconnect", "weight_noise", "bayes_by_backprop",
                                  "variational_dropout"])
def test_a_layer_without_bias_is_replaced_by_one_without_bias(name):
    source = without_bias()
    initial = source[0].weight.detach().clone()
    net, calls = operated(source, {name: {}})
    assert calls["conv"] == 1 and calls["linear"] == 1
    layers = [m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    assert [type(m) for m in layers] != [nn.Conv2d, nn.Linear, nn.Linear]   # replaced
    assert [m.bias is None for m in layers] == [True, True, False]
    assert not any(n.startswith(("0.bias", "3.bias")) for n, _ in net.named_parameters())
    assert torch.equal(layers[0].weight.detach(), initial)         # the weights are kept
    net.train()
    F.cross_entropy(net(torch.randn(5, *IMAGES)), torch.arange(5) % 3).backward()
    assert all(p.grad is not None for p in net.parameters())


def test_a_conv_the_slot_cannot_rebuild_keeps_its_layer():
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, padding_mode="circular"), nn.ReLU(),
                        nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                        nn.Linear(4 * 8 * 8, 3))
    net, calls = operated(net, {"dropconnect": {}})
    assert calls["conv"] == 1
    assert type(net[0]) is nn.Conv2d and net[0].padding_mode == "circular"
    assert type(net[2]) is not nn.Conv2d


class OutputFirst(nn.Module):
    """The output layer is registered before the hidden one; the forward calls it last."""

    def __init__(self):
        super().__init__()
        self.out = nn.Linear(6, 3)
        self.act = nn.Tanh()
        self.hidden = nn.Linear(4, 6)

    def forward(self, x):
        return self.out(self.act(self.hidden(x)))


def test_placement_follows_the_forward_pass_not_registration_order():
    net, calls = operated(OutputFirst(), {"dropconnect": {}, "dropout": {"p": 0.5}}, (4,))
    assert calls["linear"] == 1 and calls["dropout"] == 1
    assert type(net.out) is nn.Linear and type(net.hidden) is not nn.Linear
    assert isinstance(net.act, nn.Sequential) and isinstance(net.act[0], nn.Tanh)


class Block(nn.Module):
    residual_branch = "body"        # the child whose output is added to the shortcut

    def __init__(self, width):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width))

    def forward(self, x):
        return x + self.body(x)


def test_residual_branches_a_model_declares_get_stochastic_depth():
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), Block(8), Block(8), nn.Linear(8, 3))
    net, calls = operated(net, {"stochastic_depth": {"p": 0.5}}, (4,))
    assert calls["residual_drop"] == 2
    rates = [m[1].p for m in (net[2].body, net[3].body)]
    assert rates == pytest.approx([0.25, 0.5])                   # p·l/L
    net.train()
    x = torch.randn(2000, 4)
    hidden = net[1](net[0](x))
    branch = net[2].body[0](hidden)
    dropped = ((net[2](hidden) - hidden).abs().sum(1) == 0).float().mean()
    assert abs(dropped - 0.25) < 0.04 and branch.abs().sum() > 0


PLUGIN = '''
from torch import nn
import regbench


@regbench.register_model("convnet_undeclared")
def convnet_undeclared(input_shape, output_dim):
    return nn.Sequential(nn.Conv2d(input_shape[0], 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * input_shape[1] * input_shape[2], output_dim))


@regbench.register_model("mlp_plugin")
def mlp_plugin(input_shape, output_dim):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, output_dim))
'''


def test_groupnorm_reaches_a_plugin_conv_net_and_refuses_a_plugin_mlp(tmp_path):
    plugin = tmp_path / "nets.py"
    plugin.write_text(PLUGIN)
    config = "name: g\ndataset: {name: digits}\nmodel: {name: %s}\nrecipes: {g: {groupnorm: {groups: 2}}}\n"
    conv = write_config(tmp_path / "conv.yaml", config % "convnet_undeclared")
    result = CliRunner().invoke(app, ["validate", str(conv), "--plugin", str(plugin)])
    assert result.exit_code == 0, result.output
    assert "groupnorm: 1 norm layers after hidden linear/conv layers" in result.output
    flat = write_config(tmp_path / "flat.yaml", config % "mlp_plugin")
    result = CliRunner().invoke(app, ["validate", str(flat), "--plugin", str(plugin)])
    assert result.exit_code == 2
    assert "groupnorm cannot apply to model mlp_plugin: it needs a hidden nn.Conv2d layer" \
        in result.output

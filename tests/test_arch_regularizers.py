"""Architecture regularizers (build hook) and the residual models: DropConnect masks weights at
rate p, weight noise perturbs the forward but not the stored weights, stochastic depth drops
whole branches per sample at p·l/L, norm layers sit after every hidden layer before the
activation, batchnorm uses its running statistics in eval."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import StochasticDepth as StochasticDepthLayer

from regbench.models import LayerFactory, build_model
from regbench.regularizers import REGULARIZERS, RunContext
from regbench.regularizers._weight_layers import TransformedLinear
from regbench.regularizers.batchnorm import BatchNorm1d
from regbench.regularizers.dropconnect import (
    DropConnectConv2d,
    DropConnectLinear,
    PerExampleLinear,
    dropconnect,
    keep_mask,
    kept_fraction,
)
from regbench.regularizers.stochastic_depth import Params as DepthParams, StochasticDepth

DIGITS = (1, 8, 8)


def build(model: dict, regularizers: dict, input_shape=DIGITS, output_dim: int = 10,
          task: str = "classification") -> nn.Module:
    """Build a model through the regularizers' build and wrap hooks, as the trainer does."""
    ctx = RunContext(task=task, n_train=100, output_dim=output_dim, input_shape=input_shape,
                     device=torch.device("cpu"), train={})
    regs = [REGULARIZERS.get(n)(REGULARIZERS.get(n).Params.model_validate(p), ctx)
            for n, p in regularizers.items()]
    factory = LayerFactory()
    for reg in regs:
        reg.build(factory)
    net = build_model(model, input_shape, output_dim, factory)
    for reg in regs:
        net = reg.wrap(net)
    return net


def effective_weight(layer: nn.Linear) -> torch.Tensor:
    """The weight one forward used, read back by feeding the identity (bias removed)."""
    eye = torch.eye(layer.in_features)
    return (layer(eye) - layer.bias).T


# ----------------------------------------------------------------------------- stochastic vs eval
STOCHASTIC = [
    ("dropconnect", {"p": 0.5}, {"name": "mlp", "hidden": [32]}),
    ("dropconnect", {"p": 0.5}, {"name": "cnn", "channels": [4], "hidden": [8], "kernel_size": 3}),
    ("weight_noise", {"sigma": 0.1}, {"name": "mlp", "hidden": [32]}),
    ("weight_noise", {"sigma": 0.1}, {"name": "cnn", "channels": [4], "hidden": [8], "kernel_size": 3}),
    ("stochastic_depth", {"p": 0.5}, {"name": "resmlp", "width": 16, "blocks": 3}),
    ("stochastic_depth", {"p": 0.5}, {"name": "resnet", "channels": [4, 8], "blocks": 1}),
    ("bayes_by_backprop", {"samples": 3}, {"name": "mlp", "hidden": [32]}),
    ("variational_dropout", {}, {"name": "cnn", "channels": [4], "hidden": [8], "kernel_size": 3}),
]


@pytest.mark.parametrize("name,params,model", STOCHASTIC,
                         ids=[f"{n}-{m['name']}" for n, _, m in STOCHASTIC])
def test_stochastic_in_train_deterministic_in_eval(name, params, model):
    torch.manual_seed(0)
    net = build(model, {name: params})
    x = torch.randn(16, *DIGITS)
    net.train()
    assert not torch.allclose(net(x), net(x))
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(x), net(x), rtol=0, atol=0)
    plain = build(model, {})  # the same architecture without the regularizer, for contrast
    plain.train()
    if not any(isinstance(m, nn.Dropout) for m in plain.modules()):
        torch.testing.assert_close(plain(x), plain(x))


# ----------------------------------------------------------------------------- dropconnect
def test_dropconnect_drops_weights_at_rate_p_with_inverted_scaling():
    weight = torch.randn(300, 200)
    dropped = dropconnect(weight, 0.3, torch.Generator().manual_seed(0))
    kept = dropped != 0
    assert abs(1 - kept.float().mean() - 0.3) < 0.01
    assert abs(kept_fraction(0.3) - 0.7) <= 2 ** -15          # p in steps of 2⁻¹⁵
    torch.testing.assert_close(dropped[kept], weight[kept] / kept_fraction(0.3))


@pytest.mark.parametrize("p", [0.05, 0.5, 0.9])
def test_keep_masks_are_bernoulli_in_every_lane(p):
    """The masks cut 15-bit integers from 64-bit words: each of the four lanes of a word (the
    top one has a bit fewer) keeps at rate 1 − p, and neighbours are uncorrelated."""
    keep = keep_mask((1_000_000,), p, generator=torch.Generator().manual_seed(1)).float()
    for lane in range(4):
        assert abs(keep[lane::4].mean().item() - (1 - p)) < 0.005
    centred = keep - keep.mean()
    correlation = (centred[1:] * centred[:-1]).mean() / centred.var()
    assert abs(correlation.item()) < 0.005


def _dropconnect_layers(model, params):
    net = build(model, {"dropconnect": params})
    return net, [m for m in net.modules() if isinstance(m, (DropConnectLinear, DropConnectConv2d))]


def test_dropconnect_gives_each_example_its_own_mask_with_the_analytic_variance():
    """Wan et al. 2013: r_b = ((M_b ⊙ W) x + m_b ⊙ b)/(1 − p) with masks drawn per example, so
    copies of one input in one batch get different outputs, whose variance over the copies is
    p/(1 − p) · (Σ_i W_oi² x_i² + b_o²) for each output o, and whose mean is W x + b."""
    torch.manual_seed(0)
    net, hidden = _dropconnect_layers({"name": "mlp", "hidden": [16, 16]}, {"p": 0.3})
    assert len(hidden) == 2 and type(net[-1]) is nn.Linear      # the output layer is not dropped
    layer = hidden[1]
    layer.train()
    x = torch.randn(1, 16)
    with torch.no_grad():
        layer.bias.normal_()
        out = layer(x.repeat(20_000, 1))
    assert not torch.equal(out[0], out[1])                       # two examples, two masks
    expected_var = 0.3 / 0.7 * ((layer.weight ** 2) @ (x[0] ** 2) + layer.bias ** 2)
    torch.testing.assert_close(out.var(0), expected_var.detach(), rtol=0.05, atol=1e-4)
    torch.testing.assert_close(out.mean(0), (x @ layer.weight.T + layer.bias)[0].detach(),
                               rtol=0.05, atol=0.02)
    layer.eval()
    torch.testing.assert_close(layer(x), x @ layer.weight.T + layer.bias)


def test_per_example_linear_gradients_are_those_of_the_masked_product():
    """The hand-written backward (which keeps the boolean masks, not masked float copies)
    against autograd through (M_b ⊙ W) x_b, and torch's numerical gradcheck."""
    torch.manual_seed(0)
    x = torch.randn(5, 3, 7, dtype=torch.double, requires_grad=True)
    weight = torch.randn(4, 7, dtype=torch.double, requires_grad=True)
    keep = torch.rand(5, 4, 7) > 0.4
    assert torch.autograd.gradcheck(PerExampleLinear.apply, (x, weight, keep))
    out = PerExampleLinear.apply(x, weight, keep)
    reference = torch.einsum("bpi,boi->bpo", x, weight * keep)
    torch.testing.assert_close(out, reference)
    grad = torch.randn_like(out)
    ours = torch.autograd.grad(out, (x, weight), grad)
    theirs = torch.autograd.grad(reference, (x, weight), grad)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b)


def test_dropconnect_per_batch_mode_shares_one_mask_and_drops_biases():
    torch.manual_seed(0)
    _, hidden = _dropconnect_layers({"name": "mlp", "hidden": [64, 64]},
                                    {"p": 0.4, "mode": "per_batch"})
    layer = hidden[1]
    layer.train()
    x = torch.randn(1, 64).repeat(8, 1)
    out = layer(x)
    assert torch.equal(out, out[:1].expand_as(out))              # one mask for the batch
    zeros = (layer(torch.zeros(1000, 64)) == 0).float().mean()   # the output is the bias alone
    assert 0 < zeros < 1


def test_dropconnect_gradients_follow_the_masks_per_example():
    torch.manual_seed(0)
    _, hidden = _dropconnect_layers({"name": "mlp", "hidden": [8, 8]}, {"p": 0.5})
    layer = hidden[1]
    layer.train()
    # one example: a dropped weight gets no gradient; two batches drop different weights
    grads = []
    for _ in range(2):
        layer.zero_grad()
        layer(torch.randn(1, 8)).sum().backward()
        grads.append(layer.weight.grad == 0)
    assert 0.3 < grads[0].float().mean() < 0.7 and not torch.equal(grads[0], grads[1])


def test_dropconnect_conv_masks_kernels_per_example_and_matches_the_plain_conv_in_eval():
    torch.manual_seed(0)
    _, hidden = _dropconnect_layers({"name": "cnn", "channels": [8], "hidden": [8],
                                     "kernel_size": 3}, {"p": 0.5})
    layer = next(m for m in hidden if isinstance(m, DropConnectConv2d))
    layer.train()
    x = torch.randn(1, 1, 8, 8).repeat(3, 1, 1, 1)
    out = layer(x)
    assert out.shape == (3, 8, 8, 8) and not torch.equal(out[0], out[1])
    layer.zero_grad()
    layer(x[:1]).sum().backward()
    assert 0.3 < (layer.weight.grad == 0).float().mean() < 0.7
    layer.eval()
    torch.testing.assert_close(layer(x), F.conv2d(x, layer.weight, layer.bias,
                                                padding=layer.padding))


# ----------------------------------------------------------------------------- weight noise
def test_weight_noise_perturbs_every_forward_and_updates_the_clean_weights():
    torch.manual_seed(0)
    net = build({"name": "mlp", "hidden": [50]}, {"weight_noise": {"sigma": 0.05}})
    layers = [m for m in net.modules() if isinstance(m, TransformedLinear)]
    assert len(layers) == 2                                   # hidden and output layer
    layer = layers[0]
    clean = layer.weight.detach().clone()
    noise_a, noise_b = effective_weight(layer) - clean, effective_weight(layer) - clean
    assert abs(noise_a.std() - 0.05) < 0.005 and abs(noise_a.mean()) < 0.005
    assert not torch.allclose(noise_a, noise_b)                # fresh noise every forward
    assert torch.equal(layer.weight.detach(), clean)           # the noise is never stored
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    x = torch.randn(32, *DIGITS)
    F.cross_entropy(net(x), torch.arange(32) % 10).backward()
    grad = layer.weight.grad.clone()
    optimizer.step()
    torch.testing.assert_close(layer.weight.detach(), clean - 0.1 * grad)  # clean w − η·∂L/∂w̃
    layer.eval()
    torch.testing.assert_close(effective_weight(layer), layer.weight.detach())


# ----------------------------------------------------------------------------- stochastic depth
@pytest.mark.parametrize("p", [0.2, 0.6])
def test_the_drop_layer_drops_whole_samples_at_rate_p(p):
    factories = {}
    for mode in ("row", "batch"):
        factories[mode] = LayerFactory()
        StochasticDepth(DepthParams(p=p, mode=mode), None).build(factories[mode])
    layer = factories["row"].residual_drop(1.0)          # the last block: rate p
    torch.manual_seed(0)
    x = torch.ones(4000, 3, 4, 4)
    out = layer(x)
    per_sample = out.flatten(1)
    dropped = (per_sample == 0).all(1)
    kept = (per_sample == 1 / (1 - p)).all(1)
    assert torch.equal(dropped | kept, torch.ones(4000, dtype=torch.bool))  # all or nothing
    assert abs(dropped.float().mean() - p) < 0.03
    batch = factories["batch"].residual_drop(1.0)(x)
    assert (batch == 0).all() or (batch == 1 / (1 - p)).all()
    assert torch.equal(layer.eval()(x), x)


@pytest.mark.parametrize("model,blocks", [({"name": "resmlp", "width": 8, "blocks": 4}, 4),
                                          ({"name": "resnet", "channels": [4, 8], "blocks": 2}, 4)])
def test_stochastic_depth_rates_decay_linearly_and_drop_branches_per_sample(model, blocks):
    torch.manual_seed(0)
    net = build(model, {"stochastic_depth": {"p": 0.8}})
    drops = [m for m in net.modules() if isinstance(m, StochasticDepthLayer)]
    assert [round(d.p, 6) for d in drops] == [round(0.8 * l / blocks, 6) for l in range(1, blocks + 1)]
    seen = {}

    def record(module, inputs, output):
        branch = inputs[0].flatten(1)
        out = output.flatten(1)
        dropped = (out == 0).all(1) & (branch != 0).any(1)
        scale = 1 / (1 - module.p) if module.training else 1.0
        scaled = torch.isclose(out, branch * scale).all(1)
        assert torch.equal(dropped | scaled, torch.ones_like(dropped))  # whole branch or none
        seen[module] = dropped.float().mean().item()

    for drop in drops:
        drop.register_forward_hook(record)
    net.train()
    with torch.no_grad():
        net(torch.randn(3000, *DIGITS))
    for drop in drops:
        assert abs(seen[drop] - drop.p) < 0.04
    net.eval()
    with torch.no_grad():
        net(torch.randn(500, *DIGITS))
    assert all(rate == 0 for rate in seen.values())           # nothing dropped in eval


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
def test_resnet_builds_for_digits_mnist_and_cifar_shapes(shape):
    net = build({"name": "resnet"}, {"batchnorm": {}}, input_shape=shape)
    assert net(torch.randn(2, *shape)).shape == (2, 10)
    assert sum(isinstance(m, nn.Conv2d) for m in net.modules()) == 1 + 3 * 2 + 2  # stem, blocks, 2 projections


def test_resmlp_works_on_flat_and_image_inputs():
    for shape in [(30,), DIGITS]:
        net = build({"name": "resmlp", "width": 12, "blocks": 3}, {}, input_shape=shape,
                    output_dim=2)
        assert net(torch.randn(5, *shape)).shape == (5, 2)


# ----------------------------------------------------------------------------- norm layers
def called_types(net: nn.Module, input_shape=DIGITS) -> list[type]:
    """Types of the leaf modules one forward calls, in call order (a reused module each time)."""
    called: list[type] = []
    leaves = [m for m in net.modules() if not list(m.children())]
    handles = [m.register_forward_pre_hook(lambda m, args: called.append(type(m)))
               for m in leaves]
    net.eval()
    with torch.no_grad():
        net(torch.zeros(2, *input_shape))
    for handle in handles:
        handle.remove()
    return called


def after_weight_layers(types: list[type]) -> list[list[type]]:
    """The two modules called after each linear/conv layer but the last one."""
    weights = [i for i, t in enumerate(types) if issubclass(t, (nn.Linear, nn.Conv2d))]
    return [types[i + 1:i + 3] for i in weights[:-1]]


CNN = {"name": "cnn", "channels": [4, 8], "hidden": [16], "kernel_size": 3}


@pytest.mark.parametrize("name,conv_norm,linear_norm", [
    ("batchnorm", nn.BatchNorm2d, nn.BatchNorm1d),
    ("layernorm", nn.GroupNorm, nn.LayerNorm),
    ("groupnorm", nn.GroupNorm, None),                  # no norm on linear layers
])
def test_norm_after_every_hidden_layer_before_the_activation(name, conv_norm, linear_norm):
    following = after_weight_layers(called_types(build(CNN, {name: {}})))
    assert len(following) == 3
    for (norm, activation), expected in zip(following, [conv_norm, conv_norm, linear_norm]):
        if expected is None:
            assert norm is nn.ReLU
        else:
            assert issubclass(norm, expected) and activation is nn.ReLU
    mlp = build({"name": "mlp", "hidden": [16, 8]}, {name: {}})
    if name != "groupnorm":
        assert all(issubclass(norm, linear_norm) and activation is nn.ReLU
                   for norm, activation in after_weight_layers(called_types(mlp)))
    assert called_types(build(CNN, {name: {}}))[-1] is nn.Linear   # no norm after the output


def test_norm_layers_inside_residual_branches():
    net = build({"name": "resnet", "channels": [4, 8], "blocks": 1}, {"batchnorm": {}})
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == len(convs) == 6     # stem, 2 convs per branch, the stage-2 projection


def test_layernorm_on_conv_normalises_over_channels_and_positions():
    norm = build(CNN, {"layernorm": {}})[0][1]
    x = torch.randn(3, 4, 5, 5) * 3 + 1
    torch.testing.assert_close(norm(x), F.layer_norm(x, x.shape[1:]), atol=1e-5, rtol=1e-5)


def test_groupnorm_groups_divide_the_channels():
    net = build({"name": "cnn", "channels": [6, 16], "hidden": [8], "kernel_size": 3},
                {"groupnorm": {"groups": 4}})
    assert [m.num_groups for m in net.modules() if isinstance(m, nn.GroupNorm)] == [3, 4]


def test_batchnorm_uses_running_statistics_in_eval():
    torch.manual_seed(0)
    net = build({"name": "mlp", "hidden": [6]}, {"batchnorm": {"momentum": 0.25}})
    linear, norm = net[1][0], net[1][1]
    x = torch.randn(64, *DIGITS) * 2 + 0.5
    net.train()
    with torch.no_grad():
        pre = linear(x.flatten(1))
        net(x)
    torch.testing.assert_close(norm.running_mean, 0.25 * pre.mean(0))
    torch.testing.assert_close(norm.running_var, 0.75 + 0.25 * pre.var(0, unbiased=True))
    net.eval()
    with torch.no_grad():
        expected = (pre - norm.running_mean) / torch.sqrt(norm.running_var + norm.eps)
        torch.testing.assert_close(norm(pre), expected * norm.weight + norm.bias)
        # in eval a sample's output does not depend on the rest of the batch
        torch.testing.assert_close(net(x[:1]), net(x)[:1])
    net.train()
    with torch.no_grad():
        assert not torch.allclose(net(x[:2])[:1], net(x)[:1])  # in training it does


def test_batchnorm_survives_a_training_batch_of_one():
    norm = BatchNorm1d(4)
    norm.train()
    out = norm(torch.randn(1, 4))
    assert torch.isfinite(out).all()

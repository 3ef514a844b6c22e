"""Regularizers on any torch model: the layer factory's slots, applied by module surgery.

A built-in model asks the :class:`LayerFactory` for its layers, so a regularizer's ``build``
hook shapes it directly. A plugin model builds its own layers; here the same slots are applied
to it afterwards (in the spirit of MosaicML Composer's ``module_surgery``):

- ``linear`` / ``conv``: every hidden ``nn.Linear`` / ``nn.Conv2d`` is replaced by the slot's
  layer (DropConnect, weight noise, Bayesian layers), keeping the weights where the new layer
  has the same parameters; ``output``: the last ``nn.Linear`` likewise;
- ``norm``: a norm layer after every hidden linear/conv layer;
- ``dropout``: a dropout layer after every activation module that follows a hidden layer;
- ``input_dropout``: dropout on the model's input;
- ``residual_drop``: a drop layer at the end of each residual branch of torchvision's ResNet
  blocks (``x + f(x)`` with f's last layer followed by the drop).

Every slot a recipe sets must change the model: :func:`slot_counts` says how often each was
used, and a slot used nowhere (an MLP-less ``linear`` model with dropout, a plugin that applies
its activations as functions) is refused before training by the caller.
"""
from __future__ import annotations

from collections import Counter
from typing import Callable

from torch import nn

SLOTS = ("linear", "conv", "output", "norm", "dropout", "input_dropout", "residual_drop")
ACTIVATION_TYPES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU,
                    nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Hardswish,
                    nn.Hardtanh, nn.Hardsigmoid)
WHAT = {                                 # how validate describes a slot's changes
    "linear": "hidden linear layers replaced", "conv": "hidden conv layers replaced",
    "output": "output layer replaced", "norm": "norm layers after hidden linear/conv layers",
    "dropout": "dropout layers after hidden activations", "input_dropout": "dropout on the inputs",
    "residual_drop": "residual branches given a drop layer",
}


def set_slots(before, after) -> list[str]:
    """The factory slots a ``build`` hook changed."""
    return [slot for slot in SLOTS if getattr(before, slot) is not getattr(after, slot)]


def track(factory, calls: Counter) -> None:
    """Make every slot count its calls into ``calls`` (the built-in models use the factory)."""
    for slot in SLOTS:
        make = getattr(factory, slot)
        if make is not None:
            setattr(factory, slot, _counted(make, slot, calls))


def _counted(make: Callable, slot: str, calls: Counter) -> Callable:
    def counted(*args, **kwargs):
        calls[slot] += 1
        return make(*args, **kwargs)
    return counted


def _weight_layers(model: nn.Module) -> list[tuple[nn.Module, str, nn.Module]]:
    """(parent, attribute, layer) of every nn.Linear / nn.Conv2d in module order."""
    found = []
    for parent in model.modules():
        for attribute, child in parent.named_children():
            if type(child) in (nn.Linear, nn.Conv2d):
                found.append((parent, attribute, child))
    return found


def _activations(model: nn.Module) -> list[tuple[nn.Module, str, nn.Module, str]]:
    """(parent, attribute, activation, kind of the layer before it) for activation modules
    that follow a hidden layer, in module order; kind is "linear" or "conv"."""
    order = [m for m in model.modules()]
    last_linear = max((i for i, m in enumerate(order) if type(m) is nn.Linear), default=-1)
    parents = {id(child): (parent, name) for parent in order
               for name, child in parent.named_children()}
    found, kind = [], None
    for index, module in enumerate(order):
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            kind = "conv" if isinstance(module, nn.Conv2d) else "linear"
        elif (isinstance(module, ACTIVATION_TYPES) and kind is not None
              and index < last_linear and id(module) in parents):
            parent, name = parents[id(module)]
            found.append((parent, name, module, kind))
    return found


def _replace(old: nn.Module, new: nn.Module) -> nn.Module:
    """``new`` with ``old``'s weight and bias where both have them with the same shapes."""
    for name in ("weight", "bias"):
        source, target = getattr(old, name, None), getattr(new, name, None)
        if isinstance(source, nn.Parameter) and isinstance(target, nn.Parameter) \
                and source.shape == target.shape:
            target.data.copy_(source.data)
    return new


def operate(model: nn.Module, factory, slots: set[str], calls: Counter,
            input_shape: tuple[int, ...]) -> nn.Module:
    """Apply the factory's changed ``slots`` to a model that built its own layers; count into
    ``calls`` each change that takes effect. Returns the model (wrapped when the inputs get
    dropout).

    A replaced layer that the model's forward never calls (its weight read directly, as
    Swin's attention reads ``qkv.weight``) changes nothing: one forward on zeros finds those,
    and they are not counted, so a slot left with no effective change is refused."""
    made: list[tuple[str, nn.Module]] = []
    factory = _recording(factory, slots, made)
    changed = _operate(model, factory, slots, calls)
    for slot in unreached(changed, made, input_shape):
        calls[slot] -= 1
    return changed


def _recording(factory, slots: set[str], made: list):
    """A copy of ``factory`` whose changed slots note every module they make."""
    import dataclasses

    def record(slot: str, make):
        def made_by_slot(*args, **kwargs):
            module = make(*args, **kwargs)
            made.append((slot, module))
            return module
        return made_by_slot

    return dataclasses.replace(factory, **{slot: record(slot, getattr(factory, slot))
                                          for slot in slots})


def unreached(model: nn.Module, made: list[tuple[str, nn.Module]],
              input_shape: tuple[int, ...]) -> list[str]:
    """The slot of each made module that an eval-mode forward of two zero inputs never calls."""
    import torch

    reached: set[int] = set()
    handles = [module.register_forward_hook(lambda m, i, o: reached.add(id(m)))
               for _, module in made]
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(2, *input_shape))
    except Exception:   # a model that cannot take zeros (e.g. token ids): its runs will tell
        return []
    finally:
        for handle in handles:
            handle.remove()
        model.train(training)
    return [slot for slot, module in made if id(module) not in reached]


def _operate(model: nn.Module, factory, slots: set[str], calls: Counter) -> nn.Module:
    layers = _weight_layers(model)
    output = next((entry for entry in reversed(layers) if type(entry[2]) is nn.Linear), None)
    hidden = [entry for entry in layers if entry is not output]
    if "dropout" in slots:              # before layers are wrapped: activations stay in place
        for parent, name, activation, kind in _activations(model):
            setattr(parent, name, nn.Sequential(activation, factory.dropout(kind)))
            calls["dropout"] += 1
    for parent, name, layer in hidden:
        replaced = layer
        if isinstance(layer, nn.Linear) and "linear" in slots:
            replaced = _replace(layer, factory.linear(layer.in_features, layer.out_features))
            calls["linear"] += 1
        elif isinstance(layer, nn.Conv2d) and "conv" in slots and _plain_conv(layer):
            replaced = _replace(layer, factory.conv(layer.in_channels, layer.out_channels,
                                                    layer.kernel_size[0], layer.stride[0],
                                                    layer.padding[0]))
            calls["conv"] += 1
        if "norm" in slots:
            features = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
            replaced = nn.Sequential(replaced, factory.norm(
                features, "linear" if isinstance(layer, nn.Linear) else "conv"))
            calls["norm"] += 1
        if replaced is not layer:
            setattr(parent, name, replaced)
    if output is not None and "output" in slots:
        parent, name, layer = output
        setattr(parent, name, _replace(layer, factory.output(layer.in_features,
                                                             layer.out_features)))
        calls["output"] += 1
    if "residual_drop" in slots:
        blocks = _residual_blocks(model)
        for depth, (block, name) in enumerate(blocks, 1):
            # the branch's last layer feeds the sum x + f(x): dropping its output drops f
            setattr(block, name, nn.Sequential(getattr(block, name),
                                               factory.residual_drop(depth / len(blocks))))
            calls["residual_drop"] += 1
    if "input_dropout" in slots:
        model = nn.Sequential(factory.input_dropout(), model)
        calls["input_dropout"] += 1
    return model


def _residual_blocks(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """(block, name of its branch's last layer) for torchvision's ResNet blocks, in order."""
    from torchvision.models.resnet import BasicBlock, Bottleneck

    return [(module, "bn3" if isinstance(module, Bottleneck) else "bn2")
            for module in model.modules() if isinstance(module, (BasicBlock, Bottleneck))]


def _plain_conv(layer: nn.Conv2d) -> bool:
    """A conv the factory can rebuild: square kernel, equal strides and paddings, no groups or
    dilation (others keep their layer; the slot then counts fewer changes)."""
    return (layer.kernel_size[0] == layer.kernel_size[1] and layer.stride[0] == layer.stride[1]
            and isinstance(layer.padding, tuple) and layer.padding[0] == layer.padding[1]
            and layer.groups == 1 and layer.dilation == (1, 1))


"""Regularizers on any torch model: the layer factory's slots, applied by module surgery.

Every model, built-in or plugin, is built from standard torch layers; the slots a
regularizer's ``build`` hook set are applied to it afterwards (in the spirit of MosaicML
Composer's ``module_surgery``), in the order one forward pass calls the layers (module
registration order where the model cannot take a batch of zeros):

- ``linear`` / ``conv``: every hidden ``nn.Linear`` / ``nn.Conv2d`` is replaced by the slot's
  layer (DropConnect, weight noise, Bayesian layers) with the same shape, bias or none, and
  the same weights where the new layer has the same parameters; ``output``: the last
  ``nn.Linear`` called, likewise. Convs the slot cannot rebuild (grouped, dilated, non-square,
  padded other than with zeros) keep their layer;
- ``norm``: a norm layer after every hidden linear/conv layer;
- ``dropout``: a dropout layer after every activation module called after a hidden layer and
  before the output layer (an activation module used twice gets it at both uses);
- ``input_dropout``: dropout on the model's input;
- ``residual_drop``: a drop layer at the end of each residual branch: of every module that
  declares ``residual_branch = "<child>"`` (regbench's residual blocks; a plugin's own blocks
  may declare it), and of torchvision's and timm's ResNet blocks.

Every slot a recipe sets must change the model: :func:`operate` counts each change per slot,
and a slot used nowhere (a ``linear`` model with dropout, a plugin that applies its
activations as functions) is refused before training by the caller.
"""
from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Callable, Optional

import torch
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
RESNET_BLOCKS = {"BasicBlock": "bn2", "Bottleneck": "bn3"}   # block class -> its branch's end
RESNET_MODULES = ("torchvision.models.resnet", "timm.models.resnet")


def set_slots(before, after) -> list[str]:
    """The factory slots a ``build`` hook changed."""
    return [slot for slot in SLOTS if getattr(before, slot) is not getattr(after, slot)]


def _call_order(model: nn.Module, input_shape: tuple[int, ...]) -> list[nn.Module]:
    """The model's modules in the order an eval forward of two zero inputs first calls them,
    after those it never calls; registration order where the model cannot take zeros (e.g.
    token ids)."""
    order: dict[int, nn.Module] = {}

    def called(module: nn.Module, args) -> None:
        order.setdefault(id(module), module)

    handles = [module.register_forward_pre_hook(called) for module in model.modules()]
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(2, *input_shape))
    except Exception:  # noqa: BLE001  (any model-specific failure: fall back, runs will tell)
        return list(model.modules())
    finally:
        for handle in handles:
            handle.remove()
        model.train(training)
    # modules the forward never calls go first: the output layer is the last one it calls
    return [m for m in model.modules() if id(m) not in order] + list(order.values())


def _parents(model: nn.Module) -> dict[int, tuple[nn.Module, str]]:
    """id(child) -> (parent, attribute) for every module but the root (first parent wins)."""
    found: dict[int, tuple[nn.Module, str]] = {}
    for parent in model.modules():
        for name, child in parent.named_children():
            found.setdefault(id(child), (parent, name))
    return found


def _kind(module: nn.Module) -> Optional[str]:
    return {nn.Linear: "linear", nn.Conv2d: "conv"}.get(type(module))


def _plan(order: list[nn.Module]):
    """(output layer, hidden weight layers, activations after a hidden layer with its kind)."""
    linears = [i for i, m in enumerate(order) if type(m) is nn.Linear]
    output_index = linears[-1] if linears else None
    hidden = [m for i, m in enumerate(order) if _kind(m) and i != output_index]
    activations, kind = [], None
    for index, module in enumerate(order):
        if _kind(module) and index != output_index:
            kind = _kind(module)
        elif (isinstance(module, ACTIVATION_TYPES) and kind is not None
              and (output_index is None or index < output_index)):
            activations.append((module, kind))
    return (order[output_index] if output_index is not None else None), hidden, activations


def _replace(old: nn.Module, new: nn.Module) -> nn.Module:
    """``new`` with ``old``'s weight and bias where both have them with the same shapes."""
    for name in ("weight", "bias"):
        source, target = getattr(old, name, None), getattr(new, name, None)
        if isinstance(source, nn.Parameter) and isinstance(target, nn.Parameter) \
                and source.shape == target.shape:
            target.data.copy_(source.data)
    return new


def _bias(layer: nn.Module) -> dict[str, bool]:
    """The slot's bias keyword: passed only for a layer without bias, so factories written
    for ``(in, out)`` keep working on the usual layers."""
    return {} if layer.bias is not None else {"bias": False}


def operate(model: nn.Module, factory, slots: set[str], calls: Counter,
            input_shape: tuple[int, ...]) -> nn.Module:
    """Apply the factory's changed ``slots`` to ``model``; count into ``calls`` each change
    that takes effect. Returns the model (wrapped when the inputs get dropout).

    A replaced layer that the model's forward never calls (its weight read directly, as
    Swin's attention reads ``qkv.weight``) changes nothing: one forward on zeros finds those,
    and they are not counted, so a slot left with no effective change is refused."""
    made: list[tuple[str, nn.Module]] = []
    factory = _recording(factory, slots, made)
    changed = _operate(model, factory, slots, calls, _call_order(model, input_shape))
    for slot in unreached(changed, made, input_shape):
        calls[slot] -= 1
    return changed


def _recording(factory, slots: set[str], made: list):
    """A copy of ``factory`` whose changed slots note every module they make."""
    def record(slot: str, make: Callable):
        def made_by_slot(*args, **kwargs):
            module = make(*args, **kwargs)
            if module is not None:
                made.append((slot, module))
            return module
        return made_by_slot

    return dataclasses.replace(factory, **{slot: record(slot, getattr(factory, slot))
                                          for slot in slots})


def unreached(model: nn.Module, made: list[tuple[str, nn.Module]],
              input_shape: tuple[int, ...]) -> list[str]:
    """The slot of each made module that an eval-mode forward of two zero inputs never calls."""
    reached: set[int] = set()
    handles = [module.register_forward_hook(lambda m, i, o: reached.add(id(m)))
               for _, module in made]
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(2, *input_shape))
    except Exception:  # noqa: BLE001  (a model that cannot take zeros: its runs will tell)
        return []
    finally:
        for handle in handles:
            handle.remove()
        model.train(training)
    return [slot for slot, module in made if id(module) not in reached]


def _operate(model: nn.Module, factory, slots: set[str], calls: Counter,
             order: list[nn.Module]) -> nn.Module:
    output, hidden, activations = _plan(order)
    parents = _parents(model)
    if "dropout" in slots:              # before layers are wrapped: activations stay in place
        for activation, kind in activations:
            if id(activation) in parents:
                parent, name = parents[id(activation)]
                setattr(parent, name, nn.Sequential(activation, factory.dropout(kind)))
                calls["dropout"] += 1
    for layer in hidden:
        if id(layer) not in parents:
            continue
        parent, name = parents[id(layer)]
        replaced = layer
        if isinstance(layer, nn.Linear) and "linear" in slots:
            replaced = _replace(layer, factory.linear(layer.in_features, layer.out_features,
                                                      **_bias(layer)))
            calls["linear"] += 1
        elif isinstance(layer, nn.Conv2d) and "conv" in slots and _plain_conv(layer):
            replaced = _replace(layer, factory.conv(layer.in_channels, layer.out_channels,
                                                    layer.kernel_size[0], layer.stride[0],
                                                    layer.padding[0], **_bias(layer)))
            calls["conv"] += 1
        norm = factory.norm(layer.out_features if isinstance(layer, nn.Linear)
                            else layer.out_channels, _kind(layer)) if "norm" in slots else None
        if norm is not None:
            replaced = nn.Sequential(replaced, norm)
            calls["norm"] += 1
        if replaced is not layer:
            setattr(parent, name, replaced)
    if output is not None and "output" in slots and id(output) in parents:
        parent, name = parents[id(output)]
        setattr(parent, name, _replace(output, factory.output(
            output.in_features, output.out_features, **_bias(output))))
        calls["output"] += 1
    if "residual_drop" in slots:
        blocks = residual_branches(model)
        for depth, (block, name) in enumerate(blocks, 1):
            # the branch's last layer feeds the sum x + f(x): dropping its output drops f
            setattr(block, name, nn.Sequential(getattr(block, name),
                                               factory.residual_drop(depth / len(blocks))))
            calls["residual_drop"] += 1
    if "input_dropout" in slots:
        model = nn.Sequential(factory.input_dropout(), model)
        calls["input_dropout"] += 1
    return model


def residual_branches(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """(block, name of the child that ends its residual branch) for every block that declares
    ``residual_branch`` and every torchvision or timm ResNet block, in module order."""
    found = []
    for module in model.modules():
        declared = getattr(type(module), "residual_branch", None)
        if isinstance(declared, str) and isinstance(getattr(module, declared, None), nn.Module):
            found.append((module, declared))
        elif (type(module).__module__ in RESNET_MODULES
              and type(module).__name__ in RESNET_BLOCKS):
            found.append((module, RESNET_BLOCKS[type(module).__name__]))
    return found


def _plain_conv(layer: nn.Conv2d) -> bool:
    """A conv the factory can rebuild: square kernel, equal strides and paddings, zero
    padding, no groups or dilation (others keep their layer; the slot then counts fewer
    changes)."""
    return (layer.kernel_size[0] == layer.kernel_size[1] and layer.stride[0] == layer.stride[1]
            and isinstance(layer.padding, tuple) and layer.padding[0] == layer.padding[1]
            and layer.padding_mode == "zeros" and layer.groups == 1
            and layer.dilation == (1, 1))

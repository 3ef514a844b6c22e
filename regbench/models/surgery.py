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
  before the output layer (an activation module used twice gets it at both uses; targeted, at
  the uses whose feeding layers match: :class:`AtCalls`);
- ``input_dropout``: dropout on the model's input;
- ``residual_drop``: a drop layer at the end of each residual branch: of every module that
  declares ``residual_branch = "<child>"`` (regbench's residual blocks; a plugin's own blocks
  may declare it), and of torchvision's and timm's ResNet blocks.

A slot with a :class:`~regbench.models.targets.Target` in ``factory.targets`` (a
regularizer's ``modules:`` globs and ``types:`` class names) changes only the places where one
module the change concerns matches every criterion given: the layer replaced (``linear``,
``conv``, ``output``), the hidden layer a norm follows (``norm``), for each call of an
activation module the activation or a hidden linear/conv layer feeding that call
(``dropout``), the residual block or its branch's last child (``residual_drop``).
``input_dropout`` has no place to target. A glob or type that matches no place the
regularizer's slots could change is refused (:class:`~regbench.models.targets.Unmatched`,
naming the closest paths or types; regbench/models/targets.py).

Every slot a recipe sets must change the model: :func:`operate` counts each change per slot,
and a slot used nowhere (a ``linear`` model with dropout, a plugin that applies its
activations as functions) is refused before training by the caller. Each module surgery adds
carries a :class:`Placement` (the path of the layer it went to, by the plain model's
``named_modules()`` names), which :func:`placements` reads back from the built model, wrapped
or not: ``regbench validate`` lists them.
"""
from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Callable, Optional

import torch
from torch import nn

from regbench.models.targets import Anchor, check_targets

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
PLACED = "surgery_placement"             # the attribute holding an added module's Placement
OUTPUT_NO_DROPOUT = ("the output layer: dropout goes after hidden activations only; for dropout "
                     "on the output layer's inputs (timm's drop_rate) build it into a plugin "
                     "model")


@dataclasses.dataclass(frozen=True)
class Placement:
    """One change surgery made: ``path`` is the layer it went to, named as in the plain
    model's ``named_modules()`` ("" for the model's inputs), ``change`` what happened there."""

    slot: str
    path: str
    change: str
    matched: tuple[str, ...] = ()        # the paths its slot's Target matched (none: untargeted)

    def __str__(self) -> str:
        text = f"{self.path} → {self.change}" if self.path else self.change
        return text + (f" (matched {', '.join(self.matched)})" if self.matched else "")


def placements(model: nn.Module) -> list[Placement]:
    """The changes surgery made to ``model``, in module order."""
    found = (getattr(module, PLACED, None) for module in model.modules())
    return [placement for placement in found if isinstance(placement, Placement)]


def set_slots(before, after) -> list[str]:
    """The factory slots a ``build`` hook changed."""
    return [slot for slot in SLOTS if getattr(before, slot) is not getattr(after, slot)]


def forward_calls(model: nn.Module, input_shape: tuple[int, ...]
                  ) -> Optional[list[nn.Module]]:
    """Every module call of an eval forward of two zero inputs, in order, repeats included;
    None where the model cannot take zeros (e.g. token ids)."""
    calls: list[nn.Module] = []
    handles = [module.register_forward_pre_hook(lambda m, args: calls.append(m))
               for module in model.modules()]
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(2, *input_shape))
    except Exception:  # noqa: BLE001  (any model-specific failure: fall back, runs will tell)
        return None
    finally:
        for handle in handles:
            handle.remove()
        model.train(training)
    return calls


def _call_order(model: nn.Module, calls: Optional[list[nn.Module]]) -> list[nn.Module]:
    """The model's modules in the order ``calls`` first calls them, after those it never
    calls; registration order where the forward failed."""
    if calls is None:
        return list(model.modules())
    order: dict[int, nn.Module] = {}
    for module in calls:
        order.setdefault(id(module), module)
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


def _plan(order: list[nn.Module], sequence: Optional[list[nn.Module]]):
    """(output layer, hidden weight layers, activations): each activation module first called
    after a hidden layer and before the output layer, with the hidden layer feeding that first
    call (its kind decides the dropout's) and, per call of the module in ``sequence`` (the
    forward's calls; None: one call each), the hidden layers called since the previous
    activation call: what that call's input was computed by (conv2 and the downsample conv
    for the ReLU after a ResNet block's sum; an activation right after another, the other's)."""
    linears = [i for i, m in enumerate(order) if type(m) is nn.Linear]
    output_index = linears[-1] if linears else None
    output = order[output_index] if output_index is not None else None
    hidden = [m for i, m in enumerate(order) if _kind(m) and i != output_index]
    firsts, feeding = [], None
    for index, module in enumerate(order):
        if _kind(module) and index != output_index:
            feeding = module
        elif (isinstance(module, ACTIVATION_TYPES) and feeding is not None
              and (output_index is None or index < output_index)):
            firsts.append((module, feeding))
    if sequence is None:                 # the forward failed: one call each, as ordered
        return output, hidden, [(module, feeding, [(feeding,)]) for module, feeding in firsts]
    fed: dict[int, list[tuple[nn.Module, ...]]] = {}
    since: list[nn.Module] = []
    last: tuple[nn.Module, ...] = ()     # an activation right after another has its feeders
    for module in sequence:
        if module is output:
            since, last = [], ()
        elif _kind(module):
            since.append(module)
        elif isinstance(module, ACTIVATION_TYPES):
            last = tuple(since) or last
            fed.setdefault(id(module), []).append(last)
            since = []
    # an activation the forward never calls (listed first, by registration) keeps one call
    return output, hidden, [(module, feeding, fed.get(id(module), [(feeding,)]))
                            for module, feeding in firsts]


class AtCalls(nn.Sequential):
    """An activation module that one forward calls ``every`` times, then one of ``layers``
    after some of its calls: ``after`` maps a call's number (from 0) to the layer's position
    here (from 1). A target matched the layers feeding some calls of a shared activation and
    not the others, or the calls are fed by layers of different kinds (a conv's output takes
    DropBlock, a linear layer's none). It counts its calls, so each forward must make all
    ``every`` of them, as the forward that counted them did (a model whose forward calls the
    module a varying number of times is not one surgery can tell apart)."""

    def __init__(self, activation: nn.Module, layers: list[nn.Module], after: dict[int, int],
                 every: int):
        super().__init__(activation, *layers)
        self.after, self.every, self.count = dict(after), every, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self[0](x)
        call, self.count = self.count, (self.count + 1) % self.every
        which = self.after.get(call)
        return self[which](x) if which else x

    def extra_repr(self) -> str:
        return f"after calls {_numbers(frozenset(self.after))} of {self.every}"


def _feeding_kind(spot: list[Anchor], first: nn.Module) -> Optional[str]:
    """The kind of layer whose output one call of an activation takes: the last weight layer
    of that call's feeders (``spot`` ends with the activation), else the first call's."""
    feeders = [module for _, module in spot[:-1] if _kind(module)]
    return _kind(feeders[-1]) if feeders else _kind(first)


def _numbers(calls: frozenset[int]) -> str:
    return ", ".join(str(call + 1) for call in sorted(calls))


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
    that takes effect, and mark each module it adds with its :class:`Placement`. Returns the
    model (wrapped when the inputs get dropout).

    A replaced layer that the model's forward never calls (its weight read directly, as
    Swin's attention reads ``qkv.weight``) changes nothing: one forward on zeros finds those,
    and they are neither counted nor marked, so a slot left with no effective change is
    refused."""
    made: list[tuple[str, nn.Module]] = []
    factory = _recording(factory, slots, made)
    forward = forward_calls(model, input_shape)
    placed: list[tuple[nn.Module, Placement]] = []
    changed = _operate(model, factory, slots, calls, order=_call_order(model, forward),
                       sequence=forward, placed=placed)
    missed = unreached(changed, made, input_shape)
    for slot, _ in missed:
        calls[slot] -= 1
    missed_ids = {id(module) for _, module in missed}
    for module, placement in placed:
        if id(module) not in missed_ids:
            setattr(module, PLACED, placement)
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
              input_shape: tuple[int, ...]) -> list[tuple[str, nn.Module]]:
    """The made modules (with their slots) that an eval-mode forward of two zero inputs never
    calls."""
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
    return [(slot, module) for slot, module in made if id(module) not in reached]


def _operate(model: nn.Module, factory, slots: set[str], calls: Counter,
             order: list[nn.Module], sequence: Optional[list[nn.Module]],
             placed: list[tuple[nn.Module, Placement]]) -> nn.Module:
    """The surgery itself; ``sequence`` is every module call of one forward (None: the
    forward failed), and ``placed`` receives every module added, with where it went."""
    output, hidden, activations = _plan(order, sequence)
    parents = _parents(model)
    paths = {id(module): path for path, module in model.named_modules()}   # before any change
    blocks = residual_branches(model) if "residual_drop" in slots else []

    def at(*modules: nn.Module) -> list[Anchor]:
        return [(paths[id(module)], module) for module in modules]

    # every place a slot could change, as the modules each one concerns: for dropout, each
    # call of an activation, with the hidden layers feeding that call
    calls_of = {id(activation): [at(*feeders, activation) for feeders in fed]
                for activation, _, fed in activations}
    places = {
        "dropout": [spot for spots in calls_of.values() for spot in spots],
        "linear": [at(layer) for layer in hidden if isinstance(layer, nn.Linear)],
        "conv": [at(layer) for layer in hidden if isinstance(layer, nn.Conv2d)],
        "norm": [at(layer) for layer in hidden],
        "output": [at(output)] if output is not None else [],
        "residual_drop": [at(block, getattr(block, name)) for block, name in blocks],
    }
    targets = {slot: target for slot, target in factory.targets.items()
               if slot in slots and slot in places}
    check_targets(targets, places, {"dropout": {paths[id(output)]: OUTPUT_NO_DROPOUT}
                                    if output is not None else {}})

    def where(slot: str, anchors: list[Anchor]) -> Optional[tuple[str, ...]]:
        """The paths a slot's target matched among ``anchors`` (() untargeted); None: the
        slot changes nothing here."""
        if slot not in slots:
            return None
        if slot not in targets:
            return ()
        return targets[slot].matching(anchors) or None

    def place(module: nn.Module, slot: str, path: str, change: str,
              matched: tuple[str, ...]) -> None:
        placed.append((module, Placement(slot, path, change, matched)))

    # dropout before layers are wrapped: activations stay in place
    for activation, layer, _ in activations:
        # a module applied more than once (one ReLU shared by several layers) gets dropout
        # after each call that its target matches: by that call's feeding layers
        spots = calls_of[id(activation)]
        hits = {call: found for call, spot in enumerate(spots)
                if (found := where("dropout", spot)) is not None}
        if not hits or id(activation) not in parents:
            continue
        # each call's dropout is for the kind of layer feeding that call (one ReLU after a
        # conv and after a linear layer: DropBlock or channel dropout after the conv's only)
        kinds = {call: _feeding_kind(spots[call], layer) for call in hits}
        made = {kind: factory.dropout(kind) for kind in dict.fromkeys(kinds.values())}
        hits = {call: found for call, found in hits.items() if made[kinds[call]] is not None}
        if not hits:                    # the slot puts none after these kinds of layer
            continue
        used = [made[kind] for kind in dict.fromkeys(kinds[call] for call in hits)]
        parent, name = parents[id(activation)]
        times = len(spots)
        if len(hits) == times and len(used) == 1:
            setattr(parent, name, nn.Sequential(activation, used[0]))
        else:
            setattr(parent, name, AtCalls(activation, used, {
                call: used.index(made[kinds[call]]) + 1 for call in hits}, times))
        for dropout in used:
            mine = frozenset(call for call in hits if made[kinds[call]] is dropout)
            change = f"dropout after {type(activation).__name__}"
            change += f" (at each of its {times} calls)" if len(mine) == times > 1 else \
                f" (at call{'s' * (len(mine) > 1)} {_numbers(mine)} of its {times} calls)" \
                if len(mine) < times else ""
            calls["dropout"] += 1
            matched = tuple(dict.fromkeys(path for call in sorted(mine) for path in hits[call]))
            place(dropout, "dropout", paths[id(activation)], change, matched)
    for layer in hidden:
        if id(layer) not in parents:
            continue
        parent, name = parents[id(layer)]
        replaced, anchors = layer, at(layer)
        if isinstance(layer, nn.Linear) and (matched := where("linear", anchors)) is not None:
            replaced = _replace(layer, factory.linear(layer.in_features, layer.out_features,
                                                      **_bias(layer)))
            calls["linear"] += 1
            place(replaced, "linear", paths[id(layer)], _replaced(layer, replaced), matched)
        elif (isinstance(layer, nn.Conv2d) and _plain_conv(layer)
              and (matched := where("conv", anchors)) is not None):
            replaced = _replace(layer, factory.conv(layer.in_channels, layer.out_channels,
                                                    layer.kernel_size[0], layer.stride[0],
                                                    layer.padding[0], **_bias(layer)))
            calls["conv"] += 1
            place(replaced, "conv", paths[id(layer)], _replaced(layer, replaced), matched)
        matched = where("norm", anchors)
        norm = factory.norm(layer.out_features if isinstance(layer, nn.Linear)
                            else layer.out_channels, _kind(layer)) if matched is not None else None
        if norm is not None:
            replaced = nn.Sequential(replaced, norm)
            calls["norm"] += 1
            place(norm, "norm", paths[id(layer)],
                  f"{type(norm).__name__} after {type(layer).__name__}", matched)
        if replaced is not layer:
            setattr(parent, name, replaced)
    if places["output"] and id(output) in parents \
            and (matched := where("output", places["output"][0])) is not None:
        parent, name = parents[id(output)]
        replaced = _replace(output, factory.output(output.in_features, output.out_features,
                                                   **_bias(output)))
        setattr(parent, name, replaced)
        calls["output"] += 1
        place(replaced, "output", paths[id(output)], "output " + _replaced(output, replaced),
              matched)
    for depth, ((block, name), anchors) in enumerate(zip(blocks, places["residual_drop"]), 1):
        matched = where("residual_drop", anchors)
        if matched is None:
            continue
        # the branch's last layer feeds the sum x + f(x): dropping its output drops f; its
        # depth l/L counts every block of the model, targeted or not
        drop = factory.residual_drop(depth / len(blocks))
        setattr(block, name, nn.Sequential(getattr(block, name), drop))
        calls["residual_drop"] += 1
        # named from the block: the branch's end itself may be wrapped by now (a norm)
        place(drop, "residual_drop", f"{paths[id(block)]}.{name}".lstrip("."),
              f"{type(drop).__name__} at the end of the residual branch (block {depth} of "
              f"{len(blocks)})", matched)
    if "input_dropout" in slots:
        dropout = factory.input_dropout()
        model = nn.Sequential(dropout, model)
        calls["input_dropout"] += 1
        place(dropout, "input_dropout", "", "dropout on the model's inputs", ())
    return model


def _replaced(old: nn.Module, new: nn.Module) -> str:
    return f"{type(old).__name__} replaced by {type(new).__name__}"


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

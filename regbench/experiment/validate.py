"""What `regbench validate` reports: data, model, and per recipe the hooks, where each change
to the model went, the penalized parameters and each regularizer's effective coefficient; and
warnings where a recipe's layers meet the model's own badly (a second norm on a norm, dropout
feeding a BatchNorm)."""
from __future__ import annotations

from collections import Counter
from typing import Any, Optional

import torch
from torch import nn

from regbench.data import DATASETS, DataBundle, data_spec, forget_loaded, load_bundle
from regbench.engine.train import build_run_model, penalized_names
from regbench.experiment.config import LoadedConfig
from regbench.experiment.plan import Plan
from regbench.experiment.search import search_space
from regbench.models.surgery import (
    ACTIVATION_TYPES,
    PLACED,
    SLOTS,
    WHAT,
    Placement,
    forward_calls,
    placements,
)
from regbench.regularizers.base import hook_points

SHOWN = 8   # placements listed under each change; the rest are counted
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
NORMS = BATCH_NORMS + (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.InstanceNorm1d,
                       nn.InstanceNorm2d, nn.InstanceNorm3d)
DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
            nn.FeatureAlphaDropout)
DISHARMONY = ('Li et al. 2019, "Understanding the Disharmony between Dropout and Batch '
              'Normalization"')


def describe_search(loaded: LoadedConfig, experiment: dict[str, Any]) -> list[str]:
    """What `regbench tune` would search for each recipe (a bad search: is an error here)."""
    return [f"search (regbench tune): {recipe}: {'; '.join(p.describe() for p in params)}"
            for recipe, params in search_space(loaded, experiment).items()]


def describe_plan(plan: Plan) -> tuple[list[str], list[str]]:
    """Load the data and build every recipe's model (no training) to describe the plan:
    (lines, warnings).

    Nothing is downloaded: where the files are still to be downloaded (``download: true``),
    the models are built for the shapes the dataset declares, and the coefficients that
    depend on the training-set size are left to the first run."""
    experiment = plan.experiment
    config = experiment["dataset"]
    lines = [f"experiment {experiment['name']}: {len(plan.runs)} runs, {plan.total_epochs} epochs"]
    pending = DATASETS.get(config["name"]).download_pending
    missing = pending(config) if pending is not None else None
    if missing:
        data = shapes_only(data_spec(config))
        lines.append(f"dataset {config['name']} ({data.task}): {missing}: they will be "
                     f"downloaded on the first run; input {data.input_shape}, outputs "
                     f"{data.output_dim}")
    else:
        forget_loaded()
        data = load_bundle(config, experiment["train"]["train_eval_samples"])
        lines.append(f"dataset {config['name']} ({data.task}): train {data.meta['n_train']}, "
                     f"val {data.meta['n_val']}, test {data.meta['n_test']}, input "
                     f"{data.input_shape}, outputs {data.output_dim}")
    lines.append(f"model {experiment['model']['name']}")
    warnings: list[str] = []
    seen = set()
    for spec in plan.runs:
        if spec["point_id"] in seen:
            continue
        seen.add(spec["point_id"])
        model, regs, ctx = build_run_model(spec, data, torch.device("cpu"))
        names = ", ".join(f"{r.name} [{', '.join(hook_points(type(r)))}]" for r in regs) or "none"
        lines.append(f"recipe {spec['point_id']}: regularizers {names}; "
                     f"{sum(p.numel() for p in model.parameters())} parameters")
        placed = placements(model)
        lines += placement_lines(ctx.changes, placed)   # what each build hook changed, where
        for warning in placement_warnings(model, ctx.changes, placed, data.input_shape):
            warning = f"recipe '{spec['recipe']}': {warning}"    # once for a sweep's points
            if warning not in warnings:
                warnings.append(warning)
        if any(r.penalizes for r in regs):
            penalized = penalized_names(model, regs)
            lines.append(f"  penalized: {len(penalized)} weight tensors, {', '.join(penalized)} "
                         "(norm parameters never; biases only with include_bias)")
        for reg in regs if not missing else []:   # coefficients need the real n
            detail = reg.describe()
            if detail:
                lines.append(f"  {detail}")
    return lines, warnings


def _slots(change: str) -> list[str]:
    """The surgery slots a change line (engine.train.model_changes, "dropout: 2 dropout
    layers after hidden activations") reports: it is worded from surgery's WHAT."""
    return [slot for slot in SLOTS if WHAT[slot] in change]


def placement_lines(changes: list[str], placed: list[Placement]) -> list[str]:
    """Each regularizer's change line (with its target: "…, where modules 'fc*' match"), then
    the layer each of its changes went to and the paths its target matched there (the first
    SHOWN, then how many more: a resnet18 gets 20 norms)."""
    lines = []
    for change in changes:
        lines.append(f"  {change}")
        here = [p for p in placed if p.slot in _slots(change)]
        shown = here if len(here) <= SHOWN + 1 else here[:SHOWN]   # "… and 1 more" saves none
        lines += [f"    {p}" for p in shown]
        if len(shown) < len(here):
            lines.append(f"    … and {len(here) - len(shown)} more")
    return lines


def placement_warnings(model: nn.Module, changes: list[str], placed: list[Placement],
                       input_shape: tuple[int, ...]) -> list[str]:
    """Where the recipe's layers meet the model's own badly: a norm regularizer on a model
    with its own norm layers, and dropout feeding a BatchNorm (the variance shift)."""
    if not placed:              # nothing of the recipe's to meet the model's layers
        return []
    owners = {slot: change.partition(":")[0] for change in changes for slot in _slots(change)}
    calls = forward_calls(model, input_shape)
    # the calls that compute something (containers only call their children), in order;
    # a norm or dropout with children of its own (timm's BatchNormAct2d) counts itself
    steps = [m for m in calls or [] if isinstance(m, NORMS + DROPOUTS + ACTIVATION_TYPES)
             or next(m.children(), None) is None]
    names = {id(module): name for name, module in model.named_modules()}
    warnings = [_second_norm(model, owners.get("norm", "the recipe"), placed, steps, names),
                _dropout_before_batchnorm(steps, names)]
    return [warning for warning in warnings if warning]


def _described(module: nn.Module, names: dict[int, str]) -> str:
    """A module by the change that added it, or by its name in the model."""
    placement = getattr(module, PLACED, None)
    if not isinstance(placement, Placement):
        return names.get(id(module), type(module).__name__)
    what = "dropout" if isinstance(module, DROPOUTS) else type(module).__name__
    return f"the {what} after {placement.path}" if placement.path else f"the input {what}"


def _second_norm(model: nn.Module, owner: str, placed: list[Placement],
                 steps: list[nn.Module], names: dict[int, str]) -> Optional[str]:
    """A norm regularizer on a model that has norm layers of its own."""
    added = [p for p in placed if p.slot == "norm"]
    own = [m for m in model.modules() if isinstance(m, NORMS) and not hasattr(m, PLACED)]
    if not added or not own:
        return None
    stacked: dict[int, tuple[nn.Module, nn.Module]] = {}    # an added norm -> the own one next
    for norm, after in zip(steps, steps[1:]):
        if (isinstance(norm, NORMS) and hasattr(norm, PLACED) and isinstance(after, NORMS)
                and not hasattr(after, PLACED)):
            stacked.setdefault(id(norm), (norm, after))
    where = ""
    if stacked:
        norm, after = next(iter(stacked.values()))
        where = (f" ({len(stacked)} of them right before one of the model's own, e.g. "
                 f"{getattr(norm, PLACED).path} → {type(norm).__name__} → "
                 f"{_described(after, names)})")
    counts = " and ".join(f"{n} {kind}" for kind, n in Counter(type(m).__name__
                                                               for m in own).items())
    return (f"the model already has {counts} layers of its own; {owner} adds another norm "
            f"after each of its {len(added)} hidden linear/conv layers{where}, so this recipe "
            "measures a second norm on top of the model's, not normalisation against none")


def _dropout_before_batchnorm(steps: list[nn.Module], names: dict[int, str]) -> Optional[str]:
    """Dropout whose output reaches a BatchNorm with no activation or other norm between,
    where one of the two is the recipe's and the other the model's own (the recipe's dropout
    with its batchnorm is warned about by the config's rules already: Dropout.conflicts_with)."""
    found: dict[int, tuple[nn.Module, nn.Module]] = {}
    for index, dropout in enumerate(steps):
        if not isinstance(dropout, DROPOUTS) or id(dropout) in found:
            continue
        for later in steps[index + 1:]:
            if isinstance(later, BATCH_NORMS):
                if hasattr(dropout, PLACED) != hasattr(later, PLACED):
                    found[id(dropout)] = (dropout, later)
                break
            if isinstance(later, NORMS + DROPOUTS + ACTIVATION_TYPES):
                break
    if not found:
        return None
    dropout, norm = next(iter(found.values()))
    places = "1 place" if len(found) == 1 else f"{len(found)} places"
    return (f"dropout feeds a BatchNorm with no activation between in {places} (e.g. "
            f"{_described(dropout, names)} → {_described(norm, names)}): BatchNorm then "
            "normalises with a variance in evaluation other than the one dropout gave it in "
            f"training, the variance shift of {DISHARMONY}, whose remedy is dropout after the "
            "last BatchNorm only")


def shapes_only(spec) -> DataBundle:
    """A bundle of one zero sample with the dataset's declared shapes: enough to build and
    describe the models before the files are downloaded, never trained on."""
    x = torch.zeros(1, *spec.input_shape)
    y = torch.zeros(1, dtype=torch.long)
    return DataBundle(task=spec.task, input_shape=tuple(spec.input_shape),
                      output_dim=spec.num_classes, x_train=x, y_train=y, x_val=x, y_val=y,
                      x_test=x, y_test=y, train_eval_index=torch.zeros(1, dtype=torch.long))

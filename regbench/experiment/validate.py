"""What `regbench validate` reports: data, model, and per recipe the hooks, the penalized
parameters and each regularizer's effective coefficient."""
from __future__ import annotations

from typing import Any

import torch

from regbench.data import DATASETS, DataBundle, data_spec, forget_loaded, load_bundle
from regbench.engine.train import build_run_model, penalized_names
from regbench.experiment.config import LoadedConfig
from regbench.experiment.plan import Plan
from regbench.experiment.search import search_space
from regbench.regularizers.base import hook_points


def describe_search(loaded: LoadedConfig, experiment: dict[str, Any]) -> list[str]:
    """What `regbench tune` would search for each recipe (a bad search: is an error here)."""
    return [f"search (regbench tune): {recipe}: {'; '.join(p.describe() for p in params)}"
            for recipe, params in search_space(loaded, experiment).items()]


def describe_plan(plan: Plan) -> list[str]:
    """Load the data and build every recipe's model (no training) to describe the plan.

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
    seen = set()
    for spec in plan.runs:
        if spec["point_id"] in seen:
            continue
        seen.add(spec["point_id"])
        model, regs, ctx = build_run_model(spec, data, torch.device("cpu"))
        names = ", ".join(f"{r.name} [{', '.join(hook_points(type(r)))}]" for r in regs) or "none"
        lines.append(f"recipe {spec['point_id']}: regularizers {names}; "
                     f"{sum(p.numel() for p in model.parameters())} parameters")
        lines += [f"  {change}" for change in ctx.changes]   # what each build hook changed
        if any(r.penalizes for r in regs):
            penalized = penalized_names(model, regs)
            lines.append(f"  penalized: {len(penalized)} weight tensors, {', '.join(penalized)} "
                         "(norm parameters never; biases only with include_bias)")
        for reg in regs if not missing else []:   # coefficients need the real n
            detail = reg.describe()
            if detail:
                lines.append(f"  {detail}")
    return lines


def shapes_only(spec) -> DataBundle:
    """A bundle of one zero sample with the dataset's declared shapes: enough to build and
    describe the models before the files are downloaded, never trained on."""
    x = torch.zeros(1, *spec.input_shape)
    y = torch.zeros(1, dtype=torch.long)
    return DataBundle(task=spec.task, input_shape=tuple(spec.input_shape),
                      output_dim=spec.num_classes, x_train=x, y_train=y, x_val=x, y_val=y,
                      x_test=x, y_test=y, train_eval_index=torch.zeros(1, dtype=torch.long))

"""What `regbench validate` reports: data, model, and per recipe the hooks, the penalized
parameters and each regularizer's effective coefficient."""
from __future__ import annotations

import torch

from regbench.data import forget_loaded, load_bundle
from regbench.engine.train import build_run_model, penalized_names
from regbench.experiment.plan import Plan
from regbench.regularizers.base import hook_points


def describe_plan(plan: Plan) -> list[str]:
    """Load the data and build every recipe's model (no training) to describe the plan."""
    experiment = plan.experiment
    forget_loaded()
    data = load_bundle(experiment["dataset"], experiment["train"]["train_eval_samples"])
    lines = [f"experiment {experiment['name']}: {len(plan.runs)} runs, {plan.total_epochs} epochs",
             f"dataset {experiment['dataset']['name']} ({data.task}): train {data.meta['n_train']}, "
             f"val {data.meta['n_val']}, test {data.meta['n_test']}, input {data.input_shape}, "
             f"outputs {data.output_dim}",
             f"model {experiment['model']['name']}"]
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
        for reg in regs:
            detail = reg.describe()
            if detail:
                lines.append(f"  {detail}")
    return lines

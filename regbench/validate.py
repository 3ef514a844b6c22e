"""What `regbench validate` reports: data, model, and per recipe the hooks, the penalized
parameters and each regularizer's effective coefficient."""
from __future__ import annotations

from regbench.plan import Plan


def describe_plan(plan: Plan) -> list[str]:
    """Load the data and build every recipe's model (no training) to describe the plan."""
    import torch

    from regbench.data import load_bundle
    from regbench.models import LayerFactory, build_model, penalized_parameters
    from regbench.regularizers import REGULARIZERS, RunContext
    from regbench.train import make_optimizer

    experiment = plan.experiment
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
        ctx = RunContext(task=data.task, n_train=data.n_train, output_dim=data.output_dim,
                         input_shape=data.input_shape, device=torch.device("cpu"),
                         train=spec["train"])
        regs = [REGULARIZERS.get(name)(REGULARIZERS.get(name).Params.model_validate(params), ctx)
                for name, params in spec["regularizers"].items()]
        factory = LayerFactory()
        for reg in regs:
            reg.build(factory)
        model = build_model(spec["model"], data.input_shape, data.output_dim, factory)
        for reg in regs:
            model = reg.wrap(model)
        ctx.optimizer = make_optimizer(model.parameters(), spec["train"]["optimizer"])
        names = ", ".join(f"{r.name} [{', '.join(type(r).hooks())}]" for r in regs) or "none"
        lines.append(f"recipe {spec['point_id']}: regularizers {names}; "
                     f"{sum(p.numel() for p in model.parameters())} parameters")
        if any(r.penalizes for r in regs):
            penalized = [name for name, _ in penalized_parameters(model)]
            lines.append(f"  penalized: {', '.join(penalized)} (biases and norm parameters "
                         "excluded unless include_bias)")
        for reg in regs:
            detail = reg.describe()
            if detail:
                lines.append(f"  {detail}")
    return lines

"""One training run: build the model through the regularizers' hooks, train, measure.

The loop as the code runs it. ``build`` and ``wrap`` are called on every regularizer (the base
class's are no-ops); from the batch hook on, only the regularizers that override a hook are
called for it:

    torch.manual_seed(seed)
    factory = LayerFactory()
    for reg in regs: reg.build(factory)                  # <BUILD>   choose layer factories
    model = build_model(config, factory)                 #   plain torch model + module surgery
    for reg in regs: model = reg.wrap(model)             # <BUILD>   wrap / collect weights
    optimizer, scheduler = make_optimizer(model), make_scheduler(optimizer)
    (resumed: all of the above as the checkpoint left it, global RNG included; engine.checkpoint)
    for epoch in (last checkpointed epoch or 0) + 1..epochs:
        for idx in randperm(n).split(block_rows):        # whole batches: ~1k rows (CPU), 8k (GPU)
            x, y = X[idx], Y[idx]                        # tensors already on the device
            for reg in regs: x, y = reg.batches(x, y, batch_size)  # <BATCH> augment, mix, smooth
            for x, y in batches of batch_size rows of x, y:
                loss = objective(x, y)                   #   logged: objective, penalty
                    data = data_loss(output := model(x), y)
                    penalty = Σ reg.penalty(model)       # <PENALTY> l1, l2, KL terms
                    penalty += Σ reg.output_penalty(output, y)   # <OUTPUT_PENALTY> confidence
                    if any reg has consistency_penalty:  #   the batch again, fresh masks:
                        data = (data + data_loss(again := model(x), y)) / 2
                        penalty += Σ reg.consistency_penalty(output, again, y)  # <CONSISTENCY>
                    for reg: penalty += reg.view_penalty(output, [model(v) for v in
                                                        reg.views(x)], y)  # <VIEW_PENALTY>
                    return data + penalty                #   (R-Drop's KL, AugMix's JS)
                loss.backward()
                if any reg has perturb:                  #   two passes per step:
                    undo = [reg.perturb(model) for reg]  # <PERTURB> SAM: w <- w + ε(∇loss)
                    objective(x, y).backward()           #   the gradient at w + ε
                    for restore in reversed(undo): restore()  # w back; that gradient is stepped
                for reg in regs: reg.after_backward(model)   # <AFTER_BACKWARD> clip gradients
                optimizer.step()
                for reg in regs: reg.after_step(model)   # <AFTER_STEP> decay, max-norm, averages
        evaluated = first reg.eval_weights(model, X) or model  # <EVAL_WEIGHTS> ema, swa
        row = measure(train subset, val) in eval mode    #   of evaluated; + epoch_metrics(model)
        if diverged(row): status = diverged; stop        #   objective, train or val loss not finite
        for reg in regs: reg.epoch_end(epoch, row, model) # <EPOCH_END> early stopping
        step_scheduler(scheduler, row)                   # the next epoch's learning rate
        if any(reg.should_stop): stop
        checkpoint the trainer when due                  #   train.checkpoint_every
    (Ctrl-C anywhere above: status = interrupted; an epoch callback's RunStopped: its status,
     e.g. a tuning trial pruned)
    if status == completed:
        for reg in regs: chosen = reg.fit_end(model)     #   restore the best epoch
        test metrics from the chosen epoch's weights     #   (none for any other status,
                                                         #   nor for a tuning trial)
    test metrics, weight statistics, model.pt: of evaluated (after fit_end), as every row
"""
from __future__ import annotations

import dataclasses
import io
import math
import time
from collections import Counter
from typing import Any, Callable, Optional

import torch
from torch import nn

from regbench.data import DataBundle
from regbench.engine import optim
from regbench.engine.checkpoint import Checkpoints
from regbench.engine.metrics import (
    classification_loss,
    classification_metrics,
    regression_loss,
    regression_metrics,
)
from regbench.engine.result import RunResult, RunStopped
from regbench.engine.schedules import make_optimizer, make_scheduler, step_scheduler
from regbench.errors import RegbenchError
from regbench.models import LayerFactory, build_model, penalized_parameters, place
from regbench.models.surgery import WHAT, set_slots
from regbench.models.targets import Target, Unmatched
from regbench.regularizers import REGULARIZERS, Regularizer, RunContext, batch_order
from regbench.regularizers._placement import target_of
from regbench.vocabulary import NEAR_ZERO, RunSpec, metric_names

EVAL_CHUNK = {"cpu": 512, "cuda": 8192}  # samples per forward when measuring: cache-sized on
                                         # the CPU (a LeNet pass over 12k samples: 0.40 s at 512,
                                         # 0.97 s at 8192), large on a GPU
WEIGHT_SAMPLE = 50_000         # weights kept per run for the weight histograms
GRAD_NORM_EVERY = 8            # measure the global gradient norm every this many steps
# Training rows gathered and transformed by the batch hooks at once, and the most bytes of
# gathered inputs that makes (the hooks' temporaries come to about 3× that): cache-sized on the
# CPU (warping MNIST-shaped rows cost 0.18–0.21 ms per 128 rows in blocks of 1024 rows,
# 0.22–0.42 in blocks of 2048–4096), large on a GPU
BLOCK = {"cpu": (1024, 4 * 2**20), "cuda": (8192, 256 * 2**20)}


def resolve_device(name: str) -> torch.device:
    """``train.device`` as a torch device: ``auto`` is the GPU when torch sees one, else the
    CPU. Every loop, solo or fused, and fusing's planning resolve it here."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_run_model(spec: RunSpec, data: DataBundle, device: torch.device
                    ) -> tuple[nn.Module, list[Regularizer], RunContext]:
    """The run's regularizers and its model, built through their ``build`` hooks (seeded)."""
    torch.manual_seed(spec["seed"])
    ctx = RunContext(task=data.task, n_train=data.n_train, output_dim=data.output_dim,
                     input_shape=data.input_shape, device=device, train=spec["train"],
                     run_id=spec["run_id"])
    regularizers: list[Regularizer] = []
    for name, params in spec["regularizers"].items():
        cls = REGULARIZERS.get(name)
        regularizers.append(cls(cls.Params.model_validate(params), ctx))
    factory = LayerFactory()
    owners: dict[str, str] = {}               # factory slot -> the regularizer that set it
    for reg in regularizers:
        before = dataclasses.replace(factory)
        reg.build(factory)
        slots = set_slots(before, factory)
        owners.update(dict.fromkeys(slots, reg.name))
        target = target_of(reg)               # its modules:/types:, on every slot it set
        if target is not None:
            factory.targets.update(dict.fromkeys(slots, target))
    calls: Counter = Counter()                # surgery's effective changes per slot
    try:
        model = build_model(spec["model"], data.input_shape, data.output_dim, factory, calls)
    except Unmatched as exc:                  # a glob or type that matches no place: at its
        raise exc.under("recipes", spec["recipe"]) from None   # key, located by the caller
    ctx.changes = model_changes(spec, owners, calls, regularizers, factory.targets)
    model = model.to(device)
    for reg in regularizers:
        model = reg.wrap(model)
    return place(model, device), regularizers, ctx


SLOT_NEEDS = {      # what a model must have for a slot to change it
    "dropout": "an activation module (nn.ReLU, nn.Tanh, …) after a hidden layer to put dropout "
               "after (activations applied as functions, like F.relu, leave none)",
    "norm": "a hidden nn.Linear or nn.Conv2d layer (one before the output layer) to put a norm "
            "after",
    "weights": "an nn.Linear or nn.Conv2d layer to replace",
    "input_dropout": "inputs",
    "residual_drop": "residual blocks: regbench's resnet and resmlp, torchvision's or timm's "
                     "ResNet family (resnet*, resnext*, wide_resnet*), or modules that declare "
                     "residual_branch = '<child>' (the child whose output joins the shortcut)",
}


def _group(slot: str) -> str:
    return "weights" if slot in ("linear", "conv", "output") else slot


def model_changes(spec: RunSpec, owners: dict[str, str], calls: Counter,
                  regularizers: list[Regularizer],
                  targets: Optional[dict[str, Target]] = None) -> list[str]:
    """What each regularizer's build hook changed in the model, e.g. "dropout: 2 dropout
    layers after hidden activations" (targeted: "…, where modules fc* match"). A regularizer
    that changed nothing where it should (a slot group used nowhere, or nowhere its target
    matches) is refused: a silent no-op would compare nothing. What it needs is its
    ``model_needs`` (an instance may narrow it by its parameters) or the slot's."""
    changes = []
    by_name = {reg.name: reg for reg in regularizers}
    targets = targets or {}
    by_reg: dict[str, dict[str, list[str]]] = {}
    for slot, name in owners.items():
        by_reg.setdefault(name, {}).setdefault(_group(slot), []).append(slot)
    for name, groups in by_reg.items():
        target = next((targets[slot] for group in groups.values() for slot in group
                       if slot in targets), None)
        where = f" where {target} match" if target is not None else ""
        for group, slots in groups.items():
            if not any(calls[slot] for slot in slots):
                needs = by_name[name].model_needs or SLOT_NEEDS[group]
                raise RegbenchError(
                    f"{name} cannot apply to model {spec['model']['name']}{where}: it needs "
                    f"{needs}, and the model has none{' there' if where else ''}; remove "
                    f"{name} from recipe '{spec['recipe']}' or change the model")
        done = [f"{calls[slot]} {WHAT[slot]}" for group in groups.values() for slot in group
                if calls[slot]]
        changes.append(f"{name}: {', '.join(done)}{where and ',' + where}")
    return changes


def penalized_names(model: nn.Module, regularizers: list[Regularizer]) -> list[str]:
    """Parameters that some regularizer of the run penalizes (none for a plain recipe)."""
    names: list[str] = []
    for reg in regularizers:
        if reg.penalizes:
            names += [name for name, _ in reg.penalized(model) if name not in names]
    return names


def split_metrics(data: DataBundle, output: torch.Tensor, y: torch.Tensor
                  ) -> dict[str, torch.Tensor]:
    """The task's metrics of one split's outputs ([N, out], or [M, N, out] for M members)."""
    if data.task == "classification":
        return classification_metrics(output, y, data.output_dim)
    return regression_metrics(output, y)


# An epoch's row of metrics.csv, built by the solo and the fused loop alike from these:
TRAIN_COLUMNS = ("objective", "penalty", "grad_norm")    # the training pass's means, this order
FINITE_COLUMNS = ("objective", "train_loss", "val_loss")  # one not finite: the run diverged


def split_columns(data: DataBundle, train_eval: tuple[torch.Tensor, torch.Tensor],
                  predict: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, torch.Tensor]:
    """The measured metrics columns, train_<metric> (the fixed train subset) then
    val_<metric>, from ``predict``'s outputs: [N, out] (0-dim columns), or [M, N, out] for M
    members ([M] columns)."""
    columns = {}
    for split, (x, y) in {"train": train_eval, "val": (data.x_val, data.y_val)}.items():
        for key, value in split_metrics(data, predict(x), y).items():
            columns[f"{split}_{key}"] = value
    return columns


def epoch_row(epoch: int, seconds: float, lr: float, trained: dict[str, float],
              measured: dict[str, float]) -> dict[str, float]:
    """One row of metrics.csv, in column order: epoch, its seconds, the learning rate it
    trained with, the training means (``TRAIN_COLUMNS``), then the measured columns
    (``split_columns``, weight statistics, the regularizers' own)."""
    return {"epoch": epoch, "seconds": seconds, "lr": lr, **trained, **measured}


def diverged(row: dict[str, float]) -> bool:
    """Whether an epoch's row ends its run as ``diverged``: its objective, train loss or val
    loss is NaN or infinite."""
    return not all(math.isfinite(row[key]) for key in FINITE_COLUMNS)


def gradient_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """‖g‖ over every gradient, summed in the order the fused loop sums its members' (each
    tensor's squares, then across tensors): a member's grad_norm column equals its solo run's."""
    return sum(g.flatten().pow(2).sum() for g in grads).sqrt()


def weight_statistics(weights: list[torch.Tensor], device: torch.device,
                      members: Optional[int] = None) -> dict[str, torch.Tensor]:
    """The norm of all the penalized weights together and their share near zero: 0-dim, or
    with ``members``, [M] from weights stacked along a leading member axis (fused training)."""
    lead = () if members is None else (members,)
    if not weights:
        zero = torch.zeros(lead, device=device)
        return {"weight_norm": zero, "sparsity": zero}
    flat = [w.flatten(len(lead)) for w in weights]
    squares = sum(w.pow(2).sum(-1) for w in flat)
    small = sum((w.abs() < NEAR_ZERO).sum(-1) for w in flat)
    return {"weight_norm": squares.sqrt(), "sparsity": small / sum(w.shape[-1] for w in flat)}


class Trainer:
    """Holds one run's model, optimizer and regularizers; ``fit`` trains it. The reference
    loop: a member of a fused group (regbench.engine.fused) must reproduce it."""

    def __init__(self, spec: RunSpec, data: DataBundle, device: torch.device):
        self.spec, self.data, self.device = spec, data, device
        self.train_cfg = spec["train"]
        if device.type == "cuda":  # same config and seed on the same GPU => the same numbers
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
        self.model, self.regularizers, self.ctx = build_run_model(spec, data, device)
        self.optimizer = make_optimizer(self.model.parameters(), self.train_cfg["optimizer"])
        self.ctx.optimizer = self.optimizer
        self.scheduler = make_scheduler(self.optimizer, self.train_cfg.get("scheduler"),
                                        self.train_cfg["epochs"])
        self.hooks = {hook: [r for r in self.regularizers if r.overrides(hook)]
                      for hook in ("batch", "penalty", "after_backward", "after_step",
                                   "epoch_end", "fit_end", "epoch_metrics")}
        self.hooks["batch"] = batch_order(self.hooks["batch"])   # BATCH_STAGES, not key order
        self.own_columns: dict[str, None] = {}     # regularizers' metrics.csv columns (kl, …)
        self.data_loss = classification_loss if data.task == "classification" else regression_loss
        self.weights = [w for _, w in penalized_parameters(self.model)]
        self.parameters = [p for p in self.model.parameters() if p.requires_grad]
        self.block_rows = self._block_rows()
        # the fixed subset measured for train metrics, gathered once
        self.train_eval = (data.x_train[data.train_eval_index], data.y_train[data.train_eval_index])
        self.checkpoints = Checkpoints([spec], device)
        self.rows: list[dict] = []             # the epochs trained so far (a resumed run's too)
        self.elapsed = 0.0                     # seconds trained before a resume
        self.resumed_from: Optional[int] = None

    # what a checkpoint leaves out: the data, and what is rebuilt from it when a run resumes
    TRANSIENT = ("data", "train_eval", "checkpoints")

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in self.TRANSIENT}

    def resume(self) -> "Trainer":
        """The trainer its checkpoint left, on this one's data; itself when there is none."""
        state = self.checkpoints.read()
        if state is None:
            return self
        trainer = state["trainer"]
        for key in self.TRANSIENT:
            setattr(trainer, key, getattr(self, key))
        trainer.elapsed, trainer.resumed_from = state["elapsed"], len(trainer.rows)
        return trainer

    def _block_rows(self) -> int:
        """Rows per block: whole batches, up to the device's BLOCK. A block is gathered and
        passed through the batch hooks at once (each small op costs ~10 µs of dispatch on the
        CPU, a kernel launch on a GPU), then trained batch by batch."""
        batch_size = self.train_cfg["batch_size"]
        if any(reg.batch_reads_model for reg in self.hooks["batch"]):
            return batch_size
        max_rows, max_bytes = BLOCK.get(self.device.type, BLOCK["cuda"])
        x = self.data.x_train
        row_bytes = max(1, x[:1].numel() * x.element_size())
        return batch_size * max(1, min(max_rows, max_bytes // row_bytes) // batch_size)

    # ------------------------------------------------------------------ one epoch of SGD
    def train_epoch(self) -> dict[str, float]:
        model, data = self.model, self.data
        model.train()
        batch_size = self.train_cfg["batch_size"]
        permutation = torch.randperm(data.n_train, device=self.device)
        objective_sum = torch.zeros((), device=self.device)
        penalty_sum = torch.zeros((), device=self.device)
        grad_norm_sum = torch.zeros((), device=self.device)
        steps = measured = 0
        reading_outputs = [reg for reg in self.regularizers if reg.overrides("output_penalty")]
        comparing = [reg for reg in self.regularizers if reg.overrides("consistency_penalty")]
        perturbing = [reg for reg in self.regularizers if reg.overrides("perturb")]
        viewing = [reg for reg in self.regularizers if reg.overrides("view_penalty")]

        def objective_of(x: torch.Tensor, y: torch.Tensor):
            """The batch's objective at the current weights, and its penalty part (or None)."""
            output = model(x)
            loss = self.data_loss(output, y)
            penalty = None
            for reg in self.hooks["penalty"]:
                term = reg.penalty(model)
                penalty = term if penalty is None else penalty + term
            for reg in reading_outputs:
                term = reg.output_penalty(output, y)
                penalty = term if penalty is None else penalty + term
            if comparing:       # the batch again, through fresh masks of the stochastic layers
                again = model(x)
                loss = (loss + self.data_loss(again, y)) / 2
                for reg in comparing:
                    term = reg.consistency_penalty(output, again, y)
                    penalty = term if penalty is None else penalty + term
            for reg in viewing:  # other views of the batch (AugMix's): their outputs compared
                term = reg.view_penalty(output, [model(view) for view in reg.views(x)], y)
                penalty = term if penalty is None else penalty + term
            return (loss if penalty is None else loss + penalty), penalty

        for x, y in self._batches(permutation, batch_size):
            objective, penalty = objective_of(x, y)
            self.optimizer.zero_grad(set_to_none=True)
            objective.backward()
            if perturbing:      # the step takes the gradient at the moved weights (SAM)
                undo = [reg.perturb(model) for reg in perturbing]
                self.optimizer.zero_grad(set_to_none=True)
                objective_of(x, y)[0].backward()
                for restore in reversed(undo):
                    restore()
            if steps % GRAD_NORM_EVERY == 0:  # pre-clip norm, sampled: it costs ~5% of a step
                grads = [p.grad for p in self.parameters if p.grad is not None]
                grad_norm_sum.add_(gradient_norm(grads))
                measured += 1
            for reg in self.hooks["after_backward"]:
                reg.after_backward(model)
            optim.eager_step(self.optimizer)
            for reg in self.hooks["after_step"]:
                reg.after_step(model)
            objective_sum.add_(objective.detach())
            if penalty is not None:
                penalty_sum.add_(penalty.detach())
            steps += 1
        sums = torch.stack([objective_sum / steps, penalty_sum / steps, grad_norm_sum / measured])
        return dict(zip(TRAIN_COLUMNS, sums.tolist()))  # the epoch's only host sync

    def _batches(self, permutation: torch.Tensor, batch_size: int):
        """The epoch's training batches, in the order of ``permutation``, transformed by the
        batch hooks: the same batches as ``permutation.split(batch_size)``, drawn by blocks."""
        x_all, y_all = self.data.x_train, self.data.y_train
        for block in permutation.split(self.block_rows):
            # index_select: the rows of x_all[block], several times faster on the CPU
            x, y = x_all.index_select(0, block), y_all.index_select(0, block)
            for reg in self.hooks["batch"]:
                x, y = reg.batches(x, y, batch_size)
            # a generator: the next block is transformed only after this block's steps, which
            # is what lets a hook that reads the model (block_rows = batch_size) see it current
            yield from zip(x.split(batch_size), y.split(batch_size))

    # ------------------------------------------------------------------ measuring
    def evaluated(self) -> nn.Module:
        """The module the run is measured and saved with: the first a regularizer puts in
        place of the trained model (``eval_weights``: ema's and swa's averages), else the
        model itself."""
        for reg in self.regularizers:
            if reg.overrides("eval_weights"):
                module = reg.eval_weights(self.model, self.data.x_train)
                if module is not None:
                    return module
        return self.model

    def predict(self, x: torch.Tensor, model: Optional[nn.Module] = None) -> torch.Tensor:
        """Eval-mode outputs of ``model`` (default: the evaluated one) on ``x``."""
        if model is None:     # outside inference mode: swa recomputes batch norm statistics
            model = self.evaluated()
        with torch.inference_mode():
            self.model.eval()
            model.eval()
            chunk = EVAL_CHUNK.get(self.device.type, 8192)
            return torch.cat([model(part) for part in x.split(chunk)])

    def measure(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return split_metrics(self.data, self.predict(x), y)

    def weights_of(self, model: nn.Module) -> list[torch.Tensor]:
        """The penalized weights of ``model``: the trained model's, or their averaged copies."""
        return self.weights if model is self.model else [w for _, w in penalized_parameters(model)]

    @torch.inference_mode()
    def weight_stats(self, model: Optional[nn.Module] = None) -> dict[str, torch.Tensor]:
        return weight_statistics(self.weights_of(self.model if model is None else model),
                                 self.device)

    def measure_epoch(self) -> dict[str, float]:
        """Eval-mode metrics of the train subset and the val split and weight statistics, of
        the evaluated module (``evaluated``), then the regularizers' own columns."""
        model = self.evaluated()
        measured = split_columns(self.data, self.train_eval, lambda x: self.predict(x, model))
        measured.update(self.weight_stats(model))
        keys = list(measured)
        values = torch.stack([measured[k].float() for k in keys]).tolist()  # one host sync
        row = dict(zip(keys, values))
        for reg in self.hooks["epoch_metrics"]:
            own = {k: float(v) for k, v in reg.epoch_metrics(self.model).items()}
            self.own_columns.update(dict.fromkeys(own))
            row.update(own)
        return row

    def run_epoch(self, epoch: int) -> dict[str, float]:
        """Train one epoch and measure it: one row of metrics.csv."""
        self.ctx.epoch = epoch
        lr = self.ctx.lr  # the rate this epoch trained with (a scheduler steps after it)
        started = time.perf_counter()
        trained = self.train_epoch()
        measured = self.measure_epoch()
        return epoch_row(epoch, time.perf_counter() - started, lr, trained, measured)

    # ------------------------------------------------------------------ the run
    def fit(self, on_epoch: Optional[Callable[[dict], None]] = None) -> RunResult:
        """Train the epochs not trained yet (all of them, unless resumed from a checkpoint)."""
        started = time.perf_counter() - self.elapsed
        rows = self.rows
        status = "completed"
        try:
            for epoch in range(len(rows) + 1, self.train_cfg["epochs"] + 1):
                row = self.run_epoch(epoch)
                rows.append(row)
                if on_epoch is not None:
                    on_epoch(row)
                if diverged(row):
                    status = "diverged"
                    break
                for reg in self.hooks["epoch_end"]:
                    reg.epoch_end(epoch, row, self.model)
                if self.scheduler is not None:
                    step_scheduler(self.scheduler, row)
                if any(reg.should_stop for reg in self.regularizers):
                    break
                self.checkpoints.after(epoch, self, time.perf_counter() - started)
        except KeyboardInterrupt:
            status = "interrupted"
        except RunStopped as stop:   # e.g. a tuning trial pruned on its validation curve
            result = self.finish(rows, stop.status, time.perf_counter() - started)
            result.summary["stop_reason"] = stop.reason
            return result
        return self.finish(rows, status, time.perf_counter() - started)

    def finish(self, rows: list[dict], status: str, seconds: float) -> RunResult:
        chosen = None
        if status == "completed":
            for reg in self.hooks["fit_end"]:
                chosen = reg.fit_end(self.model) or chosen
        summary = run_summary(self, rows, status, chosen, seconds)
        summary["resumed_from_epoch"] = self.resumed_from
        if self.checkpoints.notes:
            summary["checkpoint_notes"] = self.checkpoints.notes
        model = self.evaluated()   # what the test metrics measured (run_summary's measure)
        weights = None
        if self.weights:
            flat = torch.cat([w.detach().flatten() for w in self.weights_of(model)]).float().cpu()
            if flat.numel() > WEIGHT_SAMPLE:
                generator = torch.Generator().manual_seed(0)
                flat = flat[torch.randperm(flat.numel(), generator=generator)[:WEIGHT_SAMPLE]]
            weights = flat.numpy()
        state = None
        if self.train_cfg.get("save_model") and status == "completed":
            buffer = io.BytesIO()
            torch.save({k: v.cpu() for k, v in model.state_dict().items()}, buffer)
            state = buffer.getvalue()
        return RunResult(status=status, rows=rows, summary=summary, weights=weights,
                         model_state=state)


def run_summary(trainer: Trainer, rows: list[dict], status: str, chosen: Optional[int],
                seconds: float) -> dict[str, Any]:
    spec, data = trainer.spec, trainer.data
    names = metric_names(data.task)
    finite_val = [r for r in rows if math.isfinite(r.get("val_loss", math.nan))]
    best = min(finite_val, key=lambda r: r["val_loss"]) if finite_val else None
    chosen_row = next((r for r in rows if r["epoch"] == chosen), None) if chosen else None
    final = chosen_row or (rows[-1] if rows else {})
    summary: dict[str, Any] = {
        "status": status,
        "run_id": spec["run_id"],
        "point_id": spec.get("point_id", spec["recipe"]),
        "recipe": spec["recipe"],
        "seed": spec["seed"],
        "sweep": spec.get("sweep", {}),
        "config_hash": spec["config_hash"],
        "regularizers": spec["regularizers"],
        "train_differs": spec.get("train_differs", False),
        "best_epoch": best["epoch"] if best else None,
        "chosen_epoch": final.get("epoch"),
        "stopped_epoch": rows[-1]["epoch"] if rows else 0,
        "epochs_planned": trainer.train_cfg["epochs"],
        "task": data.task,
        "n_train": data.n_train,
        "parameter_count": sum(p.numel() for p in trainer.model.parameters()),
        "penalized_parameters": penalized_names(trainer.model, trainer.regularizers),
        "sparsifying": any(r.sparsifying for r in trainer.regularizers),  # plotted as such
        "regularizer_details": [d for d in (r.describe() for r in trainer.regularizers) if d],
        "seconds": seconds,
        "seconds_per_epoch": (sum(r["seconds"] for r in rows) / len(rows)) if rows else None,
        "device": trainer.device.type,  # what `device: auto` resolved to
    }
    for split in ("train", "val"):
        for name in names:
            summary[f"{split}_{name}"] = final.get(f"{split}_{name}")
    for key in ("sparsity", "weight_norm", *trainer.own_columns):
        summary.setdefault(key, final.get(key))   # the regularizers' own final columns too
    if spec.get("withhold_test"):   # a tuning trial: chosen on validation, never tested
        summary["test_withheld"] = True
    if status == "completed" and not spec.get("withhold_test"):
        test = trainer.measure(data.x_test, data.y_test)
        values = torch.stack([v.float() for v in test.values()]).tolist()
        summary.update({f"test_{k}": v for k, v in zip(test, values)})
    else:
        summary.update({f"test_{k}": None for k in names})
    return summary


def train_run(spec: RunSpec, data: DataBundle, device: torch.device,
              on_epoch: Optional[Callable[[dict], None]] = None) -> RunResult:
    """Train one run on already-loaded data; never raises for divergence or Ctrl-C."""
    return Trainer(spec, data.to(device), device).resume().fit(on_epoch)

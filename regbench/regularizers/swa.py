"""Stochastic weight averaging: the run is evaluated with the mean of its end-of-epoch weights.

Paper: Izmailov, Podoprikhin, Garipov, Vetrov & Wilson 2018, "Averaging Weights Leads to Wider
Optima and Better Generalization".
Hooks: after_step (after the last step of every epoch from the start epoch on, the average
takes in the weights and SWALR sets the next epoch's rate), eval_weights (from the start epoch
on, every epoch's train and val metrics, the test metrics, the weight statistics and model.pt
are the average's; before it, the trained weights').
Formula: with s the start epoch (``start``: an epoch number, or a fraction f < 1 of the run's E
epochs: s = ⌊f·E⌋ + 1, so the last (1 − f)·E epochs are averaged), the average after epoch
e ≥ s is θ̄_e = (1/(e − s + 1))·Σ_{i=s..e} θ_i, θ_i the weights at the end of epoch i
(torch.optim.swa_utils.AveragedModel). Buffers are the model's; where the model has batch
norm, its statistics are recomputed for the average before it is evaluated
(torch.optim.swa_utils.update_bn: one pass over the training inputs in batches of
batch_size). With ``swa_lr``, torch's SWALR sets the rate of every epoch after s: annealed
from the rate of epoch s to swa_lr over ``anneal_epochs`` epochs (``anneal_strategy`` cos or
linear), then constant; with swa_lr null the rate stays as it is.
Rules: SWALR takes over the learning rate, so train.scheduler is refused (the rate before s is
train.optimizer.lr), but for a ``constant`` schedule whose warmup ends before s. One average
per recipe (not with ema). With early stopping, the best epoch is the one whose evaluated
weights (the average from s on) measured best, and the restore brings back that epoch's
average with the weights; a run stopped before s is evaluated with its trained weights.
Deviations from the paper: before s the paper decays the rate from lr to swa_lr (linearly,
from half way to 90% of the way to s); here the rate is constant until s and SWALR anneals
it after s, as torch's SWA recipe does. Batch norm statistics are recomputed over the
training inputs as stored, without the recipe's batch transforms (the paper's loader augments).
"""
from __future__ import annotations

import math
from typing import Literal, Optional

from pydantic import Field, field_validator
from torch.optim.swa_utils import SWALR, AveragedModel, update_bn

from regbench.config.schema import StrictModel
from regbench.regularizers._averaging import WeightAverage
from regbench.regularizers.base import Incompatible, register


class Params(StrictModel):
    start: float = Field(0.75, gt=0)          # s: the first averaged epoch (1, 2, …), or a fraction f < 1 of E epochs: s = ⌊f·E⌋ + 1
    swa_lr: Optional[float] = Field(None, gt=0)   # the rate SWALR anneals to after s; null: the rate stays
    anneal_epochs: int = Field(10, ge=0)      # epochs SWALR takes to reach swa_lr (0: at once; torch's default 10)
    anneal_strategy: Literal["cos", "linear"] = "cos"   # the shape of SWALR's anneal (torch's default cos)

    @field_validator("start")
    @classmethod
    def _epoch_or_fraction(cls, value: float) -> float:
        if value >= 1 and value != int(value):
            raise ValueError(f"must be an epoch number (1, 2, …) or a fraction of the epochs "
                             f"below 1 (got {value})")
        return value


def start_epoch(start: float, epochs: int) -> int:
    """The first averaged epoch (1-based) of a run of ``epochs`` epochs."""
    return int(start) if start >= 1 else math.floor(start * epochs) + 1


@register
class SWA(WeightAverage):
    name = "swa"
    summary = ("evaluate the mean of the weights at the ends of the last epochs (from start "
               "on), batch norm recomputed; SWALR anneals the rate to swa_lr")
    paper = "Izmailov et al. 2018"
    Params = Params
    # two averaged epochs of three, the rate lowered after the first
    conformance = {"start": 2, "swa_lr": 0.01, "anneal_epochs": 1}

    def __init__(self, params, ctx):
        super().__init__(params, ctx)
        self.start = start_epoch(params.start, ctx.train["epochs"])
        self.steps_per_epoch = math.ceil(ctx.n_train / ctx.train["batch_size"])
        self.steps = 0
        self.scheduler: Optional[SWALR] = None
        self.statistics_current = True      # the average's batch norm statistics are its own

    @classmethod
    def check(cls, params, ctx):
        epochs = ctx.train["epochs"]
        start = start_epoch(params.start, epochs)
        if start > epochs:
            raise Incompatible(f"start epoch {start} is after the run's last epoch {epochs}: "
                               f"set start to at most {epochs}, or a fraction below 1")
        schedule = ctx.train.get("scheduler") or {}
        warmup = schedule.get("warmup_epochs", 0) or 0
        if schedule and not (schedule.get("name") == "constant" and warmup < start):
            which = (f"constant with {warmup} warmup epochs" if schedule.get("name") == "constant"
                     else schedule.get("name"))
            raise Incompatible(
                f"swa sets the learning rate from its start epoch {start} on (SWALR), and "
                f"train.scheduler {which} would set it too; remove train.scheduler for this "
                f"recipe (the rate before epoch {start} is then train.optimizer.lr), or use a "
                f"constant schedule whose warmup ends before epoch {start}")
        warnings = super().check(params, ctx)
        if "early_stopping" in ctx.recipe:
            warnings.append(f"early stopping may end the run before start epoch {start}; such "
                            "a run is evaluated with its trained weights, unaveraged")
        return warnings

    def averaged_model(self, model):
        return AveragedModel(model)          # the equal-weight mean; buffers copied

    def after_step(self, model):
        average = self.started(model)
        self.steps += 1
        if self.steps % self.steps_per_epoch or self.ctx.epoch < self.start:
            return                           # not the end of an averaged epoch
        average.update_parameters(model)
        self.statistics_current = False
        if self.params.swa_lr is not None:
            if self.scheduler is None:       # from s on it, not train.scheduler, sets the rate
                self.scheduler = SWALR(self.ctx.optimizer, self.params.swa_lr,
                                       self.params.anneal_epochs, self.params.anneal_strategy)
                # what its wrapper of optimizer.step() would have recorded, had it been there
                # for this epoch's steps (else torch warns of a schedule stepped first)
                self.ctx.optimizer._opt_called = True
            self.scheduler.step()            # the next epoch's rate

    def eval_weights(self, model, x_train):
        module = super().eval_weights(model, x_train)
        if module is not None and not self.statistics_current:
            # a no-op for a model without batch norm
            update_bn(x_train.split(self.ctx.train["batch_size"]), module)
            self.statistics_current = True
        return module

    def describe(self) -> str:
        p, epochs = self.params, self.ctx.train["epochs"]
        rate = (f"; after epoch {self.start} SWALR anneals the rate ({p.anneal_strategy}, "
                f"{p.anneal_epochs} epochs) to {p.swa_lr:g}" if p.swa_lr is not None else "")
        return (f"swa: evaluated from epoch {self.start} with the mean of the weights at the "
                f"ends of epochs {self.start}–{epochs}{rate}")

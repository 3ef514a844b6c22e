"""Early stopping on a validation metric, restoring the best epoch.

Paper: Prechelt 1998, "Early Stopping — But When?".
Hooks: epoch_end (track the monitored metric, set ``should_stop``), fit_end (restore the best
weights; test metrics then come from that epoch).
Rule: an epoch improves when the metric beats the best so far by more than ``min_delta``; after
``patience`` epochs without improvement training stops.
Deviations from the paper: a patience rule on one monitored metric; Prechelt's GL, PQ and UP
criteria are not offered.
"""
from __future__ import annotations

import copy
from typing import Literal, Optional

from pydantic import Field

from regbench.config.schema import StrictModel
from regbench.regularizers.base import Incompatible, Regularizer, register
from regbench.vocabulary import lower_is_better, metric_names


class Params(StrictModel):
    monitor: str = "val_loss"                        # metrics.csv column to watch
    mode: Literal["auto", "min", "max"] = "auto"     # auto: min for loss/mse/mae/ece, else max
    patience: int = Field(5, ge=1)                   # epochs without improvement before stopping
    min_delta: float = Field(0.0, ge=0)              # smallest change that counts as improvement
    restore_best: bool = True                        # reload the best epoch's weights at the end


def minimise(monitor: str, mode: str) -> bool:
    """Whether a smaller value of ``monitor`` is an improvement."""
    return mode == "min" if mode != "auto" else lower_is_better(monitor)


@register
class EarlyStopping(Regularizer):
    name = "early_stopping"
    try_rank = 10
    summary = "stop when the monitored metric stops improving; restore the best epoch's weights"
    paper = "Prechelt 1998"
    Params = Params
    fusable = True      # its hooks read the metrics and the member's own model (engine.fused)
    # no epoch improves on the first by 1e9: it stops after one more and restores the first,
    # whatever the curve (the default patience of 5 never runs out in a 3-epoch check)
    conformance = {"patience": 1, "min_delta": 1e9}

    def __init__(self, params, ctx):
        super().__init__(params, ctx)
        self.minimise = minimise(params.monitor, params.mode)
        self.best: Optional[float] = None
        self.best_epoch: Optional[int] = None
        self.best_state: Optional[dict] = None
        self.waited = 0

    @classmethod
    def check(cls, params, ctx):
        metrics = metric_names(ctx.task)
        valid = [f"{split}_{m}" for split in ("val", "train") for m in metrics]
        if params.monitor not in valid:
            raise Incompatible(f"monitor '{params.monitor}' is not a {ctx.task} metric; expected "
                               f"one of: {', '.join(valid)}")
        if params.monitor.startswith("train_"):
            return ["monitoring a training metric: early stopping then cannot detect overfitting"]
        return []

    def epoch_end(self, epoch, row, model):
        value = row[self.params.monitor]
        delta = self.params.min_delta
        improved = (self.best is None
                    or (value < self.best - delta if self.minimise else value > self.best + delta))
        if improved:
            self.best, self.best_epoch, self.waited = value, epoch, 0
            if self.params.restore_best:
                self.best_state = copy.deepcopy(model.state_dict())
        else:
            self.waited += 1
            self.should_stop = self.waited >= self.params.patience

    def fit_end(self, model):
        if self.params.restore_best and self.best_state is not None:
            model.load_state_dict(self.best_state)
            return self.best_epoch
        return None

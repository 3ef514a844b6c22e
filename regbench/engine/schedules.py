"""A run's optimizer and learning-rate schedule, built from its ``train`` settings with torch's
own classes (``torch.optim`` and ``torch.optim.lr_scheduler``); nothing here computes a rate.

The schedule steps once per epoch, after it (``step_scheduler``, from the solo and the fused
loop alike), so the ``lr`` column of metrics.csv is the rate the epoch trained with and every
length is in epochs. A warmup of ``warmup_epochs`` is torch's ``LinearLR`` (or ``ConstantLR``)
joined to the schedule proper by ``SequentialLR``, as torchvision's reference recipes build it;
the schedule proper then spans the epochs after the warmup. Every schedule but
``ReduceLROnPlateau`` sets each parameter group's rate from that group's own ``lr`` and the
epoch count alone, so one scheduler over a fused group's parameter groups (one per member
setting) gives every member its solo run's rates; ``ReduceLROnPlateau`` reads the run's own
metrics, and its runs train solo (``fused._cannot_fuse``).
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch.optim import lr_scheduler

from regbench.config.schema import (
    OPTIMIZER_KEYS,
    SCHEDULES,
    CosineSchedule,
    ExponentialSchedule,
    LinearSchedule,
    OneCycleSchedule,
    PlateauSchedule,
    SchedulerConfig,
    StepSchedule,
)
from regbench.engine import optim
from regbench.errors import RegbenchError

ADAMW_DEFAULT_DECAY = 0.01   # torch.optim.AdamW's own default, what `optimizer: adamw` means

# name -> torch's optimizer; the train.optimizer keys each takes are the schema's OPTIMIZER_KEYS
OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
              "nadam": torch.optim.NAdam, "rmsprop": torch.optim.RMSprop}


def make_optimizer(parameters, config: dict[str, Any]) -> torch.optim.Optimizer:
    """torch's optimizer named by ``train.optimizer`` over ``parameters``, with its settings."""
    optim.prepare()   # no torch._dynamo import for an eager loop (regbench.engine.optim)
    settings = {key: config[key] for key in OPTIMIZER_KEYS[config["name"]]
                if config.get(key) is not None}
    if "betas" in settings:
        settings["betas"] = tuple(settings["betas"])
    if "nesterov" in settings:     # torch refuses Nesterov without momentum
        settings["nesterov"] = settings["nesterov"] and config.get("momentum", 0) > 0
    if config["name"] == "adamw":
        settings.setdefault("weight_decay", ADAMW_DEFAULT_DECAY)
    return OPTIMIZERS[config["name"]](parameters, **settings)


class MonitoredPlateau(lr_scheduler.ReduceLROnPlateau):
    """torch's ReduceLROnPlateau that knows which metrics.csv column it watches."""

    def __init__(self, optimizer: torch.optim.Optimizer, monitor: str, **settings: Any):
        super().__init__(optimizer, **settings)
        self.monitor = monitor


def _cosine(optimizer, schedule: CosineSchedule, epochs: int):
    return lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)


def _step(optimizer, schedule: StepSchedule, epochs: int):
    return lr_scheduler.StepLR(optimizer, step_size=schedule.step_size, gamma=schedule.gamma)


def _linear(optimizer, schedule: LinearSchedule, epochs: int):
    return lr_scheduler.LinearLR(optimizer, start_factor=1.0, end_factor=schedule.end_factor,
                                 total_iters=epochs)


def _constant(optimizer, schedule: SchedulerConfig, epochs: int):
    return None                    # the rate stays where the warmup leaves it


def _exponential(optimizer, schedule: ExponentialSchedule, epochs: int):
    return lr_scheduler.ExponentialLR(optimizer, gamma=schedule.gamma)


def _one_cycle(optimizer, schedule: OneCycleSchedule, epochs: int):
    settings = schedule.model_dump(exclude={"name"})
    # each parameter group peaks at its own rate: a fused member's, as in its solo run
    return lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in optimizer.param_groups],
                                   total_steps=epochs, **settings)


def _plateau(optimizer, schedule: PlateauSchedule, epochs: int):
    settings = schedule.model_dump(exclude={"name", "monitor", "mode"})
    return MonitoredPlateau(optimizer, schedule.monitor, mode=schedule.resolved_mode(),
                            **settings)


BUILDERS = {"cosine": _cosine, "step": _step, "linear": _linear, "constant": _constant,
            "exponential": _exponential, "one_cycle": _one_cycle, "plateau": _plateau}


def make_scheduler(optimizer: torch.optim.Optimizer, config: Optional[dict[str, Any]],
                   epochs: int) -> Optional[lr_scheduler.LRScheduler]:
    """The schedule ``train.scheduler`` names over every parameter group of ``optimizer`` (each
    from its own ``lr``) for a run of ``epochs`` epochs; None without one."""
    if not config:
        return None
    schedule = SCHEDULES[config["name"]].model_validate(config)
    warmup = getattr(schedule, "warmup_epochs", 0)
    main = BUILDERS[schedule.name](optimizer, schedule, epochs - warmup)
    if not warmup:
        return main
    if schedule.warmup_method == "linear":
        first = lr_scheduler.LinearLR(optimizer, start_factor=schedule.warmup_factor,
                                      end_factor=1.0, total_iters=warmup)
    else:
        first = lr_scheduler.ConstantLR(optimizer, factor=schedule.warmup_factor,
                                        total_iters=warmup)
    if main is None:
        return first               # after its last epoch the warmup leaves the rate at lr
    return lr_scheduler.SequentialLR(optimizer, [first, main], milestones=[warmup])


def step_scheduler(scheduler: lr_scheduler.LRScheduler, row: dict[str, float]) -> None:
    """After an epoch (``row``: its metrics.csv row), set the next epoch's rate."""
    if isinstance(scheduler, MonitoredPlateau):    # the only plateau make_scheduler builds
        if scheduler.monitor not in row:   # the plan checked it against the task's metrics
            raise RegbenchError(f"train.scheduler.monitor: {scheduler.monitor} is not a column "
                                f"of this run's metrics.csv; it has: {', '.join(row)}")
        scheduler.step(row[scheduler.monitor])
    else:
        scheduler.step()

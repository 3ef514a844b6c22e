"""The regularizer base class: hook points of the training loop, no-ops by default.

A regularizer overrides only the hooks it uses; the loop calls just those (see
``regbench/engine/train.py`` for where each one fires).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Optional

import torch
from torch import nn

from regbench.config.schema import NoParams, StrictModel
from regbench.models.base import LayerFactory, penalized_parameters
from regbench.registry import Registry, builtin
from regbench.regularizers._streams import run_generator

HOOKS = ("build", "wrap", "batch", "penalty", "output_penalty", "consistency_penalty",
         "view_penalty", "perturb",
         "after_backward", "after_step", "eval_weights", "epoch_end", "fit_end", "epoch_metrics")

# The batch hooks of a recipe run in this order, whatever the order of its YAML keys: geometry
# moves pixels (augment), erasing blanks patches of the moved image (cutout, random_erasing),
# noise perturbs the finished input (input_noise), mixing combines two finished samples and
# their targets (mixup, cutmix), smoothing softens the final targets (label_smoothing). Within a
# stage, by name. Mixing last keeps each mixed sample a blend of two augmented images, as the
# mixup and CutMix papers train; smoothing a mixed target keeps it a probability vector.
BATCH_STAGES = ("geometry", "erase", "noise", "mix", "targets")

# what each ``exclusive`` tag means, for the message that refuses two of a kind in one recipe
EXCLUSIVE_MEANING = {
    "norm": "normalisation layers (each inserts a norm after every hidden layer)",
    "weight_layer": "replacements of the model's linear/conv layers",
    "dropout": "drop layers after the hidden activations (each fills the model's dropout slot)",
    "averaging": "averages of the weights that the run is evaluated with in place of the "
                 "trained ones",
}


class Incompatible(Exception):
    """A recipe that cannot work; the text says why."""


@dataclass
class CheckContext:
    """What validation knows about a run before any data is loaded."""

    task: str                                   # classification | regression
    input_shape: Optional[tuple[int, ...]]      # None: tabular with unknown width
    model_name: str
    model_residual: bool
    batch_size: int
    recipe: dict[str, dict[str, Any]]           # every regularizer of the recipe -> params
    train: dict[str, Any]
    model_convolutional: Optional[bool] = False  # the model has conv layers (None: a plugin's
                                                 # model, known only once built)
    mirror_changes_class: bool = False          # the dataset's classes change under a flip

    @property
    def is_image(self) -> bool:
        return self.input_shape is not None and len(self.input_shape) == 3


@dataclass
class RunContext:
    """What a regularizer may read while a run trains."""

    task: str
    n_train: int                                # training samples after the validation split
    output_dim: int                             # classes (classification) or targets (regression)
    input_shape: tuple[int, ...]
    device: torch.device
    train: dict[str, Any]                       # effective training settings of this recipe
    optimizer: Optional[torch.optim.Optimizer] = None
    epoch: int = 0
    changes: list[str] = field(default_factory=list)   # what the build hooks changed (validate)
    run_id: str = ""                            # the run's identity: its random streams' seeds

    @property
    def configured_lr(self) -> float:
        """The learning rate η the config sets (before any schedule)."""
        return float(self.train["optimizer"]["lr"])

    @property
    def lr(self) -> float:
        """Current learning rate η of the first parameter group."""
        return float(self.optimizer.param_groups[0]["lr"]) if self.optimizer else 0.0


class Regularizer:
    """Base class. Subclasses set the class attributes and override the hooks they use."""

    name: ClassVar[str] = ""                    # registry name == module name == YAML key
    summary: ClassVar[str] = ""                 # one-line meaning for `regbench list`
    paper: ClassVar[str] = ""                   # where it comes from
    Params: ClassVar[type[StrictModel]] = NoParams
    tasks: ClassVar[frozenset[str]] = frozenset({"classification", "regression"})
    needs_images: ClassVar[bool] = False        # image transforms: (C, H, W) inputs only
    needs_residual: ClassVar[bool] = False      # acts on residual blocks
    model_needs: ClassVar[Optional[str]] = None # what a model must have for its build hook to
                                                # change it (refusal message; default: the slot's)
    exclusive: ClassVar[Optional[str]] = None   # at most one regularizer per recipe with this tag (e.g. "norm")
    penalizes: ClassVar[bool] = False           # adds a weight penalty (reported with its parameters)
    sparsifying: ClassVar[bool] = False         # meant to drive weights to zero (sparsity is plotted)
    batch_stage: ClassVar[Optional[str]] = None  # where its batch hook runs (BATCH_STAGES)
    batch_reads_model: ClassVar[bool] = False   # `batch` uses the current model (e.g. adversarial
                                                # inputs): it must run just before its own step
    plugin: ClassVar[bool] = False              # registered by a plugin, not part of regbench
    fusable: ClassVar[bool] = False             # runs of it may train as one stacked model
                                                # (regbench.engine.fused): its build adds only
                                                # layers the stacked model runs (dropout), its
                                                # penalty/after_backward/after_step act only on
                                                # ``self.weights``, its epoch_end/fit_end only on
                                                # the member's own model, its batch hook has a
                                                # stacked form (stacked_batches); every random
                                                # draw from its run's own stream
    solo_because: ClassVar[str] = ""            # why its runs train solo (not fusable), for --dry-run
    batches_by_member: ClassVar[bool] = False   # every draw of its batch hook from own_generator:
                                                # fused, each member's own batches (stacked)
    try_rank: ClassVar[Optional[int]] = None    # where `diagnose` suggests it against overfitting:
                                                # lower first; None: after every ranked one
    conformance: ClassVar[dict[str, Any]] = {}  # params that show this regularizer's effect in a
                                                # few-epoch run, for regbench.testing (empty:
                                                # its defaults already change training)
    conformance_with: ClassVar[dict[str, dict[str, Any]]] = {}  # other regularizers (name ->
                                                # params) it needs in its recipe, which the shared
                                                # tests train it beside (rdrop: dropout); its
                                                # effect is measured against them alone

    def __init__(self, params: StrictModel, ctx: RunContext):
        self.params = params
        self.ctx = ctx
        self.should_stop = False                # set by epoch_end to stop training
        self._generator: Optional[torch.Generator] = None
        self.columns: dict = {}                 # per-member values copied to each device once
                                                # (``_streams.member_column``'s cache)

    def own_generator(self) -> torch.Generator:
        """This regularizer's random stream in this run: a generator seeded from the run id
        and its name (regularizers/_streams.py), made on first use on the run's device. Every
        draw a batch hook makes comes from it, so the run draws the same numbers alone, fused
        in any group, or resumed."""
        if self._generator is None:
            self._generator = run_generator(f"{self.ctx.run_id} {self.name}", self.ctx.device)
        return self._generator

    # --- hooks (no-ops) -----------------------------------------------------------------
    def build(self, factory: LayerFactory) -> None:
        """Choose layer factories before the model is constructed."""

    def wrap(self, model: nn.Module) -> nn.Module:
        """Wrap or inspect the constructed model (still part of the build step)."""
        return model

    def batch(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Transform training samples on the device; y may become soft targets. Through the
        default ``batches``, ``x`` may hold several batches: draw per sample, and use no
        statistics of ``x`` that should be a single batch's."""
        return x, y

    def batches(self, x: torch.Tensor, y: torch.Tensor, batch_size: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``batch`` hook over a block of consecutive batches (rows [k·batch_size,
        (k+1)·batch_size) are batch k), which the trainer transforms ahead of their steps so
        that each small op is paid once per block, not once per batch. The default suits
        per-sample transforms: ``batch`` over the whole block. A transform that mixes the
        samples of a batch (mixup, cutmix) overrides this to keep within each batch, and
        ``batch`` as this over one batch."""
        return self.batch(x, y)

    def penalty(self, model: nn.Module) -> torch.Tensor:
        """A term added to the data loss."""
        raise NotImplementedError

    def output_penalty(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """A term added to the data loss, from the batch's model outputs (logits, or
        regression predictions) and its targets, after the forward. The fused loop does not
        call it: a regularizer that uses it trains solo."""
        raise NotImplementedError

    def consistency_penalty(self, output: torch.Tensor, again: torch.Tensor,
                            y: torch.Tensor) -> torch.Tensor:
        """A term added to the loss from two forwards of the same batch through the model's
        stochastic layers (``output`` and ``again``, fresh dropout masks each). Where any
        regularizer has this hook the loop makes the second forward, once for all of them, and
        the data loss is the mean of the two forwards'. Solo loop only."""
        raise NotImplementedError

    def views(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Other views of the batch's inputs (e.g. augmented copies) that the loop forwards
        too, for ``view_penalty``; the data loss stays the batch's own."""
        raise NotImplementedError

    def view_penalty(self, output: torch.Tensor, others: list[torch.Tensor],
                     y: torch.Tensor) -> torch.Tensor:
        """A term added to the loss from the batch's outputs and those of its ``views``
        (``others``, in order). Solo loop only."""
        raise NotImplementedError

    def perturb(self, model: nn.Module) -> Callable[[], None]:
        """Move the weights after the step's first backward (``.grad`` holds its gradient),
        returning what puts them back. Where any regularizer has this hook the loop computes
        the objective and its gradient again at the moved weights, calls the returned undo,
        and the after_backward hooks and the optimizer step use that second gradient. Solo
        loop only."""
        raise NotImplementedError

    @classmethod
    def stacked_penalty(cls, members: list["Regularizer"], weights: list[torch.Tensor]
                        ) -> Optional[torch.Tensor]:
        """Fused training (``fusable``): every member's penalty at once, [M], from the stacked
        weights [M, ...] its members penalize; None: each member's ``penalty`` is called."""
        return None

    @classmethod
    def stacked_batches(cls, members: list["Regularizer"], x: torch.Tensor, y: torch.Tensor,
                        batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Fused training of a regularizer with a batch hook: ``batches`` for every member at
        once, on blocks with a member axis (x [M, R, ...], y [M, R(, K)]), each member with its
        own parameters and drawing from its own streams exactly as its solo run's ``batches``
        draws. By default each member's own ``batches`` (``member_by_member``) where the class
        sets ``batches_by_member``; a batch hook with neither does not fuse."""
        if cls.batches_by_member:
            return member_by_member(members, x, y, batch_size)
        raise NotImplementedError

    @classmethod
    def stacks_batches(cls) -> bool:
        """Whether its batch hook (if any) has a stacked form for fused training."""
        return cls.batches_by_member or \
            cls.stacked_batches.__func__ is not Regularizer.stacked_batches.__func__

    def after_backward(self, model: nn.Module) -> None:
        """Act on gradients before the optimizer step."""

    @classmethod
    def stacked_after_backward(cls, members: list["Regularizer"],
                               parameters: list[torch.Tensor]) -> None:
        """Fused training (``fusable``): every member's ``after_backward`` at once on the
        stacked parameters [M, ...] (their ``.grad``); not defined: each member's own."""
        raise NotImplementedError

    def after_step(self, model: nn.Module) -> None:
        """Act on parameters after the optimizer step."""

    @classmethod
    def trains_solo(cls, params: dict[str, Any]) -> str:
        """Why a run with these parameters trains solo, for --dry-run; "" where it may fuse.
        By default ``solo_because`` unless the class is ``fusable``; a class that fuses only
        in some modes (DropConnect's per_batch) says which parameters keep a run solo."""
        return "" if cls.fusable else (cls.solo_because or "it is not declared fusable")

    @classmethod
    def fusion_key(cls, params: dict[str, Any]) -> str:
        """What members of one fused group must share of this regularizer's parameters
        beyond its name (e.g. grad_clip's mode); "" by default: any values fuse."""
        return ""

    @classmethod
    def stacked_after_step(cls, members: list["Regularizer"],
                           weights: list[torch.Tensor]) -> None:
        """Fused training (``fusable``): every member's ``after_step`` at once on the stacked
        weights [M, ...] its members hold; not defined: each member's own is called."""
        raise NotImplementedError

    def eval_weights(self, model: nn.Module, x_train: torch.Tensor) -> Optional[nn.Module]:
        """The module the run is evaluated with in place of ``model`` (an average of its
        weights: ema, swa), or None for ``model`` itself. The solo loop measures every epoch's
        train and val metrics, the test metrics and the weight statistics with it and saves it
        as model.pt (after fit_end). ``x_train`` (the training inputs, on the device) is for
        statistics the module recomputes, e.g. batch norm's. The fused loop does not call it: a
        regularizer that uses it trains solo."""
        return None

    def epoch_end(self, epoch: int, row: dict[str, float], model: nn.Module) -> None:
        """See the epoch's metrics after validation; may set ``should_stop``."""

    def fit_end(self, model: nn.Module) -> Optional[int]:
        """After training; may restore a state and return the epoch it came from."""
        return None

    def epoch_metrics(self, model: nn.Module) -> dict[str, float]:
        """Extra columns for metrics.csv (e.g. kl, prunable_fraction)."""
        return {}

    # --- description and validation --------------------------------------------------------
    @classmethod
    def overrides(cls, hook: str) -> bool:
        """Whether this class implements ``hook`` (``batches`` implements the batch hook too)."""
        methods = ("batch", "batches") if hook == "batch" else (hook,)
        return any(getattr(cls, m) is not getattr(Regularizer, m) for m in methods)

    @classmethod
    def hooks(cls) -> list[str]:
        """The hook points this regularizer overrides."""
        return [hook for hook in HOOKS if cls.overrides(hook)]

    @classmethod
    def check(cls, params: StrictModel, ctx: CheckContext) -> list[str]:
        """Refuse (raise Incompatible) or warn (return messages) about a recipe."""
        return []

    @classmethod
    def conflicts_with(cls, other: type["Regularizer"]) -> Optional[str]:
        """A warning when ``other`` in the same recipe defeats this one (both still run)."""
        return None

    @classmethod
    def is_weight_penalty(cls) -> bool:
        """Adds a prior on the weights to the loss (l1, l2, elastic net)."""
        return cls.penalizes and cls.overrides("penalty")

    def describe(self) -> str:
        """What this regularizer does in this run, with its effective coefficient."""
        return ""

    def penalized(self, model: nn.Module) -> list[tuple[str, torch.Tensor]]:
        return penalized_parameters(model, getattr(self.params, "include_bias", False))


REGULARIZERS: Registry[type[Regularizer]] = Registry("regularizer")


def register_regularizer(name: str):
    """Class decorator: register a :class:`Regularizer` subclass under ``name``, the YAML key
    of its recipes. A built-in's name is its module's (one file per regularizer); a class
    that sets ``name`` itself must set this one. A batch hook needs its ``batch_stage``."""
    def decorator(cls: type[Regularizer]) -> type[Regularizer]:
        if not (isinstance(cls, type) and issubclass(cls, Regularizer)):
            raise TypeError(f"register_regularizer({name!r}) decorates a subclass of "
                            "regbench.Regularizer")
        own = cls.__dict__.get("name")
        if own and own != name:
            raise ValueError(f"regularizer {cls.__name__}: its name '{own}' is not the "
                             f"registered name '{name}'")
        module_name = cls.__module__.rsplit(".", 1)[-1]
        plugin = not builtin(cls.__module__)
        if not plugin and name != module_name:
            raise ValueError(f"regularizer {cls.__name__}: name '{name}' must equal its module "
                             f"name '{module_name}'")
        if cls.overrides("batch") and cls.batch_stage not in BATCH_STAGES:
            raise ValueError(f"regularizer {name}: a batch hook needs batch_stage, one of "
                             f"{', '.join(BATCH_STAGES)} (got {cls.batch_stage!r})")
        REGULARIZERS.register(name)(cls)
        cls.name, cls.plugin = name, plugin
        return cls
    return decorator


def register(cls: type[Regularizer]) -> type[Regularizer]:
    """``@register``: ``register_regularizer(cls.name)``, for a class that names itself."""
    return register_regularizer(cls.name)(cls)


def batch_order(regularizers: list) -> list:
    """Regularizers (or their classes) in the order their batch hooks run: by BATCH_STAGES,
    then by name, never by the recipe's key order."""
    return sorted(regularizers, key=lambda reg: (BATCH_STAGES.index(reg.batch_stage), reg.name))


def hook_points(cls: type[Regularizer]) -> list[str]:
    """The hook points a regularizer uses, as docs/architecture.md names them (``wrap`` is
    part of the build step)."""
    return list(dict.fromkeys("build" if hook == "wrap" else hook for hook in cls.hooks()))


class WeightRegularizer(Regularizer):
    """A regularizer acting on the penalizable weights (linear/conv weights, and biases when
    ``include_bias``); collects them once when the model is built."""

    weights: list[torch.Tensor]

    def wrap(self, model: nn.Module) -> nn.Module:
        self.weights = [w for _, w in self.penalized(model)]
        return model


def member_by_member(members: list[Regularizer], x: torch.Tensor, y: torch.Tensor,
                     batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``stacked_batches`` of a batch hook whose every draw comes from ``own_generator``: each
    member's own ``batches`` on its rows of the block (one call per member per block, not per
    step), stacked; the same draws and the same arithmetic as its solo run."""
    pairs = [member.batches(x[index], y[index], batch_size)
             for index, member in enumerate(members)]
    return torch.stack([x for x, _ in pairs]), torch.stack([y for _, y in pairs])


def member_values(values: list[float], like: torch.Tensor) -> torch.Tensor:
    """A fused group's per-member strengths as a tensor [M] like ``like`` (its dtype and
    device), made once for the group and reused every step: building it from a list each
    step cost ~4% of a small MLP's fused step (benchmarks/fused_step.py). Read it, never
    change it in place: it is shared."""
    return _member_tensor(tuple(values), like.dtype, like.device)


@functools.lru_cache(maxsize=256)
def _member_tensor(values: tuple[float, ...], dtype: torch.dtype,
                   device: torch.device) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype, device=device)


def soft_targets(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Class indices -> one-hot probabilities; soft targets pass through unchanged."""
    if y.dtype.is_floating_point:
        return y
    return torch.nn.functional.one_hot(y, num_classes).to(torch.get_default_dtype())

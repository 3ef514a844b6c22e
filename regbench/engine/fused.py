"""Horizontally fused training: the runs of a sweep that share data, architecture and schedule
trained as one stacked model (Wang et al., MLSys 2021, "Horizontally Fused Training Array").

A small model's step is dispatch-bound (~0.35 ms for digits' MLP on 2 cores, most of it
Python and op launches), so M such runs cost M times that. Fused, the M members' parameters
are stacked along a leading member axis and every step is one batched forward and backward
(batched matrix products for an nn.Sequential MLP, else ``torch.func.vmap`` over
``functional_call``) and one optimizer step over the stacked tensors:

    members = [Trainer(spec_m) for each run]        # each built exactly as its solo run
    S[name] = stack(member_m's parameter `name`)    # [M, ...] leaves
    optimizer: over S itself when every member has the same optimizer settings, else one
      parameter group per setting over its members' slices S[a:b]
    each member's regularizers see views S[name][m] as their weights (made again on resume)
    per epoch: perm_m = member m's own randperm (its solo RNG stream)
      per step: x = X[perm[:, batch]] -> [M, B, ...]; loss_m = data_loss(model(S[m], x_m))
                objective = Σ_m (loss_m + Σ member m's penalties); backward; step
      measure: every member's eval metrics in one stacked pass (metrics with a member axis)
      epoch_end hooks (early stopping) on the member's own model, synced from its slice
    after an epoch, when due: the whole group (stacked weights, optimizer, every member's
      RNG, streams and regularizer state) checkpointed as one (engine.checkpoint)

What differs per member is kept per member: its seed (initial weights identical to its solo
run, its own batch order), its regularizers' strengths, dropout's p (its own masks), weight
noise's σ and DropConnect's p (its own draws on its slice of the stacked weights), its
optimizer settings (learning rate, momentum, betas, decay: its own parameter group, under the
shared schedule), its early stopping (a stopped member leaves the group with its state), its
divergence (a member whose objective, train or val loss turns NaN or infinite is recorded
``diverged`` and leaves; the stacked arithmetic never mixes members) and its run folder. What
can fuse (``fusable_key``): runs with the same dataset (``resample: fixed``), model layout,
training settings but the optimizer's, and regularizer names, on a model without buffers,
whose regularizers declare ``fusable`` and keep no run of theirs solo (``trains_solo``: l1,
l2, elastic_net, weight_decay, max_norm, grad_clip, early_stopping, dropout, weight_noise,
dropconnect with ``mode: per_batch``, and the batch hooks with a stacked form: input_noise,
label_smoothing, mixup, cutmix, cutout, random_erasing, augment; ``solo_reason`` says why any
other run trains solo). The batch hooks run on blocks of every member's batches, the blocks
its solo run gathers. Dropout, weight noise and DropConnect fuse in MLPs only (the stacked
path); through vmap the members would not draw from their own streams.

The solo loop (``Trainer`` in regbench/engine/train.py) is the reference: a fused member must
reproduce its solo run, and this loop is kept apart only for speed. Both resolve the device
(``resolve_device``), build an epoch's metrics.csv row (``split_columns``, ``TRAIN_COLUMNS``,
``epoch_row``) and decide divergence (``diverged``) with the same functions of train.py, so
the columns, their order and the statuses agree by construction. The arithmetic is the same
too: the loss is the shared per-sample mean (engine.metrics), a linear layer's products and
gradients those of nn.Linear (``MemberLinear``), the gradient norm the shared sum
(``gradient_norm``), the optimizer update the same elementwise arithmetic on each member's slice,
and dropout's masks, weight noise and DropConnect's masks the member's own streams
(regularizers/_streams.py, regularizers/_weight_layers.py: one arithmetic with a member axis
for the solo layer and the stacked one), the ones its solo run draws from. At one torch
thread a member's metrics.csv equals its solo run's bit for bit (with more, torch splits a
single product's sums across threads, and the last digits differ).
tests/test_fused.py checks it with no tolerance, whole fits of 20 epochs against solo fits:
    test_members_equal_their_solo_runs                       (every fusable regularizer)
    test_members_with_their_own_learning_rate_fuse_and_equal_their_solo_runs
    test_a_diverging_member_is_recorded_diverged_and_the_others_are_untouched
    test_dropout_members_draw_their_own_masks_at_their_own_p
    test_weight_transforms_give_each_member_its_own_draws_at_its_own_strength
    test_a_runs_numbers_depend_only_on_the_run                (fused, --fuse off, --seeds 1, resume)
"""
from __future__ import annotations

import json
import time
from typing import Any, Callable, NamedTuple, Optional

import torch

from regbench.data import DataBundle
from regbench.engine import optim
from regbench.engine.checkpoint import Checkpoints
from regbench.engine.result import GROUP_KEY, RunResult
from regbench.engine.train import (
    EVAL_CHUNK,
    GRAD_NORM_EVERY,
    TRAIN_COLUMNS,
    Trainer,
    diverged,
    epoch_row,
    make_optimizer,
    make_scheduler,
    resolve_device,
    split_columns,
    step_scheduler,
    weight_statistics,
)
from regbench.models import penalized_parameters
from regbench.regularizers import REGULARIZERS, Regularizer
from regbench.regularizers._streams import Uniforms, kept_scaled
from regbench.regularizers._weight_layers import TransformedConv2d, TransformedLinear
from regbench.regularizers.dropout import InvertedDropout
from regbench.vocabulary import GroupTask, RunSpec, Task

MIN_MEMBERS = 2
OTHER_HOOKS = ("epoch_metrics", "output_penalty", "consistency_penalty",  # hooks the fused
               "view_penalty", "perturb", "eval_weights")                 # loop never calls


def _cannot_fuse(spec: RunSpec) -> Optional[str]:
    """Why this run can never join a fused group, whatever its partners; None: it can."""
    if spec["dataset"].get("resample", "fixed") != "fixed":
        return (f"dataset.resample: {spec['dataset']['resample']} gives each seed its own "
                "data")
    schedule = spec["train"].get("scheduler") or {}
    if schedule.get("name") == "plateau":   # one scheduler steps every member at once
        return (f"train.scheduler plateau sets each run's rate from its own "
                f"{schedule.get('monitor', 'val_loss')}")
    for name in spec["regularizers"]:
        cls = REGULARIZERS.get(name)
        reason = cls.trains_solo(spec["regularizers"][name])
        if reason:
            return f"{name} trains solo: {reason}"
        hooks = [hook for hook in OTHER_HOOKS if cls.overrides(hook)]
        if hooks:                        # a hook the fused loop does not call
            return f"{name} has a {hooks[0]} hook, which the fused loop does not call"
        if cls.overrides("batch") and not cls.stacks_batches():
            return f"{name}'s batch hook has no stacked form (stacked_batches)"
    return None


def solo_reason(spec: RunSpec) -> str:
    """Why a run that is not in a fused group trains solo (for --dry-run)."""
    if spec["train"].get("fuse", "auto") == "off":
        return "train.fuse is off"
    return _cannot_fuse(spec) or ("no other run to train it with shares its data, model, "
                                  "training settings and regularizers")


def fusable_key(spec: RunSpec) -> Optional[str]:
    """What runs must share to train as one stacked model; None when this run cannot fuse."""
    if _cannot_fuse(spec):
        return None
    shared = {k: spec[k] for k in ("dataset", "model", "train")}
    if spec["dataset"].get("cv"):
        # the dataset section names the run's fold, but each seed draws its own folds: only
        # runs of one seed, repeat and fold share their data
        shared["seed"] = spec["seed"]
    # the optimizer's settings may differ (one parameter group each), not which optimizer
    shared["train"] = {**spec["train"], "optimizer": spec["train"]["optimizer"]["name"]}
    shared["regularizers"] = sorted(
        (name, REGULARIZERS.get(name).fusion_key(params))
        for name, params in spec["regularizers"].items())
    shared["plugins"] = sorted(spec.get("plugins", ()))
    return json.dumps(shared, sort_keys=True, default=str)


class ModelFacts(NamedTuple):
    """What planning learns of a run's model, built once on the CPU (runner.check_models)."""

    parameters: int
    stacks: bool          # runs as batched matrix products (``_stackable_layers``), else vmap
    layout: str           # what members must share beyond the config: their layers' types
                          # (stacked; dropout's p may differ), or the whole module (vmap)
    fuses: bool = True    # False: it cannot (random layers through vmap: no per-member
                          # streams)
    widest: int = 0       # the most units of any linear layer (stacked path)


# layers that draw in training forwards: each member draws from its own streams only on the
# stacked path (vmap would share one draw among members, or refuse it)
RANDOM_LAYERS = (torch.nn.modules.dropout._DropoutNd, TransformedLinear, TransformedConv2d)


def model_facts(model: torch.nn.Module) -> ModelFacts:
    layers = _stackable_layers(model)
    layout = repr([(name, type(layer).__name__) for name, layer in layers]) if layers \
        else repr(model)
    draws = any(isinstance(m, RANDOM_LAYERS) for m in model.modules())
    widest = max((layer.out_features for _, layer in layers or ()
                  if isinstance(layer, torch.nn.Linear)), default=0)
    return ModelFacts(sum(p.numel() for p in model.parameters()), layers is not None, layout,
                      fuses=layers is not None or not draws, widest=widest)


def fuse_tasks(specs: list[RunSpec], models: Optional[dict[str, ModelFacts]] = None
               ) -> list[Task]:
    """The runs as tasks: runs that can fuse grouped into one task spec each, the rest as they
    are; plan order kept (a group sits where its first run was). ``train.fuse: on`` groups
    every fusable run, ``off`` none, ``auto`` those ``worth_fusing`` given the run's model
    (``models``: run id -> its facts; unknown, as in a dry run, counts as worth it, and the
    fused trainer checks the layout when it builds the members)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    keys: dict[str, Optional[str]] = {}
    for spec in specs:
        key = fusable_key(spec)
        facts = (models or {}).get(spec["run_id"])
        if key is not None and facts is not None:
            key = key + facts.layout if facts.fuses else None
        keys[spec["run_id"]] = key
        mode = spec["train"].get("fuse", "auto")
        if key is not None and mode != "off" and (
                facts is None or worth_fusing(mode, resolve_device(spec["train"]["device"]),
                                              spec["train"]["batch_size"], facts)):
            groups.setdefault(key, []).append(spec)
    tasks, placed = [], set()
    for spec in specs:
        key = keys[spec["run_id"]]
        members = groups.get(key) if key is not None else None
        if not members or len(members) < MIN_MEMBERS:
            tasks.append(spec)
        elif key not in placed:
            placed.add(key)
            tasks.append(group_spec(members))
    return tasks


def group_spec(members: list[RunSpec]) -> GroupTask:
    """One task for the group; members with the same optimizer settings next to each other
    (one parameter group of the stacked optimizer each), in plan order otherwise."""
    settings = [json.dumps(m["train"]["optimizer"], sort_keys=True) for m in members]
    first_seen = {setting: settings.index(setting) for setting in settings}
    members = [m for _, m in sorted(zip(settings, members), key=lambda p: first_seen[p[0]])]
    first = members[0]
    return {"run_id": f"{first['run_id']} +{len(members) - 1} fused", GROUP_KEY: members,
            "train": first["train"], "dataset": first["dataset"], "seed": first["seed"],
            "plugins": first.get("plugins", [])}


# batch size × parameters up to which fusing was faster on 2 CPU cores (benchmarks/fused.py),
# for the stacked path (batched matrix products) and the vmap path (any other model)
CPU_FUSE_MAX_WORK = {True: 20_000_000, False: 2_500_000}
# the widest linear layer the stacked path pays for on the CPU (benchmarks/fused.py --only
# auto-grid: digits' MLP with one hidden layer of 1024 units fused 1.65–6.4× faster than solo,
# of 4096 units 0.92× on a quiet machine; nothing between was measured)
CPU_FUSE_MAX_WIDTH = 2048


def worth_fusing(mode: str, device: torch.device, batch_size: int, facts: ModelFacts) -> bool:
    """``fuse: on`` always; ``auto`` where it was measured to be faster (benchmarks/fused.py).
    On a GPU a small model's step is launch-bound, so fusing pays; on the CPU it pays while a
    step is dispatch-bound, i.e. while batch size × parameters is small. Measured on 2 cores
    (24 runs, training time solo ÷ fused): on the stacked path digits' 64-128-10 MLP at batch
    32 (0.3 M) 5.5×, the synthetic 40-256-4 MLP (0.4 M) 4.5×, the 784-256-256-10 MLP at batch
    64 (17 M) 1.5×, the 784-1024-1024-10 MLP at batch 128 (239 M) 0.53× (slower); through vmap
    digits' residual MLP (2.4 M) 2.3×, the 784-256-256-10 MLP (17 M) 0.6×. Each limit sits
    just above the largest size measured to pay: nothing between was measured. A stacked
    layer wider than CPU_FUSE_MAX_WIDTH trains solo too: digits' 64-4096-10 MLP (9.8 M) fused
    0.92× solo, where 64-1024-10 (2.5 M) fused 1.65–6.4× (``--only auto-grid``). Per-weight
    draws and batch hooks leave the limit where it is (their work is the same solo and fused,
    5 values × 4 seeds, 2 cores shared with other work): at 17 M weight noise 1.27–1.55×,
    mixup 1.26× (l2 1.30× that day); on digits' MLP input noise 2.2–3.9×, mixup 1.8–4.0×,
    weight noise 4.2–6.2×, DropConnect per batch 4.5–8.3×."""
    if mode == "on":
        return True
    if mode == "off":
        return False
    return device.type == "cuda" or (
        batch_size * facts.parameters <= CPU_FUSE_MAX_WORK[facts.stacks]
        and facts.widest <= CPU_FUSE_MAX_WIDTH)


ELEMENTWISE = (torch.nn.ReLU, torch.nn.Tanh, torch.nn.Sigmoid, torch.nn.GELU,
               torch.nn.LeakyReLU, torch.nn.ELU, torch.nn.SiLU, torch.nn.Softplus,
               torch.nn.Identity)


def _stackable_layers(model: torch.nn.Module, prefix: str = ""
                      ) -> Optional[list[tuple[str, torch.nn.Module]]]:
    """The layers of an nn.Sequential (nested ones flattened, as module surgery leaves an
    activation followed by its dropout) that a member axis can run through: Flatten of
    everything after the batch axis, Linear, elementwise activations, dropout with each
    member's own p, linear layers whose training forward transforms the weights (weight noise,
    DropConnect per batch: each member its own draws). None for any other model."""
    if type(model) is not torch.nn.Sequential:
        return None
    layers = []
    for name, layer in model.named_children():
        if type(layer) is torch.nn.Sequential:
            inner = _stackable_layers(layer, f"{prefix}{name}.")
            if inner is None:
                return None
            layers += inner
            continue
        if isinstance(layer, torch.nn.Flatten):
            if (layer.start_dim, layer.end_dim) != (1, -1):
                return None
        elif isinstance(layer, TransformedLinear):
            if not layer.stackable:
                return None
        elif type(layer) not in (torch.nn.Linear, InvertedDropout, *ELEMENTWISE):
            return None   # exact types only; a plain nn.Dropout draws from the global RNG solo
        layers.append((f"{prefix}{name}", layer))
    return layers


class MemberLinear(torch.autograd.Function):
    """h [M, B, in] · W[m]ᵀ + b[m] for every member at once, whose backward takes each member's
    gradients with the products nn.Linear's backward takes (g·W, gᵀ·h, Σ g over the batch):
    autograd's own backward of a batched product forms the weight gradient as hᵀ·g, which
    rounds differently, and a fused member would drift from its solo run. With these products
    a member's forward and gradients equal its solo run's bit for bit on the CPU
    (tests/test_fused.py)."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, weight: torch.Tensor,
                bias: Optional[torch.Tensor]) -> torch.Tensor:
        ctx.save_for_backward(h, weight)
        ctx.has_bias = bias is not None
        transposed = weight.transpose(1, 2)
        return torch.bmm(h, transposed) if bias is None else \
            torch.baddbmm(bias.unsqueeze(1), h, transposed)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        h, weight = ctx.saved_tensors
        grad_h = torch.bmm(grad, weight) if ctx.needs_input_grad[0] else None
        grad_weight = torch.bmm(grad.transpose(1, 2), h) if ctx.needs_input_grad[1] else None
        grad_bias = grad.sum(1) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_h, grad_weight, grad_bias


def _stream(member: Trainer, name: str) -> str:
    """The stream a member's dropout layer draws from: the one its solo run draws from."""
    layer = member.model.get_submodule(name)
    return getattr(layer, "stream", None) or f"{member.spec['run_id']} {name}"


class _MemberOptimizer:
    """What a member's regularizers read as ``ctx.optimizer``: its own parameter group (its
    learning rate under the shared schedule)."""

    def __init__(self, group: dict[str, Any]):
        self.param_groups = [group]


class FusedTrainer:
    """Trains the members (solo Trainers) of one group as one stacked model."""

    def __init__(self, specs: list[RunSpec], data: DataBundle, device: torch.device):
        self.members: list[Trainer] = []
        self.rng: list[torch.Tensor] = []
        for spec in specs:      # each built as its solo run builds it (seeded build hooks)
            trainer = Trainer(spec, data, device)
            if self.members:      # measured once for all (fused measure_epoch)
                trainer.train_eval = self.members[0].train_eval
            self.members.append(trainer)
            self.rng.append(_rng_state(device))
        self.device, self.data = device, data
        first = self.members[0]
        self.template = first.model
        if any(True for _ in self.template.buffers()):
            raise ValueError("a model with buffers (batch norm) does not fuse")
        self.names = [name for name, p in self.template.named_parameters() if p.requires_grad]
        self.penalized: dict[tuple[int, str], list[str]] = {}
        self.stacked = {name: torch.stack([dict(m.model.named_parameters())[name].detach()
                                           for m in self.members]).requires_grad_(True)
                        for name in self.names}
        self.optimizer, self.slices = self._optimizer()
        self.scheduler = make_scheduler(self.optimizer, first.train_cfg.get("scheduler"),
                                        first.train_cfg["epochs"])
        # each member's parameter group
        self.group_of = [g for g, (a, b) in enumerate(self.slices) for _ in range(a, b)]
        for index, member in enumerate(self.members):
            group = self.optimizer.param_groups[self.group_of[index]]
            member.ctx.optimizer = _MemberOptimizer(group)   # ctx.lr: its group's, scheduled
            by_id = {id(p): name for name, p in member.model.named_parameters()}
            for reg in member.regularizers:                  # their weights: views of S
                if hasattr(reg, "weights"):
                    names = [by_id[id(w)] for w in reg.weights]
                    reg.weights = [self.stacked[name][index] for name in names]
                    self.penalized[(index, reg.name)] = names
        self.penalties = self._stacked_plan("penalty", "stacked_penalty")
        self.after_steps = self._stacked_plan("after_step", "stacked_after_step")
        self.after_backwards = [(cls, regs) for cls, regs, _ in
                                self._stacked_plan("after_backward", "stacked_after_backward")]
        self.forward_all = self._batched_model()
        loss = self.members[0].data_loss          # the solo loss: its member axis gives [M]
        self.forward = lambda params, x, y: loss(self.forward_all(params, x), y)
        self.measured_weights = [name for name, _ in penalized_parameters(self.template)]
        self.frozen = False               # a member left: its gradients are zeroed
        # where training stands (a checkpoint keeps it): each member's rows and status, who
        # still trains, the last epoch trained and the seconds trained before a resume
        count = len(self.members)
        self.rows: list[list[dict]] = [[] for _ in range(count)]
        self.status = ["completed"] * count
        self.active = torch.ones(count, dtype=torch.bool, device=self.device)
        self.training = list(range(count))
        self.epoch, self.elapsed = 0, 0.0
        self.checkpoints = Checkpoints(specs, device)

    TRANSIENT = ("data", "checkpoints")    # what a checkpoint leaves out (see Trainer's)

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in self.TRANSIENT}

    def resume(self) -> "FusedTrainer":
        """The group its checkpoint left (the same members, in the same order, checked by
        engine.checkpoint), on this one's data; itself when there is none."""
        state = self.checkpoints.read()
        if state is None:
            return self
        group = state["trainer"]
        for key in self.TRANSIENT:
            setattr(group, key, getattr(self, key))
        for restored, fresh in zip(group.members, self.members):
            for key in Trainer.TRANSIENT:
                setattr(restored, key, getattr(fresh, key))
            restored.resumed_from = group.epoch
        # a regularizer's weights were views of the stacked tensors; unpickled they are
        # tensors of their own (same storage, no autograd link): its penalty would reach no
        # gradient, so they become views again
        for (index, name), weights in group.penalized.items():
            reg = next(r for r in group.members[index].regularizers if r.name == name)
            reg.weights = [group.stacked[weight][index] for weight in weights]
        group.elapsed = state["elapsed"]
        return group

    def _optimizer(self) -> tuple[torch.optim.Optimizer, list[tuple[int, int]]]:
        """One optimizer over the stacked tensors: over the tensors themselves when every
        member has the same settings (no gradient views to refresh each step), else one
        parameter group per run of consecutive members with the same optimizer settings
        (``group_spec`` orders them so), each group over its members' slice ``S[a:b]`` of
        every stacked tensor: members may differ in
        learning rate, momentum, betas or decay, and each slice steps as its solo run's
        optimizer would (torch's updates are elementwise)."""
        slices: list[tuple[int, int]] = []
        for index, member in enumerate(self.members):
            config = member.train_cfg["optimizer"]
            if slices and config == self.members[slices[-1][0]].train_cfg["optimizer"]:
                slices[-1] = (slices[-1][0], index + 1)
            else:
                slices.append((index, index + 1))
        optimizer = None
        for start, stop in slices:   # one group over all: the stacked tensors themselves
            views = [self.stacked[name] if len(slices) == 1 else
                     self.stacked[name].detach()[start:stop] for name in self.names]
            built = make_optimizer(views, self.members[start].train_cfg["optimizer"])
            if optimizer is None:
                optimizer = built
            else:                           # its group as make_optimizer set it up
                optimizer.add_param_group(built.param_groups[0])
        return optimizer, slices

    def _stacked_plan(self, hook: str, stacked_form: str
                      ) -> list[tuple[Any, list, Optional[list[str]]]]:
        """For each regularizer name with ``hook``: (class, the members' instances, the
        stacked weight names when every member holds the same ones and the class has the
        ``stacked_form`` of the hook; else None: each member's own hook is called)."""
        plan = []
        for reg in self.members[0].hooks[hook]:
            cls = type(reg)
            regs = [next(r for r in m.regularizers if r.name == reg.name) for m in self.members]
            names = {tuple(self.penalized.get((i, reg.name), ())) for i in range(len(regs))}
            stacked = len(names) == 1 and \
                getattr(cls, stacked_form).__func__ is not \
                getattr(Regularizer, stacked_form).__func__
            plan.append((cls, regs, list(next(iter(names))) if stacked else None))
        return plan

    def penalty(self) -> torch.Tensor:
        """Every member's total penalty [M]."""
        total = None
        for cls, regs, names in self.penalties:
            term = cls.stacked_penalty(regs, [self.stacked[n] for n in names]) \
                if names is not None else None
            if term is None:       # no stacked form (or it declined): each member's own
                term = torch.stack([r.penalty(m.model) for r, m in zip(regs, self.members)])
            total = term if total is None else total + term
        return torch.zeros(len(self.members), device=self.device) if total is None else total

    def _batched_model(self) -> Callable:
        """params, x [M, B, ...] (or [B, ...]: the same inputs for every member) -> each
        member's output [M, B, out]. A plain stack of layers (``_stackable_layers``: regbench's
        mlp and linear, with or without dropout) runs as batched matrix products; any other
        model through ``torch.func.vmap`` over ``functional_call``
        (measured: 3.3 ms vs 0.6 ms per step for 20 digits MLPs on 2 cores,
        benchmarks/fused.py)."""
        from torch.func import functional_call, vmap

        template, count = self.template, len(self.members)
        sample_dims = len(self.data.input_shape)
        layers = _stackable_layers(template)
        facts = [model_facts(m.model) for m in self.members]
        layouts = {f.layout for f in facts}
        if len(layouts) > 1:
            raise ValueError("the members' models differ in their layers: "
                             + " vs ".join(sorted(layouts)))
        if layers is not None:
            dropouts = [name for name, layer in layers if isinstance(layer, torch.nn.Dropout)]
            keep = {name: torch.tensor([1 - m.model.get_submodule(name).p
                                        for m in self.members], device=self.device)
                    for name in dropouts}
            draws = {name: Uniforms([_stream(m, name) for m in self.members], self.device)
                     for name in dropouts}
            # each member's weight transform of a layer (its own stream and strength)
            transforms = {name: [m.model.get_submodule(name).transform for m in self.members]
                          for name, layer in layers if isinstance(layer, TransformedLinear)}

            def stacked(params, x):
                h = x if x.dim() > sample_dims + 1 else x.expand(count, *x.shape)
                for name, layer in layers:
                    if isinstance(layer, torch.nn.Flatten):
                        h = h.flatten(2)
                    elif isinstance(layer, torch.nn.Dropout):
                        if layer.training:
                            h = kept_scaled(h, keep[name],
                                            draws[name].take(h.shape[1], tuple(h.shape[2:])))
                    elif isinstance(layer, torch.nn.Linear):
                        weight, bias = params[f"{name}.weight"], params.get(f"{name}.bias")
                        if layer.training and name in transforms:
                            weight, bias = type(transforms[name][0]).stacked(
                                transforms[name], weight, bias)
                        h = MemberLinear.apply(h, weight, bias)
                    else:
                        h = layer(h)          # elementwise: the member axis is one more
                return h
            return stacked

        if not facts[0].fuses:
            raise ValueError("dropout, DropConnect and weight noise fuse only in an "
                             "nn.Sequential MLP (each member its own draws); this model "
                             "trains solo")

        def one(params, x):
            return functional_call(template, params, (x,))

        per_member, shared = vmap(one), vmap(one, in_dims=(0, None))
        return lambda params, x: per_member(params, x) if x.dim() > sample_dims + 1 \
            else shared(params, x)

    def _permutations(self) -> torch.Tensor:
        """Each member's epoch permutation from its own RNG stream, as its solo run draws it."""
        rows = []
        for index in range(len(self.members)):
            _set_rng_state(self.device, self.rng[index])
            rows.append(torch.randperm(self.data.n_train, device=self.device))
            self.rng[index] = _rng_state(self.device)
        return torch.stack(rows)

    def _batches(self, permutation: torch.Tensor, batch_size: int):
        """Every member's training batches at once, as its solo run's ``_batches`` makes them:
        blocks of the same rows gathered in its own order, through the batch hooks in the same
        order (each member with its own parameters and streams: ``stacked_batches``), then
        split into batches."""
        x_all, y_all = self.data.x_train, self.data.y_train
        hooks = [(type(reg), [m.hooks["batch"][index] for m in self.members])
                 for index, reg in enumerate(self.members[0].hooks["batch"])]
        for block in permutation.split(self.members[0].block_rows, dim=1):
            x, y = x_all[block], y_all[block]                # [M, R, ...], [M, R]
            for cls, regs in hooks:
                x, y = cls.stacked_batches(regs, x, y, batch_size)
            yield from zip(x.split(batch_size, dim=1), y.split(batch_size, dim=1))

    def train_epoch(self, active: torch.Tensor) -> list[dict[str, float]]:
        members, count = self.members, len(self.members)
        batch_size = members[0].train_cfg["batch_size"]
        permutation = self._permutations()
        self.template.train()           # measuring left it in eval mode
        objective_sum = torch.zeros(count, device=self.device)
        penalty_sum = torch.zeros(count, device=self.device)
        grad_norm_sum = torch.zeros(count, device=self.device)
        steps = measured = 0
        params = list(self.stacked.values())
        groups = [] if len(self.slices) == 1 else \
            [(group["params"], start, stop) for group, (start, stop)
             in zip(self.optimizer.param_groups, self.slices)]
        for x, y in self._batches(permutation, batch_size):   # [M, B, ...], [M, B(, K)]
            loss = self.forward(self.stacked, x, y)          # [M]
            penalty = self.penalty()
            objective = loss + penalty
            for p in params:
                p.grad = None
            objective.sum().backward()
            if self.frozen:   # a member that left gets no gradient (momentum and decay may
                              # still move its slice: its model took its weights as it left)
                for p in params:
                    p.grad[~active] = 0
            for views, start, stop in groups:   # each group's slice of the stacked gradients
                for view, p in zip(views, params):
                    view.grad = p.grad[start:stop]
            if steps % GRAD_NORM_EVERY == 0:
                squares = sum(p.grad.flatten(1).pow(2).sum(1) for p in params)
                grad_norm_sum.add_(squares.sqrt())
                measured += 1
            for cls, regs in self.after_backwards:
                if cls.stacked_after_backward.__func__ is not \
                        Regularizer.stacked_after_backward.__func__:
                    cls.stacked_after_backward(regs, params)
                else:
                    for reg, m in zip(regs, members):
                        reg.after_backward(m.model)
            optim.eager_step(self.optimizer)
            for cls, regs, names in self.after_steps:
                if names is not None:
                    cls.stacked_after_step(regs, [self.stacked[n] for n in names])
                else:
                    for reg, m in zip(regs, members):
                        reg.after_step(m.model)
            objective_sum.add_(objective.detach())
            penalty_sum.add_(penalty.detach())
            steps += 1
        sums = torch.stack([objective_sum / steps, penalty_sum / steps, grad_norm_sum / measured])
        return [dict(zip(TRAIN_COLUMNS, member)) for member in sums.T.tolist()]

    @torch.inference_mode()
    def measure_epoch(self) -> list[dict[str, float]]:
        """Every member's eval-mode metrics of the train subset and the val split and its
        weight statistics, as its solo Trainer's ``measure_epoch`` computes them, in one pass
        over the stacked model (one host sync)."""
        self.template.eval()
        chunk = EVAL_CHUNK.get(self.device.type, 8192)

        def predict(x: torch.Tensor) -> torch.Tensor:                   # [M, N, out]
            return torch.cat([self.forward_all(self.stacked, part) for part in x.split(chunk)],
                             dim=1)

        measured = split_columns(self.data, self.members[0].train_eval, predict)
        measured.update(weight_statistics([self.stacked[name] for name in self.measured_weights],
                                          self.device, len(self.members)))
        keys = list(measured)
        table = torch.stack([measured[k].float() for k in keys], dim=1).tolist()
        return [dict(zip(keys, values)) for values in table]

    @torch.no_grad()
    def _sync(self, index: int) -> None:
        """Member ``index``'s model takes its slice of the stacked parameters."""
        for name, param in self.members[index].model.named_parameters():
            if name in self.stacked:
                param.copy_(self.stacked[name][index])

    def fit(self, on_epoch: Optional[Callable[[RunSpec, dict], None]] = None
            ) -> list[RunResult]:
        """Train every member, each as its solo ``Trainer.fit`` would: a member whose metrics
        turn non-finite is ``diverged``, one whose regularizer stops it (early stopping) keeps
        its state from then. Either leaves the group and the others train on. A member's own
        model takes its slice when it leaves, or at the end."""
        started = time.perf_counter() - self.elapsed
        count = len(self.members)
        rows, status, active, training = self.rows, self.status, self.active, self.training
        epochs = self.members[0].train_cfg["epochs"]
        try:
            for epoch in range(self.epoch + 1, epochs + 1):
                lrs = [float(group["lr"]) for group in self.optimizer.param_groups]
                began = time.perf_counter()
                trained = self.train_epoch(active)
                measured = self.measure_epoch()
                share = (time.perf_counter() - began) / len(training)  # each member's share
                for index in list(training):
                    member = self.members[index]
                    member.ctx.epoch = epoch
                    row = epoch_row(epoch, share, lrs[self.group_of[index]], trained[index],
                                    measured[index])
                    rows[index].append(row)
                    if diverged(row):
                        status[index] = "diverged"      # keeps the weights it had then
                    elif member.hooks["epoch_end"]:
                        self._sync(index)               # its hooks read its own model
                        for reg in member.hooks["epoch_end"]:
                            reg.epoch_end(epoch, row, member.model)
                    if status[index] == "diverged" or (
                            epoch < epochs and any(r.should_stop for r in member.regularizers)):
                        self._sync(index)
                        training.remove(index)
                        active[index] = False
                        self.frozen = True
                if on_epoch is not None:   # every member that trained this epoch, its own row
                    for member, member_rows in zip(self.members, rows):
                        if member_rows and member_rows[-1]["epoch"] == epoch:
                            on_epoch(member.spec, member_rows[-1])
                if self.scheduler is not None:   # never plateau, which trains solo
                    step_scheduler(self.scheduler, row)
                if not training:
                    break
                self.epoch = epoch
                self.checkpoints.after(epoch, self, time.perf_counter() - started)
        except KeyboardInterrupt:
            for index in training:        # a member that already left keeps its status
                status[index] = "interrupted"
        seconds = (time.perf_counter() - started) / count
        results = []
        for index in training:
            self._sync(index)
        for index, member in enumerate(self.members):
            result = member.finish(rows[index], status[index], seconds)
            result.summary["fused"] = {"members": count,
                                       "group": self.members[0].spec["run_id"]}
            results.append(result)
        return results


def _rng_state(device: torch.device) -> torch.Tensor:
    if device.type == "cuda":
        return torch.cuda.get_rng_state(device)
    return torch.get_rng_state()


def _set_rng_state(device: torch.device, state: torch.Tensor) -> None:
    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    else:
        torch.set_rng_state(state)

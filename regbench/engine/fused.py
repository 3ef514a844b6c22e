"""Horizontally fused training: the runs of a sweep that share data, architecture and schedule
trained as one stacked model (Wang et al., MLSys 2021, "Horizontally Fused Training Array").

A small model's step is dispatch-bound (~0.35 ms for digits' MLP on 2 cores, most of it
Python and op launches), so M such runs cost M times that. Fused, the M members' parameters
are stacked along a leading member axis and every step is one batched forward and backward
(``torch.func.vmap`` over ``functional_call``) and one optimizer step over the stacked tensors:

    members = [Trainer(spec_m) for each run]        # each built exactly as its solo run
    S[name] = stack(member_m's parameter `name`)    # [M, ...] leaves, one optimizer over them
    each member's regularizer sees views S[name][m] as its weights
    per epoch: perm_m = member m's own randperm (its solo RNG stream)
      per step: x = X[perm[:, batch]] -> [M, B, ...]; loss_m = data_loss(model(S[m], x_m))
                objective = Σ_m (loss_m + Σ member m's penalties); backward; step
      measure each member: copy S[·][m] into its model, the solo Trainer's measure_epoch

What differs per member is kept per member: its seed (initial weights identical to its solo
run, its own batch order), its regularizers' strengths, its divergence (a member whose loss
turns NaN is recorded ``diverged`` and its gradients zeroed; the stacked arithmetic never mixes
members) and its run folder. What can fuse (``fusable_key``): runs with the same dataset
(``resample: fixed``), model, training settings and regularizer names, on a model without
buffers, whose regularizers declare ``fusable`` (their hooks act on ``self.weights`` only:
l1, l2, elastic_net, weight_decay). Everything else trains solo.

The optimizer update is the same elementwise arithmetic on each member's slice; the batched
matrix products round differently from single ones, so a member's per-epoch metrics equal its
solo run's to float tolerance, not bit for bit (tests/test_fused.py).
"""
from __future__ import annotations

import json
import math
import time
from typing import Any, Callable, Optional

import torch

from regbench.data import DataBundle
from regbench.engine import optim
from regbench.engine.result import GROUP_KEY, RunResult
from regbench.engine.train import GRAD_NORM_EVERY, Trainer, make_optimizer, make_scheduler
from regbench.regularizers import REGULARIZERS, Regularizer

MIN_MEMBERS = 2
OTHER_HOOKS = ("build", "batch", "batches", "epoch_end", "fit_end", "epoch_metrics")


def fusable_key(spec: dict[str, Any]) -> Optional[str]:
    """What runs must share to train as one stacked model; None when this run cannot fuse."""
    if spec["dataset"].get("resample", "fixed") != "fixed":
        return None                      # each seed has its own data
    for name in spec["regularizers"]:
        cls = REGULARIZERS.get(name)
        if not cls.fusable or any(cls.overrides(hook) for hook in OTHER_HOOKS):
            return None                  # a hook the fused loop does not call: train it solo
    shared = {k: spec[k] for k in ("dataset", "model", "train")}
    shared["regularizers"] = sorted(spec["regularizers"])
    shared["plugins"] = sorted(spec.get("plugins", ()))
    return json.dumps(shared, sort_keys=True, default=str)


def fuse_tasks(specs: list[dict[str, Any]], parameters: Optional[dict[str, int]] = None
               ) -> list[dict[str, Any]]:
    """The runs as tasks: runs that can fuse grouped into one task spec each, the rest as they
    are; plan order kept (a group sits where its first run was). ``train.fuse: on`` groups
    every fusable run, ``off`` none, ``auto`` those ``worth_fusing`` given the run's parameter
    count (``parameters``: run id -> count; unknown, as in a dry run, counts as worth it)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for spec in specs:
        key = fusable_key(spec)
        mode = spec["train"].get("fuse", "auto")
        count = (parameters or {}).get(spec["run_id"])
        if key is not None and mode != "off" and (
                count is None or worth_fusing(mode, _device(spec), spec["train"]["batch_size"],
                                              count)):
            groups.setdefault(key, []).append(spec)
    tasks, placed = [], set()
    for spec in specs:
        key = fusable_key(spec)
        members = groups.get(key) if key is not None else None
        if not members or len(members) < MIN_MEMBERS:
            tasks.append(spec)
        elif key not in placed:
            placed.add(key)
            tasks.append(group_spec(members))
    return tasks


def group_spec(members: list[dict[str, Any]]) -> dict[str, Any]:
    first = members[0]
    return {"run_id": f"{first['run_id']} +{len(members) - 1} fused", GROUP_KEY: members,
            "train": first["train"], "dataset": first["dataset"], "seed": first["seed"],
            "plugins": first.get("plugins", [])}


CPU_FUSE_MAX_WORK = 2_000_000    # batch size × parameters up to which fusing was faster on the CPU


def worth_fusing(mode: str, device: torch.device, batch_size: int, parameters: int) -> bool:
    """``fuse: on`` always; ``auto`` where it was measured to be faster (benchmarks/fused.py).
    On a GPU a small model's step is launch-bound, so fusing pays; on the CPU it pays while a
    step is dispatch-bound, i.e. while batch size × parameters is small. Measured on 2 cores
    (5 epochs, 24 runs): digits' 64-128-10 MLP at batch 32 (0.3 M) trains 3.6× faster fused,
    the synthetic 40-256-4 MLP (0.4 M) 3.2×, the 784-256-256-10 MLP at batch 64 (17 M) 1.3×.
    The limit was set before the batched-matmul path, when that last one was 0.6× (slower):
    it is conservative now, and keeps auto from fusing where no measurement says it pays."""
    if mode == "on":
        return True
    if mode == "off":
        return False
    return device.type == "cuda" or batch_size * parameters <= CPU_FUSE_MAX_WORK


def _member_losses(task: str) -> Callable:
    """output [M, B, ...], y [M, B(, out)] -> each member's data loss [M], as
    engine.metrics' classification_loss / regression_loss compute it for one member."""
    if task == "classification":
        def cross_entropy(output, y):
            per_sample = torch.nn.functional.cross_entropy(output.flatten(0, 1), y.flatten(0, 1),
                                                           reduction="none")
            return per_sample.view(y.shape[:2]).mean(1)
        return cross_entropy

    def half_squared_error(output, y):
        return 0.5 * (output - y).pow(2).sum(dim=-1).mean(dim=1)
    return half_squared_error


ELEMENTWISE = (torch.nn.ReLU, torch.nn.Tanh, torch.nn.Sigmoid, torch.nn.GELU,
               torch.nn.LeakyReLU, torch.nn.ELU, torch.nn.SiLU, torch.nn.Softplus,
               torch.nn.Identity)


def _stackable_layers(model: torch.nn.Module) -> Optional[list[tuple[str, torch.nn.Module]]]:
    """The layers of an nn.Sequential that a member axis can run through as they are
    (Flatten of everything after the batch axis, Linear, elementwise activations); None for
    any other model."""
    if type(model) is not torch.nn.Sequential:
        return None
    layers = list(model.named_children())
    for _, layer in layers:
        if isinstance(layer, torch.nn.Flatten):
            if (layer.start_dim, layer.end_dim) != (1, -1):
                return None
        elif type(layer) not in (torch.nn.Linear, *ELEMENTWISE):   # exact types only
            return None
    return layers


def _device(spec: dict[str, Any]) -> torch.device:
    device = spec["train"]["device"]
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class FusedTrainer:
    """Trains the members (solo Trainers) of one group as one stacked model."""

    def __init__(self, specs: list[dict[str, Any]], data: DataBundle, device: torch.device):
        self.members: list[Trainer] = []
        self.rng: list[torch.Tensor] = []
        for spec in specs:      # each built as its solo run builds it (seeded build hooks)
            trainer = Trainer(spec, data, device)
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
        self.optimizer = make_optimizer(list(self.stacked.values()),
                                        first.train_cfg["optimizer"])
        self.scheduler = make_scheduler(self.optimizer, first.train_cfg.get("scheduler"),
                                        first.train_cfg["epochs"])
        for index, member in enumerate(self.members):
            member.ctx.optimizer = self.optimizer            # ctx.lr: the shared schedule
            by_id = {id(p): name for name, p in member.model.named_parameters()}
            for reg in member.regularizers:                  # their weights: views of S
                if hasattr(reg, "weights"):
                    names = [by_id[id(w)] for w in reg.weights]
                    reg.weights = [self.stacked[name][index] for name in names]
                    self.penalized[(index, reg.name)] = names
        self.penalties = self._penalty_plan()
        self.forward = self._batched_loss()
        self.dead = False                 # a member diverged: its gradients are zeroed

    def _penalty_plan(self) -> list[tuple[Any, list, Optional[list[str]]]]:
        """For each regularizer name with a penalty: (class, the members' instances, the
        stacked weight names when every member penalizes the same ones and the class has a
        stacked_penalty; else None: each member's own penalty is called)."""
        plan = []
        for reg in self.members[0].hooks["penalty"]:
            cls = type(reg)
            regs = [next(r for r in m.regularizers if r.name == reg.name) for m in self.members]
            names = {tuple(self.penalized.get((i, reg.name), ())) for i in range(len(regs))}
            stacked = len(names) == 1 and \
                cls.stacked_penalty.__func__ is not Regularizer.stacked_penalty.__func__
            plan.append((cls, regs, list(next(iter(names))) if stacked else None))
        return plan

    def penalty(self) -> torch.Tensor:
        """Every member's total penalty [M]."""
        total = torch.zeros(len(self.members), device=self.device)
        for cls, regs, names in self.penalties:
            if names is not None:
                total = total + cls.stacked_penalty(regs, [self.stacked[n] for n in names])
            else:
                total = total + torch.stack([r.penalty(m.model)
                                             for r, m in zip(regs, self.members)])
        return total

    @property
    def work(self) -> int:
        """Batch size × parameters of one member: what decides whether fusing pays."""
        return self.members[0].train_cfg["batch_size"] * sum(
            p.numel() for p in self.template.parameters())

    def _batched_loss(self) -> Callable:
        """params, x [M, B, ...], y [M, B] -> each member's data loss [M]. A plain stack of
        layers (nn.Sequential of Flatten, Linear and elementwise activations, as regbench's
        mlp and linear) runs as batched matrix products; any other model through
        ``torch.func.vmap`` over ``functional_call`` (measured: 3.3 ms vs 0.6 ms per step for
        20 digits MLPs on 2 cores, benchmarks/fused.py)."""
        from torch.func import functional_call, vmap

        template, data_loss = self.template, self.members[0].data_loss
        loss = _member_losses(self.data.task)
        layers = _stackable_layers(template)
        if layers is not None:
            def stacked(params, x, y):
                h = x
                for name, layer in layers:
                    if isinstance(layer, torch.nn.Flatten):
                        h = h.flatten(2)
                    elif isinstance(layer, torch.nn.Linear):
                        weight = params[f"{name}.weight"].transpose(1, 2)
                        bias = params.get(f"{name}.bias")
                        h = torch.bmm(h, weight) if bias is None else \
                            torch.baddbmm(bias.unsqueeze(1), h, weight)
                    else:
                        h = layer(h)          # elementwise: the member axis is one more
                return loss(h, y)
            return stacked

        def one(params, x, y):
            return data_loss(functional_call(template, params, (x,)), y)

        return vmap(one)

    def _permutations(self) -> torch.Tensor:
        """Each member's epoch permutation from its own RNG stream, as its solo run draws it."""
        rows = []
        for index in range(len(self.members)):
            _set_rng_state(self.device, self.rng[index])
            rows.append(torch.randperm(self.data.n_train, device=self.device))
            self.rng[index] = _rng_state(self.device)
        return torch.stack(rows)

    def train_epoch(self, alive: torch.Tensor) -> list[dict[str, float]]:
        members, count = self.members, len(self.members)
        batch_size = members[0].train_cfg["batch_size"]
        permutation = self._permutations()
        self.template.train()           # measuring left it in eval mode
        x_all, y_all = self.data.x_train, self.data.y_train
        objective_sum = torch.zeros(count, device=self.device)
        penalty_sum = torch.zeros(count, device=self.device)
        grad_norm_sum = torch.zeros(count, device=self.device)
        steps = measured = 0
        params = list(self.stacked.values())
        for block in permutation.split(batch_size, dim=1):
            x, y = x_all[block], y_all[block]                # [M, B, ...], [M, B]
            loss = self.forward(self.stacked, x, y)          # [M]
            penalty = self.penalty()
            objective = loss + penalty
            self.optimizer.zero_grad(set_to_none=True)
            objective.sum().backward()
            if self.dead:                # a diverged member stays where it is
                for p in params:
                    p.grad[~alive] = 0
            if steps % GRAD_NORM_EVERY == 0:
                squares = sum(p.grad.flatten(1).pow(2).sum(1) for p in params)
                grad_norm_sum.add_(squares.sqrt())
                measured += 1
            for m in members:
                for reg in m.hooks["after_backward"]:
                    reg.after_backward(m.model)
            optim.eager_step(self.optimizer)
            for m in members:
                for reg in m.hooks["after_step"]:
                    reg.after_step(m.model)
            objective_sum.add_(objective.detach())
            penalty_sum.add_(penalty.detach())
            steps += 1
        stats = torch.stack([objective_sum / steps, penalty_sum / steps,
                             grad_norm_sum / measured]).T.tolist()
        return [{"objective": o, "penalty": p, "grad_norm": g} for o, p, g in stats]

    @torch.no_grad()
    def _sync(self, index: int) -> None:
        """Member ``index``'s model takes its slice of the stacked parameters."""
        for name, param in self.members[index].model.named_parameters():
            if name in self.stacked:
                param.copy_(self.stacked[name][index])

    def fit(self, on_epoch: Optional[Callable[[dict], None]] = None) -> list[RunResult]:
        started = time.perf_counter()
        count = len(self.members)
        rows: list[list[dict]] = [[] for _ in range(count)]
        status = ["completed"] * count
        alive = torch.ones(count, dtype=torch.bool, device=self.device)
        epochs = self.members[0].train_cfg["epochs"]
        try:
            for epoch in range(1, epochs + 1):
                lr = float(self.optimizer.param_groups[0]["lr"])
                began = time.perf_counter()
                stats = self.train_epoch(alive)
                share = (time.perf_counter() - began) / count   # each member's training share
                for index, member in enumerate(self.members):
                    if status[index] != "completed":
                        continue
                    member.ctx.epoch = epoch
                    self._sync(index)
                    measuring = time.perf_counter()
                    measured = member.measure_epoch()
                    seconds = share + time.perf_counter() - measuring   # as a solo row counts
                    row = {"epoch": epoch, "seconds": seconds, "lr": lr, **stats[index],
                           **measured}
                    rows[index].append(row)
                    if not all(math.isfinite(row[k])
                               for k in ("objective", "train_loss", "val_loss")):
                        status[index] = "diverged"
                        alive[index] = False
                        self.dead = True
                if on_epoch is not None:   # progress: the first member still training
                    shown = next((i for i in range(count) if status[i] == "completed"), 0)
                    on_epoch(rows[shown][-1])
                if self.scheduler is not None:
                    self.scheduler.step()
                if not bool(alive.any()):
                    break
        except KeyboardInterrupt:
            status = ["interrupted" if s == "completed" else s for s in status]
        seconds = (time.perf_counter() - started) / count
        results = []
        for index, member in enumerate(self.members):
            if status[index] != "diverged":  # a diverged member keeps the weights it had then
                self._sync(index)
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

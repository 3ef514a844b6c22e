"""Fused training: each member of a stacked group starts from its solo run's weights, sees its
solo run's batches, and ends with its solo run's metrics to float tolerance; what differs per
member (seed, strength, divergence) stays per member; runs that cannot fuse train solo."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from regbench.cli import app
from regbench.data import load_bundle
from regbench.engine.fused import (
    GROUP_KEY,
    FusedTrainer,
    _stackable_layers,
    fuse_tasks,
)
from regbench.engine.train import Trainer
from regbench.experiment.config import load_config
from regbench.experiment.plan import build_plan
from regbench.regularizers import REGULARIZERS
from regbench.regularizers._streams import Uniforms, kept_scaled
from regbench.regularizers.dropconnect import kept_fraction
from tests.conftest import digits_yaml, write_config

runner = CliRunner()
# One thread (train.threads: 1, as these configs set): a member's products, losses, gradients
# and measurements take the same arithmetic as its solo run's (MemberLinear, the shared loss and
# gradient norm), so they agree bit for bit over a whole fit; over more threads torch splits one
# matrix product's sums across threads where a fused group gives each member's product a thread
# of its own, and the last digits differ (README: fused sweeps).
TOLERANCE = 0.0
EPOCHS = 20            # long enough for a rounding difference to grow into a visible one
FUSABLE = {  # name -> (its parameters, the swept key, two values)
    # strengths whose λ/n a float32 division would round otherwise than the solo penalty's
    # double one: the fused coefficient must be the solo run's, to the last bit
    "l1": ("{lambda: 0.5}", "lambda", "[0.13, 2.9]"),
    "l2": ("{lambda: 1.0}", "lambda", "[0.13, 2.9]"),
    "elastic_net": ("{lambda: 1.0, l1_ratio: 0.3}", "lambda", "[0.13, 2.9]"),
    "weight_decay": ("{lambda: 0.01}", "lambda", "[0.1, 1.0]"),
    # no epoch improves by 10 after the first: patience 1 stops after epoch 2 (epoch 1's
    # weights restored), patience 2 trains all 3
    "early_stopping": ("{patience: 1, min_delta: 10.0}", "patience", "[1, 2]"),
    "dropout": ("{p: 0.5}", "p", "[0.2, 0.5]"),     # its masks: each run's own stream
    "input_noise": ("{sigma: 0.5}", "sigma", "[0.1, 1.0]"),   # its noise: the run's own stream
    "label_smoothing": ("{epsilon: 0.1}", "epsilon", "[0.05, 0.3]"),
    # every draw from the run's own generator; each member's batches stacked
    "mixup": ("{alpha: 0.2}", "alpha", "[0.2, 1.0]"),
    "cutmix": ("{alpha: 1.0}", "alpha", "[0.5, 1.0]"),
    "cutout": ("{size: 3}", "size", "[2, 4]"),
    "random_erasing": ("{p: 0.5}", "p", "[0.3, 0.7]"),
    "augment": ("{rotate: 10.0, hflip: 0.0}", "translate", "[0.0, 0.1]"),
    "max_norm": ("{c: 0.5}", "c", "[0.3, 1.0]"),        # binds: units start near 0.6
    "grad_clip": ("{max_norm: 0.5}", "max_norm", "[0.1, 0.5]"),   # binds: norms ≈ 0.7–1
    "agc": ("{clipping: 0.01}", "clipping", "[0.01, 0.05]"),      # binds on most units
    # each sample's policy draws from the run's own generator; each member's batches stacked
    "randaugment": ("{magnitude: 9}", "magnitude", "[5, 9]"),
    "trivialaugment": ("{num_magnitude_bins: 31}", "num_magnitude_bins", "[11, 31]"),
    "augmix": ("{severity: 3}", "severity", "[1, 3]"),
    # each member's own noise / masks on its slice of the stacked weights, from its own streams
    "weight_noise": ("{sigma: 0.05}", "sigma", "[0.02, 0.1]"),
    "dropconnect": ("{p: 0.3, mode: per_batch}", "p", "[0.2, 0.5]"),
}
RANDOM: set[str] = set()   # none left: every draw comes from the run's own streams


def plan_runs(tmp_path: Path, text: str) -> list[dict]:
    return build_plan(load_config(write_config(tmp_path / "f.yaml", text))).runs


def solo_and_fused(specs: list[dict]):
    """The fused trainer of ``specs``, and for each member a function that builds and trains
    its solo run as regbench would (the build seeds it; training follows right after)."""
    data = load_bundle(specs[0]["dataset"], specs[0]["train"]["train_eval_samples"],
                       specs[0]["seed"])
    device = torch.device("cpu")
    fused = FusedTrainer(specs, data, device)
    solos = [lambda spec=spec: Trainer(spec, data, device) for spec in specs]
    return fused, solos


def test_every_regularizer_that_declares_fusable_is_tested_here():
    assert {name for name, cls in REGULARIZERS.items() if cls.fusable} == {*FUSABLE, *RANDOM}
    # and every built-in that does not fuse says why (--dry-run prints it)
    assert [name for name, cls in REGULARIZERS.items()
            if not cls.fusable and not cls.plugin and not cls.solo_because] == []


@pytest.mark.parametrize("name", sorted(FUSABLE))
def test_members_equal_their_solo_runs(tmp_path: Path, name: str):
    params, key, values = FUSABLE[name]
    text = digits_yaml("f", f"  r: {{{name}: {params}}}\n", seeds="[0, 1, 2]",
                       epochs=EPOCHS, extra=f"sweep:\n  recipes.r.{name}.{key}: {values}\n")
    specs = [s for s in plan_runs(tmp_path, text) if s["recipe"] == "r"]
    assert len(specs) == 6
    fused, solos = solo_and_fused(specs)
    # the same initial weights, bit for bit
    for index, build in enumerate(solos):
        for param_name, param in build().model.named_parameters():
            assert torch.equal(fused.stacked[param_name][index], param.detach())
    # the same first batch and its loss
    batch = specs[0]["train"]["batch_size"]
    permutation = fused._permutations()
    for index in range(len(specs)):
        assert torch.equal(permutation[index], _solo_first_permutation(specs[index]))
    x = fused.data.x_train[permutation[:, :batch]]
    y = fused.data.y_train[permutation[:, :batch]]
    losses = fused.forward(fused.stacked, x, y)
    for index, build in enumerate(solos):
        solo = build()
        expected = solo.data_loss(solo.model(x[index]), y[index])
        assert losses[index].item() == expected.item()       # the same arithmetic
    # the whole fit: every member's metrics equal its solo run's
    fused, solos = solo_and_fused(specs)
    results = fused.fit()
    for build, result in zip(solos, results):
        alone = build().fit()
        assert result.status == alone.status == "completed"
        assert result.summary["fused"]["members"] == 6
        got, want = pd.DataFrame(result.rows), pd.DataFrame(alone.rows)
        assert list(got.columns) == list(want.columns)
        numbers = [c for c in want.columns if c != "seconds"]
        assert (got[numbers] - want[numbers]).abs().max().max() <= TOLERANCE, name
        for key in ("test_accuracy", "test_loss", "weight_norm"):
            assert result.summary[key] == pytest.approx(alone.summary[key], abs=TOLERANCE)
        for key in ("chosen_epoch", "stopped_epoch"):
            assert result.summary[key] == alone.summary[key]
    if name == "early_stopping":
        assert sorted(r.summary["stopped_epoch"] for r in results) == [2, 2, 2, 3, 3, 3]
        assert {r.summary["chosen_epoch"] for r in results} == {1}


def _solo_first_permutation(spec: dict) -> torch.Tensor:
    """The first epoch's batch order of a solo run: after its seeded build, one randperm."""
    data = load_bundle(spec["dataset"], spec["train"]["train_eval_samples"], spec["seed"])
    Trainer(spec, data, torch.device("cpu"))
    return torch.randperm(data.n_train)


def test_a_diverging_member_is_recorded_diverged_and_the_others_are_untouched(tmp_path: Path):
    text = digits_yaml("d", "  r: {l2: {lambda: 1.0}}\n", seeds="[0]", epochs=4,
                       extra="sweep:\n  recipes.r.l2.lambda: [0.1, 1.0e+9, 1.0]\n")
    specs = [s for s in plan_runs(tmp_path, text) if s["recipe"] == "r"]
    fused, solos = solo_and_fused(specs)
    results = fused.fit()
    statuses = [r.status for r in results]
    assert statuses[1] == "diverged" and statuses[0] == statuses[2] == "completed", statuses
    assert not math.isfinite(results[1].rows[-1]["objective"])
    for index in (0, 2):
        alone = solos[index]().fit()
        got, want = pd.DataFrame(results[index].rows), pd.DataFrame(alone.rows)
        numbers = [c for c in want.columns if c != "seconds"]
        assert (got[numbers] - want[numbers]).abs().max().max() <= TOLERANCE


def test_what_cannot_fuse_trains_solo(tmp_path: Path):
    text = digits_yaml("g", "  l2: {l2: {lambda: 1.0}}\n  noisy: {dropconnect: {p: 0.2}}\n"
                       "  long: {l2: {lambda: 1.0}, train: {epochs: 5}}\n", seeds="[0, 1]")
    tasks = fuse_tasks(plan_runs(tmp_path, text))
    groups = [[s["run_id"] for s in t[GROUP_KEY]] for t in tasks if GROUP_KEY in t]
    solo = [t["run_id"] for t in tasks if GROUP_KEY not in t]
    assert sorted(map(sorted, groups)) == [["baseline__seed=0", "baseline__seed=1"],
                                           ["l2__seed=0", "l2__seed=1"],
                                           ["long__seed=0", "long__seed=1"]]
    assert sorted(solo) == ["noisy__seed=0", "noisy__seed=1"]     # dropconnect per_example
    batched = text.replace("{p: 0.2}", "{p: 0.2, mode: per_batch}")
    assert sum(GROUP_KEY in t for t in fuse_tasks(plan_runs(tmp_path, batched))) == 4
    off = fuse_tasks(plan_runs(tmp_path, text.replace("threads: 1", "threads: 1, fuse: off")))
    assert not any(GROUP_KEY in t for t in off)
    resampled = text.replace("train_subset: 300", "train_subset: 300, resample: per_seed")
    assert not any(GROUP_KEY in t for t in fuse_tasks(plan_runs(tmp_path, resampled)))


def test_cli_fused_sweep_writes_every_run_folder_and_resumes(tmp_path: Path):
    text = digits_yaml("c", "  l2: {l2: {lambda: 1.0}}\n", epochs=2,
                       extra="sweep:\n  recipes.l2.l2.lambda: [0.1, 1.0]\n")
    config = write_config(tmp_path / "c.yaml", text)
    dry = runner.invoke(app, ["run", str(config), "--out", str(tmp_path), "--dry-run",
                              "--fuse", "on"])
    assert "fused: 6 runs in 2 group(s)" in " ".join(dry.output.split())
    result = runner.invoke(app, ["run", str(config), "--out", str(tmp_path), "--fuse", "on",
                                 "--workers", "2", "--no-report"])
    assert result.exit_code == 0, result.output
    runs = tmp_path / "c" / "runs"
    summaries = {p.parent.name: json.loads(p.read_text()) for p in runs.glob("*/summary.json")}
    assert len(summaries) == 6 and all(s["status"] == "completed" for s in summaries.values())
    assert {s["fused"]["members"] for s in summaries.values()} == {2, 4}
    again = runner.invoke(app, ["run", str(config), "--out", str(tmp_path), "--fuse", "off",
                                "--no-report"])       # fusion is placement: nothing retrains
    assert again.exit_code == 0 and "6 already completed" in again.output


def test_ctrl_c_in_a_fused_group_saves_every_member_as_interrupted(tmp_path: Path):
    text = digits_yaml("i", "  l2: {l2: {lambda: 1.0}}\n", epochs=5)
    specs = [s for s in plan_runs(tmp_path, text) if s["recipe"] == "l2"]
    fused, _ = solo_and_fused(specs)

    def stop_after_two(spec, row):       # each member's row, with its spec
        if row["epoch"] == 2:
            raise KeyboardInterrupt          # what SIGINT raises inside the training loop

    results = fused.fit(stop_after_two)
    assert [r.status for r in results] == ["interrupted"] * len(specs)
    assert all(len(r.rows) == 2 and r.summary["stopped_epoch"] == 2 for r in results)


def test_ctrl_c_after_a_member_stopped_early_keeps_it_completed(tmp_path: Path):
    """A member that early stopping took out of the group has finished: Ctrl-C later marks
    only the members still training as interrupted; the stopped one keeps its best epoch."""
    text = digits_yaml("e", "  es: {early_stopping: {patience: 1, min_delta: 10.0}}\n",
                       seeds="[0]", epochs=6,
                       extra="sweep:\n  recipes.es.early_stopping.patience: [1, 5]\n")
    specs = [s for s in plan_runs(tmp_path, text) if s["recipe"] == "es"]
    fused, _ = solo_and_fused(specs)

    def stop_at_three(spec, row):
        if row["epoch"] == 3:
            raise KeyboardInterrupt

    results = fused.fit(stop_at_three)
    by_patience = {s["regularizers"]["early_stopping"]["patience"]: r
                   for s, r in zip(specs, results)}
    assert by_patience[1].status == "completed" and by_patience[1].summary["chosen_epoch"] == 1
    assert by_patience[1].summary["test_accuracy"] is not None
    assert by_patience[5].status == "interrupted" and len(by_patience[5].rows) == 3


def test_auto_is_decided_before_the_runs_are_handed_out(tmp_path: Path):
    """Where fusing would not pay (batch × parameters over the limit measured for the model's
    path on the CPU), `auto` leaves the runs separate tasks, so --workers still trains them
    in parallel; runs whose models differ in layout never share a group."""
    from regbench.engine.fused import CPU_FUSE_MAX_WORK, ModelFacts

    text = digits_yaml("a", "  l2: {l2: {lambda: 1.0}}\n", seeds="[0, 1]")
    specs = plan_runs(tmp_path, text)

    def facts(parameters, stacks=True, layout="mlp"):
        return {s["run_id"]: ModelFacts(parameters, stacks, layout) for s in specs}

    between = CPU_FUSE_MAX_WORK[False] // 32 + 1        # × batch 32: over vmap's, under bmm's
    assert sum(GROUP_KEY in t for t in fuse_tasks(specs, facts(1000))) == 2
    assert sum(GROUP_KEY in t for t in fuse_tasks(specs, facts(between))) == 2
    assert not any(GROUP_KEY in t for t in fuse_tasks(specs, facts(between, stacks=False)))
    large = facts(CPU_FUSE_MAX_WORK[True])
    assert not any(GROUP_KEY in t for t in fuse_tasks(specs, large))
    forced = plan_runs(tmp_path, text.replace("threads: 1", "threads: 1, fuse: on"))
    assert sum(GROUP_KEY in t for t in fuse_tasks(forced, large)) == 2
    wide = {s["run_id"]: ModelFacts(1000, True, "mlp", widest=4096) for s in specs}
    assert not any(GROUP_KEY in t for t in fuse_tasks(specs, wide))    # measured to lose
    from regbench.engine.fused import model_facts
    from regbench.models import build_model

    assert model_facts(build_model({"name": "mlp", "hidden": [4096, 16]}, (64,), 10)).widest \
        == 4096
    mixed = {**facts(1000), specs[0]["run_id"]: ModelFacts(1000, True, "other layers")}
    tasks = fuse_tasks(specs, mixed)
    assert [t["run_id"] for t in tasks if GROUP_KEY not in t] == [s["run_id"] for s in specs[:2]]


def test_a_group_that_fails_as_a_whole_fails_each_member_with_the_message(tmp_path: Path):
    from regbench.engine.result import failed_task
    from regbench.experiment.runner import members

    specs = plan_runs(tmp_path, digits_yaml("w", "  l2: {l2: {lambda: 1.0}}\n"))
    task = next(t for t in fuse_tasks(specs) if GROUP_KEY in t)
    failed = failed_task(task, "worker process failed: BrokenProcessPool")
    assert [s["run_id"] for s, _ in failed] == [s["run_id"] for s in task[GROUP_KEY]]
    assert all(r.status == "failed" and "BrokenProcessPool" in r.error for _, r in failed)
    assert members(task, failed) == failed


@pytest.mark.parametrize("optimizer", ["{name: sgd, lr: 0.1, momentum: 0.9}",
                                       "{name: adamw, lr: 0.01}"])
def test_members_with_their_own_learning_rate_fuse_and_equal_their_solo_runs(tmp_path: Path,
                                                                             optimizer: str):
    """A sweep over the learning rate (and momentum) trains as one group: each member steps
    with its own rate, under the shared schedule, as its solo run does; weight_decay reads
    its own member's rate."""
    text = digits_yaml("lr", "  wd: {weight_decay: {lambda: 0.05}}\n", seeds="[0, 1]", epochs=3,
                       extra="sweep:\n  train.optimizer.lr: [0.02, 0.2]\n")
    text = text.replace("optimizer: {name: sgd, lr: 0.1}",
                        f"optimizer: {optimizer}, scheduler: {{name: step, step_size: 1, "
                        "gamma: 0.5}")
    if "sgd" in optimizer:
        text += "  train.optimizer.momentum: [0.0, 0.9]\n"
    specs = plan_runs(tmp_path, text)
    tasks = fuse_tasks(specs)
    groups = [t[GROUP_KEY] for t in tasks if GROUP_KEY in t]
    assert sorted(len(g) for g in groups) == [len(specs) // 2] * 2   # one per recipe
    group = next(g for g in groups if g[0]["recipe"] == "wd")
    fused, solos = solo_and_fused(group)
    settings = [json.dumps(s["train"]["optimizer"], sort_keys=True) for s in group]
    assert len(fused.optimizer.param_groups) == len(set(settings))
    for (start, stop) in fused.slices:      # each group's members next to each other
        assert len(set(settings[start:stop])) == 1
    results = fused.fit()
    for spec, build, result in zip(group, solos, results):
        alone = build().fit()
        got, want = pd.DataFrame(result.rows), pd.DataFrame(alone.rows)
        numbers = [c for c in want.columns if c != "seconds"]
        assert list(got["lr"]) == list(want["lr"]) == [spec["train"]["optimizer"]["lr"] * 0.5 ** e
                                                       for e in range(3)]
        assert (got[numbers] - want[numbers]).abs().max().max() <= TOLERANCE, spec["run_id"]


def test_dropout_members_draw_their_own_masks_at_their_own_p(tmp_path: Path):
    """Dropout fuses on the stacked path: each member drops at its own p, with its own draws.
    In train mode member m zeroes a share p_m of its activations and scales the rest by
    1/(1 − p_m); in eval mode nothing is dropped; a p = 0 member beside p > 0 members trains
    exactly as its solo run (nothing of the others' masks reaches it), and a p > 0 member
    trains the same in any group."""
    text = digits_yaml("dr", "  drop: {dropout: {p: 0.5}}\n", seeds="[0, 1]", epochs=3,
                       extra="sweep:\n  recipes.drop.dropout.p: [0.0, 0.3, 0.7]\n")
    specs = [s for s in plan_runs(tmp_path, text) if s["recipe"] == "drop"]
    assert [len(t[GROUP_KEY]) for t in fuse_tasks(specs) if GROUP_KEY in t] == [6]
    ps = torch.tensor([s["regularizers"]["dropout"]["p"] for s in specs])
    h = torch.rand(6, 400, 500) + 0.5                       # no zeros before dropout
    run_ids = [s["run_id"] for s in specs]
    dropped = kept_scaled(h, 1 - ps, Uniforms(run_ids, torch.device("cpu")).take(400, (500,)))
    zeroed = (dropped == 0).float().mean(dim=(1, 2))
    assert torch.allclose(zeroed, ps, atol=0.01), (zeroed, ps)   # 200k draws each: sd < 0.002
    kept = dropped != 0
    scale = (1 / (1 - ps)).view(6, 1, 1).expand_as(h)
    assert torch.allclose(dropped[kept], (h * scale)[kept])
    # a member's draws are its own: the same in any group, different from every other's
    alone = Uniforms(run_ids[3:4], torch.device("cpu"))
    together = Uniforms(run_ids, torch.device("cpu"))
    for _ in range(3):                                      # past a refill too
        mine, ours = alone.take(3000, (500,)), together.take(3000, (500,))
        assert torch.equal(mine[0], ours[3]) and not torch.equal(ours[2], ours[3])
    fused, solos = solo_and_fused(specs)
    layers = [type(layer).__name__ for _, layer in _stackable_layers(fused.template)]
    assert layers == ["Flatten", "Linear", "ReLU", "InvertedDropout", "Linear"]
    x = fused.data.x_val
    fused.template.eval()
    evaluated = fused.forward_all(fused.stacked, x).detach()
    for index, build in enumerate(solos):
        assert torch.allclose(evaluated[index], build().predict(x), atol=1e-5)
    results = fused.fit()
    plain = [i for i, p in enumerate(ps.tolist()) if p == 0]
    assert len(plain) == 2
    dropping = [i for i, p in enumerate(ps.tolist()) if p > 0][-2:]   # grouped otherwise
    pair, _ = solo_and_fused([specs[i] for i in dropping])
    for index, result in zip(dropping, pair.fit()):
        got, want = pd.DataFrame(result.rows), pd.DataFrame(results[index].rows)
        numbers = [c for c in want.columns if c != "seconds"]
        assert (got[numbers] - want[numbers]).abs().max().max() <= TOLERANCE
    for index in plain:
        alone = solos[index]().fit()
        got, want = pd.DataFrame(results[index].rows), pd.DataFrame(alone.rows)
        numbers = [c for c in want.columns if c != "seconds"]
        assert (got[numbers] - want[numbers]).abs().max().max() <= TOLERANCE


WEIGHT_TRANSFORMS = {   # name -> (its parameters, the swept key, three values, 0 included)
    "weight_noise": ("{sigma: 0.1}", "sigma", [0.0, 0.05, 0.2]),
    "dropconnect": ("{p: 0.5, mode: per_batch}", "p", [0.0, 0.3, 0.6]),
}


@pytest.mark.parametrize("name", sorted(WEIGHT_TRANSFORMS))
def test_weight_transforms_give_each_member_its_own_draws_at_its_own_strength(tmp_path: Path,
                                                                             name: str):
    """Weight noise and DropConnect (per batch) fuse on the stacked path: in a training forward
    member m's linear layers use its own transformed weights, drawn from its own streams, the
    same draws as its solo layer's and none of another member's: noise of std σ_m (W exactly at
    σ = 0), or a share p_m of the weights and biases dropped and the rest scaled by
    1/(1 − p_m) (W exactly at p = 0); eval uses the clean weights."""
    params, key, values = WEIGHT_TRANSFORMS[name]
    text = digits_yaml("wt", f"  r: {{{name}: {params}}}\n", seeds="[0, 1]", epochs=2,
                       extra=f"sweep:\n  recipes.r.{name}.{key}: {values}\n")
    specs = [s for s in plan_runs(tmp_path, text) if s["recipe"] == "r"]
    assert [len(t[GROUP_KEY]) for t in fuse_tasks(specs) if GROUP_KEY in t] == [6]
    fused, solos = solo_and_fused(specs)
    layers = [(n, layer) for n, layer in _stackable_layers(fused.template)
              if isinstance(layer, torch.nn.Linear)]
    assert [type(layer).__name__ for _, layer in layers] == \
        (["TransformedLinear"] * 2 if name == "weight_noise" else ["DropConnectLinear", "Linear"])
    first = layers[0][0]
    transforms = [m.model.get_submodule(first).transform for m in fused.members]
    strengths = torch.tensor([s["regularizers"][name][key] for s in specs])
    cls = type(transforms[0])

    def fresh(index: int):       # member ``index``'s transform of that layer, not yet drawn
        return cls(strengths[index].item(), transforms[index].stream)

    weight, bias = torch.rand(6, 400, 500) + 0.5, torch.rand(6, 400) + 0.5   # no zeros
    changed, changed_bias = cls.stacked([fresh(i) for i in range(6)], weight, bias)
    if name == "weight_noise":
        spread = (changed - weight).std(dim=(1, 2))
        assert torch.allclose(spread, strengths, rtol=0.01), (spread, strengths)
        assert torch.equal(changed_bias, bias)                     # biases are not perturbed
    else:
        for after, before in ((changed, weight), (changed_bias, bias)):
            dropped = (after == 0).flatten(1).float().mean(1)
            within = 5 * (0.25 / after[0].numel()) ** 0.5             # 5 sd of a share
            assert torch.allclose(dropped, strengths, atol=within), (dropped, strengths)
            kept = after != 0
            kept_share = torch.tensor([kept_fraction(p) for p in strengths.tolist()])  # 1 − p
            scale = (1 / kept_share).view(-1, *[1] * (before.dim() - 1)).expand_as(before)
            assert torch.allclose(after[kept], (before * scale)[kept])
    for index in (i for i, s in enumerate(strengths.tolist()) if s == 0):
        assert torch.equal(changed[index], weight[index])         # σ = 0, p = 0: W itself
    # a member's draws are its own: the same in any group (alone), none of another's
    for index in range(6):
        mine, _ = cls.stacked([fresh(index)], weight[index:index + 1], bias[index:index + 1])
        assert torch.equal(mine[0], changed[index])
    assert not torch.equal(changed[4] - weight[4], changed[5] - weight[5])
    # eval: the clean weights, as each solo model predicts
    x = fused.data.x_val
    fused.template.eval()
    evaluated = fused.forward_all(fused.stacked, x).detach()
    for index, build in enumerate(solos):
        assert torch.allclose(evaluated[index], build().predict(x), atol=1e-5)


def test_dropout_through_vmap_does_not_fuse(tmp_path: Path):
    """A model that is not a plain stack of layers runs through vmap, whose random draws would
    not be each member's own: its dropout, weight-noise and DropConnect runs train solo."""
    from regbench.experiment.runner import check_models

    text = digits_yaml("v", "  drop: {dropout: {p: 0.3}}\n  l2: {l2: {lambda: 1.0}}\n"
                       "  noise: {weight_noise: {sigma: 0.1}}\n"
                       "  connect: {dropconnect: {p: 0.3, mode: per_batch}}\n",
                       seeds="[0, 1]").replace("{name: mlp, hidden: [32]}",
                                               "{name: resmlp, width: 16, blocks: 1}")
    plan = build_plan(load_config(write_config(tmp_path / "v.yaml", text)))
    data = load_bundle(plan.runs[0]["dataset"], plan.runs[0]["train"]["train_eval_samples"])
    tasks = fuse_tasks(plan.runs, check_models(plan, data))
    grouped = sorted(s["recipe"] for t in tasks if GROUP_KEY in t for s in t[GROUP_KEY])
    assert grouped == ["baseline", "baseline", "l2", "l2"]
    for recipe in ("drop", "noise", "connect"):
        runs = [s for s in plan.runs if s["recipe"] == recipe]
        with pytest.raises(ValueError, match="fuse only in an nn.Sequential MLP"):
            FusedTrainer(runs, data, torch.device("cpu"))


def test_a_runs_numbers_depend_only_on_the_run(tmp_path: Path):
    """The same run gives the same metrics.csv, bit for bit, whether it trained fused, solo
    (--fuse off), alone (--seeds 1) or again on resume after its process was killed, dropout
    included (its masks come from the run's own stream)."""
    config = write_config(tmp_path / "s.yaml", digits_yaml(
        "same", "  drop: {dropout: {p: 0.3}}\n  l2: {l2: {lambda: 1.0}}\n", seeds="[0, 1, 2]",
        epochs=8))

    def metrics(out: Path, *options: str) -> dict[str, pd.DataFrame]:
        result = runner.invoke(app, ["run", str(config), "--out", str(out), "--no-report",
                                     *options])
        assert result.exit_code == 0, result.output
        return {p.parent.name: pd.read_csv(p).drop(columns="seconds")
                for p in sorted((out / "same" / "runs").glob("*/metrics.csv"))}

    fused = metrics(tmp_path / "fused", "--fuse", "on")
    assert all(json.loads(p.read_text()).get("fused") for p in
               (tmp_path / "fused" / "same" / "runs").glob("drop__*/summary.json"))
    for other in (metrics(tmp_path / "solo", "--fuse", "off"),
                  metrics(tmp_path / "one", "--seeds", "1")):
        for run_id, frame in other.items():
            pd.testing.assert_frame_equal(frame, fused[run_id], check_exact=True)
    killed = tmp_path / "fused" / "same" / "runs" / "drop__p=0.3__seed=1"
    if not killed.exists():
        killed = next((tmp_path / "fused" / "same" / "runs").glob("drop__*seed=1"))
    (killed / "summary.json").unlink()              # as a killed process leaves it
    resumed = metrics(tmp_path / "fused", "--fuse", "on")
    pd.testing.assert_frame_equal(resumed[killed.name], fused[killed.name], check_exact=True)


def test_the_dry_run_says_why_each_solo_run_trains_alone(tmp_path: Path):
    config = write_config(tmp_path / "d.yaml", digits_yaml(
        "dry", "  l2: {l2: {lambda: 1.0}}\n  mix: {dropconnect: {p: 0.2}}\n"
        "  off: {l1: {lambda: 0.1}, train: {fuse: 'off'}}\n", extra=""))
    one = write_config(tmp_path / "o.yaml", digits_yaml("one", "  l2: {l2: {lambda: 1.0}}\n",
                                                        seeds="[0]"))
    result = runner.invoke(app, ["run", str(config), "--dry-run", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "2 runs: l2__seed=0, l2__seed=1" in out
    assert ("2 run(s), dropconnect trains solo: mode per_example draws a mask of every weight "
            "for every example: its step is per-example work, not dispatch, so fusing would not "
            "pay; mode per_batch fuses: mix__seed=0, mix__seed=1") in out
    assert "2 run(s), train.fuse is off: off__seed=0, off__seed=1" in out
    alone = runner.invoke(app, ["run", str(one), "--dry-run", "--out", str(tmp_path)])
    assert "no other run to train it with shares its data" in " ".join(alone.output.split())
    assert not list(tmp_path.glob("dry*")) and not list(tmp_path.glob("one*"))


def test_members_fuse_only_with_the_same_clipping_mode(tmp_path: Path):
    """grad_clip by norm and by value never share a group (one arithmetic per group)."""
    text = digits_yaml("m", "  a: {grad_clip: {max_norm: 0.5}}\n  b: {grad_clip: {value: 0.01}}\n"
                       "  c: {grad_clip: {max_norm: 0.1}}\n")
    tasks = fuse_tasks(plan_runs(tmp_path, text))
    groups = sorted(sorted(s["recipe"] for s in t[GROUP_KEY]) for t in tasks if GROUP_KEY in t)
    assert groups == [["a", "a", "c", "c"], ["b", "b"], ["baseline", "baseline"]]

"""ema and swa (regularizers/ema.py, swa.py): the averages against averages computed here from
the weights the run went through, and the run measured, tested and saved with the average
(the eval_weights hook of the solo loop); the rules that refuse or warn."""
from __future__ import annotations

import copy
import io
import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from regbench.cli import app
from regbench.engine.fused import solo_reason
from regbench.engine.train import build_run_model
from tests.builders import plan_from_text, trainer_for
from tests.conftest import digits_yaml
from tests.test_bad_input import one_error_line

CPU = torch.device("cpu")
runner = CliRunner()


def config(recipe: str, *, epochs: int = 3, model: str = "{name: mlp, hidden: [32]}",
           train: str = "") -> str:
    """One seed of digits (300 training samples: 10 steps an epoch), ``recipe`` as recipe
    ``r``."""
    text = digits_yaml("avg", f"  r: {recipe}\n", seeds="[0]", epochs=epochs)
    text = text.replace("{name: mlp, hidden: [32]}", model)
    return text.replace("threads: 1}", f"threads: 1, save_model: true{train}}}")


def tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Copies of a model's parameters and buffers, by name (not through its state_dict, which
    an averaging regularizer extends)."""
    named = itertools.chain(model.named_parameters(), model.named_buffers())
    return {name: value.detach().clone() for name, value in named}


def fresh_model(trainer, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """The run's architecture, built anew, holding ``state``."""
    model, _, _ = build_run_model(trainer.spec, trainer.data, CPU)
    model.load_state_dict(state)
    return model.eval()


@torch.no_grad()
def val_metrics(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    logits = model.eval()(x)
    return F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()


def record_steps(trainer) -> list[dict[str, torch.Tensor]]:
    """The model's parameters and buffers after every optimizer step, recorded by a step hook
    of the optimizer (it runs before the after_step hooks)."""
    steps: list[dict[str, torch.Tensor]] = []
    trainer.optimizer.register_step_post_hook(lambda *_: steps.append(tensors(trainer.model)))
    return steps


# ------------------------------------------------------------------------------------ ema
EMA = "{batchnorm: {}, ema: {decay: 0.8, warmup: true, warmup_gamma: 2.0, warmup_power: 0.75}}"


def test_ema_weights_equal_the_hand_computed_average_of_every_step(tmp_path):
    trainer = trainer_for(tmp_path, config(EMA, epochs=2), "r")
    steps = record_steps(trainer)
    trainer.fit()
    assert len(steps) == 2 * math.ceil(trainer.data.n_train / 32)
    average = dict(steps[0])                  # step 1 is copied
    for t, state in enumerate(steps[1:], start=2):
        d = min(0.8, 1 - (1 + (t - 1) / 2.0) ** -0.75)
        for name, value in state.items():
            average[name] = (d * average[name] + (1 - d) * value if value.is_floating_point()
                             else value)      # batch norm's count: copied
    ema = next(r for r in trainer.regularizers if r.name == "ema").average.module
    kept = tensors(ema)
    assert kept.keys() == average.keys() and any("running_mean" in k for k in kept)
    for name, value in average.items():
        torch.testing.assert_close(kept[name], value, rtol=1e-5, atol=1e-6)
    # the warmup mattered: without it (d = 0.8 from step 2) the average differs
    plain = dict(steps[0])
    for state in steps[1:]:
        plain = {k: 0.8 * plain[k] + 0.2 * v if v.is_floating_point() else v
                 for k, v in state.items()}
    assert not torch.allclose(plain["3.weight"], kept["3.weight"], rtol=1e-3)


def test_ema_matches_timms_model_ema_v3(tmp_path):
    timm_ema = pytest.importorskip("timm.utils.model_ema")
    trainer = trainer_for(tmp_path, config(EMA, epochs=1), "r")
    steps = record_steps(trainer)
    trainer.fit()
    replay = fresh_model(trainer, steps[0])
    reference = timm_ema.ModelEmaV3(replay, decay=0.8, use_warmup=True, warmup_gamma=2.0,
                                    warmup_power=0.75)
    for t, state in enumerate(steps, start=1):      # timm's train.py: step = updates so far
        replay.load_state_dict(state)
        reference.update(replay, step=t)
    ema = next(r for r in trainer.regularizers if r.name == "ema").average.module
    for name, value in tensors(reference.module).items():
        torch.testing.assert_close(tensors(ema)[name], value)


def test_an_ema_run_is_measured_tested_and_saved_with_the_average(tmp_path):
    trainer = trainer_for(tmp_path, config("{ema: {decay: 0.9}}"), "r")
    ema = trainer.regularizers[0]
    averages, raw = [], []
    result = trainer.fit(on_epoch=lambda row: (averages.append(tensors(ema.average.module)),
                                               raw.append(tensors(trainer.model))))
    data = trainer.data
    for row, average, weights in zip(result.rows, averages, raw):
        loss, accuracy = val_metrics(fresh_model(trainer, average), data.x_val, data.y_val)
        assert row["val_loss"] == pytest.approx(loss, rel=1e-5)
        assert row["val_accuracy"] == pytest.approx(accuracy)
        trained, _ = val_metrics(fresh_model(trainer, weights), data.x_val, data.y_val)
        assert row["val_loss"] != pytest.approx(trained, rel=1e-3)   # not the trained weights
        norm = torch.cat([average[k].flatten() for k in average if k.endswith("weight")]).norm()
        assert row["weight_norm"] == pytest.approx(norm.item(), rel=1e-5)
    final = fresh_model(trainer, averages[-1])
    test_loss, test_accuracy = val_metrics(final, data.x_test, data.y_test)
    assert result.summary["test_loss"] == pytest.approx(test_loss, rel=1e-5)
    assert result.summary["test_accuracy"] == pytest.approx(test_accuracy)
    saved = torch.load(io.BytesIO(result.model_state), weights_only=True)
    assert saved.keys() == averages[-1].keys()      # the model's own keys: it loads as one
    for key, value in saved.items():
        assert torch.equal(value, averages[-1][key])


def test_early_stopping_restores_its_best_epochs_average(tmp_path):
    # no epoch improves on the first by 1e9: it stops after epoch 2 and restores epoch 1
    recipe = "{ema: {decay: 0.5}, early_stopping: {patience: 1, min_delta: 1.0e+9}}"
    trainer = trainer_for(tmp_path, config(recipe, epochs=5), "r")
    ema = trainer.regularizers[0]
    averages = []
    result = trainer.fit(on_epoch=lambda row: averages.append(tensors(ema.average.module)))
    assert result.summary["chosen_epoch"] == 1 and result.summary["stopped_epoch"] == 2
    assert not torch.equal(averages[0]["1.weight"], averages[1]["1.weight"])
    saved = torch.load(io.BytesIO(result.model_state), weights_only=True)
    for key, value in saved.items():
        assert torch.equal(value, averages[0][key])
    assert int(ema.average.n_averaged) == math.ceil(trainer.data.n_train / 32)  # epoch 1's
    loss, accuracy = val_metrics(fresh_model(trainer, averages[0]), trainer.data.x_test,
                                 trainer.data.y_test)
    assert result.summary["test_loss"] == pytest.approx(loss, rel=1e-5)
    assert result.summary["val_loss"] == result.rows[0]["val_loss"]


# ------------------------------------------------------------------------------------ swa
def test_swa_weights_are_the_mean_of_the_end_of_epoch_weights_from_start(tmp_path):
    recipe = "{swa: {start: 3, swa_lr: 0.05, anneal_epochs: 2}}"
    trainer = trainer_for(tmp_path, config(recipe, epochs=5), "r")
    ends = []
    result = trainer.fit(on_epoch=lambda row: ends.append(tensors(trainer.model)))
    swa = trainer.regularizers[0]
    assert int(swa.average.n_averaged) == 3
    for name, value in tensors(swa.average.module).items():
        mean = torch.stack([end[name] for end in ends[2:]]).mean(0)
        torch.testing.assert_close(value, mean)
    data = trainer.data
    for epoch, row in enumerate(result.rows, start=1):
        # before epoch 3 the trained weights are evaluated, then the mean of epochs 3..epoch
        chosen = ends[epoch - 1] if epoch < 3 else {
            name: torch.stack([end[name] for end in ends[2:epoch]]).mean(0)
            for name in ends[0]}
        loss, _ = val_metrics(fresh_model(trainer, chosen), data.x_val, data.y_val)
        assert row["val_loss"] == pytest.approx(loss, rel=1e-5)
    # SWALR from epoch 3's end: cosine from 0.1 to 0.05 over 2 epochs, then 0.05
    halfway = 0.05 * 0.5 + 0.1 * 0.5                # α = (1 − cos(π/2))/2
    assert [row["lr"] for row in result.rows] == pytest.approx([0.1, 0.1, 0.1, halfway, 0.05])


def test_swa_recomputes_batch_norm_statistics_for_the_average(tmp_path):
    trainer = trainer_for(tmp_path, config("{batchnorm: {}, swa: {start: 2}}"), "r")
    trainer.fit()
    module = trainer.regularizers[1].average.module
    norm = next(m for m in module.modules() if isinstance(m, torch.nn.BatchNorm1d))
    inputs = []                               # what reaches the norm, batch by batch
    hook = norm.register_forward_pre_hook(lambda m, args: inputs.append(args[0]))
    with torch.no_grad():
        for batch in trainer.data.x_train.split(32):
            module.eval()(batch)
    hook.remove()
    # update_bn's cumulative average: the mean of the per-batch means and unbiased variances
    means = torch.stack([x.mean(0) for x in inputs]).mean(0)
    variances = torch.stack([x.var(0) for x in inputs]).mean(0)
    torch.testing.assert_close(norm.running_mean, means, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(norm.running_var, variances, rtol=1e-4, atol=1e-5)
    trained = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.BatchNorm1d))
    assert not torch.allclose(trained.running_mean, norm.running_mean, atol=1e-3)


def test_swa_start_as_a_fraction_of_the_epochs(tmp_path):
    trainer = trainer_for(tmp_path, config("{swa: {start: 0.5}}", epochs=4), "r")
    result = trainer.fit()
    assert int(trainer.regularizers[0].average.n_averaged) == 2    # epochs 3 and 4
    assert result.summary["regularizer_details"] == [
        "swa: evaluated from epoch 3 with the mean of the weights at the ends of epochs 3–4"]


# ------------------------------------------------------------------------------------ rules
def validate(tmp_path, text: str):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return runner.invoke(app, ["validate", str(path)])


@pytest.mark.parametrize("recipe,train,fragments", [
    ("{ema: {}, swa: {}}", "", ("recipes.r.swa", "swa and ema are both averages of the weights")),
    ("{swa: {}}", ", scheduler: cosine",
     ("recipes.r.swa", "train.scheduler cosine would set it too", "remove train.scheduler")),
    ("{swa: {start: 2}}", ", scheduler: {name: constant, warmup_epochs: 2}",
     ("recipes.r.swa", "constant with 2 warmup epochs")),
    ("{swa: {start: 9}}", "", ("recipes.r.swa", "start epoch 9 is after the run's last epoch 3")),
    ("{swa: {start: 1.5}}", "", ("start", "an epoch number (1, 2, …) or a fraction")),
], ids=["ema-and-swa", "swa-scheduler", "swa-warmup-past-start", "swa-late-start",
        "swa-half-epoch"])
def test_refused(tmp_path, recipe, train, fragments):
    result = validate(tmp_path, config(recipe, train=train))
    one_error_line(result, 2, *fragments)


def test_a_constant_schedule_whose_warmup_ends_before_the_start_is_accepted(tmp_path):
    text = config("{swa: {start: 3}}", train=", scheduler: {name: constant, warmup_epochs: 2}")
    assert validate(tmp_path, text).exit_code == 0


@pytest.mark.parametrize("recipe,warning", [
    ("{ema: {}, max_norm: {c: 3.0}}", "list ema after max_norm"),
    ("{swa: {}, early_stopping: {}}", "may end the run before start epoch 3"),
])
def test_warned(tmp_path, recipe, warning):
    result = validate(tmp_path, config(recipe))
    assert result.exit_code == 0 and warning in " ".join(result.output.split())


def test_ema_listed_after_a_weight_changing_hook_is_not_warned(tmp_path):
    result = validate(tmp_path, config("{max_norm: {c: 3.0}, ema: {}}"))
    assert result.exit_code == 0 and "recipe order" not in result.output


@pytest.mark.parametrize("recipe", ["{ema: {}}", "{swa: {}}"])
def test_averaging_runs_train_solo(tmp_path, recipe):
    plan = plan_from_text(tmp_path, config(recipe))
    spec = next(run for run in plan.runs if run["recipe"] == "r")
    assert "trains solo: its run is evaluated with an average" in solo_reason(spec)


def test_a_checkpointed_trainer_keeps_the_average(tmp_path):
    """The average survives a pickled trainer (engine.checkpoint: cloudpickle) with the
    state_dict hooks that carry it, which still point at the unpickled regularizer."""
    import cloudpickle

    trainer = trainer_for(tmp_path, config("{ema: {decay: 0.9}}", epochs=1), "r")
    trainer.fit()
    copied = cloudpickle.loads(cloudpickle.dumps(trainer))
    ema = copied.regularizers[0]
    for name, value in tensors(trainer.regularizers[0].average.module).items():
        assert torch.equal(tensors(ema.average.module)[name], value)
    state = copy.deepcopy(copied.model.state_dict())
    assert any(key.startswith("ema_average.") for key in state)
    kept = trainer.regularizers[0].average.module[1].weight
    ema.average.module[1].weight.data.zero_()       # loading the state brings it back
    copied.model.load_state_dict(state)
    assert torch.equal(ema.average.module[1].weight, kept)

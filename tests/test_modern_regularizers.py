"""The regularizers of issue 34 checked against independent computations: adaptive gradient
clipping, the confidence penalty, spectral normalisation, DropBlock and torchvision's automatic
augmentation policies (RandAugment, TrivialAugment, AugMix). The shared checks (method card,
an effect in three epochs, every allowed pair, resume, fused = solo) run over the registry in
test_conformance, test_catalogue, test_checkpoints and test_fused."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import drop_block2d
from typer.testing import CliRunner

from regbench.cli import app
from regbench.data import load_bundle
from regbench.engine.train import Trainer
from regbench.experiment.config import load_config
from regbench.experiment.plan import build_plan
from regbench.models.base import weight_layers
from regbench.regularizers import CheckContext, Incompatible
from regbench.regularizers._autoaugment import to_uint8
from regbench.regularizers.augmix import augmix
from regbench.regularizers.confidence_penalty import confidence_penalty
from regbench.regularizers.dropblock import DropBlockLayer
from regbench.regularizers.randaugment import RandAugment, randaugment
from regbench.regularizers.trivialaugment import trivialaugment
from regbench.testing import DIGITS, SETTINGS, experiment_config, plan_for, run_of, train_recipe
from tests.test_bad_input import one_error_line

CPU = torch.device("cpu")
MLP, CNN = SETTINGS[0][1], SETTINGS[1][1]
runner = CliRunner()


def trainer_for(recipe: dict, model: dict = MLP, epochs: int = 1, **dataset) -> Trainer:
    """A solo Trainer of ``recipe`` on the kit's tiny digits (``dataset``: keys replaced)."""
    plan, refusals = plan_for(recipe, [(DIGITS, model)], epochs=epochs)
    assert plan is not None, refusals
    spec = run_of(plan, "r")
    spec["dataset"] = {**spec["dataset"], **dataset}
    data = load_bundle(spec["dataset"], spec["train"]["train_eval_samples"], spec["seed"])
    return Trainer(spec, data, CPU)


def output_layer(model: torch.nn.Module) -> torch.nn.Module:
    return weight_layers(model)[-1][1]


# ------------------------------------------------------------------ agc
def clipped_by_hand(weight: torch.Tensor, grad: torch.Tensor, clipping: float, eps: float
                    ) -> torch.Tensor:
    """Brock et al.'s rule, one unit at a time: rows of a matrix, output channels of a kernel,
    the whole of a vector."""
    units = [(weight, grad)] if weight.dim() == 1 else list(zip(weight, grad))
    out = []
    for w, g in units:
        limit = clipping * max(w.double().norm().item(), eps)
        norm = g.double().norm().item()
        out.append(g * (limit / norm) if norm > limit else g)
    return out[0] if weight.dim() == 1 else torch.stack(out)


def gradients_of_one_batch(trainer: Trainer) -> dict[str, torch.Tensor]:
    model = trainer.model
    x, y = trainer.data.x_train[:32], trainer.data.y_train[:32]
    model.zero_grad()
    trainer.data_loss(model(x), y).backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("exclude_output", [True, False])
def test_agc_clips_each_unit_as_the_formula_computed_by_hand(exclude_output):
    trainer = trainer_for({"agc": {"exclude_output": exclude_output}}, CNN)
    reg, model = trainer.regularizers[0], trainer.model
    before = gradients_of_one_batch(trainer)
    weights = {name: p.detach().clone() for name, p in model.named_parameters()}
    # λ at the median unit ratio ‖G_i‖/max(‖W_i‖, ε): about half the units are clipped
    ratios = [g.double().norm().item() / max(w.double().norm().item(), 1e-3)
              for name in before for w, g in ([(weights[name], before[name])]
                                              if before[name].dim() == 1
                                              else zip(weights[name], before[name]))]
    clipping = sorted(ratios)[len(ratios) // 2]
    reg.params = reg.Params(clipping=clipping, exclude_output=exclude_output)
    reg.after_backward(model)
    output = {id(p) for p in output_layer(model).parameters()}
    clipped = 0
    for name, p in model.named_parameters():
        if exclude_output and id(p) in output:
            assert torch.equal(p.grad, before[name]), f"{name}: the output layer is left out"
            continue
        expected = clipped_by_hand(weights[name], before[name], clipping, 1e-3)
        torch.testing.assert_close(p.grad, expected, rtol=1e-5, atol=1e-9)
        clipped += int(not torch.equal(p.grad, before[name]))
    assert 0 < clipped < len(before)        # some units bind, some do not


def test_agc_on_a_model_whose_only_layer_is_its_output_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(experiment_config({"agc": {}}, DIGITS, {"name": "linear"})))
    one_error_line(runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "out")]), 2,
                   "recipes.r.agc", "exclude_output")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ confidence_penalty
def entropy_by_hand(logits: torch.Tensor) -> float:
    """Mean over samples of −Σ_k p_k·log p_k, p = softmax(logits), in float64."""
    total = 0.0
    for row in logits.double().tolist():
        top = max(row)
        exps = [math.exp(v - top) for v in row]
        probs = [e / sum(exps) for e in exps]
        total -= sum(p * math.log(p) for p in probs if p > 0)
    return total / len(logits)


def test_confidence_penalty_term_is_minus_beta_times_the_mean_entropy():
    logits = torch.randn(50, 7, generator=torch.Generator().manual_seed(0)) * 3
    term = confidence_penalty(logits, beta=0.7)
    assert term.item() == pytest.approx(-0.7 * entropy_by_hand(logits), rel=1e-6)


def test_the_training_loop_adds_the_confidence_penalty_to_the_loss():
    """One batch per epoch: the epoch's penalty and objective columns are the term and the
    loss at the initial weights, computed here from the model's outputs by hand."""
    beta = 0.5
    trainer = trainer_for({"confidence_penalty": {"beta": beta}}, train_subset=32)
    x, y = trainer.data.x_train, trainer.data.y_train
    assert len(x) == 32
    with torch.no_grad():
        logits = trainer.model(x)
        data_loss = F.cross_entropy(logits, y).item()
    row = trainer.train_epoch()
    assert row["penalty"] == pytest.approx(-beta * entropy_by_hand(logits), rel=1e-5)
    assert row["objective"] == pytest.approx(data_loss + row["penalty"], rel=1e-5)


# ------------------------------------------------------------------ spectral_norm
@pytest.mark.parametrize("model", [MLP, CNN], ids=["mlp", "cnn"])
def test_spectral_norm_leaves_every_weight_with_largest_singular_value_one(model):
    trainer = trainer_for({"spectral_norm": {}}, model, epochs=3)
    assert trainer.fit().status == "completed"
    layers = weight_layers(trainer.model)
    assert len(layers) == (2 if model is MLP else 4)

    def used_and_trained() -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(the weight each layer computes with, its trained W), as matrices [out, in·k·k]."""
        trainer.model.eval()             # eval forwards reuse the last u, v
        with torch.no_grad():
            return [tuple(w.reshape(w.shape[0], -1).clone()
                          for w in (layer.weight, layer.parametrizations.weight.original))
                    for _, layer in layers]

    def sigma(matrix: torch.Tensor) -> float:
        return torch.linalg.matrix_norm(matrix, ord=2).item()

    # one power-iteration step per training forward trails a moving W; uᵀWv never exceeds
    # σ(W), so the normalised weight's σ is at least 1, and close to it
    for used, _ in used_and_trained():
        assert 1 - 1e-4 <= sigma(used) < 1.1
    # with W fixed, the steps of a few more training forwards converge: W/σ(W) exactly
    trainer.model.train()
    with torch.no_grad():
        for _ in range(200):
            trainer.model(trainer.data.x_train[:2])
    for used, trained in used_and_trained():
        assert sigma(used) == pytest.approx(1.0, abs=1e-3)
        torch.testing.assert_close(used, trained / sigma(trained), rtol=2e-3, atol=1e-6)


@pytest.mark.parametrize("order", [("spectral_norm", "l2"), ("l2", "spectral_norm")])
def test_a_weight_penalty_beside_spectral_norm_penalizes_the_trained_weights(order):
    trainer = trainer_for({name: {} for name in order})
    l2 = next(reg for reg in trainer.regularizers if reg.name == "l2")
    originals = [layer.parametrizations.weight.original
                 for _, layer in weight_layers(trainer.model)]
    assert [id(w) for w in l2.weights] == [id(w) for w in originals]
    assert all(w.requires_grad for w in l2.weights)


# ------------------------------------------------------------------ dropblock
def kept_by_hand(height: int, width: int, size: int, p: float) -> float:
    """The expected share of activations DropBlock keeps: a block seed at each of the
    (H − s + 1)(W − s + 1) centres where an s×s block fits, with probability γ (the paper's
    formula); a position is kept when no seed's block covers it."""
    gamma = p * height * width / (size ** 2 * (height - size + 1) * (width - size + 1))
    half = size // 2

    def seeds_covering(i: int, side: int) -> int:
        return sum(1 for c in range(half, side - half) if abs(i - c) <= half)

    return sum((1 - gamma) ** (seeds_covering(i, height) * seeds_covering(j, width))
               for i in range(height) for j in range(width)) / (height * width)


def test_dropblock_keeps_the_expected_share_and_drops_whole_blocks():
    torch.manual_seed(0)
    p, size = 0.2, 3
    layer = DropBlockLayer(p, size, drop_block2d)
    x = torch.ones(256, 4, 16, 16)
    out = layer.train()(x)
    kept = out != 0
    share = kept.float().mean().item()
    assert share == pytest.approx(kept_by_hand(16, 16, size, p), abs=0.005)
    assert share == pytest.approx(1 - p, abs=0.05)        # the paper's approximation
    # the kept activations are scaled by count(all)/count(kept)
    torch.testing.assert_close(out[kept], torch.full_like(out[kept], 1 / share))
    # every dropped position lies in an s×s square that is dropped whole
    dropped = (~kept).float()
    whole = (F.avg_pool2d(dropped, size, stride=1) > 1 - 1e-6).float()
    covered = F.max_pool2d(F.pad(whole, [size - 1] * 4), size, stride=1)
    assert dropped.any() and torch.equal(covered, dropped)
    assert torch.equal(layer.eval()(x), x)                 # the identity in eval


def test_dropblock_sits_after_conv_activations_and_ramps_its_rate_over_the_epochs():
    trainer = trainer_for({"dropblock": {"p": 0.3, "block_size": 3}}, CNN, epochs=3)
    reg, model = trainer.regularizers[0], trainer.model
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(reg.layers) == len(convs) == 2
    assert all(isinstance(m, DropBlockLayer) for m in reg.layers)
    assert [layer.p for layer in reg.layers] == pytest.approx([0.1, 0.1])     # p·1/3
    reg.epoch_end(1, {}, model)
    assert [layer.p for layer in reg.layers] == pytest.approx([0.2, 0.2])     # p·2/3
    reg.epoch_end(2, {}, model)
    assert [layer.p for layer in reg.layers] == pytest.approx([0.3, 0.3])
    constant = trainer_for({"dropblock": {"p": 0.3, "schedule": "constant"}}, CNN, epochs=3)
    assert [layer.p for layer in constant.regularizers[0].layers] == [0.3, 0.3]


# ------------------------------------------------------------------ augmentation policies
def digit_images(count: int) -> torch.Tensor:
    """Normalised 8×8 digits, as a run trains on them."""
    return trainer_for({}).data.x_train[:count]


def test_randaugment_and_trivialaugment_transform_each_sample_as_torchvision_alone():
    """A group's output is each of its samples transformed alone by torchvision's operation
    at the magnitude its draw names (read here from the transform's own table)."""
    x = torch.randn(96, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    for name, (out, keys, policy) in {
            "randaugment": randaugment(x, generator=torch.Generator().manual_seed(2)),
            "trivialaugment": trivialaugment(x, generator=torch.Generator().manual_seed(3)),
    }.items():
        keys = keys.view(-1, len(x))
        # the policy's own settings: RandAugment N=2 operations at M=9, TrivialAugment one
        assert keys.shape[0] == (2 if name == "randaugment" else 1)
        levels = torch.div(keys % (2 * policy.bins), 2, rounding_mode="floor")
        if name == "trivialaugment":          # drawn uniformly: every bin can come up
            assert levels.min() == 0 and levels.max() >= policy.bins - 3
        transform = policy.transform
        table = transform._AUGMENTATION_SPACE
        for i in range(len(x)):
            image, low, span = to_uint8(x[i:i + 1])
            for key in keys[:, i].tolist():
                op, rest = divmod(key, 2 * policy.bins)
                level, negative = divmod(rest, 2)
                op_name = list(table)[op]
                bins = table[op_name][0](policy.bins, 12, 12)
                if name == "randaugment":     # M = 9 for every operation that has a magnitude
                    assert level == (0 if bins is None else 9)
                magnitude = 0.0 if bins is None else float(bins[level]) * (-1) ** negative
                image = transform._apply_image_or_video_transform(
                    image, op_name, magnitude, interpolation=transform.interpolation,
                    fill=transform._fill)
            torch.testing.assert_close(out[i:i + 1], low + image.float() / 255 * span,
                                       rtol=1e-5, atol=1e-5, msg=f"{name}, sample {i}")


def test_augmix_blends_each_image_with_its_chains_by_its_own_weights():
    x = torch.randn(48, 3, 12, 12, generator=torch.Generator().manual_seed(4))
    out, draws = augmix(x, generator=torch.Generator().manual_seed(5))
    policy = draws["policy"]
    transform = policy.transform
    assert torch.allclose(draws["m"] + draws["weights"].sum(1), torch.ones(48))
    assert 1 <= draws["depth"].min() and draws["depth"].max() <= 3
    for i in range(len(x)):
        image, low, span = to_uint8(x[i:i + 1])
        mixed = draws["m"][i] * image.float() / 255
        for chain in range(3):
            augmented = image
            for step in range(int(draws["depth"][chain, i])):
                op, rest = divmod(int(draws["keys"][chain, step, i]), 2 * policy.bins)
                level, negative = divmod(rest, 2)
                assert level < 3                  # severity 3: the 3 lowest of 10 bins
                op_name = policy.names[op]
                bins = transform._PARTIAL_AUGMENTATION_SPACE[op_name][0](10, 12, 12)
                magnitude = 0.0 if bins is None else float(bins[level]) * (-1) ** negative
                augmented = transform._apply_image_or_video_transform(
                    augmented, op_name, magnitude, interpolation=transform.interpolation,
                    fill=transform._fill)
            mixed = mixed + draws["weights"][i, chain] * augmented.float() / 255
        torch.testing.assert_close(out[i:i + 1], low + mixed * span, rtol=1e-5, atol=1e-5)
    assert "Brightness" not in policy.names     # all_ops false: the paper's operations


POLICIES = {"randaugment": randaugment, "trivialaugment": trivialaugment, "augmix": augmix}


@pytest.mark.parametrize("name", POLICIES)
def test_a_policy_gives_each_sample_its_own_draw_and_keeps_shape_dtype_and_range(name):
    x = digit_images(1).expand(64, -1, -1, -1).contiguous()     # one digit, 64 times
    out, *_ = POLICIES[name](x, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    # within the image's own range, per channel
    assert (out >= x.amin(dim=(2, 3), keepdim=True) - 1e-5).all()
    assert (out <= x.amax(dim=(2, 3), keepdim=True) + 1e-5).all()
    distinct = {tuple(row.tolist()) for row in out.flatten(1)}
    assert len(distinct) > 16, f"{name}: {len(distinct)} different outputs of 64 draws"


def test_operations_magnitudes_and_signs_are_drawn_uniformly_per_sample():
    _, keys, policy = trivialaugment(torch.zeros(1, 1, 8, 8))
    generator = torch.Generator().manual_seed(6)
    keys = policy.draw(28_000, generator, CPU)
    op, rest = keys // (2 * policy.bins), keys % (2 * policy.bins)
    counts = torch.bincount(op, minlength=14).double()
    assert ((counts - 2000).abs() < 200).all(), counts     # ±4.5 standard deviations
    signed = torch.tensor(policy.signed)[op]
    negative = (rest % 2).bool()
    assert not negative[~signed].any()
    assert negative[signed].double().mean().item() == pytest.approx(0.5, abs=0.02)
    with_magnitude = torch.tensor([m is not None for m in policy.magnitudes])[op]
    levels = torch.bincount(rest[with_magnitude] // 2, minlength=policy.bins).double()
    assert levels.min() > 0.8 * levels.mean() and levels.max() < 1.2 * levels.mean()


@pytest.mark.parametrize("name", POLICIES)
def test_a_run_with_a_policy_trains_with_finite_metrics(name):
    plan, refusals = plan_for({name: {}}, epochs=2)
    assert plan is not None, refusals
    result = train_recipe(plan)
    assert len(result.rows) == 2 and result.status == "completed"
    assert all(math.isfinite(value) for row in result.rows for value in row.values()
               if isinstance(value, float))


def test_a_policy_refuses_images_that_are_neither_grayscale_nor_rgb():
    ctx = CheckContext(task="classification", input_shape=(2, 8, 8), model_name="cnn",
                       model_residual=False, batch_size=32, recipe={}, train={})
    with pytest.raises(Incompatible, match="1 or 3 channels"):
        RandAugment.check(RandAugment.Params(), ctx)


# ------------------------------------------------------------------ the rules, from the CLI
BREAST_CANCER = {"name": "breast_cancer"}
REGRESSION = SETTINGS[4][0]
REFUSED = [
    ({"dropblock": {}}, DIGITS, MLP, ["recipes.r.dropblock", "no conv layers"]),
    ({"dropblock": {"block_size": 4}}, DIGITS, CNN, ["recipes.r.dropblock.block_size",
                                                     "must be odd"]),
    ({"dropblock": {}, "dropout": {}}, DIGITS, CNN, ["recipes.r", "a recipe may use only one"]),
    ({"randaugment": {}}, BREAST_CANCER, MLP, ["recipes.r.randaugment", "transforms images"]),
    ({"trivialaugment": {}}, BREAST_CANCER, MLP, ["recipes.r.trivialaugment",
                                                  "transforms images"]),
    ({"augmix": {}}, BREAST_CANCER, MLP, ["recipes.r.augmix", "transforms images"]),
    ({"confidence_penalty": {}}, REGRESSION, MLP, ["recipes.r.confidence_penalty",
                                                   "does not apply to regression"]),
    ({"randaugment": {"magnitude": 31}}, DIGITS, MLP, ["recipes.r.randaugment",
                                                       "below num_magnitude_bins"]),
]


@pytest.mark.parametrize("recipe,dataset,model,fragments", REFUSED,
                         ids=["+".join(r) + f"-{d['name']}" for r, d, _, _ in REFUSED])
def test_the_cli_refuses_what_cannot_work_in_one_line(tmp_path, recipe, dataset, model,
                                                      fragments):
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(experiment_config(recipe, dataset, model)))
    out = tmp_path / "out"
    one_error_line(runner.invoke(app, ["run", str(path), "--out", str(out)]), 2, *fragments)
    assert not out.exists()


@pytest.mark.parametrize("recipe,model,warning", [
    ({"agc": {}, "grad_clip": {}}, MLP, "both clip the gradients"),
    ({"spectral_norm": {}, "l2": {}}, MLP, "W/σ(W) divides out"),
    ({"confidence_penalty": {}, "label_smoothing": {}}, MLP, "toward the uniform"),
    ({"trivialaugment": {}}, MLP, "out of their 8-px frame"),
])
def test_doubtful_combinations_are_warned_about(tmp_path, recipe, model, warning):
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(experiment_config(recipe, DIGITS, model)))
    assert any(warning in w for w in build_plan(load_config(path)).warnings)

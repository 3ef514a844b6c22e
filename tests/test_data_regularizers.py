"""Data regularizers (batch hook): each sample gets its own random parameters, shapes and value
ranges are kept, and mixed targets equal the mixing coefficient / the pasted area."""
from __future__ import annotations

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from regbench.cli import app
from regbench.regularizers import REGULARIZERS, RunContext
from regbench.regularizers._sampling import (
    BlockPairings,
    Stockpile,
    pair_partners,
    pairing_rows,
    sample_beta,
)
from regbench.regularizers.augment import augment
from regbench.regularizers.cutmix import cutmix
from regbench.regularizers.cutout import cutout
from regbench.regularizers.input_noise import add_input_noise
from regbench.regularizers.mixup import mixup
from regbench.regularizers.random_erasing import random_erasing
from tests.conftest import digits_yaml, write_config


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def same_images(batch: int = 64, channels: int = 3, side: int = 12) -> torch.Tensor:
    """One random image repeated: any difference between outputs comes from the transform."""
    image = torch.randn(1, channels, side, side, generator=gen(1))
    return image.repeat(batch, 1, 1, 1)


def within_range(out: torch.Tensor, x: torch.Tensor, fill: float = 0.0) -> bool:
    low, high = min(float(x.min()), fill), max(float(x.max()), fill)
    return bool((out >= low - 1e-5).all() and (out <= high + 1e-5).all())


def distinct_outputs(out: torch.Tensor) -> int:
    return len({tuple(row) for row in out.flatten(1).round(decimals=4).tolist()})


# ----------------------------------------------------------------------------- augment
def test_augment_gives_each_sample_its_own_transform_and_keeps_shape_and_range():
    x = same_images()
    out, params = augment(x, rotate=30, crop_padding=2, hflip=0.5, translate=0.1, generator=gen())
    assert out.shape == x.shape and out.dtype == x.dtype
    assert within_range(out, x)          # bilinear mixes of pixels and the zero (mean) fill
    assert distinct_outputs(out) == x.shape[0]
    assert len(set(params["angle"].tolist())) == x.shape[0]
    assert 0.3 < params["flip"].float().mean() < 0.7
    assert params["angle"].abs().max() <= 30 and params["shift"].abs().max() <= 2 + 0.1 * 12


def test_augment_flip_mirrors_exactly():
    x = torch.randn(4, 2, 5, 7, generator=gen())
    out, _ = augment(x, hflip=1.0, generator=gen())
    torch.testing.assert_close(out, x.flip(-1), atol=1e-5, rtol=0)


def test_augment_crop_with_padding_is_an_integer_shift_with_zero_fill():
    x = torch.randn(32, 1, 8, 8, generator=gen())
    out, params = augment(x, crop_padding=3, generator=gen(2))
    for i in range(x.shape[0]):  # independent reference: pad by 3, crop at the drawn offset
        dx, dy = (int(v) for v in params["shift"][i].round())
        padded = torch.nn.functional.pad(x[i], (3, 3, 3, 3))
        expected = padded[:, 3 - dy:3 - dy + 8, 3 - dx:3 - dx + 8]
        torch.testing.assert_close(out[i], expected, atol=1e-5, rtol=0)
    assert len({tuple(s) for s in params["shift"].tolist()}) > 10


def test_augment_crop_and_flip_together_move_whole_pixels_on_non_square_images():
    x = torch.randn(24, 2, 6, 9, generator=gen())
    out, params = augment(x, crop_padding=2, hflip=0.5, generator=gen(4))
    expected = torch.zeros_like(x)
    for i in range(x.shape[0]):  # independent reference, pixel by pixel
        dx, dy = (int(v) for v in params["shift"][i].round())
        for row in range(6):
            for col in range(9):
                source_col = (8 - col if params["flip"][i] else col) - dx
                if 0 <= row - dy < 6 and 0 <= source_col < 9:
                    expected[i, :, row, col] = x[i, :, row - dy, source_col]
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    assert 0 < int(params["flip"].sum()) < x.shape[0]


def test_augment_rotation_matches_torchvision_per_sample():
    tvf = pytest.importorskip("torchvision.transforms.functional")
    x = torch.randn(6, 1, 16, 16, generator=gen())
    out, params = augment(x, rotate=45, crop_padding=0, generator=gen(3))
    for i in range(x.shape[0]):
        reference = tvf.rotate(x[i], float(params["angle"][i]),
                               interpolation=tvf.InterpolationMode.BILINEAR)
        inner = (slice(None), slice(4, 12), slice(4, 12))  # away from the zero-filled corners
        torch.testing.assert_close(out[i][inner], reference[inner], atol=2e-3, rtol=0)


# ----------------------------------------------------------------------------- cutout
def test_cutout_zeroes_clipped_squares_at_independent_centres():
    x = same_images(batch=256, side=10) + 5.0        # no pixel is 0 before cutout
    out, erased = cutout(x, size=4, holes=1, generator=gen())
    assert out.shape == x.shape and within_range(out, x)
    assert ((out == 0).all(dim=1) == erased).all()           # all channels, exactly the mask
    assert torch.equal(out[~erased.unsqueeze(1).expand_as(x)], x[~erased.unsqueeze(1).expand_as(x)])
    areas = erased.flatten(1).sum(1)
    assert areas.max() == 16 and areas.min() < 16            # full squares and border-clipped ones
    assert len({tuple(m.flatten().tolist()) for m in erased}) > 50


def test_cutout_holes_add_up():
    out, erased = cutout(torch.ones(64, 1, 20, 20), size=3, holes=3, generator=gen())
    assert (erased.flatten(1).sum(1) <= 27).all() and erased.flatten(1).sum(1).float().mean() > 15


# ----------------------------------------------------------------------------- random erasing
def test_random_erasing_rate_area_and_aspect_follow_the_parameters():
    x = same_images(batch=2000, channels=1, side=16) + 5.0
    out, mask = random_erasing(x, p=0.4, scale=(0.05, 0.3), ratio=(0.5, 2.0), value=0.0,
                               generator=gen())
    erased = mask.flatten(1).any(1)
    assert abs(erased.float().mean() - 0.4) < 0.04
    rows, cols = mask.any(dim=2), mask.any(dim=1)
    h, w = rows.sum(1)[erased].float(), cols.sum(1)[erased].float()
    area = mask.flatten(1).sum(1)[erased].float()
    assert torch.equal(area, h * w)                          # a rectangle
    side2 = 16 * 16
    assert area.min() >= 0.05 * side2 * 0.7 and area.max() <= 0.3 * side2 * 1.3  # ± rounding
    assert (h / w).min() >= 0.5 * 0.6 and (h / w).max() <= 2.0 / 0.6
    assert torch.equal(out[mask.unsqueeze(1)], torch.zeros(int(mask.sum())))
    assert len({tuple(m.flatten().tolist()) for m in mask[erased]}) > 200


def test_random_erasing_random_fill_stays_in_the_data_range():
    x = torch.rand(64, 3, 8, 8, generator=gen()) * 4 - 1
    out, mask = random_erasing(x, p=1.0, scale=(0.2, 0.4), ratio=(0.5, 2.0), value="random",
                               generator=gen())
    assert out.shape == x.shape and within_range(out, x, fill=float(x.min()))
    filled = out[mask.unsqueeze(1).expand_as(x)]
    assert filled.numel() > 0 and filled.std() > 0.5          # random values, not a constant


# ----------------------------------------------------------------------------- mixup / cutmix
def test_pairing_is_an_involution_leaving_one_sample_alone_for_odd_sizes():
    for size in (2, 10, 11):
        partner = pair_partners(size, torch.device("cpu"), gen(size))
        assert torch.equal(partner[partner], torch.arange(size))
        assert int((partner == torch.arange(size)).sum()) == size % 2


def test_pairing_rows_are_involutions_that_meet_every_partner_equally_often():
    torch.manual_seed(0)
    for size in (2, 10, 11):
        rows = pairing_rows(500, size, torch.device("cpu"))
        index = torch.arange(size)
        for partner in rows:
            assert torch.equal(partner[partner], index)
            assert int((partner == index).sum()) == size % 2
        # every sample meets every other about equally often across rows
        if size == 10:
            counts = torch.zeros(size, size)
            counts.index_put_((index.repeat(500), rows.flatten()), torch.ones(500 * size),
                              accumulate=True)
            met = counts[0, 1:] / 500
            assert (abs(met - 1 / 9) < 0.05).all()


def batch_regularizer(name: str, params: dict, batch_size: int = 64, output_dim: int = 10):
    cls = REGULARIZERS.get(name)
    ctx = RunContext(task="classification", n_train=1000, output_dim=output_dim,
                     input_shape=(3, 12, 12), device=torch.device("cpu"),
                     train={"batch_size": batch_size})
    return cls(cls.Params.model_validate(params), ctx)


def test_augment_regularizer_gives_every_sample_of_every_batch_its_own_transform():
    torch.manual_seed(0)
    reg = batch_regularizer("augment", {"rotate": 20, "crop_padding": 2, "hflip": 0.5})
    x = same_images()
    outputs = [reg.batch(x, None)[0] for _ in range(70)]   # 4480 samples: past one stock
    for out in outputs[:2] + outputs[-2:]:
        assert distinct_outputs(out) == x.shape[0]
    # batches do not repeat each other, before or after the stock is redrawn
    assert distinct_outputs(torch.cat([outputs[0], outputs[1], outputs[-1]])) == 3 * x.shape[0]


def test_mixup_regularizer_draws_beta_lambdas_and_a_pairing_per_batch():
    torch.manual_seed(0)
    reg = batch_regularizer("mixup", {"alpha": 0.4})
    size = 64
    x = torch.zeros(size, 3, 4, 4)
    lams, pairings = [], set()
    for _ in range(200):
        y = torch.arange(size) % 10
        _, mixed_y = reg.batch(x, y)
        lam = mixed_y.gather(1, y[:, None]).squeeze(1)       # weight left on the own class
        own_classes_differ = y[:, None] != torch.arange(10)
        assert torch.allclose(mixed_y.sum(1), torch.ones(size))
        lams.append(lam[(mixed_y * own_classes_differ).sum(1) > 0])
        partner_class = (mixed_y * own_classes_differ).argmax(1)
        pairings.add(tuple(partner_class.tolist()))
    lam = torch.cat(lams)
    assert abs(lam.mean().item() - 0.5) < 0.02
    assert abs(lam.var().item() - 1 / (4 * (2 * 0.4 + 1))) < 0.01   # Beta(α, α) variance
    assert len(pairings) > 150                                     # a fresh pairing per batch


def test_block_pairings_pair_within_each_batch_afresh_for_every_batch():
    torch.manual_seed(0)
    pairings, batch, full = BlockPairings(), 10, 5
    rows = full * batch + 3                 # five full batches and a short, odd last one
    index = torch.arange(rows)
    seen = set()
    for _ in range(20):
        partner = pairings.partners(rows, batch, torch.device("cpu"))
        assert torch.equal(partner[partner], index)              # mutual pairs
        assert torch.equal(partner // batch, index // batch)     # never across batches
        assert (partner == index).nonzero().flatten().tolist() in ([50], [51], [52])
        within = (partner - index // batch * batch)[:full * batch].view(full, batch)
        seen.update(tuple(row) for row in within.tolist())
    assert len(seen) > 85   # 100 batches drew ~95 distinct of the 945 pairings of 10


@pytest.mark.parametrize("name", ["mixup", "cutmix"])
def test_mixing_a_block_mixes_each_sample_with_a_partner_from_its_own_batch(name):
    """The trainer transforms several batches at once: mixing must still stay in the batch."""
    torch.manual_seed(0)
    batch, rows = 16, 4 * 16 + 6
    reg = batch_regularizer(name, {"alpha": 1.0}, batch, output_dim=rows)
    x = torch.arange(rows, dtype=torch.float32).view(-1, 1, 1, 1).repeat(1, 3, 12, 12)
    mixed_x, mixed_y = reg.batches(x, torch.arange(rows), batch)   # label i = own row i
    partners = set()
    for i in range(rows):
        others = [j for j in mixed_y[i].nonzero().flatten().tolist() if j != i]
        assert len(others) <= 1 and all(j // batch == i // batch for j in others), (i, others)
        if not others:
            continue
        j = others[0]
        partners.add((i, j))
        if name == "mixup":   # the inputs mixed with the same partner and λ as the labels
            expected = mixed_y[i, i] * i + mixed_y[i, j] * j
            torch.testing.assert_close(mixed_x[i], torch.full_like(x[i], expected.item()))
        else:                 # pixels come from the row or its partner, in the label's share
            assert set(mixed_x[i].unique().tolist()) <= {float(i), float(j)}
            pasted = (mixed_x[i] == j).float().mean()
            torch.testing.assert_close(pasted, mixed_y[i, j])
    assert all((j, i) in partners for i, j in partners if name == "mixup")
    assert len(partners) > rows // 2


def test_stockpile_hands_out_consecutive_rows_and_redraws_when_short():
    draws = []

    def draw(count, device):
        draws.append(count)
        return torch.arange(count, device=device) + 1000 * len(draws)

    stock = Stockpile(draw, rows=10)
    cpu = torch.device("cpu")
    assert stock.take(4, cpu).tolist() == [1000, 1001, 1002, 1003]
    assert stock.take(4, cpu).tolist() == [1004, 1005, 1006, 1007]
    assert stock.take(4, cpu).tolist() == [2000, 2001, 2002, 2003]   # 2 left: a fresh draw
    assert stock.take(25, cpu).tolist() == list(range(3000, 3025))   # bigger than a block
    assert draws == [10, 10, 25]


@pytest.mark.parametrize("size", [16, 15])
def test_mixup_targets_sum_to_one_and_equal_the_mixing_coefficient(size):
    x = torch.randn(size, 3, 4, 4, generator=gen())
    y = torch.nn.functional.one_hot(torch.arange(size) % 5, 5).float()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        mixed_x, mixed_y, lam, partner = mixup(x, y, alpha=0.4)
    torch.testing.assert_close(mixed_y.sum(1), torch.ones(size))
    torch.testing.assert_close(mixed_y, lam[:, None] * y + (1 - lam[:, None]) * y[partner])
    torch.testing.assert_close(mixed_x, lam.view(-1, 1, 1, 1) * x
                               + (1 - lam.view(-1, 1, 1, 1)) * x[partner])
    assert len(set(lam.tolist())) == size                    # λ drawn per sample
    alone = partner == torch.arange(size)
    torch.testing.assert_close(mixed_x[alone], x[alone])      # odd size: one sample unmixed


def test_cutmix_label_weight_is_the_clipped_box_area():
    size, side = 400, 10
    x = torch.arange(size * side * side, dtype=torch.float).view(size, 1, side, side)  # all distinct
    y = torch.nn.functional.one_hot(torch.arange(size) % 7, 7).float()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        mixed_x, mixed_y, area, partner = cutmix(x, y, alpha=1.0)
    from_partner = (mixed_x == x[partner]).flatten(1).float().mean(1)
    paired = partner != torch.arange(size)
    torch.testing.assert_close(area[paired], from_partner[paired])   # area actually pasted
    torch.testing.assert_close(mixed_y.sum(1), torch.ones(size))
    torch.testing.assert_close(mixed_y, (1 - area[:, None]) * y + area[:, None] * y[partner])
    pasted = (mixed_x != x).flatten(1).any(1) | ~paired
    assert pasted.float().mean() > 0.8
    # boxes are clipped at the border: the pasted area is on average below E[1 − λ] = 0.5
    assert area[paired].mean() < 0.45 and len(set(area.tolist())) > 20


def test_mixup_cutmix_and_label_smoothing_stack_on_soft_targets():
    ctx = RunContext(task="classification", n_train=100, output_dim=4, input_shape=(1, 6, 6),
                     device=torch.device("cpu"), train={})
    regs = [REGULARIZERS.get(name)(REGULARIZERS.get(name).Params.model_validate(params), ctx)
            for name, params in [("cutmix", {}), ("mixup", {"alpha": 1.0}),
                                 ("label_smoothing", {"epsilon": 0.2})]]
    x, y = torch.randn(32, 1, 6, 6), torch.arange(32) % 4
    for reg in regs:
        x, y = reg.batch(x, y)
    assert y.shape == (32, 4) and y.dtype.is_floating_point
    torch.testing.assert_close(y.sum(1), torch.ones(32))
    assert (y >= 0.2 / 4 - 1e-6).all()                        # smoothing applied last, on top
    assert ((y > 0.06).sum(1) >= 2).float().mean() > 0.5      # most targets mix two classes


# ----------------------------------------------------------------------------- input noise
def test_input_noise_has_the_configured_std_and_is_fresh_each_call():
    x = torch.zeros(1, 200, 50)                      # one member
    noise = torch.randn(x.shape, generator=gen(0))
    torch.testing.assert_close(add_input_noise(x + 1, torch.tensor([[[0.3]]]), noise),
                               1 + 0.3 * noise)
    cls = REGULARIZERS.get("input_noise")
    ctx = RunContext(task="classification", n_train=200, output_dim=2, input_shape=(50,),
                     device=torch.device("cpu"), train={}, run_id="run")
    hook = cls(cls.Params(sigma=0.3), ctx)
    y = torch.zeros(200, dtype=torch.long)
    first, second = hook.batch(x[0], y)[0], hook.batch(x[0], y)[0]
    assert abs(first.std() - 0.3) < 0.01 and abs(first.mean()) < 0.01
    assert not torch.equal(first, second)            # fresh draws on every call
    again = cls(cls.Params(sigma=0.3), ctx)          # the run's own stream: the same draws
    assert torch.equal(again.batch(x[0], y)[0], first)


def trainer_on(data, regularizers: dict, batch_size: int):
    from regbench.engine.train import Trainer

    spec = {"seed": 0, "run_id": "r", "recipe": "r", "config_hash": "h",
            "model": {"name": "mlp", "hidden": [16]}, "regularizers": regularizers,
            "train": {"epochs": 1, "batch_size": batch_size, "scheduler": None,
                      "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.0,
                                    "nesterov": False}}}
    return Trainer(spec, data, torch.device("cpu"))


BATCH_HOOKED = [name for name, cls in REGULARIZERS.items() if "batch" in cls.hooks()]
# parameters that make the effect visible on an 8×8 digit (defaults otherwise)
VISIBLE = {"input_noise": {"sigma": 0.5}, "cutout": {"size": 3}, "random_erasing": {"p": 1.0}}


@pytest.mark.parametrize("name", BATCH_HOOKED)
def test_batch_transforms_touch_training_batches_only(name):
    """Every batch-hook regularizer changes training batches (inputs randomly per call, or the
    targets); measuring never applies it."""
    from regbench.data import prepare

    data = prepare({"name": "digits", "train_subset": 64, "val_fraction": 0.1,
                    "test_fraction": 0.2, "split_seed": 0}, 1000)
    trainer = trainer_on(data, {name: VISIBLE.get(name, {})}, 32)
    reg = trainer.regularizers[0]
    x, y = data.x_train[:32], data.y_train[:32]
    (x1, y1), (x2, _) = reg.batch(x, y), reg.batch(x, y)
    assert x1.shape == x.shape
    if torch.equal(x1, x):  # a target transform (label smoothing): the targets change
        assert y1.dtype.is_floating_point and torch.equal(y1.argmax(1), y)
        assert (y1.max(1).values < 1).all()  # soft: mass moved off the true class
    else:
        assert not torch.equal(x1, x2), "a fresh draw on every call"
    # measuring never transforms: the same initial weights without the regularizer measure the same
    plain = trainer_on(data, {}, 32)
    for split in ((data.x_val, data.y_val), trainer.train_eval):
        ours, theirs = trainer.measure(*split), plain.measure(*split)
        assert {k: v.item() for k, v in ours.items()} == {k: v.item() for k, v in theirs.items()}


def test_affine_grid_equals_torchs():
    import torch.nn.functional as F

    from regbench.regularizers.augment import affine_grid

    theta = torch.randn(5, 2, 3, generator=gen(7))
    for height, width in ((8, 8), (5, 7)):
        torch.testing.assert_close(affine_grid(theta, height, width),
                                   F.affine_grid(theta, [5, 1, height, width], align_corners=False))


def test_beta_draws_have_the_beta_moments():
    torch.manual_seed(0)
    for alpha in (0.2, 1.0, 4.0):
        lam = sample_beta(alpha, 200_000, torch.device("cpu"))
        assert lam.min() >= 0 and lam.max() <= 1
        assert lam.mean().item() == pytest.approx(0.5, abs=0.01)
        assert lam.var().item() == pytest.approx(1 / (4 * (2 * alpha + 1)), rel=0.03)


def test_the_trainer_draws_batches_by_blocks_yet_the_same_batches():
    from regbench.data import prepare

    data = prepare({"name": "digits", "val_fraction": 0.1, "test_fraction": 0.2,
                    "split_seed": 0}, 1000)
    trainer = trainer_on(data, {}, 32)
    assert trainer.block_rows % 32 == 0 and 32 < trainer.block_rows < data.n_train
    permutation = torch.randperm(data.n_train)
    batches = list(trainer._batches(permutation, 32))
    expected = permutation.split(32)
    assert len(batches) == len(expected) and len(batches[-1][0]) == data.n_train % 32
    for (x, y), index in zip(batches, expected):
        assert torch.equal(x, data.x_train[index]) and torch.equal(y, data.y_train[index])


def test_blocks_are_cache_sized_and_per_batch_for_a_transform_that_reads_the_model():
    from regbench.data import DataBundle
    from regbench.engine.train import BLOCK

    n = 2000
    x, y = torch.randn(n, 3, 32, 32), torch.randint(0, 10, (n,))
    data = DataBundle(task="classification", input_shape=(3, 32, 32), output_dim=10,
                      x_train=x, y_train=y, x_val=x[:10], y_val=y[:10], x_test=x[:10],
                      y_test=y[:10], train_eval_index=torch.arange(100), meta={})
    trainer = trainer_on(data, {"augment": {}}, 128)
    max_rows, max_bytes = BLOCK["cpu"]
    assert trainer.block_rows % 128 == 0 and trainer.block_rows * 3 * 32 * 32 * 4 <= max_bytes
    assert trainer.block_rows == 128 * (max_bytes // (3 * 32 * 32 * 4) // 128) > 128
    trainer.hooks["batch"][0].batch_reads_model = True
    assert trainer._block_rows() == 128


@pytest.mark.parametrize("name", ["mixup", "cutmix"])
def test_the_trainer_mixes_each_sample_only_within_its_own_batch(name):
    """Through the trainer's blocks (here one block of 19 batches): sample i of the data has
    the image i and the label i, so a mixed label names the rows it was made of."""
    from regbench.data import DataBundle

    n, batch = 600, 32
    x = torch.arange(n, dtype=torch.float32).view(-1, 1, 1, 1).repeat(1, 1, 8, 8)
    y = torch.arange(n)
    data = DataBundle(task="classification", input_shape=(1, 8, 8), output_dim=n,
                      x_train=x, y_train=y, x_val=x[:10], y_val=y[:10], x_test=x[:10],
                      y_test=y[:10], train_eval_index=torch.arange(10), meta={})
    torch.manual_seed(0)
    trainer = trainer_on(data, {name: {}}, batch)
    assert trainer.block_rows >= n
    permutation = torch.randperm(n)
    mixed = 0
    for (_, mixed_y), rows in zip(trainer._batches(permutation, batch), permutation.split(batch)):
        for own, label in zip(rows.tolist(), mixed_y):
            made_of = set(label.nonzero().flatten().tolist())
            assert own in made_of and made_of <= set(rows.tolist()), (own, made_of)
            mixed += len(made_of) > 1
    assert mixed > n // 2


def test_overriding_batches_alone_makes_a_batch_hook():
    from regbench.regularizers import Regularizer

    class Blockwise(Regularizer):
        def batches(self, x, y, batch_size):
            return x, y

    assert Blockwise.hooks() == ["batch"] and Blockwise.overrides("batch")
    assert Regularizer.hooks() == []


# ----------------------------------------------------------------------------- batch hook order
ORDER_CONFIG = digits_yaml(
    "order", "  mix_first: {mixup: {alpha: 0.4}, label_smoothing: {epsilon: 0.1}, cutout: {size: 3}, augment: {rotate: 10}}\n"
    "  augment_first: {augment: {rotate: 10}, cutout: {size: 3}, label_smoothing: {epsilon: 0.1}, mixup: {alpha: 0.4}}\n",
    seeds="[0]", train_subset=200, hidden=16, epochs=2)
# one recipe name written in each key order (a run's draws are seeded from its run id)
SAME_RECIPE = {order: digits_yaml("order", f"  r: {body}\n", seeds="[0]", train_subset=200,
                                  hidden=16, epochs=2)
               for order, body in (
                   ("mix_first", "{mixup: {alpha: 0.4}, label_smoothing: {epsilon: 0.1}, "
                                 "cutout: {size: 3}, augment: {rotate: 10}}"),
                   ("augment_first", "{augment: {rotate: 10}, cutout: {size: 3}, "
                                     "label_smoothing: {epsilon: 0.1}, mixup: {alpha: 0.4}}"))}


def test_batch_hooks_run_in_the_documented_order_whatever_the_key_order(tmp_path):
    """geometry → erase → noise → mix → targets: mixup blends two augmented images (as its
    paper trains), whichever key the recipe wrote first; both key orders train identically."""
    from tests.builders import trainer_for

    for recipe in ("mix_first", "augment_first"):
        trainer = trainer_for(tmp_path, ORDER_CONFIG, recipe)
        assert [r.name for r in trainer.hooks["batch"]] == \
            ["augment", "cutout", "mixup", "label_smoothing"]
    frames = []
    for order, text in SAME_RECIPE.items():
        result = CliRunner().invoke(app, ["run", str(write_config(tmp_path / f"{order}.yaml",
                                                                  text)),
                                          "--out", str(tmp_path / order), "--no-report"])
        assert result.exit_code == 0, result.output
        frames.append(pd.read_csv(tmp_path / order / "order" / "runs" / "r__seed=0" /
                                  "metrics.csv").drop(columns="seconds"))
    pd.testing.assert_frame_equal(*frames)


def test_a_batch_hook_without_a_stage_is_refused_at_registration():
    from regbench.regularizers.base import Regularizer, register

    class Unstaged(Regularizer):
        name = "test_data_regularizers"     # register demands the module's name

        def batch(self, x, y):
            return x, y

    with pytest.raises(ValueError, match="a batch hook needs batch_stage"):
        register(Unstaged)

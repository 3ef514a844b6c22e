"""The shared template every regularizer must pass, parametrised over the registry:
it trains (alone and paired with every other entry the compatibility rules allow), it is
listed with its parameters, defaults, hooks and meaning, and the compatibility rules refuse or
warn with a reason."""
from __future__ import annotations

import importlib
import itertools
import json
import math

import pytest
from typer.testing import CliRunner

from regbench.catalogue_live import snapshot
from regbench.cli import app
from regbench.experiment.config import load_config
from regbench.data import prepare
from regbench.errors import ConfigError
from regbench.experiment.plan import build_plan
from regbench.regularizers import REGULARIZERS
from regbench.engine.train import train_run

NAMES = REGULARIZERS.names()
BATCH = 32
# Tiny settings tried in order; a recipe runs on the first its compatibility rules accept.
SETTINGS = [
    ({"name": "digits", "train_subset": 2 * BATCH}, {"name": "mlp", "hidden": [16]}),
    ({"name": "digits", "train_subset": 2 * BATCH},
     {"name": "cnn", "channels": [4, 8], "hidden": [16], "kernel_size": 3}),
    ({"name": "digits", "train_subset": 2 * BATCH}, {"name": "resmlp", "width": 16, "blocks": 2}),
    ({"name": "digits", "train_subset": 2 * BATCH},
     {"name": "resnet", "channels": [4, 8], "blocks": 1}),
    ({"name": "synthetic_regression", "n_samples": 200, "n_features": 8,
      "train_subset": 2 * BATCH}, {"name": "mlp", "hidden": [16]}),
]
_DATA: dict[str, object] = {}


def write_experiment(tmp_path, recipe: dict, dataset: dict, model: dict,
                     batch_size: int = BATCH, name: str = "config.yaml"):
    config = {"name": "t", "seeds": [0], "dataset": dataset, "model": model,
              "train": {"epochs": 1, "batch_size": batch_size, "threads": 1,
                        "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9}},
              "recipes": {"r": recipe}}
    path = tmp_path / name
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def plan_for(tmp_path, recipe: dict):
    """The first tiny setting that accepts the recipe, or the refusals of all of them."""
    refusals = []
    for dataset, model in SETTINGS:
        try:
            return build_plan(load_config(write_experiment(tmp_path, recipe, dataset, model))), []
        except ConfigError as exc:
            refusals.append(exc.message)
    return None, refusals


def train_recipe(plan) -> None:
    """Train the recipe's run (two batches) and check every logged number is finite."""
    spec = next(run for run in plan.runs if run["recipe"] == "r")
    key = json.dumps(spec["dataset"], sort_keys=True)
    if key not in _DATA:  # the data loader caches one dataset; settings alternate here
        _DATA[key] = prepare(spec["dataset"], 1000)
    result = train_run(spec, _DATA[key], __import__("torch").device("cpu"))
    assert result.status == "completed", result.error
    assert result.rows and all(math.isfinite(v) for row in result.rows for v in row.values())
    tests = {k: v for k, v in result.summary.items() if k.startswith("test_")}
    assert tests and all(math.isfinite(v) for v in tests.values())


@pytest.mark.parametrize("name", NAMES)
def test_every_regularizer_trains_two_batches_with_finite_metrics(tmp_path, name):
    plan, refusals = plan_for(tmp_path, {name: {}})
    assert plan is not None, f"{name} with default parameters fits no tiny setting: {refusals}"
    train_recipe(plan)


PAIRS = list(itertools.combinations(NAMES, 2))


@pytest.mark.parametrize("first,second", PAIRS, ids=[f"{a}+{b}" for a, b in PAIRS])
def test_every_allowed_pair_trains_together(tmp_path, first, second):
    plan, refusals = plan_for(tmp_path, {first: {}, second: {}})
    if plan is None:
        # refused everywhere: the reason must name the pair (never an unrelated failure)
        assert all(first in r or second in r for r in refusals), refusals
        a, b = REGULARIZERS.get(first), REGULARIZERS.get(second)
        assert a.exclusive is not None and a.exclusive == b.exclusive, refusals
        return
    train_recipe(plan)


def test_exclusive_pairs_are_the_only_pairs_refused_everywhere(tmp_path):
    """Guards the pair test above: it must really train nearly all pairs."""
    exclusive = [(a, b) for a, b in PAIRS
                 if REGULARIZERS.get(a).exclusive
                 and REGULARIZERS.get(a).exclusive == REGULARIZERS.get(b).exclusive]
    assert ("batchnorm", "layernorm") in exclusive and ("dropconnect", "weight_noise") in exclusive
    assert len(exclusive) <= 10 and len(PAIRS) - len(exclusive) >= 200


# ------------------------------------------------------------------------- the catalogue
@pytest.mark.parametrize("name", NAMES)
def test_every_entry_documents_itself(name):
    cls = REGULARIZERS.get(name)
    module = importlib.import_module(cls.__module__)
    assert module.__name__.rsplit(".", 1)[-1] == name
    doc = module.__doc__ or ""
    assert "Paper" in doc and "Hook" in doc, f"{name}: method card lacks its paper or hooks"
    assert cls.summary and cls.paper
    assert cls.hooks(), f"{name} overrides no hook"
    for field, info in cls.Params.model_fields.items():
        assert not info.is_required(), f"{name}.{field} has no default"


def test_list_regularizers_shows_parameters_defaults_hooks_and_meaning():
    rows = {row["name"]: row for row in snapshot(plugins=False)["entries"]["regularizers"]}
    assert set(rows) == set(NAMES)
    assert rows["mixup"]["parameters"] == "alpha=0.2"
    assert rows["mixup"]["hooks"] == "batch 4/5: mix"          # its place in the fixed order
    assert "threshold=3.0" in rows["variational_dropout"]["parameters"]
    assert rows["bayes_by_backprop"]["hooks"] == "build, penalty, epoch_metrics"
    assert rows["stochastic_depth"]["hooks"] == "build"
    result = CliRunner().invoke(app, ["list", "regularizers", "--markdown"])
    assert result.exit_code == 0
    for name, row in rows.items():
        line = next(l for l in result.output.splitlines() if l.startswith(f"| `{name}` |"))
        assert row["meaning"].replace("|", "\\|") in line and row["hooks"] in line


# ------------------------------------------------------------------------- compatibility rules
REFUSED = [
    ({"augment": {}}, SETTINGS[4], "transforms images"),
    ({"cutout": {}}, SETTINGS[4], "transforms images"),
    ({"label_smoothing": {}}, SETTINGS[4], "does not apply to regression"),
    ({"mixup": {}}, SETTINGS[4], "does not apply to regression"),
    ({"cutmix": {}}, SETTINGS[4], "does not apply to regression"),
    ({"batchnorm": {}, "layernorm": {}}, SETTINGS[1], "both normalisation layers"),
    ({"groupnorm": {}, "batchnorm": {}}, SETTINGS[1], "both normalisation layers"),
    ({"dropconnect": {}, "bayes_by_backprop": {}}, SETTINGS[0], "replacements of the model's"),
    ({"stochastic_depth": {}}, SETTINGS[0], "needs a model with residual blocks"),
    ({"stochastic_depth": {}}, SETTINGS[1], "needs a model with residual blocks"),
    ({"groupnorm": {}}, SETTINGS[0], "name layernorm instead"),
    ({"groupnorm": {}}, SETTINGS[2], "name layernorm instead"),
]


@pytest.mark.parametrize("recipe,setting,reason", REFUSED,
                         ids=[f"{'+'.join(r)}-{s[1]['name']}" for r, s, _ in REFUSED])
def test_validate_refuses_meaningless_combinations(tmp_path, recipe, setting, reason):
    path = write_experiment(tmp_path, recipe, *setting)
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert reason in result.output and "Traceback" not in result.output
    assert f"recipes.r.{list(recipe)[-1]}" in result.output  # located at the offending key


@pytest.mark.parametrize("recipe,batch_size,reason", [
    ({"mixup": {}}, 1, "no second sample to mix with"),
    ({"cutmix": {}}, 1, "no second sample to mix with"),
    ({"batchnorm": {}}, 1, "batch_size 1 gives no batch statistics"),
])
def test_validate_refuses_batch_size_one_where_it_cannot_work(tmp_path, recipe, batch_size,
                                                              reason):
    path = write_experiment(tmp_path, recipe, *SETTINGS[1], batch_size=batch_size)
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2 and reason in result.output


@pytest.mark.parametrize("recipe,batch_size,warning", [
    ({"mixup": {}}, 33, "odd batch_size 33"),
    ({"cutmix": {}}, 15, "odd batch_size 15"),
    ({"bayes_by_backprop": {}, "l2": {}}, 32, "counts a second prior"),
    ({"variational_dropout": {}, "l1": {}}, 32, "raises log α"),
    ({"dropout": {}, "batchnorm": {}}, 32, "shifts its variance"),
    ({"augment": {"hflip": 0.5, "crop_padding": 1}}, 32, "mirrors handwritten digits"),
    ({"augment": {"crop_padding": 4, "hflip": 0}}, 32, "half the image out of view"),
    ({"cutout": {"size": 16}}, 32, "every training image is blanked"),
])
def test_validate_warns_about_doubtful_combinations(tmp_path, recipe, batch_size, warning):
    path = write_experiment(tmp_path, recipe, *SETTINGS[1], batch_size=batch_size)
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "warning" in result.output and warning in " ".join(result.output.split())


def test_even_batch_mixup_has_no_warning(tmp_path):
    plan = build_plan(load_config(write_experiment(tmp_path, {"mixup": {}}, *SETTINGS[1])))
    assert not [w for w in plan.warnings if "mixup" in w]


def test_every_regularizer_states_its_deviations_from_the_paper_and_list_details_shows_them():
    from typer.testing import CliRunner

    from regbench.catalogue_live import deviations
    from regbench.cli import app

    builtin = [name for name, cls in REGULARIZERS.items() if not cls.plugin]
    missing = [name for name in builtin if not deviations(REGULARIZERS.get(name))]
    assert not missing, f"no 'Deviations from the paper:' line in {missing}"
    assert "per sample" in deviations(REGULARIZERS.get("mixup"))
    result = CliRunner().invoke(app, ["list", "regularizers", "--details"])
    assert result.exit_code == 0
    assert result.output.count("Deviations from the paper:") >= len(builtin)
    assert "geometry → erase → noise → mix → targets" in result.output

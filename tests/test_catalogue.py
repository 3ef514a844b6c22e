"""The shared template every regularizer must pass, parametrised over the registry:
it trains paired with every other entry the compatibility rules allow (alone, and changing
training: regbench.testing's kit, in tests/test_conformance.py), it is listed with its
parameters, defaults, hooks and meaning, and the compatibility rules refuse or warn with a
reason."""
from __future__ import annotations

import importlib
import itertools
import json

import pytest
from typer.testing import CliRunner

from regbench.catalogue_live import snapshot
from regbench.cli import app
from regbench.experiment.config import load_config
from regbench.experiment.plan import build_plan
from regbench.regularizers import REGULARIZERS
from regbench.testing import SETTINGS, check_documented, experiment_config, plan_for, train_recipe

NAMES = REGULARIZERS.names()


def write_experiment(tmp_path, recipe: dict, dataset: dict, model: dict, **train):
    """The kit's tiny experiment as a file, for the CLI (``train``: epochs, batch_size)."""
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(experiment_config(recipe, dataset, model, **train)))  # JSON is YAML
    return path


# Each regularizer alone: regbench.testing.check_regularizer (tests/test_conformance.py).
PAIRS = list(itertools.combinations(NAMES, 2))


@pytest.mark.parametrize("first,second", PAIRS, ids=[f"{a}+{b}" for a, b in PAIRS])
def test_every_allowed_pair_trains_together(first, second):
    pair = {first: {}, second: {}}
    plan, refusals = plan_for(pair)
    needed = {**REGULARIZERS.get(first).conformance_with,
              **REGULARIZERS.get(second).conformance_with}
    if plan is None and needed:    # one needs another beside it (rdrop: a dropout layer)
        plan, refusals = plan_for({**needed, **pair})
    if plan is None:
        # refused everywhere: the reason must name the pair (never an unrelated failure)
        assert all(first in r or second in r for r in refusals), refusals
        a, b = REGULARIZERS.get(first), REGULARIZERS.get(second)
        assert a.exclusive is not None and a.exclusive == b.exclusive, refusals
        return
    train_recipe(plan)


def test_exclusive_pairs_are_the_only_pairs_refused_everywhere():
    """Guards the pair test above: it must really train nearly all pairs."""
    exclusive = [(a, b) for a, b in PAIRS
                 if REGULARIZERS.get(a).exclusive
                 and REGULARIZERS.get(a).exclusive == REGULARIZERS.get(b).exclusive]
    assert ("batchnorm", "layernorm") in exclusive and ("dropconnect", "weight_noise") in exclusive
    assert ("ema", "swa") in exclusive      # one average is evaluated per run
    assert len(exclusive) <= 11 and len(PAIRS) - len(exclusive) >= 200


# ------------------------------------------------------------------------- the catalogue
@pytest.mark.parametrize("name", NAMES)
def test_every_entry_documents_itself(name):
    cls = REGULARIZERS.get(name)
    module = importlib.import_module(cls.__module__)
    assert module.__name__.rsplit(".", 1)[-1] == name
    doc = module.__doc__ or ""      # a built-in's method card is its module's docstring
    assert "Paper" in doc and "Hook" in doc, f"{name}: method card lacks its paper or hooks"
    check_documented(cls)           # summary, paper, formula, hooks, defaults (regbench.testing)


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

"""One way in: `regbench run`, `regbench.run(...)` and the library take one Launch, so the
front doors accept the same options with the same checks and messages, and the library's
entry points stay small."""
from __future__ import annotations

import ast
import inspect
import json

import pytest
from typer.testing import CliRunner

import regbench
from regbench.cli import app
from regbench.errors import ConfigError
from regbench.experiment.launch import Launch
from regbench.experiment.runner import run_experiment
from regbench.experiment.tune import Search, tune_experiment
from tests.conftest import REPO, TINY_DIGITS, write_config

runner = CliRunner()

# option -> (a CLI argument list, the same as Python keyword options, what the error says)
BAD_OPTIONS = [
    (["--workers", "0"], {"workers": 0}, "--workers: must be >= 1 (got 0)"),
    (["--seeds", "0,one"], {"seeds": "0,one"}, "--seeds: expected comma-separated integers"),
    (["--seeds", "3-1"], {"seeds": "3-1"}, "--seeds: range 3-1 is empty"),
    (["--seeds", "1,1"], {"seeds": [1, 1]}, "--seeds: seeds must be distinct"),
    (["--seeds=-1"], {"seeds": [-1]}, "--seeds: seeds must be between 0 and"),
    (["--min-effect", "-0.1"], {"min_effect": -0.1}, "--min-effect: must be a positive number"),
    (["--confirm-seeds", "0"], {"confirm_seeds": 0}, "--confirm-seeds: must be >= 1 (got 0)"),
    # a typo's count of seeds would be a list of a billion before the first run
    (["--confirm-seeds", "1000000000"], {"confirm_seeds": 10**9},
     "--confirm-seeds: must be <= 1000 (got 1000000000)"),
]
# refused once plugins are loaded (a plugin may register an executor that takes an address)
AFTER_PLUGINS = [
    (["--address", "ray://x:1"], {"address": "ray://x:1"},
     "--address: only used with --executor ray"),
    (["--executor", "rayy"], {"executor": "rayy"},
     "--executor: unknown executor 'rayy' (did you mean 'ray'?)"),
]


@pytest.mark.parametrize("argv,options,message", BAD_OPTIONS + AFTER_PLUGINS,
                         ids=[" ".join(a) for a, _, _ in BAD_OPTIONS + AFTER_PLUGINS])
def test_the_cli_and_the_python_api_refuse_the_same_options_with_the_same_message(
        tmp_path, argv, options, message):
    config = write_config(tmp_path / "tiny.yaml", TINY_DIGITS)
    cli = runner.invoke(app, ["run", str(config), "--out", str(tmp_path / "o"), *argv])
    assert cli.exit_code == 2, cli.output
    assert message in cli.output
    with pytest.raises(ConfigError) as raised:
        regbench.run(config, out=tmp_path / "o", **options)
    assert message in str(raised.value)
    if (argv, options, message) in BAD_OPTIONS:
        with pytest.raises(ConfigError):
            Launch(**options)
    assert not (tmp_path / "o").exists()          # refused before anything is written


def test_wrong_types_are_refused_not_coerced():
    for options in ({"workers": True}, {"workers": 2.0}, {"seeds": [0, "1"]},
                    {"resume": "no"}, {"executor": ""}, {"device": "gpu"},
                    {"fuse": "yes"}, {"trackers": [""]}):
        with pytest.raises(ConfigError):
            Launch(**options)


def test_the_python_api_trains_the_seeds_it_is_given_as_text(tmp_path):
    """Seeds given as "0,1" are seeds 0 and 1 (not the characters '0', ',', '1')."""
    config = write_config(tmp_path / "tiny.yaml", TINY_DIGITS)
    results = regbench.run(config, out=tmp_path, seeds="0,1", report=False,
                           train__epochs=1)
    assert results.exit_code == 0
    assert sorted(results.runs["seed"]) == [0, 0, 1, 1]
    assert sorted(p.name for p in (tmp_path / "tiny" / "runs").iterdir()) == [
        "baseline__seed=0", "baseline__seed=1", "l2__seed=0", "l2__seed=1"]


def test_the_python_api_confirms_on_fresh_seeds_like_the_cli(tmp_path):
    """--confirm-seeds lives in the library: regbench.run(confirm_seeds=K) trains the
    confirmation and returns its folder, the one `regbench run --confirm-seeds` heads with."""
    text = TINY_DIGITS.replace("seeds: [0]", "seeds: [0, 1]") + \
        "sweep:\n  recipes.l2.l2.lambda: [0.1, 10.0]\n"
    config = write_config(tmp_path / "tiny.yaml", text)
    results = regbench.run(config, out=tmp_path / "api", confirm_seeds=2, report=False)
    assert results.folder == tmp_path / "api" / "tiny-confirm"
    assert set(results.runs["seed"]) == {2, 3}           # fresh: after the selection's 0, 1
    plan = json.loads((results.folder / "plan.json").read_text())
    assert plan["confirms"]["selection_seeds"] == [0, 1]
    cli = runner.invoke(app, ["run", str(config), "--out", str(tmp_path / "cli"),
                              "--confirm-seeds", "2", "--no-report"])
    assert cli.exit_code == 0, cli.output
    assert sorted(p.name for p in (tmp_path / "cli" / "tiny-confirm" / "runs").iterdir()) == \
        sorted(p.name for p in (results.folder / "runs").iterdir())


def test_fuse_is_placement_given_by_the_launch(tmp_path):
    """--fuse reaches every run through the Launch, and is no part of a run's identity: the
    runs trained with fuse on are resumed, not retrained, with fuse off."""
    config = write_config(tmp_path / "tiny.yaml", TINY_DIGITS)
    first = run_experiment(config, Launch(out=tmp_path, report=False, fuse="on"))
    assert {spec["train"]["fuse"] for spec in first.plan.runs} == {"on"}
    again = run_experiment(config, Launch(out=tmp_path, report=False, fuse="off"))
    assert {spec["train"]["fuse"] for spec in again.plan.runs} == {"off"}
    assert sorted(again.skipped) == sorted(spec["run_id"] for spec in again.plan.runs)


def test_the_library_entry_points_take_few_parameters():
    for function in (run_experiment, tune_experiment, regbench.run):
        assert len(inspect.signature(function).parameters) <= 6, function.__name__
    assert list(inspect.signature(tune_experiment).parameters)[:3] == ["config", "launch",
                                                                        "search"]
    with pytest.raises(ConfigError, match="--trials"):
        Search(trials=0)


def test_the_cli_passes_options_by_name():
    """No call in the package passes more than 5 positional arguments, and the CLI's shared
    run/sweep body is short (its options are a Launch)."""
    crowded = []
    for path in sorted((REPO / "regbench").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and len(node.args) > 5:
                crowded.append(f"{path.relative_to(REPO)}:{node.lineno}")
            if path.name == "cli.py" and isinstance(node, ast.FunctionDef) \
                    and node.name == "_run":
                assert node.end_lineno - node.lineno + 1 < 25
    assert crowded == []


def test_the_launch_is_frozen_and_replace_checks_again():
    launch = Launch(workers=2)
    with pytest.raises(AttributeError):
        launch.workers = 3
    assert launch.replace(resume=False).resume is False
    with pytest.raises(ConfigError, match="--workers"):
        launch.replace(workers=0)


def test_confirmation_seeds_are_fresh_whatever_the_selection_seeds(tmp_path):
    """--seeds picks the selection's seeds; the confirmation still trains K seeds after them."""
    text = TINY_DIGITS + "sweep:\n  recipes.l2.l2.lambda: [0.1, 10.0]\n"
    config = write_config(tmp_path / "tiny.yaml", text)
    results = regbench.run(config, out=tmp_path, seeds="0,1", confirm_seeds=2, report=False)
    assert set(results.runs["seed"]) == {2, 3}
    selection = {p.name.rsplit("=", 1)[1] for p in (tmp_path / "tiny" / "runs").iterdir()}
    assert selection == {"0", "1"}


def test_an_unknown_tracker_is_refused_before_anything_is_written(tmp_path):
    config = write_config(tmp_path / "tiny.yaml", TINY_DIGITS)
    result = runner.invoke(app, ["run", str(config), "--out", str(tmp_path / "o"), "--log",
                                 "tensorbord", "--dry-run"])
    assert result.exit_code == 2
    assert "--log: unknown tracker 'tensorbord' (did you mean 'tensorboard'?)" in result.output
    assert not (tmp_path / "o").exists()

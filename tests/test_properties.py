"""Property tests of the config loader and the override parsers: whatever a user types, the
answer is a validated config or a RegbenchError (one located line), never another exception,
and no YAML text ever runs code."""
from __future__ import annotations

import copy
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from regbench.errors import RegbenchError
from regbench.experiment.config import load_config
from regbench.experiment.plan import build_plan
from regbench.experiment.sweeps import apply_params

VALID = {
    "name": "prop",
    "seeds": [0, 1],
    "dataset": {"name": "digits", "train_subset": 200, "val_fraction": 0.1},
    "model": {"name": "mlp", "hidden": [8], "activation": "relu"},
    "train": {"epochs": 1, "batch_size": 32, "optimizer": {"name": "sgd", "lr": 0.1},
              "scheduler": None},
    "recipes": {"l2": {"l2": {"lambda": 1e-4}}, "dropout": {"dropout": {"p": 0.5}},
                "long": {"l1": {"lambda": 0.01}, "train": {"epochs": 2}}},
    "sweep": {"recipes.l2.l2.lambda": [0.1, 1.0]},
}

FOLDER = Path(tempfile.mkdtemp(prefix="regbench-properties-"))
MARKER = FOLDER / "code-ran"
PROPERTY = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                    st.sampled_from(["digits", "mlp", "l2", "sgd", "cuda", "../x", "/etc",
                                     "1e-4", "", "csv", "mnist", "cosine"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=6)


def paths(data: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path of nested dicts and lists."""
    found = [prefix] if prefix else []
    if isinstance(data, dict):
        for key, value in data.items():
            found += paths(value, prefix + (key,))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            found += paths(value, prefix + (i,))
    return found


def parent_of(data: Any, path: tuple) -> Any:
    for part in path[:-1]:
        data = data[part]
    return data


def check(text: str, overrides: list[str] = (), params: list[str] = ()) -> None:
    """Load and plan ``text``: success or a RegbenchError with a one-line message."""
    path = FOLDER / "config.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        loaded = load_config(path, list(overrides))
        if params:
            loaded = apply_params(loaded, list(params))
        build_plan(loaded)
    except RegbenchError as exc:
        message = str(exc)
        assert message and "\n" not in message.strip(), message
        assert "Traceback" not in message
    assert not MARKER.exists(), "YAML text ran code"


def dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def test_the_starting_config_is_valid():
    path = FOLDER / "valid.yaml"
    path.write_text(dump(VALID))
    plan = build_plan(load_config(path))
    assert len(plan.runs) == 2 * (1 + 2 + 1 + 1)  # baseline, l2 × 2 λ, dropout, long; 2 seeds


@PROPERTY
@given(st.data())
def test_deleting_a_key_or_changing_its_value(data):
    config = copy.deepcopy(VALID)
    path = data.draw(st.sampled_from(paths(config)))
    parent = parent_of(config, path)
    if data.draw(st.booleans()):
        parent.pop(path[-1])
    else:
        parent[path[-1]] = data.draw(values)
    check(dump(config))


@PROPERTY
@given(st.data())
def test_inserting_a_random_key(data):
    config = copy.deepcopy(VALID)
    mappings = [p for p in paths(config) if isinstance(parent_of(config, p + ("x",)), dict)]
    where = data.draw(st.sampled_from([()] + mappings))
    target = parent_of(config, where + ("x",))
    target[data.draw(st.text(min_size=1, max_size=10))] = data.draw(values)
    check(dump(config))


@PROPERTY
@given(st.data())
def test_random_text_spliced_into_the_yaml(data):
    lines = dump(VALID).splitlines()
    at = data.draw(st.integers(0, len(lines)))
    fragment = data.draw(st.one_of(
        st.text(max_size=30),
        st.sampled_from(["  - [", "{", ": :", "\t", "*alias", "&a x", "!!float", "? x", "---",
                         "'unclosed", "%YAML 1.2", "\x00", "\ufeff", "<<: 1", "- -", "|",
                         "a: b: c", "  epochs: 1e400", "key: !!binary aGk=", "@x", "`"])))
    if data.draw(st.booleans()) and at < len(lines):
        lines[at] = fragment
    else:
        lines.insert(at, fragment)
    check("\n".join(lines) + "\n")


assignment_keys = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["train.epochs", "recipes.l2.l2.lambda", "model.hidden", "name", "seeds",
                     "dataset.name", "train.optimizer", "recipes.new.l1.lambda", "train..x",
                     "sweep.x", "recipes", ".", "train.epochs.deeper", "recipes.l2.train"]))
assignment_values = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["1", "-1", "0", "1e-4", "[1, 2]", "{a: 1}", "~", "true", ".inf", ".nan",
                     "[", "'", "1,2,3", "!!python/object/apply:os.getcwd []", "[[1]]", "{}"]))


@PROPERTY
@given(st.lists(st.tuples(assignment_keys, assignment_values), min_size=1, max_size=3),
       st.booleans())
def test_random_set_and_param_options(pairs, as_params):
    options = [f"{key}={value}" for key, value in pairs]
    if as_params:
        check(dump(VALID), params=options)
    else:
        check(dump(VALID), overrides=options)


@PROPERTY
@given(st.text(max_size=40))
def test_options_without_an_equals_sign_or_with_odd_text(text):
    check(dump(VALID), overrides=[text])


DANGEROUS = [
    f"!!python/object/apply:os.system ['touch {MARKER}']",
    f"!!python/object/apply:pathlib.Path.touch [!!python/object/apply:pathlib.Path ['{MARKER}']]",
    f"!!python/object/new:subprocess.Popen [['touch', '{MARKER}']]",
    "!!python/name:os.system",
    "!!python/module:os",
    "!!python/object:pathlib.Path {}",
    "!!python/tuple [1, 2]",
    "!!set {a, b}",
    "!!binary aGVsbG8=",
]


@settings(max_examples=120, deadline=None, derandomize=True)
@given(st.data())
def test_object_constructing_tags_are_refused_wherever_they_appear(data):
    config = copy.deepcopy(VALID)
    path = data.draw(st.sampled_from(paths(config)))
    parent = parent_of(config, path)
    placeholder = "PLACEHOLDER_VALUE"
    parent[path[-1]] = placeholder
    tag = data.draw(st.sampled_from(DANGEROUS))
    text = dump(config).replace(placeholder, tag)
    file = FOLDER / "tagged.yaml"
    file.write_text(text)
    with pytest.raises(RegbenchError, match="not allowed"):
        load_config(file)
    valid = FOLDER / "valid.yaml"
    valid.write_text(dump(VALID))
    with pytest.raises(RegbenchError, match="not allowed"):
        load_config(valid, [f"{'.'.join(map(str, path))}={tag}"])
    assert not MARKER.exists()


def teardown_module(module):
    for file in FOLDER.iterdir():
        file.unlink()
    os.rmdir(FOLDER)

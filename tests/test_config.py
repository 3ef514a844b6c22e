"""Config loading: typed, located errors (file:line:col: key: expected), safe YAML only."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from regbench.cli import app
from regbench.config.yaml_io import parse_yaml
from regbench.errors import ConfigError
from regbench.experiment.config import load_config
from tests.conftest import REPO

runner = CliRunner()

GOOD = """\
name: cfg
dataset: {name: digits, train_subset: 200}
model: {name: mlp, hidden: [8]}
train:
  epochs: 1
  batch_size: 32
recipes:
  l2: {l2: {lambda: 1e-4}}
  dropout: {dropout: {p: 0.5}}
"""


def validate(tmp_path, text: str, *extra: str):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    result = runner.invoke(app, ["validate", str(path), *extra])
    return result, str(path)


def assert_config_error(result, source: str, *fragments: str) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    assert lines[0].startswith(f"regbench: error: {source}")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_exponent_floats_are_floats_not_strings(tmp_path):
    data, _ = parse_yaml("a: 1e-4\nb: -2E+3\nc: 5\nd: 1.5e-3\ne: 1e4x\n")
    assert data == {"a": 1e-4, "b": -2000.0, "c": 5, "d": 1.5e-3, "e": "1e4x"}
    assert isinstance(data["a"], float)
    path = tmp_path / "cfg.yaml"
    path.write_text(GOOD)
    loaded = load_config(path)
    assert loaded.config.recipes["l2"]["l2"]["lambda"] == 1e-4


def test_valid_config_validates_and_reports_penalized_parameters(tmp_path):
    result, _ = validate(tmp_path, GOOD)
    assert result.exit_code == 0, result.output
    assert "penalized: 2 weight tensors, 1.weight, 3.weight" in result.output
    assert "recipe baseline" in result.output  # added automatically
    assert "gradient coefficient" in result.output


@pytest.mark.parametrize("text,where,fragments", [
    (GOOD.replace("epochs: 1", "epochs: 0"), ":5:11:", ["train.epochs", "must be >= 1 (got 0)"]),
    (GOOD.replace("lambda: 1e-4", "lambda: -1.0"), ":8:21:",
     ["recipes.l2.l2.lambda", "must be >= 0 (got -1.0)"]),
    (GOOD.replace("p: 0.5", "p: 1.0"), ":9:26:", ["recipes.dropout.dropout.p", "must be < 1"]),
    (GOOD.replace("train:", "trian:"), ":4:1:", ["unknown key 'trian'", "did you mean 'train'"]),
    (GOOD.replace("batch_size", "batchsize"), ":6:3:",
     ["train.batchsize", "did you mean 'batch_size'"]),
    (GOOD.replace("{l2: {lambda", "{l3: {lambda"), ":8:8:",
     ["recipes.l2.l3", "unknown regularizer 'l3'", "expected one of:", "l2"]),
    (GOOD.replace("name: digits", "name: digitz"), ":2:17:",
     ["dataset.name", "unknown dataset 'digitz'", "did you mean 'digits'"]),
    (GOOD.replace("name: mlp", "name: mpl"), ":3:15:", ["model.name", "unknown model 'mpl'"]),
    (GOOD.replace("hidden: [8]", "hidden: eight"), ":3:", ["model.hidden", "must be a list"]),
    (GOOD.replace("batch_size: 32", "batch_size: many"), ":6:15:",
     ["train.batch_size", "must be an integer (got 'many')"]),
    (GOOD.replace("recipes:", "recipes: [\n"), ":", ["malformed YAML"]),
    (GOOD + "  l2: {l1: {}}\n", ":10:3:", ["recipes.l2", "duplicate key 'l2'"]),
    (GOOD.replace("{dropout: {p: 0.5}}", "{dropout: 0.5}"), ":9:22:",
     ["recipes.dropout.dropout", "must be a mapping"]),
    ("", ":1:1:", ["the config is empty"]),
    ("- a\n- b\n", ":1:1:", ["must be a mapping"]),
    (GOOD.replace("name: cfg", "name: ../escape"), ":1:7:", ["name", "experiment name must be"]),
])
def test_bad_configs_give_one_located_line_and_exit_2(tmp_path, text, where, fragments):
    result, source = validate(tmp_path, text)
    assert_config_error(result, source + where, *fragments)


def test_python_object_tags_are_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    text = GOOD.replace("name: cfg", f"name: !!python/object/apply:os.system ['touch {marker}']")
    result, source = validate(tmp_path, text)
    assert_config_error(result, source + ":1:7:", "tag", "not allowed")
    assert not marker.exists()
    text = GOOD + f"extra: !!python/object/new:subprocess.Popen [['touch', '{marker}']]\n"
    result, source = validate(tmp_path, text)
    assert_config_error(result, source, "not allowed")
    assert not marker.exists()


def test_set_overrides_are_parsed_as_yaml_and_validated(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(GOOD)
    loaded = load_config(path, ["train.epochs=3", "recipes.l2.l2.lambda=2e-3",
                                "model.hidden=[4, 4]"])
    assert loaded.config.train.epochs == 3
    assert loaded.config.recipes["l2"]["l2"]["lambda"] == 2e-3
    assert loaded.config.model.model_extra["hidden"] == [4, 4]
    with pytest.raises(ConfigError) as error:
        load_config(path, ["train.epochs=zero"])
    assert str(error.value) == ("--set train.epochs: train.epochs: must be an integer "
                                "(got 'zero')")
    result, _ = validate(tmp_path, GOOD, "--set", "train.epochs")
    assert_config_error(result, "--set", "expected key.path=value")


def test_missing_config_file(tmp_path):
    result = runner.invoke(app, ["validate", str(tmp_path / "nope.yaml")])
    assert_config_error(result, str(tmp_path / "nope.yaml"), "config file not found")


def test_incompatible_regularizer_is_refused_with_a_reason(tmp_path):
    text = GOOD.replace("name: digits, train_subset: 200", "name: diabetes") \
               .replace("{dropout: {p: 0.5}}", "{label_smoothing: {epsilon: 0.1}}")
    result, source = validate(tmp_path, text)
    assert_config_error(result, source + ":9:13:", "label_smoothing does not apply to regression")


@pytest.mark.parametrize("seeds,fragment", [("1,1", "seeds must be distinct"),
                                            ("-1", "between 0 and 4294967295 (got -1)"),
                                            (str(10**23), "between 0 and 4294967295"),
                                            ("a,b", "expected comma-separated integers"),
                                            ("0-", "or ranges such as 0,1,2 or 0-4"),
                                            ("4-2", "range 4-2 is empty"),
                                            ("0-3,2", "seeds must be distinct")])
def test_bad_seeds_option(tmp_path, seeds, fragment):
    path = tmp_path / "cfg.yaml"
    path.write_text(GOOD)
    result = runner.invoke(app, ["run", str(path), "--seeds", seeds, "--out", str(tmp_path / "o")])
    assert_config_error(result, "--seeds", fragment)
    assert not (tmp_path / "o").exists()  # nothing written


def test_seed_ranges():
    from regbench.experiment.launch import parse_seeds

    assert parse_seeds("0-4") == (0, 1, 2, 3, 4)
    assert parse_seeds("0-2, 7,9-10") == (0, 1, 2, 7, 9, 10)
    assert parse_seeds("3") == (3,) and parse_seeds("5-5") == (5,)
    assert parse_seeds([4, 2]) == (4, 2) and parse_seeds(None) is None


def test_validate_never_downloads(tmp_path):
    """configs/mnist_l2.yaml names download: true; validate checks it without the network and
    says the files will be downloaded on the first run, creating nothing."""
    config = tmp_path / "mnist.yaml"
    config.write_text((REPO / "configs" / "mnist_l2.yaml").read_text()
                      .replace("root: data", f"root: {tmp_path / 'mnist'}"))
    result = runner.invoke(app, ["validate", str(config)])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())       # the console folds long lines
    assert (f"dataset mnist (classification): the MNIST files are not in {tmp_path / 'mnist'}: "
            "they will be downloaded on the first run; input (1, 28, 28), outputs 10" in output)
    assert "penalized: 2 weight tensors" in output    # the models were still built
    assert not (tmp_path / "mnist").exists()          # nothing downloaded, no folder made

"""The config reference: docs/config.md and the JSON Schema are generated from the schema, stay
in sync with it, and a real JSON-Schema validator flags what `regbench validate` refuses."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from regbench.cli import app
from regbench.config.schema import (
    DatasetConfig,
    DiagnosisConfig,
    ExperimentConfig,
    OptimizerConfig,
    SchedulerConfig,
    TrainConfig,
)
from regbench.config.yaml_io import read_yaml_file
from regbench.experiment.reference import field_comments, json_schema, write
from tests.conftest import REPO

jsonschema = pytest.importorskip("jsonschema", reason="the dev extra installs jsonschema")
runner = CliRunner()
SHIPPED = sorted([*REPO.glob("configs/**/*.yaml"), *REPO.glob("regbench/gallery/configs/*.yaml")])


def _validator(schema=None):
    schema = schema or json.loads((REPO / "docs" / "regbench.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_generated_files_are_up_to_date():
    stale = write(REPO, check=True)
    assert not stale, f"regenerate with `python -m regbench.experiment.reference`: {stale}"


def test_every_shared_key_has_a_written_meaning():
    for model in (ExperimentConfig, TrainConfig, OptimizerConfig, SchedulerConfig,
                  DiagnosisConfig, DatasetConfig):
        missing = set(model.model_fields) - set(field_comments(model))
        assert not missing, f"{model.__name__}: no comment beside {sorted(missing)}"
    text = (REPO / "docs" / "config.md").read_text()
    for key in ("`train.threads`", "`dataset.label_noise`", "`dataset.split_seed`",
                "`diagnosis.accuracy_gap`", "`train.scheduler.name`", "`train.optimizer.name`",
                "`recipes.<name>.l2.lambda`", "### dataset `csv`", "### model `mlp`"):
        assert key in text, key


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_config_is_valid_under_the_schema(path: Path):
    data, _ = read_yaml_file(path)     # regbench's YAML reading: 1e-3 is a number
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in _validator().iter_errors(data)]
    assert not errors, errors


MISSPELLED = [
    ("train", "epocs", 3),
    ("dataset", "val_fracton", 0.2),
    ("model", "hiden", [64]),
    ("diagnosis", "acuracy_gap", 0.1),
]


@pytest.mark.parametrize("section,key,value", MISSPELLED)
def test_a_misspelled_key_is_flagged_by_the_schema_and_by_validate(tmp_path, section, key, value):
    data, _ = read_yaml_file(REPO / "configs" / "quickstart.yaml")
    bad = copy.deepcopy(data)
    bad.setdefault(section, {})[key] = value
    errors = list(_validator().iter_errors(bad))
    assert errors and any(key in e.message or any(key in (c.message) for c in e.context)
                          for e in errors), [e.message for e in errors]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2 and key in result.output


def test_a_regularizer_parameter_and_value_range_are_checked():
    data, _ = read_yaml_file(REPO / "configs" / "quickstart.yaml")
    validator = _validator()
    assert validator.is_valid(data)
    typo = copy.deepcopy(data)
    typo["recipes"]["l2"]["l2"] = {"lamda": 1.0}
    assert not validator.is_valid(typo)
    negative = copy.deepcopy(data)
    negative["recipes"]["dropout"]["dropout"]["p"] = 1.5
    assert not validator.is_valid(negative)
    unknown = copy.deepcopy(data)
    unknown["recipes"]["l2"] = {"l3": {}}
    assert not validator.is_valid(unknown)
    shorthand = copy.deepcopy(data)
    shorthand["train"]["scheduler"] = "cosine"      # accepted by regbench, so by the schema
    shorthand["recipes"]["l2"]["train"] = {"epochs": 5}
    assert validator.is_valid(shorthand), list(validator.iter_errors(shorthand))


def test_schema_command_prints_the_schema_with_plugins(tmp_path):
    from importlib.metadata import entry_points

    result = subprocess.run([sys.executable, "-m", "regbench", "schema"], capture_output=True,
                            text=True, cwd=tmp_path, check=True)
    # a fresh process knows regbench's own entries and installed plugins only (this process may
    # hold plugins other test files registered)
    if not entry_points(group="regbench.plugins"):
        assert json.loads(result.stdout) == json_schema(plugins=False)
    plugin = tmp_path / "plug.py"
    plugin.write_text(
        "import regbench\nfrom regbench.plugins import StrictModel\n\n"
        "class Params(StrictModel):\n    strength: float = 1.0   # how hard\n\n\n"
        "@regbench.register_regularizer('schema_probe')\nclass Probe(regbench.Regularizer):\n"
        "    summary = 'a probe'\n    penalizes = True\n    Params = Params\n\n"
        "    def penalty(self, model):\n        return 0.0\n")
    out = tmp_path / "s.json"
    result = runner.invoke(app, ["schema", "--plugin", str(plugin), "--out", str(out)])
    assert result.exit_code == 0, result.output
    schema = json.loads(out.read_text())
    recipe = schema["properties"]["recipes"]["additionalProperties"]["properties"]
    params = recipe["schema_probe"]["anyOf"][0]
    assert params["properties"]["strength"]["description"] == "how hard"
    config = {"name": "p", "recipes": {"probe": {"schema_probe": {"strength": 2.0}}}}
    assert _validator(schema).is_valid(config)
    assert not _validator().is_valid(config)    # regbench's own schema does not know it


@pytest.mark.parametrize("path", sorted(REPO.glob("configs/**/*.yaml")),
                         ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_configs_point_editors_at_the_schema(path: Path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema="), first
    target = (path.parent / first.split("$schema=", 1)[1]).resolve()
    assert target == (REPO / "docs" / "regbench.schema.json").resolve()

"""The README stays true: its catalogue is the generated one, its configs validate."""
from __future__ import annotations

import re

from typer.testing import CliRunner

from conftest import REPO
from regbench.catalogue import readme_with_catalogue, stored
from regbench.catalogue_live import snapshot
from regbench.cli import app


def test_readme_and_stored_catalogue_are_generated_from_the_registries():
    text = (REPO / "README.md").read_text()
    stale = "stale: run `python -m regbench.catalogue README.md`"
    assert stored() == snapshot(plugins=False), f"regbench/catalogue.json is {stale}"
    assert readme_with_catalogue(text, snapshot(plugins=False)) == text, f"README is {stale}"


def test_readme_config_example_validates(tmp_path):
    text = (REPO / "README.md").read_text()
    example = re.search(r"## A config\n\n```yaml\n(.*?)```", text, re.S).group(1)
    # the example downloads MNIST; validate its schema against offline digits instead
    example = example.replace("name: mnist ", "name: digits").replace("download: true",
                                                                      "download: false")
    path = tmp_path / "example.yaml"
    path.write_text(example)
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "dropout_long" in result.output

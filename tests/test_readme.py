"""The README stays true: its catalogue is the generated one, its configs validate."""
from __future__ import annotations

import re

from conftest import REPO
from typer.testing import CliRunner

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


def test_readme_links_to_files_that_exist_including_the_screenshots():
    text = (REPO / "README.md").read_text()
    links = re.findall(r"\]\(((?!https?:|#)[^)]+)\)", text)
    assert {"docs/config.md", "docs/images/quickstart-report.png",
            "docs/images/quickstart-terminal-80.svg",
            "docs/images/quickstart-terminal-200.svg"} <= set(links)
    missing = [link for link in links if not (REPO / link.split("#")[0]).exists()]
    assert not missing, missing
    for width in (80, 200):     # rich's SVG export of the table at that width
        svg = (REPO / "docs" / "images" / f"quickstart-terminal-{width}.svg").read_text()
        assert svg.startswith("<svg") and f"compare — {width} columns" in svg.replace("&#160;", " ")


def test_readme_ci_example_is_valid_yaml_that_runs_a_smoke_with_junit():
    import yaml

    text = (REPO / "README.md").read_text()
    block = re.search(r"```yaml\n(# \.github/workflows/.*?)```", text, re.S).group(1)
    steps = yaml.safe_load(block)["jobs"]["smoke"]["steps"]
    commands = [step["run"] for step in steps if "run" in step]
    assert any("--smoke" in c and "--junit" in c for c in commands)

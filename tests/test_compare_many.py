"""`regbench compare A B …`: experiments side by side, each against its own baseline, through
the real command line on folders that real runs wrote; read-only."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from conftest import TINY_REGRESSION, digits_yaml
from test_bad_input import one_error_line, snapshot
from typer.testing import CliRunner

from regbench.analysis.side_by_side import NOT_ACROSS
from regbench.cli import app

runner = CliRunner()

REGRESSION = TINY_REGRESSION.format(epochs=2)


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, Path]:
    """Three finished experiments: `wide` (two recipes, three seeds: a 97.5% family), `narrow`
    (one recipe, two seeds: 95%) and a regression one."""
    root = tmp_path_factory.mktemp("many")
    configs = {
        "wide": digits_yaml("wide", "  l2: {l2: {lambda: 0.5}}\n  dropout: {dropout: {p: 0.3}}\n",
                            seeds="[0, 1, 2]", epochs=2, train_subset=200),
        "narrow": digits_yaml("narrow", "  l2: {l2: {lambda: 2.0}}\n", seeds="[0, 1]",
                              epochs=2, train_subset=200),
        "reg": REGRESSION,
    }
    for name, text in configs.items():
        config = root / f"{name}.yaml"
        config.write_text(text)
        result = invoke("run", config, "--out", root / "out", "--no-report")
        assert result.exit_code == 0, result.output
    return {name: root / "out" / name for name in configs}


def md_table(text: str) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the first markdown table in ``text``."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    split = [[c.strip() for c in line.strip().strip("|").split(" | ")] for line in lines]
    return split[0], split[2:]


def test_md_rows_are_each_folders_own_comparison(results):
    wide, narrow = results["wide"], results["narrow"]
    before = {name: snapshot(folder) for name, folder in results.items()}
    combined = invoke("compare", wide, narrow, "--format", "md")
    assert combined.exit_code == 0, combined.output
    header, cells = md_table(combined.output)
    assert header[0] == "experiment" and header[6] == "CI level"
    levels = set()
    for folder in (wide, narrow):
        alone = invoke("compare", folder, "--format", "md")
        assert alone.exit_code == 0, alone.output
        own_header, own_cells = md_table(alone.output)
        mine = [row for row in cells if row[0] == folder.name]
        # the same rows in the same order, every cell (verdicts, intervals, p) as `compare A`
        assert [row[1:6] + row[7:] for row in mine] == own_cells
        level = own_header[4].split("[")[1].split(" CI")[0]       # "97.5%" of "[97.5% CI]"
        levels.add(level)
        assert {row[6] for row in mine if row[5]} == {level}      # each Δ at its own level
        assert all(row[6] == "" for row in mine if row[1] == "baseline")
        verdicts = [row[5] for row in own_cells if row[0] != "baseline"]
        assert verdicts and all(verdicts)
        # its notes follow the table under its name, its scope line first
        scope = next(line[2:] for line in alone.output.splitlines()
                     if line.startswith("- Δ ["))
        assert f"- {folder.name}: {scope}" in combined.output.splitlines()
    assert levels == {"97.5%", "95%"}       # two families: two levels, never one pooled
    assert NOT_ACROSS in combined.output.splitlines()
    assert {name: snapshot(folder) for name, folder in results.items()} == before


def test_csv_is_the_union_of_the_folders_csvs_with_an_experiment_column(results):
    wide, narrow = results["wide"], results["narrow"]
    combined = invoke("compare", wide, narrow, "--format", "csv")
    assert combined.exit_code == 0, combined.output
    reader = csv.DictReader(io.StringIO(combined.output))
    assert reader.fieldnames[0] == "experiment"
    rows = list(reader)
    expected = []
    for folder in (wide, narrow):
        alone = invoke("compare", folder, "--format", "csv")
        assert alone.exit_code == 0, alone.output
        expected += [{"experiment": folder.name, **row}
                     for row in csv.DictReader(io.StringIO(alone.output))]
    assert rows == [{key: row.get(key, "") for key in reader.fieldnames} for row in expected]
    assert len(rows) == 3 + 2


def test_the_terminal_table_shows_both_experiments_and_says_they_are_not_compared(results):
    wide, narrow = results["wide"], results["narrow"]
    before = {name: snapshot(folder) for name, folder in results.items()}
    shown = invoke("compare", wide, narrow)
    assert shown.exit_code == 0, shown.output
    assert NOT_ACROSS in shown.output
    assert "CI level" in shown.output and "97.5%" in shown.output and "95%" in shown.output
    assert any(line.lstrip("│ ").startswith("wide") for line in shown.output.splitlines())
    assert any(line.lstrip("│ ").startswith("narrow") for line in shown.output.splitlines())
    assert {name: snapshot(folder) for name, folder in results.items()} == before


@pytest.mark.parametrize("order,metric,named,fragment", [
    (("wide", "reg"), ["--metric", "accuracy"], "reg",
     "--metric 'accuracy' is not a regression metric"),
    (("reg", "wide"), [], "wide", "'mse' (the metric of"),
])
def test_a_metric_one_folder_lacks_is_refused_naming_it(results, order, metric, named, fragment):
    before = {name: snapshot(folder) for name, folder in results.items()}
    result = invoke("compare", *(results[name] for name in order), *metric)
    one_error_line(result, 2, f"regbench: error: {results[named]}: ", fragment)
    assert {name: snapshot(folder) for name, folder in results.items()} == before


def test_write_with_several_folders_is_refused(results):
    before = {name: snapshot(folder) for name, folder in results.items()}
    result = invoke("compare", results["wide"], results["narrow"], "--write")
    one_error_line(result, 2, "--write:", "only reads")
    assert {name: snapshot(folder) for name, folder in results.items()} == before


def test_a_missing_folder_is_refused_as_compare_a_refuses_it(results, tmp_path):
    missing = tmp_path / "nothing"
    alone = one_error_line(invoke("compare", missing), 2)
    assert one_error_line(invoke("compare", results["wide"], missing), 2) == alone
    (tmp_path / "empty").mkdir()
    alone = one_error_line(invoke("compare", tmp_path / "empty"), 2)
    assert one_error_line(invoke("compare", tmp_path / "empty", results["wide"]), 2) == alone

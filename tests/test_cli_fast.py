"""Commands that only read results answer without loading torch, scikit-learn or Ray; small
CLI conveniences: --version, --debug after the command, a warning for more workers than
cores, and a progress bar that does not call a plain run a sweep."""
from __future__ import annotations

import io
import os
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from regbench import __version__
from regbench.cli import app
from tests.conftest import REPO, TINY_DIGITS, write_config

HEAVY = re.compile(r"\|\s+(torch|sklearn|ray)(\.|$)")


def regbench(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
                          timeout=120)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("fast")
    config = write_config(root / "tiny.yaml", TINY_DIGITS)
    result = CliRunner().invoke(app, ["run", str(config), "--out", str(root), "--no-report"])
    assert result.exit_code == 0, result.output
    return root / "tiny"


@pytest.mark.parametrize("command", [["compare"], ["diagnose"], ["report"], ["status"], ["list"],
                                     ["list", "models"], ["--help"]])
def test_reading_commands_import_no_torch_sklearn_or_ray(results, command):
    args = command + ([str(results)] if command[0] in ("compare", "diagnose", "report", "status")
                      else [])
    done = regbench("-X", "importtime", "-m", "regbench", *args)
    assert done.returncode == 0, done.stderr[-2000:]
    heavy = sorted({m.group(1) for m in HEAVY.finditer(done.stderr)})
    assert heavy == [], f"regbench {' '.join(command)} imported {heavy}"
    if command == ["list"]:            # the stored catalogue lists what the registries hold
        assert "dropconnect" in done.stdout and "torchvision" in done.stdout
    if command[0] == "report":
        assert (results / "report.html").is_file()
    if command[0] == "status":
        assert "2 runs in its plan: 2 completed" in done.stdout


def test_version_and_debug_after_the_command(results):
    done = regbench("-m", "regbench", "--version")
    assert done.returncode == 0 and done.stdout.strip() == f"regbench {__version__}"
    plain = regbench("-m", "regbench", "compare", str(results / "missing"))
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    debug = regbench("-m", "regbench", "compare", str(results / "missing"), "--debug")
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    assert "no such results folder" in debug.stderr


def test_more_workers_than_cores_is_warned_about(tmp_path):
    config = write_config(tmp_path / "tiny.yaml", TINY_DIGITS)
    many = (os.cpu_count() or 1) + 1
    result = CliRunner().invoke(app, ["run", str(config), "--out", str(tmp_path), "--dry-run",
                                      "--workers", str(many)])
    assert result.exit_code == 0, result.output
    assert f"--workers {many} is more than this machine's" in result.output
    result = CliRunner().invoke(app, ["run", str(config), "--out", str(tmp_path), "--dry-run"])
    assert "more than this machine's" not in result.output


def test_the_live_progress_bar_of_a_plain_run_is_not_called_a_sweep():
    from rich.console import Console

    from regbench.experiment.progress import make_progress

    buffer = io.StringIO()
    progress = make_progress(Console(file=buffer, force_terminal=True, width=100), live=True)
    progress.start(total=3, skipped=0)
    progress.close()
    assert "all runs" in buffer.getvalue() and "sweep" not in buffer.getvalue()


@pytest.mark.parametrize("width", [80, 120])
def test_a_narrow_terminal_keeps_recipe_interval_and_verdict_whole(results, width):
    from regbench.analysis.compare import compare_results, display_rows

    header, cells = display_rows(compare_results(results))
    result = CliRunner().invoke(app, ["compare", str(results)], env={"COLUMNS": str(width)})
    assert result.exit_code == 0, result.output
    table = [line for line in result.output.splitlines() if line.startswith(("┃", "│", "┏"))]
    assert table and all(len(line) <= width for line in table)
    for row in cells:   # name, Δ [CI] and verdict printed whole, never cut to "…"
        line = next(l for l in table if l.startswith("│ " + row[0] + " "))
        assert row[4] in line and row[5] in line
    assert "…" not in result.output
    if width == 80:
        assert "left out to fit 80 columns:" in result.output

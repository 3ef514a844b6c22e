"""report.html from a real (tiny) experiment: self-contained, table first, diverged runs shown,
and rendered by a real headless Chromium into a non-blank screenshot with no console errors."""
from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from regbench.cli import app

runner = CliRunner()
CHROMIUM = Path("/usr/bin/chromium")

CONFIG = """\
name: report_demo
seeds: [0, 1]
dataset: {name: synthetic_classification, n_samples: 240, n_features: 40, n_informative: 4,
          noise: 0.2, val_fraction: 0.3}
model: {name: mlp, hidden: [64]}
train: {epochs: 6, batch_size: 16, optimizer: {name: adam, lr: 0.01}, threads: 1}
recipes:
  l1: {l1: {lambda: 5.0}}     # swept below: the report must show the swept values
  exploding: {train: {optimizer: {name: sgd, lr: 1.0e+8}}}
sweep:
  recipes.l1.l1.lambda: [0.01, 1.0]
"""


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    config = root / "demo.yaml"
    config.write_text(CONFIG)
    result = runner.invoke(app, ["run", str(config), "--out", str(root / "results")])
    assert result.exit_code == 1, result.output  # the exploding recipe diverges
    return root / "results" / "report_demo"


def test_run_writes_a_self_contained_report(experiment: Path):
    page = (experiment / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # nothing fetched
    assert "<script" not in page
    images = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == len(list((experiment / "plots").glob("*.png"))) >= 7
    assert all(base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n" for data in images)
    # a person reads the answer and its picture first, then the table, the verdicts, the curves
    answer, forest, table, diagnosis, curves = (page.index(s) for s in (
        'id="headline"', '<img alt="Δ test accuracy vs baseline"', "<h2>Comparison",
        "<h2>Diagnosis", "<h2>Learning curves"))
    assert answer < forest < table < diagnosis < curves < page.index('<img alt="learning')
    for point in ("baseline", "l1 lambda=0.01", "l1 lambda=1", "exploding"):
        assert f"<td>{point}" in page
    assert "l1(lambda={0.01, 1.0}," in page and "lambda=5.0" not in page   # the header
    head = page[table:diagnosis]
    assert "v-diverged" in head and "0/2" in head  # the diverged recipe stays in the table
    assert "diverged at epoch" in page or "became nan" in page.lower()


def test_star_and_dagger_are_defined_once_in_the_key(experiment: Path):
    """A sweep's pick (★) and a recipe with its own training settings (†) are marked in the
    table and defined in the key at the top, not again in the table's notes."""
    page = (experiment / "report.html").read_text(encoding="utf-8")
    key = page[page.index('id="symbols"'):page.index("</div>", page.index('id="symbols"'))]
    table = page[page.index('<table id="comparison"'):page.index("<h2>Diagnosis")]
    assert "<b>★</b> best of its sweep on validation" in key
    assert "<b>†</b> the recipe trains with settings that differ" in key
    assert "<td>exploding †</td>" in table and re.search(r"<td>l1 lambda=[\d.]+ ★</td>", table)
    for definition in ("best of its sweep on validation, with the same seeds",
                       "trains with settings that differ"):
        assert page.count(definition) == 1, definition


def test_runs_say_whether_they_sparsify_and_the_sparsity_plot_follows(experiment: Path):
    import json

    summaries = [json.loads(p.read_text()) for p in experiment.glob("runs/*/summary.json")]
    completed = [s for s in summaries if s["status"] == "completed"]
    assert {s["recipe"]: s["sparsifying"] for s in completed} == {"baseline": False, "l1": True}
    assert (experiment / "plots" / "sparsity.png").is_file()


def test_report_command_rebuilds_from_run_folders(experiment: Path):
    (experiment / "report.html").unlink()
    shutil.rmtree(experiment / "plots")
    result = runner.invoke(app, ["report", str(experiment)])
    assert result.exit_code == 0, result.output
    assert (experiment / "report.html").is_file()
    # every point's learning curves, the diverged one's too, in one small-multiples figure
    assert sorted(p.name for p in (experiment / "plots").glob("curves*.png")) == [
        "curves.png", "curves__all.png"]
    missing = runner.invoke(app, ["report", str(experiment / "nope")])
    assert missing.exit_code == 2 and "no such results folder" in missing.output + (missing.stderr or "")


def test_no_report_flag(tmp_path: Path, tiny_config: Path):
    result = runner.invoke(app, ["run", str(tiny_config), "--out", str(tmp_path), "--no-report"])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "tiny" / "report.html").exists()


def _chromium(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", f"--user-data-dir={profile}", "--enable-logging=stderr",
               "--v=0", *extra, url]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                    "to render report.html (apt-get install chromium)")
def test_report_renders_in_headless_chromium(experiment: Path, tmp_path: Path):
    from matplotlib.image import imread

    url = (experiment / "report.html").resolve().as_uri()
    shot = tmp_path / "report.png"
    done = _chromium(url, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2000")
    assert done.returncode == 0, done.stderr[-2000:]
    for marker in ("Uncaught", "ERROR:CONSOLE", "Failed to load resource", "net::ERR"):
        assert marker not in done.stderr, done.stderr[-2000:]
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (2000, 1280)
    colours = np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 200  # text, badges and plots, not a blank page
    assert (pixels.mean(axis=2) < 0.9).mean() > 0.03  # a real share of the page is drawn
    dom = _chromium(url, tmp_path / "profile2", "--dump-dom")
    assert "Comparison: accuracy" in dom.stdout and "What to try" in dom.stdout
    # the answer first: the headline, then the forest plot, then the detailed tables
    page = dom.stdout
    headline, forest = page.index('id="headline"'), page.index('alt="Δ test accuracy vs baseline"')
    assert headline < forest < page.index("<table")
    sentences = re.findall(r"<li>([^<]*)</li>", page[headline:forest])
    assert any("than baseline on test accuracy" in s or s.startswith("Inconclusive")
               for s in sentences), sentences
    # the symbols of the answer are defined beside it, once for the page (test_report_layout)
    key = page.index('id="symbols"')
    assert headline < key < forest
    assert "<b>Δ</b> = recipe − baseline on test accuracy" in page[key:forest]

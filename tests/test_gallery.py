"""The gallery: every config trains (a 1-epoch smoke in the default run), the page's numbers are
the run folders' numbers, and the rules' helpers compute what they claim. Full reproductions are
marked ``gallery`` (``pytest -m gallery``)."""
from __future__ import annotations

import json
import math
import os
import pickle
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from regbench.errors import RegbenchError
from regbench.gallery.core import INCONCLUSIVE
from regbench.gallery.linear import ridge_closed_form
from regbench.gallery.networks import memorisation_drop
from regbench.gallery.page import (
    CONFIG_DIR,
    TIMING,
    build_page,
    experiment_name,
    findings,
    previous_findings,
    run_gallery,
)
from regbench.gallery.stats import Results, mean_interval, paired
from regbench.results import load_summaries

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "gallery.md"             # the repository's copy of the page


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Every gallery config with the --smoke budget (1 epoch, ≤256 samples, one seed)."""
    out = tmp_path_factory.mktemp("gallery")
    outcome = run_gallery(out=out, smoke=True)
    return out, outcome, outcome.page.read_text()


def test_every_finding_has_its_config():
    assert len(findings()) >= 12
    assert sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")) == sorted(findings())


def test_smoke_trains_every_config_and_refuses_a_verdict(smoke):
    out, outcome, page = smoke
    assert outcome.exit_code == 0
    assert outcome.page == out / "gallery.md"          # never docs/gallery.md
    for key in findings():
        folder = out / experiment_name(CONFIG_DIR / f"{key}.yaml")
        summaries = load_summaries(folder)
        assert summaries and all(s["status"] == "completed" for s in summaries)
        assert all(s["stopped_epoch"] == 1 and s["seed"] == 0 for s in summaries)
        assert json.loads((folder / TIMING).read_text())["smoke"] is True
        # one seed: no interval, so no rule may call the claim reproduced or not
        assert outcome.verdicts[key] == INCONCLUSIVE
        assert f"**Result: {INCONCLUSIVE}.**" in page


def _cell(value: float) -> str:
    return "—" if pd.isna(value) else f"{value:.4f}"


def test_page_tables_are_the_comparison_csv(smoke):
    out, _, page = smoke
    for key in findings():
        folder = out / experiment_name(CONFIG_DIR / f"{key}.yaml")
        section = page.split(f"Comparison table (`{folder.name}/`")[1].split("\n## ")[0]
        metric = findings()[key].metric
        if metric is None:
            frame = pd.read_csv(folder / "comparison.csv")
            metric = "mse" if "val_mse" in frame else "accuracy"
        else:  # the page rebuilt the comparison for its metric: compare with the CLI's csv
            import io

            from regbench.analysis.compare import compare_results, to_csv

            frame = pd.read_csv(io.StringIO(to_csv(compare_results(folder, metric, write=False))))
        for row in frame.to_dict("records"):
            expected = (f"| {row['point'].replace('__', ' ')} | {row['seeds']} | "
                        f"{_cell(row[f'val_{metric}'])} ± {_cell(row[f'val_{metric}_std'])} | "
                        f"{_cell(row[f'test_{metric}'])} ± {_cell(row[f'test_{metric}_std'])} |")
            assert expected in section, (key, expected)


def test_finding_numbers_are_the_run_numbers(smoke):
    """Spot checks of the finding tables against summary.json / metrics.csv of the runs."""
    out, _, page = smoke
    dropout = Results(out / "gallery_dropout")
    base = dropout.of("baseline")[0].summary
    reg = dropout.of("dropout")[0].summary
    assert (f"| val NLL (loss) | {base['val_loss']:.4f} | {reg['val_loss']:.4f} | "
            f"{reg['val_loss'] - base['val_loss']:+.4f} |") in page
    noise = Results(out / "gallery_label_noise")
    run = noise.of("baseline")[0]
    drop = float(run.frame["val_accuracy"].max()) - run.summary["val_accuracy"]
    assert math.isclose(memorisation_drop(run), drop)
    decay = Results(out / "gallery_decoupled_decay")     # weights.npy, compared here
    for optimizer in ("sgd", "adam"):
        a = np.asarray(decay.of(f"l2_{optimizer}")[0].weights, dtype=float)
        b = np.asarray(decay.of(f"decay_{optimizer}")[0].weights, dtype=float)
        distance = np.linalg.norm(a - b) / np.linalg.norm(b)
        assert f"| {optimizer} | 1 | {distance:.2e} – {distance:.2e} |" in page
    ridge = Results(out / "gallery_ridge")
    mse = ridge.of("baseline")[0].summary["val_mse"]
    assert re.search(rf"\| 0 \| 1 \| [0-9.]+ \| {mse:.4f} \|", page)


def test_page_is_rebuilt_from_results_alone(smoke, tmp_path):
    out, _, page = smoke
    rebuilt, verdicts = build_page(out, out / "gallery.md",
                                   "*Smoke run: 1 epoch, at most a few hundred samples, one seed: "
                                   "the numbers below test the machinery, not the claims.*")
    assert rebuilt == page
    with pytest.raises(RegbenchError, match="no gallery results"):
        build_page(tmp_path, tmp_path / "gallery.md")


def test_a_page_lists_findings_without_results_and_shows_the_others(smoke, tmp_path):
    out, _, _ = smoke
    ridge = experiment_name(CONFIG_DIR / "ridge.yaml")
    (tmp_path / ridge).symlink_to(out / ridge, target_is_directory=True)
    text, verdicts = build_page(tmp_path, tmp_path / "gallery.md")
    assert verdicts["ridge"] == INCONCLUSIVE
    assert {v for k, v in verdicts.items() if k != "ridge"} == {"no results"}
    assert "run `regbench gallery --run --only dropout`" in text
    assert text.count("\n## ") == 1                   # one section: the finding with runs


def test_a_finding_trained_elsewhere_keeps_its_section_from_the_page_it_replaces(smoke,
                                                                                   tmp_path):
    """Retraining one finding into a fresh results folder and writing the same page keeps every
    other section as that page showed it (renumbered, said at the top), with its verdict; a
    finding the old page lacks is listed as having no results."""
    out, _, page = smoke
    target = tmp_path / "gallery.md"
    target.write_text(page.replace("## 2. L1 gives", "## 7. L1 gives"))   # numbers are redone
    only = tmp_path / "only"
    ridge = experiment_name(CONFIG_DIR / "ridge.yaml")
    (only / ridge).parent.mkdir()
    (only / ridge).symlink_to(out / ridge, target_is_directory=True)
    text, verdicts = build_page(only, target)
    assert verdicts == {key: INCONCLUSIVE for key in findings()}
    assert f"*Sections 2–{len(findings())} are kept as the page this one replaced" in text
    old_sections, new_sections = page.split("\n## ")[1:], text.split("\n## ")[1:]
    assert new_sections[1:] == old_sections[1:]        # verbatim, numbered as before
    dropped = page.split("\n## 3. ")[0] + "\n"          # a page without sections 3 onwards
    target.write_text(dropped)
    text, verdicts = build_page(only, target)
    assert verdicts["dropout"] == "no results" and verdicts["l1_vs_l2"] == INCONCLUSIVE
    assert "run `regbench gallery --run --only dropout`" in text


def test_the_page_order_is_the_committed_pages():
    """Findings are numbered by module and definition order, never by import order."""
    titles = re.findall(r"^## \d+\. (.+)$", PAGE.read_text(), re.MULTILINE)
    assert titles == [entry.title for entry in findings().values()]


def test_cli_without_results_exits_2_and_touches_no_page(tmp_path):
    from regbench.cli import app

    page = tmp_path / "page.md"
    page.write_text("the page with numbers\n")
    before = page.stat().st_mtime_ns
    result = CliRunner().invoke(app, ["gallery", "--out", str(tmp_path / "nothing"),
                                      "--page", str(page)])
    assert result.exit_code == 2
    assert "no gallery results" in result.output and "Traceback" not in result.output
    assert page.read_text() == "the page with numbers\n" and page.stat().st_mtime_ns == before
    result = CliRunner().invoke(app, ["gallery", "--out", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and not (tmp_path / "nothing" / "gallery.md").exists()


def test_the_gallery_runs_from_a_regular_install_in_another_folder(tmp_path):
    """A wheel (not the source tree) carries the configs; from an unrelated folder the gallery
    trains into --out and writes its page there."""
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(wheels), str(REPO)], check=True, capture_output=True)
    wheel = next(wheels.glob("regbench-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert {f"regbench/gallery/configs/{key}.yaml" for key in findings()} <= set(names)
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(site), str(wheel)], check=True, capture_output=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "MPLBACKEND": "Agg"}
    where = subprocess.run([sys.executable, "-c", "import regbench; print(regbench.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.strip().startswith(str(site))      # the installed copy, not the clone
    out = tmp_path / "gallery-out"
    result = subprocess.run([sys.executable, "-m", "regbench", "gallery", "--smoke", "--only",
                             "ridge", "--out", str(out)], cwd=elsewhere, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (out / "gallery.md").is_file() and "## 1. Ridge" in (out / "gallery.md").read_text()
    assert list(elsewhere.iterdir()) == []                  # nothing written where it ran


class RunsCode:
    """Unpickled, it runs a shell command (here: creates a marker file)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _state_with_a_wrong_shape(path: Path, marker: Path) -> None:
    state = torch.load(path, weights_only=True)
    first = next(iter(state))
    state[first] = torch.zeros(3, 3)
    torch.save(state, path)


TAMPERED = {   # what is done to a run's model.pt -> what the one line says
    "a pickle that runs code": (lambda path, marker: path.write_bytes(
        pickle.dumps({"weight": RunsCode(marker)})), "objects other than tensors"),
    "code inside torch's zip format": (lambda path, marker: torch.save(
        {"weight": RunsCode(marker)}, path), "objects other than tensors"),
    "not a state_dict": (lambda path, marker: torch.save(
        [torch.zeros(2)], path), "holds a list, not a state_dict"),
    "other keys": (lambda path, marker: torch.save(
        {"other.weight": torch.zeros(2)}, path), "unexpected other.weight"),
    "a wrong shape": (_state_with_a_wrong_shape, "(3, 3), expected ("),
    "truncated": (lambda path, marker: path.write_bytes(path.read_bytes()[:200]),
                  "not a model state regbench saved"),
}


@pytest.mark.parametrize("tamper", list(TAMPERED))
def test_a_tampered_model_file_is_one_line_and_never_runs_code(smoke, tmp_path, tamper):
    """The label-smoothing finding reads each run's model.pt: loaded as tensors only (no
    pickle code runs) and checked against the run's model, else exit 2 naming the file and
    no page (decision: not a warning and the other seeds, which would narrow the page's
    intervals to fewer runs without a word)."""
    from regbench.cli import app

    out, _, _ = smoke
    name = experiment_name(CONFIG_DIR / "label_smoothing.yaml")
    shutil.copytree(out / name, tmp_path / "out" / name)
    model = tmp_path / "out" / name / "runs" / "baseline__seed=0" / "model.pt"
    assert model.is_file()
    marker = tmp_path / "code-ran"
    damage, fragment = TAMPERED[tamper]
    damage(model, marker)
    assert not marker.exists()                        # writing it ran nothing either
    page = tmp_path / "page.md"
    result = CliRunner().invoke(app, ["gallery", "--out", str(tmp_path / "out"),
                                      "--page", str(page)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("regbench: error: "), result.output
    assert str(model) in lines[0] and fragment in lines[0], lines[0]
    assert "train it again" in lines[0]
    assert not marker.exists() and not page.exists()


def test_gallery_figures_on_a_full_disk_are_one_line_and_no_half_file(smoke, tmp_path):
    """The page's pictures are copied atomically: a full disk (a file-size limit, EFBIG as
    ENOSPC) ends in one line naming the picture, exit 1, with no partial copy and no page."""
    from test_bad_input import limited_file_size

    out, _, _ = smoke
    name = experiment_name(CONFIG_DIR / "batchnorm.yaml")
    shutil.copytree(out / name, tmp_path / "out" / name)
    assert (tmp_path / "out" / name / "plots" / "curves.png").stat().st_size > 8000
    process = subprocess.run([sys.executable, "-m", "regbench", "gallery", "--out",
                              str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True,
                             timeout=120, preexec_fn=limited_file_size(8000))
    assert process.returncode == 1, process.stderr
    errors = [line for line in process.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("regbench: error: "), process.stderr
    assert "batchnorm__curves.png: cannot write (File too large)" in errors[0]
    assets = tmp_path / "out" / "gallery"                # the page's pictures
    assert (list(assets.rglob("*")) if assets.is_dir() else []) == []
    assert not (tmp_path / "out" / "gallery.md").exists()


def test_ridge_closed_form_matches_scikit_learn():
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 1.5, (60, 8))
    y = x @ rng.normal(size=(8, 1)) + 3.0 + rng.normal(0, 0.5, (60, 1))
    for lam in (0.0, 0.5, 20.0):
        w, b = ridge_closed_form(x, y, lam)
        fitted = Ridge(alpha=lam, fit_intercept=True, solver="cholesky").fit(x, y)
        np.testing.assert_allclose(w.ravel(), fitted.coef_.ravel(), rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(b, fitted.intercept_, rtol=1e-8)


def test_intervals_over_seeds():
    from scipy import stats

    estimate = mean_interval([0.2, 0.4, 0.9])
    assert math.isclose(estimate.mean, 0.5)
    t = stats.ttest_1samp([0.2, 0.4, 0.9], 0.0).confidence_interval(0.95)
    assert math.isclose(estimate.low, t.low) and math.isclose(estimate.high, t.high)
    lower = paired({0: 1.0, 1: 2.0, 2: 3.0}, {0: 2.0, 1: 3.5, 2: 4.2})   # always lower
    assert lower.below(0) and not lower.above(0)
    assert math.isclose(lower.mean, np.mean([-1.0, -1.5, -1.2]))
    assert math.isnan(mean_interval([0.3]).low)                        # one seed: no interval


def test_cli_rebuilds_the_page_without_training(smoke, tmp_path):
    from regbench.cli import app

    out, outcome, _ = smoke
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/runs/*/summary.json")}
    page = tmp_path / "page.md"
    result = CliRunner().invoke(app, ["gallery", "--out", str(out), "--page", str(page)])
    assert result.exit_code == 0, result.output
    assert f"ridge: {INCONCLUSIVE}" in result.output
    assert page.is_file() and "## 6. " in page.read_text()
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/runs/*/summary.json")} == before


def test_cli_refuses_an_unknown_finding():
    from regbench.cli import app

    result = CliRunner().invoke(app, ["gallery", "--only", "ridg", "--out", "/tmp/unused"])
    assert result.exit_code == 2
    assert "no gallery finding 'ridg'" in result.output and "ridge" in result.output


@pytest.mark.gallery
@pytest.mark.parametrize("key", sorted(findings()))
def test_full_run_reproduces_the_committed_verdict(key, tmp_path):
    """A fresh full run of one config gives the verdict docs/gallery.md states (minutes each)."""
    outcome = run_gallery(out=tmp_path, only=[key], run=True, page=tmp_path / "gallery.md")
    expected = _committed_verdicts()[key]
    assert outcome.verdicts[key] == expected


def _committed_verdicts() -> dict[str, str]:
    """finding key -> verdict, from the summary table at the top of docs/gallery.md."""
    shown = previous_findings(PAGE)
    return {key: shown[entry.title].verdict for key, entry in findings().items()}

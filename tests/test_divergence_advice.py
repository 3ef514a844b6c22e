"""After runs diverge, fail or stop, the notes and the headline name that cause for the row it hit
and what to do first; they never blame too few seeds for it, never print "about N seeds would
settle" a row that already has N, and a suggested command keeps the user's other options."""
from __future__ import annotations

import re

import numpy as np
import pytest
from typer.testing import CliRunner

from regbench.analysis.compare import build_comparison, compare_results
from regbench.cli import app
from tests.conftest import digits_yaml, write_config

runner = CliRunner()

# an L1 term of λ = 1e38 overflows float32 at the first SGD step on any device (see
# tests/test_cli_run.py): every seed of `unstable` and of the swept point l1 λ=1e38 diverges
RECIPES = ("  l1: {l1: {lambda: 0.01}}\n"
           "  l2: {l2: {lambda: 1.0}}\n"
           "  unstable: {l1: {lambda: 1.0e+38}}\n")
DIVERGED = "2 of 2 runs diverged (NaN/inf loss): fix the setting (a lower learning rate or " \
           "strength) before adding seeds"
SEED_ADVICE = re.compile(r"about (\d+) seeds|add seeds|would settle")


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """`regbench sweep` of a tiny digits experiment, 2 seeds, with a sweep given by --param: a
    command that a literal `regbench run CONFIG --seeds 0-4` would lose."""
    tmp = tmp_path_factory.mktemp("diverge")
    config = write_config(tmp / "d.yaml", digits_yaml("diverge", RECIPES, train_subset=200,
                                                      epochs=2))
    result = runner.invoke(app, ["sweep", str(config), "--param",
                                 "recipes.l1.l1.lambda=0.01,1.0e+38", "--out", str(tmp),
                                 "--no-report"])
    return result, tmp / "diverge"


def _about(notes: list[str], name: str) -> list[str]:
    return [n for n in notes if re.search(rf"(^|\W){re.escape(name)}(\W|$)", n)]


def test_a_diverged_row_is_named_with_its_cause_and_gets_no_seed_advice(swept):
    result, folder = swept
    assert result.exit_code == 1, result.output            # runs diverged: exit 1
    comparison = compare_results(folder)
    rows = {row["point"]: row for row in comparison.rows}
    assert set(rows) == {"baseline", "l1__lambda=0.01", "l1__lambda=1e+38", "l2", "unstable"}
    for point in ("unstable", "l1__lambda=1e+38"):
        assert rows[point]["seeds"] == 0 and set(rows[point]["lost"]) == {"diverged"}
    notes = comparison.notes
    for name in ("unstable", "l1 lambda=1e+38"):
        said = _about(notes, name)
        cause = [n for n in said if n.startswith(f"{name}: ")]
        assert cause == [f"{name}: {DIVERGED}; no run completed, so it is not compared"], said
        assert not any(SEED_ADVICE.search(n) for n in said), said
    # the headline, as printed, says it of the recipe it speaks of, with no seed advice for it
    headline = [line[2:] for line in result.output.splitlines() if line.startswith("» ")]
    assert headline == comparison.headline
    assert f"unstable: {DIVERGED}; no run completed, so it is not compared." in headline
    assert any("l1 lambda=1e+38, 2 of 2 runs diverged" in s for s in headline)
    assert not any("unstable" in s and SEED_ADVICE.search(s) for s in headline)
    assert "too few" not in " ".join(notes + headline)
    # where a completed row does get "about N seeds", N is more than the 2 it has
    for match in re.finditer(r"about (\d+) seeds", " ".join(notes + headline)):
        assert int(match.group(1)) > 2


def test_seed_advice_for_the_healthy_rows_keeps_the_users_command(swept):
    result, folder = swept
    notes = compare_results(folder).notes
    # the completed rows do have only 2 seeds: that warning stays, said of them, and its
    # command is the user's own command (with its --param sweep) plus --seeds
    (warning,) = [n for n in notes if n.startswith("warning: only 2 seed(s)")]
    assert "add seeds 2, 3, 4: run the same command with --seeds 0-4; completed runs are kept" \
        in warning
    markdown = (folder / "comparison.md").read_text()
    assert "regbench run CONFIG" not in markdown and "regbench run CONFIG" not in result.output
    for text in (markdown, " ".join(notes)):
        for match in re.finditer(r"--seeds \S+", text):
            assert "the same command with" in text[max(0, match.start() - 40):match.start()]


def test_diagnose_names_the_divergence_first(swept):
    _, folder = swept
    result = runner.invoke(app, ["diagnose", str(folder)])
    assert result.exit_code == 0, result.output
    advice = result.output.split("What to try")[1]
    first = advice.strip().splitlines()[0]
    assert first.startswith("• diverged (NaN/inf loss) in ")
    assert "unstable (2 of 2 runs)" in advice and "l1 lambda=1e+38 (2 of 2 runs)" in advice


# --- the same rules on runs given directly (no training) -------------------------------------

def _run(recipe: str, seed: int, test: float, status: str = "completed", **extra) -> dict:
    return {"recipe": recipe, "point_id": recipe, "run_id": f"{recipe}__seed={seed}",
            "seed": seed, "status": status, "task": "classification", "test_accuracy": test,
            "val_accuracy": test, "train_accuracy": 1.0, "regularizers": {}, **extra}


BASE = [0.80, 0.82, 0.81, 0.79, 0.83]


def test_a_row_that_lost_some_runs_says_how_many_and_on_what_its_interval_rests():
    runs = [_run("baseline", s, v) for s, v in enumerate(BASE)]
    # seeds 0–2 diverged; the 2 survivors beat the baseline clearly (p < 0.05 on 2 pairs), which
    # used to read "about 2 seeds would settle unstable": a row that already has 2
    runs += [_run("unstable", s, 0.1, "diverged") for s in range(3)]
    runs += [_run("unstable", s, BASE[s] + 0.05 + s / 1000) for s in (3, 4)]
    runs += [_run("flaky", s, BASE[s] + 0.01, "failed", error="RuntimeError: boom\ntrace")
             for s in (0,)]
    runs += [_run("flaky", s, BASE[s] + 0.01 + s / 500) for s in range(1, 5)]
    comparison = build_comparison(runs)
    notes, headline = comparison.notes, comparison.headline
    assert ("unstable: 3 of 5 runs diverged (NaN/inf loss): fix the setting (a lower learning "
            "rate or strength) before adding seeds; the interval uses the 2 completed seeds"
            ) in notes
    assert ("flaky: 1 of 5 runs failed: see the run's summary.json error "
            "(runs/flaky__seed=0/summary.json: RuntimeError: boom); the interval uses the 4 "
            "completed seeds") in notes
    for name in ("unstable", "flaky"):
        assert not any(SEED_ADVICE.search(n) for n in _about(notes, name))
        assert name not in comparison.seeds_needed
        assert not any(name in s and SEED_ADVICE.search(s) for s in headline)
    sentence = next(s for s in headline if s.startswith("unstable: 3 of 5 runs diverged"))
    assert "is no verdict: the interval uses the 2 completed seeds." in sentence
    assert not any("only 2 seed(s)" in n for n in notes)      # 5 seeds were run: not too few


def test_an_interrupted_or_unwritten_run_says_resume_and_a_lost_baseline_holds_back_advice():
    runs = [_run("baseline", s, v) for s, v in enumerate(BASE)]
    runs += [_run("l2", s, BASE[s] + (0.01, -0.012, 0.004, -0.006, 0.003)[s]) for s in range(3)]
    runs += [_run("l2", 3, 0.5, "interrupted")]
    comparison = build_comparison(runs, unfinished=["l2__seed=3", "l2__seed=4"])
    note = next(n for n in comparison.notes if n.startswith("l2: "))
    assert note == ("l2: 1 of 5 runs stopped (interrupted), 1 never finished (no summary.json): "
                    "resume with the same command; the interval uses the 3 completed seeds")
    assert not any("--seeds" in n or SEED_ADVICE.search(n) for n in comparison.notes)
    # a baseline that lost runs: every recipe's pairs are short for that cause
    runs = [_run("baseline", s, v) for s, v in enumerate(BASE[:3])]
    runs += [_run("baseline", s, 0.1, "diverged") for s in (3, 4)]
    runs += [_run("l2", s, BASE[s] + (0.01, -0.012, 0.004, -0.006, 0.003)[s]) for s in range(5)]
    comparison = build_comparison(runs)
    assert comparison.rows[[r["point"] for r in comparison.rows].index("l2")]["verdict"] == \
        "inconclusive"
    assert ("baseline: 2 of 5 runs diverged (NaN/inf loss): fix the setting (a lower learning "
            "rate or strength) before adding seeds; every recipe's Δ uses only the 3 seed(s) "
            "the baseline completed") in comparison.notes
    assert not any(SEED_ADVICE.search(n) for n in comparison.notes + comparison.headline)
    assert comparison.headline[-1].startswith("Baseline: 2 of 5 runs diverged")


def test_about_n_seeds_is_never_advised_for_n_the_row_already_has():
    """Every "about N seeds" in the notes and the headline names more seeds than the row has,
    over rows whose difference lies anywhere around 0 and ±δ; a row whose seeds would already
    suffice (rare: the advice sizes for an upper bound on the spread) is told so instead."""
    rng = np.random.default_rng(3)
    delta, advised = 0.01, 0
    for _ in range(300):
        shift = rng.normal(rng.uniform(-0.015, 0.015), rng.uniform(0.001, 0.01), 5)
        runs = [_run("baseline", s, v) for s, v in enumerate(BASE)]
        runs += [_run("other", s, BASE[s] + d) for s, d in enumerate(shift)]
        comparison = build_comparison(runs, min_effect=delta)
        row = next(r for r in comparison.rows if r["recipe"] == "other")
        text = " ".join(comparison.notes + comparison.headline)
        for match in re.finditer(r"about (\d+) seeds", text):
            assert int(match.group(1)) > row["pairs"], text
            advised += 1
        if row["verdict"] == "inconclusive" and "other" not in comparison.seeds_needed:
            (advice,) = [n for n in comparison.notes if n.startswith("other:")]
            assert "its 5 seeds already give" in advice or "more than 1000" in advice
    assert advised >= 50

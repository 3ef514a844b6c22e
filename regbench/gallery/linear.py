"""Gallery findings on linear models: ridge's closed form and λ curve, L1 vs L2 sparsity.

Each ``analyse`` reads the run folders of its config (``Results``) and nothing else; the rule
string printed on the page is the code below, in words. See ``regbench.gallery``.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np

from regbench.config.yaml_io import read_yaml_file
from regbench.data import prepare
from regbench.gallery.core import NOT_REPRODUCED, PARTLY, REPRODUCED, Outcome, finding
from regbench.gallery.stats import Results, mean_interval, paired, seed_gate, verdict_of
from regbench.vocabulary import CONFIG_FILE, NEAR_ZERO

CLOSED_FORM_TOLERANCE = 1e-3   # max ‖w − w*‖ / ‖w*‖ over runs that counts as "reaches the closed form"
SPARSITY_MARGIN = 0.3          # L1's near-zero fraction must exceed L2's by this much
DENSE = 0.1                    # L2's near-zero fraction below this is "dense"


def _point_label(point: str) -> str:
    return point.replace("__", " ")


# ----------------------------------------------------------------------------- 1. ridge

def ridge_closed_form(x: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """argmin ‖Xw + b − y‖² + λ‖w‖² (intercept b unpenalised): w = (XcᵀXc + λI)⁻¹Xcᵀ(y − ȳ)
    on training inputs centred with their own mean, b = ȳ − x̄ᵀw (Hoerl & Kennard 1970)."""
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    centred = x - x_mean
    w = np.linalg.solve(centred.T @ centred + lam * np.eye(x.shape[1]), centred.T @ (y - y_mean))
    return w, y_mean - x_mean @ w


def _lambda(run) -> float:
    return float((run.summary.get("regularizers") or {}).get("l2", {}).get("lambda", 0.0))


def _split_of(run):
    """The run's own training and validation split, rebuilt from its config.yaml."""
    config, _ = read_yaml_file(Path(run.summary["_dir"]) / CONFIG_FILE)
    bundle = prepare(config["dataset"], config["train"]["train_eval_samples"])
    as64 = lambda t: t.double().numpy()  # noqa: E731
    return as64(bundle.x_train), as64(bundle.y_train), as64(bundle.x_val), as64(bundle.y_val)


@finding(key="ridge", title="Ridge regression: the closed form and an interior optimum of λ",
         claim="A linear model trained with the `l2` penalty minimises the ridge objective "
               "‖Xw − y‖² + λ‖w‖², so it reaches the closed form (XᵀX + λI)⁻¹Xᵀy; and λ trades "
               "training error for validation error along a curve with an interior optimum.",
         source="Hoerl & Kennard 1970, *Ridge regression: biased estimation for nonorthogonal "
                "problems* (the ridge estimator, §2); the U-shaped prediction-error curve over "
                "the ridge parameter: Hastie, Tibshirani & Friedman, *The Elements of "
                "Statistical Learning*, §3.4.1.",
         rule=f"*reproduced* when (a) every run's weights are within a relative distance "
              f"{CLOSED_FORM_TOLERANCE:g} of the closed form computed here from the same split, "
              "(b) the λ with the lowest mean validation MSE is neither the smallest (λ = 0, the "
              "baseline) nor the largest swept value, and (c) training MSE never decreases as λ "
              "grows; *partly* when some of (a)–(c) hold; *not reproduced* when none does.")
def analyse_ridge(results: Results) -> Outcome:
    by_lambda: dict[float, list] = {}
    for run in results.runs:
        by_lambda.setdefault(_lambda(run), []).append(run)
    split = _split_of(results.runs[0])   # one split: split_seed is shared by every run
    x, y, x_val, y_val = split
    rows, errors, val_means, train_means = [], [], [], []
    for lam in sorted(by_lambda):
        w_star, b_star = ridge_closed_form(x, y, lam)
        run_errors = []
        for run in by_lambda[lam]:
            w = np.asarray(run.weights, dtype=float).reshape(w_star.T.shape).T
            run_errors.append(float(np.linalg.norm(w - w_star) / np.linalg.norm(w_star)))
        errors += run_errors
        closed_val = float(((x_val @ w_star + b_star - y_val) ** 2).mean())
        val = mean_interval(r.summary["val_mse"] for r in by_lambda[lam])
        train = mean_interval(r.summary["train_mse"] for r in by_lambda[lam])
        val_means.append(val.mean)
        train_means.append(train.mean)
        rows.append([f"{lam:g}", str(len(by_lambda[lam])), train.text(), val.text(),
                     f"{closed_val:.4f}", f"{max(run_errors):.1e}"])
    lambdas = sorted(by_lambda)
    best = int(np.nanargmin(val_means))
    matched = max(errors) < CLOSED_FORM_TOLERANCE
    interior = 0 < best < len(lambdas) - 1
    trade = all(b >= a - 1e-9 for a, b in zip(train_means, train_means[1:]))
    gate = seed_gate(results)
    reason = (f"largest relative distance to the closed form over {len(errors)} runs: "
              f"{max(errors):.1e} ({'within' if matched else 'outside'} {CLOSED_FORM_TOLERANCE:g}); "
              f"best λ by validation MSE: {lambdas[best]:g} "
              f"({'inside' if interior else 'at an end of'} the range {lambdas[0]:g}–"
              f"{lambdas[-1]:g}; val MSE {val_means[best]:.4f} vs {val_means[0]:.4f} at λ = "
              f"{lambdas[0]:g} and {val_means[-1]:.4f} at λ = {lambdas[-1]:g}); training MSE "
              f"{'rises monotonically' if trade else 'does not rise monotonically'} with λ.")
    return Outcome(gate.verdict if gate else verdict_of([matched, interior, trade]),
                   (gate.reason + "; " if gate else "") + reason,
                   ["λ", "seeds", "train MSE [95% CI]", "val MSE [95% CI]",
                    "val MSE of the closed form", "max ‖w − w*‖/‖w*‖"], rows,
                   notes=["full-batch gradient descent converges to the unique minimiser, so "
                          "every seed (a different initialisation) gives the same numbers and "
                          "the intervals collapse to a point: that agreement is the result"],
                   figures=[("validation curve over λ (regbench's report)", plot)
                            for plot in sorted((results.folder / "plots").glob("validation__*.png"))])


# ----------------------------------------------------------------------------- 2. L1 vs L2

def _best_point(results: Results, recipe: str) -> Optional[str]:
    comparison = results.comparison()
    if recipe in comparison.best_points:
        return comparison.best_points[recipe]["point"]
    return next((r["point"] for r in comparison.rows if r["recipe"] == recipe), None)


def _near_zero(run, threshold: float) -> float:
    weights = np.asarray(run.weights if run.weights is not None else [], dtype=float)
    return float((np.abs(weights) < threshold).mean()) if weights.size else math.nan


@finding(key="l1_vs_l2", title="L1 gives sparse weights, L2 small but dense ones",
         claim="The L1 penalty (lasso) sets many coefficients exactly to zero, while the L2 "
               "penalty (ridge) shrinks all of them without zeroing any.",
         source="Tibshirani 1996, *Regression shrinkage and selection via the lasso*, Fig. 2 "
                "(the corners of the L1 constraint region give exact zeros).",
         rule=f"each penalty is compared at the λ its own mean validation accuracy picks; "
              f"*reproduced* when L1's near-zero fraction (|w| < {NEAR_ZERO:g}) exceeds L2's by "
              f"at least {SPARSITY_MARGIN} with the 95% interval of the paired difference above "
              f"0, and L2's fraction is below {DENSE} (dense); *partly* when only the interval "
              "is above 0; *not reproduced* otherwise.")
def analyse_l1_vs_l2(results: Results) -> Outcome:
    points = {name: _best_point(results, name) for name in ("baseline", "l1", "l2")}
    rows, sparsity = [], {}
    for name, point in points.items():
        if point is None:
            continue
        sparsity[name] = results.per_seed(point, "sparsity")
        coarse = results.per_seed(point, lambda run: _near_zero(run, 10 * NEAR_ZERO))
        accuracy = results.per_seed(point, "val_accuracy")
        rows.append([_point_label(point), str(len(sparsity[name])),
                     mean_interval(sparsity[name].values()).text(3),
                     mean_interval(coarse.values()).text(3),
                     mean_interval(accuracy.values()).text(4)])
    gate = seed_gate(results)
    diff = paired(sparsity.get("l1", {}), sparsity.get("l2", {}))
    l2_dense = mean_interval(sparsity.get("l2", {}).values()).mean < DENSE
    strong = diff.above(0) and diff.mean >= SPARSITY_MARGIN and l2_dense
    verdict = REPRODUCED if strong else PARTLY if diff.above(0) else NOT_REPRODUCED
    reason = (f"near-zero fraction L1 − L2 at their chosen λ: {diff.text(3, signed=True)} "
              f"(L1 at {_point_label(points['l1'] or '?')}, L2 at "
              f"{_point_label(points['l2'] or '?')}).")
    return Outcome(gate.verdict if gate else verdict, (gate.reason + "; " if gate else "") + reason,
                   ["point (chosen by val accuracy)", "seeds", f"fraction |w| < {NEAR_ZERO:g}",
                    f"fraction |w| < {10 * NEAR_ZERO:g}", "val accuracy"], rows,
                   figures=[("final weights, L1 vs L2 at their chosen λ (regbench's report)",
                             results.folder / "plots" / "weights.png")])

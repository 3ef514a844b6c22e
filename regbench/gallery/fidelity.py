"""Gallery findings, round 2: that regbench's regularizers behave as their papers say.

Random labels are fitted whatever the explicit regularizer (Zhang et al. 2017); DropConnect and
dropout against none (Wan et al. 2013); input noise is ridge for a linear model (Bishop 1995);
sparse variational dropout prunes most weights (Molchanov et al. 2017); L2 and decoupled weight
decay coincide under SGD and differ under Adam (Loshchilov & Hutter 2019); early stopping acts
like an L2 penalty on a linear model (Goodfellow, Bengio & Courville 2016, §7.8).

Each ``analyse`` reads the run folders of its config (``Results``) and nothing else; the rule
string printed on the page is the code below, in words. See ``regbench.gallery``.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from regbench.config.yaml_io import read_yaml_file
from regbench.gallery.core import Outcome, finding
from regbench.gallery.linear import _split_of, ridge_closed_form
from regbench.gallery.stats import Results, mean_interval, paired, seed_gate, verdict_of
from regbench.vocabulary import CONFIG_FILE

FITS = 0.95                    # train accuracy on random labels that counts as fitting them
FITS_REGULARIZED = 0.90        # ... for a regularized recipe ("does not prevent fitting")
CHANCE_MARGIN = 0.05           # test accuracy within this of 1/K counts as chance
EQUIVALENT = 0.05              # relative distance to a closed form that counts as reaching it
LAMBDA_FACTOR = 2.0            # the nearest ridge λ must be within this factor of the claimed one
PRUNED = 0.90                  # prunable fraction that counts as "most weights"
ACCURACY_COST = 0.02           # the largest test accuracy loss that counts as small
SAME = 1e-3                    # relative distance of two weight vectors that counts as the same
DIFFERENT = 1e-2               # ... that counts as different


def _label(point: str) -> str:
    return point.replace("__", " ")


def _outcome(results: Results, holds: list[bool], reason: str, header, rows, **extra) -> Outcome:
    gate = seed_gate(results)
    return Outcome(gate.verdict if gate else verdict_of(holds),
                   (gate.reason + "; " if gate else "") + reason, header, rows, **extra)


def _vector(run) -> np.ndarray:
    return np.asarray(run.weights if run.weights is not None else [], dtype=float).ravel()


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


# ----------------------------------------------------------------------------- 7. random labels

@finding(key="random_labels",
         title="Networks fit random labels, and explicit regularizers do not prevent it",
         claim="A network with enough parameters reaches (nearly) 100% training accuracy on "
               "labels drawn at random, independently of the inputs, while its test accuracy "
               "stays at chance; weight decay and dropout do not stop it from fitting them.",
         source="Zhang, Bengio, Hardt, Recht & Vinyals 2017, *Understanding deep learning "
                "requires rethinking generalization*, ICLR: §2 (Fig. 1a) and §3 (Table 1: "
                "regularizers on random labels).",
         rule=f"with `label_noise: 1.0, label_noise_mode: uniform` (every training label drawn "
              f"from all K classes) and `resample: per_seed` (each seed its own labels): "
              f"*reproduced* when (a) the baseline's mean final training accuracy is at least "
              f"{FITS} while (b) its test accuracy's 95% interval lies within {CHANCE_MARGIN} of "
              f"chance 1/K, and (c) every regularized recipe still reaches a mean training "
              f"accuracy of {FITS_REGULARIZED}; *partly* when some of (a)–(c) hold; *not "
              "reproduced* when none does.")
def analyse_random_labels(results: Results) -> Outcome:
    chance = 1.0 / int(np.asarray(_split_of(results.runs[0])[1]).max() + 1)
    rows, fits = [], {}
    for point in results.points():
        train = mean_interval(results.per_seed(point, "train_accuracy").values())
        test = mean_interval(results.per_seed(point, "test_accuracy").values())
        fits[point] = (train, test)
        rows.append([_label(point), str(train.seeds), train.text(3), test.text(3)])
    base_train, base_test = fits.get("baseline", (None, None))
    fitted = base_train is not None and base_train.mean >= FITS
    at_chance = (base_test is not None and not math.isnan(base_test.low)
                 and chance - CHANCE_MARGIN <= base_test.low
                 and base_test.high <= chance + CHANCE_MARGIN)
    regularized = {p: t for p, (t, _) in fits.items() if p != "baseline"}
    still_fit = bool(regularized) and all(t.mean >= FITS_REGULARIZED for t in regularized.values())
    reason = (f"baseline train accuracy {base_train.text(3) if base_train else '—'} on random "
              f"labels, test {base_test.text(3) if base_test else '—'} (chance {chance:.3f}); "
              + ", ".join(f"{_label(p)} train {t.text(3)}" for p, t in regularized.items()) + ".")
    return _outcome(results, [fitted, at_chance, still_fit], reason,
                    ["recipe", "seeds", "train accuracy (random labels) [95% CI]",
                     "test accuracy (true labels) [95% CI]"], rows,
                    notes=[f"chance is 1/K = {chance:.3f}; validation and test labels are the "
                           "true ones", _narrower(base_test, chance)])


def _narrower(test, chance: float) -> str:
    """How many seeds would bring the test-accuracy interval within the chance margin."""
    from scipy import stats

    if test is None or math.isnan(test.low) or test.seeds < 2:
        return "too few seeds for an interval"
    half = (test.high - test.low) / 2
    sd = half * math.sqrt(test.seeds) / stats.t.ppf(0.975, test.seeds - 1)
    room = CHANCE_MARGIN - abs(test.mean - chance)
    if room <= 0:
        return (f"the mean test accuracy {test.mean:.3f} is more than {CHANCE_MARGIN} from "
                "chance: more seeds would not bring it within the margin")
    needed = next((n for n in range(2, 1001)
                   if stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n) < room), None)
    return (f"random labels give each seed its own test accuracy (sd {sd:.3f} over seeds): the "
            f"interval is ±{half:.3f}; about {needed} seeds would narrow it to within "
            f"{CHANCE_MARGIN} of chance if the mean stayed at {test.mean:.3f}"
            if needed else "more than 1000 seeds would be needed to narrow the interval")


# ----------------------------------------------------------------------------- 8. DropConnect

@finding(key="dropconnect", title="DropConnect and dropout against no dropping",
         claim="On a fully connected network, both DropConnect (dropping weights, a fresh mask "
               "per example) and dropout (dropping activations) lower the test error of the "
               "network trained without either; DropConnect is comparable to dropout.",
         source="Wan, Zeiler, Zhang, LeCun & Fergus 2013, *Regularization of neural networks "
                "using DropConnect*, ICML, §6.1 and Table 3 (MNIST, fully connected nets).",
         rule="on a small training set (2,000 Fashion-MNIST images), *reproduced* when both "
              "dropconnect and dropout are *better* than the baseline on test accuracy in the "
              "comparison table below (paired t-test, Bonferroni over its rows); *partly* "
              "when one of them is; *not reproduced* when neither is. DropConnect − dropout is "
              "reported, not part of the rule.")
def analyse_dropconnect(results: Results) -> Outcome:
    comparison = results.comparison()
    verdicts = {row["recipe"]: row for row in comparison.rows}
    holds = [verdicts.get(name, {}).get("verdict") == "better" for name in ("dropconnect",
                                                                            "dropout")]
    between = paired(results.per_seed("dropconnect", "test_accuracy"),
                     results.per_seed("dropout", "test_accuracy"))
    rows = [[name, row["verdict"] or "—", f"{row['diff']:+.4f} [{row['diff_low']:+.4f}, "
             f"{row['diff_high']:+.4f}]" if not math.isnan(row["diff_low"]) else "—",
             f"{row['test_accuracy']:.4f}", f"{row['gap']:.4f}"]
            for name, row in verdicts.items()]
    seconds = {name: mean_interval(results.per_seed(name, "seconds_per_epoch").values()).mean
               for name in ("baseline", "dropout", "dropconnect")}
    reason = ("vs baseline on test accuracy: " + "; ".join(
        f"{name} {row['verdict'] or '—'}" for name, row in verdicts.items() if name != "baseline")
              + f"; dropconnect − dropout {between.text(signed=True)}.")
    notes = [f"seconds per epoch: baseline {seconds['baseline']:.2f}, dropout "
             f"{seconds['dropout']:.2f}, dropconnect {seconds['dropconnect']:.2f} (a mask per "
             "weight per example: see benchmarks/dropconnect.py)"]
    if not all(holds):
        notes.append("what a larger budget would need: Wan et al. train on all 60,000 MNIST "
                     "images for far more epochs, with a learning-rate schedule; dropping "
                     "weights or activations slows fitting, and in this budget (60 epochs on "
                     "1,000 images, a few minutes) the smaller train−val gap does not turn into "
                     "higher test accuracy. Per-example DropConnect costs about 20× a plain "
                     "epoch here, so a budget that could show it is a GPU's")
    return _outcome(results, holds, reason,
                    ["recipe", "verdict vs baseline", "Δ test accuracy [95% CI]",
                     "test accuracy", "train−val gap"], rows, notes=notes)


# ----------------------------------------------------------------------------- 9. input noise

def _sigma(run) -> float:
    return float((run.summary.get("regularizers") or {}).get("input_noise", {}).get("sigma", 0))


@finding(key="input_noise_ridge",
         title="Training with input noise is ridge regression for a linear model",
         claim="For a linear model with squared error, adding Gaussian noise of variance σ² to "
               "each input during training minimises, in expectation, the ridge objective "
               "‖Xw − y‖² + nσ²‖w‖²: noise is Tikhonov regularization with λ = nσ².",
         source="Bishop 1995, *Training with noise is equivalent to Tikhonov regularization*, "
                "Neural Computation 7(1), §2–3.",
         rule=f"*reproduced* when, for every σ swept, (a) every run's weights are within a "
              f"relative distance {EQUIVALENT} of the ridge closed form with λ = nσ² computed "
              f"here from the run's split, and (b) among ridge solutions on a log grid of λ "
              f"(nσ²/16 to 16nσ²) the one nearest to the trained weights has λ within a factor "
              f"{LAMBDA_FACTOR:g} of nσ² (the noise picks out that λ, not just any shrinkage); "
              "*partly* when one of (a), (b) holds; *not reproduced* otherwise.")
def analyse_input_noise_ridge(results: Results) -> Outcome:
    x, y, _, _ = _split_of(results.runs[0])
    n = x.shape[0]
    by_sigma: dict[float, list] = {}
    for run in results.runs:
        by_sigma.setdefault(_sigma(run), []).append(run)
    rows, reached, picked = [], [], []
    for sigma in sorted(s for s in by_sigma if s > 0):
        lam = n * sigma ** 2
        w_star, _ = ridge_closed_form(x, y, lam)
        distances = [_relative(_vector(run), w_star.ravel()) for run in by_sigma[sigma]]
        grid = lam * np.logspace(-4, 4, 33, base=2.0)
        mean_w = np.mean([_vector(run) for run in by_sigma[sigma]], axis=0)
        nearest = min(grid, key=lambda g: _relative(mean_w, ridge_closed_form(x, y, g)[0].ravel()))
        ols = _relative(mean_w, ridge_closed_form(x, y, 0.0)[0].ravel())
        reached.append(max(distances) < EQUIVALENT)
        picked.append(1 / LAMBDA_FACTOR <= nearest / lam <= LAMBDA_FACTOR)
        rows.append([f"{sigma:g}", f"{lam:.4g}", str(len(distances)), f"{max(distances):.4f}",
                     f"{ols:.3f}", f"{nearest:.4g}"])
    reason = (f"largest relative distance to the ridge closed form at λ = nσ² (n = {n}): "
              + ", ".join(f"σ={r[0]}: {r[3]}" for r in rows) + "; nearest ridge λ / nσ²: "
              + ", ".join(f"σ={r[0]}: {float(r[5]) / float(r[1]):.2f}" for r in rows) + ".")
    return _outcome(results, [all(reached), all(picked)], reason,
                    ["σ", "λ = nσ²", "seeds", "max ‖w − w*_λ‖/‖w*_λ‖",
                     "‖w − w_OLS‖/‖w_OLS‖ (mean w)", "nearest ridge λ on the grid"], rows)


# ----------------------------------------------------------------------------- 10. sparse VD

def _prunable(run) -> float:
    value = run.summary.get("prunable_fraction")
    if value is None and run.frame is not None and "prunable_fraction" in run.frame:
        value = run.frame["prunable_fraction"].iloc[-1]
    return math.nan if value is None else float(value)


@finding(key="sparse_vd", title="Sparse variational dropout prunes most weights of an MLP",
         claim="Sparse variational dropout learns a dropout rate per weight; most rates go to "
               "1, and removing those weights costs little accuracy (LeNet-300-100 on MNIST: "
               "98.6% of weights removed, error 1.64% → 1.92%).",
         source="Molchanov, Ashukha & Vetrov 2017, *Variational dropout sparsifies deep neural "
                "networks*, ICML, Table 1.",
         rule=f"LeNet-300-100 (an MLP 784-300-100-10) on 5,000 Fashion-MNIST images: "
              f"*reproduced* when (a) the mean prunable fraction (log α > 3) is at least "
              f"{PRUNED} and (b) the 95% interval of the test accuracy of the pruned network "
              f"minus the baseline's lies above −{ACCURACY_COST}; *partly* when one holds; *not "
              "reproduced* otherwise.")
def analyse_sparse_vd(results: Results) -> Outcome:
    pruned = mean_interval(results.per_seed("sparse_vd", _prunable).values())
    cost = paired(results.per_seed("sparse_vd", "test_accuracy"),
                  results.per_seed("baseline", "test_accuracy"))
    rows = [[_label(p), mean_interval(results.per_seed(p, "test_accuracy").values()).text(4),
             mean_interval(results.per_seed(p, _prunable).values()).text(3)
             if p != "baseline" else "—"] for p in results.points()]
    reason = (f"prunable fraction {pruned.text(3)}; test accuracy sparse_vd − baseline "
              f"{cost.text(signed=True)}.")
    return _outcome(results, [pruned.mean >= PRUNED,
                              not math.isnan(cost.low) and cost.low > -ACCURACY_COST],
                    reason, ["recipe", "test accuracy [95% CI]", "prunable fraction [95% CI]"],
                    rows, notes=["the paper trains 200 epochs with a KL weight warm-up; a larger "
                                 "budget would prune more"])


# ----------------------------------------------------------------------------- 11. AdamW vs L2

@finding(key="decoupled_decay",
         title="L2 and decoupled weight decay: the same under SGD, different under Adam",
         claim="Under plain SGD, an L2 penalty and weight decay are the same update (with the "
               "penalty rescaled by the learning rate); under Adam they are not, because Adam "
               "rescales the L2 gradient per weight and leaves decoupled decay alone.",
         source="Loshchilov & Hutter 2019, *Decoupled weight decay regularization*, ICLR: "
                "Propositions 1 and 2 (§2).",
         rule=f"a linear classifier on 1,000 digits, l2 with λ_l2 = n·λ against weight_decay "
              f"with λ, each trained under SGD and under Adam (own `train:` per recipe): "
              f"*reproduced* when (a) under SGD every seed's final weights of the two agree "
              f"within a relative distance {SAME:g} and (b) under Adam every seed's differ by "
              f"more than {DIFFERENT:g}; *partly* when one holds; *not reproduced* otherwise.")
def analyse_decoupled_decay(results: Results) -> Outcome:
    rows, holds = [], []
    for optimizer, same in (("sgd", True), ("adam", False)):
        l2 = {r.summary["seed"]: _vector(r) for r in results.of(f"l2_{optimizer}")}
        decay = {r.summary["seed"]: _vector(r) for r in results.of(f"decay_{optimizer}")}
        distances = [_relative(l2[s], decay[s]) for s in sorted(l2) if s in decay]
        loss = paired(results.per_seed(f"decay_{optimizer}", "val_loss"),
                      results.per_seed(f"l2_{optimizer}", "val_loss"))
        low, high = (min(distances), max(distances)) if distances else (math.nan, math.nan)
        holds.append(bool(distances) and (high < SAME if same else low > DIFFERENT))
        rows.append([optimizer, str(len(distances)), f"{low:.2e} – {high:.2e}",
                     loss.text(signed=True)])
    reason = (f"relative distance between the l2 and weight_decay weights: under SGD "
              f"{rows[0][2]}, under Adam {rows[1][2]}.")
    return _outcome(results, holds, reason,
                    ["optimizer", "seeds", "‖w_l2 − w_decay‖/‖w_decay‖ (min – max)",
                     "val loss decay − l2 [95% CI]"], rows)


# ----------------------------------------------------------------------------- 12. early stopping

@finding(key="early_stopping_l2", title="Early stopping acts like an L2 penalty",
         claim="For a linear model trained by gradient descent with step η, stopping after τ "
               "steps is approximately L2 regularization with coefficient 1/(τη) on the "
               "quadratic loss: the early-stopped weights lie near the ridge path, with smaller "
               "norm than the fully trained ones.",
         source="Goodfellow, Bengio & Courville 2016, *Deep Learning*, §7.8 (Eq. 7.40–7.45); "
                "Bishop 1995.",
         rule="full-batch gradient descent on a linear regression with more features than the "
              "data pins down: *reproduced* when (a) the early-stopped weights' norm is below "
              "the fully trained baseline's for every seed, (b) the ridge solution nearest to "
              "them (log grid of λ) is within a relative distance 0.25, and (c) its λ is within "
              "a factor 4 of n/(τη), τ = the epoch early stopping returned (one step per "
              "epoch); *partly* when some hold; *not reproduced* when none does.")
def analyse_early_stopping_l2(results: Results) -> Outcome:
    x, y, _, _ = _split_of(results.runs[0])
    n = x.shape[0]
    lr = _learning_rate(results)
    stopped = {r.summary["seed"]: r for r in results.of("early_stopping")}
    full = {r.summary["seed"]: r for r in results.of("baseline")}
    grid = np.logspace(-2, 5, 57)
    paths = {g: ridge_closed_form(x, y, g)[0].ravel() for g in grid}
    rows, smaller, near, matched = [], [], [], []
    for seed in sorted(stopped):
        w = _vector(stopped[seed])
        tau = int(stopped[seed].summary.get("chosen_epoch") or 0)
        nearest = min(grid, key=lambda g: _relative(w, paths[g]))
        distance = _relative(w, paths[nearest])
        claimed = n / (max(tau, 1) * lr)
        norm, base_norm = np.linalg.norm(w), np.linalg.norm(_vector(full[seed])) if seed in full \
            else math.nan
        smaller.append(norm < base_norm)
        near.append(distance < 0.25)
        matched.append(0.25 <= nearest / claimed <= 4)
        rows.append([str(seed), str(tau), f"{norm:.3f}", f"{base_norm:.3f}", f"{nearest:.4g}",
                     f"{claimed:.4g}", f"{distance:.3f}"])
    reason = (f"over {len(rows)} seeds: early-stopped norm below the baseline's in "
              f"{sum(smaller)}, within 0.25 of the ridge path in {sum(near)}, nearest λ within "
              f"a factor 4 of n/(τη) in {sum(matched)}.")
    return _outcome(results, [all(smaller), all(near), all(matched)], reason,
                    ["seed", "τ (epoch returned)", "‖w‖ early-stopped", "‖w‖ baseline",
                     "nearest ridge λ", "n/(τη)", "distance to it"], rows,
                    notes=["the equivalence assumes training starts from w = 0; regbench "
                           "initialises the weights at random, which leaves a trace in the "
                           "directions the data constrains least"])


def _learning_rate(results: Results) -> float:
    config, _ = read_yaml_file(Path(results.runs[0].summary["_dir"]) / CONFIG_FILE)
    return float(config["train"]["optimizer"]["lr"])

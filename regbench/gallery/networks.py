"""Gallery findings on neural networks: dropout, label smoothing, batch normalisation and
memorisation under label noise.

Each ``analyse`` reads the run folders of its config (``Results``) and nothing else; the rule
string printed on the page is the code below, in words. See ``regbench.gallery``.
"""
from __future__ import annotations

import math
import pickle
import warnings
from pathlib import Path

import torch

from regbench.config.yaml_io import read_yaml_file
from regbench.data import load_bundle
from regbench.errors import RegbenchError
from regbench.gallery.core import NOT_REPRODUCED, PARTLY, REPRODUCED, Outcome, finding
from regbench.gallery.stats import Estimate, Results, mean_interval, paired, seed_gate, verdict_of
from regbench.models import build_model
from regbench.vocabulary import CONFIG_FILE, MODEL_FILE

BN_THRESHOLD = 0.8             # val accuracy for "epochs to reach"
MEMORISATION_DROP = 0.03       # best − returned val accuracy that counts as memorising


def _point_label(point: str) -> str:
    return point.replace("__", " ")


# ----------------------------------------------------------------------------- 3. dropout

def _paired_rows(results: Results, recipe: str, quantities: list[tuple[str, str, str]],
                 baseline: str = "baseline") -> tuple[list[list[str]], dict[str, Estimate]]:
    """Rows `quantity | baseline | recipe | recipe − baseline` for summary keys or functions."""
    rows, diffs = [], {}
    for label, key, better in quantities:
        get = (lambda run, k=key: run.summary["train_accuracy"] - run.summary["val_accuracy"]) \
            if key == "gap" else key
        base, reg = results.per_seed(baseline, get), results.per_seed(recipe, get)
        diffs[key] = paired(reg, base)
        rows.append([label, mean_interval(base.values()).text(), mean_interval(reg.values()).text(),
                     diffs[key].text(signed=True), better])
    return rows, diffs


@finding(key="dropout", title="Dropout on a small training set: smaller gap, better NLL",
         claim="Dropout reduces overfitting: on a small training set it shrinks the gap between "
               "training and validation accuracy and improves the validation log-loss (NLL) and "
               "calibration. Whether test accuracy improves depends on the data set size (Fig. "
               "10 shows no gain for the smallest sets) and on training long enough.",
         source="Srivastava, Hinton, Krizhevsky, Sutskever & Salakhutdinov 2014, *Dropout: a "
                "simple way to prevent neural networks from overfitting*, JMLR 15, §7.4 and "
                "Fig. 10 (effect of data set size).",
         rule="*reproduced* when the 95% intervals of dropout − baseline lie below 0 for both the "
              "train−val accuracy gap and the validation NLL (final epoch); *partly* when one of "
              "them does; *not reproduced* otherwise. Calibration (ECE) and test accuracy are "
              "reported, not part of the rule.")
def analyse_dropout(results: Results) -> Outcome:
    rows, diffs = _paired_rows(results, "dropout", [
        ("train − val accuracy gap", "gap", "lower"), ("val NLL (loss)", "val_loss", "lower"),
        ("val ECE", "val_ece", "lower"), ("val accuracy", "val_accuracy", "— (reported)"),
        ("test accuracy", "test_accuracy", "— (reported)")])
    gate = seed_gate(results)
    holds = [diffs["gap"].below(0), diffs["val_loss"].below(0)]
    accuracy = diffs["test_accuracy"]
    accuracy_note = ("test accuracy improved (interval above 0)" if accuracy.above(0) else
                     "test accuracy is **lower** with dropout in this budget (interval below 0)"
                     if accuracy.below(0) else
                     "test accuracy did **not** clearly change (interval includes 0)")
    reason = (f"dropout − baseline: gap {diffs['gap'].text(signed=True)}, val NLL "
              f"{diffs['val_loss'].text(signed=True)}, val ECE "
              f"{diffs['val_ece'].text(signed=True)}; {accuracy_note}: "
              f"{accuracy.text(signed=True)}.")
    return Outcome(gate.verdict if gate else verdict_of(holds),
                   (gate.reason + "; " if gate else "") + reason,
                   ["quantity (final epoch)", "baseline", "dropout", "dropout − baseline [95% CI]",
                    "claimed"], rows, notes=[_peak_note(results, p) for p in ("baseline", "dropout")])


def _peak_note(results: Results, point: str) -> str:
    """Where validation accuracy peaked: a run still improving at the end was cut short."""
    peaks = results.per_seed(point, _best_epoch)
    last = results.per_seed(point, lambda run: float(run.frame["epoch"].max()))
    return (f"{point}: validation accuracy peaked at epoch {mean_interval(peaks.values()).text(1)} "
            f"of {max(last.values(), default=0):.0f} (mean over seeds)")


# ----------------------------------------------------------------------------- 4. label smoothing

def overconfidence(run) -> float:
    """Mean top-class probability − accuracy on the validation split, from the run's model.pt
    (> 0: over-confident, < 0: under-confident; ECE alone does not say which)."""
    folder = Path(run.summary["_dir"])
    if not (folder / MODEL_FILE).is_file():
        return math.nan
    config, _ = read_yaml_file(folder / CONFIG_FILE)
    data = load_bundle(config["dataset"], config["train"]["train_eval_samples"])
    model = build_model(config["model"], data.input_shape, data.output_dim)
    model.load_state_dict(saved_state(folder / MODEL_FILE, model))
    model.eval()
    with torch.no_grad():
        probabilities = torch.softmax(model(data.x_val), dim=1)
    confidence, predicted = probabilities.max(dim=1)
    return float(confidence.mean() - (predicted == data.y_val).float().mean())


def saved_state(path: Path, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state_dict a run saved in ``path``, read without running anything in the file
    (``weights_only``: tensors and plain containers only) and checked against ``model``, the
    network the run's config builds: the same names and shapes. Anything else means the file
    changed since the run wrote it: one line naming it (exit 2) rather than a number from
    the other seeds only, since the page's intervals would then silently cover fewer runs."""
    retrain = (f"delete the run folder {path.parent} and train it again with `regbench "
               "gallery --run`")
    try:
        with warnings.catch_warnings():   # torch's note on a foreign pickle protocol: noise
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:   # torch raises many types for a damaged or foreign file
        raise RegbenchError(f"{path}: not a model state regbench saved ({_unreadable(exc)}); "
                            f"{retrain}") from None
    if not isinstance(state, dict) or not all(isinstance(key, str) and
                                              isinstance(value, torch.Tensor)
                                              for key, value in state.items()):
        raise RegbenchError(f"{path}: holds a {type(state).__name__}, not a state_dict of "
                            f"named tensors; {retrain}")
    expected = model.state_dict()
    wrong = [_some("unexpected", [key for key in state if key not in expected]),
             _some("missing", [key for key in expected if key not in state]),
             _some("wrong shape:", [f"{key} {tuple(state[key].shape)}, expected "
                                    f"{tuple(value.shape)}" for key, value in expected.items()
                                    if key in state and state[key].shape != value.shape])]
    if any(wrong):
        raise RegbenchError(f"{path}: does not fit the run's model "
                            f"({'; '.join(filter(None, wrong))}); {retrain}")
    return state


def _some(label: str, names: list[str]) -> str:
    """``label`` and the first few of ``names`` ("" for none)."""
    if not names:
        return ""
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    return f"{label} {', '.join(names[:3])}{more}"


def _unreadable(exc: Exception) -> str:
    """Why torch.load refused a file, in a few words (its own messages run to paragraphs)."""
    if isinstance(exc, pickle.UnpicklingError):
        return ("it holds objects other than tensors, which only running code from the file "
                "could build; it was not run")
    if isinstance(exc, EOFError):
        return "it ends early: empty or truncated"
    first = str(exc).strip().split(". ")[0].splitlines()
    return f"{type(exc).__name__}: {first[0]}" if first else type(exc).__name__


@finding(key="label_smoothing", title="Label smoothing and calibration (ECE)",
         claim="Training with label smoothing lowers the expected calibration error of a network "
               "that is trained until it fits its data (the unsmoothed network is over-confident).",
         source="Müller, Kornblith & Hinton 2019, *When does label smoothing help?*, NeurIPS, §3 "
                "(implicit model calibration: reliability diagrams and ECE with and without "
                "smoothing).",
         rule="*reproduced* when, for every smoothing strength in the config, the 95% interval of "
              "smoothed − baseline test ECE lies below 0; *partly* when it does for some; *not "
              "reproduced* when for none. Over-confidence (mean top-class probability − "
              "accuracy on the validation split, from each run's saved model) tells which way "
              "the baseline is miscalibrated.",
         metric="ece")
def analyse_label_smoothing(results: Results) -> Outcome:
    over = mean_interval(results.per_seed("baseline", overconfidence).values())
    return calibration_outcome(results, settle=(
        "what would settle the strong settings: Müller et al.'s networks are trained until they "
        "fit their data and are far more over-confident than this baseline "
        f"({over.text()}); a config with a larger network and more epochs (a few times this "
        "one's cost) would test whether the strongest smoothing still over-corrects there"))


def calibration_outcome(results: Results, settle: str) -> Outcome:
    """Every recipe against the baseline on test ECE (the rule: each interval below 0), with
    validation ECE, over-confidence, NLL and accuracy reported; ``settle`` is the note printed
    when the rule does not hold for every recipe."""
    smoothed = sorted(p for p in results.points() if p != "baseline")
    quantities = [("test ECE", "test_ece", "lower"), ("val ECE", "val_ece", "lower"),
                  ("val over-confidence", "over", "—"), ("val NLL (loss)", "val_loss", "—"),
                  ("test accuracy", "test_accuracy", "—")]
    rows, holds, parts = [], [], []
    base_over = results.per_seed("baseline", overconfidence)
    for point in smoothed:
        for label, key, claimed in quantities:
            get = overconfidence if key == "over" else key
            base = base_over if key == "over" else results.per_seed("baseline", get)
            reg = results.per_seed(point, get)
            diff = paired(reg, base)
            rows.append([_point_label(point), label, mean_interval(base.values()).text(),
                         mean_interval(reg.values()).text(), diff.text(signed=True), claimed])
            if key == "test_ece":
                holds.append(diff.below(0))
                direction = "lower" if diff.below(0) else "higher" if diff.above(0) else "no clear change"
                parts.append(f"{_point_label(point)}: test ECE {diff.text(signed=True)} ({direction})")
    gate = seed_gate(results)
    over = mean_interval(base_over.values())
    state = ("over-confident" if over.above(0) else "under-confident" if over.below(0)
             else "neither clearly over- nor under-confident")
    reason = "; ".join(parts) + f". The baseline is {state} (confidence − accuracy {over.text()})."
    notes = []
    for point in smoothed:
        own = mean_interval(results.per_seed(point, overconfidence).values())
        if own.below(0):
            notes.append(f"{_point_label(point)} leaves the model **under-confident** (confidence "
                         f"− accuracy {own.text()}): it over-corrects, and ECE counts that "
                         "miscalibration too")
    if not all(holds):
        notes.append(settle)
    return Outcome(gate.verdict if gate else verdict_of(holds),
                   (gate.reason + "; " if gate else "") + reason,
                   ["recipe", "quantity (final epoch)", "baseline", "recipe",
                    "recipe − baseline [95% CI]", "claimed"], rows, notes)


# ----------------------------------------------------------------------------- 5. batchnorm

def _val_accuracy_at(run, epoch: int) -> float:
    frame = run.frame
    rows = frame[frame["epoch"] == epoch] if frame is not None else []
    return float(rows["val_accuracy"].iloc[0]) if len(rows) else math.nan


def _epochs_to_reach(run, threshold: float) -> float:
    """First epoch with val accuracy ≥ threshold; epochs run + 1 when never reached."""
    frame = run.frame
    reached = frame[frame["val_accuracy"] >= threshold]["epoch"]
    return float(reached.iloc[0]) if len(reached) else float(frame["epoch"].max() + 1)


@finding(key="batchnorm", title="Batch normalisation speeds up a deep sigmoid MLP",
         claim="Batch normalisation lets a deep network with saturating (sigmoid) units train "
               "much faster: higher accuracy after the same number of steps.",
         source="Ioffe & Szegedy 2015, *Batch normalization: accelerating deep network training "
                "by reducing internal covariate shift*, ICML, Fig. 1(a) (MNIST, 3 hidden layers "
                "of 100 sigmoid units, test accuracy vs training steps).",
         rule=f"*reproduced* when the 95% interval of batchnorm − baseline validation accuracy "
              f"after epoch 1 lies above 0 and batchnorm reaches {BN_THRESHOLD:.0%} validation "
              f"accuracy in fewer epochs (mean over seeds; a run that never reaches it counts as "
              f"epochs + 1); *partly* when one of the two holds; *not reproduced* otherwise.")
def analyse_batchnorm(results: Results) -> Outcome:
    def at(epoch):
        return lambda run: _val_accuracy_at(run, epoch)

    reach = lambda run: _epochs_to_reach(run, BN_THRESHOLD)  # noqa: E731
    last = results.last_epoch()
    quantities = [("val accuracy after epoch 1", at(1)), ("val accuracy after epoch 2", at(2)),
                  (f"val accuracy after epoch {last}", at(last)),
                  (f"epochs to reach {BN_THRESHOLD:.0%} val accuracy", reach)]
    rows, diffs = [], []
    for label, get in quantities:
        base, norm = results.per_seed("baseline", get), results.per_seed("batchnorm", get)
        diffs.append(paired(norm, base))
        rows.append([label, mean_interval(base.values()).text(3),
                     mean_interval(norm.values()).text(3), diffs[-1].text(3, signed=True)])
    gate = seed_gate(results)
    holds = [diffs[0].above(0), diffs[3].mean < 0]
    notes = [f"epochs to reach {BN_THRESHOLD:.0%}: {last + 1} means not reached within the "
             f"{last} epochs"]
    reason = (f"batchnorm − baseline val accuracy after epoch 1: {diffs[0].text(3, signed=True)}; "
              f"epochs to reach {BN_THRESHOLD:.0%}: {diffs[3].text(2, signed=True)}.")
    return Outcome(gate.verdict if gate else verdict_of(holds),
                   (gate.reason + "; " if gate else "") + reason,
                   ["quantity", "baseline", "batchnorm", "batchnorm − baseline [95% CI]"], rows,
                   notes,
                   figures=[("learning curves, baseline and batchnorm (regbench's report)",
                             results.folder / "plots" / "curves.png")])


# ----------------------------------------------------------------------------- 6. label noise

def best_val_accuracy(run) -> float:
    return float(run.frame["val_accuracy"].max())


def memorisation_drop(run) -> float:
    """Best val accuracy over the epochs − val accuracy of the model the run returns (the
    last epoch, or the epoch early stopping restored)."""
    return best_val_accuracy(run) - float(run.summary["val_accuracy"])


def _best_epoch(run) -> float:
    frame = run.frame
    return float(frame["epoch"][frame["val_accuracy"].idxmax()])


@finding(key="label_noise", title="Heavy label noise: memorisation late in training",
         claim="With many wrong training labels, plain training first learns the true pattern "
               "(best validation accuracy early) and then memorises the noise, so the last epoch "
               "is much worse than the best; regularizers such as dropout and mixup (and early "
               "stopping, by construction) keep the returned model near its best.",
         source="Zhang, Cisse, Dauphin & Lopez-Paz 2018, *mixup: beyond empirical risk "
                "minimization*, ICLR, §3.4 and Table 2 (corrupted CIFAR-10 labels: best vs last "
                "epoch test error for ERM, dropout and mixup); Arpit et al. 2017, *A closer look "
                "at memorization in deep networks*, ICML.",
         rule=f"the drop is best − returned validation accuracy (returned: last epoch, or the "
              f"epoch early stopping restores). *reproduced* when the baseline's drop interval "
              f"lies above {MEMORISATION_DROP} and every regularizer's drop interval lies at or "
              f"below {MEMORISATION_DROP} (near its best); *partly* when the baseline memorises "
              f"and some regularizers stay near their best, or all of them lessen the drop "
              f"(interval of drop − baseline's below 0) without staying near the best; *not "
              f"reproduced* otherwise.")
def analyse_label_noise(results: Results) -> Outcome:
    base_drop = results.per_seed("baseline", memorisation_drop)
    base = mean_interval(base_drop.values())
    rows, near, reduced = [], {}, {}
    for point in ["baseline"] + sorted(p for p in results.points() if p != "baseline"):
        drop = results.per_seed(point, memorisation_drop)
        estimate = mean_interval(drop.values())
        diff = paired(drop, base_drop) if point != "baseline" else None
        if diff is not None:
            near[point] = not math.isnan(estimate.high) and estimate.high <= MEMORISATION_DROP
            reduced[point] = diff.below(0)
        rows.append([_point_label(point),
                     mean_interval(results.per_seed(point, best_val_accuracy).values()).text(3),
                     mean_interval(results.per_seed(point, _best_epoch).values()).text(1),
                     mean_interval(results.per_seed(point, "val_accuracy").values()).text(3),
                     mean_interval(results.per_seed(point, "chosen_epoch").values()).text(1),
                     estimate.text(3), diff.text(3, signed=True) if diff else "",
                     mean_interval(results.per_seed(point, "test_accuracy").values()).text(3)])
    gate = seed_gate(results)
    memorises = base.above(MEMORISATION_DROP)
    if memorises and near and all(near.values()):
        verdict = REPRODUCED
    elif memorises and (any(near.values()) or (reduced and all(reduced.values()))):
        verdict = PARTLY
    else:
        verdict = NOT_REPRODUCED
    kept = [p for p in near if near[p]]
    lessened = [p for p in reduced if reduced[p] and not near[p]]
    neither = [p for p in reduced if not reduced[p] and not near[p]]
    reason = (f"baseline drop from its best to its last epoch: {base.text(3)} "
              f"({'memorises' if memorises else 'no clear memorisation'}). Returned model within "
              f"{MEMORISATION_DROP} of its best: {', '.join(kept) or 'none'}; smaller drop than "
              f"the baseline's but still far from the best: {', '.join(lessened) or 'none'}"
              + (f"; no clear effect: {', '.join(neither)}" if neither else "") + ".")
    return Outcome(gate.verdict if gate else verdict, (gate.reason + "; " if gate else "") + reason,
                   ["recipe", "best val accuracy", "epoch of best", "returned val accuracy",
                    "returned epoch", "drop (best − returned)", "drop − baseline's [95% CI]",
                    "test accuracy"], rows,
                   notes=[] if verdict == REPRODUCED else [
                       "what a larger budget would need: Zhang et al. train a PreAct ResNet-18 "
                       "for 200 epochs on all of CIFAR-10, where mixup's best and last epochs "
                       "stay close; this MLP on a small Fashion-MNIST subset trains for a few "
                       "minutes. early_stopping restores the epoch of lowest validation loss, "
                       "which under label noise is not the epoch of best validation accuracy "
                       "(its `monitor: val_accuracy` would return that one)"],
                   figures=[("learning curves of every recipe (regbench's report)",
                             results.folder / "plots" / "curves.png")])

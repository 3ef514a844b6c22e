"""Gallery findings on the modern catalogue: weight averaging (SWA, EMA), sharpness-aware
minimisation under label noise, automatic augmentation policies, the confidence penalty and
DropBlock.

Each ``analyse`` reads the run folders of its config (``Results``) and nothing else; the rule
string printed on the page is the code below, in words. See ``regbench.gallery``.
"""
from __future__ import annotations

import math

from regbench.gallery.core import NOT_REPRODUCED, PARTLY, REPRODUCED, Outcome, finding
from regbench.gallery.networks import (
    best_val_accuracy,
    calibration_outcome,
    memorisation_drop,
    overconfidence,
)
from regbench.gallery.stats import Estimate, Results, mean_interval, paired, seed_gate, verdict_of

NON_INFERIORITY = 0.005        # test accuracy TrivialAugment may trail RandAugment by and still tie
CURVES = ("learning curves of every recipe (regbench's report)", "curves.png")


def _figures(results: Results) -> list:
    caption, name = CURVES
    return [(caption, results.folder / "plots" / name)]


def _column_at(column: str, epoch: int):
    """A function of a run: ``column`` of metrics.csv after ``epoch`` (NaN when not logged)."""
    def value(run) -> float:
        frame = run.frame
        rows = frame[frame["epoch"] == epoch] if frame is not None else []
        return float(rows[column].iloc[0]) if len(rows) else math.nan
    return value


def _compare(results: Results, recipe: str, baseline: str,
             quantities: list[tuple[str, object, str]], digits: int = 4
             ) -> tuple[list[list[str]], list[Estimate]]:
    """Rows `quantity | baseline | recipe | recipe − baseline [95% CI] | claimed` for summary
    keys or functions of a run, and the paired differences in the same order."""
    rows, diffs = [], []
    for label, get, claimed in quantities:
        base, reg = results.per_seed(baseline, get), results.per_seed(recipe, get)
        diffs.append(paired(reg, base))
        rows.append([label, mean_interval(base.values()).text(digits),
                     mean_interval(reg.values()).text(digits), diffs[-1].text(digits, signed=True),
                     claimed])
    return rows, diffs


def _head_to_head(claimed: str) -> list[tuple[str, object, str]]:
    """Two recipes compared: test accuracy (the rule's, ``claimed``), NLL and the gap."""
    return [("test accuracy", "test_accuracy", claimed),
            ("test NLL (loss)", "test_loss", "— (reported)"),
            ("train − val accuracy gap",
             lambda run: run.summary["train_accuracy"] - run.summary["val_accuracy"],
             "— (reported)")]


def _direction(diff: Estimate, low: str = "lower", high: str = "higher") -> str:
    return low if diff.below(0) else high if diff.above(0) else "no clear change"


def _gated(results: Results, verdict: str, reason: str, header: list[str], rows, *,
           tested: dict[str, Estimate], **extra) -> Outcome:
    """The outcome, inconclusive with too few seeds; a rule's quantity (``tested``: label ->
    interval) whose interval includes 0 gets a note: not shown is not shown absent."""
    gate = seed_gate(results)
    notes = list(extra.pop("notes", []))
    open_ = [label for label, diff in tested.items()
             if not math.isnan(diff.low) and diff.low <= 0 <= diff.high]
    if open_ and not gate:
        notes.append(f"{' and '.join(open_)}: the interval includes 0, so these seeds neither "
                     "show the claimed difference nor rule it out")
    return Outcome(gate.verdict if gate else verdict, (gate.reason + "; " if gate else "") + reason,
                   header, rows, notes=notes, **extra)


HEADER = ["quantity", "{baseline}", "{recipe}", "{recipe} − {baseline} [95% CI]", "claimed"]


def _header(recipe: str, baseline: str = "baseline") -> list[str]:
    return [cell.format(recipe=recipe, baseline=baseline) for cell in HEADER]


# ----------------------------------------------------------------------------- 13. SWA

@finding(key="swa", title="SWA beats the SGD end point at equal epochs",
         claim="Averaging the weights SGD visits over the last epochs of training (stochastic "
               "weight averaging, at a constant learning rate) gives a model that generalises "
               "better than SGD's end point after the same number of epochs.",
         source="Izmailov, Podoprikhin, Garipov, Vetrov & Wilson 2018, *Averaging weights leads "
                "to wider optima and better generalization*, UAI, Table 1 (SWA against "
                "conventional SGD training at equal budgets).",
         rule="*reproduced* when the 95% intervals of swa − baseline lie above 0 for test "
              "accuracy and below 0 for test NLL (final epoch: the averaged weights against "
              "SGD's last iterate, same seeds, same epochs); *partly* when one of them does; "
              "*not reproduced* otherwise.")
def analyse_swa(results: Results) -> Outcome:
    rows, diffs = _compare(results, "swa", "baseline", [
        ("test accuracy", "test_accuracy", "higher"), ("test NLL (loss)", "test_loss", "lower"),
        ("test ECE", "test_ece", "— (reported)"),
        ("val accuracy", "val_accuracy", "— (reported)")])
    accuracy, nll = diffs[0], diffs[1]
    reason = (f"swa − baseline: test accuracy {accuracy.text(signed=True)} "
              f"({_direction(accuracy)}), test NLL {nll.text(signed=True)} ({_direction(nll)}).")
    return _gated(results, verdict_of([accuracy.above(0), nll.below(0)]), reason,
                  _header("swa"), rows, figures=_figures(results),
                  tested={"test accuracy": accuracy, "test NLL": nll})


# ----------------------------------------------------------------------------- 14. SAM

@finding(key="sam_label_noise", title="SAM is robust to label noise",
         claim="Sharpness-aware minimisation, trained on labels of which a large fraction is "
               "wrong, reaches a higher clean test accuracy than plain SGD and memorises the "
               "noise less.",
         source="Foret, Kleiner, Mobahi & Neyshabur 2021, *Sharpness-aware minimization for "
                "efficiently improving generalization*, ICLR, Table 4 (CIFAR-10 with 20–80% "
                "noisy labels: SAM against SGD).",
         rule="*reproduced* when the 95% interval of sam − baseline test accuracy (final epoch, "
              "clean test labels) lies above 0 and that of the memorisation drop (best − final "
              "validation accuracy) lies below 0; *partly* when one of them does; *not "
              "reproduced* otherwise.")
def analyse_sam_label_noise(results: Results) -> Outcome:
    rows, diffs = _compare(results, "sam", "baseline", [
        ("test accuracy (final epoch)", "test_accuracy", "higher"),
        ("memorisation drop: best − final val accuracy", memorisation_drop, "lower"),
        ("best val accuracy", best_val_accuracy, "— (reported)"),
        ("train accuracy (noisy labels)", "train_accuracy", "— (reported)")])
    accuracy, drop = diffs[0], diffs[1]
    reason = (f"sam − baseline: test accuracy {accuracy.text(signed=True)} "
              f"({_direction(accuracy)}), memorisation drop {drop.text(signed=True)} "
              f"({_direction(drop)}).")
    seconds = [mean_interval(results.per_seed(p, "seconds").values()).mean
               for p in ("baseline", "sam")]
    notes = [f"training time per run: baseline {seconds[0]:.1f} s, sam {seconds[1]:.1f} s "
             "(SAM's two forward-backward passes per step)"] if all(map(math.isfinite, seconds)) \
        else []
    return _gated(results, verdict_of([accuracy.above(0), drop.below(0)]), reason,
                  _header("sam"), rows, notes=notes, figures=_figures(results),
                  tested={"test accuracy": accuracy, "memorisation drop": drop})


# ----------------------------------------------------------------------------- 15. EMA

def _early_epoch(results: Results) -> int:
    """The epoch a quarter of the way through training (at least 1)."""
    return max(1, math.ceil(results.last_epoch() / 4))


@finding(key="ema_early", title="EMA beats the raw weights early in training",
         claim="Evaluating an exponential moving average of the weights instead of the raw "
               "iterate gives a better model early in training, while a large learning rate "
               "still makes the iterates jump around; the advantage shrinks as training goes on.",
         source="Polyak & Juditsky 1992, *Acceleration of stochastic approximation by "
                "averaging*, SIAM J. Control Optim. 30(4) (iterate averaging); Morales-Brotons, "
                "Vogels & Hendrikx 2024, *Exponential moving average of weights in deep "
                "learning: dynamics and benefits*, TMLR (EMA against the raw iterates along "
                "training).",
         rule="*reproduced* when, a quarter of the way through training (epoch ⌈E/4⌉ of E), "
              "the 95% interval of ema − baseline validation accuracy lies above 0 and that of "
              "validation NLL below 0; *partly* when one of them does; *not reproduced* "
              "otherwise. Both recipes train the same weights from the same seed (EMA only "
              "changes which weights are evaluated), so the pairs differ by the averaging "
              "alone. The last epoch is reported, not part of the rule.")
def analyse_ema_early(results: Results) -> Outcome:
    early = _early_epoch(results)
    last = results.last_epoch()
    rows, diffs = _compare(results, "ema", "baseline", [
        (f"val accuracy after epoch {early}", _column_at("val_accuracy", early), "higher"),
        (f"val NLL after epoch {early}", _column_at("val_loss", early), "lower"),
        (f"val accuracy after epoch {last}", _column_at("val_accuracy", last), "— (reported)"),
        (f"val NLL after epoch {last}", _column_at("val_loss", last), "— (reported)")])
    reason = (f"ema − baseline after epoch {early} of {last}: val accuracy "
              f"{diffs[0].text(signed=True)} ({_direction(diffs[0])}), val NLL "
              f"{diffs[1].text(signed=True)} ({_direction(diffs[1])}); after epoch {last}: val "
              f"accuracy {diffs[2].text(signed=True)}.")
    return _gated(results, verdict_of([diffs[0].above(0), diffs[1].below(0)]), reason,
                  _header("ema"), rows, figures=_figures(results),
                  tested={f"val accuracy after epoch {early}": diffs[0],
                          f"val NLL after epoch {early}": diffs[1]})


# ----------------------------------------------------------------------------- 16. policies

@finding(key="trivialaugment", title="TrivialAugment does at least as well as RandAugment",
         claim="TrivialAugment (one operation per image at a uniformly drawn strength, no search "
               "and no tuning) performs at least as well as RandAugment at its usual setting.",
         source="Müller & Hutter 2021, *TrivialAugment: tuning-free yet state-of-the-art data "
                "augmentation*, ICCV, Table 2 (TA against RA and other policies, same budgets).",
         rule=f"*reproduced* when the 95% interval of trivialaugment − randaugment test accuracy "
              f"lies above −{NON_INFERIORITY} (TA no worse than RA by more than "
              f"{NON_INFERIORITY * 100:g} points: non-inferiority); *not reproduced* when it "
              f"lies below 0 (RA better); *partly* otherwise (the interval reaches below "
              f"−{NON_INFERIORITY} but not wholly below 0). Each policy against no augmentation "
              f"is reported, not part of the rule.")
def analyse_trivialaugment(results: Results) -> Outcome:
    rows, diffs = _compare(results, "trivialaugment", "randaugment",
                           _head_to_head("not lower"))
    accuracy = diffs[0]
    if accuracy.above(-NON_INFERIORITY):
        verdict = REPRODUCED
    elif accuracy.below(0):
        verdict = NOT_REPRODUCED
    else:
        verdict = PARTLY
    against = []
    for policy in ("randaugment", "trivialaugment"):
        diff = paired(results.per_seed(policy, "test_accuracy"),
                      results.per_seed("baseline", "test_accuracy"))
        against.append(f"{policy} − no augmentation: test accuracy {diff.text(signed=True)} "
                       f"({_direction(diff)})")
    which = _direction(accuracy, "RA better", "TA better").replace("no clear change",
                                                                  "no clear difference")
    reason = (f"trivialaugment − randaugment test accuracy {accuracy.text(signed=True)} "
              f"({which}; the non-inferiority margin is −{NON_INFERIORITY}).")
    return _gated(results, verdict, reason, _header("trivialaugment", "randaugment"), rows,
                  notes=against, figures=_figures(results), tested={})


# ----------------------------------------------------------------------------- 17. confidence

@finding(key="confidence_penalty", title="The confidence penalty lowers calibration error",
         claim="Penalising confident output distributions (loss − β·H(p), the entropy of the "
               "softmax) makes a network that is trained until it fits its data less "
               "over-confident, so its expected calibration error falls.",
         source="Pereyra, Tucker, Chorowski, Kaiser & Hinton 2017, *Regularizing neural networks "
                "by penalizing confident output distributions*, ICLR workshop, §3 and §5 "
                "(confidence penalty against label smoothing).",
         rule="*reproduced* when, for every β in the config, the 95% interval of penalty − "
              "baseline test ECE lies below 0; *partly* when it does for some; *not reproduced* "
              "when for none. Over-confidence (mean top-class probability − accuracy on the "
              "validation split, from each run's saved model) tells which way each model is "
              "miscalibrated.",
         metric="ece")
def analyse_confidence_penalty(results: Results) -> Outcome:
    over = mean_interval(results.per_seed("baseline", overconfidence).values())
    return calibration_outcome(results, settle=(
        "a penalty strong enough to push the entropy past what the data supports leaves the "
        f"model under-confident; the baseline's over-confidence ({over.text()}) sets how much "
        "penalty it can use"))


# ----------------------------------------------------------------------------- 18. DropBlock

@finding(key="dropblock", title="DropBlock beats dropout on a conv net",
         claim="On a convolutional network, dropping contiguous blocks of a feature map "
               "regularizes better than dropping single activations (whose information their "
               "correlated neighbours still carry): DropBlock gives a higher test accuracy than "
               "dropout at the same drop rate.",
         source="Ghiasi, Lin & Le 2018, *DropBlock: a regularization method for convolutional "
                "networks*, NeurIPS, Table 1 (ResNet-50 on ImageNet: DropBlock against dropout "
                "and no dropping).",
         rule="*reproduced* when the 95% intervals of dropblock − dropout and of dropblock − "
              "baseline test accuracy both lie above 0; *partly* when one of them does; *not "
              "reproduced* otherwise. Dropout is placed after the conv activations, where "
              "DropBlock drops blocks, with the same rate.")
def analyse_dropblock(results: Results) -> Outcome:
    quantities = _head_to_head("higher")
    rows, diffs = _compare(results, "dropblock", "dropout", quantities)
    base_rows, base_diffs = _compare(results, "dropblock", "baseline", quantities[:1])
    rows += [[f"{row[0]} (against no dropping: baseline | dropblock | dropblock − baseline)",
              *row[1:]] for row in base_rows]
    reason = (f"dropblock − dropout test accuracy {diffs[0].text(signed=True)} "
              f"({_direction(diffs[0])}); dropblock − baseline "
              f"{base_diffs[0].text(signed=True)} ({_direction(base_diffs[0])}).")
    return _gated(results, verdict_of([diffs[0].above(0), base_diffs[0].above(0)]), reason,
                  _header("dropblock", "dropout"), rows, figures=_figures(results),
                  tested={"dropblock − dropout": diffs[0], "dropblock − baseline": base_diffs[0]})

"""Overfitting diagnosis from per-epoch metrics: pure rules on a list of rows.

A row is one logged epoch, keyed like metrics.csv (``epoch``, ``train_loss``, ``val_loss``,
``train_accuracy``, ...). A missing value (key absent or ``None``) means "not logged that
epoch"; a present NaN/inf loss means the run diverged. Epochs may be sparse (1, 5, 10) and
rates (accuracy, precision, recall, F1) may be fractions or percents: a pair with any value
above 1 is read as percent.

The rules, thresholds from the config's ``diagnosis:`` section (``DiagnosisConfig``):

1. **Gap.** train − val accuracy > ``accuracy_gap`` (regression: train − val R² > ``r2_gap``),
   measured on the last logged epochs. Val ÷ train loss counts only together with an absolute
   gap: val − train loss > ``loss_gap`` *and* the ratio > ``loss_ratio``. Why: a network that
   fits its training set drives train loss towards 0, so the ratio explodes on healthy runs
   (digits: val 0.08 nats vs train 0.003 = 23×, with a 2-point accuracy gap).
2. **Rising val loss.** After its minimum, val loss ends more than ``rise_tolerance`` (relative)
   above that minimum, at least ``rise_window`` epochs later, while train loss kept falling.
   The rise must also be large against the curve's own noise (``RISE_NOISE_MULTIPLE`` times its
   epoch-to-epoch jitter, see ``curve_noise``) and against the loss's scale (``RISE_FLOOR_START``
   of the first val loss; for classification also ``RISE_FLOOR_NATS``): a relative rise alone
   calls 0.0008 → 0.0011 nats at 100% val accuracy "overfitting", and a flat curve's noise
   rises above its own minimum in most runs. Overfitting started at the minimum's epoch —
   where early stopping would have stopped.
3. **F1 / precision / recall drop** from train to val by more than ``f1_drop``.

Robustness: with ≥ ``SMOOTH_MIN_POINTS`` logged epochs, levels at the end are medians of the
last 3 epochs and curves are smoothed (running median of 3, then mean of 3) before a rule
looks at them, so one noisy epoch (a spike or a dip) can neither create nor hide a verdict.
Sparser logs are used as they are: each point then stands for several epochs.

Verdicts: ``diverged`` (a loss became NaN/inf, or the run says so), ``overfitting`` (any rule
fired), ``underfitting`` (no gap, and train accuracy < ``underfit_accuracy`` or train R² <
``underfit_r2``; with losses only, train loss fell by less than ``underfit_loss_drop``),
``unknown`` (no epochs to judge: a missing, empty or unreadable curve is never ``ok``), else
``ok``. Every verdict carries its evidence in words and numbers.

Grades: ``overfitting`` is ``strong`` when rule 2 fired (more training made val worse) and
``mild`` when only a gap did (``label`` prints it as ``mild overfitting``). A run that kept an
earlier epoch's weights (early stopping) is judged on the epochs up to that one. Numbers quoted
together agree: a gap is the train level minus the val level quoted beside it, and no value
prints equal to the threshold it is said to exceed.
"""
from __future__ import annotations

import math
import statistics
from typing import Any, Optional

from regbench.config.schema import DiagnosisConfig

RATES = ("accuracy", "precision", "recall", "f1")  # fractions in [0, 1] (or percents)
SMOOTH_MIN_POINTS = 6                              # fewer logged epochs: no smoothing
LOSS_KEYS = ("objective", "train_loss", "val_loss")
# Rule 2's rise (smoothed end − smoothed minimum of val loss) must exceed each of these.
# Noise: on a flat val loss with independent noise, the smoothed end lies more than 4
# curve_noise σ above the smoothed minimum in under 0.6% of curves (simulated: 6 to 200
# epochs, Gaussian and heavy-tailed t(3) noise; 3σ lets through 1–3.5%).
RISE_NOISE_MULTIPLE = 4.0
# Scale: a rise below 5% of the first logged val loss is a small share of what training
# achieved (cross-entropy after one epoch is typically 0.2–2 nats: a floor of 0.01–0.1) ...
RISE_FLOOR_START = 0.05
# ... and for cross-entropy below 0.01 nats, whatever the start: the predicted probability of
# the true class changes by about 1% (e^0.01), too little to act on. Not for regression or a
# losses-only CSV, whose loss units are the target's own (an MSE of 1e-4 may be large).
RISE_FLOOR_NATS = 0.01


def _number(value: Any) -> Optional[float]:
    """A float, or None for a value that was not logged (None, '', absent)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number


def _finite(value: Any) -> bool:
    number = _number(value)
    return number is not None and math.isfinite(number)


def _running(values: list[float], reduce) -> list[float]:
    n = len(values)
    return [reduce(values[lo:lo + 3]) for lo in (min(max(i - 1, 0), n - 3) for i in range(n))]


def smooth(values: list[float]) -> list[float]:
    """Running median of 3, then running mean of 3 (windows shifted inward at the ends).

    The median removes a single spike or dip; the mean then damps epoch-to-epoch zig-zag,
    which a median alone turns into a trough-to-peak swing. Short series stay unchanged.
    """
    if len(values) < SMOOTH_MIN_POINTS:
        return list(values)
    return _running(_running(values, statistics.median), statistics.fmean)


def curve_noise(values: list[float]) -> Optional[float]:
    """The epoch-to-epoch noise of a curve (a standard deviation), robust to its trend and to
    outliers; None with fewer than ``SMOOTH_MIN_POINTS`` points.

    The median absolute second difference, scaled to σ for Gaussian noise: a second difference
    of independent noise has variance 6σ², and 1.4826 turns a median absolute value into σ
    (the DER_SNR estimator of Stoehr et al. 2008, at a spacing of one epoch). A smooth trend's
    second differences are near 0 and a spike moves a median little, so neither the descent
    nor one bad epoch counts as noise; first differences would count a U turn's two slopes.
    """
    if len(values) < SMOOTH_MIN_POINTS:
        return None
    second = [abs(values[i - 1] - 2 * values[i] + values[i + 1])
              for i in range(1, len(values) - 1)]
    return 1.4826 * statistics.median(second) / math.sqrt(6)


def end_level(values: list[float]) -> float:
    """The value at the end of a series: median of the last 3 points when smoothing applies."""
    if len(values) < SMOOTH_MIN_POINTS:
        return values[-1]
    return statistics.median(values[-3:])


def normalise_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows sorted by epoch with numbers as floats; percent rate pairs scaled to fractions."""
    clean = []
    for row in rows:
        epoch = _number(row.get("epoch"))
        if epoch is None or not math.isfinite(epoch):
            continue
        clean.append({k: (_number(v) if k != "epoch" else epoch) for k, v in row.items()})
    clean.sort(key=lambda r: r["epoch"])
    for rate in RATES:
        keys = (f"train_{rate}", f"val_{rate}")
        values = [r[k] for r in clean for k in keys if _finite(r.get(k))]
        if values and max(values) > 1.0:  # percents: no fraction exceeds 1
            for r in clean:
                for k in keys:
                    if _finite(r.get(k)):
                        r[k] = r[k] / 100.0
    return clean


def infer_task(columns) -> str:
    """classification | regression | unknown (losses only), from the metric columns."""
    names = {c.split("_", 1)[-1] for c in columns}
    if names & set(RATES):
        return "classification"
    if names & {"r2", "mse", "mae"}:
        return "regression"
    return "unknown"


def _pairs(rows: list[dict[str, Any]], name: str) -> tuple[list[float], list[float], list[float]]:
    """Epochs where both train_<name> and val_<name> are finite, with both series."""
    epochs, train, val = [], [], []
    for row in rows:
        a, b = row.get(f"train_{name}"), row.get(f"val_{name}")
        if _finite(a) and _finite(b):
            epochs.append(row["epoch"])
            train.append(a)
            val.append(b)
    return epochs, train, val


def _epoch(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def beyond(value: float, limit: float, digits: int = 1) -> str:
    """``value`` with enough decimals that it does not print equal to ``limit`` (5.03, not 5.0,
    next to "> 5")."""
    while digits < 6 and round(value, digits) == round(limit, digits) and value != limit:
        digits += 1
    return f"{value:.{digits}f}"


def _where(epochs: list[float]) -> str:
    """Which epochs an end level stands for: the last one, or the last 3 (median)."""
    if len(epochs) < SMOOTH_MIN_POINTS:
        return f"at epoch {_epoch(epochs[-1])}"
    return f"over epochs {_epoch(epochs[-3])}–{_epoch(epochs[-1])} (median)"


def _divergence(rows: list[dict[str, Any]], status: str) -> Optional[dict[str, Any]]:
    for row in rows:
        bad = [k for k in LOSS_KEYS if row.get(k) is not None and not math.isfinite(row[k])]
        if bad:
            epoch = _epoch(row["epoch"])
            return {"verdict": "diverged", "started_epoch": epoch, "rules": ["diverged"],
                    "numbers": {"diverged_epoch": epoch},
                    "evidence": [f"{bad[0].replace('_', ' ')} became {row[bad[0]]} at epoch "
                                 f"{epoch}: training diverged (try a lower learning rate or "
                                 "gradient clipping)"]}
    if status == "diverged":
        epoch = _epoch(rows[-1]["epoch"]) if rows else None
        return {"verdict": "diverged", "started_epoch": epoch, "rules": ["diverged"],
                "numbers": {"diverged_epoch": epoch},
                "evidence": [f"the run diverged (loss became NaN/inf) after epoch {epoch}"]}
    return None


def _gap_start(epochs: list[float], gaps: list[float], limit: float) -> float:
    """First epoch of the final stretch in which the (smoothed) gap stays above ``limit``."""
    start = len(gaps) - 1
    while start > 0 and gaps[start - 1] > limit:
        start -= 1
    return epochs[start]


def rule_gap(rows: list[dict[str, Any]], task: str, t: DiagnosisConfig,
             numbers: dict[str, Any]) -> list[tuple[str, float, str]]:
    """Rule 1: (rule, start epoch, evidence) for each gap above its threshold.

    The gap is the end level of train minus the end level of val, so the three numbers quoted
    together agree (train 91.5% − val 84.7% = gap 6.8 points)."""
    found = []
    metric, limit = ("accuracy", t.accuracy_gap) if task != "regression" else ("r2", t.r2_gap)
    epochs, train, val = _pairs(rows, metric)
    if epochs:
        gaps = smooth([a - b for a, b in zip(train, val)])
        high, low = end_level(train), end_level(val)
        final = high - low
        numbers[f"{metric}_gap"] = final
        if metric == "accuracy":
            scale, unit, label, shown, digits = 100, " points", "accuracy", _pct, 1
        else:
            scale, unit, label, shown, digits = 1, "", "R²", (lambda v: f"{v:.3f}"), 3
        words = (f"train {label} {shown(high)} vs val {shown(low)} {_where(epochs)}: gap "
                 f"{beyond(scale * final, scale * limit, digits)}{unit}")
        if final > limit:
            found.append((f"{metric}_gap", _gap_start(epochs, gaps, limit),
                          f"{words} (> {scale * limit:g}{unit})"))
        else:
            numbers["_gap_words"] = f"{words} (≤ {scale * limit:g}{unit})"
    epochs, train, val = _pairs(rows, "loss")
    if epochs and task != "regression":
        excess = smooth([b - a for a, b in zip(train, val)])
        high, low = end_level(val), end_level(train)
        final = high - low
        ratio = high / low if low > 0 else math.inf
        numbers.update(loss_gap=final, loss_ratio=ratio)
        if final > t.loss_gap and ratio > t.loss_ratio:
            ok = [e > t.loss_gap for e in excess]
            start = len(ok) - 1
            while start > 0 and ok[start - 1]:
                start -= 1
            found.append(("loss_gap", epochs[start],
                          f"val loss {high:.4g} is {beyond(ratio, t.loss_ratio)}× train loss "
                          f"{low:.4g} {_where(epochs)} (> {t.loss_ratio:g}×, and "
                          f"{beyond(final, t.loss_gap, 3)} above it > {t.loss_gap:g})"))
    return found


def rule_rising_val_loss(rows: list[dict[str, Any]], t: DiagnosisConfig,
                         numbers: dict[str, Any], task: str = "classification"
                         ) -> Optional[tuple[str, float, str]]:
    """Rule 2: val loss ends well above its minimum while train loss kept falling.

    Judged, and quoted, on the smoothed curves; the start is the raw minimum's epoch next to
    the smoothed one (the epoch people see on the plot). "Well above" is three tests: relative
    to the minimum (``rise_tolerance``), to the curve's noise and to the loss's scale (the
    module's ``RISE_*`` constants); ``numbers["val_loss_rise_needed"]`` is the larger of the
    last two, the rise that would have counted."""
    epochs, train, val = _pairs(rows, "loss")
    if len(epochs) < 2:
        return None
    train_s, val_s = smooth(train), smooth(val)
    best = min(range(len(val_s)), key=lambda i: val_s[i])
    start = best
    if val_s != val:
        start = min(range(max(best - 1, 0), min(best + 2, len(val))), key=lambda i: val[i])
    rise = val_s[-1] / val_s[best] - 1 if val_s[best] > 0 else 0.0
    amount = val_s[-1] - val_s[best]
    noise = curve_noise(val)
    floor = max(RISE_FLOOR_START * abs(val[0]), RISE_FLOOR_NATS if task == "classification"
                else 0.0)
    needed = max(floor, RISE_NOISE_MULTIPLE * noise if noise is not None else 0.0)
    numbers.update(val_loss_min=val_s[best], val_loss_min_epoch=_epoch(epochs[start]),
                   val_loss_rise=rise, val_loss_rise_amount=amount, val_loss_noise=noise,
                   val_loss_rise_needed=needed)
    smoothed = " (smoothed over 3 epochs)" if val_s != val else ""
    shown, limit, why = _needed(numbers)
    if (best < len(epochs) - 1 and epochs[-1] - epochs[start] >= t.rise_window
            and rise > t.rise_tolerance and amount > needed and train_s[-1] < train_s[best]):
        return ("val_loss_rising", epochs[start],
                f"val loss{smoothed} reached its minimum {val_s[best]:.4g} at epoch "
                f"{_epoch(epochs[start])} and rose to {val_s[-1]:.4g} by epoch "
                f"{_epoch(epochs[-1])} (+{beyond(100 * rise, 100 * t.rise_tolerance, 0)}% > "
                f"{100 * t.rise_tolerance:g}%; +{shown} > {limit}: {why}) while train "
                f"loss fell from {train_s[best]:.4g} to {train_s[-1]:.4g}")
    return None


def _needed(numbers: dict[str, Any]) -> tuple[str, str, str]:
    """The rise, the rise that would count (printed so that the two never look equal) and
    why: ``("0.0592", "0.0585", "4 × its epoch-to-epoch noise 0.015")``."""
    needed, noise = numbers["val_loss_rise_needed"], numbers["val_loss_noise"]
    amount, digits = numbers["val_loss_rise_amount"], 3
    while digits < 8 and f"{amount:.{digits}g}" == f"{needed:.{digits}g}" and amount != needed:
        digits += 1
    shown = (f"{amount:.{digits}g}", f"{needed:.{digits}g}")
    if noise is not None and needed == RISE_NOISE_MULTIPLE * noise and needed > 0:
        return shown + (f"{RISE_NOISE_MULTIPLE:g} × its epoch-to-epoch noise {noise:.2g}",)
    if needed == RISE_FLOOR_NATS:
        return shown + ("in nats, the least change of cross-entropy worth acting on",)
    return shown + (f"{100 * RISE_FLOOR_START:g}% of the first val loss",)


def rule_f1_drop(rows: list[dict[str, Any]], t: DiagnosisConfig
                 ) -> Optional[tuple[str, float, str]]:
    """Rule 3: macro F1 (else precision, else recall) drops from train to val."""
    for metric in ("f1", "precision", "recall"):
        epochs, train, val = _pairs(rows, metric)
        if not epochs:
            continue
        drops = smooth([a - b for a, b in zip(train, val)])
        high, low = end_level(train), end_level(val)
        if high - low > t.f1_drop:
            return (f"{metric}_drop", _gap_start(epochs, drops, t.f1_drop),
                    f"{metric} drops from {_pct(high)} (train) to {_pct(low)} (val) "
                    f"{_where(epochs)}: {beyond(100 * (high - low), 100 * t.f1_drop)} points "
                    f"(> {100 * t.f1_drop:g})")
        return None
    return None


def rule_underfitting(rows: list[dict[str, Any]], task: str, t: DiagnosisConfig
                      ) -> Optional[str]:
    """No gap but a poor fit of the training data itself; says whether it is still improving."""
    words = None
    if task == "classification":
        epochs, train, _ = _pairs(rows, "accuracy")
        if epochs and end_level(train) < t.underfit_accuracy:
            words = (f"train accuracy is only {_pct(end_level(train))} (< "
                     f"{_pct(t.underfit_accuracy)}) and val is no worse")
    elif task == "regression":
        epochs, train, _ = _pairs(rows, "r2")
        if epochs and end_level(train) < t.underfit_r2:
            words = (f"train R² is only {end_level(train):.3f} (< {t.underfit_r2:g}) and val is "
                     "no worse")
    losses = [r["train_loss"] for r in rows if _finite(r.get("train_loss"))]
    if words is None and task == "unknown" and len(losses) >= 3 and losses[0] > 0:
        drop = 1 - losses[-1] / losses[0]
        if drop < t.underfit_loss_drop:
            words = (f"train loss barely moved: {losses[0]:.4g} → {losses[-1]:.4g} "
                     f"({100 * drop:.0f}% < {100 * t.underfit_loss_drop:g}%) with no gap to val")
    if words is None:
        return None
    if len(losses) >= 3:
        tail = losses[-max(2, len(losses) // 3):]
        still = tail[-1] < tail[0] * 0.95
        words += ("; train loss was still falling at the end: train longer or raise the "
                  "learning rate" if still else
                  "; the curves are flat: use a bigger model or weaker regularization")
    return words


def diagnose_rows(rows: list[dict[str, Any]], task: str = "classification",
                  thresholds: Optional[dict] = None, status: str = "completed",
                  chosen_epoch: Optional[float] = None) -> dict[str, Any]:
    """Verdict and evidence for one run's epochs (rows as in metrics.csv).

    Returns ``{"verdict", "grade", "started_epoch", "evidence": [str], "rules": [str],
    "numbers"}``; ``task`` may be ``unknown`` (a CSV with losses only). ``chosen_epoch``: the
    epoch whose weights the run kept (early stopping restores its best epoch); the epochs after
    it are not the final model's and are not held against it.

    Overfitting is graded: ``strong`` when val loss rose while train loss fell (training longer
    made the model worse on held-out data, the telling sign), ``mild`` when only a train−val gap
    is above its threshold (val did not get worse: a generalisation gap that a regularizer may
    or may not close). ``grade`` is None for every other verdict.
    """
    t = thresholds if isinstance(thresholds, DiagnosisConfig) else \
        DiagnosisConfig.model_validate(thresholds or {})
    rows = normalise_rows(rows)
    diverged = _divergence(rows, status)
    if diverged:
        return {"grade": None, **diverged}
    restored = []
    if chosen_epoch is not None and rows and rows[-1]["epoch"] > chosen_epoch:
        kept = [r for r in rows if r["epoch"] <= chosen_epoch]
        if kept:
            restored = [f"the run kept the weights of epoch {_epoch(chosen_epoch)} (restored "
                        f"best epoch); epochs {_epoch(kept[-1]['epoch'] + 1)}–"
                        f"{_epoch(rows[-1]['epoch'])} are not the final model's and are not "
                        "judged"]
            rows = kept
    if not rows:
        return {"verdict": "unknown", "grade": None, "started_epoch": None, "rules": [],
                "numbers": {}, "evidence": ["no epochs were recorded, so there is nothing to judge"]}
    numbers: dict[str, Any] = {}
    found = rule_gap(rows, task, t, numbers)
    rising = rule_rising_val_loss(rows, t, numbers, task)
    if rising:
        found.insert(0, rising)  # its start (the val-loss minimum) is the most telling
    f1 = rule_f1_drop(rows, t)
    if f1:
        found.append(f1)
    gap_words = numbers.pop("_gap_words", None)
    if found:
        grade = "strong" if rising else "mild"
        evidence = [f[2] for f in found]
        if not rising:
            evidence.append("val loss did not rise clearly above its minimum (more than "
                            f"{100 * t.rise_tolerance:g}% and beyond its noise, for "
                            f"{t.rise_window}+ epochs), so this is mild overfitting: a "
                            "train−val gap, not (yet) a model that more epochs make worse on val")
        return {"verdict": "overfitting", "grade": grade, "started_epoch": _epoch(found[0][1]),
                "rules": [f[0] for f in found], "evidence": evidence + restored,
                "numbers": numbers}
    under = rule_underfitting(rows, task, t)
    if under:
        return {"verdict": "underfitting", "grade": None, "started_epoch": None,
                "rules": ["underfitting"], "evidence": [under] + restored, "numbers": numbers}
    evidence = [gap_words] if gap_words else []
    if "val_loss_min_epoch" in numbers:
        evidence.append(_rise_words(numbers, t))
    return {"verdict": "ok", "grade": None, "started_epoch": None, "rules": [],
            "numbers": numbers,
            "evidence": (evidence or ["no large gap and no rising validation loss"]) + restored}


def _rise_words(numbers: dict[str, Any], t: DiagnosisConfig) -> str:
    """Why val loss's rise after its minimum did not count (an ``ok`` run's evidence)."""
    rise, amount, low = numbers["val_loss_rise"], numbers["val_loss_rise_amount"], \
        numbers["val_loss_min"]
    if rise <= 0.005:
        return f"val loss is still at its lowest at the end ({low:.4g})"
    shown, limit, why = _needed(numbers)
    where = (f"val loss ends {100 * rise:.0f}% (+{shown}) above its minimum {low:.4g} "
             f"(epoch {numbers['val_loss_min_epoch']})")
    if rise <= t.rise_tolerance:
        return f"{where}, within the {100 * t.rise_tolerance:g}% that would count as rising"
    if amount <= numbers["val_loss_rise_needed"]:
        return f"{where}: too small to count as rising, which needs more than {limit} ({why})"
    return f"{where}, but train loss did not keep falling or the rise lasted under " \
           f"{t.rise_window} epochs"


def label(verdict: dict[str, Any]) -> str:
    """The verdict as shown to people: ``overfitting``, ``mild overfitting``, ``ok``, ..."""
    name = verdict.get("verdict") or "unknown"
    return f"mild {name}" if name == "overfitting" and verdict.get("grade") == "mild" else name


def tally(labels: list[str]) -> str:
    """Verdict labels of one recipe's seeds: ``overfitting`` when all agree, else each with its
    count, most common first (``ok 4, overfitting 1``)."""
    counts: dict[str, int] = {}
    for name in labels:
        counts[name] = counts.get(name, 0) + 1
    if len(counts) <= 1:
        return next(iter(counts), "")
    order = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{name} {n}" for name, n in order)

"""The tuning part of a `regbench tune` folder's report, read from its ``tuning.json``: the
budget each recipe was given and what it chose, and one sensitivity plot per recipe (the
validation metric of every trial against each searched value, the chosen trial starred): the
picture that says whether a regularizer is robust to its strength or needs careful tuning.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

from regbench.vocabulary import TUNING_FILE, format_value

CHOSEN_COLOR, TRIAL_COLOR, FAILED_COLOR = "#d62728", "#1f77b4", "#7f7f7f"
# A choice decided by fewer validation examples than this is called a close call. Two trials a
# couple of examples apart differ by the flip of one or two borderline predictions, which a
# change of seed alone produces; even if every example the two disagree on favoured the winner,
# an exact sign (McNemar) test of 3 gives p = 0.25. A 5% test would need 6, but TPE's trials
# crowd round the best setting, so that would flag nearly every tune on a few hundred examples;
# 3 flags the choices that are noise whatever the test.
CLOSE_CALL_EXAMPLES = 3


def read_tuning(results_dir: Path) -> Optional[dict[str, Any]]:
    """tuning.json of a `regbench tune` folder, or None (any other folder, or unreadable)."""
    try:
        data = json.loads((Path(results_dir) / TUNING_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("recipes"), dict) else None


def budget_text(protocol: dict[str, Any], record: dict[str, Any]) -> str:
    """'6 trials, TPE, pruned 2' (and failed k), or with --trial-seeds '6 trials × 2 seeds =
    12 runs, TPE': the budget a recipe was given."""
    trials, seeds = len(record["trials"]), protocol.get("trial_seeds", 1)
    text = f"{trials} trials" if seeds == 1 else \
        f"{trials} trials × {seeds} seeds = {trials * seeds} runs"
    if record.get("budget", trials) < protocol["trials_per_recipe"]:
        text += " (its whole grid)"
    parts = [text, protocol["sampler_name"]]
    if protocol["pruner"] != "none":
        parts.append(f"pruned {record['pruned']}")
    if record["failed"]:
        parts.append(f"failed {record['failed']}")
    return ", ".join(parts)


def chosen_values(record: dict[str, Any]) -> str:
    """'lambda=0.0123, lr=0.05', or why there is no choice."""
    chosen = record["chosen"]
    if chosen is None:
        return "no trial completed"
    return ", ".join(f"{path.split('.')[-1]}={format_value(v)}"
                     for path, v in chosen["params"].items())


def close_call(record: dict[str, Any], short: bool = False) -> Optional[str]:
    """What to say when the chosen trial beat the runner-up by fewer than CLOSE_CALL_EXAMPLES
    validation examples (``record["margin"]``, for accuracy only), or None."""
    margin, chosen = record.get("margin"), record.get("chosen")
    if not margin or chosen is None:
        return None
    examples = round(margin["examples"], 6)    # 3/60 × 60 is 2.9999999999999996
    if examples >= CLOSE_CALL_EXAMPLES:
        return None
    n_val = margin["n_val"]
    mean = f", mean of {margin['trial_seeds']} seeds" if margin.get("trial_seeds", 1) > 1 else ""
    if short:
        return f"tied with the runner-up on {n_val} validation examples: within noise" \
            if examples == 0 else \
            f"won by {examples:.3g} of {n_val} validation examples over the runner-up: within noise"
    if examples == 0:
        decided = (f"tied with trial {margin['runner_up']} on validation accuracy over {n_val} "
                   f"examples ({chosen['value']:.4f}{mean}; the lower val loss chose)")
    else:
        decided = (f"beat trial {margin['runner_up']} by {examples:.3g} of {n_val} validation "
                   f"examples (validation accuracy {chosen['value']:.4f} vs "
                   f"{margin['runner_up_value']:.4f}{mean})")
    return (f"the chosen trial {chosen['number']} {decided}: fewer than {CLOSE_CALL_EXAMPLES} "
            "examples apart is within noise, so either could be the better setting; more "
            "validation data (dataset.val_fraction) or --trial-seeds would settle it")


def chosen_value(record: dict[str, Any]) -> str:
    """The chosen trial's validation value, 4 decimals ('' without a choice)."""
    return "" if record["chosen"] is None else f"{record['chosen']['value']:.4f}"


def _shown(trial: dict[str, Any]) -> Optional[float]:
    """A trial's height in the plot: its value, or for a pruned one its last reported value."""
    value = trial["value"] if trial["state"] == "complete" else trial.get("last_value")
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def sensitivity_figure(recipe: str, record: dict[str, Any], protocol: dict[str, Any]):
    """One panel per searched key: every trial a point (hollow: pruned, at its last reported
    epoch; ×: failed or diverged, at the worst end), the chosen trial a red star."""
    from matplotlib.figure import Figure

    space = record["space"]
    figure = Figure(figsize=(4.2 * len(space) + 0.6, 3.4), dpi=90, layout="constrained")
    axes = figure.subplots(1, len(space), squeeze=False)[0]
    trials = record["trials"]
    heights = [h for h in map(_shown, trials) if h is not None]
    # failed trials sit at the worst end for the study's direction
    worst = max if protocol.get("direction") == "minimize" else min
    floor = worst(heights) if heights else 0.0
    chosen = (record["chosen"] or {}).get("number")
    for ax, key in zip(axes, space):
        choices = key.get("choices")

        def x_of(value):
            return choices.index(value) if choices and value in choices else value

        for state, marker, face, label in (("complete", "o", TRIAL_COLOR, "trial"),
                                           ("pruned", "o", "none", "pruned (last epoch)")):
            points = [(x_of(t["params"][key["path"]]), _shown(t)) for t in trials
                      if t["state"] == state and key["path"] in t["params"]
                      and _shown(t) is not None]
            if points:
                ax.scatter(*zip(*points), marker=marker, facecolors=face,
                           edgecolors=TRIAL_COLOR, s=28, label=label, zorder=2)
        failed = [x_of(t["params"][key["path"]]) for t in trials
                  if t["state"] == "fail" and key["path"] in t["params"]]
        if failed:
            ax.scatter(failed, [floor] * len(failed), marker="x", color=FAILED_COLOR, s=30,
                       label="failed / diverged", zorder=2)
        best = next((t for t in trials if t["number"] == chosen), None)
        if best is not None and key["path"] in best["params"]:
            ax.scatter([x_of(best["params"][key["path"]])], [best["value"]], marker="*",
                       color=CHOSEN_COLOR, s=180, label="chosen", zorder=3)
        if choices:
            ax.set_xticks(range(len(choices)), [format_value(c) for c in choices])
        elif key.get("log"):
            ax.set_xscale("log")
        ax.set_xlabel(key["name"])
        ax.set_ylabel(f"val {protocol['metric']}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="best")
    figure.suptitle(f"{recipe}: {budget_text(protocol, record)}", fontsize=11)
    return figure


def tuning_html(tuning: dict[str, Any], escape, image) -> str:
    """The report's tuning section: the protocol in a sentence, each recipe's budget and
    choice, its sensitivity plot. ``escape`` and ``image`` are the page's helpers."""
    confirm = tuning.get("confirm_seeds") or []
    seeds = f"{confirm[0]}–{confirm[-1]}" if len(confirm) > 1 else ", ".join(map(str, confirm))
    rows = "".join(
        f"<tr><td>{escape(recipe)}</td><td class='text'>"
        f"{escape('; '.join(k['describe'] for k in record['space']))}</td>"
        f"<td class='text'>{escape(chosen_values(record))}</td>"
        f"<td>{chosen_value(record)}</td>"
        f"<td class='text'>{escape(budget_text(tuning, record))}</td></tr>"
        for recipe, record in tuning["recipes"].items())
    untuned = tuning.get("untuned") or []
    k = tuning.get("trial_seeds", 1)
    trained = f"each trained on seed {tuning['search_seed']}" if k == 1 else \
        (f"each the mean of {k} runs on seeds {tuning['search_seeds'][0]}–"
         f"{tuning['search_seeds'][-1]} ({tuning['trials_per_recipe'] * k} runs per recipe)")
    close = [f"<p><b>Close call, {escape(recipe)}</b>: {escape(text)}.</p>"
             for recipe, record in tuning["recipes"].items()
             if (text := close_call(record)) is not None]
    out = ["<section id='tuning'><h2>Tuning</h2>",
           f"<p>Every recipe with searched keys got the same budget: "
           f"{tuning['trials_per_recipe']} trials drawn by {escape(tuning['sampler_name'])} "
           f"(Optuna), pruner {escape(tuning['pruner'])}, {trained} "
           f"and chosen on validation {escape(tuning['metric'])}; no "
           f"trial was evaluated on the test split. Each recipe's chosen trial and the baseline "
           f"were then retrained on fresh seeds {escape(seeds)}: the comparison above is made "
           f"of those runs only."
           + (f" Not searched, trained as written: {escape(', '.join(untuned))}." if untuned
              else "") + "</p>",
           "<table><tr><th>recipe</th><th>searched</th><th>chosen</th>"
           f"<th>val {escape(tuning['metric'])}</th><th>budget</th></tr>{rows}</table>",
           *close]
    for recipe, path in tuning.get("_plots", {}).items():
        out.append(f'<figure><img alt="sensitivity: {escape(recipe)}" src="{image(path)}">'
                   f"<figcaption><b>sensitivity: {escape(recipe)}</b> — every trial's "
                   f"validation {escape(tuning['metric'])} against each searched value; "
                   "hollow: pruned (at its last epoch), ×: failed or diverged, ★: chosen. A "
                   "flat cloud means the regularizer is robust to its setting; a sharp peak "
                   "means it needs tuning</figcaption></figure>")
    out.append("</section>")
    return "\n".join(out)

"""report.html: one self-contained page per experiment, rebuilt from its run folders.

Order, for a reader in a hurry: what was run, the comparison table, the verdicts with their
evidence and what to try, then every plot. Images are PNG data URIs and the CSS is inline, so
the file opens anywhere with no network and no JavaScript.
"""
from __future__ import annotations

import base64
import datetime as _dt
import html
import math
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from regbench.analysis.advice import (
    Diagnosis,
    advise,
    is_image_experiment,
    overfitting_epoch,
    overfitting_starts,
    relative_gaps,
)
from regbench.analysis.compare import display_rows, folder_comparison
from regbench.analysis.diagnose import label
from regbench.analysis.headline import level_text
from regbench.report.plot_data import gap_scale, gap_unit
from regbench.report.plots import make_plots
from regbench.report.tuning import read_tuning, tuning_html
from regbench.results import atomic_write_text, load_summaries, task_of
from regbench.vocabulary import EXPERIMENT_FILE, REPORT_FILE, lower_is_better

CSS = """
body{font:13.5px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
 color:#1d2330;background:#fff;margin:0 auto;max-width:1320px;padding:20px 24px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:20px;margin:32px 0 8px;border-bottom:2px solid #e3e7ee;
 padding-bottom:4px}h3{font-size:15px;margin:18px 0 6px}
.meta{color:#4a5468;margin:0 0 4px}.meta b{color:#1d2330}
table{border-collapse:collapse;margin:8px 0;font-variant-numeric:tabular-nums;font-size:13px}
th,td{border:1px solid #d7dce5;padding:3px 5px;text-align:right}
th{background:#f1f4f9;text-align:center;font-size:12.5px}td.text{text-align:left;font-size:13px}
.scroll{overflow-x:auto;max-width:100%}td:first-child,th:first-child{text-align:left}
tr:nth-child(even) td{background:#fafbfd}.range{color:#4a5468}
.verdict{font-weight:600;border-radius:4px;padding:1px 6px;color:#fff;display:inline-block;
 white-space:nowrap}
.key{color:#4a5468;margin:8px 0 0 0}.key ul{margin:2px 0 0 0;padding-left:20px}
.key b{color:#1d2330}
.v-ok{background:#2e8b3e}.v-overfitting{background:#c62828}.v-underfitting{background:#d9822b}
.v-diverged,.v-failed,.v-interrupted{background:#7b4bb0}.v-unknown{background:#777}
.v-better{background:#1b6fb5}.v-worse{background:#a33a1c}.v-inconclusive{background:#8a8f98}
ul.notes{color:#4a5468;margin:4px 0 0 0;padding-left:20px}
.advice{background:#f4f8ff;border-left:4px solid #3b6fd8;padding:8px 14px;margin:12px 0}
.advice li{margin:2px 0}details{margin:4px 0}summary{cursor:pointer}
.evidence{margin:2px 0 8px 0;padding-left:22px;color:#333}
figure{margin:12px 0 20px}figure img{max-width:100%;border:1px solid #e3e7ee}
figcaption{color:#4a5468;font-size:13px}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _badge(verdict: str, text: str = "") -> str:
    """A coloured verdict; ``text`` is what it says when that is not the verdict's name (mild
    overfitting has overfitting's class)."""
    return (f'<span class="verdict v-{_e(verdict or "unknown")}">'
            f'{_e(text or verdict or "—")}</span>')


def _graded(verdict: dict[str, Any]) -> str:
    return _badge(verdict["verdict"], label(verdict))


def _experiment(results_dir: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load((results_dir / EXPERIMENT_FILE).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, yaml.YAMLError):
        return {}


def _params(mapping: dict[str, Any], skip=("name",)) -> str:
    return ", ".join(f"{k}={v}" for k, v in mapping.items() if k not in skip and v is not None)


def _swept(params: dict[str, Any], sweep: dict[str, list], prefix: str) -> dict[str, Any]:
    """``params`` with each swept value shown as the set it sweeps over, not the file's value
    the sweep replaces."""
    shown = dict(params)
    for path, values in sweep.items():
        key = path.removeprefix(prefix)
        if path.startswith(prefix) and "." not in key:
            shown[key] = "{" + ", ".join(str(v) for v in values) + "}"
    return shown


def summary_html(experiment: dict[str, Any], summaries: list[dict[str, Any]]) -> str:
    """The experiment in a few lines: data, model, training, recipes, sweep, runs."""
    dataset, model = experiment.get("dataset") or {}, experiment.get("model") or {}
    train = experiment.get("train") or {}
    optimizer = train.get("optimizer") or {}
    statuses = Counter(s.get("status", "?") for s in summaries)
    first = next((s for s in summaries if s.get("status") == "completed"), summaries[0])
    lines = [
        f"<b>dataset</b> {_e(dataset.get('name', '?'))} "
        f"(val fraction {_e(dataset.get('val_fraction', '?'))}"
        + (f", train subset {_e(dataset['train_subset'])}" if dataset.get("train_subset") else "")
        + f") · <b>task</b> {_e(first.get('task', '?'))}"
        + (f" · <b>n train</b> {_e(first['n_train'])}" if first.get("n_train") else ""),
        f"<b>model</b> {_e(model.get('name', '?'))}({_e(_params(model))}) · "
        f"<b>parameters</b> {_e(first.get('parameter_count', '?'))}",
        f"<b>training</b> {_e(train.get('epochs', '?'))} epochs, batch {_e(train.get('batch_size', '?'))}, "
        f"{_e(optimizer.get('name', '?'))} lr {_e(optimizer.get('lr', '?'))}"
        + (f", momentum {_e(optimizer['momentum'])}" if optimizer.get("momentum") else "")
        + (f", scheduler {_e(train['scheduler'])}" if train.get("scheduler") else ""),
        f"<b>seeds</b> {_e(', '.join(str(s) for s in experiment.get('seeds', [])) or '?')} · "
        f"<b>runs</b> {len(summaries)} ("
        + ", ".join(f"{n} {_e(k)}" for k, n in sorted(statuses.items())) + ")",
    ]
    recipes = experiment.get("recipes") or {}
    sweep = experiment.get("sweep") or {}
    if recipes:
        parts = []
        for name, recipe in recipes.items():
            regs = (recipe or {}).get("regularizers") or {}
            parts.append(f"<b>{_e(name)}</b>: " + (", ".join(
                f"{_e(r)}({_e(_params(_swept(p or {}, sweep, f'recipes.{name}.{r}.'), ()))})"
                for r, p in regs.items()) or "none"))
        lines.append("<b>recipes</b> " + " · ".join(parts))
    if sweep:
        lines.append("<b>sweep</b> " + " · ".join(
            f"{_e(k)} ∈ {{{_e(', '.join(str(v) for v in values))}}}" for k, values in sweep.items()))
    return "\n".join(f'<p class="meta">{line}</p>' for line in lines)


def _cell_badges(cell: str) -> str:
    """A verdict or diagnosis cell ("better", "ok 4, mild overfitting 1") as badges; a graded
    name takes its verdict's colour."""
    badges = []
    for part in cell.split(", "):
        name = part.rsplit(" ", 1)[0] if part.rsplit(" ", 1)[-1].isdigit() else part
        badges.append(_badge(name.split()[-1], part))
    return " ".join(badges)


# notes the page moves into its key (symbols_html): each symbol is defined once, at the top
SYMBOL_NOTES = ("★ ", "† ")


def _gap_cell(value: float, metric: str) -> str:
    return "—" if value is None or math.isnan(value) else f"{gap_scale(metric) * value:.1f}"


def _unbroken(cell: str) -> str:
    """A number cell that wraps, if it must, only before its spread or interval:
    "0.7757 ± 0.0164" and "+0.1298 [+0.1081, +0.1515]" break into two lines, never inside one."""
    cell = cell.replace("± ", "±\u00a0")
    return re.sub(r"\[[^\]]*\]", lambda m: m.group(0).replace(" ", "\u00a0"), cell)


def page_table(comparison) -> tuple[list[str], list[list[str]]]:
    """compare.display_rows as the page shows it: the direction of a lower-is-better metric in
    its headers, and a rate's gap in points, the unit of the diagnosis and the advice."""
    header, cells = display_rows(comparison)
    metric = comparison.metric
    if lower_is_better(metric):
        for i, name in enumerate(header):
            if name in (f"val {metric}", f"test {metric}"):
                header[i] = f"{name} (lower is better)"
            elif name.startswith("Δ "):
                header[i] = f"{name} (negative: better)"
    if gap_scale(metric) != 1 and comparison.gap_label in header:
        gap = header.index(comparison.gap_label)
        header[gap] += gap_unit(metric)
        for row, cell in zip(comparison.rows, cells):
            cell[gap] = _gap_cell(row["gap"], metric)
    return header, cells


def table_html(comparison) -> str:
    """The comparison table (compare.display_rows) with verdicts and diagnoses as coloured
    badges, then its notes (less the symbols the key defines)."""
    header, cells = page_table(comparison)
    badged = {header.index(name) for name in ("verdict", "diagnosis") if name in header}
    out = ['<div class="scroll"><table id="comparison"><thead><tr>'
           + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr></thead>",
           "<tbody>"]
    for row in cells:
        tds = []
        for i, cell in enumerate(row):
            text = _cell_badges(str(cell)) if i in badged and cell else _e(_unbroken(str(cell)))
            tds.append(f"<td>{text}</td>")
        out.append("<tr>" + "".join(tds) + "</tr>")
    out.append("</tbody></table></div>")
    notes = [n for n in comparison.notes
             if n != comparison.scope and not n.startswith(SYMBOL_NOTES)]
    if notes:
        out.append('<ul class="notes">' + "".join(f"<li>{_e(n)}</li>" for n in notes)
                   + "</ul>")
    return "\n".join(out)


def symbols_html(comparison) -> str:
    """The one place the page defines its symbols (Δ and its interval, ±, the gap's unit, ★,
    †), each only when the page shows it."""
    metric = comparison.metric
    _, cells = page_table(comparison)
    entries = []
    if any(not math.isnan(row["diff"]) for row in comparison.rows):
        better = "negative: the recipe is better" if lower_is_better(metric) else \
            "positive: the recipe is better"
        # the scope note, "Δ [98.33% CI]: mean paired test difference with …", less its name
        scope = comparison.scope
        interval = scope.split(": ", 1)[1] if scope.startswith("Δ [") else ""
        entries.append(f"<b>Δ</b> = recipe − baseline on test {_e(metric)} ({better})"
                       + (f"; <b>[{_e(level_text(comparison.level))} CI]</b> its interval: "
                          f"{_e(interval)}" if interval else
                          ", over the seeds both completed (one seed: no interval)"))
    if any("±" in cell for row in cells for cell in row):
        entries.append("<b>±</b> in the table: mean ± the standard deviation over seeds "
                       "(sample std, n − 1), a spread, not an interval")
    if gap_scale(metric) != 1:
        entries.append(f"<b>points</b> (the gap's unit): percentage points of {_e(metric)}, "
                       f"0.05 {_e(metric)} = 5 points; the table's "
                       f"{_e(comparison.gap_label)} is train − val {_e(metric)} of the model "
                       "each run kept, mean over seeds")
    for note in comparison.notes:
        if note.startswith(SYMBOL_NOTES):
            symbol, text = note.split(" ", 1)
            entries.append(f"<b>{_e(symbol)}</b> {_e(text)}")
    if not entries:
        return ""
    return ('<div class="key" id="symbols"><b>Symbols</b><ul>'
            + "".join(f"<li>{entry}</li>" for entry in entries) + "</ul></div>")


def _verdict(summary: dict[str, Any]) -> dict[str, Any]:
    verdict = summary.get("verdict")
    if isinstance(verdict, dict):
        return verdict
    status = summary.get("status", "unknown")
    return {"verdict": verdict or status, "started_epoch": None,
            "evidence": [summary.get("error") or f"run {status}; no diagnosis stored"]}


def diagnosis_html(comparison, summaries: list[dict[str, Any]], results_dir: Path) -> str:
    """Verdicts per recipe/point (counts over seeds), each run's evidence, and the advice."""
    by_point: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for s in summaries:
        by_point[s.get("point_id") or s.get("recipe", "?")].append(s)
    order = [r["point"] for r in comparison.rows if r["point"] in by_point]
    rows, details, runs = [], [], []
    for point in order + [p for p in by_point if p not in order]:
        group = sorted(by_point[point], key=lambda s: str(s.get("seed")))
        verdicts = [_verdict(s) for s in group]
        counts = Counter(label(v) for v in verdicts)
        first = {label(v): v for v in reversed(verdicts)}
        badges = " ".join(f"{_graded(first[name])}&nbsp;×{n}" for name, n in counts.most_common())
        start = _overfitting_cell(verdicts)
        worst = next((v for rank in WORST_FIRST for v in verdicts if v["verdict"] == rank),
                     verdicts[0])
        evidence = "<br>".join(_e(line) for line in worst.get("evidence", [])[:2])
        rows.append(f"<tr><td>{_e(point.replace('__', ' '))}</td><td>{badges}</td>"
                    f"<td>{start}</td>"
                    f'<td class="text">{evidence}</td></tr>')
        for s, v in zip(group, verdicts):
            details.append(f"<div><b>{_e(s.get('run_id'))}</b> {_graded(v)}</div>"
                           '<ul class="evidence">' + "".join(
                               f"<li>{_e(line)}</li>" for line in v.get("evidence", [])) + "</ul>")
            runs.append({"run": s.get("run_id"), "point": point, "seed": s.get("seed"), **v})
    out = ['<div class="scroll"><table><thead><tr><th>recipe</th><th>verdicts over seeds</th>'
           "<th>overfitting from epoch: median over seeds (range)</th>"
           "<th>evidence (one run)</th></tr></thead><tbody>"
           + "".join(rows) + "</tbody></table></div>",
           f"<details><summary>evidence of every run ({len(runs)})</summary>"
           + "".join(details) + "</details>"]
    diagnosis = Diagnosis(results_dir, runs, task_of(summaries),
                          is_image_experiment(results_dir))
    advice = advise(diagnosis, summaries)
    relative = relative_gaps(diagnosis)
    if relative:
        out.append('<div class="advice"><b>Gap compared with the baseline\'s</b><ul>'
                   + "".join(f"<li>{_e(line)}</li>" for line in relative) + "</ul></div>")
    if advice:
        items, nested = [], []
        for line in advice:
            if line.startswith("  "):
                nested.append(f"<li>{_e(line.strip())}</li>")
            else:
                if nested:
                    items[-1] += "<ul>" + "".join(nested) + "</ul>"
                    nested = []
                items.append(_e(line))
        if nested:
            items[-1] += "<ul>" + "".join(nested) + "</ul>"
        out.append('<div class="advice"><b>What to try</b><ul>'
                   + "".join(f"<li>{i}</li>" for i in items) + "</ul></div>")
    return "\n".join(out)


def _overfitting_cell(verdicts: list[dict[str, Any]]) -> str:
    """The epoch overfitting started, the same number the advice quotes (advice.
    overfitting_epoch), with the range over the seeds it is the median of."""
    epochs = overfitting_starts(verdicts)
    if not epochs:
        return ""
    spread = (f' <span class="range">({epochs[0]}–{epochs[-1]})</span>'
              if epochs[0] != epochs[-1] else "")
    return f"{_e(overfitting_epoch(verdicts))}{spread}"


WORST_FIRST = ("diverged", "failed", "interrupted", "overfitting", "underfitting", "ok")


def _image(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


SECTIONS = (("forest", "Δ vs baseline"), ("curves", "Learning curves"), ("validation", "Validation curves"),
            ("gap", "Generalization gap"), ("weights", "Weights"), ("sparsity", "Sparsity"))


DELTA_SENTENCE = "Δ is the mean paired test difference"   # headline.headline's definition


def headline_html(comparison) -> str:
    """The answer in plain sentences, first on the page, then the key to its symbols (which
    holds the headline's own definition of Δ, so that it is given once)."""
    items = "".join(f"<li>{_e(sentence)}</li>" for sentence in comparison.headline
                    if not sentence.startswith(DELTA_SENTENCE))
    return (f'<section id="headline"><h2>The answer</h2><ul>{items}</ul>'
            f"{symbols_html(comparison)}</section>")


def plots_html(plots, heading: bool = True) -> str:
    out = []
    for kind, title in SECTIONS:
        chosen = [p for p in plots if p.kind == kind]
        if not chosen:
            continue
        if heading:
            out.append(f"<h2>{_e(title)}</h2>")
        for plot in chosen:
            out.append(f'<figure><img alt="{_e(plot.title)}" src="{_image(plot.path)}">'
                       f"<figcaption><b>{_e(plot.title)}</b> — {_e(plot.caption)}</figcaption>"
                       "</figure>")
    return "\n".join(out)


def tuning_section(results_dir: Path, plots) -> str:
    """A `regbench tune` folder's protocol, choices and sensitivity plots (else nothing)."""
    tuning = read_tuning(results_dir)
    if tuning is None:
        return ""
    tuning["_plots"] = {p.title.removeprefix("sensitivity: "): p.path for p in plots
                        if p.kind == "sensitivity"}
    return tuning_html(tuning, _e, _image)


def build_html(results_dir: Path) -> str:
    results_dir = Path(results_dir)
    summaries = load_summaries(results_dir)
    comparison = folder_comparison(results_dir, summaries)
    plots = make_plots(results_dir, comparison)
    experiment = _experiment(results_dir)
    name = experiment.get("name") or results_dir.name
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>regbench report: {_e(name)}</title><style>{CSS}</style></head><body>",
        f"<h1>regbench report: {_e(name)}</h1>",
        f'<p class="meta">generated {_e(stamp)} from {_e(results_dir)}</p>',
        headline_html(comparison),
        plots_html([p for p in plots if p.kind == "forest"], heading=False),
        summary_html(experiment, summaries),
        f"<h2>Comparison: {_e(comparison.metric)} ("
        f"{'lower' if lower_is_better(comparison.metric) else 'higher'} is better)</h2>",
        table_html(comparison),
        tuning_section(results_dir, plots),
        "<h2>Diagnosis</h2>",
        diagnosis_html(comparison, summaries, results_dir),
        plots_html([p for p in plots if p.kind not in ("forest", "sensitivity")]),
        "</body></html>",
    ]) + "\n"


def write_report(results_dir: str | Path) -> Path:
    """Write plots/*.png and report.html for a results folder; return the report's path."""
    results_dir = Path(results_dir)
    path = results_dir / REPORT_FILE
    atomic_write_text(path, build_html(results_dir))
    return path


def write_interrupted_page(results_dir: str | Path, finished: int, planned: int) -> Path:
    """After Ctrl-C: report.html says the experiment was interrupted, in place of a report of
    an earlier state (building the full report takes seconds the user did not want to wait)."""
    results_dir = Path(results_dir)
    path = results_dir / REPORT_FILE
    when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    name = _e(results_dir.name)
    body = (f"<h1>{name}: interrupted</h1><p>The experiment was interrupted at {when}: "
            f"{finished} of {planned} planned run(s) finished; their folders, "
            "<code>runs.csv</code> and <code>comparison.*</code> are up to date. A report "
            "written before this run described an earlier state and was replaced; the "
            "figures in <code>plots/</code> may be from that earlier state.</p>"
            f"<p>Resume with the same <code>regbench run</code> command, or build the report of "
            f"the finished runs with <code>regbench report {_e(str(results_dir))}</code>.</p>")
    atomic_write_text(path, f"<!doctype html><html><head><meta charset='utf-8'><title>{name}: "
                            f"interrupted</title><style>{CSS}</style></head><body>{body}"
                            "</body></html>\n")
    return path

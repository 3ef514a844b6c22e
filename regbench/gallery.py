"""The gallery: published regularization findings reproduced by ``configs/gallery/*.yaml``.

Each finding pairs one config with its claim, its source, the rule that decides whether the
claim reproduced, and an ``analyse`` function that reads the config's run folders and returns
the numbers and the verdict. ``docs/gallery.md`` is rebuilt from those folders alone, so every
number on the page comes from a run, never from a hand-typed value::

    regbench gallery --run                 # train every gallery config, rebuild the page
    regbench gallery --run --only ridge    # one config
    regbench gallery                       # rebuild the page from the existing results

Intervals are 95% percentile bootstraps over seeds (``regbench.stats``): of a recipe's mean, or
of the per-seed paired difference recipe − baseline. With 3 seeds they are rough (they cannot be
wider than the spread of the seeds), so a rule asks for the whole interval on the claimed side.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

if TYPE_CHECKING:
    from regbench.gallery_stats import Results


from regbench.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "configs" / "gallery"       # one <finding>.yaml per finding
PAGE = REPO / "docs" / "gallery.md"             # default page
TIMING = "gallery.json"                         # per results folder: wall time of the gallery run
REPRODUCED, PARTLY, NOT_REPRODUCED = "reproduced", "partly", "not reproduced"
INCONCLUSIVE = "inconclusive"                   # too few seeds for an interval
MIN_SEEDS = 3


@dataclass
class Outcome:
    """What an analysis found: the verdict, why (with numbers), a table and figures."""

    verdict: str
    reason: str
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figures: list[tuple[str, Path]] = field(default_factory=list)   # caption, png in results


@dataclass
class Finding:
    key: str                                    # config stem: configs/gallery/<key>.yaml
    title: str
    claim: str
    source: str                                 # paper, table or figure
    rule: str                                   # the check, in words, printed on the page
    analyse: Callable[[Any], Outcome]        # regbench.gallery_stats.Results -> Outcome
    metric: Optional[str] = None                # metric of the comparison table on the page


FINDINGS: dict[str, Finding] = {}


def finding(**fields):
    """Register ``analyse(results) -> Outcome`` as the check of one gallery finding."""
    def decorator(analyse):
        entry = Finding(analyse=analyse, **fields)
        if entry.key in FINDINGS:
            raise ValueError(f"gallery finding {entry.key!r} registered twice")
        FINDINGS[entry.key] = entry
        return analyse
    return decorator


def findings() -> dict[str, Finding]:
    """The registered findings, in page order."""
    import regbench.gallery_linear  # noqa: F401  (fills FINDINGS: ridge, l1_vs_l2)
    import regbench.gallery_networks  # noqa: F401  (dropout, label smoothing, batchnorm, noise)

    return FINDINGS


# ----------------------------------------------------------------------------- running

def gallery_configs(only: Optional[list[str]] = None) -> list[Path]:
    """The gallery configs to run, in page order; unknown names are a usage error."""
    from regbench.registry import did_you_mean

    keys = list(findings())
    for name in only or []:
        if name not in keys:
            raise ConfigError(f"no gallery finding '{name}'{did_you_mean(name, keys)}; "
                              f"expected one of: {', '.join(keys)}", source="--only")
    return [CONFIG_DIR / f"{key}.yaml" for key in keys if not only or key in only]


def experiment_name(config: Path) -> str:
    from regbench.config import load_config

    return load_config(config).config.name


def run_config(config: Path, out: Path, smoke: bool, progress=None):
    """Train one gallery config (resuming completed runs) and record its wall time."""
    from regbench.config import load_config
    from regbench.experiment import available_cores, run_experiment
    from regbench.results import atomic_write_text
    from regbench.sweeps import shrink_for_smoke

    loaded = load_config(config)
    if smoke:
        loaded = shrink_for_smoke(loaded)
    started = time.perf_counter()
    outcome = run_experiment(loaded, out=out, progress=progress, report=True)
    trained = len(outcome.plan.runs) - len(outcome.skipped)
    path = outcome.results_dir / TIMING
    if trained or not path.is_file():  # a fully resumed call keeps the timing of the real run
        record = {"config": config.name, "wall_seconds": round(time.perf_counter() - started, 1),
                  "runs_trained": trained, "runs_skipped": len(outcome.skipped), "smoke": smoke,
                  "finished": _dt.datetime.now().isoformat(timespec="seconds"),
                  "cpu_cores": available_cores(), "python": platform.python_version(),
                  # other jobs share the cores on a busy machine: say so next to the time
                  "load_average": round(os.getloadavg()[0], 1)}
        atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    return outcome


# ----------------------------------------------------------------------------- the page

def _cell(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def comparison_table(folder: Path, metric: Optional[str]) -> list[str]:
    """Markdown rows taken from ``comparison.csv`` (or rebuilt for another metric)."""
    import pandas as pd

    if metric is None:
        frame = pd.read_csv(folder / "comparison.csv")
    else:
        import io

        from regbench.compare import compare_results, to_csv

        frame = pd.read_csv(io.StringIO(to_csv(compare_results(folder, metric, write=False))))
    m = next(c[4:] for c in frame.columns if c.startswith("val_") and not c.endswith("_std")
             and c != "val_loss")
    lines = [f"| point | seeds | val {m} (mean ± std) | test {m} (mean ± std) | "
             f"Δ test {m} vs baseline [95% CI] | P(better) | train−val gap |",
             "|---|---|---|---|---|---|---|"]
    for row in frame.to_dict("records"):
        diff = "" if pd.isna(row["diff"]) else (
            f"{row['diff']:+.4f}" + ("" if pd.isna(row["diff_low"]) else
                                     f" [{row['diff_low']:+.4f}, {row['diff_high']:+.4f}]"))
        lines.append(f"| {row['point'].replace('__', ' ')} | {row['seeds']} | "
                     f"{_cell(row[f'val_{m}'])} ± {_cell(row[f'val_{m}_std'])} | "
                     f"{_cell(row[f'test_{m}'])} ± {_cell(row[f'test_{m}_std'])} | {diff} | "
                     f"{_cell(row['p_better'], 2)} | {_cell(row['gap'])} |")
    return lines


def _timing(folder: Path, results: Results) -> str:
    trained = sum(float(s.get("seconds") or 0) for s in results.summaries)
    path = folder / TIMING
    if path.is_file():
        record = json.loads(path.read_text())
        skipped = (f", {record['runs_skipped']} runs resumed from earlier"
                   if record.get("runs_skipped") else "")
        return (f"wall time {record['wall_seconds'] / 60:.1f} min on {record['cpu_cores']} CPU "
                f"cores (load average {record.get('load_average', '?')} at the end, "
                f"{record['finished']}{skipped}); training time summed over runs "
                f"{trained / 60:.1f} min")
    return f"wall time not recorded; training time summed over runs {trained / 60:.1f} min"


def _wall_minutes(folder: Path) -> str:
    path = folder / TIMING
    if not path.is_file():
        return "—"
    return f"{json.loads(path.read_text())['wall_seconds'] / 60:.1f} min"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def section(number: int, entry: Finding, folder: Path, assets: Path, page_dir: Path) -> tuple[list[str], str]:
    """The page section of one finding, and its verdict."""
    command = f"regbench gallery --run --only {entry.key}"
    lines = [f"## {number}. {entry.title}", "",
             f"**Claim.** {entry.claim}", "", f"**Source.** {entry.source}", "",
             f"**Command.** `{command}` (config `configs/gallery/{entry.key}.yaml`; the same as "
             f"`regbench run configs/gallery/{entry.key}.yaml`)", "",
             f"**Rule.** {entry.rule}", ""]
    from regbench.gallery_stats import Results

    results = Results(folder) if (folder / "comparison.csv").is_file() else None
    if results is None or not results.runs:
        return lines + [f"**Result: not run yet.** Run `{command}`.", ""], "not run yet"
    outcome = entry.analyse(results)
    lines += [f"**Result: {outcome.verdict}.** {outcome.reason}", ""]
    if outcome.rows:
        lines += [_row(outcome.header), "|" + "---|" * len(outcome.header)]
        lines += [_row(row) for row in outcome.rows]
        lines.append("")
    lines += [f"- {note}" for note in outcome.notes]
    for caption, png in outcome.figures:
        if png.is_file():
            assets.mkdir(parents=True, exist_ok=True)
            target = assets / f"{entry.key}__{png.name}"
            shutil.copyfile(png, target)
            lines += ["", f"![{caption}]({os.path.relpath(target, page_dir)})", f"*{caption}*"]
    which = ("its default metric" if entry.metric is None else
             f"rebuilt from the runs for {entry.metric}, as `regbench compare --metric "
             f"{entry.metric}` does")
    lines += ["", f"Comparison table (`{folder.name}/comparison.csv`, {which}; Δ is the paired "
              "bootstrap over seeds of recipe − baseline on test):", ""]
    lines += comparison_table(folder, entry.metric)
    lines += ["", f"Results folder `{folder.name}`: {len(results.summaries)} completed runs; "
              f"{_timing(folder, results)}.", ""]
    return lines, outcome.verdict


def build_page(out: Path, page: Path, header_note: str = "") -> tuple[str, dict[str, str]]:
    """The gallery page from the result folders under ``out``; also the verdict per finding."""
    entries = findings()
    assets = page.parent / page.stem
    lines = ["# Gallery: published regularization findings, reproduced by regbench", "",
             "<!-- generated by `regbench gallery` from the run folders; do not edit by hand -->",
             "", "Each section states a published claim, the regbench config that tests it, the "
             "numbers regbench produced here and a verdict decided by the rule written in the "
             "section. Intervals are 95% percentile bootstraps over seeds: of a mean, or of the "
             "per-seed paired difference recipe − baseline (same split and initialisation seed). "
             "With 3 seeds an interval cannot be wider than the spread of the seeds, so read it as "
             "a rough guide. Seeds vary the initialisation and the batch order; the data split is "
             "the same for every seed (regbench's design: `dataset.split_seed`), so the intervals "
             "do not cover split-to-split variation. Hyper-parameters are fixed in the configs "
             "for all seeds; none were tuned per seed.", "",
             "`regbench gallery --run` trains every config in `configs/gallery/` (results under "
             "`results/gallery/`, completed runs resumed) and rewrites this page; `--only NAME` "
             "trains one finding; `regbench gallery` alone rewrites the page from the existing "
             "results.", ""]
    if header_note:
        lines += [header_note, ""]
    verdicts = {}
    lines += ["| finding | result | wall time |", "|---|---|---|"]
    body: list[str] = []
    for number, entry in enumerate(entries.values(), 1):
        folder = out / experiment_name(CONFIG_DIR / f"{entry.key}.yaml")
        text, verdict = section(number, entry, folder, assets, page.parent)
        verdicts[entry.key] = verdict
        lines.append(f"| [{number}. {entry.title}](#{_anchor(number, entry.title)}) | {verdict} "
                     f"| {_wall_minutes(folder)} |")
        body += text
    return "\n".join(lines + [""] + body).rstrip() + "\n", verdicts


def _anchor(number: int, title: str) -> str:
    import re

    text = f"{number}. {title}".lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def write_page(out: Path, page: Path, header_note: str = "") -> dict[str, str]:
    from regbench.results import atomic_write_text

    text, verdicts = build_page(Path(out), Path(page), header_note)
    atomic_write_text(Path(page), text)
    return verdicts


@dataclass
class GalleryOutcome:
    page: Path
    verdicts: dict[str, str]
    exit_code: int


def run_gallery(out: Optional[Path] = None, only: Optional[list[str]] = None, run: bool = False,
                smoke: bool = False, page: Optional[Path] = None,
                progress_factory: Optional[Callable[[], Any]] = None) -> GalleryOutcome:
    """Train the chosen gallery configs (``run`` or ``smoke``), then rebuild the page.

    A smoke run (1 epoch, few samples, one seed) goes to ``results/gallery-smoke`` and writes its
    page there, so it can never overwrite the real results or ``docs/gallery.md``.
    """
    out = Path(out) if out else Path("results") / ("gallery-smoke" if smoke else "gallery")
    page = Path(page) if page else (out / "gallery.md" if smoke else PAGE)
    configs = gallery_configs(only)
    exit_code = 0
    if run or smoke:
        for config in configs:
            outcome = run_config(config, out, smoke, progress_factory() if progress_factory
                                 else None)
            exit_code = max(exit_code, outcome.exit_code)
            if outcome.interrupted:
                break
    note = (f"*Smoke run: 1 epoch, at most a few hundred samples, one seed: the numbers below "
            f"test the machinery, not the claims.*" if smoke else "")
    verdicts = write_page(out, page, note)
    return GalleryOutcome(page=page, verdicts=verdicts, exit_code=exit_code)

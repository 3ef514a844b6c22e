"""Running the gallery and writing its page: ``regbench gallery``.

Each finding (``regbench.gallery.core``) pairs one config shipped in ``gallery/configs/`` with its
claim, its source, the rule that decides whether the claim reproduced, and an ``analyse``
function that reads the config's run folders and returns the numbers and the verdict. The page
is rebuilt from those folders alone, so every number on it comes from a run, never from a
hand-typed value::

    regbench gallery --run                 # train every config into results/gallery, write
                                           # results/gallery/gallery.md
    regbench gallery --run --only ridge    # one finding
    regbench gallery                       # rewrite the page from the existing results
    regbench gallery --page docs/gallery.md   # maintainers: refresh the repository's page

A page is only written from results: a finding it would show with no runs behind it is an
error, never a "not run yet" section over a page that had numbers.

Intervals are 95% Student-t intervals over seeds (``regbench.analysis.stats``): of a recipe's
mean, or of the per-seed paired difference recipe − baseline; a rule asks for the whole interval
on the claimed side. When a finding's verdict differs from the one on the page being replaced,
the page says so.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from regbench.analysis.compare import compare_results, difference_cell
from regbench.analysis.headline import level_text
from regbench.engine.threads import available_cores
from regbench.errors import ConfigError, RegbenchError
from regbench.experiment.config import load_config
from regbench.experiment.launch import Launch
from regbench.experiment.runner import Display, ProgressOnly, run_experiment
from regbench.experiment.sweeps import shrink_for_smoke
from regbench.gallery import fidelity, linear, modern, networks
from regbench.gallery.core import FINDINGS, Finding
from regbench.gallery.stats import Results
from regbench.registry import did_you_mean
from regbench.results import atomic_write_bytes, atomic_write_text
from regbench.vocabulary import COMPARISON

CONFIG_DIR = Path(__file__).resolve().parent / "configs"   # package data: <finding>.yaml
DEFAULT_OUT = Path("results") / "gallery"
SMOKE_OUT = Path("results") / "gallery-smoke"   # a smoke run never mixes with real results
PAGE_NAME = "gallery.md"                        # written under --out unless --page says where
TIMING = "gallery.json"                         # per results folder: wall time of the gallery run


# The page's order: these modules' findings in turn, each module's in the order it defines them
# (never import order, which a linter may sort).
PAGE_ORDER = (linear, networks, fidelity, modern)


def findings() -> dict[str, Finding]:
    """The registered findings, in page order."""
    rank = {module.__name__: number for number, module in enumerate(PAGE_ORDER)}
    ordered = sorted(FINDINGS.values(),
                     key=lambda entry: rank.get(entry.analyse.__module__, len(PAGE_ORDER)))
    return {entry.key: entry for entry in ordered}


# ----------------------------------------------------------------------------- running

def gallery_configs(only: Optional[list[str]] = None) -> list[Path]:
    """The gallery configs to run, in page order; unknown names are a usage error."""
    keys = list(findings())
    for name in only or []:
        if name not in keys:
            raise ConfigError(f"no gallery finding '{name}'{did_you_mean(name, keys)}; "
                              f"expected one of: {', '.join(keys)}", source="--only")
    return [CONFIG_DIR / f"{key}.yaml" for key in keys if not only or key in only]


def experiment_name(config: Path) -> str:
    return load_config(config).config.name


def run_config(config: Path, out: Path, smoke: bool, display: Optional[Display] = None):
    """Train one gallery config (resuming completed runs) and record its wall time."""
    loaded = load_config(config)
    if smoke:
        loaded = shrink_for_smoke(loaded)
    started = time.perf_counter()
    outcome = run_experiment(loaded, Launch(out=out, report=True), display=display)
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


def _verdict_cell(value: Any) -> str:
    return value if isinstance(value, str) else ""


def comparison_table(folder: Path, metric: Optional[str]) -> list[str]:
    """The comparison of one finding's runs as markdown rows, with the line saying what its
    intervals cover and how its verdicts are corrected."""
    comparison = compare_results(folder, metric, write=False)
    m = comparison.metric
    lines = [f"| point | seeds | val {m} (mean ± std) | test {m} (mean ± std) | "
             f"Δ test {m} vs baseline [{level_text(comparison.level)} CI] | verdict | "
             "train−val gap |",
             "|---|---|---|---|---|---|---|"]
    for row in comparison.rows:
        diff = difference_cell(row["diff"], row["diff_low"], row["diff_high"])
        lines.append(f"| {row['point'].replace('__', ' ')} | {row['seeds']} | "
                     f"{_cell(row[f'val_{m}'])} ± {_cell(row[f'val_{m}_std'])} | "
                     f"{_cell(row[f'test_{m}'])} ± {_cell(row[f'test_{m}_std'])} | {diff} | "
                     f"{row['verdict']} | {_cell(row['gap'])} |")
    lines.append("")
    lines += [f"- {note}" for note in comparison.notes
              if note == comparison.scope or note.startswith("verdict:")]
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


def results_of(folder: Path) -> Optional[Results]:
    """A finding's completed runs under ``folder``, or None when it has none."""
    results = Results(folder) if (folder / COMPARISON["csv"]).is_file() else None
    return results if results is not None and results.runs else None


SUMMARY_ROW = re.compile(r"^\| \[\d+\. (?P<title>.+?)\]\(#[^)]*\) \| (?P<verdict>[^|(]+?)"
                         r"(?: \(was [^)]*\))? \| (?P<wall>[^|]*) \|$")
SECTION_HEAD = re.compile(r"^## \d+\. (?P<title>.+)$")


@dataclass
class Previous:
    """A finding as the page about to be replaced shows it."""

    verdict: str
    wall: str                                   # the summary table's wall-time cell
    section: list[str]                          # its section, from its heading to the next one


def previous_findings(page: Path) -> dict[str, Previous]:
    """Finding title -> how the page about to be replaced shows it (none when there is none)."""
    try:
        lines = Path(page).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return {}
    sections: dict[str, list[str]] = {}
    current: Optional[list[str]] = None
    for line in lines:
        head = SECTION_HEAD.match(line)
        if head:
            current = sections.setdefault(head["title"], [])
        if current is not None:
            current.append(line)
    return {m["title"]: Previous(m["verdict"].strip(), m["wall"].strip(),
                                 sections.get(m["title"], []))
            for m in map(SUMMARY_ROW.match, lines) if m}


def _carried(number: int, previous: Previous) -> list[str]:
    """A section of the page being replaced, renumbered, kept as it was."""
    title = SECTION_HEAD.match(previous.section[0])["title"]
    return [f"## {number}. {title}", *previous.section[1:]]


def section(number: int, entry: Finding, folder: Path, results: Results, *,
            where: tuple[Path, Path], previous: Optional[str] = None) -> tuple[list[str], str]:
    """The page section of one finding, and its verdict; ``where`` is (the folder of its
    pictures, the page's folder) and ``previous`` the verdict on the page being replaced,
    stated when it changed."""
    assets, page_dir = where
    command = f"regbench gallery --run --only {entry.key}"
    config = f"regbench/gallery/configs/{entry.key}.yaml"
    lines = [f"## {number}. {entry.title}", "",
             f"**Claim.** {entry.claim}", "", f"**Source.** {entry.source}", "",
             f"**Command.** `{command}` (config `{config}`, shipped with the package; the same "
             f"as `regbench run {config}` from a clone)", "",
             f"**Rule.** {entry.rule}", ""]
    outcome = entry.analyse(results)
    lines += [f"**Result: {outcome.verdict}.** {outcome.reason}", ""]
    if previous is not None and previous != outcome.verdict:
        lines += [f"**Changed.** The page this one replaced said *{previous}*; with these runs and "
                  f"this rule the verdict is *{outcome.verdict}*.", ""]
    if outcome.rows:
        lines += [_row(outcome.header), "|" + "---|" * len(outcome.header)]
        lines += [_row(row) for row in outcome.rows]
        lines.append("")
    lines += [f"- {note}" for note in outcome.notes]
    for caption, png in outcome.figures:
        if png.is_file():
            target = assets / f"{entry.key}__{png.name}"
            atomic_write_bytes(target, png.read_bytes())   # a full disk: one line, no half png
            lines += ["", f"![{caption}]({os.path.relpath(target, page_dir)})", f"*{caption}*"]
    which = ("its default metric" if entry.metric is None else
             f"rebuilt from the runs for {entry.metric}, as `regbench compare --metric "
             f"{entry.metric}` does")
    lines += ["", f"Comparison table (`{folder.name}/`, {which}; Δ is recipe − baseline on test, "
              "paired by seed):", ""]
    lines += comparison_table(folder, entry.metric)
    lines += ["", f"Results folder `{folder.name}`: {len(results.summaries)} completed runs; "
              f"{_timing(folder, results)}.", ""]
    return lines, outcome.verdict


def build_page(out: Path, page: Path, header_note: str = "") -> tuple[str, dict[str, str]]:
    """The gallery page from the result folders under ``out``; also the verdict per finding.

    A finding with no completed runs under ``out`` keeps its section from the page being
    replaced, when that page has one (said at the top: its runs were trained elsewhere, e.g.
    when one finding is retrained into a fresh folder), and is otherwise listed as having no
    results in the summary table; a page with none at all is refused (RegbenchError) so that
    no page of numbers is ever replaced by an empty one.
    """
    entries = findings()
    folders = {key: out / experiment_name(CONFIG_DIR / f"{key}.yaml") for key in entries}
    found = {key: results_of(folder) for key, folder in folders.items()}
    if not any(found.values()):
        raise RegbenchError(f"{out}: no gallery results here (no completed runs of any finding); "
                            "nothing was written. Train them with `regbench gallery --run` "
                            "(or --smoke), or name the results root with --out")
    assets = page.parent / page.stem
    lines = ["# Gallery: published regularization findings, reproduced by regbench", "",
             "<!-- generated by `regbench gallery` from the run folders; do not edit by hand -->",
             "", "Each section states a published claim, the regbench config that tests it, the "
             "numbers regbench produced here and a verdict decided by the rule written in the "
             "section. Intervals are Student-t intervals over seeds: 95% of a mean, or of the "
             "per-seed paired difference recipe − baseline (same seed). Each comparison table "
             "says what its seeds vary (the initialisation and batch order; with "
             "`dataset.resample: per_seed` also the train/val split) and gives a verdict per row, "
             "better / worse / inconclusive, read off its interval (each at 1 − 5%/m, "
             "Bonferroni over the table's m rows, so that all hold together with 95%). "
             "Hyper-parameters are fixed in the configs for all seeds; none were "
             "tuned per seed.", "",
             "`regbench gallery --run` trains every config shipped in `regbench/gallery/configs/` "
             "(results under `results/gallery/`, completed runs resumed) and writes this page "
             "as `results/gallery/gallery.md`; `--only NAME` trains one finding; `regbench "
             "gallery` alone rewrites the page from the existing results; `--page "
             "docs/gallery.md` refreshes the repository's copy.", ""]
    if header_note:
        lines += [header_note, ""]
    previous = previous_findings(page)
    verdicts, carried = {}, []
    table = ["| finding | result | wall time |", "|---|---|---|"]
    body: list[str] = []
    for number, entry in enumerate(entries.values(), 1):
        folder, results = folders[entry.key], found[entry.key]
        was = previous.get(entry.title)
        link = f"[{number}. {entry.title}](#{_anchor(number, entry.title)})"
        if results is None and was is not None and was.section:
            # trained elsewhere: its section stays as the page it replaces shows it
            verdicts[entry.key] = was.verdict
            carried.append(number)
            table.append(f"| {link} | {was.verdict} | {was.wall} |")
            body += _carried(number, was)
            continue
        if results is None:
            verdicts[entry.key] = "no results"
            table.append(f"| {number}. {entry.title} | no results in `{out}`: run `regbench "
                         f"gallery --run --only {entry.key}` | — |")
            continue
        text, verdict = section(number, entry, folder, results, where=(assets, page.parent),
                                previous=was.verdict if was else None)
        verdicts[entry.key] = verdict
        shown = verdict if was is None or was.verdict == verdict else \
            f"{verdict} (was {was.verdict})"
        table.append(f"| {link} | {shown} | {_wall_minutes(folder)} |")
        body += text
    if carried:
        lines += [f"*{_numbers(carried)} kept as the page this one replaced showed "
                  "them: their runs are not in this results folder (trained on another day, into "
                  "another folder).*", ""]
    return "\n".join(lines + table + [""] + body).rstrip() + "\n", verdicts


def _numbers(numbers: list[int]) -> str:
    """'Section 3' or 'Sections 1–4, 7' for ascending section numbers."""
    spans: list[list[int]] = []
    for number in numbers:
        if spans and number == spans[-1][1] + 1:
            spans[-1][1] = number
        else:
            spans.append([number, number])
    text = ", ".join(f"{a}–{b}" if b > a else str(a) for a, b in spans)
    return f"Section{'s' if len(numbers) > 1 else ''} {text} {'are' if len(numbers) > 1 else 'is'}"


def _anchor(number: int, title: str) -> str:
    text = f"{number}. {title}".lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def write_page(out: Path, page: Path, header_note: str = "") -> dict[str, str]:
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

    Results go under ``out`` (default ``results/gallery``; a smoke run, 1 epoch, few samples and
    one seed, defaults to ``results/gallery-smoke`` so it never mixes with real results) and the
    page to ``page`` (default ``out/gallery.md``). Nothing outside those is written.
    """
    out = Path(out) if out else (SMOKE_OUT if smoke else DEFAULT_OUT)
    page = Path(page) if page else out / PAGE_NAME
    configs = gallery_configs(only)
    exit_code = 0
    if run or smoke:
        for config in configs:
            display = ProgressOnly(progress_factory) if progress_factory else None
            outcome = run_config(config, out, smoke, display)
            exit_code = max(exit_code, outcome.exit_code)
            if outcome.interrupted:
                break
    note = ("*Smoke run: 1 epoch, at most a few hundred samples, one seed: the numbers below "
            "test the machinery, not the claims.*" if smoke else "")
    verdicts = write_page(out, page, note)
    return GalleryOutcome(page=page, verdicts=verdicts, exit_code=exit_code)

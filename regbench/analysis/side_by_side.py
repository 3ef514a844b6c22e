"""Several experiments side by side (`regbench compare A B …`), read-only.

Each results folder is compared with its own baseline exactly as `regbench compare A` does it
(its own interval level, verdicts and notes); the tables are then stacked, one row per
(experiment, recipe/point), on one metric. Nothing is pooled or compared across experiments:
their seeds, data and baselines differ, so a difference between their rows has no interval.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from regbench.analysis.compare import (
    FOLDED,
    LEFT_COLUMNS,
    TERMINAL_COLUMNS,
    Comparison,
    display_rows,
    folder_comparison,
    terminal_columns,
    to_csv,
)
from regbench.analysis.headline import level_text
from regbench.errors import RegbenchError
from regbench.registry import did_you_mean
from regbench.results import load_summaries, table_csv, task_of
from regbench.vocabulary import default_metric, lower_is_better, metric_names

NOT_ACROSS = ("each experiment against its own baseline; rows of different experiments are not "
              "compared")
DIFF_COLUMN = 4           # display_rows' Δ column: its header names one experiment's level


@dataclass
class Experiment:
    name: str                 # the first column: the folder's name (its path if names clash)
    folder: Path
    comparison: Comparison


def compare_many(folders: Sequence[Path], metric: Optional[str] = None,
                 min_effect: Optional[float] = None) -> list[Experiment]:
    """Each folder's comparison on the same metric (default: the first folder's task's);
    a folder whose task lacks that metric is refused by name before any table is built."""
    folders = [Path(f) for f in folders]
    seen: dict[Path, Path] = {}
    for folder in folders:
        if folder.resolve() in seen:
            raise RegbenchError(f"{folder}: the same results folder as {seen[folder.resolve()]}; "
                                "give each experiment once")
        seen[folder.resolve()] = folder
    loaded = [(folder, load_summaries(folder)) for folder in folders]
    chosen = metric or default_metric(task_of(loaded[0][1]))
    for folder, summaries in loaded:
        task = task_of(summaries)
        valid = metric_names(task)
        if chosen not in valid:
            given = (f"--metric '{chosen}'" if metric else
                     f"'{chosen}' (the metric of {folders[0]}; choose one with --metric)")
            raise RegbenchError(f"{folder}: {given} is not a {task} metric"
                                f"{did_you_mean(chosen, list(valid))}: experiments side by side "
                                f"share one metric; this one has: {', '.join(valid)}")
    names = [folder.name for folder in folders]
    return [Experiment(name=str(folder) if names.count(folder.name) > 1 else folder.name,
                       folder=folder,
                       comparison=folder_comparison(folder, summaries, chosen, min_effect))
            for folder, summaries in loaded]


def _level(row: dict[str, Any]) -> str:
    """The row's own interval level (its experiment's Bonferroni family), empty without one."""
    level = row.get("ci_level")
    return "" if level is None or math.isnan(level) else level_text(level)


def combined_rows(experiments: list[Experiment]) -> tuple[list[str], list[list[str]]]:
    """Header and cells: the experiment, then `compare A`'s cells of each row unchanged, with
    the row's interval level beside its Δ (experiments' levels differ)."""
    metric = experiments[0].comparison.metric
    header: list[str] = []
    cells = []
    for experiment in experiments:
        header, rows = display_rows(experiment.comparison)
        for row, cell in zip(experiment.comparison.rows, rows):
            cells.append([experiment.name, *cell[:DIFF_COLUMN + 1], _level(row),
                          *cell[DIFF_COLUMN + 1:]])
    header = list(header)
    header[DIFF_COLUMN] = ("Δ test vs baseline [CI]"
                           + (" (negative: better)" if lower_is_better(metric) else ""))
    return ["experiment", *header[:DIFF_COLUMN + 1], "CI level", *header[DIFF_COLUMN + 1:]], cells


def notes(experiments: list[Experiment]) -> list[tuple[str, list[str]]]:
    """Per experiment: its scope line (what its intervals cover), then its other notes."""
    out = []
    for experiment in experiments:
        comparison = experiment.comparison
        scope = comparison.scope or "no intervals: no recipe has seeds paired with a baseline"
        out.append((f"{experiment.name}: {scope}",
                    [note for note in comparison.notes if note != comparison.scope]))
    return out


def to_markdown(experiments: list[Experiment]) -> str:
    header, cells = combined_rows(experiments)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
    lines += ["", NOT_ACROSS, ""]
    for scope, rest in notes(experiments):
        lines.append(f"- {scope}")
        lines += [f"  - {note}" for note in rest]
    return "\n".join(lines) + "\n"


def to_combined_csv(experiments: list[Experiment]) -> str:
    """One CSV: each folder's comparison.csv rows (as `compare A --format csv` gives them) with
    an ``experiment`` column first; columns one experiment lacks (its sweep keys) stay empty."""
    rows = []
    for experiment in experiments:
        reader = csv.DictReader(io.StringIO(to_csv(experiment.comparison)))
        rows += [{"experiment": experiment.name, **row} for row in reader]
    return table_csv(rows)


def rich_table(experiments: list[Experiment], width: Optional[int] = None):
    """The terminal table: `compare A`'s columns fitted to ``width`` (see terminal_columns),
    after the experiment, with each Δ's interval level beside it."""
    from rich.table import Table

    header, cells = combined_rows(experiments)
    # terminal_columns chooses among `compare A`'s columns: hand it those, less the two added
    base_header = header[1:DIFF_COLUMN + 2] + header[DIFF_COLUMN + 3:]
    base_cells = [row[1:DIFF_COLUMN + 2] + row[DIFF_COLUMN + 3:] for row in cells]
    added = max(len(row[0]) for row in cells) + max(len(header[DIFF_COLUMN + 2]),
                                                   *(len(row[DIFF_COLUMN + 2]) for row in cells))
    shown = terminal_columns(base_header, base_cells,
                             None if width is None else max(width - added - 6, 40))
    table = Table(title=f"{experiments[0].comparison.metric}, "
                        f"{len(experiments)} experiments side by side", show_lines=False)
    table.add_column("experiment", justify="left", overflow="fold")
    columns: list[int] = []          # indices into the combined row
    for i in shown:
        table.add_column(base_header[i], justify="left" if i in LEFT_COLUMNS else "right",
                         no_wrap=i not in FOLDED, overflow="fold")
        columns.append(i + 1 if i <= DIFF_COLUMN else i + 2)
        if i == DIFF_COLUMN:
            table.add_column("CI level", justify="right", no_wrap=True)
            columns.append(DIFF_COLUMN + 2)
    for row in cells:
        table.add_row(row[0], *(row[i] for i in columns))
    if len(shown) < len(TERMINAL_COLUMNS):
        left_out = ", ".join(base_header[i] for i in TERMINAL_COLUMNS if i not in shown)
        table.caption = (f"left out to fit {width} columns: {left_out} (all are in "
                         "--format md)")
    return table

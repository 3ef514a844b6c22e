"""A suite's files: ``suite.csv``, ``suite.md``, ``suite.tex``, ``suite_tasks.csv``, the figures
and ``suite.html``, all from the suite table (``regbench.analysis.suite_table``), itself rebuilt
from the task folders alone.

``suite.html`` is one self-contained page (images as data URIs, inline CSS): the answer in
sentences and the table on the first screen, then the figures, then each task's headline with
a link to its own ``report.html``.
"""
from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any, Optional

from regbench.analysis.suite_table import (
    COLUMNS,
    SUITE_PAGE,
    SUITE_TABLE,
    TASKS_DIR,
    TASKS_TABLE,
    SuiteTable,
    interval_text,
)
from regbench.report.page import CSS
from regbench.report.suite_plots import make_suite_plots
from regbench.results import atomic_write_bytes, atomic_write_text, table_csv
from regbench.vocabulary import REPORT_FILE

HEADER = ["recipe", "tasks", "won / tied / lost", "IQM [95% CI]", "mean [95% CI]",
          "P(improve) [95% CI]", "p (Wilcoxon)", "p (Holm)", "verdict", "time × baseline",
          "avg rank"]


def _p(value: float) -> str:
    if value is None or math.isnan(value):
        return "—"
    return f"{value:.3f}" if value >= 0.001 else "<0.001"


def _chance(row: dict[str, Any]) -> str:
    value, low, high = row["p_improve"], row["p_improve_low"], row["p_improve_high"]
    if math.isnan(value):
        return "—"
    return f"{value:.2f}" + ("" if math.isnan(low) else f" [{low:.2f}, {high:.2f}]")


def _number(value: float, digits: int = 2) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def display_rows(table: SuiteTable) -> list[list[str]]:
    """The cells every text format shows, in ``HEADER``'s order."""
    return [[row["recipe"], str(row["tasks"]), f"{row['won']} / {row['tied']} / {row['lost']}",
             interval_text(row, "iqm"), interval_text(row, "mean"), _chance(row),
             _p(row["p_value"]), _p(row["p_holm"]), row["verdict"],
             _number(row["relative_time"]) + "×" if math.isfinite(row["relative_time"]) else "—",
             _number(row["avg_rank"])]
            for row in table.rows]


def to_csv(table: SuiteTable) -> str:
    return table_csv([{key: row[key] for key in COLUMNS} for row in table.rows], list(COLUMNS))


def to_markdown(table: SuiteTable) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |"
              for row in display_rows(table)]
    lines += [""] + [f"- {note}" for note in table.notes]
    return "\n".join(lines) + "\n"


def _latex(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"),
                          ("#", r"\#"), ("$", r"\$"), ("×", r"$\times$"), ("—", "--"),
                          ("<", r"$<$"), ("χ²", r"$\chi^2$"), ("√", r"$\surd$"),
                          ("α", r"$\alpha$"), ("−", "-"), ("τ", r"$\tau$")):
        text = text.replace(char, escaped)
    return text


def to_latex(table: SuiteTable) -> str:
    """A booktabs table in a ``table`` float (needs ``\\usepackage{booktabs}``)."""
    caption = _latex(f"{table.name}: each recipe against the baseline over "
                     f"{len(table.tasks)} tasks. IQM and mean: relative test-error reduction "
                     "(1 − accuracy or MSE), with 95% stratified bootstrap intervals over seeds; "
                     "verdict: Wilcoxon signed-rank over tasks, Holm over recipes.")
    lines = [r"% regbench suite table; needs \usepackage{booktabs}", r"\begin{table}[htbp]",
             r"\centering", r"\small", rf"\caption{{{caption}}}",
             rf"\label{{tab:regbench-suite-{_latex(table.name).replace(chr(92) + '_', '-')}}}",
             r"\begin{tabular}{l" + "r" * (len(HEADER) - 1) + "}", r"\toprule",
             " & ".join(_latex(h) for h in HEADER) + r" \\", r"\midrule"]
    lines += [" & ".join(_latex(c) for c in row) + r" \\" for row in display_rows(table)]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def tasks_csv(table: SuiteTable) -> str:
    return table_csv(table.task_rows)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _badge(verdict: str) -> str:
    return f'<span class="verdict v-{_e(verdict or "inconclusive")}">{_e(verdict or "—")}</span>'


def figures_html(plots) -> str:
    """Each figure under its title, the PNG embedded."""
    out = []
    for plot in plots:
        data = base64.b64encode(Path(plot.path).read_bytes()).decode("ascii")
        out.append(f"<h2>{_e(plot.title[0].upper() + plot.title[1:])}</h2>"
                   f'<figure><img alt="{_e(plot.title)}" src="data:image/png;base64,{data}">'
                   f"<figcaption>{_e(plot.caption)}</figcaption></figure>")
    return "\n".join(out)


def build_html(suite_dir: Path, table: SuiteTable, plots) -> str:
    """The page: the answer first, then the table with its notes, the figures, the tasks."""
    answer = "".join(f"<li>{_e(sentence)}</li>" for sentence in table.headline)
    head = "".join(f"<th>{_e(h)}</th>" for h in HEADER)
    body = "".join("<tr>" + "".join(
        f'<td class="text">{_badge(cell)}</td>' if index == 8 else
        f'<td class="text">{_e(cell)}</td>' if index == 0 else f"<td>{_e(cell)}</td>"
        for index, cell in enumerate(row)) + "</tr>" for row in display_rows(table))
    notes = "".join(f"<li>{_e(note)}</li>" for note in table.notes)
    tasks = []
    for task in table.tasks:
        report = Path(TASKS_DIR) / (task.folder or task.name) / REPORT_FILE
        link = (f' · <a href="{_e(report.as_posix())}">report</a>'
                if (Path(suite_dir) / report).is_file() else "")
        sentences = "".join(f"<li>{_e(s)}</li>" for s in task.headline)
        tasks.append(f"<h3>{_e(task.name)} <small>({_e(task.kind)}, error = "
                     f"{'1 − accuracy' if task.kind == 'classification' else 'MSE'}; folder "
                     f"{_e(TASKS_DIR)}/{_e(task.folder or task.name)}/{link})</small></h3>"
                     f"<ul>{sentences}</ul>")
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>regbench suite: {_e(table.name)}</title><style>{CSS}</style></head><body>",
        f"<h1>Suite {_e(table.name)}</h1>",
        f'<p class="meta">{len(table.tasks)} tasks · {len(table.recipes)} recipes against the '
        "baseline · improvement = relative test-error reduction (1 − accuracy or MSE)</p>",
        f'<div class="advice"><ul>{answer}</ul></div>',
        f'<div class="scroll"><table><tr>{head}</tr>{body}</table></div>',
        f'<ul class="notes">{notes}</ul>',
        figures_html(plots),
        "<h2>Tasks</h2>", *tasks, "</body></html>"])


def write_suite(suite_dir: Path, table: SuiteTable, report: bool = True,
                page: Optional[tuple[Path, str]] = None) -> list[Path]:
    """Every file of the suite's aggregate, atomically; with ``report`` also the figures and
    suite.html; with ``page`` (a path and the command that made it) also that Markdown page.
    Returns what was written."""
    suite_dir = Path(suite_dir)
    files = {SUITE_TABLE["csv"]: to_csv(table), SUITE_TABLE["md"]: to_markdown(table),
             SUITE_TABLE["tex"]: to_latex(table), TASKS_TABLE: tasks_csv(table)}
    written = []
    for name, text in files.items():
        atomic_write_text(suite_dir / name, text)
        written.append(suite_dir / name)
    if report or page:
        plots = make_suite_plots(suite_dir, table)
    if report:
        atomic_write_text(suite_dir / SUITE_PAGE, build_html(suite_dir, table, plots))
        written.append(suite_dir / SUITE_PAGE)
    if page:
        written.append(write_page(page[0], table, plots, page[1]))
    return written


def write_page(page: Path, table: SuiteTable, plots, command: str) -> Path:
    """A Markdown page of the suite's answer for a repository (``--page docs/suite.md``): the
    sentences, the table, its notes and the figures, copied beside it into ``<stem>/``; it
    says it is generated and by which command."""
    page = Path(page)
    assets = page.parent / page.stem
    lines = [f"# Suite `{table.name}`", "",
             f"<!-- generated by `{command}`; do not edit -->", "",
             f"Regenerate with `{command}`. {len(table.tasks)} tasks "
             f"({', '.join(t.name for t in table.tasks)}), {len(table.recipes)} recipes against "
             "the baseline; what each number means: [docs/suite.md](suite.md).", ""]
    lines += [f"- {sentence}" for sentence in table.headline] + [""]
    lines += to_markdown(table).splitlines() + [""]
    for plot in plots:
        target = assets / Path(plot.path).name
        atomic_write_bytes(target, Path(plot.path).read_bytes())
        lines += [f"![{plot.title}]({page.stem}/{target.name})", "", f"*{plot.caption}*", ""]
    atomic_write_text(page, "\n".join(lines).rstrip() + "\n")
    return page

"""The quick start's report.html reads as it should: its comparison table is whole at 1280 px
(measured by a real headless Chromium and seen in its screenshot), every symbol is defined
once, the gap has one unit, the overfitting epoch one source, and a regression report says
that lower is better."""
from __future__ import annotations

import html
import json
import math
import re
import statistics
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, TINY_REGRESSION
from typer.testing import CliRunner

from regbench.cli import app

runner = CliRunner()
CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at "
                                    "/usr/bin/chromium (apt-get install chromium)")
WIDTH, HEIGHT = 1280, 2000
BORDER = (215, 220, 229)   # the table's border colour, #d7dce5

# added to the test's copy of the page only (the report itself runs no JavaScript): writes
# the layout Chromium computed into the DOM, which --dump-dom then prints
MEASURE = """<script>
addEventListener("load", () => {
  const table = document.getElementById("comparison"), box = table.parentElement;
  const rect = table.getBoundingClientRect(), root = document.documentElement;
  const out = document.createElement("pre");
  out.id = "layout";
  out.textContent = JSON.stringify({
    page_scroll_width: root.scrollWidth, page_client_width: root.clientWidth,
    box_scroll_width: box.scrollWidth, box_client_width: box.clientWidth,
    left: rect.left + scrollX, right: rect.right + scrollX,
    top: rect.top + scrollY, bottom: rect.bottom + scrollY});
  document.body.appendChild(out);
});
</script>"""


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory) -> Path:
    """The quick start exactly as the README runs it, report included."""
    out = tmp_path_factory.mktemp("quickstart")
    result = runner.invoke(app, ["run", str(REPO / "configs" / "quickstart.yaml"),
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out / "quickstart"


def _page(results: Path) -> str:
    return (results / "report.html").read_text(encoding="utf-8")


def _chromium(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync", f"--user-data-dir={profile}",
               f"--window-size={WIDTH},{HEIGHT}", *extra, url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def _section(page: str, start: str, end: str) -> str:
    return page[page.index(start):page.index(end, page.index(start))]


def _text(fragment: str) -> str:
    """What a reader sees of an HTML fragment (no tags, entities decoded, plain spaces)."""
    return html.unescape(re.sub(r"<[^>]+>", "", fragment)).replace("\u00a0", " ")


@needs_chromium
def test_the_quick_start_table_is_whole_at_1280_px(quickstart: Path, tmp_path: Path):
    from matplotlib.image import imread

    measured = tmp_path / "measured.html"
    measured.write_text(_page(quickstart).replace("</body>", MEASURE + "</body>"),
                        encoding="utf-8")
    dom = _chromium(measured.as_uri(), tmp_path / "profile", "--dump-dom",
                    "--run-all-compositor-stages-before-draw", "--virtual-time-budget=3000")
    layout = json.loads(re.search(r'<pre id="layout">(.*?)</pre>', dom.stdout, re.S).group(1))
    # the page does not scroll sideways, nor does the table inside its card: all of it shows
    assert layout["page_scroll_width"] <= layout["page_client_width"] <= WIDTH, layout
    assert layout["box_scroll_width"] <= layout["box_client_width"], layout
    assert 0 <= layout["left"] < layout["right"] <= layout["page_client_width"], layout
    assert layout["bottom"] < HEIGHT, layout

    # and the screenshot shows it: the table's left and right borders are drawn down its
    # whole height (a cut-off table has no right border inside the picture)
    shot = tmp_path / "report.png"
    _chromium((quickstart / "report.html").as_uri(), tmp_path / "profile2",
              f"--screenshot={shot}")
    pixels = (imread(shot)[..., :3] * 255).round().astype(int)
    assert pixels.shape[:2] == (HEIGHT, WIDTH)
    rows = slice(math.ceil(layout["top"]) + 1, math.floor(layout["bottom"]) - 1)
    for x in (math.floor(layout["left"]), math.ceil(layout["right"]) - 1):
        column = pixels[rows, x]
        on_border = (abs(column - BORDER).max(axis=1) <= 8).mean()
        assert on_border > 0.9, (x, on_border)


def test_every_symbol_is_defined_once_in_the_key(quickstart: Path):
    page = _page(quickstart)
    key = _text(_section(page, 'id="symbols"', "</div>"))
    headline = _section(page, 'id="headline"', 'id="symbols"')
    # Δ and the interval's level, defined in the key beside the answer that uses them ...
    assert "Δ = recipe − baseline on test accuracy (positive: the recipe is better)" in key
    assert "[98.33% CI] its interval: mean paired test difference with a Student-t" in key
    assert "hold for this test set (359 examples)" in key
    assert "± in the table: mean ± the standard deviation over seeds" in key
    assert "points (the gap's unit): percentage points of accuracy" in key
    assert "+0.13 [+0.108, +0.151]" in headline   # the answer uses them
    # ... and nowhere else: neither the headline's own definition nor the table's scope note
    text = _text(page)
    assert "Δ is the mean paired test difference" not in text
    assert "Δ [98.33% CI]:" not in text
    assert text.count("Student-t interval") == 1
    assert text.count("standard deviation over seeds") == 1
    # the symbols it defines are the ones the table uses
    table = _text(_section(page, '<table id="comparison"', "</table>"))
    assert "±" in table and "Δ test vs baseline [98.33% CI]" in table


def test_the_gap_has_one_unit_on_the_page(quickstart: Path):
    """The table's gap is in accuracy points, as the diagnosis and the advice quote gaps: the
    baseline's gap reads about the same number in the table and beside the baseline."""
    page = _page(quickstart)
    table = _section(page, '<table id="comparison"', "</table>")
    header = re.findall(r"<th>([^<]*)</th>", table)
    assert "train−val gap (points)" in header
    column = header.index("train−val gap (points)")
    summaries = [json.loads(p.read_text()) for p in quickstart.glob("runs/*/summary.json")]
    for row in re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>")[1], re.S):
        cells = [_text(c) for c in re.findall(r"<td>(.*?)</td>", row, re.S)]
        gaps = [s["train_accuracy"] - s["val_accuracy"] for s in summaries
                if s["point_id"] == cells[0]]
        assert float(cells[column]) == pytest.approx(100 * statistics.fmean(gaps), abs=0.051)
    baseline_row = re.search(r"<td>baseline</td>(.*?)</tr>", table).group(0)
    in_table = float(_text(re.findall(r"<td>(.*?)</td>", baseline_row)[column]))
    beside = float(re.search(r"<li>baseline: (-?[\d.]+) points", page).group(1))
    assert abs(in_table - beside) < 5      # one unit: 34.9 next to 35.6, not 0.349
    assert re.search(r"gap -?\d+\.\d points", _section(page, "<b>What to try", "</div>"))
    assert not re.search(r"gap -?0\.\d{3}", _text(page))    # no gap as a fraction anywhere


def test_the_overfitting_epoch_has_one_source(quickstart: Path):
    """The diagnosis table's epoch and the one "What to try" quotes are the same number: the
    median of the baseline's own runs, not of every overfitting run of the experiment."""
    page = _page(quickstart)
    summaries = [json.loads(p.read_text()) for p in quickstart.glob("runs/*/summary.json")]
    baseline = [s["verdict"]["started_epoch"] for s in summaries
                if s["recipe"] == "baseline" and s["verdict"]["grade"] == "strong"]
    assert len(baseline) == 5
    expected = statistics.median(baseline)
    everyone = statistics.median(s["verdict"]["started_epoch"] for s in summaries
                                 if s["verdict"]["verdict"] == "overfitting")
    assert everyone != expected          # the quick start tells the two apart
    diagnosis = _section(page, "<h2>Diagnosis", "</table>")
    row = re.search(r"<td>baseline</td>.*?</tr>", diagnosis).group(0)
    cells = [_text(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
    assert cells[2].split()[0] == f"{expected:g}"
    assert f"({min(baseline)}–{max(baseline)})" in cells[2]
    advice = _text(_section(page, "<b>What to try", "</div>"))
    assert f"in baseline (from epoch {expected:g})" in advice
    assert re.findall(r"from epoch (\d+)", advice) == [f"{expected:g}"]


REGRESSION = TINY_REGRESSION.format(epochs=3)


def test_a_regression_report_says_lower_is_better(tmp_path: Path):
    config = tmp_path / "reg.yaml"
    config.write_text(REGRESSION)
    result = runner.invoke(app, ["run", str(config), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    page = _page(tmp_path / "reg")
    assert "<h2>Comparison: mse (lower is better)</h2>" in page
    header = re.findall(r"<th>([^<]*)</th>", _section(page, '<table id="comparison"',
                                                        "</thead>"))
    assert {"val mse (lower is better)", "test mse (lower is better)"} <= set(header)
    assert any(h.startswith("Δ test vs baseline") and h.endswith("(negative: better)")
               for h in header), header
    assert "val−train gap" in header          # mse's gap stays in mse, not in points
    key = _text(_section(page, 'id="symbols"', "</div>"))
    assert "Δ = recipe − baseline on test mse (negative: the recipe is better)" in key
    assert "points" not in key

"""Regenerate the README's pictures of the quick start (docs/images/).

    python tools/screenshots.py [RESULTS_DIR]     # default: runs the quick start into a temp dir
    python tools/screenshots.py --tune [TUNE_DIR] # the tuned quick start's sensitivity plots
    python tools/screenshots.py --tensorboard     # TensorBoard's scalars for the quick start

Writes the comparison as the terminal prints it at 80 and 200 columns (SVG, rendered by rich
from the same code as `regbench compare`) and a screenshot of report.html in headless Chromium
(`chromium --headless --no-sandbox --disable-gpu --screenshot`).
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console

from regbench.analysis.compare import compare_results, rich_table
from regbench.cli import print_headline

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "docs" / "images"


def terminal_svg(results: Path, width: int, path: Path) -> None:
    console = Console(record=True, width=width, force_terminal=True, color_system="truecolor",
                      file=open("/dev/null", "w"))
    comparison = compare_results(results)
    console.print(f"$ regbench compare {results.name}   # COLUMNS={width}", style="dim")
    print_headline(comparison, console)
    console.print(rich_table(comparison, title=f"{results.name}: {comparison.metric}",
                             width=width))
    for note in comparison.notes:
        console.print(f"  • {note}")
    console.save_svg(str(path), title=f"regbench compare — {width} columns")


def report_png(results: Path, path: Path, profile: Path) -> None:
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--user-data-dir={profile}", f"--screenshot={path}",
                    "--window-size=1280,1700", (results / "report.html").resolve().as_uri()],
                   check=True, capture_output=True, timeout=180)


TUNED_RECIPES = ("l2", "dropout")   # the sensitivity plots the README shows


def tuned(args: list[str]) -> None:
    """`regbench tune configs/quickstart_tune.yaml --trials 12` (or a folder it wrote): its
    sensitivity plots, as the report draws them."""
    with tempfile.TemporaryDirectory() as tmp:
        if args:
            results = Path(args[0])
        else:
            subprocess.run([sys.executable, "-m", "regbench", "tune",
                            str(REPO / "configs" / "quickstart_tune.yaml"), "--trials", "12",
                            "--confirm-seeds", "5", "--out", tmp], check=True)
            results = Path(tmp) / "quickstart-tune"
        for recipe in TUNED_RECIPES:
            source = results / "plots" / f"sensitivity__{recipe}.png"
            (IMAGES / f"quickstart-tune-{recipe}.png").write_bytes(source.read_bytes())
    print(f"wrote {IMAGES}")


TENSORBOARD_PORT = 6123
TENSORBOARD_VIEW = "?darkMode=false#scalars&tagFilter=%5E(train%7Cval)_loss%24"   # the losses


def tensorboard_png() -> None:
    """The quick start with --log tensorboard, a local `tensorboard` server on its folder, and
    headless Chromium's screenshot of the Scalars tab (given 20 s of virtual time to draw)."""
    import time
    import urllib.request

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "regbench", "run",
                        str(REPO / "configs" / "quickstart.yaml"), "--out", tmp, "--log",
                        "tensorboard", "--no-report"], check=True)
        server = subprocess.Popen(["tensorboard", "--logdir", f"{tmp}/quickstart", "--port",
                                   str(TENSORBOARD_PORT), "--host", "127.0.0.1"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{TENSORBOARD_PORT}/"
        try:
            for _ in range(120):
                try:
                    urllib.request.urlopen(url, timeout=1)
                    break
                except OSError:
                    time.sleep(0.5)
            subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                            "--hide-scrollbars", f"--user-data-dir={tmp}/profile",
                            "--window-size=1400,1000", "--virtual-time-budget=20000",
                            f"--screenshot={IMAGES / 'quickstart-tensorboard.png'}",
                            url + TENSORBOARD_VIEW], check=True, capture_output=True, timeout=180)
        finally:
            server.terminate()
            server.wait()
    print(f"wrote {IMAGES / 'quickstart-tensorboard.png'}")


def main() -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    if sys.argv[1:2] == ["--tune"]:
        return tuned(sys.argv[2:])
    if sys.argv[1:2] == ["--tensorboard"]:
        return tensorboard_png()
    with tempfile.TemporaryDirectory() as tmp:
        if len(sys.argv) > 1:
            results = Path(sys.argv[1])
        else:
            subprocess.run([sys.executable, "-m", "regbench", "run",
                            str(REPO / "configs" / "quickstart.yaml"), "--out", tmp], check=True)
            results = Path(tmp) / "quickstart"
        for width in (80, 200):
            terminal_svg(results, width, IMAGES / f"quickstart-terminal-{width}.svg")
        report_png(results, IMAGES / "quickstart-report.png", Path(tmp) / "profile")
    print(f"wrote {IMAGES}")


if __name__ == "__main__":
    main()

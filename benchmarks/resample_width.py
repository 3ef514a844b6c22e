"""What the intervals cover: how much wider the interval of Δ (recipe − baseline) and the spread
of test accuracy over seeds get when each seed also draws its own train/val split
(``dataset.resample: per_seed``) and its own test split (``per_seed_with_test``), against the
fixed split, on the same experiment and seeds.

    python benchmarks/resample_width.py            # about 2 minutes on 2 cores

Digits with 150 training samples, an MLP and dropout against the baseline, 12 seeds, each
setting repeated for 3 split seeds; the ratios are medians over the split seeds. Statistical,
not timed: the figures hold on any machine.
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import warnings
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import regbench  # noqa: E402

MODES = ("fixed", "per_seed", "per_seed_with_test")
SPLIT_SEEDS = (0, 1, 2)
CONFIG = {
    "name": "width",
    "seeds": list(range(12)),
    "dataset": {"name": "digits", "train_subset": 150, "val_fraction": 0.2},
    "model": {"name": "mlp", "hidden": [64]},
    "train": {"epochs": 15, "batch_size": 32, "threads": 1,
              "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9}},
    "recipes": {"baseline": {}, "dropout": {"dropout": {"p": 0.5}}},
}


def measure(mode: str, split_seed: int, out: Path) -> tuple[float, float]:
    """Half-width of Δ's interval and the sd of the baseline's test accuracy over seeds."""
    config = {**CONFIG, "name": f"width-{mode}-{split_seed}",
              "dataset": {**CONFIG["dataset"], "resample": mode, "split_seed": split_seed}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = regbench.run(config, out=out, report=False)
    table = pd.read_csv(results.folder / "comparison.csv").set_index("recipe")
    runs = pd.read_csv(results.folder / "runs.csv")
    spread = runs[runs.recipe == "baseline"]["test_accuracy"].std()
    return (table.loc["dropout", "diff_high"] - table.loc["dropout", "diff_low"]) / 2, spread


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        found = {mode: [measure(mode, s, Path(folder)) for s in SPLIT_SEEDS] for mode in MODES}
    print(f"{'resample':<20} {'Δ half-width':>13} {'× fixed':>8} {'sd of test acc':>15} "
          f"{'× fixed':>8}")
    for mode in MODES:
        widths = [w / f[0] for (w, _), f in zip(found[mode], found["fixed"])]
        spreads = [s / f[1] for (_, s), f in zip(found[mode], found["fixed"])]
        print(f"{mode:<20} {statistics.median(w for w, _ in found[mode]):>13.4f} "
              f"{statistics.median(widths):>7.2f}× {statistics.median(s for _, s in found[mode]):>15.4f} "
              f"{statistics.median(spreads):>7.2f}×   (per split seed: "
              + ", ".join(f"{w:.2f}×/{s:.2f}×" for w, s in zip(widths, spreads)) + ")")


if __name__ == "__main__":
    main()

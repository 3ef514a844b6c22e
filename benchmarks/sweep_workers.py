"""`--workers 2` against one process on whole sweeps, side by side.

    python benchmarks/sweep_workers.py [--rounds 3] [--epochs 10]

Two digits sweeps of 24 runs each, trained in this process through `run_experiment` (as
`regbench run --no-report` does), into fresh temporary folders, in interleaved rounds (which
command goes first alternates):
- **two tasks**: the sweep of benchmarks/sweep_command.py (MLP [128], baseline + l2 at 5 λ, 4
  seeds), which fuses into two groups (the baseline's 4 runs, l2's 20);
- **eight tasks**: MLPs of 4 widths × (baseline, l2) × 3 seeds, 8 groups of 3;
- **one task**: 24 seeds of the baseline alone, one group.
Each is trained with one process (torch threads = all cores) and with `--workers 2` as regbench
does it (no more processes than tasks: a sweep that fuses into one task trains in this
process). Prints the median [range] of the ratio to one process over the rounds, and how many
tasks the sweep made. The target (issue 38): `--workers 2` ÷ one process ≤ 1.0.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sweep_command import CONFIG as TWO_TASKS  # noqa: E402  (its 24-run sweep)

ONE_TASK = """\
name: one_task
seeds: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23]
dataset: {{name: digits}}
model: {{name: mlp, hidden: [128]}}
train: {{epochs: {epochs}, batch_size: 32, optimizer: {{name: sgd, lr: 0.05, momentum: 0.9}}}}
recipes:
  baseline: {{}}
"""

FOUR_GROUPS = """\
name: four_groups
seeds: [0, 1, 2]
dataset: {{name: digits}}
model: {{name: mlp, hidden: [128]}}
train: {{epochs: {epochs}, batch_size: 32, optimizer: {{name: sgd, lr: 0.05, momentum: 0.9}}}}
recipes:
  baseline: {{}}
  l2: {{l2: {{lambda: 1.0}}}}
sweep:
  model.hidden: [[32], [64], [128], [256]]
"""


def timed_sweep(config: Path, workers: int) -> tuple[float, int, int]:
    """Wall seconds, runs and tasks of one fresh sweep."""
    from regbench import Launch
    from regbench.experiment import runner

    tasks = []
    original = runner.drive

    def counting(executor, task_list, *args, **kwargs):
        tasks.append(len(task_list))
        return original(executor, task_list, *args, **kwargs)

    runner.drive = counting
    try:
        with tempfile.TemporaryDirectory() as out:
            started = time.perf_counter()
            outcome = runner.run_experiment(config, Launch(out=out, workers=workers,
                                                           report=False))
            seconds = time.perf_counter() - started
    finally:
        runner.drive = original
    if outcome.exit_code != 0:
        raise SystemExit(f"{config.name} with --workers {workers} failed")
    return seconds, len(outcome.summaries), tasks[0]


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}× [{min(values):.2f}–{max(values):.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10, help="epochs per run")
    args = parser.parse_args()
    from regbench.engine.threads import available_cores

    variants = {"one process": 1, "--workers 2": 2}
    with tempfile.TemporaryDirectory() as folder:
        for name, text in (("two tasks", TWO_TASKS), ("eight tasks", FOUR_GROUPS),
                           ("one task", ONE_TASK)):
            config = Path(folder) / f"{name.replace(' ', '_')}.yaml"
            config.write_text(text.format(epochs=args.epochs))
            times: dict[str, list[float]] = {v: [] for v in variants}
            tasks: dict[str, int] = {}
            for round_ in range(args.rounds):
                order = list(variants)[:: 1 if round_ % 2 == 0 else -1]
                for variant in order:
                    seconds, runs, tasks[variant] = timed_sweep(config, variants[variant])
                    times[variant].append(seconds)
            print(f"{name}: {runs} runs (digits, {args.epochs} epochs each), {args.rounds} "
                  f"rounds, {available_cores()} cores, {os.cpu_count()} CPUs; median [range]:")
            for variant in variants:
                ratios = [a / b for a, b in zip(times[variant], times["one process"])]
                print(f"  {variant:12s} {statistics.median(times[variant]):6.2f} s "
                      f"({tasks[variant]} task(s))  ÷ one process {spread(ratios)}")


if __name__ == "__main__":
    main()

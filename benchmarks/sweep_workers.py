"""Sweep wall time with --workers 1 vs --workers 2 on the same grid.

    python benchmarks/sweep_workers.py [--lambdas 4] [--epochs 10]

Trains the same digits sweep (baseline + l2 at several λ, 2 seeds) twice into fresh temporary
folders: once in this process (torch threads = all cores), once in two worker processes (threads
split between them, as `regbench run --workers 2` does). Prints both wall times and their ratio.
Takes well under two minutes on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONFIG = """\
name: sweep_workers
seeds: [0, 1]
dataset: {{name: digits}}
model: {{name: mlp, hidden: [128]}}
train: {{epochs: {epochs}, batch_size: 32, optimizer: {{name: sgd, lr: 0.05, momentum: 0.9}}}}
recipes:
  l2: {{l2: {{lambda: 1.0}}}}
sweep:
  recipes.l2.l2.lambda: {lambdas}
"""


def timed_sweep(config: Path, workers: int) -> tuple[float, int]:
    from regbench import Launch
    from regbench.experiment.runner import run_experiment

    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        outcome = run_experiment(config, Launch(out=out, workers=workers, report=False))
        seconds = time.perf_counter() - started
    if outcome.exit_code != 0:
        raise SystemExit(f"the sweep with --workers {workers} failed (exit {outcome.exit_code})")
    return seconds, len(outcome.summaries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lambdas", type=int, default=4, help="λ values in the grid")
    parser.add_argument("--epochs", type=int, default=10, help="epochs per run")
    args = parser.parse_args()
    from regbench.engine.threads import available_cores

    lambdas = [10.0 ** (k - 2) for k in range(args.lambdas)]
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "sweep.yaml"
        config.write_text(CONFIG.format(epochs=args.epochs, lambdas=lambdas))
        one, runs = timed_sweep(config, 1)
        two, _ = timed_sweep(config, 2)
    print(f"grid: {runs} runs (digits, mlp [128], {args.epochs} epochs each), "
          f"{available_cores()} cores")
    print(f"--workers 1: {one:6.1f} s")
    print(f"--workers 2: {two:6.1f} s")
    print(f"ratio workers1/workers2: {one / two:.2f}x")


if __name__ == "__main__":
    main()

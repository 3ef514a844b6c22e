"""The whole `regbench run` of a sweep with its report vs `--no-report`, side by side.

    python benchmarks/sweep_command.py [--rounds 5] [--epochs 10]

The 24-run digits sweep of benchmarks/fused.py (MLP [128], batch 32, l2 at 5 λ and the
baseline, 4 seeds each) as a user runs it: fresh processes, `--fresh` each time, the default
command (its report.html and plots/) and `--no-report` alternating within each round (which
goes first alternates too), then `regbench report` alone on the finished folder. The
machine may be busy: each round's ratio compares two commands run moments apart, and the
medians and ranges of those ratios are printed, and the CPU time of `regbench report` (user
+ system, which a busy machine inflates less than wall time). The commands run this checkout's regbench
(`PYTHONPATH` and the working folder are its root), so that a copy of an older tree measures
that tree. The target (issue 38): default ÷ --no-report ≤ 1.3.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CONFIG = """\
name: sweep_command
seeds: [0, 1, 2, 3]
dataset: {{name: digits}}
model: {{name: mlp, hidden: [128]}}
train: {{epochs: {epochs}, batch_size: 32, optimizer: {{name: sgd, lr: 0.05, momentum: 0.9}}}}
recipes:
  l2: {{l2: {{lambda: 1.0}}}}
sweep:
  recipes.l2.l2.lambda: [0.01, 0.1, 1.0, 10.0, 100.0]
"""


def timed(*args: str) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of `python -m regbench ARGS` in a fresh process
    that imports this tree."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "regbench", *args], cwd=REPO, env=env,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"regbench {' '.join(args)} failed (exit {done.returncode}):\n"
                         f"{done.stderr[-2000:]}")
    return seconds, after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime


def spread(values: list[float], unit: str = " s", digits: int = 2) -> str:
    return (f"{statistics.median(values):.{digits}f}{unit} "
            f"[{min(values):.{digits}f}–{max(values):.{digits}f}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10, help="epochs per run")
    args = parser.parse_args()
    times: dict[str, list[float]] = {"report": [], "no-report": [], "report alone": []}
    report_cpu: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "sweep.yaml"
        config.write_text(CONFIG.format(epochs=args.epochs))
        commands = {"report": ["run", str(config), "--fresh", "--out", f"{folder}/report"],
                    "no-report": ["run", str(config), "--fresh", "--no-report",
                                  "--out", f"{folder}/no-report"]}
        for round_ in range(args.rounds):
            order = ["report", "no-report"][:: 1 if round_ % 2 == 0 else -1]
            for name in order:
                times[name].append(timed(*commands[name])[0])
            seconds, cpu = timed("report", f"{folder}/report/sweep_command")
            times["report alone"].append(seconds)
            report_cpu.append(cpu)
            print(f"round {round_ + 1}: default {times['report'][-1]:.2f} s, --no-report "
                  f"{times['no-report'][-1]:.2f} s, ratio "
                  f"{times['report'][-1] / times['no-report'][-1]:.2f}; `regbench report` "
                  f"{times['report alone'][-1]:.2f} s", flush=True)
    ratios = [a / b for a, b in zip(times["report"], times["no-report"])]
    over = [a - b for a, b in zip(times["report"], times["no-report"])]
    print(f"24 runs (digits, mlp [128], {args.epochs} epochs each), {args.rounds} rounds, "
          f"{os.cpu_count()} cores; median [range]:")
    print(f"  regbench run (default, with report): {spread(times['report'])}")
    print(f"  regbench run --no-report:            {spread(times['no-report'])}")
    print(f"  the report's cost in the command:    {spread(over, ' s')}")
    print(f"  default ÷ --no-report:               {spread(ratios, '×')}   (target ≤ 1.3)")
    print(f"  regbench report on the finished folder: {spread(times['report alone'])}")
    # CPU seconds of `regbench report`: its cost whatever else the machine is doing (the
    # difference of two whole commands' CPU is not: training threads spin more on a busy one)
    print(f"  regbench report, CPU (user + system):   {spread(report_cpu)}")


if __name__ == "__main__":
    main()

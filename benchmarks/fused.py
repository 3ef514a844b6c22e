"""Fused vs solo training of a sweep: 5 λ × 4 seeds, wall and training time, in one process.

    python benchmarks/fused.py [--epochs 10] [--rounds 2] [--device cpu|cuda] [--only NAME]

Each case trains a sweep (l2 at 5 λ, 4 seeds, plus the baseline's 4 seeds; or input noise at
5 σ, or mixup at 5 α, on digits' MLP) with
`train.fuse: on` and `off` into fresh folders, alternating, and prints the medians and ratios:
the wall time of `run_experiment` and the training time (the runs' own seconds; a fused
group's time is shared among its members), and what `fuse: auto` chose. Cases: digits' MLP
[128] at batch 32, the synthetic_classification MLP [256] at batch 32, an MNIST-shaped
784-256-256-10 MLP at batch 64 and a 784-1024-1024-10 one at batch 128 (synthetic data), and
digits' residual MLP (no nn.Sequential: the vmap path), and the input-noise σ and mixup α
sweeps on digits' MLP (mixup does not fuse yet: its ratio shows what is left). With `--device cuda` the
MNIST-shaped case is the issue's 5 λ × 10 seeds × 20 epochs sweep.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SWEEPS = {  # name -> (the swept recipe, its sweep)
    "l2": ("l2: {l2: {lambda: 1.0}}", "recipes.l2.l2.lambda: [0.01, 0.1, 1.0, 10.0, 100.0]"),
    "input_noise": ("r: {input_noise: {sigma: 0.1}}",
                    "recipes.r.input_noise.sigma: [0.05, 0.1, 0.2, 0.5, 1.0]"),
    "mixup": ("r: {mixup: {alpha: 0.2}}", "recipes.r.mixup.alpha: [0.1, 0.2, 0.4, 0.8, 1.6]"),
}
CASES = {   # name -> (dataset, model, batch size[, sweep: l2 unless named])
    "digits": ("{name: digits}", "{name: mlp, hidden: [128]}", 32),
    "synthetic": ("{name: synthetic_classification, n_samples: 2000, n_features: 40, "
                  "n_classes: 4}", "{name: mlp, hidden: [256]}", 32),
    "mnist-shaped": ("{name: synthetic_classification, n_samples: 6000, n_features: 784, "
                     "n_classes: 10}", "{name: mlp, hidden: [256, 256]}", 64),
    # larger than where fusing pays on 2 CPU cores, and the vmap path (not an nn.Sequential)
    "mnist-wide": ("{name: synthetic_classification, n_samples: 6000, n_features: 784, "
                   "n_classes: 10}", "{name: mlp, hidden: [1024, 1024]}", 128),
    "digits-resmlp": ("{name: digits}", "{name: resmlp, width: 128, blocks: 2}", 32),
    "digits-input-noise": ("{name: digits}", "{name: mlp, hidden: [128]}", 32, "input_noise"),
    "digits-mixup": ("{name: digits}", "{name: mlp, hidden: [128]}", 32, "mixup"),
}

CONFIG = """\
name: fused_{case}
seeds: {seeds}
dataset: {dataset}
model: {model}
train: {{epochs: {epochs}, batch_size: {batch}, device: {device},
        optimizer: {{name: sgd, lr: 0.05, momentum: 0.9}}}}
recipes:
  {recipe}
sweep:
  {sweep}
"""


def timed(config: Path, fuse: str) -> tuple[float, float, int, int]:
    from regbench import Launch
    from regbench.experiment.runner import run_experiment

    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        outcome = run_experiment(config, Launch(out=out, report=False, fuse=fuse))
        wall = time.perf_counter() - started
        runs = list(Path(outcome.results_dir).glob("runs/*/summary.json"))
        summaries = [json.loads(p.read_text()) for p in runs]
    if outcome.exit_code != 0:
        raise SystemExit(f"fuse {fuse}: the sweep failed (exit {outcome.exit_code})")
    fused = sum(1 for s in summaries if s.get("fused"))
    work = summaries[0]["parameter_count"] * outcome.plan.runs[0]["train"]["batch_size"]
    return wall, sum(s["seconds"] for s in summaries), fused, work


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", choices=sorted(CASES))
    args = parser.parse_args()
    for case, (dataset, model, batch, *swept) in CASES.items():
        if args.only and case != args.only:
            continue
        recipe, sweep = SWEEPS[swept[0] if swept else "l2"]
        seeds, epochs = list(range(4)), args.epochs
        if args.device == "cuda" and case == "mnist-shaped":
            seeds, epochs = list(range(10)), 20
        with tempfile.TemporaryDirectory() as folder:
            config = Path(folder) / "c.yaml"
            config.write_text(CONFIG.format(case=case, seeds=seeds, dataset=dataset,
                                            model=model, epochs=epochs, batch=batch,
                                            device=args.device, recipe=recipe, sweep=sweep))
            results: dict[str, list[tuple[float, float, int, int]]] = {"on": [], "off": []}
            for _ in range(args.rounds):
                for fuse in ("on", "off"):
                    results[fuse].append(timed(config, fuse))
            auto = timed(config, "auto")
        wall = {k: statistics.median(r[0] for r in v) for k, v in results.items()}
        train = {k: statistics.median(r[1] for r in v) for k, v in results.items()}
        runs = 6 * len(seeds)
        print(f"{case}: {runs} runs × {epochs} epochs, {model}, batch {batch}, {args.device}, "
              f"batch × parameters {auto[3]:,}")
        print(f"  training: solo {train['off']:7.2f} s, fused {train['on']:7.2f} s  "
              f"-> fused is {train['off'] / train['on']:.2f}× faster")
        print(f"  wall:     solo {wall['off']:7.2f} s, fused {wall['on']:7.2f} s  "
              f"-> {wall['off'] / wall['on']:.2f}×")
        print(f"  fuse: auto fused {auto[2]} of {runs} runs (training {auto[1]:.2f} s)")
        if case == "digits":
            command, torch_s = whole_command(args.epochs, args.device)
            print(f"  whole command `regbench run --no-report` (fuse auto): {command:.2f} s = "
                  f"{command / torch_s:.2f}× `python -c 'import torch'` ({torch_s:.2f} s)")


def whole_command(epochs: int, device: str) -> tuple[float, float]:
    """The digits sweep as a user runs it, and `import torch`, in fresh processes (medians of 3,
    interleaved)."""
    import subprocess

    dataset, model, batch = CASES["digits"]
    commands, torch_times = [], []
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "c.yaml"
        recipe, sweep = SWEEPS["l2"]
        config.write_text(CONFIG.format(case="cli", seeds=list(range(4)), dataset=dataset,
                                        model=model, epochs=epochs, batch=batch,
                                        device=device, recipe=recipe, sweep=sweep))
        for _ in range(3):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import torch"], check=True)
            torch_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "regbench", "run", str(config), "--fresh",
                            "--no-report", "--out", str(Path(folder) / "out")], check=True,
                           capture_output=True)
            commands.append(time.perf_counter() - started)
    return statistics.median(commands), statistics.median(torch_times)


if __name__ == "__main__":
    main()

"""Fused vs solo training of a sweep: 5 λ × 4 seeds, wall and training time, in one process.

    python benchmarks/fused.py [--epochs 10] [--rounds 2] [--device cpu|cuda] [--only NAME]

Each case trains a sweep (l2 at 5 λ, 4 seeds, plus the baseline's 4 seeds; or input noise at
5 σ, mixup at 5 α, weight noise at 5 σ or DropConnect per batch at 5 p, on digits' MLP) with
`train.fuse: on` and `off` into fresh folders, alternating, and prints the medians and ratios:
the wall time of `run_experiment` and the training time (the runs' own seconds; a fused
group's time is shared among its members), and what `fuse: auto` chose. Cases: digits' MLP
[128] at batch 32, the synthetic_classification MLP [256] at batch 32, an MNIST-shaped
784-256-256-10 MLP at batch 64 and a 784-1024-1024-10 one at batch 128 (synthetic data), and
digits' residual MLP (no nn.Sequential: the vmap path), the input-noise σ, mixup α,
weight-noise σ and DropConnect (per batch) p sweeps on digits' MLP, and the weight-noise and
mixup sweeps on the MNIST-shaped MLP. With `--device cuda` the MNIST-shaped case is the
issue's 5 λ × 10 seeds × 20 epochs sweep.

`--only dropconnect-per-example` instead times what fusing DropConnect's per_example mode
could gain, which regbench does not fuse: one training step of 20 digits MLPs (5 p × 4
seeds, batch 32) at one thread, solo one after another, against the same step stacked (every
member's per-example masks from its own generator, the per-example products as batched
products over members × examples in cache-sized chunks), as a fused loop would run it.
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
    "weight_noise": ("r: {weight_noise: {sigma: 0.01}}",
                     "recipes.r.weight_noise.sigma: [0.005, 0.01, 0.02, 0.05, 0.1]"),
    "dropconnect": ("r: {dropconnect: {p: 0.5, mode: per_batch}}",
                    "recipes.r.dropconnect.p: [0.1, 0.2, 0.3, 0.4, 0.5]"),
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
    "digits-weight-noise": ("{name: digits}", "{name: mlp, hidden: [128]}", 32, "weight_noise"),
    "digits-dropconnect": ("{name: digits}", "{name: mlp, hidden: [128]}", 32, "dropconnect"),
    # near the size where fusing stops paying: do per-weight draws (weight noise) or a batch
    # hook run member by member (mixup) move the limit?
    "mnist-shaped-weight-noise": ("{name: synthetic_classification, n_samples: 6000, "
                                  "n_features: 784, n_classes: 10}",
                                  "{name: mlp, hidden: [256, 256]}", 64, "weight_noise"),
    "mnist-shaped-mixup": ("{name: synthetic_classification, n_samples: 6000, n_features: 784, "
                           "n_classes: 10}", "{name: mlp, hidden: [256, 256]}", 64, "mixup"),
    # the grid `fuse: auto` is checked on (issue 38): one hidden layer of 64 to 4096 units
    **{f"digits-h{width}": ("{name: digits}", f"{{name: mlp, hidden: [{width}]}}", 32)
       for width in (64, 256, 1024, 4096)},
}
AUTO_GRID = [f"digits-h{width}" for width in (64, 256, 1024, 4096)]

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
    parser.add_argument("--only", choices=sorted([*CASES, "dropconnect-per-example", "auto-grid"]),
                        help="one case; auto-grid: the four widths `fuse: auto` is checked on")
    args = parser.parse_args()
    if args.only == "dropconnect-per-example":
        per_example_step(args.rounds)
        return
    for case, (dataset, model, batch, *swept) in CASES.items():
        if args.only and case != args.only and not (args.only == "auto-grid" and
                                                    case in AUTO_GRID):
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
        chosen = "on" if auto[2] else "off"
        print(f"  auto's choice ({'fused' if auto[2] else 'solo'}) ÷ the faster of the two: "
              f"{train[chosen] / min(train.values()):.2f}× (target ≤ 1.05)")
        if case == "digits":
            command, torch_s = whole_command(args.epochs, args.device)
            print(f"  whole command `regbench run --no-report` (fuse auto): {command:.2f} s = "
                  f"{command / torch_s:.2f}× `python -c 'import torch'` ({torch_s:.2f} s)")


def per_example_step(rounds: int, members: int = 20, batch: int = 32) -> None:
    """One SGD step of ``members`` digits MLPs 64-128-10 with per-example DropConnect on the
    hidden layer: each solo (regbench's layers), and all stacked as a fused loop would run them
    (the per-example masked weights of members × examples in batched products, a
    cache-sized chunk of members at a time); median milliseconds of interleaved rounds. Plain
    steps alongside, for the dispatch they cost. One thread: the fused contract's setting, and
    the steady one on a loaded machine."""
    import torch
    from torch import nn

    torch.set_num_threads(1)

    from regbench.models import LayerFactory, build_model
    from regbench.regularizers import REGULARIZERS, RunContext
    from regbench.regularizers.dropconnect import CHUNK_ELEMENTS, keep_mask, kept_fraction

    ps = [0.1, 0.2, 0.3, 0.4, 0.5] * (members // 5)
    ctx = RunContext(task="classification", n_train=1000, output_dim=10, input_shape=(64,),
                     device=torch.device("cpu"), train={})

    def solo(p: float, dropconnect: bool) -> nn.Module:
        factory = LayerFactory()
        if dropconnect:
            cls = REGULARIZERS.get("dropconnect")
            cls(cls.Params(p=p, mode="per_example"), ctx).build(factory)
        return build_model({"name": "mlp", "hidden": [128]}, (64,), 10, factory)

    x, y = torch.randn(members, batch, 64), torch.randint(0, 10, (members, batch))
    nets = {kind: [solo(p, kind == "per_example") for p in ps] for kind in ("plain", "per_example")}
    optimizers = {kind: [torch.optim.SGD(n.parameters(), lr=0.05) for n in group]
                  for kind, group in nets.items()}

    def solo_steps(kind: str) -> None:
        for net, optimizer, xm, ym in zip(nets[kind], optimizers[kind], x, y):
            optimizer.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(net(xm), ym).backward()
            optimizer.step()

    w1 = torch.randn(members, 128, 64).mul_(0.1).requires_grad_()
    b1 = torch.zeros(members, 128, requires_grad=True)
    w2 = torch.randn(members, 10, 128).mul_(0.1).requires_grad_()
    b2 = torch.zeros(members, 10, requires_grad=True)
    stacked = torch.optim.SGD([w1, b1, w2, b2], lr=0.05)
    generators = [torch.Generator().manual_seed(m) for m in range(members)]
    kept = torch.tensor([kept_fraction(p) for p in ps]).view(members, 1, 1)
    chunk = max(1, CHUNK_ELEMENTS // (batch * 128 * 64))      # members per chunk

    def stacked_step(dropconnect: bool) -> None:
        stacked.zero_grad(set_to_none=True)
        if dropconnect:
            keep = torch.stack([keep_mask((batch, 128, 64), p, generator=g)
                                for p, g in zip(ps, generators)])
            bias_keep = torch.stack([keep_mask((batch, 128), p, generator=g)
                                     for p, g in zip(ps, generators)])
            # cache-sized chunks of members, as the solo layer chunks its examples
            parts = []
            for index in range(0, members, chunk):
                rows = slice(index, index + chunk)
                weights = (w1[rows, None] * keep[rows]).flatten(0, 1)    # [m·B, 128, 64]
                parts.append(torch.bmm(x[rows].reshape(-1, 1, 64), weights.transpose(1, 2)))
            h = torch.cat(parts).view(members, batch, 128)
            h = (h + b1[:, None] * bias_keep) / kept
        else:
            h = torch.baddbmm(b1[:, None], x, w1.transpose(1, 2))
        out = torch.baddbmm(b2[:, None], h.relu(), w2.transpose(1, 2))
        nn.functional.cross_entropy(out.flatten(0, 1), y.flatten(), reduction="none") \
            .view(members, batch).mean(1).sum().backward()
        stacked.step()

    steps = {"solo plain": lambda: solo_steps("plain"),
             "solo per_example": lambda: solo_steps("per_example"),
             "stacked plain": lambda: stacked_step(False),
             "stacked per_example": lambda: stacked_step(True)}
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(max(3, rounds * 3)):     # interleaved: background load hits each alike
        for name, step in steps.items():
            for _ in range(3):              # warm-up
                step()
            started = time.perf_counter()
            for _ in range(20):
                step()
            times[name].append((time.perf_counter() - started) / 20 * 1e3)
    ms = {name: statistics.median(values) for name, values in times.items()}
    print(f"dropconnect per_example: one step of {members} digits MLPs 64-128-10, batch {batch}, "
          f"{torch.get_num_threads()} thread(s), ms per step of all {members}")
    for kind in ("plain", "per_example"):
        print(f"  {kind:11s}: solo {ms['solo ' + kind]:7.2f} ms, stacked "
              f"{ms['stacked ' + kind]:7.2f} ms  -> stacked is "
              f"{ms['solo ' + kind] / ms['stacked ' + kind]:.2f}× faster")
    # fusing saves dispatch, not per-example work: at best the plain step's saving
    ceiling = ms["solo per_example"] / (ms["solo per_example"] - ms["solo plain"]
                                        + ms["stacked plain"])
    print(f"  the most fusing per_example could gain (its masks and products at their solo "
          f"cost, the rest of the step at the stacked plain one): {ceiling:.2f}×")


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

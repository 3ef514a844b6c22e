"""regbench's fused training epoch against a hand-written batched-matmul ensemble, side by side.

    python benchmarks/fused_step.py [--widths 64,1024] [--members 20] [--rounds 7]

For each hidden width, 20 digits MLPs 64-H-10 (l2 at 5 λ × 4 seeds, SGD with momentum, batch
32) train one epoch at a time: regbench's ``FusedTrainer.train_epoch`` (the stacked weights
[M, out, in] with products chosen so that each member equals its solo run bit for bit), and a
hand-written ensemble with the layout batched products like best, [M, in, out]: the same
batches (each member's own permutation), the same loss and penalty, ``torch.optim.SGD`` over
the stacked tensors. Neither evaluates. Rounds alternate which goes first; prints the median
and range of the per-round ratio regbench ÷ hand-written (issue 38's target: ≤ 1.05).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from regbench.engine.threads import choose_wait_policy  # noqa: E402

choose_wait_policy()  # before torch loads, as the CLI does
import torch  # noqa: E402

from regbench.data import load_bundle  # noqa: E402
from regbench.engine.fused import FusedTrainer  # noqa: E402
from regbench.experiment.config import load_config  # noqa: E402
from regbench.experiment.plan import build_plan  # noqa: E402

CONFIG = """\
name: step
seeds: [0, 1, 2, 3]
dataset: {{name: digits}}
model: {{name: mlp, hidden: [{width}]}}
train: {{epochs: 1, batch_size: 32, optimizer: {{name: sgd, lr: 0.05, momentum: 0.9}}}}
recipes:
  l2: {{l2: {{lambda: 1.0}}}}
sweep:
  recipes.l2.l2.lambda: [0.01, 0.1, 1.0, 10.0, 100.0]
"""


def regbench_epoch(width: int, folder: Path):
    config = folder / f"h{width}.yaml"
    config.write_text(CONFIG.format(width=width))
    specs = [s for s in build_plan(load_config(config)).runs if s["recipe"] != "baseline"]
    data = load_bundle(specs[0]["dataset"], specs[0]["train"]["train_eval_samples"],
                       specs[0]["seed"])
    trainer = FusedTrainer(specs, data, torch.device("cpu"))
    active = torch.ones(len(specs), dtype=torch.bool)
    return (lambda: trainer.train_epoch(active)), data, len(specs)


def handwritten_epoch(width: int, data, members: int):
    """The same ensemble written directly: weights [M, in, out], one bmm per layer."""
    generator = torch.Generator().manual_seed(0)
    inputs = data.x_train.flatten(1)          # digits: 8×8 images, as the MLP flattens them
    n_in, n_out = inputs.shape[1], int(data.y_train.max()) + 1
    shapes = [(n_in, width), (width, n_out)]
    weights = [(torch.randn(members, a, b, generator=generator) / a ** 0.5).requires_grad_()
               for a, b in shapes]
    biases = [torch.zeros(members, 1, b, requires_grad=True) for _, b in shapes]
    lambdas = torch.tensor([0.01, 0.1, 1.0, 10.0, 100.0]).repeat_interleave(members // 5)
    optimizer = torch.optim.SGD([*weights, *biases], lr=0.05, momentum=0.9)
    n = data.n_train

    def epoch():
        order = torch.stack([torch.randperm(n) for _ in range(members)])
        xs, ys = inputs[order], data.y_train[order]            # [M, n, in], [M, n]
        for x, y in zip(xs.split(32, dim=1), ys.split(32, dim=1)):
            h = torch.relu(torch.baddbmm(biases[0], x, weights[0]))
            out = torch.baddbmm(biases[1], h, weights[1])
            loss = torch.nn.functional.cross_entropy(out.flatten(0, 1), y.flatten(),
                                                     reduction="none").view(members, -1).mean(1)
            penalty = lambdas / (2 * n) * sum((w * w).sum((1, 2)) for w in weights)
            optimizer.zero_grad(set_to_none=True)
            (loss + penalty).sum().backward()
            optimizer.step()
    return epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="64,1024")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for width in map(int, args.widths.split(",")):
            ours, data, members = regbench_epoch(width, Path(folder))
            theirs = handwritten_epoch(width, data, members)
            ours(), theirs()                                   # warm-up
            times = {"regbench": [], "hand-written": []}
            for round_ in range(args.rounds):
                pair = [("regbench", ours), ("hand-written", theirs)]
                for name, epoch in pair[:: 1 if round_ % 2 == 0 else -1]:
                    started = time.perf_counter()
                    epoch()
                    times[name].append(time.perf_counter() - started)
            ratios = [a / b for a, b in zip(times["regbench"], times["hand-written"])]
            print(f"hidden {width}: {members} members, {data.n_train} samples, batch 32, "
                  f"{torch.get_num_threads()} threads; epoch regbench "
                  f"{statistics.median(times['regbench']) * 1000:.1f} ms, hand-written "
                  f"{statistics.median(times['hand-written']) * 1000:.1f} ms; regbench ÷ "
                  f"hand-written {statistics.median(ratios):.2f}× "
                  f"[{min(ratios):.2f}–{max(ratios):.2f}] (target ≤ 1.05)", flush=True)


if __name__ == "__main__":
    main()

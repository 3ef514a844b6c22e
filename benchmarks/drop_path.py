"""Stochastic depth's branch drop: regbench's former drop_path (one uniform per sample, kept
where U >= p) vs torchvision.ops.stochastic_depth (Bernoulli per sample), forward + backward on
a residual branch output, side by side in one process.

    python benchmarks/drop_path.py          # a few seconds

Prints the median microseconds per call of each and their ratio; regbench uses torchvision's op
unless this shows a material gain for its own.
"""
from __future__ import annotations

import statistics
import time

import torch
from torchvision.ops import stochastic_depth


def uniform_drop(x: torch.Tensor, p: float) -> torch.Tensor:
    """The hand-written version regbench had: keep a sample's branch where U >= p."""
    keep = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), device=x.device) >= p
    return x * keep.to(x.dtype) / (1 - p)


def timed(function, x: torch.Tensor, repeats: int = 200) -> float:
    """Median µs of forward + backward over ``repeats`` calls, after a warm-up."""
    times = []
    for index in range(repeats + 20):
        start = time.perf_counter()
        function(x).sum().backward()
        if index >= 20:
            times.append(time.perf_counter() - start)
    return 1e6 * statistics.median(times)


def main() -> None:
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    for shape in ((128, 64, 8, 8), (128, 256), (512, 16, 32, 32)):
        x = torch.randn(shape, requires_grad=True)
        ours, theirs = [], []
        for _ in range(5):   # interleaved rounds: background load hits both alike
            ours.append(timed(lambda t: uniform_drop(t, 0.3), x))
            theirs.append(timed(lambda t: stochastic_depth(t, 0.3, "row", True), x))
        a, b = statistics.median(ours), statistics.median(theirs)
        print(f"{str(shape):>20}: hand-written {a:8.1f} µs | torchvision {b:8.1f} µs | "
              f"torchvision / hand-written {b / a:.2f}")


if __name__ == "__main__":
    main()

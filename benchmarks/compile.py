"""Does ``torch.compile`` pay off for regbench's models? Compile time and milliseconds per
training step, eager vs compiled, on the benchmark's MLP and LeNet-style CNN (batch 128).

    python benchmarks/compile.py        # about a minute on 2 cores; needs a C++ compiler

regbench offers no compile flag while this prints a compiled ÷ eager ratio above 1 on the
machines we measure; the note on issue 6 records the figures.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from epoch_overhead import BATCH, LR, MODELS  # noqa: E402

from regbench.models import LayerFactory, build_model, place  # noqa: E402


def step_timer(net: torch.nn.Module, optimizer, x, y):
    def steps(count: int) -> float:
        started = time.perf_counter()
        for _ in range(count):
            loss = F.cross_entropy(net(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return (time.perf_counter() - started) / count * 1000
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50, help="steps per timed block")
    parser.add_argument("--rounds", type=int, default=5, help="timed blocks per contender")
    args = parser.parse_args()
    # a fresh inductor cache: the compile time printed is what a first run on a machine pays
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="regbench-inductor-"))
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    x = torch.randn(BATCH, 1, 28, 28)
    y = torch.randint(0, 10, (BATCH,))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), batch {BATCH}")
    for name, spec in MODELS.items():
        torch.manual_seed(0)
        net = place(build_model(spec, (1, 28, 28), 10, LayerFactory()), torch.device("cpu"))
        optimizer = torch.optim.SGD(net.parameters(), lr=LR, momentum=0.9)
        eager = step_timer(net, optimizer, x, y)
        compiled = step_timer(torch.compile(net), optimizer, x, y)
        started = time.perf_counter()
        compiled(2)                                # traces and compiles forward and backward
        compile_seconds = time.perf_counter() - started
        eager(10)
        times = {"eager": [], "compiled": []}
        for _ in range(args.rounds):                # interleaved: background load hits both
            times["eager"].append(eager(args.steps))
            times["compiled"].append(compiled(args.steps))
        eager_ms, compiled_ms = (statistics.median(times[k]) for k in ("eager", "compiled"))
        print(f"{name}: compile {compile_seconds:.1f} s | eager {eager_ms:.2f} ms/step | "
              f"compiled {compiled_ms:.2f} ms/step | compiled ÷ eager = "
              f"{compiled_ms / eager_ms:.2f}")


if __name__ == "__main__":
    main()

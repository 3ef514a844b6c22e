"""Why regbench chooses torch threads and OpenMP's wait policy deliberately: seconds per epoch
of the same run with 1 thread and with every core, on an idle machine and beside one CPU-busy
process, with OpenMP's spinning (ACTIVE), passive waiting (PASSIVE), OpenMP's default (spin
briefly, then sleep) and regbench's choice (PASSIVE only when other work is running).

    python benchmarks/threads.py                          # about a minute on 2 cores
    python benchmarks/threads.py GOMP_SPINCOUNT=10000     # also rows for other settings

Each cell is a fresh process (the wait policy is fixed when torch loads), timing the median of
5 epochs after a warm-up of an MLP 784-256-256-10, batch 128, on 5,000 MNIST-shaped samples.
"""
from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

CELL = """
{preamble}
import statistics, sys, time, torch
sys.path.insert(0, {repo!r}); sys.path.insert(0, {here!r})
torch.set_num_threads({threads})
from epoch_overhead import epoch_of, synthetic_mnist, trainer
epoch = epoch_of(trainer(synthetic_mnist(5000, 1000), "mlp", {{}}, torch.device("cpu")))
times = []
for _ in range(6):
    start = time.perf_counter(); epoch(); times.append(time.perf_counter() - start)
print(statistics.median(times[1:]))
"""


def busy(stop_at: float) -> None:
    while time.time() < stop_at:
        pass


def cell(policy: str, threads: int) -> float:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    if policy.startswith("GOMP_SPINCOUNT="):
        env["GOMP_SPINCOUNT"] = policy.split("=", 1)[1]
    elif policy not in ("default", "regbench"):
        env["OMP_WAIT_POLICY"] = policy
    # "regbench": the policy regbench's CLI chooses before torch loads
    preamble = (f"import sys; sys.path.insert(0, {str(HERE.parent)!r}); "
                "from regbench.engine.threads import choose_wait_policy; choose_wait_policy()"
                if policy == "regbench" else "")
    code = CELL.format(preamble=preamble, repo=str(HERE.parent), here=str(HERE), threads=threads)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    cores = len(os.sched_getaffinity(0))
    print(f"{cores} cores; seconds per epoch (median of 5)")
    print(f"{'wait policy':<22}{'threads':>8}{'idle':>10}{'beside 1 busy process':>24}")
    for policy in ("ACTIVE", "PASSIVE", "default", "regbench", *sys.argv[1:]):
        for threads in sorted({1, cores}):
            idle = cell(policy, threads)
            hog = multiprocessing.Process(target=busy, args=(time.time() + 600,), daemon=True)
            hog.start()
            try:
                loaded = cell(policy, threads)
            finally:
                hog.terminate()
                hog.join()
            print(f"{policy:<22}{threads:>8}{idle:>10.3f}{loaded:>24.3f}")


if __name__ == "__main__":
    main()

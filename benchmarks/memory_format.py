"""Seconds per epoch of conv nets trained contiguous (NCHW) vs channels-last (NHWC) on the CPU,
and the layout regbench picks for each (``regbench.models.memory_format_for``).

    python benchmarks/memory_format.py      # about 2 minutes on 2 cores

Each case runs regbench's Trainer on synthetic data (2,048 MNIST- or CIFAR-shaped samples,
batch 128), both layouts one epoch each in turn, median over rounds after a warm-up round.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from epoch_overhead import MODELS, run_spec  # noqa: E402

from regbench.data import DataBundle  # noqa: E402
from regbench.engine.train import Trainer  # noqa: E402
from regbench.experiment.plan import config_hash  # noqa: E402
from regbench.models import memory_format_for  # noqa: E402

RESNET = {"name": "resnet", "channels": [16, 32, 64], "blocks": 1, "activation": "relu"}
CASES = {  # name: (model, regularizers, input shape)
    "cnn": (MODELS["cnn"], {}, (1, 28, 28)),
    "cnn + batchnorm": (MODELS["cnn"], {"batchnorm": {}}, (1, 28, 28)),
    "cnn + groupnorm": (MODELS["cnn"], {"groupnorm": {"groups": 2}}, (1, 28, 28)),
    "cnn + dropout": (MODELS["cnn"], {"dropout": {"p": 0.3}}, (1, 28, 28)),
    "cnn, CIFAR-shaped": (MODELS["cnn"], {}, (3, 32, 32)),
    "resnet, CIFAR-shaped": (RESNET, {}, (3, 32, 32)),
    "resnet + batchnorm": (RESNET, {"batchnorm": {}}, (3, 32, 32)),
}


def synthetic(shape: tuple[int, ...], n: int = 2048) -> DataBundle:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, *shape, generator=generator)
    y = torch.randint(0, 10, (n,), generator=generator)
    return DataBundle(task="classification", input_shape=shape, output_dim=10,
                      x_train=x, y_train=y, x_val=x[:512], y_val=y[:512], x_test=x[:512],
                      y_test=y[:512], train_eval_index=torch.arange(512), meta={})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4, help="timed rounds per case")
    args = parser.parse_args()
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), batch 128, "
          f"median of {args.rounds} interleaved epochs after a warm-up")
    cpu = torch.device("cpu")
    for name, (model, regularizers, shape) in CASES.items():
        spec = {**run_spec("cnn", regularizers, cpu), "model": model}
        spec["config_hash"] = config_hash(spec)
        data = synthetic(shape)
        trainers = {}
        for layout in (torch.contiguous_format, torch.channels_last):
            trainer = Trainer(spec, data, cpu)
            trainer.model.to(memory_format=layout)   # the same Parameters: the optimizer holds on
            trainers[layout] = trainer
        times = {layout: [] for layout in trainers}
        for epoch in range(1, args.rounds + 2):
            for layout, trainer in trainers.items():
                started = time.perf_counter()
                trainer.run_epoch(epoch)
                times[layout].append(time.perf_counter() - started)
        nchw, nhwc = (statistics.median(times[layout][1:]) for layout in trainers)
        picked = memory_format_for(trainers[torch.channels_last].model, cpu)
        print(f"{name}: contiguous {nchw:.3f} s/epoch | channels-last {nhwc:.3f} s/epoch | "
              f"ratio {nhwc / nchw:.2f} | regbench picks "
              f"{'channels-last' if picked == torch.channels_last else 'contiguous'}")


if __name__ == "__main__":
    main()

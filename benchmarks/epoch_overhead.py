"""Seconds per epoch: regbench's engine vs a minimal hand-written PyTorch loop vs the common
torchvision DataLoader + per-sample transform pipeline, on the same data, model and batch size.

    python benchmarks/epoch_overhead.py            # full: 10k samples, ~4 minutes on 2 cores
    python benchmarks/epoch_overhead.py --quick    # 2k samples
    python benchmarks/epoch_overhead.py --device cuda   # on a GPU: data and augmentation there

Contenders run one epoch each in turn, round after round, so background load hits them alike.
Prints median seconds per epoch over the rounds after a warm-up round, and the medians of the
per-round ratios (b)/(a) engine ÷ hand-written loop (target ≤ 1.10) and (c)/(b) DataLoader ÷
engine with the same augmentation (target ≥ 3; (c) applies torchvision v2 transforms to
tensors, (c') is the classic PIL pipeline), plus the share of regbench's training pass spent in
augmentation + mixup (target ≤ 15%), for the rotate+translate+crop augmentation of (c) and for
the crop+flip recipe: timed inside the pass, and as the difference with a plain pass.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from regbench.engine.threads import choose_wait_policy  # noqa: E402

choose_wait_policy()  # before torch loads, as the CLI does
import torch  # noqa: E402
from torch import nn  # noqa: E402

from regbench.data import DataBundle  # noqa: E402
from regbench.engine.train import Trainer  # noqa: E402
from regbench.experiment.plan import config_hash  # noqa: E402
from regbench.models import LayerFactory, build_model, place  # noqa: E402

MODELS = {"mlp": {"name": "mlp", "hidden": [256, 256], "activation": "relu"},
          "cnn": {"name": "cnn", "channels": [6, 16], "hidden": [120, 84], "kernel_size": 5,
                  "activation": "relu"}}
BATCH = 128
LR = 0.05
AUGMENT = {"augment": {"rotate": 10.0, "translate": 0.1, "crop_padding": 2, "hflip": 0.0}}
MIXUP = {"mixup": {"alpha": 0.2}}
CROP_FLIP = {"augment": {"crop_padding": 2, "hflip": 0.5}}  # the CIFAR-style recipe


def synthetic_mnist(n_train: int, n_val: int, seed: int = 0) -> DataBundle:
    """MNIST-shaped data with a learnable signal (a class-dependent mean image)."""
    generator = torch.Generator().manual_seed(seed)
    means = torch.randn(10, 1, 28, 28, generator=generator)

    def make(n):
        y = torch.randint(0, 10, (n,), generator=generator)
        return means[y] + 2 * torch.randn(n, 1, 28, 28, generator=generator), y

    x_train, y_train = make(n_train)
    x_val, y_val = make(n_val)
    return DataBundle(task="classification", input_shape=(1, 28, 28), output_dim=10,
                      x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val,
                      x_test=x_val, y_test=y_val,
                      train_eval_index=torch.arange(min(10_000, n_train)), meta={})


def run_spec(model: str, regularizers: dict, device: torch.device) -> dict:
    spec = {"run_id": "bench", "point_id": "bench", "recipe": "bench", "seed": 0, "sweep": {},
            "dataset": {"name": "synthetic"}, "model": MODELS[model],
            "train": {"epochs": 1000, "batch_size": BATCH, "device": device.type, "threads": None,
                      "train_eval_samples": 10_000, "save_model": False, "scheduler": None,
                      "optimizer": {"name": "sgd", "lr": LR, "momentum": 0.9,
                                    "nesterov": False, "betas": (0.9, 0.999)}},
            "regularizers": regularizers}
    spec["config_hash"] = config_hash(spec)
    return spec


def trainer(data: DataBundle, model: str, regularizers: dict, device: torch.device) -> Trainer:
    """regbench's Trainer of ``model`` with ``regularizers``, its data on ``device``."""
    return Trainer(run_spec(model, regularizers, device), data.to(device), device)


def epoch_of(trainer: Trainer) -> Callable[[], None]:
    """(b) regbench's Trainer: one call = one epoch exactly as `regbench run` does it."""
    epochs = iter(range(1, 10**6))
    return lambda: trainer.run_epoch(next(epochs))


def _plain(model: str, data: DataBundle, device: torch.device):
    """The model of (a) and (c): regbench's, in the memory layout regbench trains it in
    (channels-last for the cnn on the CPU), so that the ratios compare loops and pipelines only."""
    torch.manual_seed(0)
    net = build_model(MODELS[model], data.input_shape, data.output_dim, LayerFactory())
    net = place(net.to(device), device)
    return net, torch.optim.SGD(net.parameters(), lr=LR, momentum=0.9)


EVAL_BATCH = 512  # the hand-written loop evaluates in the same cache-sized chunks as regbench


def _evaluate(net, data: DataBundle) -> None:
    net.eval()
    index = data.train_eval_index
    with torch.inference_mode():
        for xs, ys in ((data.x_train[index], data.y_train[index]), (data.x_val, data.y_val)):
            out = torch.cat([net(part) for part in xs.split(EVAL_BATCH)])
            nn.functional.cross_entropy(out, ys).item()
            (out.argmax(1) == ys).float().mean().item()


def _evaluate_with_loaders(net, loaders, device: torch.device) -> None:
    """The common pipeline's eval: DataLoaders over the train subset and the val set."""
    net.eval()
    with torch.inference_mode():
        for loader in loaders:
            outs, targets = zip(*[(net(xb.to(device)), yb.to(device)) for xb, yb in loader])
            out, ys = torch.cat(outs), torch.cat(targets)
            nn.functional.cross_entropy(out, ys).item()
            (out.argmax(1) == ys).float().mean().item()


def handwritten(data: DataBundle, model: str, device: torch.device) -> Callable[[], None]:
    """(a) The minimal loop doing the same per-epoch work: a shuffled SGD pass, then an
    eval pass over up to 10k training samples and over the validation set."""
    net, optimizer = _plain(model, data, device)
    data = data.to(device)

    def epoch():
        net.train()
        for index in torch.randperm(len(data.x_train), device=device).split(BATCH):
            loss = nn.functional.cross_entropy(net(data.x_train[index]), data.y_train[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        _evaluate(net, data)
    return epoch


class _Samples(torch.utils.data.Dataset):
    """Samples handed one by one to ``transform``, as torchvision datasets do."""

    def __init__(self, images, y, transform):
        self.images, self.y, self.transform = images, y, transform

    def __len__(self):
        return len(self.images)

    def image(self, i):
        return self.images[i]

    def __getitem__(self, i):
        return self.transform(self.image(i)), self.y[i]


def _loader_pipeline(data: DataBundle, model: str, dataset,
                     device: torch.device) -> Callable[[], None]:
    """An epoch of the common pipeline: a DataLoader over ``dataset`` (transforms per sample,
    on the CPU) for training, DataLoaders over tensors for the eval passes; each batch is then
    moved to ``device``."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=0)
    index = data.train_eval_index
    eval_loaders = [torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xs, ys),
                                                batch_size=EVAL_BATCH)
                    for xs, ys in ((data.x_train[index], data.y_train[index]),
                                   (data.x_val, data.y_val))]
    net, optimizer = _plain(model, data, device)

    def epoch():
        net.train()
        for xb, yb in loader:
            loss = nn.functional.cross_entropy(net(xb.to(device)), yb.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        _evaluate_with_loaders(net, eval_loaders, device)
    return epoch


def dataloader(data: DataBundle, model: str, device: torch.device) -> Callable[[], None]:
    """(c) torchvision v2 transforms applied per sample to tensors."""
    from torchvision.transforms import v2

    transform = v2.Compose([v2.RandomAffine(degrees=10, translate=(0.1, 0.1)),
                            v2.RandomCrop(28, padding=2)])
    return _loader_pipeline(data, model, _Samples(data.x_train, data.y_train, transform), device)


class _PilSamples(_Samples):
    """Like torchvision.datasets.MNIST: uint8 images handed to the transforms as PIL images."""

    def image(self, i):
        from PIL import Image

        return Image.fromarray(self.images[i], mode="L")


def pil_dataloader(data: DataBundle, model: str, device: torch.device) -> Callable[[], None]:
    """(c') The classic pipeline of tutorials: PIL images, RandomAffine + RandomCrop, ToTensor,
    Normalize."""
    from torchvision import transforms

    x = data.x_train[:, 0]
    images = ((x - x.min()) / (x.max() - x.min()) * 255).to(torch.uint8).numpy()
    transform = transforms.Compose([transforms.RandomAffine(10, translate=(0.1, 0.1)),
                                    transforms.RandomCrop(28, padding=2), transforms.ToTensor(),
                                    transforms.Normalize((0.5,), (0.25,))])
    return _loader_pipeline(data, model, _PilSamples(images, data.y_train, transform), device)


def interleaved(contenders: dict[str, Callable[[], None]], rounds: int) -> list[dict[str, float]]:
    """Seconds of one epoch of each contender, per round (all contenders run one epoch in turn,
    in an order shuffled every round so that no contender always follows the same one), the
    warm-up round dropped."""
    times = []
    order = random.Random(0)
    for _ in range(rounds + 1):
        row = {}
        names = list(contenders)
        order.shuffle(names)
        for name in names:
            epoch = contenders[name]
            started = time.perf_counter()
            epoch()
            row[name] = time.perf_counter() - started
        times.append(row)
    return times[1:]


class PassTimer:
    """Seconds of each training pass of a trainer (its epoch minus the eval) and, within each
    pass, the seconds spent in the batch hooks (augmentation, mixup): timed inside the same
    pass, so background load hits both alike. On a GPU the hooks are timed to completion."""

    def __init__(self, trainer: Trainer):
        self.passes: list[float] = []
        self.hooks: list[float] = []
        self.in_hooks = 0.0
        self.sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
        train_epoch = trainer.train_epoch

        def timed_pass():
            self.in_hooks = 0.0
            started = time.perf_counter()
            result = train_epoch()
            self.passes.append(time.perf_counter() - started)
            self.hooks.append(self.in_hooks)
            return result
        trainer.train_epoch = timed_pass
        for reg in trainer.hooks["batch"]:
            reg.batches = self.timed(reg.batches)

    def timed(self, hook):
        def call(*args):
            self.sync()
            started = time.perf_counter()
            result = hook(*args)
            self.sync()
            self.in_hooks += time.perf_counter() - started
            return result
        return call


def median(values) -> float:
    return statistics.median(list(values))


def report(model: str, times: list[dict[str, float]], training: dict[str, PassTimer]) -> None:
    """Print median seconds per epoch and the median of the per-round ratios (a ratio taken
    within one round compares epochs run seconds apart, under the same background load)."""
    def seconds(name):
        return median(row[name] for row in times)

    def ratio(top, bottom):
        return median(row[top] / row[bottom] for row in times)

    def inside(mixed):  # share of the training pass (the epoch minus the eval passes)
        timer = training[mixed]
        return 100 * median(h / p for h, p in zip(timer.hooks[1:], timer.passes[1:]))

    def difference(mixed, plain):  # the same, as the extra time over the plain pass
        pairs = zip(training[mixed].passes[1:], training[plain].passes[1:])
        return 100 * median((m - p) / m for m, p in pairs)

    print(f"{model}: (a) hand-written loop {seconds('hand'):.3f} s/epoch | (b) regbench "
          f"{seconds('engine'):.3f} s/epoch | (b)/(a) = {ratio('engine', 'hand'):.3f} "
          "(target ≤ 1.10)")
    print(f"{model}: (b) regbench + augment {seconds('augment'):.3f} s/epoch | (c) DataLoader + "
          f"per-sample transforms {seconds('loader'):.3f} s/epoch | (c)/(b) = "
          f"{ratio('loader', 'augment'):.2f} (target ≥ 3)")
    print(f"{model}: (c') classic PIL pipeline (RandomAffine, RandomCrop, ToTensor, Normalize) "
          f"{seconds('pil_loader'):.3f} s/epoch | (c')/(b) = {ratio('pil_loader', 'augment'):.2f}")
    for label, mixed in (("rotate+translate+crop augment", "augment_mixup"),
                         ("crop+flip augment", "cropflip_mixup")):
        print(f"{model}: {label} + mixup take {inside(mixed):.1f}% of a training pass, timed "
              f"inside it (target ≤ 15%); by difference with the plain pass "
              f"{difference(mixed, 'engine'):.1f}% ({median(training[mixed].passes[1:]):.3f} s "
              f"vs {median(training['engine'].passes[1:]):.3f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 samples, 3 rounds")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: cores)")
    parser.add_argument("--models", default="mlp,cnn", help="comma-separated: mlp,cnn")
    parser.add_argument("--rounds", type=int, default=None,
                        help="timed rounds (default 7; 3 quick)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    args = parser.parse_args()
    device = torch.device(args.device)
    n_train, rounds = (2_000, 3) if args.quick else (10_000, 7)
    rounds = args.rounds or rounds
    threads = args.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    data = synthetic_mnist(n_train, 2_000)
    policy = os.environ.get("OMP_WAIT_POLICY", "OpenMP's default")
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"torch {torch.__version__} on {where}, {threads} thread(s), wait policy {policy}, "
          f"{n_train} training samples, batch {BATCH}; medians over {rounds} interleaved "
          "rounds after a warm-up round")
    for model in args.models.split(","):
        engines = {name: trainer(data, model, regularizers, device)
                   for name, regularizers in (("engine", {}), ("augment", AUGMENT),
                                              ("augment_mixup", {**AUGMENT, **MIXUP}),
                                              ("cropflip_mixup", {**CROP_FLIP, **MIXUP}))}
        training = {name: PassTimer(engine) for name, engine in engines.items()}
        times = interleaved({"hand": handwritten(data, model, device),
                             **{name: epoch_of(engine) for name, engine in engines.items()},
                             "loader": dataloader(data, model, device),
                             "pil_loader": pil_dataloader(data, model, device)}, rounds)
        report(model, times, training)


if __name__ == "__main__":
    main()

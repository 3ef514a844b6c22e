"""Every GPU of a node: local worker processes pinned to GPUs round-robin (``--gpus``,
``train.runs_per_gpu``), Ray tasks asking for a share of one GPU. The assignment and the
pinning are tested here on the CPU (the pinning in real spawned processes); training on the
GPUs runs in benchmarks/cuda_check.sh where a GPU is lent."""
from __future__ import annotations

import multiprocessing
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor

import pytest
import torch
from typer.testing import CliRunner

from regbench.cli import app
from regbench.engine.executors import gpu_slots, pin_gpu, ray_gpus
from regbench.errors import ConfigError
from regbench.experiment.launch import Launch
from regbench.experiment.runner import gpu_assignment
from tests.conftest import TINY_DIGITS, write_config
from tests.test_bad_input import one_error_line

runner = CliRunner()


@pytest.mark.parametrize("gpus, per, workers", [([0, 1], 1, 4), ([0, 1, 2], 2, 5),
                                                ([3, 1], 3, 6), ([0], 1, 1)])
def test_slots_go_round_robin_with_at_most_runs_per_gpu_on_each(gpus, per, workers):
    slots = gpu_slots(gpus, per, workers)
    assert len(slots) == min(workers, len(gpus) * per)
    assert all(n <= per for n in Counter(slots).values())
    # round-robin: consecutive workers land on different GPUs while there are several
    assert all(a != b for a, b in zip(slots, slots[1:])) or len(gpus) == 1
    assert slots[:len(gpus)] == gpus[:len(slots)]


def _pin_then_wait(tokens, ready) -> None:
    pin_gpu(tokens)                    # what a worker does first, then: every worker up before
    ready.wait(timeout=300)            # any task runs (a late starter would get none to report)


def _visible(_: int) -> tuple[int, str]:
    time.sleep(0.3)                    # every worker gets a task: none finishes them all alone
    return os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES", "")


def test_each_spawned_worker_sees_only_its_own_gpu():
    """What a ProcessExecutor worker does first (``pin_gpu`` from the driver's queue), in real
    spawned processes: each sees exactly one GPU, and together they hold the slots."""
    context = multiprocessing.get_context("spawn")
    slots = gpu_slots([0, 1], 2, 4)
    tokens = context.Queue()
    for gpu in slots:
        tokens.put(gpu)
    ready = context.Barrier(len(slots))
    with ProcessPoolExecutor(len(slots), mp_context=context, initializer=_pin_then_wait,
                             initargs=(tokens, ready)) as pool:
        seen = dict(pool.map(_visible, range(4 * len(slots))))
    assert len(seen) == len(slots)                       # every worker, one GPU each
    assert sorted(seen.values()) == sorted(map(str, slots))


def test_assignment_follows_the_machine_and_the_options(monkeypatch, tmp_path):
    """Four GPUs reported by torch (the hardware is what is stood in for; the rule is what is
    tested): --workers on several GPUs pins round-robin, capped at GPUs × runs_per_gpu when
    that is set; --gpus picks them; one GPU or one process leaves placement to torch; an
    inherited CUDA_VISIBLE_DEVICES names the GPUs the slots mean."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    free = {"train": {"device": "auto", "runs_per_gpu": None}}
    one = {"train": {"device": "auto", "runs_per_gpu": 1}}
    two = {"train": {"device": "auto", "runs_per_gpu": 2}}
    assert gpu_assignment([free], Launch(workers=6)) == (["0", "1", "2", "3", "0", "1"], [])
    assert gpu_assignment([one], Launch(workers=4)) == (["0", "1", "2", "3"], [])
    slots, warnings = gpu_assignment([one], Launch(workers=6))
    assert slots == ["0", "1", "2", "3"] and "1 per GPU" in warnings[0]
    assert gpu_assignment([two], Launch(workers=6))[0] == ["0", "1", "2", "3", "0", "1"]
    assert gpu_assignment([two], Launch(gpus="2,3"))[0] == ["2", "3", "2", "3"]  # --gpus alone
    assert gpu_assignment([free], Launch(gpus="1"))[0] == ["1"]
    assert gpu_assignment([one], Launch(workers=1)) == ([], [])           # one process
    assert gpu_assignment([{"train": {"device": "cpu"}}], Launch(workers=4)) == ([], [])
    with pytest.raises(ConfigError, match="this machine has 4 CUDA GPU"):
        gpu_assignment([one], Launch(gpus="1,4"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7,GPU-3f2a,MIG-1")   # what torch counts
    assert gpu_assignment([one], Launch(workers=4))[0] == ["5", "7", "GPU-3f2a", "MIG-1"]
    assert gpu_assignment([one], Launch(gpus="1,2"))[0] == ["7", "GPU-3f2a"]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert gpu_assignment([one], Launch(workers=4)) == ([], [])           # one GPU: torch's


def test_ray_tasks_ask_for_a_share_of_a_gpu():
    def spec(device, per=1):
        return {"train": {"device": device, "runs_per_gpu": per}}

    assert ray_gpus(spec("cuda", None), lambda: False) == 1
    assert ray_gpus(spec("cuda"), lambda: False) == 1
    assert ray_gpus(spec("cuda", 4), lambda: False) == 0.25
    assert ray_gpus(spec("auto", 2), lambda: True) == 0.5
    assert ray_gpus(spec("auto", 2), lambda: False) == 0
    assert ray_gpus(spec("cpu", 2), lambda: True) == 0


@pytest.mark.parametrize("options, fragment", [
    (["--gpus", "a,b"], "--gpus: expected GPU indices such as 0,1"),
    (["--gpus", "0,0"], "--gpus: expected distinct GPU indices"),
    (["--gpus", "0", "--executor", "ray"], "--gpus: only with the local executor"),
    (["--gpus", "0", "--device", "cpu"], "--gpus: --device cpu trains on no GPU")])
def test_bad_gpus_are_refused(tmp_path, options, fragment):
    config = write_config(tmp_path / "c.yaml", TINY_DIGITS)
    result = runner.invoke(app, ["run", str(config), "--out", str(tmp_path / "o"), *options])
    one_error_line(result, 2, fragment)
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without a GPU")
def test_gpus_on_a_machine_without_one_is_refused_before_anything_is_written(tmp_path):
    config = write_config(tmp_path / "c.yaml", TINY_DIGITS)
    result = runner.invoke(app, ["run", str(config), "--out", str(tmp_path / "o"), "--gpus",
                                 "0"])
    one_error_line(result, 2, "--gpus", "this machine has no CUDA GPU; got 0")
    assert not (tmp_path / "o" / "tiny" / "runs").exists()


def test_plugin_files_ship_as_modules_of_their_own(tmp_path):
    """What a Ray cluster's nodes import for --plugin files: two files named alike, one named
    like a standard module and one with a dot in its name each load as themselves."""
    import importlib
    import sys

    from regbench.engine.executors import shipped_modules

    files = []
    for folder, name, value in (("a", "plug", 1), ("b", "plug", 2), ("c", "types", 3),
                                ("d", "my.plugin", 4)):
        (tmp_path / folder).mkdir()
        path = tmp_path / folder / f"{name}.py"
        path.write_text(f"VALUE = {value}\n")
        files.append(str(path))
    ship = tmp_path / "ship"
    ship.mkdir()
    names = shipped_modules(files, ship)
    assert len(set(names.values())) == 4
    sys.path.insert(0, str(ship))
    try:
        assert [importlib.import_module(names[f]).VALUE for f in files] == [1, 2, 3, 4]
    finally:
        sys.path.remove(str(ship))

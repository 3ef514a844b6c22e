"""Execute one run in this process: threads, device, data from the per-process cache, training.

Every executor trains a task through :func:`execute_task`, in the driver or in a worker: a
run through :func:`execute_run`, a fused group through ``fused.FusedTrainer`` (its members
solo if the group fails as a whole). The driver adds the diagnosis and writes the run folders.
"""
from __future__ import annotations

import torch

from regbench.data import load_bundle
from regbench.engine import fused
from regbench.engine.pruning import trial_reporter
from regbench.engine.result import RunResult, StoppedGroup, failed_result
from regbench.engine.train import resolve_device, train_run
from regbench.errors import RegbenchError
from regbench.plugins import load_plugins
from regbench.vocabulary import RunSpec, Task


def execute_run(spec: RunSpec, threads: int, on_epoch=None) -> RunResult:
    """Train one run and return its result. Never raises for a run's own failure.

    The dataset comes from the per-process ``load_bundle`` cache: a worker loads it once.
    """
    torch.set_num_threads(spec["train"].get("threads") or threads)
    try:
        load_plugins(spec.get("plugins", ()))   # a worker process registers them too
        device = resolve_device(spec["train"]["device"])
        data = load_bundle(spec["dataset"], spec["train"]["train_eval_samples"], spec["seed"])
        callback = (lambda row: on_epoch(spec, row)) if on_epoch else None
        if spec.get("trial"):    # a `regbench tune` trial: reported to its study, maybe pruned
            try:
                callback = trial_reporter(spec["trial"], spec["train"]["epochs"], callback)
            except Exception as exc:   # the study is out of reach: the trial stays unfinished
                result = failed_result(spec, f"cannot open the study storage "
                                             f"({type(exc).__name__}: {exc})")
                result.summary["storage_error"] = True
                return result
        result = train_run(spec, data, device, callback)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a failing run must not stop the sweep
        return failed_result(spec, f"{type(exc).__name__}: {exc}")
    return with_data_facts(result, spec, data)


def with_data_facts(result: RunResult, spec: RunSpec, data) -> RunResult:
    """The summary's sweep paths, and what the seed varied and which rows it trained,
    validated and tested on."""
    result.summary["sweep_paths"] = spec.get("sweep_paths", {})
    # dataset.cv: which partition and fold was the test split (compare pairs runs by them)
    result.summary.update({key: spec[key] for key in ("repeat", "fold") if key in spec})
    result.summary["resample"] = data.meta["resample"]
    result.summary["split"] = data.meta["split"]
    # the smallest difference each split can show is one example: the tables warn on few
    result.summary["examples"] = {split: data.meta[f"n_{split}"] for split in ("train", "val",
                                                                              "test")}
    return result


def execute_task(task: Task, threads: int, on_epoch=None):
    """A run's RunResult, or for a fused group (``fused.GROUP_KEY``) one (spec, RunResult) per
    member; ``on_epoch(spec, row)`` gets each run's row as its epoch ends (each member's, with
    the member's spec). A group whose fused build or training fails (out of memory, say) trains its members
    solo, one after another, each then failing or not on its own; the reason is kept in their
    summaries (``fused.fallback``)."""
    if fused.GROUP_KEY not in task:
        return execute_run(task, threads, on_epoch)
    specs = task[fused.GROUP_KEY]
    torch.set_num_threads(specs[0]["train"].get("threads") or threads)
    try:
        load_plugins(specs[0].get("plugins", ()))
        device = resolve_device(specs[0]["train"]["device"])
        data = load_bundle(specs[0]["dataset"], specs[0]["train"]["train_eval_samples"],
                           specs[0]["seed"]).to(device)
        # each member's row with its own spec: every member's curve reaches the trackers
        results = fused.FusedTrainer(specs, data, device).resume().fit(on_epoch)
    except KeyboardInterrupt:
        raise
    except Exception as exc:   # a member's own fault shows when it trains solo, as it would alone
        if torch.cuda.is_available():
            torch.cuda.empty_cache()      # the stacked model is gone: give its memory back
        return _solo_members(specs, threads, on_epoch, f"{type(exc).__name__}: {exc}")
    return [(spec, with_data_facts(result, spec, data)) for spec, result in zip(specs, results)]


def _solo_members(specs: list[RunSpec], threads: int, on_epoch, reason: str):
    """The fallback: each member solo until one is interrupted (the rest resume later)."""
    done = []
    try:
        for spec in specs:
            result = execute_run(spec, threads, on_epoch)
            result.summary.setdefault("fused", {"fallback": reason})
            done.append((spec, result))
            if result.status == "interrupted":
                break
    except KeyboardInterrupt:     # between two members: what finished is kept
        if not done:
            raise
        return StoppedGroup(done)
    return done


def check_device(specs: list[RunSpec]) -> None:
    """Refuse ``device: cuda`` on a machine without a CUDA GPU, before anything trains."""
    if any(spec["train"]["device"] == "cuda" for spec in specs) and not torch.cuda.is_available():
        raise RegbenchError("train.device: cuda was requested but no CUDA GPU is available "
                            "here; use device: auto or cpu")

"""Execute one run in this process: threads, device, data from the per-process cache, training.

Every executor calls :func:`execute_run`, in the driver or in a worker; the driver adds the
diagnosis and writes the run folder.
"""
from __future__ import annotations

from typing import Any

import torch

from regbench.data import load_bundle
from regbench.engine.result import RunResult, failed_result
from regbench.engine.train import resolve_device, train_run
from regbench.errors import RegbenchError
from regbench.plugins import load_plugins


def execute_run(spec: dict[str, Any], threads: int, on_epoch=None) -> RunResult:
    """Train one run and return its result. Never raises for a run's own failure.

    The dataset comes from the per-process ``load_bundle`` cache: a worker loads it once.
    """
    torch.set_num_threads(spec["train"].get("threads") or threads)
    try:
        load_plugins(spec.get("plugins", ()))   # a worker process registers them too
        device = resolve_device(spec["train"]["device"])
        data = load_bundle(spec["dataset"], spec["train"]["train_eval_samples"], spec["seed"])
        callback = (lambda row: on_epoch(spec, row)) if on_epoch else None
        result = train_run(spec, data, device, callback)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a failing run must not stop the sweep
        return failed_result(spec, f"{type(exc).__name__}: {exc}")
    result.summary["sweep_paths"] = spec.get("sweep_paths", {})
    # what the seed varied, and which rows it trained, validated and tested on
    result.summary["resample"] = data.meta["resample"]
    result.summary["split"] = data.meta["split"]
    return result


def check_device(specs: list[dict[str, Any]]) -> None:
    """Refuse ``device: cuda`` on a machine without a CUDA GPU, before anything trains."""
    if any(spec["train"]["device"] == "cuda" for spec in specs) and not torch.cuda.is_available():
        raise RegbenchError("train.device: cuda was requested but no CUDA GPU is available "
                            "here; use device: auto or cpu")

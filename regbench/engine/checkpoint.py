"""Checkpoints inside a run: a killed run resumes from its last finished epoch.

A checkpoint is the trainer's whole state at the end of an epoch — the model, the optimizer and
its schedule, every regularizer's state (early stopping's best weights, mixup's stock of λ, a
dropout layer's drawn-ahead masks, each run-owned random stream) and the global RNG — so that
the resumed run draws and computes exactly what the uninterrupted one would have: its
metrics.csv is the same, bit for bit on the CPU with the same threads. The state is pickled
whole (cloudpickle through torch.save, which keeps a fused group's optimizer on the stacked
tensors, or on views of them where members differ in settings) rather than through a state_dict per class: a plugin's regularizer and a
lazily made stream are covered without code of their own. What a run folder holds:

    checkpoint.pt = one JSON line (format, run ids, config hashes, epoch, versions, the payload's
                    SHA-256) + the payload

A checkpoint is read only when its header names exactly the runs being trained, with their
config hashes, regbench's checkpoint format and the same torch, and its payload's digest
matches; it must be a regular file of this user's inside the run folder. Anything else is
ignored with a note (the next checkpoint replaces it) and the run starts over: a checkpoint is a
pickle, and regbench loads only its own. Written atomically after an epoch (``train.checkpoint_every``); the driver deletes it when
it writes the run's folder (``results.write_run``), unless ``train.keep_checkpoint``, or the run
was stopped by Ctrl-C: that run resumes from it.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Optional

import torch

from regbench.errors import OutputError
from regbench.results import atomic_write_bytes
from regbench.vocabulary import RunSpec

FORMAT = 2   # the pickled trainers' layout: 2 since a fused group's one optimizer group steps
             # the stacked tensors themselves (format 1 stepped views of them)
AUTO_SECONDS = 30.0     # `checkpoint_every: auto`: write once this much training has passed
                        # since the run began or its last checkpoint (a resnet18 epoch on a
                        # CPU takes minutes: every epoch; a digits MLP run: never)


def _versions() -> dict[str, str]:
    """What must be the same to unpickle a trainer into the same objects."""
    try:
        ours = version("regbench")
    except PackageNotFoundError:      # run from a source tree that is not installed
        ours = "unknown"
    return {"torch": torch.__version__, "regbench": ours,
            "python": ".".join(map(str, sys.version_info[:2]))}


class Checkpoints:
    """When and where one trainer (a solo run, or a fused group) writes its checkpoint, and
    the one it resumes from. ``spec["checkpoint"]``, set by the runner for runs it writes
    folders for: the path of the file; none (the Python API's bare trainers, tuning trials): no
    checkpoints."""

    def __init__(self, specs: list[RunSpec], device: Any = "cpu"):
        first = specs[0]
        self.device = str(device)         # a checkpoint loads onto the device it trained on
        self.path: Optional[Path] = Path(first["checkpoint"]) if first.get("checkpoint") \
            else None
        self.every = first["train"].get("checkpoint_every", "auto")
        self.epochs = first["train"]["epochs"]
        self.run_ids = [spec["run_id"] for spec in specs]
        self.hashes = [spec["config_hash"] for spec in specs]
        self.last = time.perf_counter()
        self.notes: list[str] = []        # what went wrong with a checkpoint (the summary's)

    @property
    def enabled(self) -> bool:
        return self.path is not None and self.every is not None

    def after(self, epoch: int, trainer: Any, elapsed: float) -> None:
        """After ``epoch`` (``elapsed`` seconds of training so far): write ``trainer``'s
        checkpoint when one is due."""
        if self.due(epoch):
            self.write(epoch, {"trainer": trainer, "elapsed": elapsed})

    def due(self, epoch: int) -> bool:
        """Whether to write after ``epoch`` (the last epoch never: the run is about to end)."""
        if not self.enabled or epoch >= self.epochs:
            return False
        if self.every == "auto":
            return time.perf_counter() - self.last >= AUTO_SECONDS
        return epoch % int(self.every) == 0

    def write(self, epoch: int, state: dict[str, Any]) -> None:
        """Write ``state`` (the trainer's) as the checkpoint after ``epoch``. A failure (disk
        full) is noted in the summary, never stops the run."""
        import cloudpickle

        state = {**state, "rng": _rng_states()}
        buffer = io.BytesIO()
        torch.save(state, buffer, pickle_module=cloudpickle)
        payload = buffer.getvalue()
        header = {"format": FORMAT, "run_ids": self.run_ids, "config_hashes": self.hashes,
                  "device": self.device, "epoch": epoch, **_versions(),
                  "sha256": hashlib.sha256(payload).hexdigest()}
        try:
            atomic_write_bytes(self.path, json.dumps(header).encode() + b"\n" + payload)
        except OutputError as exc:
            self.notes.append(f"checkpoint after epoch {epoch} not written: {exc}")
        self.last = time.perf_counter()

    def read(self) -> Optional[dict[str, Any]]:
        """The state to resume from, or None (no checkpoint, or one ignored with a note)."""
        if not self.enabled or not (self.path.exists() or self.path.is_symlink()):
            return None
        why = self._refuse()
        if why is None:
            raw = self.path.read_bytes()
            line, _, payload = raw.partition(b"\n")
            try:
                header = json.loads(line)
            except ValueError:
                header, why = {}, "its header is not JSON"
            why = why or self._mismatch(header, payload)
        if why is not None:
            self.notes.append(f"{self.path.name} ignored ({why}); the run started over")
            return None
        try:
            # on the devices it trained on (a GPU run resumes on its GPU; on a machine
            # without one the load fails below and the run starts over)
            state = torch.load(io.BytesIO(payload), weights_only=False)
        except Exception as exc:     # a checkpoint of another regbench: start over
            self.notes.append(f"{self.path.name} could not be read ({type(exc).__name__}: "
                              f"{exc}); the run started over")
            return None
        _set_rng_states(state.pop("rng"))
        return state

    def _refuse(self) -> Optional[str]:
        """Why the file itself is not one regbench wrote, or None."""
        if self.path.is_symlink():
            return "it is a symbolic link"
        info = self.path.stat()
        if not self.path.is_file():
            return "it is not a regular file"
        if hasattr(os, "getuid") and info.st_uid != os.getuid():
            return "another user owns it"
        return None

    def _mismatch(self, header: dict[str, Any], payload: bytes) -> Optional[str]:
        expected = {"format": FORMAT, "run_ids": self.run_ids, "config_hashes": self.hashes,
                    "device": self.device, **_versions()}   # --device is left out of the hash
        for key, value in expected.items():
            if header.get(key) != value:
                return f"its {key} is {header.get(key)!r}, not {value!r}"
        if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
            return "its contents do not match their digest (damaged)"
        return None


def _rng_states() -> dict[str, Any]:
    states = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["cpu"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])

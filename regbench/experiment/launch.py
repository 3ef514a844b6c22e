"""How a command runs: one frozen, validated :class:`Launch`.

`regbench run`, `regbench sweep`, `regbench tune` and ``regbench.run(...)`` build the same
object from their options, so the three front doors accept the same options with the same
checks and the same messages; the library (``run_experiment``, ``tune_experiment``) takes it
whole. A new execution option is a field here and its option in ``cli.py``.

What a run *computes* lives in the config (``--set``, ``--param``, ``--smoke`` change it, see
:func:`regbench.experiment.runner.load_experiment`); a Launch says only where results go, how the runs are placed and
scheduled, what is written around them and what is done after them (``confirm_seeds``).
Importing this module loads no torch: the CLI builds a Launch before any library import.
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from regbench.engine.executors import check_executor
from regbench.errors import ConfigError
from regbench.results import check_output
from regbench.vocabulary import MAX_SEED

DEVICES = ("auto", "cpu", "cuda")
MAX_CONFIRM_SEEDS = 1000      # fresh seeds per chosen point: a typo such as 1e9 is refused at once
FUSE_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class Launch:
    """The options of one command; every field is checked when the object is made."""

    out: Path = Path("results")            # results root: each experiment writes OUT/<name>/
    seeds: Optional[tuple[int, ...]] = None  # replaces the config's seeds ("0-4", "0,2", [0, 2])
    workers: int = 1                       # runs trained at once, in parallel processes
    executor: str = "local"                # local processes, ray tasks or a slurm job array
    address: Optional[str] = None          # Ray cluster address (none: start a local Ray)
    device: Optional[str] = None           # auto | cpu | cuda (none: the config's train.device)
    fuse: Optional[str] = None             # auto | on | off (none: the config's train.fuse)
    resume: bool = True                    # skip completed runs; False: a fresh results folder
    report: bool = True                    # plots and report.html at the end
    metric: Optional[str] = None           # the metric tables rank by (none: accuracy or mse)
    min_effect: Optional[float] = None     # δ: equivalence margin and seed advice size
    confirm_seeds: Optional[int] = None    # then retrain each chosen point on K fresh seeds
    plugins: tuple[str, ...] = ()          # --plugin files and modules, loaded before the config
    trackers: tuple[str, ...] = ()         # --log: trackers added to the config's logging.trackers
    mlflow_uri: Optional[str] = None       # MLflow tracking URI (none: logging.mlflow_uri, …)
    junit: Optional[Path] = None           # also write JUnit XML here, one test case per run
    recipes: tuple[str, ...] = ()          # --recipes: train only these and the baseline (none: all)
    detach: bool = False                   # --detach: submit (Slurm) and return; the same command collects
    gpus: Optional[tuple[int, ...]] = None  # --gpus 0,1: the GPUs local worker processes use, round-robin

    def __post_init__(self) -> None:
        for name, value in normalised(self).items():
            object.__setattr__(self, name, value)

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def replace(self, **changes: Any) -> "Launch":
        """A copy with some options changed (checked again)."""
        return dataclasses.replace(self, **changes)

    @property
    def warnings(self) -> list[str]:
        """Options that work but are probably not what the user wants."""
        cores = os.cpu_count() or 1
        if self.workers > cores and self.executor == "local":
            return [f"--workers {self.workers} is more than this machine's {cores} cores: the "
                    "runs share them, each slower, the whole no faster"]
        return []

    def load_plugins(self) -> list[str]:
        """Import the ``--plugin`` specs and installed entry points (exit 2 on a bad one),
        then check the executor, which a plugin may register (its name, Ray installed, an
        address only where one is used); returns what every worker loads again."""
        from regbench.plugins import load_plugins  # deferred: models and datasets load torch

        loaded = load_plugins(list(self.plugins))
        check_executor(self.executor, self.workers, self.address)
        return loaded


def normalised(launch: Launch) -> dict[str, Any]:
    """Each option checked and in its canonical type, or a ConfigError naming the option."""
    if not isinstance(launch.executor, str) or not launch.executor:
        raise ConfigError(f"expected an executor's name (got {launch.executor!r})",
                          source="--executor")
    for value, choices, option in ((launch.device, DEVICES, "--device"),
                                   (launch.fuse, FUSE_MODES, "--fuse")):
        if value is not None and value not in choices:
            raise ConfigError(f"expected one of: {', '.join(choices)} (got {value!r})",
                              source=option)
    return {"out": _path(launch.out, "--out"), "seeds": parse_seeds(launch.seeds),
            "workers": _whole(launch.workers, "--workers", 1),
            "confirm_seeds": None if launch.confirm_seeds is None
            else _whole(launch.confirm_seeds, "--confirm-seeds", 1, MAX_CONFIRM_SEEDS),
            "min_effect": _min_effect(launch.min_effect),
            "resume": _flag(launch.resume, "--resume"), "report": _flag(launch.report, "--report"),
            "detach": _detach(launch.detach, launch.executor),
            "gpus": _gpus(launch.gpus, launch.executor, launch.device),
            "plugins": _names(launch.plugins, "--plugin"),
            "trackers": _names(launch.trackers, "--log"),
            "junit": _junit(launch.junit), "recipes": _recipes(launch.recipes)}


def _detach(value: Any, executor: str) -> bool:
    if _flag(value, "--detach") and executor != "slurm":
        raise ConfigError("only with --executor slurm (its jobs go on without this command; "
                          "local and Ray runs need it running)", source="--detach")
    return value


def _gpus(value: Any, executor: str, device: Optional[str]) -> Optional[tuple[int, ...]]:
    """``"0,1"`` or a list of GPU indices -> distinct indices; whether the machine has them is
    checked with the runs (``runner.gpu_assignment``)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    parts = value.split(",") if isinstance(value, str) else value
    try:
        gpus = tuple(int(p.strip()) if isinstance(p, str) and p.strip().isdigit() else
                     p if isinstance(p, int) and not isinstance(p, bool) and p >= 0 else
                     int("x") for p in parts)
    except (TypeError, ValueError):
        raise ConfigError(f"expected GPU indices such as 0,1 (got {value!r})",
                          source="--gpus") from None
    if not gpus or len(set(gpus)) != len(gpus):
        raise ConfigError(f"expected distinct GPU indices such as 0,1 (got {value!r})",
                          source="--gpus")
    if executor != "local":
        raise ConfigError("only with the local executor (Ray and Slurm give each task its "
                          "GPUs: train.runs_per_gpu, execution.slurm.gpus_per_task)",
                          source="--gpus")
    if device == "cpu":
        raise ConfigError("--device cpu trains on no GPU", source="--gpus")
    return gpus


def _whole(value: Any, option: str, least: int, most: Optional[int] = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"expected a whole number (got {value!r})", source=option)
    if value < least:
        raise ConfigError(f"must be >= {least} (got {value})", source=option)
    if most is not None and value > most:
        raise ConfigError(f"must be <= {most} (got {value})", source=option)
    return value


def _flag(value: Any, option: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"expected true or false (got {value!r})", source=option)
    return value


def _path(value: Any, option: str) -> Path:
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ConfigError(f"expected a path (got {value!r})", source=option)
    return Path(value)


def _names(values: Any, option: str) -> tuple[str, ...]:
    if isinstance(values, str):
        values = (values,)
    if not isinstance(values, Iterable) or not all(isinstance(v, str) and v for v in values):
        raise ConfigError(f"expected names (got {values!r})", source=option)
    return tuple(values)


def _recipes(values: Any) -> tuple[str, ...]:
    """``"l2,dropout"`` or a list of names -> the names, in order, once each (none: every
    recipe). Whether the config has them is checked with the config (``select_recipes``)."""
    if values is None or (isinstance(values, str) and not values.strip()):
        return ()
    names = [part.strip() for part in values.split(",")] if isinstance(values, str) else values
    if not isinstance(names, Iterable) or not all(isinstance(n, str) and n.strip() for n in names):
        raise ConfigError(f"expected recipe names such as l2,dropout (got {values!r})",
                          source="--recipes")
    return tuple(dict.fromkeys(name.strip() for name in names))


def _min_effect(value: Any) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"must be a positive number (got {value})", source="--min-effect")
    return float(value)


def _junit(value: Any) -> Optional[Path]:
    """A file path that can be written (its folder exists and takes a new file), or a
    device or pipe open for writing: checked before anything trains, not after."""
    if value is None:
        return None
    path = _path(value, "--junit")
    check_output(path, "--junit")
    return path


def parse_seeds(seeds: str | Sequence[int] | None) -> Optional[tuple[int, ...]]:
    """``"0,1,2"`` or ``"0-4"`` (or ``"0-2,7"``), or a list of integers -> distinct integers
    that numpy and torch accept; None: the config's seeds."""
    if seeds is None or (isinstance(seeds, str) and not seeds.strip()):
        return None
    if isinstance(seeds, str):
        found = _seed_text(seeds)
    elif isinstance(seeds, Iterable) and all(isinstance(s, int) and not isinstance(s, bool)
                                             for s in seeds):
        found = list(seeds)
    else:
        raise ConfigError(f"expected integers, or text such as 0,1,2 or 0-4 (got {seeds!r})",
                          source="--seeds")
    if not found:
        raise ConfigError("expected at least one seed", source="--seeds")
    if len(set(found)) != len(found):
        raise ConfigError(f"seeds must be distinct (got {seeds!r})", source="--seeds")
    bad = [seed for seed in found if not 0 <= seed <= MAX_SEED]
    if bad:
        raise ConfigError(f"seeds must be between 0 and {MAX_SEED} (got {bad[0]})",
                          source="--seeds")
    return tuple(found)


def _seed_text(text: str) -> list[int]:
    seeds: list[int] = []
    for part in (part.strip() for part in text.split(",")):
        # ASCII digits only: int() would also read '١' (Arabic-Indic one), and an empty part
        # is a typo (1,,2), not a separator
        first, dash, last = part.partition("-") if not part.startswith("-") else (part, "", "")
        if not all(p.isascii() and p.removeprefix("-").isdigit()
                   for p in ((first, last) if dash else (first,))):
            raise ConfigError(f"expected comma-separated integers or ranges such as 0,1,2 or "
                              f"0-4 (got {text!r})", source="--seeds")
        if dash and int(first) > int(last):
            raise ConfigError(f"range {part} is empty: write it low-high, e.g. 0-4",
                              source="--seeds")
        seeds += list(range(int(first), int(last) + 1)) if dash else [int(first)]
    return seeds

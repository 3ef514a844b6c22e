"""Name -> component registries, one per extension kind, each filled by a one-line decorator.

    @regbench.register_model("mlp", Params=MLPParams)   # models/base.py    MODELS
    @regbench.register_dataset("digits", spec=...)      # data/base.py      DATASETS
    @regbench.register_regularizer("l2")                # regularizers/     REGULARIZERS
    @regbench.register_tracker("tensorboard")           # here              TRACKERS
    @regbench.register_executor("local")                # here              EXECUTORS

Built-in entries and plugins' register through the same functions; an entry is a plugin's when
the code it registers lives outside the regbench package (:func:`builtin`). A name registered
twice is an error, and an unknown name lists the registered ones.

Trackers and executors are described here, below every stage that uses them (the tracking and
engine stages fill them; a plugin reaches them without importing either).
"""
from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Optional, Protocol, TypeVar, runtime_checkable

from regbench.vocabulary import RunSpec, Task

T = TypeVar("T")


def did_you_mean(name: str, choices: list[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


class UnknownName(KeyError):
    """Raised for a name missing from a registry; the text lists the valid choices."""

    def __init__(self, kind: str, name: str, choices: list[str]):
        self.kind, self.name, self.choices = kind, name, choices
        self.text = (f"unknown {kind} '{name}'{did_you_mean(name, choices)}; "
                     f"expected one of: {', '.join(choices)}")
        super().__init__(self.text)

    def __str__(self) -> str:
        return self.text


class Registry(Generic[T]):
    """An ordered mapping from snake_case name to a registered object."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = obj
            return obj
        return decorator

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise UnknownName(self.kind, name, self.names())
        return self._entries[name]

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def items(self):
        return self._entries.items()


def builtin(module: Optional[str]) -> bool:
    """Whether code defined in ``module`` is part of regbench (else a plugin's)."""
    return module is not None and (module == "regbench" or module.startswith("regbench."))


def first_doc_line(obj: Any, fallback: str) -> str:
    """The first line of ``obj``'s docstring, or ``fallback``."""
    doc = inspect.getdoc(obj) or ""
    return doc.splitlines()[0] if doc else fallback


def params_model(function: Callable, skip: int, what: str, *,
                 Params: Optional[type] = None, base: Optional[type] = None,
                 exclude: Iterable[str] = ()) -> type:
    """The pydantic model of ``function``'s config keys: its parameters after the first
    ``skip``, less those named in ``exclude``; ``what`` names the entry in errors ("model
    mlp"). Given ``Params``, that model, once its fields are checked to be exactly those
    parameters; else one made from the signature (annotations as types, defaults as defaults,
    a parameter without a default required) on ``base``."""
    name = what.split()[-1]
    keys = [p for p in list(inspect.signature(function).parameters.values())[skip:]
            if p.name not in set(exclude)]
    if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in keys):
        raise TypeError(f"{what}: *args/**kwargs cannot be config keys; name each parameter")
    if Params is not None:
        fields, names = list(Params.model_fields), [p.name for p in keys]
        if sorted(fields) != sorted(names):
            raise TypeError(f"{what}: its config parameters {names} must be the fields of "
                            f"{Params.__name__} {fields}")
        return Params
    from pydantic import create_model  # only where a model is registered, not at start-up

    fields = {p.name: (Any if p.annotation is p.empty else p.annotation,
                       ... if p.default is p.empty else p.default) for p in keys}
    return create_model(f"{name}_params", __base__=base, **fields)


def _described(obj: Any, kind: str, check: Optional[Callable[..., None]],
               summary: Optional[str]) -> dict[str, Any]:
    """An entry's check (none: accept anything), summary (the docstring's first line) and
    whether a plugin registered it."""
    return {"check": check or _no_check,
            "summary": summary or first_doc_line(obj, f"plugin {kind}"),
            "plugin": not builtin(getattr(obj, "__module__", None))}


# ----------------------------------------------------------------------------- trackers

@runtime_checkable
class Tracker(Protocol):
    """Receives every run's numbers besides its folder (``--log NAME``).

    The driver calls it after it has written the run's folder; an exception becomes a warning
    naming the run and the tracker is left out for the rest of the experiment."""

    name: str

    def log_run(self, spec: RunSpec, summary: dict[str, Any], rows: list[dict],
                weights: Any, run_dir: Path) -> None:
        """A run just trained: its spec, summary.json, metrics.csv rows and final weights
        (a flat numpy array, or None)."""

    def replay(self, spec: RunSpec, run_dir: Path) -> None:
        """A completed run that was skipped (resumed): log it from its folder if missing."""

    # Optional: ``log_epoch(spec, row, run_dir)``, each epoch's metrics.csv row as the epoch
    # ends (live curves); a tracker without it gets each run whole from ``log_run``, which then
    # sends only the epochs ``log_epoch`` has not (regbench.tracking.Trackers)

    def finish(self, interrupted: bool = False) -> None:
        """After the tables and the report."""


@dataclass(frozen=True)
class TrackerEntry:
    open: Callable[..., Tracker]      # (plan, results_dir, **options) -> Tracker
    check: Callable[..., None]        # (**options): raise RegbenchError when unusable (exit 2)
    summary: str
    plugin: bool


TRACKERS: Registry[TrackerEntry] = Registry("tracker")


def _no_check(**options: Any) -> None:
    return None


def register_tracker(name: str, *, check: Optional[Callable[..., None]] = None,
                     summary: Optional[str] = None):
    """Register a tracker class, or a function returning one, under ``name`` (``--log name``).

    It is called as ``open(plan, results_dir, **options)`` once per experiment, before anything
    trains; ``options`` are the experiment's tracker settings (today ``mlflow_uri`` and
    ``resume``: accept ``**options`` to ignore those you do not use). ``check(**options)``
    runs before that (and before ``regbench tune``'s search): raise ``RegbenchError`` when the
    tracker cannot work (a missing package, an unusable store). A class without a ``name``
    gets the registered one."""
    def decorator(open_: Callable[..., Tracker]):
        if isinstance(open_, type) and not getattr(open_, "name", None):
            open_.name = name
        TRACKERS.register(name)(TrackerEntry(open=open_, **_described(open_, "tracker", check,
                                                                        summary)))
        return open_
    return decorator


# ----------------------------------------------------------------------------- executors

Item = tuple[Task, Any]      # (task, what regbench.engine.execute.execute_task returns)


@runtime_checkable
class Executor(Protocol):
    """Where runs train (``--executor NAME``). It returns results; only the driver writes run
    folders, so an executor's workers need no shared filesystem (a plugin executor's runs get
    no mid-run checkpoints: those are written where a run trains)."""

    def run(self, tasks: Iterable[Task], threads: int,
            progress: Any = None) -> Iterator[Item]:
        """Train every task (a run spec, or a fused group of them) and yield ``(task,
        result)`` as each finishes. ``tasks`` is a list (submit it all), or a lazy iterator
        (``regbench tune``: take the next task only once earlier results were yielded).
        ``progress`` (may be None) has ``run_started(task)`` and ``epoch(spec, row)``: the
        run's own spec, a fused group's member's too (its trackers log each member live)."""

    def interrupt(self) -> Iterator[Item]:
        """Ctrl-C: stop handing out tasks and yield the partial results of those in flight."""

    def close(self) -> None:
        """Release workers; called once, after ``run`` (and ``interrupt``)."""


@dataclass(frozen=True)
class ExecutorEntry:
    build: Callable[..., Executor]    # (workers=, address=, cores=) -> Executor
    check: Callable[..., None]        # (workers=, address=): raise RegbenchError (exit 2)
    summary: str
    plugin: bool


EXECUTORS: Registry[ExecutorEntry] = Registry("executor")


def register_executor(name: str, *, check: Optional[Callable[..., None]] = None,
                      summary: Optional[str] = None):
    """Register an executor class, or a function returning one, under ``name``
    (``--executor name``). It is called as ``build(workers=N, address=A, cores=C)``:
    ``--workers``, ``--address`` (None unless given) and this machine's usable cores.
    ``check(workers=, address=)`` runs before anything is written: raise ``RegbenchError``
    for settings it cannot use (a missing package, an address it has no use for).

    Each task is trained by ``regbench.engine.executors.train_task(task, threads, on_epoch)``
    (in a worker or in this process), which never raises for a run's own failure."""
    def decorator(build: Callable[..., Executor]):
        EXECUTORS.register(name)(ExecutorEntry(build=build, **_described(build, "executor", check,
                                                                         summary)))
        return build
    return decorator

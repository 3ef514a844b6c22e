"""Executors: where tasks train. A task is a run spec, or a fused group of them
(:mod:`regbench.engine.fused`); every executor yields ``(task, result)`` to the driver (a
RunResult, or a list of each member's for a group), which alone writes run folders, so workers
need no shared filesystem (the ``Executor`` protocol in :mod:`regbench.registry`).

    executor.run(tasks, threads, progress)  -> (task, result) as tasks finish
    executor.interrupt()                    -> (task, partial result) of the tasks in flight
    executor.close()

``--executor NAME`` picks one from the ``EXECUTORS`` registry (:func:`make_executor`); the
built-ins register below with ``register_executor``, as a plugin's executor does:

- ``local``: ``SequentialExecutor``, one run after another in this process (epoch-level
  progress), or with ``--workers N`` ``ProcessExecutor``, N spawned processes; each loads the
  dataset once (the ``load_bundle`` cache lives as long as the process) and sends start/epoch
  events back on a queue.
- ``ray``: ``RayExecutor``, one Ray task per task (``num_cpus`` = threads per run, ``num_gpus`` =
  1 / ``train.runs_per_gpu`` on CUDA), which sends the same events through a
  ``ray.util.queue.Queue`` (an actor). A task whose node or worker process dies runs again
  (``NODE_RETRIES``); a run that fails is a result, never retried. With ``--address`` the
  plugin files go to the nodes with the job (``runtime_env``).
- ``slurm``: :mod:`regbench.engine.slurm`, a job array whose elements write their own run
  folders on the shared disk.

With ``--workers N`` on several GPUs (or ``--gpus``), each local worker process is pinned to
one GPU, round-robin (``gpu_slots``, ``pin_gpu``).

Either way the driver hands each epoch's row to ``progress.epoch(spec, row)`` as it arrives (a
fused group's rows one per member, with the member's spec): the progress display and the live
trackers (``runner.EpochRelay``).

Ctrl-C and SIGTERM: workers ignore the terminal's SIGINT while idle, and SIGTERM; the driver
decides. A worker whose driver dies (SIGKILL) exits within a second. On interrupt it stops
handing out runs, signals the workers that are training (SIGINT, turned into KeyboardInterrupt inside
the training loop, which returns the partial run as ``interrupted``) and collects those results.
"""
from __future__ import annotations

import inspect
import math
import os
import re
import signal
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

from regbench.engine.result import GROUP_KEY, failed_task
from regbench.engine.threads import apply_wait_policy, current_wait_policy, default_threads
from regbench.errors import ConfigError, RegbenchError
from regbench.registry import EXECUTORS, Executor, UnknownName, register_executor
from regbench.vocabulary import RunSpec, Task

NODE_RETRIES = 3                 # a Ray task whose node or worker process died runs again
                                 # (never one whose run failed: that is its result)
INTERRUPT_GRACE_SECONDS = 30.0   # how long the driver waits for interrupted runs to report back
POLL_SECONDS = 0.2               # driver wake-up interval (progress events, Ctrl-C)
PARENT_POLL_SECONDS = 0.5        # how often a worker checks that its driver still lives
# A worker process costs its start-up before it trains (spawning, importing torch and
# regbench: ~2.4 s each on 2 loaded cores, benchmarks/sweep_workers.py), which a sweep of a few
# seconds never earns back: --workers trains the first task here and starts the processes for
# the rest only when they would take at least this long here (at its pace per run-epoch).
# REGBENCH_WORKERS_PAYBACK=0 always starts them.
PAYBACK_SECONDS = 10.0
PIN_SECONDS = 60.0               # a worker waits this long for its GPU slot (the driver has
                                 # queued one per worker before starting them)

Item = tuple[Task, Any]   # (run spec, RunResult)


def train_task(task: Task, threads: int, on_epoch=None):
    """Train one task (a run spec, or a fused group) in this process: a run's RunResult, or a
    group's (spec, RunResult) per member; never raises for a run's own failure. What every
    executor's workers call, a plugin's included. ``on_epoch(spec, row)``: each run's row as
    its epoch ends (a group's member by member)."""
    # executors are imported by the CLI and by spawned workers before they set their wait
    # policy: torch loads only here
    from regbench.engine.execute import execute_task  # deferred: torch

    return execute_task(task, threads, on_epoch)


class SequentialExecutor:
    """Runs one after another in this process. A Ctrl-C lands in the training loop itself."""

    def run(self, specs: Iterable[Task], threads: int,
            progress=None) -> Iterator[Item]:
        for spec in specs:
            if progress is not None:
                progress.run_started(spec)
            on_epoch = progress.epoch if progress is not None else None
            yield spec, train_task(spec, threads, on_epoch)

    def interrupt(self) -> Iterator[Item]:
        return iter(())

    def close(self) -> None:
        pass


# ----------------------------------------------------------------------------- worker processes

_WORKER: dict[str, Any] = {}   # per worker process: event queue, stop flag, threads


def _watch_parent(parent: int) -> None:
    """Exit as soon as the driver is gone (SIGKILL, a crash): a worker whose results nobody
    will collect must not go on training, or idle holding its memory, forever."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_SECONDS)
    os._exit(1)


def gpu_slots(gpus: list, runs_per_gpu: int, workers: int) -> list:
    """The GPU each worker process is pinned to: round-robin over ``gpus``, at most
    ``runs_per_gpu`` processes on one GPU (so at most len(gpus) × runs_per_gpu workers)."""
    return [gpus[i % len(gpus)] for i in range(min(workers, len(gpus) * runs_per_gpu))]


def pin_gpu(tokens) -> str:
    """A worker's GPU, taken from the driver's queue of slots before torch loads: the process
    then sees that one GPU alone, as ``cuda`` (CUDA_VISIBLE_DEVICES)."""
    gpu = str(tokens.get(timeout=PIN_SECONDS))
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    return gpu


def _init_worker(threads: int, events, stop, wait_policy: Optional[str],
                 driver: Optional[int] = None, gpu_tokens=None) -> None:
    """Process start: watch the driver first (exit when it dies: importing torch takes seconds
    on a loaded machine, and a driver killed meanwhile must not leave this process behind),
    the driver's OpenMP wait policy (before torch loads), ignore the terminal's Ctrl-C and a
    process group's SIGTERM (the driver decides and forwards them), set torch threads."""
    import threading

    # the driver's pid comes from the driver: one that died before this line must count too
    threading.Thread(target=_watch_parent, args=(driver or os.getppid(),), daemon=True,
                     name="regbench-parent-watch").start()
    apply_wait_policy(wait_policy)
    if gpu_tokens is not None:
        pin_gpu(gpu_tokens)
    import torch  # deferred: OpenMP reads the wait policy when torch loads

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    torch.set_num_threads(threads)
    # progress events are best effort: a worker must never hang at exit flushing them to a
    # driver that stopped reading (after Ctrl-C)
    events.cancel_join_thread()
    _WORKER.update(events=events, stop=stop)


def _interrupt_once(signum, frame) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second signal must not break the clean-up
    raise KeyboardInterrupt


def _worker_run(spec: RunSpec, threads: int):
    """Train one run in a worker process; None when the sweep was stopped before it began."""
    events, stop = _WORKER["events"], _WORKER["stop"]
    if stop.is_set():
        return None
    run_id = spec["run_id"]

    def on_epoch(member, row):       # a fused group's rows come member by member
        events.put(("epoch", member["run_id"], row))
        if stop.is_set():  # a stop that raced the signal handler's installation
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, _interrupt_once)
    try:
        events.put(("start", run_id, os.getpid()))
        return train_task(spec, threads, on_epoch)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _payback_from_environment() -> float:
    value = os.environ.get("REGBENCH_WORKERS_PAYBACK", "").strip()
    if not value:
        return PAYBACK_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not seconds >= 0:
        raise ConfigError(f"must be a number of seconds >= 0 (got {value!r}); 0 always starts "
                          "the worker processes", source="REGBENCH_WORKERS_PAYBACK")
    return seconds


class ProcessExecutor:
    """``--workers N``: N runs at once in spawned processes (a fresh interpreter: no forked torch
    state, same behaviour on Linux and macOS)."""

    def __init__(self, workers: int, payback: Optional[float] = None,
                 gpus: Optional[list[str]] = None):
        self.workers = len(gpus) if gpus else workers
        self.gpus = list(gpus or [])        # each worker's GPU (gpu_slots), or none
        self.payback = payback if payback is not None else _payback_from_environment()
        self.pool = None
        self.futures: dict[Any, dict[str, Any]] = {}
        self.active: dict[str, int] = {}          # run id -> worker pid, while training
        self.by_id: dict[str, dict[str, Any]] = {}
        self.progress = None

    def run(self, specs: Iterable[Task], threads: int,
            progress=None) -> Iterator[Item]:
        """A list is submitted at once (the pool queues it: no worker waits for the driver);
        a lazy iterator one spec per free worker, taken after the previous results were handed
        on (``regbench tune`` asks its study for the next trial then, having told it the last
        one's value)."""
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        if isinstance(specs, list) and len(specs) > 1 and self.payback > 0 and not self.gpus:
            specs = yield from self._here_while_short(specs, progress)   # (GPU runs: on theirs)
        size = len(specs) if isinstance(specs, list) else self.workers
        feed = iter(specs)
        if not size:
            return
        context = multiprocessing.get_context("spawn")
        self.events, self.stop = context.Queue(), context.Event()
        self.progress = progress
        workers = min(self.workers, size)
        tokens = None
        if self.gpus:
            tokens = context.Queue()
            for gpu in self.gpus[:workers]:
                tokens.put(gpu)
        # the workers' wait policy is the driver's view of the machine: their siblings, started
        # together, are not "other work" to wait passively for
        self.pool = ProcessPoolExecutor(workers, mp_context=context,
                                        initializer=_init_worker,
                                        initargs=(threads, self.events, self.stop,
                                                  current_wait_policy(), os.getpid(), tokens))
        pending: set = set()
        window = math.inf if isinstance(specs, list) else self.workers

        def submit() -> None:   # keep every worker busy
            while len(pending) < window and not self.stop.is_set():
                spec = next(feed, None)
                if spec is None:
                    return
                self.by_id.update(by_run_id(spec))
                future = self.pool.submit(_worker_run, spec, threads)
                self.futures[future] = spec
                pending.add(future)

        submit()
        while pending:
            done, pending_now = wait(pending, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
            pending.intersection_update(pending_now)
            self._drain_events()
            for future in done:
                item = self._collect(future)
                if item is not None:
                    yield item
            submit()

    def _here_while_short(self, specs: list[Task], progress) -> Iterator[Item]:
        """Train the first task in this process with every core, timed; the rest too when
        they would take less than ``payback`` seconds at its pace per run-epoch (spawning
        would cost more than it saves). Returns the tasks left for the worker processes."""
        here = SequentialExecutor()
        started = time.perf_counter()
        trained = 0             # run-epochs the first task really trained (resumed, stopped
        for task, result in here.run(specs[:1], default_threads(1), progress):  # early: fewer)
            trained = _trained(task, result)
            yield task, result
        rest = specs[1:]
        seconds = time.perf_counter() - started
        if not trained or seconds / trained * sum(map(_size, rest)) >= self.payback:
            return rest         # no pace to go by (it failed at once): the processes decide
        yield from here.run(rest, default_threads(1), progress)
        return []

    def _collect(self, future) -> Optional[Item]:
        spec = self.futures[future]
        self.active.pop(spec["run_id"], None)
        try:
            result = future.result()
        except Exception as exc:  # a worker died (killed, out of memory): the sweep goes on
            return spec, failed_task(spec, f"worker process failed: {type(exc).__name__}: {exc}")
        return None if result is None else (spec, result)

    def _drain_events(self) -> None:
        import queue

        while True:
            try:
                kind, run_id, payload = self.events.get_nowait()
            except (queue.Empty, OSError, ValueError):
                return
            spec = self.by_id.get(run_id)
            if kind == "start":
                self.active[run_id] = payload
                if self.progress is not None:
                    self.progress.run_started(spec)
            elif kind == "epoch" and self.progress is not None:
                self.progress.epoch(spec, payload)

    def interrupt(self) -> Iterator[Item]:
        """Stop handing out runs, interrupt the ones training, yield their partial results."""
        from concurrent.futures import wait

        if self.pool is None:
            return
        self.stop.set()
        for future in self.futures:
            future.cancel()  # those not started yet
        unfinished = {f for f in self.futures if not f.done()}
        deadline = time.monotonic() + INTERRUPT_GRACE_SECONDS
        signalled: set[str] = set()
        while unfinished and time.monotonic() < deadline:
            self._drain_events()
            for run_id, pid in list(self.active.items()):
                if run_id not in signalled:
                    signalled.add(run_id)
                    try:
                        os.kill(pid, signal.SIGINT)
                    except ProcessLookupError:
                        pass
            done, unfinished = wait(unfinished, timeout=POLL_SECONDS)
            for future in done:
                if future.cancelled():
                    continue
                item = self._collect(future)
                if item is not None:
                    yield item

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


def _size(task: Task) -> int:
    """A task's planned epochs summed over its runs: what the rest are estimated by."""
    return sum(int(spec["train"]["epochs"]) for spec in task.get(GROUP_KEY, [task]))


def _trained(task: Task, result) -> int:
    """Run-epochs a task trained in this call (a resumed run's earlier epochs left out)."""
    results = [one for _, one in result] if GROUP_KEY in task and isinstance(result, list) \
        else [result]
    return sum(max(0, len(getattr(one, "rows", ()) or ())
                   - int((getattr(one, "summary", None) or {}).get("resumed_from_epoch") or 0))
               for one in results)


def by_run_id(task: Task) -> dict[str, Any]:
    """The task under its run id, and a fused group's members under theirs (their epochs
    arrive one per member)."""
    return {task["run_id"]: task, **{m["run_id"]: m for m in task.get(GROUP_KEY, ())}}


# ----------------------------------------------------------------------------- Ray

def _ray_run(spec: RunSpec, threads: int, events=None):
    """A Ray task: the worker process keeps its ``load_bundle`` cache between tasks. ``events``
    (a ``ray.util.queue.Queue``) takes its start and each epoch's row, as the process workers'
    queue does; a put waits until the row is in the queue, so the driver has every row of a
    task by the time its result is ready. Best effort: a queue gone never fails the run."""
    def send(event) -> None:
        try:
            events.put(event)
        except Exception:         # the driver stopped (Ctrl-C, shutdown): train on regardless
            pass

    if events is None:
        return train_task(spec, threads)
    send(("start", spec["run_id"], None))
    return train_task(spec, threads, lambda member, row: send(("epoch", member["run_id"], row)))


def shipped_modules(files: list[str], folder: Path) -> dict[str, str]:
    """Each plugin file copied into ``folder`` as a module whose name no other module has
    (``regbench_plugin_<its content's digest>_<its name>``: two plugin files named alike,
    or one named like a standard module, stay their own); file -> module name."""
    import hashlib
    import shutil

    names = {}
    for path in files:
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
        name = f"regbench_plugin_{digest}_{re.sub(r'[^0-9A-Za-z_]', '_', Path(path).stem)}"
        shutil.copyfile(path, folder / f"{name}.py")
        names[path] = name
    return names


def ray_gpus(spec: RunSpec, cluster_has_gpus: Callable[[], bool]) -> float:
    """The GPUs a Ray task asks for: a share of one (1 / train.runs_per_gpu) when the run
    trains on CUDA (``device: auto`` on a cluster with GPUs: Ray hides them from a task that
    asks for none), else none."""
    device = spec["train"]["device"]
    if device == "cuda" or (device == "auto" and cluster_has_gpus()):
        return 1 / int(spec["train"].get("runs_per_gpu") or 1)
    return 0


def import_ray():
    try:
        import ray  # deferred: heavy, and an optional extra
    except ImportError:
        raise RegbenchError("--executor ray needs Ray, which is not installed; install it with "
                            "pip install -e '.[ray]' (or pip install 'ray>=2.9')") from None
    return ray


class RayExecutor:
    """Each run a Ray task. ``address`` joins a running cluster (regbench must be importable on
    its nodes); without it a local Ray is started with this machine's cores and stopped at the end.
    """

    def __init__(self, workers: int, address: Optional[str] = None, cores: Optional[int] = None,
                 plugins: Iterable[str] = ()):
        import logging

        ray = import_ray()
        self.ray = ray
        self.workers, self.address = workers, address
        self.shipped: dict[str, str] = {}       # plugin file -> the module name nodes import
        self.folder: Optional[str] = None       # where the shipped copies were made
        self.started = False
        self.refs: dict[Any, dict[str, Any]] = {}
        self.events = None                      # the tasks' start and epoch events
        self.by_id: dict[str, dict[str, Any]] = {}
        self.progress = None
        if not ray.is_initialized():
            options = dict(include_dashboard=False, log_to_driver=False,
                           logging_level=logging.WARNING, configure_logging=True)
            try:
                if address:       # the plugin files go to the nodes with the job: they
                    # need not share this disk (regbench itself must be installed there)
                    ray.init(address=address, runtime_env=self._ship(plugins), **options)
                else:             # "local": a new Ray, never one a `ray start` left running
                    ray.init(address="local", num_cpus=cores, **options)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = f"the Ray cluster at {address}" if address else "a local Ray"
                raise RegbenchError(f"--executor ray: cannot start or join {where}: {exc}") from None
            self.started = True

    def _gpus(self, spec: RunSpec) -> float:
        return ray_gpus(spec, lambda: self.ray.cluster_resources().get("GPU", 0) > 0)

    def run(self, specs: Iterable[Task], threads: int,
            progress=None) -> Iterator[Item]:
        """A list is submitted at once (Ray schedules it); a lazy iterator (``regbench tune``)
        one task per free slot: ``--workers`` slots, or as many as the cluster has CPUs."""
        remote = self.ray.remote(_ray_run)
        feed = iter(specs)
        slots = [math.inf if isinstance(specs, list) else None]   # None: from the first task
        self.progress = progress
        if progress is not None and self.events is None:
            from ray.util.queue import Queue  # deferred: ray
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            # an actor that needs no CPU of its own (it never takes a task's slot), on the
            # driver's node: a worker node lost must not take the progress with it
            here = NodeAffinitySchedulingStrategy(
                self.ray.get_runtime_context().get_node_id(), soft=False)
            self.events = Queue(actor_options={"num_cpus": 0, "scheduling_strategy": here})

        def submit() -> None:
            while slots[0] is None or len(self.refs) < slots[0]:
                spec = next(feed, None)
                if spec is None:
                    return
                cpus = spec["train"].get("threads") or threads
                gpus = self._gpus(spec)
                if slots[0] is None:
                    slots[0] = self._slots(cpus, gpus)
                # a cluster's task runs again when its node dies; a local Ray has one node,
                # where a dead worker process is the run's own crash, a result
                retries = NODE_RETRIES if self.address else 0
                ref = remote.options(num_cpus=cpus, num_gpus=gpus, max_retries=retries,
                                     retry_exceptions=False
                                     ).remote(self._as_shipped(spec), threads, self.events)
                self.refs[ref] = spec
                self.by_id.update(by_run_id(spec))

        submit()
        while self.refs:
            ready, _ = self.ray.wait(list(self.refs), num_returns=1, timeout=POLL_SECONDS)
            self._drain_events()     # a ready task's rows are all in the queue by now
            for ref in ready:
                spec = self.refs.pop(ref)
                try:
                    yield spec, self.ray.get(ref)
                except self.ray.exceptions.RayError as exc:
                    yield spec, failed_task(spec, f"Ray task failed: {type(exc).__name__}: "
                                                    f"{str(exc).splitlines()[0]}")
            submit()

    def _ship(self, plugins: Iterable[str]) -> Optional[dict[str, Any]]:
        """The job's runtime_env: the plugin files, as modules (``shipped_modules``)."""
        import tempfile

        files = [p for p in plugins if p.endswith(".py")]
        if not files:
            return None
        self.folder = tempfile.mkdtemp(prefix="regbench-ship-")
        self.shipped = shipped_modules(files, Path(self.folder))
        return {"py_modules": [str(Path(self.folder) / f"{n}.py")
                               for n in self.shipped.values()]}

    def _as_shipped(self, task: Task) -> Task:
        """The task as a cluster's node loads it: a plugin file shipped with the job
        (``runtime_env``'s ``py_modules``) by its module name."""
        if not any(p in self.shipped for p in task.get("plugins", ())):
            return task

        def rename(spec: RunSpec) -> RunSpec:
            return {**spec, "plugins": [self.shipped.get(p, p)
                                        for p in spec.get("plugins", ())]}

        shipped = rename(task)
        if GROUP_KEY in task:
            shipped[GROUP_KEY] = [rename(member) for member in task[GROUP_KEY]]
        return shipped

    def _drain_events(self) -> None:
        """The tasks' start and epoch events so far, handed to ``progress``."""
        if self.events is None:
            return
        try:
            count = self.events.qsize()
            events = self.events.get_nowait_batch(count) if count else []
        except Exception:         # the queue's actor is gone: the rows come with the results
            return
        for kind, run_id, payload in events:
            spec = self.by_id.get(run_id)
            if spec is None:
                continue
            if kind == "start":
                self.progress.run_started(spec)
            elif kind == "epoch":
                self.progress.epoch(spec, payload)

    def _slots(self, cpus: float, gpus: float) -> int:
        """Tasks that can run at once: --workers, else what the cluster's CPUs (and GPUs, for
        GPU tasks) hold at this task's demand."""
        if self.workers > 1:
            return self.workers
        resources = self.ray.cluster_resources()
        fits = resources.get("CPU", 1) // max(cpus, 1)
        if gpus:      # (1 // (1/5) is 4.0: a share's float rounding must not lose a slot)
            fits = min(fits, math.floor(resources.get("GPU", 0) / gpus + 1e-9))
        return max(1, int(fits))

    def interrupt(self) -> Iterator[Item]:
        """Cancel every task; runs in flight have no summary and are redone on resume."""
        for ref in list(self.refs):
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # already finished or gone: nothing to cancel
                pass
        self.refs.clear()
        return iter(())

    def close(self) -> None:
        if self.events is not None:   # a cluster that stays up keeps no queue of ours
            try:
                self.ray.kill(self.events.actor)
            except Exception:     # already gone
                pass
            self.events = None
        if self.started:
            self.ray.shutdown()
            self.started = False
        if self.folder is not None:          # the shipped copies, uploaded at ray.init
            import shutil

            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


# ----------------------------------------------------------------------------- the registry

def _local_check(workers: int = 1, address: Optional[str] = None, **options) -> None:
    if address:
        raise ConfigError("only used with --executor ray", source="--address")
    if workers > 1:
        _payback_from_environment()     # a bad value: exit 2 before anything is written


@register_executor("local", check=_local_check,
                   summary="this machine: in this process, or --workers N processes")
def local_executor(workers: int = 1, gpus: Optional[list[str]] = None, **options) -> Executor:
    return SequentialExecutor() if workers <= 1 and not gpus else \
        ProcessExecutor(workers, gpus=gpus)


@register_executor("ray", check=lambda **options: import_ray(),
                   summary="one Ray task per run, on a local Ray or the cluster at --address")
def ray_executor(workers: int = 1, address: Optional[str] = None, cores: Optional[int] = None,
                 plugins: Iterable[str] = (), **options) -> Executor:
    return RayExecutor(workers, address, cores, plugins)


@register_executor("slurm", check=lambda **options: _slurm().check_slurm(**options),
                   summary="a Slurm job array through submitit (execution.slurm; --detach)")
def slurm_executor(workers: int = 1, *, results_dir, write, settings, detach: bool = False,
                   **options) -> Executor:
    return _slurm().SlurmExecutor(results_dir, write, settings["slurm"], detach, workers)


def _slurm():
    from regbench.engine import slurm  # deferred: submitit is an optional extra

    return slurm


def _entry(name: str):
    try:
        return EXECUTORS.get(name)
    except UnknownName as exc:
        raise ConfigError(str(exc), source="--executor") from None


def check_executor(name: str, workers: int = 1, address: Optional[str] = None) -> None:
    """Before anything is written: the executor registered, its settings usable (Ray
    installed for ``ray``, no ``--address`` for ``local``): exit 2 otherwise."""
    _entry(name).check(workers=workers, address=address)


def make_executor(name: str, workers: int = 1, address: Optional[str] = None,
                  cores: Optional[int] = None, **context: Any) -> Executor:
    """The executor registered as ``name`` (``--executor``), checked, then built for
    ``--workers``, ``--address`` and this machine's usable ``cores``. ``context`` (the results
    folder, the run-folder writer, the config's ``execution`` settings, ``--detach``) goes to
    a build that takes those keywords (or ``**options``); a plugin's that does not, never sees
    it."""
    entry = _entry(name)
    entry.check(workers=workers, address=address)
    accepted = inspect.signature(entry.build).parameters.values()
    if not any(p.kind is p.VAR_KEYWORD for p in accepted):
        names = {p.name for p in accepted}
        context = {k: v for k, v in context.items() if k in names}
    return entry.build(workers=workers, address=address, cores=cores, **context)

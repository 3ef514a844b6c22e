"""``--executor slurm``: a command's tasks as one Slurm job array, submitted through submitit.

Each array element trains a batch of tasks (``execution.slurm.runs_per_element``; a fused
group counts as one) and writes each run's folder into the results folder itself, as its
runs finish: the results folder must be on a disk the cluster's nodes share, as submitit's
own job folder (``OUT/NAME/slurm/``) must. The driver keeps which element holds which runs in
``slurm/jobs.json`` and follows the elements with ``squeue``, so it needs no job accounting
(``sacct``):

- an element still pending or running holds its runs: the same command run again waits for
  it (or, with ``--detach``, leaves it) instead of submitting them twice;
- a run whose folder its element wrote is handed to the driver as a :class:`WrittenRun`
  (trackers and tables read the folder; it is not written again);
- an element gone from the queue without writing a run (``scancel``, killed, out of memory, a
  node lost) leaves that run failed, so the next invocation trains it again; nothing it had
  completed is retrained.

Preemption and time limits: submitit signals the element before Slurm kills it and requeues
it (:class:`Element` is ``Checkpointable``); the requeued element skips the runs it already
wrote and resumes the one in flight from its mid-run checkpoint (``train.checkpoint_every``).
Ctrl-C stops the driver's waiting, never the jobs: it says which are still queued.
"""
from __future__ import annotations

import getpass
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

from regbench.engine.result import GROUP_KEY, WrittenRun, failed_task, members
from regbench.errors import ConfigError, RegbenchError
from regbench.results import atomic_write_text, read_summary, to_json
from regbench.vocabulary import RUNS_DIR, SLURM_LIVE_STATES, RunSpec, Task

JOBS_DIR = "slurm"             # submitit's folder (scripts, pickles, logs) and jobs.json
JOBS_FILE = "jobs.json"        # element -> the run ids it trains, per submitted array
POLL_SECONDS = 2.0             # how often the driver asks squeue while it waits
SIGNAL_SECONDS = 90            # Slurm warns an element this long before its time limit
SQUEUE_TRIES = 10             # squeue failing this many times in a row ends the wait (exit 2)
GONE_GRACE_SECONDS = 5.0       # an element that left the queue may still be closing its files
SUMMARY_KEY = "slurm_job"      # summary.json: the element (JOB_TASK) that wrote the run


def import_submitit():
    try:
        import submitit  # deferred: an optional extra
    except ImportError:
        raise RegbenchError("--executor slurm needs submitit, which is not installed; install "
                            "it with pip install -e '.[slurm]' (or pip install submitit)") from None
    return submitit


def check_slurm(**options: Any) -> None:
    """Before anything is written: submitit installed and Slurm's commands on the PATH."""
    if options.get("address"):
        raise ConfigError("only used with --executor ray", source="--address")
    import_submitit()
    missing = [tool for tool in ("sbatch", "squeue") if shutil.which(tool) is None]
    if missing:
        raise RegbenchError(f"--executor slurm: {' and '.join(missing)} not found on the PATH; "
                            "run regbench on a machine that submits to Slurm (a login node), "
                            "or start the repository's single-node Slurm: "
                            "eval $(tools/local_slurm.sh start)")


def element_id() -> str:
    """This process's array element as JOB_TASK (or a plain job's id), from Slurm's variables."""
    job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID", "")
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{job}_{task}" if task is not None else job


def _written_by(run_dir: Path, spec: RunSpec, element: str) -> Optional[dict[str, Any]]:
    """The run's summary when ``element`` wrote it for this config, else None."""
    summary = read_summary(run_dir)
    if summary and summary.get(SUMMARY_KEY) == element and \
            summary.get("config_hash") == spec["config_hash"]:
        return summary
    return None


def _task_specs(task: Task) -> list[RunSpec]:
    return list(task.get(GROUP_KEY, [task]))


class Element:
    """One array element: trains its tasks in order and writes each run's folder with
    ``write`` (the driver's own writer: the overfitting diagnosis, then the folder). A
    requeued element (preempted, or past its time limit) skips what it already wrote."""

    def __init__(self, tasks: list[Task], threads: int, results_dir: str,
                 write: Callable[[Path, RunSpec, Any], None]):
        self.tasks, self.threads, self.results_dir, self.write = \
            tasks, threads, results_dir, write

    def __call__(self) -> list[str]:
        from regbench.engine.execute import execute_task  # deferred: torch, in the element

        me, runs = element_id(), Path(self.results_dir) / RUNS_DIR
        done = []
        for task in self.tasks:
            specs = _task_specs(task)
            if all(_written_by(runs / s["run_id"], s, me) for s in specs):
                continue           # requeued after writing it
            result = execute_task(task, self.threads)
            for spec, one in members(task, result):
                one.summary[SUMMARY_KEY] = me
                self.write(Path(self.results_dir), spec, one)
                done.append(spec["run_id"])
        return done

    def checkpoint(self):          # submitit: requeue the same element (submitit.helpers.Checkpointable)
        return import_submitit().helpers.DelayedSubmission(self)


def queue_states(job_ids: Iterable[str]) -> dict[str, str]:
    """Each element of the given arrays that Slurm still knows, as JOB_TASK -> state
    (``squeue --array``: pending elements one per line); elements gone are absent."""
    wanted = {str(j) for j in job_ids}
    if not wanted:
        return {}
    command = ["squeue", "--noheader", "--array", "--states=all", "--user", getpass.getuser(),
               "--format=%i|%T"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RegbenchError(f"--executor slurm: squeue failed ({exc})") from None
    if done.returncode != 0:
        raise RegbenchError(f"--executor slurm: squeue failed: {done.stderr.strip()[:300]}")
    states = {}
    for line in done.stdout.splitlines():
        element, _, state = line.strip().partition("|")
        if element.split("_")[0] in wanted:
            states[element] = state.strip()
    return states


def read_jobs(results_dir: Path) -> list[dict[str, Any]]:
    """The arrays this folder's commands submitted: [{job, elements: {JOB_TASK: [run ids]}}];
    a file that cannot be read counts as none (its elements' runs are submitted again)."""
    path = results_dir / JOBS_DIR / JOBS_FILE
    try:
        arrays = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return []
    if not isinstance(arrays, list):
        return []
    return [a for a in arrays if isinstance(a, dict) and isinstance(a.get("job"), str)
            and isinstance(a.get("elements"), dict)
            and all(isinstance(ids, list) for ids in a["elements"].values())]


def run_elements(results_dir: Path) -> dict[str, tuple[str, Optional[str]]]:
    """run id -> (the element that last took it, its state in Slurm's queue: None once it has
    left it), for `regbench status`; empty when this folder never went to Slurm. Without
    squeue on this machine every state reads "unknown"."""
    arrays = read_jobs(Path(results_dir))
    if not arrays:
        return {}
    try:
        states: dict[str, Optional[str]] = dict(queue_states(a["job"] for a in arrays))
    except RegbenchError:
        states = {}
        unknown = True
    else:
        unknown = False
    return {run_id: (element, "UNKNOWN" if unknown else states.get(element))
            for a in arrays for element, ids in a["elements"].items() for run_id in ids}


class SlurmExecutor:
    """``--executor slurm``: see the module's docstring. ``settings`` is the config's
    ``execution.slurm``; ``detach`` submits and returns (``outstanding`` names the jobs)."""

    def __init__(self, results_dir: Path, write: Callable, settings: dict[str, Any],
                 detach: bool = False, workers: int = 1):
        self.submitit = import_submitit()
        self.results_dir, self.write, self.detach = Path(results_dir), write, detach
        self.settings = dict(settings)
        if workers > 1 and self.settings.get("array_parallelism") is None:
            self.settings["array_parallelism"] = workers     # --workers: elements at once
        self.outstanding: list[str] = []      # arrays still queued when run() returned
        self.waiting: dict[str, list[Task]] = {}   # element -> its tasks not yet handed on

    def _parameters(self) -> dict[str, Any]:
        s = self.settings
        parameters = {"job_name": f"regbench-{self.results_dir.name}", "time": s["time"],
                      # the warning before the time limit: submitit's 90 s, or a quarter of a
                      # short limit (a 1-minute element would be warned as it starts)
                      "signal_delay_s": min(SIGNAL_SECONDS, s["time"] * 60 // 4),
                      "cpus_per_task": s["cpus_per_task"],
                      "array_parallelism": s.get("array_parallelism") or 64,
                      "additional_parameters": dict(s.get("additional") or {})}
        for key in ("partition", "mem"):
            if s.get(key):
                parameters[key] = s[key]
        if s.get("gpus_per_task"):
            parameters["gpus_per_task"] = s["gpus_per_task"]
        return parameters

    def _attach(self, tasks: list[Task]) -> list[Task]:
        """Tasks an element of an earlier command still holds wait for it; returns the rest."""
        arrays = read_jobs(self.results_dir)
        live = queue_states(a["job"] for a in arrays)
        held = {run_id: element for a in arrays for element, ids in a["elements"].items()
                if live.get(element) in SLURM_LIVE_STATES for run_id in ids}
        rest = []
        for task in tasks:
            specs = _task_specs(task)
            element = held.get(specs[0]["run_id"])
            if element is not None and all(held.get(s["run_id"]) == element for s in specs):
                self.waiting.setdefault(element, []).append(task)
            else:
                rest.append(task)
        return rest

    def _submit(self, tasks: list[Task], threads: int) -> None:
        if not tasks:
            return
        per = max(1, int(self.settings.get("runs_per_element") or 1))
        batches = [tasks[i:i + per] for i in range(0, len(tasks), per)]
        folder = self.results_dir / JOBS_DIR
        executor = self.submitit.SlurmExecutor(folder=str(folder / "%j"))
        executor.update_parameters(**self._parameters())
        elements = [Element(batch, threads, str(self.results_dir.resolve()), self.write)
                    for batch in batches]
        try:
            with executor.batch():
                jobs = [executor.submit(element) for element in elements]
        except Exception as exc:          # sbatch refused (a partition, a limit): exit 2 …
            raise RegbenchError(f"--executor slurm: submission failed: "
                                f"{str(exc).strip().splitlines()[-1][:400]}") from None
        ids = [job.job_id for job in jobs]
        array = ids[0].split("_")[0]
        record = {"job": array, "submitted": time.strftime("%Y-%m-%dT%H:%M:%S"),
                  "elements": {}}
        for job_id, batch in zip(ids, batches):
            record["elements"][job_id] = [s["run_id"] for t in batch for s in _task_specs(t)]
            self.waiting[job_id] = list(batch)
        arrays = [a for a in read_jobs(self.results_dir) if a["job"] != array] + [record]
        atomic_write_text(folder / JOBS_FILE, to_json(arrays))

    def run(self, tasks: Iterable[Task], threads: int, progress=None) -> Iterator[tuple]:
        tasks = list(tasks)
        threads = int(self.settings.get("cpus_per_task") or threads)
        self._submit(self._attach(tasks), threads)
        if self.detach:
            self.outstanding = sorted({e.split("_")[0] for e in self.waiting})
            return
        started: set[str] = set()
        gone: dict[str, float] = {}
        runs = self.results_dir / RUNS_DIR
        failures = 0
        while self.waiting:
            try:
                states = queue_states({e.split("_")[0] for e in self.waiting})
                failures = 0
            except RegbenchError:     # a controller busy or restarting: ask again shortly
                failures += 1
                if failures >= SQUEUE_TRIES:
                    raise
                time.sleep(POLL_SECONDS)
                continue
            for element, held in list(self.waiting.items()):
                state = states.get(element)
                if state == "RUNNING" and element not in started and progress is not None:
                    started.add(element)
                    for task in held:
                        progress.run_started(task)
                finished = [(task, [_written_by(runs / s["run_id"], s, element)
                                    for s in _task_specs(task)]) for task in held]
                for task, summaries in finished:
                    if all(summaries):
                        held.remove(task)
                        yield task, _written(task, summaries)
                if state in SLURM_LIVE_STATES:
                    gone.pop(element, None)
                elif held and time.monotonic() - gone.setdefault(element, time.monotonic()) \
                        >= GONE_GRACE_SECONDS:
                    message = (f"Slurm element {element} ended ({state or 'left the queue'}) "
                               "before this run finished (cancelled, killed, out of memory or "
                               f"a node lost; its log: {self.results_dir / JOBS_DIR}/"
                               f"{element.split('_')[0]}/); run the command again to train it")
                    for task in held:
                        yield task, failed_task(task, message)
                    held.clear()
                if not held:
                    del self.waiting[element]
            if self.waiting:
                time.sleep(POLL_SECONDS)

    def interrupt(self) -> Iterator[tuple]:
        """Ctrl-C stops the waiting, never the jobs: they go on and write their runs."""
        self.outstanding = sorted({e.split("_")[0] for e in self.waiting})
        return iter(())

    def close(self) -> None:
        pass


def _written(task: Task, summaries: list[dict[str, Any]]):
    if GROUP_KEY not in task:
        return WrittenRun(summaries[0])
    return [(spec, WrittenRun(summary)) for spec, summary in zip(task[GROUP_KEY], summaries)]


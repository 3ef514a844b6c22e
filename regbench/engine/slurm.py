"""``--executor slurm``: a command's tasks as one Slurm job array, submitted through submitit.

Each array element trains a batch of tasks (``execution.slurm.runs_per_element``; a fused
group counts as one) and writes each run's folder into the results folder itself, as its
runs finish: the results folder must be on a disk the cluster's nodes share, as submitit's
own job folder (``OUT/NAME/slurm/``) must. The driver keeps which element holds which runs
(and their config hashes) in ``slurm/jobs.json`` and follows the elements with ``squeue``, so
it needs no job accounting (``sacct``):

- an element still pending or running holds its runs: the same command run again waits for
  it (or, with ``--detach``, leaves it) instead of submitting them twice, even where they now
  fuse differently;
- a run whose folder its element wrote (its summary names the element and the submission's
  token: a job id Slurm reuses after a reset is not mistaken for it) reaches the driver as a
  :class:`~regbench.engine.result.KeptFolder`: trackers and tables read the folder;
- an element gone from the queue without writing a run (``scancel``, killed, out of memory, a
  node lost) leaves that run failed for this command, its folder untouched (a checkpoint in it
  resumes it), and the next invocation trains it again; nothing completed is retrained.

Preemption and time limits: submitit signals the element before Slurm kills it and requeues
it (:class:`Element` is checkpointable, up to ``MAX_REQUEUES`` times); the requeued element skips
the runs it already wrote and resumes the one in flight from its mid-run checkpoint
(``train.checkpoint_every``). Ctrl-C stops the driver's waiting, never the jobs.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

from regbench.engine.result import GROUP_KEY, KeptFolder, failed_result, members
from regbench.errors import ConfigError, RegbenchError
from regbench.results import atomic_write_text, completed_summary, read_summary, to_json
from regbench.vocabulary import RUNS_DIR, SLURM_LIVE_STATES, RunSpec, Task

JOBS_DIR = "slurm"             # submitit's folder (scripts, pickles, logs) and jobs.json
JOBS_FILE = "jobs.json"        # per submitted array: its token, element -> {run id: hash}
SUMMARY_KEY = "slurm"          # summary.json: {"element": JOB_TASK, "token": the submission's}
POLL_SECONDS = 5.0             # how often the driver asks squeue while it waits
SIGNAL_SECONDS = 90            # Slurm warns an element this long before its time limit
MAX_REQUEUES = 100             # time limits an element may reach (resuming each time)
SQUEUE_TRIES = 10              # squeue failing this many times in a row ends the wait (exit 2)
GONE_GRACE_SECONDS = 10.0      # an element that left the queue may still be closing its files
ELEMENT = re.compile(r"^\d+(?:_\d+)?$")
ARRAY_VARIABLES = ("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT",
                   "SLURM_ARRAY_TASK_MAX", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_STEP")


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


def _written_by(run_dir: Path, spec: RunSpec, mark: dict[str, str]) -> Optional[dict[str, Any]]:
    """The run's summary when the element and submission ``mark`` names wrote it for this
    config, else None."""
    summary = read_summary(run_dir)
    if summary and summary.get(SUMMARY_KEY) == mark and \
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
                 write: Callable[[Path, RunSpec, Any], None], token: str):
        self.tasks, self.threads, self.results_dir, self.write, self.token = \
            tasks, threads, results_dir, write, token

    def __call__(self) -> list[str]:
        from regbench.engine.execute import execute_task  # deferred: torch, in the element

        mark = {"element": element_id(), "token": self.token}
        runs, done = Path(self.results_dir) / RUNS_DIR, []
        for task in self.tasks:
            if all(_written_by(runs / s["run_id"], s, mark) for s in _task_specs(task)):
                continue           # requeued after writing it
            result = execute_task(task, self.threads)
            for spec, one in members(task, result):
                one.summary[SUMMARY_KEY] = mark
                self.write(Path(self.results_dir), spec, one)
                done.append(spec["run_id"])
        return done

    def checkpoint(self):          # submitit: requeue the same element (submitit.helpers.Checkpointable)
        return import_submitit().helpers.DelayedSubmission(self)


@dataclass
class Queued:
    state: str
    reason: str = ""


def queue_states(job_ids: Iterable[str]) -> dict[str, Queued]:
    """Each element of the given jobs that Slurm still knows, as JOB_TASK -> its state and
    reason (``squeue --array``: pending elements one per line); elements gone are absent.
    Asked by job id, whoever submitted them (a colleague's jobs on a shared folder count)."""
    wanted = sorted({str(j) for j in job_ids if ELEMENT.match(str(j))})
    if not wanted:
        return {}
    listed = _squeue(wanted)
    if listed is None:         # a job Slurm has forgotten makes squeue refuse the whole list
        listed = "".join(_squeue([job]) or "" for job in wanted)
    states = {}
    for line in listed.splitlines():
        element, _, rest = line.strip().partition("|")
        state, _, reason = rest.partition("|")
        if element.split("_")[0] in wanted:
            states[element] = Queued(state.strip(), reason.strip())
    return states


def _squeue(jobs: list[str]) -> Optional[str]:
    """squeue's lines for these jobs; None when one of them is unknown to Slurm."""
    command = ["squeue", "--noheader", "--array", "--states=all", "--format=%i|%T|%r",
               f"--jobs={','.join(jobs)}"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RegbenchError(f"--executor slurm: squeue failed ({exc})") from None
    if done.returncode != 0:
        if "invalid job id" in done.stderr.lower():
            return None
        raise RegbenchError(f"--executor slurm: squeue failed: {done.stderr.strip()[:300]}")
    return done.stdout


def _asked(job_ids: Iterable[str]) -> dict[str, Queued]:
    """queue_states, asked again while the controller is busy or restarting."""
    job_ids = list(job_ids)
    for attempt in range(SQUEUE_TRIES):
        try:
            return queue_states(job_ids)
        except RegbenchError:
            if attempt == SQUEUE_TRIES - 1:
                raise
            time.sleep(POLL_SECONDS)
    return {}


def read_jobs(results_dir: Path) -> list[dict[str, Any]]:
    """The arrays this folder's commands submitted: [{job, token, elements: {JOB_TASK: {run
    id: config hash}}}]; entries of any other shape are left out (their runs count as held by
    nobody, and are submitted again)."""
    path = results_dir / JOBS_DIR / JOBS_FILE
    try:
        arrays = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return []
    if not isinstance(arrays, list):
        return []

    def valid(array: Any) -> bool:
        return isinstance(array, dict) and isinstance(array.get("job"), str) \
            and isinstance(array.get("token"), str) and isinstance(array.get("elements"), dict) \
            and all(isinstance(e, str) and ELEMENT.match(e) and isinstance(runs, dict)
                    and all(isinstance(r, str) and isinstance(h, str) for r, h in runs.items())
                    for e, runs in array["elements"].items())

    return [array for array in arrays if valid(array)]


@dataclass
class Holder:
    """The element that last took a run, what it trains it as, and where Slurm has it."""

    element: str
    token: str
    config_hash: str
    queued: Optional[Queued]           # None once it has left the queue

    @property
    def live(self) -> bool:
        return self.queued is not None and self.queued.state in SLURM_LIVE_STATES


def holders(results_dir: Path, asked: Optional[Callable] = None) -> dict[str, Holder]:
    """run id -> the element of this folder's Slurm jobs that took it last (a later array's
    over an earlier one's). ``asked`` queries squeue (``queue_states``); its RegbenchError
    passes on."""
    arrays = read_jobs(Path(results_dir))
    if not arrays:
        return {}
    states = (asked or queue_states)(a["job"] for a in arrays)
    return {run_id: Holder(element, a["token"], config_hash, states.get(element))
            for a in arrays for element, runs in a["elements"].items()
            for run_id, config_hash in runs.items()}


def run_elements(results_dir: Path) -> dict[str, tuple[str, Optional[str], str]]:
    """For `regbench status`: run id -> (its element, the element's queue state or None once
    it left the queue, squeue's reason); the state is "UNKNOWN" where squeue cannot be asked
    from here. Empty when the folder never went to Slurm."""
    try:
        found = holders(results_dir)
    except RegbenchError:
        unknown = Queued("UNKNOWN", "squeue cannot be asked from here")
        found = {run: Holder(h.element, h.token, h.config_hash, unknown)
                 for run, h in holders(results_dir, lambda jobs: {}).items()}
    return {run: (h.element, h.queued.state if h.queued else None,
                  h.queued.reason if h.queued else "") for run, h in found.items()}


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
        self.outstanding: list[str] = []      # jobs still queued when run() returned
        # element -> (its submission's token, its tasks not yet handed on)
        self.waiting: dict[str, tuple[str, list[Task]]] = {}

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

    def _attach(self, tasks: list[Task]) -> tuple[list[Task], list[tuple[Task, Any]]]:
        """Runs a live element of an earlier command holds wait for it (a group whose runs
        it holds only in part is split: the rest train solo); runs completed since the plan
        was made are handed on as they are. Returns (the tasks to submit, those done)."""
        found = holders(self.results_dir, _asked)
        runs = self.results_dir / RUNS_DIR
        rest: list[Task] = []
        done: list[tuple[Task, Any]] = []
        for task in tasks:
            specs = _task_specs(task)
            held = [found.get(s["run_id"]) for s in specs]
            held = [h if h is not None and h.live else None for h in held]
            for spec, holder in zip(specs, held):
                if holder is not None and holder.config_hash != spec["config_hash"]:
                    raise RegbenchError(
                        f"Slurm element {holder.element} still trains run {spec['run_id']} "
                        "with another config; wait for it (regbench status "
                        f"{self.results_dir}) or scancel {holder.element}, then run again")
            elements = {h.element for h in held if h is not None}
            if len(elements) == 1 and all(held):
                holder = held[0]
                self.waiting.setdefault(holder.element, (holder.token, []))[1].append(task)
                continue
            loose = []
            for spec, holder in zip(specs, held):
                if holder is not None:
                    self.waiting.setdefault(holder.element, (holder.token, []))[1].append(spec)
                else:
                    loose.append(spec)
            summaries = [completed_summary(runs / s["run_id"], s["config_hash"]) for s in loose]
            if loose == specs and all(summaries):
                done.append((task, _kept(task, summaries)))       # finished meanwhile
            elif loose == specs:
                rest.append(task)
            else:
                rest += loose        # what no element holds, solo: the group is split
        return rest, done

    def _submit(self, tasks: list[Task], threads: int) -> None:
        if not tasks:
            return
        per = max(1, int(self.settings.get("runs_per_element") or 1))
        batches = [tasks[i:i + per] for i in range(0, len(tasks), per)]
        folder = self.results_dir / JOBS_DIR
        executor = self.submitit.SlurmExecutor(folder=str(folder / "%j"),
                                               max_num_timeout=MAX_REQUEUES)
        executor.update_parameters(**self._parameters())
        token = uuid.uuid4().hex
        elements = [Element(batch, threads, str(self.results_dir.resolve()), self.write, token)
                    for batch in batches]
        # submitted from inside an array job, a plain job would inherit its parent's array
        # variables and take its element id; and a Ctrl-C between sbatch and jobs.json would
        # leave an array nobody follows
        inherited = {k: os.environ.pop(k) for k in ARRAY_VARIABLES if k in os.environ}
        interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            with executor.batch():
                jobs = [executor.submit(element) for element in elements]
            ids = [job.job_id for job in jobs]
            record = {"job": ids[0].split("_")[0], "token": token,
                      "submitted": time.strftime("%Y-%m-%dT%H:%M:%S"),
                      "elements": {job_id: {s["run_id"]: s["config_hash"]
                                            for t in batch for s in _task_specs(t)}
                                   for job_id, batch in zip(ids, batches)}}
            arrays = [a for a in read_jobs(self.results_dir) if a["job"] != record["job"]]
            atomic_write_text(folder / JOBS_FILE, to_json(arrays + [record]))
        except Exception as exc:          # sbatch refused (a partition, a limit): exit 2
            said = [line for line in str(exc).strip().splitlines() if line.strip()]
            raise RegbenchError("--executor slurm: submission failed: "
                                f"{(said or [type(exc).__name__])[-1][:400]}") from None
        finally:
            signal.signal(signal.SIGINT, interrupt)
            os.environ.update(inherited)
        for job_id, batch in zip(ids, batches):
            self.waiting[job_id] = (token, list(batch))

    def run(self, tasks: Iterable[Task], threads: int, progress=None) -> Iterator[tuple]:
        threads = int(self.settings.get("cpus_per_task") or threads)
        rest, done = self._attach(list(tasks))
        yield from done
        self._submit(rest, threads)
        if self.detach:
            self.outstanding = sorted({e.split("_")[0] for e in self.waiting})
            return
        started: set[str] = set()
        gone: dict[str, float] = {}
        runs = self.results_dir / RUNS_DIR
        while self.waiting:
            states = _asked({e.split("_")[0] for e in self.waiting})
            for element, (token, held) in list(self.waiting.items()):
                queued = states.get(element)
                mark = {"element": element, "token": token}
                if queued and queued.state == "RUNNING" and element not in started \
                        and progress is not None:
                    started.add(element)
                    for task in held:
                        progress.run_started(task)
                for task in list(held):
                    summaries = [_written_by(runs / s["run_id"], s, mark)
                                 for s in _task_specs(task)]
                    if all(summaries):
                        held.remove(task)
                        yield task, _kept(task, summaries)
                if queued and queued.state in SLURM_LIVE_STATES:
                    gone.pop(element, None)
                elif held and time.monotonic() - gone.setdefault(element, time.monotonic()) \
                        >= GONE_GRACE_SECONDS:
                    for task in held:
                        yield task, self._lost(task, element, queued, mark)
                    held.clear()
                if not held:
                    del self.waiting[element]
            if self.waiting:
                time.sleep(POLL_SECONDS)

    def _lost(self, task: Task, element: str, queued: Optional[Queued], mark: dict):
        """A task whose element ended without writing all of it: the runs it wrote as they
        are, the others failed for this command with their folders untouched."""
        message = (f"Slurm element {element} ended "
                   f"({queued.state if queued else 'left the queue'}) before this run finished "
                   "(cancelled, killed, out of memory or a node lost; its log: "
                   f"{self.results_dir / JOBS_DIR}/{element}/); run the command again to "
                   "train it")
        runs = self.results_dir / RUNS_DIR

        def one(spec: RunSpec) -> KeptFolder:
            summary = _written_by(runs / spec["run_id"], spec, mark)
            return KeptFolder(summary) if summary else \
                KeptFolder(failed_result(spec, message).summary, written=False)

        if GROUP_KEY not in task:
            return one(task)
        return [(spec, one(spec)) for spec in task[GROUP_KEY]]

    def interrupt(self) -> Iterator[tuple]:
        """Ctrl-C stops the waiting, never the jobs: they go on and write their runs."""
        self.outstanding = sorted({e.split("_")[0] for e in self.waiting})
        return iter(())

    def close(self) -> None:
        pass


def _kept(task: Task, summaries: list[dict[str, Any]]):
    if GROUP_KEY not in task:
        return KeptFolder(summaries[0])
    return [(spec, KeptFolder(summary)) for spec, summary in zip(task[GROUP_KEY], summaries)]

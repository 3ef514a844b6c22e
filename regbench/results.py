"""Run folders and experiment files: written atomically, read back without trust. The file
names are in ``regbench.vocabulary``."""
from __future__ import annotations

import csv
import errno
import functools
import io
import json
import math
import os
import stat
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Literal, Optional, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from regbench.config.yaml_io import dump_yaml
from regbench.errors import ConfigError, OutputError, RegbenchError
from regbench.vocabulary import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    LEADING_COLUMNS,
    METRICS_FILE,
    MODEL_FILE,
    PLAN_FILE,
    PLOTS_DIR,
    RUNS_DIR,
    RUNS_TABLE,
    SUMMARY,
    WEIGHTS_FILE,
    RunSpec,
    default_metric,
)

STATUSES = ("completed", "diverged", "failed", "interrupted", "pruned")
DAMAGED = "damaged"            # the status a table gives a run whose summary.json is unusable


@functools.cache
def file_mode() -> int:
    """Mode of a new file under this process's umask (mkstemp's own 0600 would hide results
    from other users of a shared results folder); read once, at the first write, not at
    import (reading the umask means setting it for a moment)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _remedy(exc: OSError) -> str:
    """What to do about a failed write, from its cause (not always a full disk)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return "free space (or raise the quota)"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "choose a writable --out"
    return "check that no other program changes this folder meanwhile"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename over ``path``.

    A failure (disk full, read-only folder) leaves ``path`` as it was and raises OutputError.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc}); nothing was "
                          f"replaced; {_remedy(exc)}") from None
    try:
        with os.fdopen(handle, "wb") as out:
            os.fchmod(out.fileno(), file_mode())
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException as exc:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise OutputError(f"{path}: cannot write ({exc.strerror or exc}); any earlier "
                              f"version is kept; {_remedy(exc)}, then run the same command "
                              "again to resume") from None
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_output(path: Path, text: str) -> None:
    """A file the user named (``--junit``, ``schema --out``). A device, pipe or socket there
    (also behind a link, as /dev/stdout is) is written to as a stream, never replaced by a
    regular file; a link to a file is written through (the link stays); anything else is
    written atomically."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode               # follows links
    except OSError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        try:
            with open(path, "w", encoding="utf-8") as out:
                out.write(text)
        except OSError as exc:
            raise OutputError(f"{path}: cannot write ({exc.strerror or exc}); "
                              f"{_remedy(exc)}") from None
        return
    atomic_write_text(path.resolve() if path.is_symlink() else path, text)


def check_output(path: Path, option: str) -> None:
    """Before anything trains: ``write_output`` will be able to write ``path``, or exit 2
    naming ``option``. A device, pipe or socket must be open for writing (it is not opened
    here: a pipe's reader would take the probe for the output); anything else must be a file
    path whose folder takes a new file, probed with a nameless temporary file there (the
    folder of the linked file for a link, as write_output writes through it)."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode               # follows links
    except OSError:
        mode = None
    if mode is not None and stat.S_ISDIR(mode):
        raise ConfigError(f"{path}: is a folder; expected a file path", source=option)
    if mode is not None and not stat.S_ISREG(mode):
        if not os.access(path, os.W_OK):
            raise ConfigError(f"{path}: cannot be written (permission denied); expected a "
                              "file path in a writable folder", source=option)
        return
    folder = (path.resolve() if path.is_symlink() else path).parent
    try:
        with tempfile.TemporaryFile(dir=folder):   # a fresh name: never through a planted link
            pass
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be written: {folder} {_why_not(exc)}; expected a "
                          "file path in an existing, writable folder", source=option) from None


def _why_not(exc: OSError) -> str:
    """Why a folder takes no new file, in words."""
    reasons = {errno.ENOENT: "does not exist", errno.ENOTDIR: "is not a folder",
               errno.EACCES: "is not writable (permission denied)",
               errno.EPERM: "is not writable (operation not permitted)",
               errno.EROFS: "is on a read-only file system",
               errno.ENOSPC: "is on a full disk", errno.EDQUOT: "is over its disk quota"}
    return reasons.get(exc.errno, f"takes no new file ({exc.strerror or exc})")


# ----------------------------------------------------------------------------- confinement

def check_inside(results_dir: Path, path: Path) -> None:
    """Refuse (exit 2) a path that resolves outside ``results_dir``: a run folder, ``runs/`` or
    ``plots/`` that is a link elsewhere would have regbench write and delete files there."""
    root = Path(results_dir).resolve()
    real = Path(path).resolve()
    if real != root and root not in real.parents:
        raise RegbenchError(f"{path}: resolves to {real}, outside the results folder {root}; "
                            "regbench writes and deletes only inside it: remove the link, or "
                            "choose another --out")


def not_a_folder(path: Path) -> Optional[str]:
    """What stands at ``path`` where a folder should be (``"a file"``, ``"a dangling link
    (to X)"``), or None for a folder or nothing at all."""
    path = Path(path)
    if not os.path.lexists(path) or path.is_dir():
        return None
    if path.is_symlink():
        target = os.readlink(path)
        return (f"a dangling link (to {target})" if not path.exists()
                else f"a link to {target}, which is not a folder")
    return "a file" if path.is_file() else "a special file (device, pipe or socket)"


def check_folder(path: Path, expected: str) -> None:
    """Refuse (exit 2) anything but a folder at ``path`` where regbench expects ``expected``:
    writing would fail there late (after training) or write through a dangling link."""
    what = not_a_folder(path)
    if what is not None:
        raise RegbenchError(f"{path}: is {what}, not a folder; expected {expected} there: move "
                            "it aside (regbench replaces nothing it did not create)")


def check_results_folder(results_dir: Path, run_ids: Iterable[str] = ()) -> None:
    """Before anything is written: the results root above is a folder, and every folder
    regbench writes into is a folder (or not there yet) that resolves inside."""
    results_dir = Path(results_dir)
    for part in results_dir.parents:      # --out, or the nearest folder above it that exists
        if os.path.lexists(part):
            what = not_a_folder(part)
            if what is not None:
                raise RegbenchError(f"--out: cannot write to {results_dir} (Not a directory: "
                                    f"{part} is {what}, not a folder); expected a folder "
                                    "there: move it aside, or choose a writable folder with "
                                    "--out")
            break
    check_folder(results_dir, f"the results folder {results_dir.name}/")
    folders = [(results_dir / RUNS_DIR, f"the folder of run folders ({RUNS_DIR}/<run id>/)"),
               (results_dir / PLOTS_DIR, f"the folder of plots ({PLOTS_DIR}/)")]
    folders += [(results_dir / RUNS_DIR / run_id, f"the folder of run {run_id}")
                for run_id in run_ids]
    for folder, expected in folders:
        if os.path.lexists(folder):
            check_inside(results_dir, folder)
            check_folder(folder, expected)


# ----------------------------------------------------------------------------- one writer

LOCK_TRIES = 10       # ``regbench status`` holds a shared lock for a moment: wait that out
LOCK_WAIT = 0.02     # seconds between tries (0.2 s in all), then the folder is in use


def _lock_exclusive(handle) -> None:
    """An exclusive flock without blocking for long; BlockingIOError when held."""
    import fcntl

    for attempt in range(LOCK_TRIES):
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if attempt == LOCK_TRIES - 1:
                raise
            time.sleep(LOCK_WAIT)


class ResultsLock:
    """One writer per results folder: an exclusive ``flock`` on ``<out>/.<name>.lock``, which
    records the holder's pid, host and start time and is removed when the holder is done. The
    kernel drops the lock when its holder dies, so the file a killed process leaves is simply
    taken over. It sits beside the results folder (in ``--out``) so that ``--fresh`` can move
    the folder aside while holding the lock."""

    held: dict[Path, int] = {}    # lock files this process holds -> depth (re-entered, e.g.
                                  # by `tune`, whose confirmation writes into its own folder)

    def __init__(self, results_dir: Path):
        self.results_dir = Path(results_dir)
        # keyed by the folder itself: the same folder reached through a link takes one lock
        real = self.results_dir.resolve()
        self.path = real.parent / f".{real.name}.lock"
        self.handle = None

    def __enter__(self) -> "ResultsLock":
        import datetime as _dt
        import socket

        key = self.path.absolute()
        if key in ResultsLock.held:
            ResultsLock.held[key] += 1
            return self

        while True:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # never through a link: a planted one would have the pid written elsewhere
                descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
                handle = os.fdopen(descriptor, "r+", encoding="utf-8")
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise RegbenchError(f"{self.path}: is a link; regbench writes its lock file "
                                        "only as a plain file: remove the link") from None
                raise RegbenchError(f"--out: cannot write to {self.results_dir} "
                                    f"({exc.strerror or exc}); choose a writable folder with "
                                    "--out") from None
            try:
                _lock_exclusive(handle)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another regbench process"
                handle.close()
                raise RegbenchError(f"{self.results_dir}: in use by {holder}; wait for it to "
                                    "finish, or choose another --out") from None
            try:   # the holder before us may have removed the file as we opened it: retry
                if os.fstat(handle.fileno()).st_ino == os.stat(self.path).st_ino:
                    break
            except FileNotFoundError:
                pass
            handle.close()
        stamp = _dt.datetime.now().isoformat(timespec="seconds")
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"regbench pid {os.getpid()} on {socket.gethostname()} since {stamp}\n")
            handle.flush()
        except OSError as exc:          # a full disk: one line, and no empty lock file left
            self.path.unlink(missing_ok=True)
            handle.close()
            raise RegbenchError(f"{self.path}: cannot write the lock file "
                                f"({exc.strerror or exc}); {_remedy(exc)}") from None
        self.handle = handle
        ResultsLock.held[key] = 1
        return self

    def holder(self) -> Optional[str]:
        """Who holds this folder's lock now ("regbench pid … on … since …"), or None; the lock
        file is only read, never taken or changed."""
        import fcntl

        try:
            descriptor = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None                         # no lock file (or a planted link): nobody
        with os.fdopen(descriptor, "r", encoding="utf-8", errors="replace") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:             # an exclusive holder is alive
                return handle.read(400).strip() or "another regbench process"
            fcntl.flock(handle, fcntl.LOCK_UN)  # a file its dead holder left: nobody
            return None

    def __exit__(self, *exc_info) -> None:
        key = self.path.absolute()
        if ResultsLock.held.get(key, 0) > 1:
            ResultsLock.held[key] -= 1
            return
        ResultsLock.held.pop(key, None)
        if self.handle is not None:
            self.path.unlink(missing_ok=True)   # while still held: no one locks a stale file
            self.handle.close()                 # closing releases the flock
            self.handle = None


def _json_default(value: Any):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    return str(value)


def _clean(value: Any) -> Any:
    """NaN/inf are not JSON: store them as strings that say what they were."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def to_json(data: Any) -> str:
    return json.dumps(_clean(data), indent=2, default=_json_default, allow_nan=False,
                      ensure_ascii=False) + "\n"


def metrics_csv(rows: list[dict[str, float]]) -> str:
    """Wide CSV, one row per epoch: LEADING_COLUMNS, train_ and val_ metrics, then
    regularizer extras."""
    if not rows:
        return ",".join(LEADING_COLUMNS) + "\n"
    keys: list[str] = []
    for row in rows:
        keys.extend(k for k in row if k not in keys)
    split = [k for k in keys if k.startswith(("train_", "val_"))]
    ordered = ([k for k in LEADING_COLUMNS if k in keys] + [k for k in split if k.startswith("train_")]
               + [k for k in split if k.startswith("val_")])
    ordered += [k for k in keys if k not in ordered]
    return table_csv(rows, ordered, nan="nan")     # a diverged epoch says so


def table_csv(rows: list[dict[str, Any]], columns: Optional[list[str]] = None,
              nan: str = "") -> str:
    """CSV of dict rows: ``columns``, or every key in the order first seen; a missing value or
    None is an empty cell, NaN ``nan``, a float its shortest exact repr (as pandas' to_csv
    wrote them: the csv module, since importing pandas cost a smoke run ~0.4 s)."""
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _format(row.get(k), nan) for k in columns})
    return buffer.getvalue()


def _format(value: Any, nan: str) -> Any:
    if isinstance(value, float):       # numpy's float64 too: its repr names the type
        return nan if math.isnan(value) else repr(float(value))
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return _format(value.item(), nan)   # a numpy scalar
    return "" if value is None else value


def run_config(spec: RunSpec) -> dict[str, Any]:
    """The resolved config of one run, as written next to its results."""
    keys = ("run_id", "experiment", "recipe", "seed", "sweep", "dataset", "model", "train",
            "regularizers", "diagnosis", "config_hash")
    return {k: spec[k] for k in keys}


def write_run(run_dir: Path, spec: RunSpec, result, keep_events: bool = False) -> None:
    """Write a run folder; summary.json goes last, so its presence means the folder is whole.
    ``keep_events``: a tracker owns the folder's event files (it wrote this run's as it
    trained, and replaces an earlier attempt's itself)."""
    import numpy as np

    check_inside(run_dir.parent.parent, run_dir)   # never write or clean up through a link
    run_dir.mkdir(parents=True, exist_ok=True)
    summary_path = run_dir / SUMMARY
    if summary_path.is_dir() and not summary_path.is_symlink():
        import shutil

        shutil.rmtree(summary_path)  # damaged beyond a file: the run is being redone
    elif summary_path.exists() or summary_path.is_symlink():
        summary_path.unlink()  # a stale summary must never describe new files
    # leftovers of an earlier attempt: temp files of a killed write, outputs this run won't make
    stale = [*run_dir.glob(".*.tmp")]
    # without a tracker that owns them, event files describe an earlier attempt (`--log
    # tensorboard` on a later command writes them anew from the folder)
    stale += [] if keep_events else [p for p in run_dir.glob("events.out.tfevents.*")
                                     if p.is_file() or p.is_symlink()]
    stale += [run_dir / WEIGHTS_FILE] if result.weights is None else []
    stale += [run_dir / MODEL_FILE] if result.model_state is None else []
    # a checkpoint is for resuming: a run that ended has none left (an interrupted one resumes
    # from it; train.keep_checkpoint keeps it)
    if result.status != "interrupted" and not spec["train"].get("keep_checkpoint"):
        stale.append(run_dir / CHECKPOINT_FILE)
    for path in stale:
        path.unlink(missing_ok=True)
    atomic_write_text(run_dir / CONFIG_FILE, dump_yaml(run_config(spec)))
    atomic_write_text(run_dir / METRICS_FILE, metrics_csv(result.rows))
    if result.weights is not None:
        buffer = io.BytesIO()
        np.save(buffer, result.weights.astype("float32"), allow_pickle=False)
        atomic_write_bytes(run_dir / WEIGHTS_FILE, buffer.getvalue())
    if result.model_state is not None:
        atomic_write_bytes(run_dir / MODEL_FILE, result.model_state)
    atomic_write_text(summary_path, to_json(result.summary))


Number = Union[StrictInt, StrictFloat, Literal["nan", "inf", "-inf"]]   # NaN/inf as to_json
                                                                        # stores them


class Verdict(BaseModel):
    """The diagnosis stored with a run."""

    model_config = ConfigDict(extra="allow")

    verdict: StrictStr
    evidence: list[StrictStr] = []
    started_epoch: Optional[Union[StrictInt, StrictFloat]] = None


class RunSummary(BaseModel):
    """What a summary.json must hold to be read back (other keys are kept as they are)."""

    model_config = ConfigDict(extra="allow")

    status: Literal[STATUSES]
    run_id: StrictStr
    recipe: StrictStr
    seed: StrictInt
    config_hash: Optional[StrictStr] = None      # absent in a hand-made folder: never resumed
    point_id: Optional[StrictStr] = None
    task: Optional[Literal["classification", "regression"]] = None
    sweep: dict[str, Any] = {}
    regularizers: dict[str, Any] = {}
    error: Optional[StrictStr] = None
    verdict: Optional[Verdict] = None

    @model_validator(mode="after")
    def _completed_runs_have_their_metrics(self) -> "RunSummary":
        if self.status != "completed":
            return self
        if self.task is None:
            raise ValueError("a completed run must say its task")
        extra = self.model_extra or {}
        splits = ("train", "val") if extra.get("test_withheld") is True else \
            ("train", "val", "test")             # a tuning trial is never tested
        for split in splits:   # the numbers every table is built from
            for metric in ("loss", default_metric(self.task)):
                value = extra.get(f"{split}_{metric}")
                if isinstance(value, bool) or not isinstance(value, (int, float, str)) or \
                        isinstance(value, str) and value not in ("nan", "inf", "-inf"):
                    raise ValueError(f"a completed run must hold {split}_{metric} as a number "
                                     f"(got {value!r})")
        return self


def inspect_summary(run_dir: Path) -> tuple[Optional[dict[str, Any]], Optional[str]]:
    """(summary, None) for a usable summary.json; (None, None) when the run has none (not
    finished); (None, why) when it is damaged: unreadable, not JSON, or not a run summary."""
    path = Path(run_dir) / SUMMARY
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, None
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot be read ({exc})"
    except json.JSONDecodeError as exc:
        return None, f"is not valid JSON ({exc.msg} at line {exc.lineno}; truncated?)"
    if not isinstance(data, dict):
        return None, f"holds a {type(data).__name__}, not a run summary"
    try:
        RunSummary.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return None, f"is not a run summary ({where + ': ' if where else ''}{first['msg']})"
    if data["run_id"] != path.parent.name:
        return None, f"describes run {data['run_id']!r}, not this folder's"
    return data, None


def read_summary(run_dir: Path) -> Optional[dict[str, Any]]:
    """The run's summary when it is usable, else None (not finished, or damaged)."""
    return inspect_summary(run_dir)[0]


def completed_summary(run_dir: Path, config_hash: str) -> Optional[dict[str, Any]]:
    """The run's summary when it completed with this config (hash), else None."""
    summary = read_summary(run_dir)
    if summary and summary.get("status") == "completed" and \
            summary.get("config_hash") == config_hash:
        return summary
    return None


def damaged_summary(run_dir: Path, why: str) -> dict[str, Any]:
    """What the tables show for a run whose summary.json is damaged: its name and the reason."""
    point, _, seed = run_dir.name.rpartition("__seed=")
    return {"status": DAMAGED, "run_id": run_dir.name, "point_id": point or run_dir.name,
            "recipe": (point or run_dir.name).split("__")[0],
            "seed": int(seed) if seed.isdigit() else None, "sweep": {},
            "error": f"{SUMMARY} {why}; the run counts as not completed (`regbench run` trains "
                     "it again)", "_dir": str(run_dir)}


def task_of(summaries: Iterable[dict[str, Any]]) -> str:
    """The experiment's task, from the first summary that states it (failed runs do not)."""
    return next((s["task"] for s in summaries if s.get("task")), "classification")


def run_dirs(results_dir: Path) -> list[Path]:
    runs = results_dir / RUNS_DIR
    return sorted(p for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []


def planned_run_ids(results_dir: Path) -> Optional[set[str]]:
    """Run ids of the latest plan, or None when the folder has no (readable) plan.json."""
    try:
        data = json.loads((Path(results_dir) / PLAN_FILE).read_text(encoding="utf-8"))
        return {str(run_id) for run_id in data["run_ids"]}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _plan_entry(results_dir: Path, key: str) -> Any:
    try:
        data = json.loads((Path(results_dir) / PLAN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data.get(key) if isinstance(data, dict) else None


def confirmed_selection(results_dir: Path) -> Optional[dict[str, Any]]:
    """What a confirmation folder confirms (plan.json's ``confirms``), or None."""
    confirms = _plan_entry(results_dir, "confirms")
    return confirms if isinstance(confirms, dict) else None


def searched_experiment(results_dir: Path) -> Optional[str]:
    """The experiment whose tuning trials a folder holds (``regbench tune``'s search/), or
    None."""
    name = _plan_entry(results_dir, "search")
    return name if isinstance(name, str) else None


def load_summaries(results_dir: Path) -> list[dict[str, Any]]:
    """Summaries of every run folder that holds one (unfinished runs have none); a damaged
    summary.json is never skipped: it comes back as a ``damaged`` run that says why."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        what = not_a_folder(results_dir)
        raise RegbenchError(f"{results_dir}: no such results folder" if what is None else
                            f"{results_dir}: is {what}, not a results folder; expected the "
                            f"folder `regbench run` wrote (with {RUNS_DIR}/ inside)")
    planned = planned_run_ids(results_dir)
    runs = results_dir / RUNS_DIR
    check_folder(runs, f"the folder of run folders ({RUNS_DIR}/<run id>/)")
    # a run's folder replaced by a file or a dangling link is named, never passed over as
    # a run that did not finish (which `regbench run` would then fail to write)
    if planned is not None:
        named = planned
    else:   # no plan: what is named like a run (a stray NOTES.txt is not one)
        named = {p.name for p in runs.iterdir() if "__seed=" in p.name} if runs.is_dir() else set()
    for run_id in sorted(named):
        check_folder(runs / run_id, f"the folder of run {run_id}")
    summaries = []
    for run_dir in run_dirs(results_dir):
        if planned is not None and run_dir.name not in planned:
            continue  # a folder from an earlier grid or config: not part of this experiment
        summary, damage = inspect_summary(run_dir)
        if damage is not None:
            summaries.append(damaged_summary(run_dir, damage))
        elif summary is not None:
            summary["_dir"] = str(run_dir)
            summaries.append(summary)
    if not summaries:
        raise RegbenchError(f"{results_dir}: no finished runs (no runs/*/summary.json); run "
                            "`regbench run CONFIG` first")
    return summaries


def load_metrics(run_dir: Path):
    import pandas as pd

    return pd.read_csv(Path(run_dir) / METRICS_FILE)


def write_runs_csv(results_dir: Path, summaries: Iterable[dict[str, Any]]) -> Path:
    """One row per run with the summary's scalar fields."""
    rows = []
    for summary in summaries:
        row = {k: v for k, v in summary.items()
               if not k.startswith("_") and not isinstance(v, (dict, list))}
        row.update({f"sweep.{k}": v for k, v in (summary.get("sweep") or {}).items()})
        verdict = summary.get("verdict")
        if isinstance(verdict, dict):
            row["verdict"] = verdict.get("verdict")
        rows.append(row)
    path = Path(results_dir) / RUNS_TABLE
    atomic_write_text(path, table_csv(rows))
    return path

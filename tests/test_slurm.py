"""`--executor slurm` against a real Slurm: the repository's single-node cluster
(tools/local_slurm.sh, Debian's slurmctld, slurmd and munge), started in a folder of its own on
a free port and stopped after the tests. Where Slurm or submitit is not installed, or the
cluster does not come up, the tests that need it skip saying why.

Run folders are compared with a local run of the same config (one thread each), an element is
cancelled with scancel while it trains, and --detach is followed by `regbench status` and by
the same command again."""
from __future__ import annotations

import csv
import io
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from regbench.cli import app
from tests.conftest import REPO, digits_yaml, regbench_without, write_config
from tests.test_bad_input import one_error_line

runner = CliRunner()
SCRIPT = REPO / "tools" / "local_slurm.sh"
DEADLINE = 300.0          # seconds: array elements start Python and torch on 2 loaded cores
DAEMONS = ("slurmctld", "slurmd", "munged", "mungekey", "sbatch", "squeue", "scancel")


def _free_port_pair() -> int:
    """A port P with P and P + 1 free (slurmctld's and slurmd's)."""
    for _ in range(200):
        port = random.randrange(20000, 60000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair")


@pytest.fixture(scope="module")
def slurm():
    """The environment (SLURM_CONF, PATH) of a running single-node Slurm."""
    pytest.importorskip("submitit", reason="the slurm extra is not installed (pip install -e "
                                           "'.[slurm]'): the Slurm tests need submitit")
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin"
    missing = [tool for tool in DAEMONS if shutil.which(tool, path=path) is None]
    if missing:
        pytest.skip(f"Slurm is not installed here ({', '.join(missing)} missing): apt-get "
                    "install slurmctld slurmd slurm-client munge")
    # a short path: munge's socket lives in it (a Unix socket's path has at most 107 bytes)
    folder = tempfile.mkdtemp(prefix="rbslurm-", dir="/tmp")
    env = {**os.environ, "PATH": path, "REGBENCH_SLURM_PORT": str(_free_port_pair())}
    started = subprocess.run(["bash", str(SCRIPT), "start", folder], env=env,
                             capture_output=True, text=True, timeout=180)
    if started.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"the local Slurm did not start (tools/local_slurm.sh start: exit "
                    f"{started.returncode}): {started.stderr.strip()[-600:]}")
    env["SLURM_CONF"] = os.path.join(folder, "slurm.conf")
    try:
        yield env
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", folder], env=env, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


def regbench(env: dict, *args: str, timeout: float = DEADLINE) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "regbench", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def sweep_config(tmp_path: Path, name: str, epochs: int = 3, execution: str = "") -> Path:
    return write_config(tmp_path / f"{name}.yaml", digits_yaml(
        name, "  l2: {l2: {lambda: 1.0}}\n", epochs=epochs,
        extra="sweep:\n  recipes.l2.l2.lambda: [0.1, 3.0]\n" + execution))


def without_seconds(path: Path) -> list[dict[str, str]]:
    """A CSV's rows less the wall-clock columns (the only ones that differ between places)."""
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    return [{k: v for k, v in row.items() if "second" not in k} for row in rows]


def summaries(folder: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text())
            for p in (folder / "runs").glob("*/summary.json")}


def queue(env: dict) -> dict[str, str]:
    listed = subprocess.run(["squeue", "--noheader", "--array", "--format=%i|%T"], env=env,
                            capture_output=True, text=True, check=True).stdout
    return dict(line.strip().split("|") for line in listed.splitlines() if line.strip())


@pytest.mark.cluster
def test_a_sweep_on_slurm_writes_the_tables_a_local_run_writes(slurm, tmp_path):
    """Fused groups and solo runs alike, two tasks per element: every run folder's numbers
    and the comparison equal the local run's, and each run names the element that wrote it."""
    config = sweep_config(tmp_path, "sw", execution="execution:\n  slurm: {runs_per_element: 2}\n")
    on_slurm = regbench(slurm, "run", str(config), "--out", str(tmp_path / "slurm"),
                        "--executor", "slurm", "--no-report", "--fuse", "off")
    assert on_slurm.returncode == 0, on_slurm.stdout + on_slurm.stderr
    here = regbench(slurm, "run", str(config), "--out", str(tmp_path / "local"), "--no-report",
                    "--fuse", "off")
    assert here.returncode == 0, here.stderr
    a, b = tmp_path / "slurm" / "sw", tmp_path / "local" / "sw"
    assert without_seconds(a / "comparison.csv") == without_seconds(b / "comparison.csv")
    runs = sorted(p.name for p in (b / "runs").iterdir())
    assert runs == sorted(p.name for p in (a / "runs").iterdir()) and len(runs) == 6
    for run in runs:
        assert without_seconds(a / "runs" / run / "metrics.csv") == \
            without_seconds(b / "runs" / run / "metrics.csv"), run
    jobs = json.loads((a / "slurm" / "jobs.json").read_text())
    assert len(jobs) == 1
    elements = jobs[0]["elements"]
    assert sorted(map(len, elements.values())) == [2, 2, 2]       # six tasks, two per element
    taken = {run: element for element, ids in elements.items() for run in ids}
    assert {run: s["slurm"] for run, s in summaries(a).items()} == \
        {run: {"element": element, "token": jobs[0]["token"]} for run, element in taken.items()}
    shown = " ".join(regbench(slurm, "status", str(a), "--all").stdout.split())
    assert "6 completed" in shown and f"Slurm {taken[runs[0]]} COMPLETED" in shown


def detach(slurm: dict, tmp_path: Path, name: str, epochs: int):
    """A sweep submitted with --detach: its config, --out, folder, the command's result and
    the array's job id."""
    config = sweep_config(tmp_path, name, epochs=epochs)
    out, folder = tmp_path / "out", tmp_path / "out" / name
    detached = regbench(slurm, "run", str(config), "--out", str(out), "--executor", "slurm",
                        "--detach", "--no-report")
    assert detached.returncode == 0, detached.stderr
    array = json.loads((folder / "slurm" / "jobs.json").read_text())[0]["job"]
    return config, out, folder, detached, array


@pytest.mark.cluster
def test_detach_then_status_then_the_same_command_collects(slurm, tmp_path):
    config, out, folder, detached, array = detach(slurm, tmp_path, "det", epochs=30)
    assert f"Slurm job(s) {array} still hold" in " ".join(detached.stdout.split())
    assert not (folder / "comparison.csv").exists()     # nothing to compare yet
    shown = " ".join(regbench(slurm, "status", str(folder)).stdout.split())
    assert f"Slurm job(s) {array} hold" in shown or "6 completed" in shown
    collected = regbench(slurm, "run", str(config), "--out", str(out), "--executor", "slurm",
                         "--no-report")
    assert collected.returncode == 0, collected.stdout + collected.stderr
    assert (folder / "comparison.csv").exists()
    assert len(json.loads((folder / "slurm" / "jobs.json").read_text())) == 1   # not resubmitted
    assert {s["status"] for s in summaries(folder).values()} == {"completed"}
    assert {s["slurm"]["element"].split("_")[0] for s in summaries(folder).values()} == {array}


@pytest.mark.cluster
def test_runs_a_detached_job_holds_are_not_trained_elsewhere_meanwhile(slurm, tmp_path):
    config, out, folder, _, array = detach(slurm, tmp_path, "held", epochs=3000)
    try:
        before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()
                  and "slurm" not in p.parts and "runs" not in p.parts}
        here = regbench(slurm, "run", str(config), "--out", str(out), "--no-report")
        assert here.returncode == 2 and "Traceback" not in here.stderr
        assert f"Slurm job(s) {array} still train runs of this folder" in \
            " ".join(here.stderr.split()) + " ".join(here.stdout.split())
        assert {p: p.read_bytes() for p in before} == before      # nothing written
        fresh = regbench(slurm, "run", str(config), "--out", str(out), "--executor", "slurm",
                         "--fresh", "--no-report")        # would set the folder aside
        assert fresh.returncode == 2 and f"Slurm job(s) {array} still train" in \
            " ".join(fresh.stderr.split())
        assert folder.is_dir() and {p: p.read_bytes() for p in before} == before
    finally:
        subprocess.run(["scancel", array], env=slurm, check=True)


@pytest.mark.cluster
def test_an_element_cancelled_mid_run_is_retrained_next_time_and_nothing_else(slurm, tmp_path,
                                                                               request):
    config = sweep_config(tmp_path, "cancel", epochs=400)
    out, folder = tmp_path / "out", tmp_path / "out" / "cancel"
    command = [sys.executable, "-m", "regbench", "run", str(config), "--out", str(out),
               "--executor", "slurm", "--no-report", "--fuse", "off"]
    driver = subprocess.Popen(command, cwd=REPO, env=slurm, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    request.addfinalizer(driver.kill)
    jobs = folder / "slurm" / "jobs.json"
    deadline = time.monotonic() + DEADLINE
    victim = None
    while victim is None:
        assert driver.poll() is None, driver.stdout.read()
        assert time.monotonic() < deadline, "no element started training"
        if jobs.exists():
            array = json.loads(jobs.read_text())[0]
            metrics = {e: folder / "runs" / next(iter(runs)) / "metrics.csv"
                       for e, runs in array["elements"].items()}
            running = [e for e, state in queue(slurm).items() if state == "RUNNING"
                       and e in metrics and not (metrics[e].parent / "summary.json").exists()]
            victim = running[0] if running else None
        time.sleep(0.5)
    killed_run = next(iter(array["elements"][victim]))
    subprocess.run(["scancel", victim], env=slurm, check=True)
    output, _ = driver.communicate(timeout=DEADLINE)
    assert driver.returncode == 1, output                        # a run failed: exit 1
    first = summaries(folder)
    assert killed_run not in first        # its folder is left as the element left it
    others = {run: (folder / "runs" / run / "summary.json").read_bytes() for run in first}
    assert all(first[run]["status"] == "completed" for run in others) and len(others) == 5
    shown = " ".join(regbench(slurm, "status", str(folder)).stdout.split())
    assert "5 completed" in shown and f"Slurm {victim} CANCELLED" in shown

    again = regbench(slurm, "run", str(config), "--out", str(out), "--executor", "slurm",
                     "--no-report", "--fuse", "off")
    assert again.returncode == 0, again.stdout + again.stderr
    second = summaries(folder)
    assert second[killed_run]["status"] == "completed"
    assert second[killed_run]["slurm"]["element"].split("_")[0] != victim.split("_")[0]
    assert {run: (folder / "runs" / run / "summary.json").read_bytes() for run in others} \
        == others                                                # nothing completed retrained
    arrays = json.loads(jobs.read_text())
    assert [list(runs) for a in arrays[1:] for runs in a["elements"].values()] == [[killed_run]]


@pytest.mark.cluster
def test_a_preempted_element_requeues_and_resumes_its_run_from_the_checkpoint(slurm, tmp_path,
                                                                              request):
    """Slurm's warning signal (USR2, as before a time limit or a preemption) makes submitit
    requeue the element; it resumes the run from its mid-run checkpoint, and the run's numbers
    equal an uninterrupted local run's."""
    config = write_config(tmp_path / "pre.yaml", digits_yaml(
        "pre", "  {}\n", seeds="[0]", epochs=1500).replace("recipes:\n  {}", "recipes: {}")
        .replace("threads: 1}", "threads: 1, checkpoint_every: 25}"))
    out, folder = tmp_path / "out", tmp_path / "out" / "pre"
    driver = subprocess.Popen([sys.executable, "-m", "regbench", "run", str(config), "--out",
                               str(out), "--executor", "slurm", "--no-report"], cwd=REPO,
                              env=slurm, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    request.addfinalizer(driver.kill)
    checkpoint = folder / "runs" / "baseline__seed=0" / "checkpoint.pt"

    def epoch() -> int:
        try:
            with checkpoint.open("rb") as handle:
                return int(json.loads(handle.readline())["epoch"])
        except (OSError, ValueError, KeyError):
            return 0

    deadline = time.monotonic() + DEADLINE
    while epoch() < 50:
        assert driver.poll() is None, driver.stdout.read()
        assert time.monotonic() < deadline, "no checkpoint written"
        time.sleep(0.2)
    element = next(iter(json.loads((folder / "slurm" / "jobs.json").read_text())[0]["elements"]))
    subprocess.run(["scancel", "--signal=USR2", element], env=slurm, check=True)
    while queue(slurm).get(element) != "PENDING":      # requeued: Slurm holds it ~2 min …
        assert driver.poll() is None, driver.stdout.read()
        assert time.monotonic() < deadline, f"{element} was not requeued: {queue(slurm)}"
        time.sleep(0.2)
    subprocess.run(["scontrol", "update", f"jobid={element}", "StartTime=now"], env=slurm,
                   check=True)                          # … unless told to start now
    output, _ = driver.communicate(timeout=DEADLINE)
    assert driver.returncode == 0, output
    summary = summaries(folder)["baseline__seed=0"]
    assert summary["status"] == "completed" and summary["resumed_from_epoch"] >= 50
    here = regbench(slurm, "run", str(config), "--out", str(tmp_path / "local"), "--no-report")
    assert here.returncode == 0, here.stderr
    assert without_seconds(folder / "runs" / "baseline__seed=0" / "metrics.csv") == \
        without_seconds(tmp_path / "local" / "pre" / "runs" / "baseline__seed=0" / "metrics.csv")


@pytest.mark.cluster
def test_runs_held_by_a_live_element_are_waited_for_even_when_they_now_fuse(slurm, tmp_path):
    """Seed 0 detached with every run solo; then seeds 0 and 1 fused: the new groups mix runs
    the live elements hold with new ones. The held runs wait for their elements (never
    trained twice); only seed 1's runs are submitted, solo."""
    config = sweep_config(tmp_path, "mix", epochs=150)
    out, folder = tmp_path / "out", tmp_path / "out" / "mix"
    first = regbench(slurm, "run", str(config), "--out", str(out), "--executor", "slurm",
                     "--detach", "--no-report", "--fuse", "off", "--seeds", "0")
    assert first.returncode == 0, first.stderr
    both = regbench(slurm, "run", str(config), "--out", str(out), "--executor", "slurm",
                    "--no-report", "--fuse", "on", "--seeds", "0,1")
    assert both.returncode == 0, both.stdout + both.stderr
    arrays = json.loads((folder / "slurm" / "jobs.json").read_text())
    held = {run for e in arrays[0]["elements"].values() for run in e}
    assert held == {r for r in summaries(folder) if r.endswith("seed=0")} and len(held) == 3
    assert len(arrays) == 2
    assert sorted(run for e in arrays[1]["elements"].values() for run in e) == \
        sorted(r for r in summaries(folder) if r.endswith("seed=1"))
    assert all(s["slurm"]["token"] == arrays[0]["token"]
               for r, s in summaries(folder).items() if r in held)
    assert {s["status"] for s in summaries(folder).values()} == {"completed"}


# ------------------------------------------------------------------ refused before any job

def test_detach_without_slurm_is_refused(tmp_path):
    config = sweep_config(tmp_path, "d")
    result = runner.invoke(app, ["run", str(config), "--out", str(tmp_path), "--detach"])
    one_error_line(result, 2, "--detach", "only with --executor slurm")
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("value, expected", [("soon", "expected minutes or Slurm's"),
                                             (0, "at least 1 minute"),
                                             ("0:00", "at least 1 minute")])
def test_a_bad_time_limit_is_refused_at_its_line(tmp_path, value, expected):
    config = sweep_config(tmp_path, "t", execution=f"execution:\n  slurm: {{time: {value!r}}}\n"
                          if isinstance(value, str) else f"execution:\n  slurm: {{time: {value}}}\n")
    result = runner.invoke(app, ["run", str(config), "--out", str(tmp_path), "--dry-run"])
    one_error_line(result, 2, f"{config.name}:", "execution.slurm.time", expected)


@pytest.mark.parametrize("execution, fragment", [
    ("{partition: \"a\\ntouch /tmp/x\"}", "execution.slurm.partition: expected a partition name"),
    ("{additional: {array: 1-3}}", "array: regbench sets it itself"),
    ("{additional: {time: 5}}", "time: set it as execution.slurm.time"),
    ("{additional: {Account: p1}}", "'Account' is not an sbatch option's long name"),
    ("{additional: {account: \"p1\\n#SBATCH --x\"}}", "account: the value must be one line")])
def test_sbatch_options_cannot_reach_the_script_as_extra_lines(tmp_path, execution, fragment):
    """The sbatch script holds one option per line: a value with a line break would add
    lines (shell commands) to it, and an option regbench sets would be set twice."""
    config = sweep_config(tmp_path, "inj", execution=f"execution:\n  slurm: {execution}\n")
    result = runner.invoke(app, ["run", str(config), "--out", str(tmp_path), "--dry-run"])
    one_error_line(result, 2, f"{config.name}:", fragment)


def test_an_unquoted_time_limit_is_read_as_slurm_reads_it(tmp_path):
    """YAML 1.1 would read 1:30:00 as the base-60 number 5400: 90 hours, not 90 minutes."""
    from regbench.experiment.config import load_config

    config = sweep_config(tmp_path, "tm", execution="execution:\n  slurm: {time: 1:30:00}\n")
    assert load_config(config).config.execution.slurm.time == 90


@pytest.mark.parametrize("value, minutes", [(90, 90), ("45", 45), ("1:30:00", 90),
                                            ("90:00", 90), ("1:00:01", 61), ("2-00", 2880),
                                            ("1-02:03", 1563)])
def test_time_limits_read_as_slurm_reads_them(value, minutes):
    """sbatch --time: "minutes", "minutes:seconds", "hours:minutes:seconds", "days-hours",
    "days-hours:minutes"; seconds round up to a whole minute (submitit asks in minutes)."""
    from regbench.config.schema import SlurmConfig

    assert SlurmConfig(time=value).time == minutes


def test_tune_on_slurm_is_refused(tmp_path):
    config = write_config(tmp_path / "tu.yaml", digits_yaml(
        "tu", "  l2: {l2: {lambda: 1.0}}\n", extra="search:\n  recipes.l2.l2.lambda: "
        "{low: 0.01, high: 1.0, log: true}\n"))
    pytest.importorskip("submitit", reason="needs the slurm extra to get past the executor's "
                                           "own check")
    result = runner.invoke(app, ["tune", str(config), "--out", str(tmp_path), "--executor",
                                 "slurm", "--trials", "2"])
    one_error_line(result, 2, "--executor", "one trial at a time")


def test_slurm_without_its_commands_or_submitit_says_what_to_install(tmp_path):
    config = sweep_config(tmp_path, "n")
    pytest.importorskip("submitit", reason="the slurm extra is not installed")
    empty = tmp_path / "bin"
    empty.mkdir()
    result = subprocess.run([sys.executable, "-m", "regbench", "run", str(config), "--out",
                             str(tmp_path), "--executor", "slurm"], cwd=REPO, text=True,
                            capture_output=True, env={**os.environ, "PATH": str(empty)})
    assert result.returncode == 2 and "Traceback" not in result.stderr + result.stdout
    assert "sbatch and squeue not found on the PATH" in result.stdout + result.stderr
    missing = regbench_without("submitit", ["run", str(config), "--out", str(tmp_path),
                                            "--executor", "slurm"])
    assert missing.returncode == 2 and "pip install -e '.[slurm]'" in missing.stdout + \
        missing.stderr
    assert not (tmp_path / "n").exists()


@pytest.mark.parametrize("minutes, warned", [(60, 90), (4, 60), (1, 15)])
def test_the_warning_before_the_time_limit_leaves_time_to_train(tmp_path, minutes, warned):
    """Slurm signals an element signal_delay_s before its limit (submitit then requeues it):
    90 s as submitit does, but never more than a quarter of a short limit."""
    pytest.importorskip("submitit", reason="the slurm extra is not installed")
    from regbench.config.schema import SlurmConfig
    from regbench.engine.slurm import SlurmExecutor

    executor = SlurmExecutor(tmp_path, print, SlurmConfig(time=minutes).model_dump())
    assert executor._parameters()["signal_delay_s"] == warned

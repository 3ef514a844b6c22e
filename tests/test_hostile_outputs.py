"""Reliability round 3 (issue 31), outputs: a results path that is not a folder, an unwritable
``--junit`` and a report that cannot be written each end in one line before anything trains
(or, while writing, exit 1), and leave what was there as it was: files byte for byte, links
as links."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import REPO, TINY_DIGITS
from test_bad_input import limited_file_size
from typer.testing import CliRunner

from regbench.cli import app
from regbench.errors import ConfigError
from regbench.experiment.launch import Launch

runner = CliRunner()
IS_ROOT = os.geteuid() == 0       # permission bits do not stop root


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line(result, code: int, *fragments: str) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("regbench: error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def tree(folder: Path) -> dict[str, object]:
    """Every entry under ``folder`` as it is: a file's bytes, a link's target (a dangling one
    too), or a folder; never following a link."""
    entries: dict[str, object] = {}
    for root, folders, files in os.walk(folder):
        for name in folders + files:
            path = Path(root) / name
            key = str(path.relative_to(folder))
            entries[key] = (("link", os.readlink(path)) if path.is_symlink() else
                            ("file", path.read_bytes()) if path.is_file() else "folder")
    return entries


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """The results root of a finished `tiny` run (baseline and l2, seed 0), never changed:
    each test damages a copy."""
    root = tmp_path_factory.mktemp("finished")
    config = root / "tiny.yaml"
    config.write_text(TINY_DIGITS)
    result = invoke("run", config, "--out", root / "out", "--no-report")
    assert result.exit_code == 0, result.output
    return root / "out"


def copy_of(finished: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(finished, out, symlinks=True)
    return out


# ----------------------------------------------------------------------------- not a folder

PLACES = {
    "the results root (--out)": lambda out: out,
    "the results folder": lambda out: out / "tiny",
    "runs/": lambda out: out / "tiny" / "runs",
    "a run folder": lambda out: out / "tiny" / "runs" / "l2__seed=0",
}
KINDS = ("a file", "a dangling link")


def plant(path: Path, kind: str) -> None:
    """A regular file or a link to nothing where regbench expects a folder (replacing what
    is there)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "a file":
        path.write_text("not a folder\n")
    else:
        path.symlink_to(path.parent / "gone", target_is_directory=True)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("place", list(PLACES))
def test_run_refuses_a_results_path_that_is_not_a_folder_before_training(tmp_path, place, kind):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_DIGITS)
    target = PLACES[place](tmp_path / "out")
    plant(target, kind)
    before = tree(tmp_path)
    result = invoke("run", config, "--out", tmp_path / "out", "--no-report")
    one_line(result, 2, str(target), kind, "not a folder", "expected")
    assert tree(tmp_path) == before                  # nothing trained, written or replaced


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("place", [p for p in PLACES if p != "the results root (--out)"])
def test_compare_and_report_refuse_a_results_path_that_is_not_a_folder(finished, tmp_path,
                                                                       place, kind):
    """Read or written, a run folder replaced by a file is named, not passed over as a run
    that did not finish (`regbench run` could not write it)."""
    out = copy_of(finished, tmp_path)
    target = PLACES[place](out)
    plant(target, kind)
    before = tree(tmp_path)
    for command in (["compare"], ["compare", "--write"], ["report"]):
        result = invoke(command[0], out / "tiny", *command[1:])
        one_line(result, 2, str(target), kind, "not a", "expected")
        assert tree(tmp_path) == before, command


def test_a_stray_file_in_runs_is_not_a_run(finished, tmp_path):
    out = copy_of(finished, tmp_path)
    (out / "tiny" / "runs" / "NOTES.txt").write_text("mine\n")
    (out / "tiny" / "plan.json").unlink()                # every folder of runs/ is read
    result = invoke("compare", out / "tiny")
    assert result.exit_code == 0, result.output
    assert (out / "tiny" / "runs" / "NOTES.txt").read_text() == "mine\n"


# ----------------------------------------------------------------------------- --junit

def junit_in_missing_folder(d: Path) -> Path:
    return d / "missing" / "junit.xml"


def junit_a_folder(d: Path) -> Path:
    (d / "reports").mkdir()
    return d / "reports"


def junit_below_a_file(d: Path) -> Path:
    (d / "a_file").write_text("x\n")
    return d / "a_file" / "junit.xml"


def junit_dangling_link(d: Path) -> Path:
    (d / "junit.xml").symlink_to(d / "missing" / "junit.xml")
    return d / "junit.xml"


def junit_read_only_folder(d: Path) -> Path:
    if IS_ROOT:
        pytest.skip("root writes into a read-only folder: the permission case needs a user")
    (d / "ro").mkdir()
    (d / "ro").chmod(0o555)
    return d / "ro" / "junit.xml"


def junit_in_sys(d: Path) -> Path:
    """/sys takes no new file, not even from root."""
    import tempfile

    try:
        with tempfile.TemporaryFile(dir="/sys"):
            pytest.skip("/sys takes new files here")
    except OSError:
        pass
    return Path("/sys/regbench-junit.xml")


JUNIT = [("its folder does not exist", junit_in_missing_folder, "does not exist"),
         ("a folder", junit_a_folder, "is a folder"),
         ("below a regular file", junit_below_a_file, "is not a folder"),
         ("a link into a missing folder", junit_dangling_link, "does not exist"),
         ("a read-only folder", junit_read_only_folder, "not writable"),
         ("a folder no one writes", junit_in_sys, "not writable")]


@pytest.mark.parametrize("make,why", [c[1:] for c in JUNIT], ids=[c[0] for c in JUNIT])
def test_an_unwritable_junit_path_is_refused_before_anything_trains(tmp_path, make, why):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_DIGITS)
    path = make(tmp_path)
    try:
        result = invoke("run", config, "--out", tmp_path / "out", "--junit", path)
        one_line(result, 2, "--junit", str(path), why, "expected a file path")
        assert not (tmp_path / "out").exists()       # no runs/ folder: nothing trained
        with pytest.raises(ConfigError, match="--junit"):   # the Python API: the same check
            Launch(junit=path)
    finally:
        if (tmp_path / "ro").exists():
            (tmp_path / "ro").chmod(0o755)


def test_junit_to_a_pipe_is_streamed_and_the_check_never_opens_it(tmp_path):
    """A CI collector reading a named pipe gets the whole report once: the check before
    training does not open the pipe (the reader would take an empty report and leave)."""
    fifo = tmp_path / "collector"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_DIGITS.replace("epochs: 2", "epochs: 1"))
    result = invoke("run", config, "--out", tmp_path / "out", "--no-report", "--junit", fifo)
    reader.join(timeout=30)
    assert result.exit_code == 0, result.output
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    suites = ET.fromstring(received[0])
    assert suites.get("tests") == "2" and suites.get("failures") == "0"
    assert Launch(junit="/dev/null").junit == Path("/dev/null")     # a device: accepted


# ----------------------------------------------------------------------------- report writes

def report_after(setup, results: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "regbench", "report", str(results)],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          preexec_fn=setup)


def report_read_only_file_system(results: Path) -> subprocess.CompletedProcess:
    """`regbench report` in a mount namespace where the results folder is mounted
    read-only (its parent, where the lock file goes, stays writable)."""
    mount = 'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0"'
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", mount + " && true", str(results)],
                           capture_output=True) if shutil.which("unshare") else None
    if probe is None or probe.returncode != 0:
        pytest.skip("no read-only bind mount here (unshare -rm not permitted)")
    return subprocess.run(["unshare", "-rm", "sh", "-c",
                           mount + ' && exec "$1" -m regbench report "$0"', str(results),
                           sys.executable], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def report_without_permission(results: Path) -> subprocess.CompletedProcess:
    """A folder the user may not write: mode 0555, or for root (whom modes do not stop)
    the immutable attribute."""
    folders = [results, results / "plots"]
    if IS_ROOT:
        if not shutil.which("chattr") or subprocess.run(
                ["chattr", "+i", *map(str, folders)], capture_output=True).returncode:
            pytest.skip("root, and no immutable attribute on this file system")
        try:
            return report_after(None, results)
        finally:
            subprocess.run(["chattr", "-i", *map(str, folders)], check=True)
    for folder in folders:
        folder.chmod(0o555)
    try:
        return report_after(None, results)
    finally:
        for folder in folders:
            folder.chmod(0o755)


REPORT_FAULTS = [
    ("a full disk", lambda results: report_after(limited_file_size(3000), results),
     "File too large"),
    ("a read-only file system", report_read_only_file_system, "Read-only file system"),
    ("no permission", report_without_permission, "not permitted" if IS_ROOT else "denied"),
]


@pytest.mark.parametrize("fault,why", [c[1:] for c in REPORT_FAULTS],
                         ids=[c[0] for c in REPORT_FAULTS])
def test_a_report_that_cannot_be_written_is_one_line_and_keeps_the_earlier_one(
        finished, tmp_path, fault, why):
    """The plots and report.html of an earlier `regbench report` stay whole: the new figures
    are written atomically and the earlier ones removed only once every new one is written."""
    results = copy_of(finished, tmp_path) / "tiny"
    assert invoke("report", results).exit_code == 0
    before = tree(tmp_path)
    process = fault(results)
    assert process.returncode == 1, process.stderr
    assert "Traceback" not in process.stderr
    errors = [line for line in process.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("regbench: error: "), process.stderr
    assert str(results / "plots") in errors[0] and why in errors[0], errors[0]
    assert tree(tmp_path) == before                 # no partial or temporary file, no lock


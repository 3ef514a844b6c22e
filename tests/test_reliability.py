"""Reliability round 2 (issue 14): each class of fault has its mechanism and its cases here —
bounded configs, writes confined to the results folder, damaged run state, read-only commands,
signals and orphaned workers, one writer per results folder, checks before training."""
from __future__ import annotations

import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_DIGITS
from test_resume import SLOW_SWEEP, start
from typer.testing import CliRunner

from regbench.cli import app
from regbench.config.yaml_io import MAX_BYTES, MAX_VALUES, parse_yaml
from regbench.errors import ConfigError
from regbench.experiment.config import load_config
from regbench.experiment.plan import build_plan

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line(result, code: int, *fragments: str) -> str:
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("regbench: error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# ----------------------------------------------------------------------------- config bounds

def laughs(levels: int) -> str:
    """The "billion laughs": each level an anchor listing the previous one nine times."""
    lines = ['l0: &l0 ["ha","ha","ha","ha","ha","ha","ha","ha","ha"]']
    lines += [f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_quickly_in_bounded_memory(tmp_path):
    """9^9 values from 800 bytes: parsing under a 1 GiB address-space limit ends in the error."""
    path = tmp_path / "bomb.yaml"
    path.write_text(laughs(9))
    assert path.stat().st_size < 1000
    code = (f"from regbench.config.yaml_io import read_yaml_file\nfrom regbench.errors import "
            f"ConfigError\ntry:\n    read_yaml_file(__import__('pathlib').Path({str(path)!r}))\n"
            "except ConfigError as exc:\n    print(exc)\n")

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))

    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], preexec_fn=limit, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"expands to more than {MAX_VALUES:,} values" in result.stdout
    assert str(path) in result.stdout and time.perf_counter() - started < 30


@pytest.mark.parametrize("name,text,fragment", [
    ("self-referencing alias", "a: &a [*a]\n", "nested more than 40 levels"),
    ("deep flow nesting", "a: " + "[" * 3000 + "]" * 3000 + "\n", "nested more than 40 levels"),
    ("deep block nesting", "".join("  " * i + f"k{i}:\n" for i in range(60)) + "  " * 60 + "v: 1\n",
     "nested more than 40 levels"),
    ("alias bomb", laughs(7), "expands to more than"),
])
def test_config_shape_limits_are_located_exit_2_errors(tmp_path, name, text, fragment):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    result = invoke("validate", path)
    line = one_line(result, 2, fragment, str(path))
    assert "Traceback" not in result.output and "RecursionError" not in line


def test_a_huge_config_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "big.yaml"
    with path.open("w") as handle:
        handle.write(TINY_DIGITS)
        handle.write("# padding\n" * (50 * 2**20 // 10))         # 50 MB of comments
    started = time.perf_counter()
    one_line(invoke("validate", path), 2, f"more than {MAX_BYTES:,}", str(path))
    assert time.perf_counter() - started < 10
    with pytest.raises(ConfigError, match="characters, more than"):
        parse_yaml("a: 1\n" + "#" * (MAX_BYTES + 1), "--set")


def test_merge_keys_merge_and_the_mapping_overrides_them(tmp_path):
    data, _ = parse_yaml("d: &d {x: 1, y: 2}\ne: &e {<<: *d, y: 3}\nf: *e\n"
                         "g: {<<: [*d, {x: 9, z: 5}], z: 7}\n")
    assert data["e"] == data["f"] == {"x": 1, "y": 3}
    assert data["g"] == {"x": 1, "y": 2, "z": 7}        # the first merged map wins over the second
    with pytest.raises(ConfigError, match="duplicate key 'y'"):
        parse_yaml("d: &d {x: 1}\ne: {<<: *d, y: 3, y: 4}\n")
    config = tmp_path / "merge.yaml"
    config.write_text(TINY_DIGITS.replace("  l2: {l2: {lambda: 1.0}}", "  l2: &l2 {l2: {lambda: 1.0}}\n"
                                          "  l2_long: {<<: *l2, train: {epochs: 3}}"))
    plan = build_plan(load_config(config))
    long = next(run for run in plan.runs if run["recipe"] == "l2_long")
    assert long["regularizers"] == {"l2": {"lambda": 1.0, "include_bias": False}}
    assert long["train"]["epochs"] == 3


# ----------------------------------------------------------------------------- signals, orphans

def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def is_worker(pid: int) -> bool:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return b"spawn_main" in command and b"resource_tracker" not in command


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_no_worker_outlives_its_driver(tmp_path, sig):
    config = tmp_path / "slow.yaml"
    config.write_text(SLOW_SWEEP.format(epochs=200, lambdas="[1, 10]"))
    driver = start(config, tmp_path, "--workers", "2")
    try:
        deadline = time.monotonic() + 90
        while len([c for c in children(driver.pid) if is_worker(c)]) < 2:
            assert driver.poll() is None and time.monotonic() < deadline, driver.stdout.read()
            time.sleep(0.1)
        workers = [c for c in children(driver.pid) if is_worker(c)]
        time.sleep(2.0)                              # both are training now
        driver.send_signal(sig)
        code = driver.wait(timeout=60)
        deadline = time.monotonic() + 10
        while any(alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [w for w in workers if alive(w)], "a worker outlived its driver"
        if sig == signal.SIGTERM:                    # handled like Ctrl-C
            assert code == 143, driver.stdout.read()
    finally:
        if driver.poll() is None:
            driver.kill()


# ----------------------------------------------------------------------------- confinement

def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def finished(tmp_path) -> tuple[Path, Path]:
    """A config and the results root of its finished run (tiny: baseline and l2)."""
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_DIGITS)
    result = invoke("run", config, "--out", tmp_path / "out", "--no-report")
    assert result.exit_code == 0, result.output
    return config, tmp_path / "out"


@pytest.mark.parametrize("link", ["run folder", "runs", "plots"])
def test_nothing_is_written_or_deleted_through_a_link_out_of_the_results_folder(finished,
                                                                               tmp_path, link):
    config, out = finished
    results = out / "tiny"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / ".summary.json.123.tmp").write_text("someone else's")   # must not be cleaned
    (outside / "keep.png").write_bytes(b"not ours")
    target = {"run folder": results / "runs" / "l2__seed=0", "runs": results / "runs",
              "plots": results / "plots"}[link]
    if target.exists():
        import shutil

        shutil.rmtree(target)
    target.symlink_to(outside, target_is_directory=True)
    before = snapshot(outside)
    commands = [["run", config, "--out", out, "--fresh" if link == "runs" else "--resume"]]
    if link == "plots":                                # report writes plots/, reads the runs
        commands.append(["report", results])
    for command in commands:
        result = invoke(*command)
        line = one_line(result, 2, "outside the results folder", str(outside))
        assert "remove the link" in line
    assert snapshot(outside) == before


def test_planted_links_in_the_output_folder_are_not_written_through(finished, tmp_path):
    config, out = finished
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (out / "tiny" / ".regbench-write-test").symlink_to(victim)    # the old fixed probe name
    assert invoke("run", config, "--out", out, "--no-report").exit_code == 0
    (out / ".tiny.lock").symlink_to(victim)
    one_line(invoke("run", config, "--out", out, "--no-report"), 2, ".tiny.lock", "is a link")
    assert victim.read_text() == "precious\n"


def test_damaged_thresholds_in_a_run_config_fall_back_to_the_defaults(finished):
    _, out = finished
    run_config = out / "tiny" / "runs" / "l2__seed=0" / "config.yaml"
    text = run_config.read_text()
    assert "f1_drop: 0.05" in text
    run_config.write_text(text.replace("f1_drop: 0.05", "f1_drop: 7.5"))     # out of range
    result = invoke("diagnose", out / "tiny")
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert "l2__seed=0:" in result.output


# ----------------------------------------------------------------------------- damaged state

DAMAGE = {
    "truncated": lambda text: text[: len(text) // 2],
    "a list": lambda text: "[1, 2, 3]\n",
    "empty object": lambda text: "{}\n",
    "wrong types": lambda text: text.replace('"seed": 0', '"seed": "zero"'),
    "forged as completed": lambda text: '{"status": "completed", "run_id": "l2__seed=0", '
                                        '"recipe": "l2", "seed": 0, "config_hash": "x", '
                                        '"task": "classification"}',
    "another run's": lambda text: text.replace('"run_id": "l2__seed=0"',
                                               '"run_id": "baseline__seed=0"'),
    "a verdict of the wrong shape": lambda text: text.replace('"verdict": {',
                                                              '"verdict": ["x"], "was": {'),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_summary_is_named_never_omitted_and_retrained(finished, damage):
    config, out = finished
    results = out / "tiny"
    path = results / "runs" / "l2__seed=0" / "summary.json"
    path.write_text(DAMAGE[damage](path.read_text()))
    before = snapshot(results)
    for command in (["compare", results], ["compare", results, "--format", "csv"],
                    ["diagnose", results]):
        result = invoke(*command)
        assert result.exit_code == 0, result.output
        assert "l2" in result.output and "damaged" in result.output, result.output
    report = invoke("report", results)
    assert report.exit_code == 0, report.output
    assert "l2__seed=0" in (results / "report.html").read_text()
    assert {k: v for k, v in snapshot(results).items() if not k.startswith(("plots", "report"))} \
        == before                                       # read-only commands wrote nothing else
    rerun = invoke("run", config, "--out", out, "--no-report")
    assert rerun.exit_code == 0, rerun.output
    assert "l2__seed=0" in rerun.output and "trained again" in rerun.output
    assert '"status": "completed"' in path.read_text()


@pytest.mark.parametrize("content", [None, "", "garbage,\x00\n%%%\n", "epoch,seconds\n"])
def test_missing_empty_or_garbage_curves_are_never_diagnosed_ok(finished, content):
    _, out = finished
    metrics = out / "tiny" / "runs" / "l2__seed=0" / "metrics.csv"
    if content is None:
        metrics.unlink()
    else:
        metrics.write_text(content)
    result = invoke("diagnose", out / "tiny")
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("l2__seed=0"))
    assert "unknown" in line and " ok" not in line


# ----------------------------------------------------------------------------- read-only

def test_compare_and_diagnose_leave_the_folder_byte_identical(finished):
    _, out = finished
    results = out / "tiny"
    invoke("report", results)
    before = snapshot(results)
    for command in (["compare", results, "--metric", "ece"], ["compare", results, "--format", "md"],
                    ["diagnose", results]):
        assert invoke(*command).exit_code == 0
    assert snapshot(results) == before
    assert "--write" in invoke("compare", "--help").output
    assert invoke("compare", results, "--metric", "ece", "--write").exit_code == 0
    assert "ece" in (results / "comparison.md").read_text()


# ----------------------------------------------------------------------------- one writer

def test_two_runs_on_one_folder_train_each_run_once(tmp_path):
    config = tmp_path / "slow.yaml"
    config.write_text(SLOW_SWEEP.format(epochs=30, lambdas="[1]"))
    first = start(config, tmp_path)
    results = tmp_path / "killme"
    lock = tmp_path / ".killme.lock"
    deadline = time.monotonic() + 60
    while not (lock.exists() and "pid" in lock.read_text()):
        assert first.poll() is None and time.monotonic() < deadline, first.stdout.read()
        time.sleep(0.05)
    # paused while it holds the lock: however fast its (fused) runs train and however slowly
    # the second command starts on a loaded machine, the second meets the first's lock
    first.send_signal(signal.SIGSTOP)
    try:
        second = subprocess.run([sys.executable, "-m", "regbench", "run", str(config),
                                 "--out", str(tmp_path), "--no-report"], capture_output=True,
                                text=True)
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.returncode == 2
    assert f"in use by regbench pid {first.pid} on" in second.stderr, second.stderr
    assert first.wait(timeout=300) == 0
    assert not lock.exists()                           # removed by its holder
    third = subprocess.run([sys.executable, "-m", "regbench", "run", str(config), "--out",
                            str(tmp_path), "--no-report"], capture_output=True, text=True)
    assert third.returncode == 0 and "already completed, skipped" in third.stderr + third.stdout
    assert len(list((results / "runs").glob("*/summary.json"))) == 4


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    config = tmp_path / "slow.yaml"
    config.write_text(SLOW_SWEEP.format(epochs=30, lambdas="[1]"))
    first = start(config, tmp_path)
    lock = tmp_path / ".killme.lock"
    deadline = time.monotonic() + 60
    while not lock.exists():
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    first.kill()
    first.wait()
    assert lock.exists()                               # left behind, but no longer held
    result = subprocess.run([sys.executable, "-m", "regbench", "run", str(config), "--out",
                             str(tmp_path), "--no-report"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# ----------------------------------------------------------------------------- before training

def mnist_with(folder: Path, train_labels=None, test_images=None) -> Path:
    from test_bad_input import mnist_folder, write_idx

    mnist_folder(folder)
    if train_labels is not None:
        write_idx(folder / "train-labels-idx1-ubyte.gz", train_labels)
    if test_images is not None:
        write_idx(folder / "t10k-images-idx3-ubyte.gz", test_images)
    return folder


def csv_with(path: Path, bad: str, task: str) -> str:
    rows = "".join(f"{i % 7 * 0.5},{(i * 3) % 5},{i % 2 if task == 'classification' else i}\n"
                   for i in range(40))
    lines = ("a,b,label\n" + rows).splitlines()
    lines[5] = bad
    path.write_text("\n".join(lines) + "\n")
    return (f"name: tiny\ndataset: {{name: csv, path: '{path}', target: label, task: {task}}}\n"
            "model: {name: mlp, hidden: [4]}\ntrain: {epochs: 1, batch_size: 8, threads: 1}\n")


MODEL = "model: {name: mlp, hidden: [4]}\ntrain: {epochs: 1, threads: 1}\n"
PREFLIGHT = [
    ("IDX labels beyond the classes",
     lambda d: f"name: m\ndataset: {{name: mnist, root: '{mnist_with(d / 'm', np.arange(30) % 12)}'}}\n"
     + MODEL, ["train labels run from 0 to 11", "expected classes 0 to 9"]),
    ("train and test images of different sizes",
     lambda d: f"name: m\ndataset: {{name: mnist, root: "
     f"'{mnist_with(d / 'm', test_images=np.zeros((30, 20, 20)))}'}}\n" + MODEL,
     ["different shapes", "train (1, 28, 28)", "test (1, 20, 20)"]),
    ("a feature beyond float32", lambda d: csv_with(d / "t.csv", "1e308,1,0", "classification"),
     ["1e+308", "float32's range"]),
    ("an infinite regression target", lambda d: csv_with(d / "t.csv", "1,1,inf", "regression"),
     ["targets hold inf", "finite numbers"]),
    ("adam betas outside [0, 1)", lambda d: TINY_DIGITS.replace(
        "optimizer: {name: sgd, lr: 0.1}", "optimizer: {name: adam, lr: 0.1, betas: [0.9, 1.0]}"),
     ["train.optimizer.betas.1", "must be < 1"]),
    ("a run id longer than a file name", lambda d: TINY_DIGITS.replace(
        "  l2: {l2: {lambda: 1.0}}", "  " + "r" * 90 + ": {l2: {lambda: 1.0}}") +
     "sweep: {model.hidden: [[" + ", ".join(["4"] * 90) + "]]}\n",
     ["bytes; a run folder name may have at most 255"]),
    ("n_samples: 1e9", lambda d: "name: s\ndataset: {name: synthetic_classification, "
     "n_samples: 1e9}\n" + MODEL, ["dataset.n_samples", "must be <= 10000000"]),
    ("hidden: [1e9]", lambda d: "name: s\n" + MODEL.replace("[4]", "[1e9]"),
     ["model.hidden.0", "must be <= 65536"]),
    ("bayes_by_backprop samples: 1e9", lambda d: TINY_DIGITS.replace(
        "{l2: {lambda: 1.0}}", "{bayes_by_backprop: {samples: 1e9}}"),
     ["recipes.l2.bayes_by_backprop.samples", "must be <= 1000"]),
    ("epochs: 1e9", lambda d: TINY_DIGITS.replace("epochs: 2", "epochs: 1e9"),
     ["train.epochs", "must be <= 100000"]),
    ("threads: 1e9", lambda d: TINY_DIGITS.replace("threads: 1", "threads: 1e9"),
     ["train.threads", "must be <= 1024"]),
    ("cutout holes: 1e9", lambda d: TINY_DIGITS.replace("{l2: {lambda: 1.0}}",
                                                        "{cutout: {size: 2, holes: 1e9}}"),
     ["recipes.l2.cutout.holes", "must be <= 1000"]),
]


@pytest.mark.parametrize("make,fragments", [c[1:] for c in PREFLIGHT], ids=[c[0] for c in PREFLIGHT])
def test_what_would_fail_every_run_is_an_error_before_anything_is_written(tmp_path, make,
                                                                          fragments):
    config = tmp_path / "c.yaml"
    config.write_text(make(tmp_path))
    started = time.perf_counter()
    one_line(invoke("validate", config), 2, *fragments)
    out = tmp_path / "out"
    one_line(invoke("run", config, "--out", out), 2, *fragments)
    assert not out.exists()                          # nothing written
    assert time.perf_counter() - started < 60


def test_the_largest_split_seed_is_a_seed_like_any_other(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(TINY_DIGITS.replace("train_subset: 300", "train_subset: 300, "
                                          "split_seed: 4294967295"))
    assert invoke("validate", config).exit_code == 0


# ----------------------------------------------------------------------------- messages

def test_invisible_characters_are_shown_escaped(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(TINY_DIGITS.replace("  l2: {l2:", "  l2: {l\u200b2:"))
    line = one_line(invoke("validate", config), 2)
    assert "l\\u200b2" in line and "\u200b" not in line
    table = tmp_path / "t.csv"
    table.write_text("\ufeffa,b,label\n" + "1,2,0\n3,4,1\n" * 20, encoding="utf-8")
    config.write_text(f"name: t\ndataset: {{name: csv, path: '{table}', target: \"\\ufeffx\", "
                      "task: classification}\nrecipes: {}\n")
    line = one_line(invoke("validate", config), 2)
    assert "\ufeff" not in line and "\\ufeff" in line


@pytest.mark.parametrize("options,fragment", [
    (["run", "CONFIG", "--bogus"], "No such option: --bogus"),
    (["run", "CONFIG", "--workers", "two"], "Invalid value for '--workers'"),
    (["run", "CONFIG", "--device", "tpu"], "Invalid value for '--device'"),
    (["run"], "Missing argument"),
    (["compare", "RESULTS", "--format", "xml"], "Invalid value for '--format'"),
])
def test_usage_errors_are_one_regbench_error_line(tmp_path, options, fragment):
    config = tmp_path / "c.yaml"
    config.write_text(TINY_DIGITS)
    args = [str(config) if a == "CONFIG" else str(tmp_path) if a == "RESULTS" else a
            for a in options]
    result = subprocess.run([sys.executable, "-m", "regbench", *args], capture_output=True,
                            text=True)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("regbench: error: "), result.stderr
    assert fragment in lines[0] and "--help" in lines[0]


@pytest.mark.parametrize("seeds", ["1,,2", "\u0661,2", "0,1,"])
def test_seed_lists_are_plain_ascii_integers(tmp_path, seeds):
    config = tmp_path / "c.yaml"
    config.write_text(TINY_DIGITS)
    one_line(invoke("run", config, "--seeds", seeds, "--dry-run"), 2, "--seeds",
             "comma-separated integers")


def test_settings_without_effect_are_warned_about(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("name: r\nseeds: [0]\ndataset: {name: diabetes, label_noise: 0.2}\n"
                      "model: {name: linear}\nrecipes:\n  baseline: {l2: {lambda: 1.0}}\n")
    result = invoke("validate", config)
    assert result.exit_code == 0, result.output
    assert "label_noise: 0.2 has no effect" in result.output
    assert "recipe 'baseline' has regularizers (l2)" in result.output


def test_compare_advises_only_what_it_can_do(finished):
    _, out = finished
    result = invoke("compare", out / "tiny")
    # compare cannot train: it names the option to add to the user's own run command
    assert "run the same command with --seeds 0-4" in " ".join(result.output.split())


def test_outputs_named_by_the_user_are_never_replaced_by_a_regular_file(tmp_path):
    """schema --out and --junit write to a pipe (a CI collector reading) as a stream, and
    through a link to a file, leaving the pipe a pipe and the link a link."""
    import json
    import os
    import stat
    import threading

    fifo = tmp_path / "collector"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    result = invoke("schema", "--out", fifo)
    reader.join(timeout=30)
    assert result.exit_code == 0, result.output
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert json.loads(received[0])["title"]
    target = tmp_path / "real.xml"
    target.write_text("old")
    link = tmp_path / "junit.xml"
    link.symlink_to(target)
    config = tmp_path / "t.yaml"
    config.write_text(TINY_DIGITS.replace("epochs: 2", "epochs: 1"))
    result = invoke("run", config, "--out", tmp_path / "o", "--no-report", "--junit", link)
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and target.read_text().startswith("<?xml")


def test_a_plugin_that_exits_at_import_is_an_error_not_a_green_run(tmp_path):
    plugin = tmp_path / "quits.py"
    plugin.write_text("import sys\nsys.exit(0)\n")
    config = tmp_path / "t.yaml"
    config.write_text(TINY_DIGITS)
    result = invoke("run", config, "--out", tmp_path / "o", "--plugin", plugin)
    assert result.exit_code == 2
    assert "it called sys.exit(0) while loading" in result.output
    assert not (tmp_path / "o").exists()


def test_a_plugin_model_with_the_wrong_output_width_is_refused_before_training(tmp_path):
    plugin = tmp_path / "wide.py"
    plugin.write_text("import regbench, torch\n\n"
                      "@regbench.register_model('too_wide_for_digits')\n"
                      "def too_wide(input_shape, output_dim):\n"
                      "    return torch.nn.Sequential(torch.nn.Flatten(), "
                      "torch.nn.Linear(64, output_dim + 3))\n")
    config = tmp_path / "t.yaml"
    config.write_text(TINY_DIGITS.replace("{name: mlp, hidden: [32]}",
                                          "{name: too_wide_for_digits}"))
    result = invoke("run", config, "--out", tmp_path / "o", "--plugin", plugin, "--no-report")
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "returns outputs of shape (2, 13) for 2 samples; expected (2, 10)" in text
    assert not list((tmp_path / "o").rglob("summary.json"))


def test_junit_text_is_valid_xml_whatever_a_failure_message_holds():
    import xml.etree.ElementTree as ET

    from regbench.report.junit import xml_text

    message = "boom \x1b[31mred\x1b[0m \x00 and \x08 ok é ✓"
    cleaned = xml_text(message)
    assert "\x1b" not in cleaned and "\x00" not in cleaned and "é ✓" in cleaned
    element = ET.Element("failure", message=cleaned)
    assert ET.fromstring(ET.tostring(element)).get("message") == cleaned


def test_the_lock_is_the_folders_whatever_path_reaches_it(tmp_path):
    """compare --write and report through a link to a results folder meet the lock of the
    run writing the folder (the lock was named from the path as typed)."""
    from regbench.errors import RegbenchError
    from regbench.results import ResultsLock

    (tmp_path / "real" / "exp").mkdir(parents=True)
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    code = ("import sys, time; from regbench.results import ResultsLock\n"
            f"with ResultsLock({str(tmp_path / 'real' / 'exp')!r}):\n"
            "    print('held', flush=True); time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RegbenchError, match="in use by regbench pid"):
            with ResultsLock(tmp_path / "alias" / "exp"):
                pass
        for command in (["report"], ["compare", "--write"]):
            result = invoke(command[0], tmp_path / "alias" / "exp", *command[1:])
            assert result.exit_code == 2 and "in use by" in result.output, command
    finally:
        holder.kill()
        holder.wait()

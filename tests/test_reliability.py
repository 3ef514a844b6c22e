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

import pytest
from typer.testing import CliRunner

from conftest import TINY_DIGITS
from test_resume import SLOW_SWEEP, start
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

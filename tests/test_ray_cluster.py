"""`--executor ray --address` on a real multi-process Ray cluster: Ray's own
``cluster_utils.Cluster`` starts a head and worker nodes as separate processes on this machine
(the processes `ray start` starts), so a node can be killed mid-sweep. A plugin's file goes to
the nodes with the task (``runtime_env``); a task whose node dies runs again on another node,
and the tables equal a local run's (one thread per run on both)."""
from __future__ import annotations

import csv
import io
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, digits_yaml, write_config

ray = pytest.importorskip("ray", reason="the optional 'ray' extra is not installed "
                                        "(pip install -e '.[ray]')")
from ray.cluster_utils import Cluster  # noqa: E402

DEADLINE = 300.0


@pytest.fixture
def cluster():
    cluster = Cluster(initialize_head=True, connect=False,
                      head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        yield cluster
    finally:
        cluster.shutdown()


def regbench(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "regbench", *args, "--no-report"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finished(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=DEADLINE)
    assert process.returncode == 0, output
    return output


def without_seconds(path: Path) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if "second" not in k}
            for row in csv.DictReader(io.StringIO(path.read_text()))]


def same_tables(a: Path, b: Path) -> None:
    assert without_seconds(a / "comparison.csv") == without_seconds(b / "comparison.csv")
    runs = sorted(p.name for p in (b / "runs").iterdir())
    assert runs == sorted(p.name for p in (a / "runs").iterdir())
    for run in runs:
        assert without_seconds(a / "runs" / run / "metrics.csv") == \
            without_seconds(b / "runs" / run / "metrics.csv"), run


@pytest.mark.cluster      # (a cluster on this machine: a plain ray.init() elsewhere would join it)
def test_address_joins_a_running_cluster_and_ships_the_plugin(cluster, tmp_path):
    cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    config = write_config(tmp_path / "p.yaml", (REPO / "examples" / "my_plugin.yaml").read_text()
                          .replace("seeds: [0, 1, 2]", "seeds: [0, 1]")
                          .replace("epochs: 30", "epochs: 3, threads: 1"))
    plugin = str(REPO / "examples" / "my_plugin.py")
    on_ray = regbench("run", str(config), "--out", str(tmp_path / "ray"), "--plugin", plugin,
                      "--executor", "ray", "--address", cluster.address)
    finished(on_ray)
    here = regbench("run", str(config), "--out", str(tmp_path / "local"), "--plugin", plugin)
    finished(here)
    same_tables(tmp_path / "ray" / "my_plugin", tmp_path / "local" / "my_plugin")


@pytest.mark.cluster
def test_a_node_killed_mid_sweep_loses_nothing_and_the_tables_are_equal(cluster, tmp_path):
    """The head offers no CPU, so the first tasks train on node A; once a run has finished
    there, node B joins and A is killed (SIGKILL, no graceful exit) with tasks on it: they run
    again on B, and the sweep ends with every run completed and the local run's numbers."""
    node_a = cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    config = write_config(tmp_path / "lost.yaml", digits_yaml(
        "lost", "  l2: {l2: {lambda: 1.0}}\n", epochs=120, train_subset=1000,
        extra="sweep:\n  recipes.l2.l2.lambda: [0.1, 3.0]\n"))
    sweep = regbench("run", str(config), "--out", str(tmp_path / "ray"), "--executor", "ray",
                     "--address", cluster.address, "--fuse", "off")
    runs = tmp_path / "ray" / "lost" / "runs"
    deadline = time.monotonic() + DEADLINE
    while not list(runs.glob("*/summary.json")):
        assert sweep.poll() is None, sweep.stdout.read()
        assert time.monotonic() < deadline, "no run finished on node A"
        time.sleep(0.2)
    cluster.add_node(num_cpus=2)
    done_before = len(list(runs.glob("*/summary.json")))
    cluster.remove_node(node_a, allow_graceful=False)
    finished(sweep)
    assert done_before < 6                       # A died with runs still to train
    here = regbench("run", str(config), "--out", str(tmp_path / "local"), "--fuse", "off")
    finished(here)
    same_tables(tmp_path / "ray" / "lost", tmp_path / "local" / "lost")

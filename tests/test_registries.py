"""One way in: every extension kind (model, dataset, regularizer, tracker, executor) has a
registry filled through one public function, which regbench's own entries use too; a plugin's
tracker and executor are picked by name like the built-ins, unknown names list the registered
ones and a name registered twice is refused."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from torch import nn
from typer.testing import CliRunner

import regbench
from regbench.cli import app
from regbench.config.schema import StrictModel
from regbench.data.base import DATASETS, RawData
from regbench.engine.executors import (
    ProcessExecutor,
    SequentialExecutor,
    check_executor,
    make_executor,
)
from regbench.errors import ConfigError, DataError, RegbenchError
from regbench.models.base import MODELS
from regbench.registry import EXECUTORS, TRACKERS, Executor, Tracker
from regbench.regularizers.base import REGULARIZERS, Regularizer
from regbench.tracking import Trackers, check_trackers, open_trackers
from tests.conftest import digits_yaml, write_config

REGISTRIES = {"model": MODELS, "dataset": DATASETS, "regularizer": REGULARIZERS,
              "tracker": TRACKERS, "executor": EXECUTORS}


# ----------------------------------------------------------------------------- one API

PUBLIC = {"model": "regbench.models.base", "dataset": "regbench.data.base",
          "regularizer": "regbench.regularizers.base", "tracker": "regbench.registry",
          "executor": "regbench.registry"}


@pytest.mark.parametrize("kind", list(REGISTRIES))
def test_builtins_and_plugins_register_through_one_public_function(kind):
    """regbench.register_<kind> (and regbench.plugins') is the function regbench's own modules
    register with."""
    import importlib

    from regbench import plugins

    public = getattr(regbench, f"register_{kind}")
    assert public is getattr(importlib.import_module(PUBLIC[kind]), f"register_{kind}")
    assert public is getattr(plugins, f"register_{kind}")


def test_regbenchs_own_entries_are_marked_as_its_own():
    """In a fresh process (no plugin loaded), every entry is regbench's: the flag that keeps
    plugins out of the stored catalogue comes from where the registered code lives."""
    import subprocess
    import sys

    from regbench.catalogue import stored

    code = ("import json, regbench.models, regbench.data, regbench.regularizers, "
            "regbench.tracking, regbench.engine.executors; "
            "from tests.test_registries import REGISTRIES; "
            "print(json.dumps({kind: {name: registry.get(name).plugin for name in registry} "
            "for kind, registry in REGISTRIES.items()}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-2000:]
    flags = json.loads(done.stdout.splitlines()[-1])
    own = {kind: [entry["name"] for entry in entries]
           for kind, entries in stored()["entries"].items()}
    assert flags == {"model": dict.fromkeys(own["models"], False),
                     "dataset": dict.fromkeys(own["datasets"], False),
                     "regularizer": dict.fromkeys(own["regularizers"], False),
                     "tracker": {"tensorboard": False, "mlflow": False},
                     "executor": {"local": False, "ray": False, "slurm": False}}


def test_a_builtin_model_takes_its_keys_as_a_plugins_does():
    build = MODELS.get("mlp").build          # fn(input_shape, output_dim, **params)
    net = build((1, 8, 8), 10, hidden=[5, 7], activation="tanh")
    assert [m.out_features for m in net if isinstance(m, nn.Linear)] == [5, 7, 10]
    assert isinstance(net[2], nn.Tanh)


DUPLICATES = {
    "model": lambda: regbench.register_model("mlp")(lambda input_shape, output_dim: None),
    "dataset": lambda: regbench.register_dataset("digits", task="classification")(lambda: None),
    "regularizer": lambda: regbench.register_regularizer("l2")(type("L2", (Regularizer,), {})),
    "tracker": lambda: regbench.register_tracker("tensorboard")(lambda plan, out, **o: None),
    "executor": lambda: regbench.register_executor("local")(lambda **options: None),
}


@pytest.mark.parametrize("kind", list(REGISTRIES))
def test_a_name_registered_twice_is_refused_and_the_first_entry_stays(kind):
    name = {"model": "mlp", "dataset": "digits", "regularizer": "l2", "tracker": "tensorboard",
            "executor": "local"}[kind]
    before = REGISTRIES[kind].get(name)
    with pytest.raises(ValueError, match=f"{kind} '{name}' is registered twice"):
        DUPLICATES[kind]()
    assert REGISTRIES[kind].get(name) is before and not before.plugin


def test_unknown_names_list_the_registered_ones_a_plugins_included():
    @regbench.register_tracker("t_reg_listed")
    class Listed:
        def __init__(self, plan, results_dir, **options):
            pass

    @regbench.register_executor("t_reg_listed_exec")
    def listed(**options):
        return SequentialExecutor()

    with pytest.raises(ConfigError) as raised:
        check_trackers(["tensorbaord"])
    assert str(raised.value).startswith("--log: unknown tracker 'tensorbaord' (did you mean "
                                        "'tensorboard'?); expected one of: mlflow, tensorboard")
    assert "t_reg_listed" in str(raised.value)
    with pytest.raises(ConfigError) as raised:
        make_executor("rayy")
    assert str(raised.value).startswith("--executor: unknown executor 'rayy' (did you mean "
                                        "'ray'?); expected one of: local, ray, ")
    assert "t_reg_listed_exec" in str(raised.value)
    with pytest.raises(ConfigError, match="expected one of: local, ray"):
        check_executor("nowhere")


# ----------------------------------------------------------------------------- trackers

def test_a_plugin_tracker_is_checked_then_opened_once_with_the_options():
    opened = []

    @regbench.register_tracker("t_reg_memo", summary="keeps what it was given")
    class Memo:
        def __init__(self, plan, results_dir, **options):
            opened.append((plan, Path(results_dir), options))
            self.runs = []

        def log_run(self, spec, summary, rows, weights, run_dir):
            self.runs.append((spec["run_id"], summary["status"], len(rows)))

        def replay(self, spec, run_dir):
            self.runs.append((spec["run_id"], "replayed", 0))

        def finish(self, interrupted=False):
            self.runs.append(("finished", interrupted, 0))

    def no_store(**options):
        raise RegbenchError("--log t_reg_refuses: the store is not configured")

    @regbench.register_tracker("t_reg_refuses", check=no_store)
    class Refuses(Memo):
        pass

    assert TRACKERS.get("t_reg_memo").plugin and Memo.name == "t_reg_memo"
    with pytest.raises(RegbenchError, match="the store is not configured"):
        open_trackers(["t_reg_memo", "t_reg_refuses"], "plan", Path("out"))
    assert opened == []                     # every tracker checked before any opens
    trackers = open_trackers(["t_reg_memo", "t_reg_memo"], "plan", Path("out"), resume=False)
    assert opened == [("plan", Path("out"), {"mlflow_uri": None, "resume": False})]
    memo = trackers.trackers["t_reg_memo"]
    assert isinstance(memo, Tracker)
    trackers.log_run({"run_id": "a__seed=0"}, {"status": "completed"}, [{}, {}], None,
                     Path("out/runs/a__seed=0"))
    trackers.replay({"run_id": "b__seed=0"}, Path("out/runs/b__seed=0"))
    trackers.finish(True)
    assert memo.runs == [("a__seed=0", "completed", 2), ("b__seed=0", "replayed", 0),
                         ("finished", True, 0)]


def test_a_failing_plugin_tracker_is_named_in_one_warning_and_left_out():
    class Broken:
        name = "not the registered name"

        def log_run(self, *args):
            raise OSError("disk full")

    trackers = Trackers({"t_reg_broken": Broken()}, [])
    trackers.log_run({"run_id": "a__seed=0"}, {}, [], None, Path("."))
    trackers.log_run({"run_id": "a__seed=1"}, {}, [], None, Path("."))
    assert trackers.trackers == {}
    assert trackers.warnings == ["run a__seed=0: t_reg_broken logging failed (OSError: disk "
                                 "full); t_reg_broken is off for the rest of this experiment; "
                                 "the run folders are complete"]


# ----------------------------------------------------------------------------- executors

def test_make_executor_builds_the_registered_executor_with_the_launch_options():
    built = []

    def one_node(workers=1, address=None, **options):
        if address is not None and not address.startswith("node:"):
            raise ConfigError(f"expected node:<host> (got {address})", source="--address")

    @regbench.register_executor("t_reg_node", check=one_node)
    class Node(SequentialExecutor):
        """Runs on one named node (here: this process)."""

        def __init__(self, workers=1, address=None, cores=None, **options):
            built.append((workers, address, cores))

    assert EXECUTORS.get("t_reg_node").summary == "Runs on one named node (here: this process)."
    executor = make_executor("t_reg_node", workers=3, address="node:a", cores=2)
    assert isinstance(executor, Node) and isinstance(executor, Executor)
    assert built == [(3, "node:a", 2)]
    with pytest.raises(ConfigError, match="--address: expected node:<host> "):
        make_executor("t_reg_node", address="10.0.0.1:6379")
    assert len(built) == 1                    # refused before it was built
    assert isinstance(make_executor("local"), SequentialExecutor)
    assert isinstance(make_executor("local", workers=2), ProcessExecutor)
    with pytest.raises(ConfigError, match="--address: only used with --executor ray"):
        check_executor("local", address="10.0.0.1:6379")


# ----------------------------------------------------------------------------- models, data

def test_a_models_explicit_params_must_match_its_signature():
    class WidthParams(StrictModel):
        width: int = 8

    with pytest.raises(TypeError, match=r"model t_reg_bad: its config parameters \['depth'\] "
                                        r"must be the fields of WidthParams \['width'\]"):
        regbench.register_model("t_reg_bad", Params=WidthParams)(
            lambda input_shape, output_dim, depth: None)
    with pytest.raises(TypeError, match="model t_reg_kw: \\*args/\\*\\*kwargs cannot be"):
        regbench.register_model("t_reg_kw")(lambda input_shape, output_dim, **kw: None)
    assert "t_reg_bad" not in MODELS and "t_reg_kw" not in MODELS


def test_a_model_with_explicit_params_is_built_like_a_builtin():
    from pydantic import Field

    from regbench.models.base import build_model

    class WideParams(StrictModel):
        width: int = Field(4, ge=2)            # a constraint the signature cannot carry

    @regbench.register_model("t_reg_wide", Params=WideParams)
    def wide(input_shape, output_dim, width):
        return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(input_shape)), width),
                             nn.ReLU(), nn.Linear(width, output_dim))

    net = build_model({"name": "t_reg_wide", "width": 6}, (1, 8, 8), 10)
    assert net[1].out_features == 6 and MODELS.get("t_reg_wide").plugin
    with pytest.raises(Exception, match="greater than or equal to 2"):
        build_model({"name": "t_reg_wide", "width": 1}, (1, 8, 8), 10)


def test_a_dataset_gets_its_own_keys_and_the_shared_options_it_names(tmp_path):
    np.save(tmp_path / "x.npy", np.arange(20.0).reshape(10, 2))

    @regbench.register_dataset("t_reg_files", task="regression")
    def files(root: str, scale: float = 1.0):
        """Arrays kept under dataset.root."""
        x = np.load(Path(root) / "x.npy") * scale
        return {"train": (x, x.sum(1)), "test": (x[:2], x[:2].sum(1))}

    entry = DATASETS.get("t_reg_files")
    assert list(entry.Params.model_fields) == ["scale"] and entry.summary.startswith("Arrays")
    raw = entry.load({"name": "t_reg_files", "root": str(tmp_path), "scale": 2.0,
                      "val_fraction": 0.1})
    assert raw.task == "regression" and raw.x_val is None
    np.testing.assert_array_equal(raw.x_train, np.arange(20.0).reshape(10, 2) * 2)
    np.testing.assert_array_equal(raw.y_test, [2.0, 10.0])

    @regbench.register_dataset("t_reg_bad_splits", task="classification")
    def bad_splits():
        return {"training": (np.zeros((4, 1)), np.zeros(4))}

    with pytest.raises(DataError, match="dataset t_reg_bad_splits: the loader returned "
                                        r"\['training'\]"):
        DATASETS.get("t_reg_bad_splits").load({"name": "t_reg_bad_splits"})

    @regbench.register_dataset("t_reg_raw", task="classification")
    def raw_data():
        return RawData(x_train=np.zeros((4, 1)), y_train=np.arange(4) % 2, task="classification",
                       class_names=["no", "yes"])

    assert DATASETS.get("t_reg_raw").load({"name": "t_reg_raw"}).class_names == ["no", "yes"]


# ----------------------------------------------------------------------------- regularizers

def test_a_regularizer_registers_under_the_name_given_and_only_that():
    @regbench.register_regularizer("t_reg_noop")
    class Noop(Regularizer):
        """Changes nothing."""

    assert Noop.name == "t_reg_noop" and Noop.plugin and REGULARIZERS.get("t_reg_noop") is Noop

    class Named(Regularizer):
        name = "t_reg_one"

    with pytest.raises(ValueError, match="its name 't_reg_one' is not the registered name"):
        regbench.register_regularizer("t_reg_other")(Named)

    class Builtin(Regularizer):             # as if it lived in regbench/regularizers/t_reg_a.py
        __module__ = "regbench.regularizers.t_reg_a"

    with pytest.raises(ValueError, match="name 't_reg_b' must equal its module name 't_reg_a'"):
        regbench.register_regularizer("t_reg_b")(Builtin)
    with pytest.raises(TypeError, match="decorates a subclass of regbench.Regularizer"):
        regbench.register_regularizer("t_reg_c")(object)
    assert not {"t_reg_one", "t_reg_other", "t_reg_b", "t_reg_c"} & set(REGULARIZERS.names())


# ----------------------------------------------------------------------------- a real run

PLUGIN = '''
"""A tracker and an executor of one's own."""
import json
from pathlib import Path

import regbench
from regbench.engine.executors import train_task


@regbench.register_tracker("runlog")
class RunLog:
    """One JSON line per run logged, and one when the experiment ends."""

    def __init__(self, plan, results_dir, **options):
        self.path = Path(results_dir) / "runlog.jsonl"

    def _write(self, record):
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\\n")

    def log_run(self, spec, summary, rows, weights, run_dir):
        self._write({"run_id": spec["run_id"], "status": summary["status"],
                     "val_loss": rows[-1]["val_loss"], "folder": Path(run_dir).name})

    def replay(self, spec, run_dir):
        self._write({"replayed": spec["run_id"]})

    def finish(self, interrupted=False):
        self._write({"finished": True, "interrupted": interrupted})


@regbench.register_executor("backwards")
class Backwards:
    """In this process, the last run first."""

    def __init__(self, workers=1, **options):
        pass

    def run(self, tasks, threads, progress=None):
        for task in reversed(list(tasks)):
            if progress is not None:
                progress.run_started(task)
            yield task, train_task(task, threads, progress.epoch if progress else None)

    def interrupt(self):
        return iter(())

    def close(self):
        pass
'''


def _records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "runlog.jsonl").read_text().splitlines()]


def _metrics(folder: Path) -> dict[str, pd.DataFrame]:
    return {p.parent.name: pd.read_csv(p).drop(columns=["seconds"])
            for p in sorted((folder / "runs").glob("*/metrics.csv"))}


def test_a_plugin_tracker_and_executor_serve_a_real_run(tmp_path):
    """--executor backwards trains every run (last first) to the same numbers as local, and
    --log runlog receives each run once, with the numbers of its folder, then the end."""
    plugin = tmp_path / "mine.py"
    plugin.write_text(PLUGIN)
    config = write_config(tmp_path / "c.yaml", digits_yaml(
        "own", "  baseline: {}\n  l2: {l2: {lambda: 1.0}}\n", epochs=2).replace(
        "threads: 1}", "threads: 1, fuse: off}"))
    runs = {}
    for executor in ("local", "backwards"):
        out = tmp_path / executor
        result = CliRunner().invoke(app, ["run", str(config), "--plugin", str(plugin),
                                          "--executor", executor, "--log", "runlog",
                                          "--out", str(out), "--no-report"])
        assert result.exit_code == 0, result.output
        runs[executor] = out / "own"
    local, backwards = (_records(runs[name]) for name in ("local", "backwards"))
    assert local[-1] == backwards[-1] == {"finished": True, "interrupted": False}
    order = [record["run_id"] for record in local[:-1]]
    assert len(order) == 4 and [r["run_id"] for r in backwards[:-1]] == order[::-1]
    for record in backwards[:-1]:
        folder = runs["backwards"] / "runs" / record["run_id"]
        assert record["folder"] == record["run_id"] and record["status"] == "completed"
        assert record["val_loss"] == pytest.approx(
            pd.read_csv(folder / "metrics.csv")["val_loss"].iloc[-1], rel=1e-12)
    expected, found = _metrics(runs["local"]), _metrics(runs["backwards"])
    assert list(found) == list(expected)
    for name in expected:
        pd.testing.assert_frame_equal(found[name], expected[name], check_exact=True)

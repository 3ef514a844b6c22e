"""Bad input through the real command line: every case ends in exit 2 (1 for a failure while
running), ONE line `regbench: error: <where>: <what is wrong and what is expected>`, no
traceback, and a results folder written before by a good run keeps identical files."""
from __future__ import annotations

import gzip
import pickle
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, TINY_DIGITS
from typer.testing import CliRunner

from regbench.cli import app
from regbench.errors import ConfigError
from regbench.experiment.config import load_config
from regbench.experiment.plan import build_plan

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def one_error_line(result, code: int, *fragments: str) -> str:
    """The single output line of a failing command, checked for its code and content."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("regbench: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def good_results(tmp_path_factory):
    """A results root holding a finished run of the `tiny` experiment, and its files."""
    root = tmp_path_factory.mktemp("good")
    config = root / "tiny.yaml"
    config.write_text(TINY_DIGITS)
    result = invoke("run", config, "--out", root / "out", "--no-report")
    assert result.exit_code == 0, result.output
    return root / "out", snapshot(root / "out")


def run_against(good_results, tmp_path, text: str, *extra: str, command: str = "run"):
    """`regbench run` of ``text`` into the good results root; the root must not change."""
    out, before = good_results
    config = tmp_path / "tiny.yaml"
    config.write_text(text)
    result = invoke(command, config, "--out", out, "--no-report", *extra)
    assert snapshot(out) == before, "a failing command changed an earlier results folder"
    return result, str(config)


def edit(old: str, new: str, text: str = TINY_DIGITS) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


# ----------------------------------------------------------------------------- config files

CONFIG_CASES = [
    # syntax
    ("unclosed flow mapping", edit("model: {name: mlp, hidden: [32]}", "model: {name: mlp, hidden: [32]"),
     ":5:", ["malformed YAML"]),
    ("tab indentation", edit("recipes:\n  l2", "recipes:\n\tl2"), ":7:1:", ["malformed YAML", "'\\t'"]),
    ("control character", TINY_DIGITS + "\x07\n", ":8:1:", ["malformed YAML", "#x0007",
                                                           "expected a UTF-8 text file"]),
    ("second document", TINY_DIGITS + "---\nname: other\n", ":8:1:", ["another document"]),
    ("bad merge key", TINY_DIGITS + "extra:\n  <<: 1\n", ":9:7:", ["malformed YAML", "merge"]),
    ("empty key", edit("recipes:\n", "recipes:\n  ? \n  : {l1: {}}\n"), ":7:", ["empty key"]),
    ("comment only file", "# nothing here yet\n", ":1:1:", ["the config is empty", "'name'"]),
    ("scalar document", "just words\n", ":1:1:", ["must be a mapping of keys to values"]),
    # types
    ("epochs as text", edit("epochs: 2", "epochs: two"), ":5:17:",
     ["train.epochs", "must be an integer (got 'two')"]),
    ("batch size true", edit("batch_size: 32", "batch_size: true"), ":5:32:",
     ["train.batch_size", "must be an integer, not true/false"]),
    ("lr as list", edit("lr: 0.1", "lr: [0.1]"), ":5:59:", ["train.optimizer.lr", "must be a number"]),
    ("seeds as text", edit("seeds: [0]", "seeds: 0-2"), ":2:8:", ["seeds", "must be a list"]),
    ("date as a number", edit("lr: 0.1", "lr: 2024-01-01"), ":5:63:",
     ["train.optimizer.lr", "must be a number (got '2024-01-01')"]),
    ("recipe as list", edit("l2: {l2: {lambda: 1.0}}", "l2: [l2]"), ":7:3:",
     ["recipes.l2", "must be a mapping of keys to values"]),
    ("train override not a mapping", edit("l2: {l2: {lambda: 1.0}}", "l2: {train: 60}"), ":7:15:",
     ["recipes.l2.train", "must be a mapping"]),
    # ranges
    ("zero learning rate", edit("lr: 0.1", "lr: 0"), ":5:63:", ["train.optimizer.lr", "must be > 0 (got 0)"]),
    ("momentum one", edit("lr: 0.1}", "lr: 0.1, momentum: 1.0}"), ":5:",
     ["train.optimizer.momentum", "must be < 1 (got 1.0)"]),
    ("infinite lambda", edit("lambda: 1.0", "lambda: .inf"), ":7:21:",
     ["recipes.l2.l2.lambda", "must be a finite number (got inf)"]),
    ("overflowing float", edit("lambda: 1.0", "lambda: 1e999"), ":7:21:", ["must be a finite number"]),
    ("val fraction one", edit("train_subset: 300", "train_subset: 300, val_fraction: 1"), ":3:",
     ["dataset.val_fraction", "must be < 1 (got 1)"]),
    ("train subset one", edit("train_subset: 300", "train_subset: 1"), ":3:",
     ["dataset.train_subset", "must be >= 2 (got 1)"]),
    ("negative seed", edit("seeds: [0]", "seeds: [-1]"), ":2:9:", ["seeds.0", "must be >= 0 (got -1)"]),
    ("huge seed", edit("seeds: [0]", "seeds: [4294967296]"), ":2:9:", ["must be <= 4294967295"]),
    ("negative hidden size", edit("hidden: [32]", "hidden: [32, -4]"), ":4:",
     ["model.hidden.1", "must be > 0 (got -4)"]),
    ("diagnosis gap above one", TINY_DIGITS + "diagnosis: {f1_drop: 1.5}\n", ":8:22:",
     ["diagnosis.f1_drop", "must be <= 1"]),
    # unknown keys and names
    ("unknown top-level key", TINY_DIGITS + "sweeps: {}\n", ":8:1:",
     ["unknown key 'sweeps'", "did you mean 'sweep'?"]),
    ("unknown optimizer key", edit("lr: 0.1", "lr: 0.1, momentun: 0.9"), ":5:",
     ["train.optimizer.momentun", "did you mean 'momentum'?"]),
    ("unknown recipe train key", edit("l2: {l2: {lambda: 1.0}}", "l2: {train: {epoch: 3}}"), ":7:",
     ["recipes.l2.train.epoch", "did you mean 'epochs'?"]),
    ("unknown regularizer", edit("{l2: {lambda", "{weight_decy: {lambda"), ":7:8:",
     ["unknown regularizer 'weight_decy'", "did you mean 'weight_decay'?"]),
    ("unknown optimizer", edit("name: sgd", "name: adan"), ":5:", ["train.optimizer.name",
                                                                  "must be one of 'sgd', 'adam', 'adamw', 'nadam' or 'rmsprop'"]),
    ("unknown dataset parameter", edit("train_subset: 300", "train_subset: 300, n_sample: 5"), ":3:",
     ["dataset.n_sample", "unknown key"]),
    ("unknown activation", edit("hidden: [32]", "hidden: [32], activation: relu6"), ":4:",
     ["model.activation", "must be one of"]),
    # names that would become folders
    ("experiment name with a slash", edit("name: tiny", "name: a/b"), ":1:7:", ["experiment name must be"]),
    ("experiment name with a newline", edit("name: tiny", 'name: "tiny\\n"'), ":1:7:",
     ["experiment name must be"]),
    ("recipe name escaping", edit("  l2: {l2", "  ../../etc: {l2"), ":7:3:", ["recipe name must be"]),
    ("absolute recipe name", edit("  l2: {l2", "  /tmp/x: {l2"), ":7:3:", ["recipe name must be"]),
    ("null recipe key", edit("  l2: {l2", "  ~: {l2"), ":7:3:", ["recipes.~", "recipe name must be"]),
    ("duplicate recipe", TINY_DIGITS + "  l2: {l1: {lambda: 0.1}}\n", ":8:3:",
     ["recipes.l2", "duplicate key 'l2'"]),
    ("duplicate recipe written as a number", edit("  l2: {l2: {lambda: 1.0}}",
                                                 "  '7': {l2: {}}\n  7: {l1: {}}"), ":8:3:",
     ["duplicate key '7'"]),
    # sweeps
    ("sweep path with a typo", TINY_DIGITS + "sweep:\n  recipes.l2.l2.lamda: [0.1, 1]\n", ":9:3:",
     ["sweep.recipes.l2.l2.lamda", "did you mean 'lambda'?"]),
    ("sweep of a missing recipe", TINY_DIGITS + "sweep:\n  recipes.l1.l1.lambda: [0.1]\n", ":9:3:",
     ["no recipe 'l1'", "recipes are: baseline, l2"]),
    ("sweep value not a list", TINY_DIGITS + "sweep:\n  train.epochs: 3\n", ":9:",
     ["sweep.train.epochs", "must be a list (got 3)"]),
    ("sweep value out of range", TINY_DIGITS + "sweep:\n  train.optimizer.lr: [0.1, -1]\n", ":9:3:",
     ["must be > 0 (got -1)"]),
    ("sweep of a whole section", TINY_DIGITS + "sweep:\n  model: [1]\n", ":9:3:", ["whole section"]),
    # tags
    ("python tag in a list", edit("hidden: [32]", "hidden: [!!python/object/apply:os.getpid []]"), ":4:",
     ["tag 'tag:yaml.org,2002:python/object/apply:os.getpid' is not allowed"]),
    ("binary tag", edit("name: tiny", "name: !!binary dGlueQ=="), ":1:7:", ["tag", "not allowed"]),
    ("custom tag", edit("lambda: 1.0", "lambda: !expr 1/0"), ":7:21:", ["'!expr' is not allowed"]),
    ("incompatible combination", edit("model: {name: mlp, hidden: [32]}", "model: {name: resnet}")
     .replace("name: digits, train_subset: 300", "name: breast_cancer"), ":4:15:",
     ["model 'resnet' needs image inputs"]),
]


@pytest.mark.parametrize("text,where,fragments", [c[1:] for c in CONFIG_CASES],
                         ids=[c[0] for c in CONFIG_CASES])
def test_bad_config_file(good_results, tmp_path, text, where, fragments):
    result, source = run_against(good_results, tmp_path, text)
    one_error_line(result, 2, f"regbench: error: {source}{where}", *fragments)


def test_empty_file(good_results, tmp_path):
    result, source = run_against(good_results, tmp_path, "")
    one_error_line(result, 2, f"{source}:1:1:", "the config is empty", "expected a mapping")


def test_a_folder_given_as_config(tmp_path):
    result = invoke("validate", tmp_path)
    one_error_line(result, 2, str(tmp_path), "cannot read config file")


# ----------------------------------------------------------------------------- options

OPTION_CASES = [
    ("run", ["--set", "train.epochs=0"], ["--set train.epochs:", "must be >= 1 (got 0)"]),
    ("run", ["--set", "trian.epochs=3"], ["--set trian.epochs:", "unknown key 'trian'",
                                          "did you mean 'train'?"]),
    ("run", ["--set", "recipes.l2.l2.lambda=[1"], ["--set recipes.l2.l2.lambda", "malformed YAML"]),
    ("run", ["--set", "train.epochs.max=3"], ["'train.epochs' is not a mapping"]),
    ("run", ["--set", "train.optimizer.lr"], ["--set:", "expected key.path=value"]),
    ("run", ["--set", "name=/etc"], ["--set name:", "experiment name must be"]),
    ("run", ["--set", "seeds=[true]"], ["--set seeds:", "must be an integer, not true/false"]),
    ("run", ["--set", "recipes.l2.l2.lambda=!!python/name:os.system"], ["not allowed"]),
    ("run", ["--seeds", "0,one"], ["--seeds:", "expected comma-separated integers"]),
    ("run", ["--seeds", ",,"], ["--seeds:", "expected comma-separated integers"]),
    ("run", ["--workers", "0"], ["--workers:", "must be >= 1 (got 0)"]),
    ("sweep", ["--param", "recipes.l2.l2.lambda"], ["--param:", "expected key.path=v1,v2,..."]),
    ("sweep", ["--param", "recipes.l2.l2.lambda=0.1,,1"], ["--param recipes.l2.l2.lambda:",
                                                           "expected one or more"]),
    ("sweep", ["--param", "train.optimizer.momentun=0.5"], ["did you mean 'momentum'?"]),
    ("sweep", ["--param", "dataset.name=digits,digitz"], ["unknown dataset 'digitz'",
                                                          "did you mean 'digits'?"]),
    ("sweep", ["--param", "name=a,b"], ["--param name:", "'name' cannot be swept"]),
]


@pytest.mark.parametrize("command,options,fragments", OPTION_CASES,
                         ids=[" ".join(c[1]) for c in OPTION_CASES])
def test_bad_command_line_option(good_results, tmp_path, command, options, fragments):
    result, _ = run_against(good_results, tmp_path, TINY_DIGITS, *options, command=command)
    one_error_line(result, 2, *fragments)


def test_debug_shows_the_traceback_the_plain_run_hides(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(edit("epochs: 2", "epochs: 0"))
    plain = invoke("validate", config)
    one_error_line(plain, 2, "train.epochs")
    debug = invoke("--debug", "validate", config)
    assert debug.exit_code != 0
    assert isinstance(debug.exception, ConfigError)  # raised, so the traceback is printed


# ----------------------------------------------------------------------------- data

def csv_config(path: Path, task: str = "classification", **extra) -> str:
    more = "".join(f", {key}: '{value}'" for key, value in extra.items())
    return (f"name: tiny\ndataset: {{name: csv, path: '{path}', target: label, task: {task}"
            f"{more}}}\nmodel: {{name: mlp, hidden: [4]}}\n"
            "train: {epochs: 1, batch_size: 8, threads: 1}\n")


def table(rows: int = 40, labels=None, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=rows), rng.normal(size=rows)
    labels = labels if labels is not None else np.where(a + b > 0, "yes", "no")
    return "a,b,label\n" + "".join(f"{x:.4f},{y:.4f},{t}\n" for x, y, t in zip(a, b, labels))


def with_line(text: str, line: int, new: str) -> str:
    lines = text.splitlines()
    lines[line - 1] = new
    return "\n".join(lines) + "\n"


CSV_CASES = [
    ("header only", "a,b,label\n", {}, ["has a header but no data rows"]),
    ("empty file", "", {}, ["is empty", "expected a header line"]),
    ("ragged rows", table() + "1,2,yes,4,5\n", {}, ["not a readable CSV table", "line 42"]),
    ("not UTF-8", "a,b,label\n\xff\xfe,1,yes\n", {"encoding": "latin-1"}, ["not a readable CSV table"]),
    ("duplicate columns", table().replace("a,b,label", "a,a,label"), {}, ["'a' appears twice"]),
    ("a word among numbers", with_line(table(), 5, "red,1.0,yes"), {},
     [":5: column 'a' mixes numbers and text (got 'red'", "dataset.categorical"]),
    ("missing feature value", with_line(table(), 7, ",1.0,no"), {},
     [":7: column 'a' has a missing value", "impute: mean or median"]),
    ("missing target value", with_line(table(), 9, "1.0,2.0,"), {},
     [":9: target 'label' has a missing value"]),
    ("infinite value", with_line(table(), 4, "inf,1.0,no"), {},
     [":4: column 'a' holds an infinite value", "expected finite numbers"]),
    ("single class", table(labels=["yes"] * 40), {},
     ["dataset.target:", "single class ('yes')", "at least two"]),
    ("fractional classification target", table(labels=np.linspace(0, 1, 40) + 0.01), {},
     ["dataset.task:", "fractional numbers", "task: regression"]),
    ("text regression target", table(), {"task": "regression"},
     ["dataset.target:", "is not numeric"]),
    ("too few rows for the splits", table(rows=4), {},
     ["dataset.val_fraction:", "too few for a validation split", "expected at least 6 samples"]),
]


@pytest.mark.parametrize("content,options,fragments", [c[1:] for c in CSV_CASES],
                         ids=[c[0] for c in CSV_CASES])
def test_bad_csv_is_one_line_naming_the_file_and_column(tmp_path, content, options, fragments):
    path = tmp_path / "table.csv"
    path.write_bytes(content.encode(options.get("encoding", "utf-8")))
    config = tmp_path / "c.yaml"
    config.write_text(csv_config(path, options.get("task", "classification")))
    result = invoke("validate", config)
    one_error_line(result, 2, "dataset.", *fragments)


PLAN_TIME_CASES = [
    ("missing csv", lambda d: csv_config(d / "nope.csv"),
     ["dataset.path: file not found:", "nope.csv", "expected a CSV table"]),
    ("missing target column", lambda d: csv_config(d / "t.csv").replace("target: label", "target: labl"),
     ["dataset.target: column 'labl' not in", "did you mean 'label'?", "columns are: a, b, label"]),
    ("missing validation file", lambda d: csv_config(d / "t.csv", val_path=d / "val.csv"),
     ["dataset.val_path: file not found:"]),
    ("missing mnist files", lambda d: f"name: tiny\ndataset: {{name: mnist, root: '{d}/none'}}\n",
     ["dataset.root: MNIST files not found in", "train-images-idx3-ubyte.gz", "download: true"]),
    ("missing cifar files", lambda d: f"name: tiny\ndataset: {{name: cifar10, root: '{d}'}}\n"
     "model: {name: cnn}\n", ["dataset.root: CIFAR-10 files missing", "data_batch_1"]),
]


@pytest.mark.parametrize("make,fragments", [c[1:] for c in PLAN_TIME_CASES],
                         ids=[c[0] for c in PLAN_TIME_CASES])
def test_missing_data_stops_run_before_anything_is_written(good_results, tmp_path, make,
                                                           fragments):
    (tmp_path / "t.csv").write_text(table())
    result, _ = run_against(good_results, tmp_path, make(tmp_path))
    one_error_line(result, 2, "tiny.yaml:2:", *fragments)      # the config line of dataset.*
    dry = invoke("run", tmp_path / "tiny.yaml", "--dry-run")
    one_error_line(dry, 2, "tiny.yaml:2:", *fragments)


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big")
                                                       for d in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def mnist_folder(folder: Path, n: int = 30) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for prefix in ("train", "t10k"):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", np.zeros((n, 28, 28)))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)


def corrupt_gzip(folder: Path) -> None:
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:40])


def not_gzip(folder: Path) -> None:
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"<html>404 not found</html>")


def bad_magic(folder: Path) -> None:
    path = folder / "train-labels-idx1-ubyte.gz"
    data = bytearray(gzip.decompress(path.read_bytes()))
    data[2] = 0x0D  # float32 IDX, not unsigned bytes
    path.write_bytes(gzip.compress(bytes(data)))


def fewer_labels(folder: Path) -> None:
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.arange(29) % 10)


@pytest.mark.parametrize("damage,fragments", [
    (corrupt_gzip, ["train-images-idx3-ubyte.gz: cannot read IDX file"]),
    (not_gzip, ["t10k-labels-idx1-ubyte.gz: cannot read IDX file", "Not a gzipped file"]),
    (bad_magic, ["not an IDX file of unsigned bytes"]),
    (fewer_labels, ["test images (30, 28, 28) and labels (29,) do not match"]),
], ids=["truncated gzip", "not gzip", "wrong IDX type", "label count"])
def test_damaged_idx_files(tmp_path, damage, fragments):
    mnist_folder(tmp_path / "mnist")
    damage(tmp_path / "mnist")
    config = tmp_path / "m.yaml"
    config.write_text(f"name: m\ndataset: {{name: mnist, root: '{tmp_path / 'mnist'}'}}\n"
                      "model: {name: mlp, hidden: [4]}\n")
    result = invoke("validate", config)
    one_error_line(result, 2, "regbench: error: dataset.root:", *fragments)


def test_cifar_batch_that_is_not_a_pickle_of_arrays(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as handle:
            pickle.dump({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 3]}, handle)
    (folder / "data_batch_3").write_bytes(b"\x80\x04garbage")
    config = tmp_path / "c.yaml"
    config.write_text(f"name: c\ndataset: {{name: cifar10, root: '{tmp_path}'}}\n"
                      "model: {name: mlp, hidden: [4]}\n")
    result = invoke("validate", config)
    one_error_line(result, 2, "dataset.root:", "data_batch_3: not a readable CIFAR-10 batch")


def test_train_subset_larger_than_the_data_is_a_cap_not_an_error(tmp_path):
    """Decision: train_subset is a cap; above the split's size it keeps every row,
    and validate says how many that is."""
    (tmp_path / "t.csv").write_text(table(rows=60))
    config = tmp_path / "c.yaml"
    config.write_text(csv_config(tmp_path / "t.csv").replace("task: classification",
                                                             "task: classification, "
                                                             "train_subset: 5000"))
    result = invoke("validate", config)
    assert result.exit_code == 0, result.output
    assert "train 43, val 5, test 12" in result.output


# ----------------------------------------------------------------------------- environment

def test_output_folder_below_a_regular_file(tmp_path, tiny_config):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = invoke("run", tiny_config, "--out", blocker / "sub", "--no-report")
    one_error_line(result, 2, "--out: cannot write to", "Not a directory",
                   "choose a writable folder with --out")
    assert blocker.read_text() == "not a folder"


def test_output_folder_in_proc(tiny_config):
    result = invoke("run", tiny_config, "--out", "/proc/regbench-results", "--no-report")
    one_error_line(result, 2, "--out: cannot write to /proc/regbench-results/tiny")


def limited_file_size(limit: int):
    def set_limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG from write(), not a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return set_limit


def test_disk_full_while_writing_a_run_keeps_earlier_results(good_results, tmp_path):
    """A file-size limit makes the kernel refuse writes (EFBIG), as a full disk does (ENOSPC):
    the new run's weights cannot be written; the earlier runs stay byte for byte."""
    out, before = good_results
    copy = tmp_path / "out"
    for name, data in before.items():
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        (copy / name).write_bytes(data)
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_DIGITS)
    command = [sys.executable, "-m", "regbench", "run", str(config), "--out", str(copy),
               "--no-report", "--set", "recipes.l1={l1: {lambda: 0.01}}"]
    process = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120,
                             preexec_fn=limited_file_size(3000))
    assert process.returncode == 1, process.stderr
    assert "Traceback" not in process.stderr
    errors = [line for line in process.stderr.splitlines() if line.startswith("regbench: error")]
    assert len(errors) == 1, process.stderr
    assert "l1__seed=0/weights.npy: cannot write (File too large)" in errors[0]
    assert "run the same command again to resume" in errors[0]
    after = snapshot(copy)
    for name, data in before.items():
        if name.startswith("tiny/runs/"):
            assert after[name] == data, name
    unfinished = copy / "tiny" / "runs" / "l1__seed=0"
    assert not (unfinished / "summary.json").exists()  # so a resume redoes it
    assert not [p for p in unfinished.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("how", [["--device", "cuda"], ["--set", "train.device=cuda"]],
                         ids=["option", "config"])
def test_cuda_requested_without_a_gpu(good_results, tmp_path, how):
    result, _ = run_against(good_results, tmp_path, TINY_DIGITS, *how)
    one_error_line(result, 2, "train.device: cuda was requested but no CUDA GPU is available",
                   "use device: auto or cpu")


# ----------------------------------------------------------------------------- safety

def test_sweep_values_cannot_steer_run_folders(tmp_path):
    """Run ids are built from sweep values; a value with '/' or '..' stays one folder name."""
    text = TINY_DIGITS + 'sweep:\n  dataset.root: ["../../escape", "/etc", "a b\\tc"]\n'
    config = tmp_path / "s.yaml"
    config.write_text(text)
    plan = build_plan(load_config(config))
    runs = tmp_path / "out" / "tiny" / "runs"
    for run in plan.runs:
        assert "/" not in run["run_id"] and "\\" not in run["run_id"]
        assert not any(c.isspace() for c in run["run_id"])
        assert (runs / run["run_id"]).resolve().parent == runs.resolve()
    ids = {run["run_id"] for run in plan.runs if run["recipe"] == "baseline"}
    assert ids == {"baseline__root=.._.._escape__seed=0", "baseline__root=_etc__seed=0",
                   "baseline__root=a_b_c__seed=0"}


def test_keys_and_dates_are_names_as_written(tmp_path):
    """YAML 1.1 would read the recipe `no` as False and the name 2024-01-01 as a date."""
    config = tmp_path / "n.yaml"
    config.write_text(edit("name: tiny", "name: 2024-01-01")
                      + "  no: {l1: {lambda: 0.01}}\n  2: {l2: {lambda: 0.1}}\n")
    plan = build_plan(load_config(config))
    assert plan.experiment["name"] == "2024-01-01"
    assert list(plan.experiment["recipes"]) == ["baseline", "l2", "no", "2"]

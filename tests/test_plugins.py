"""Your own model, data and regularizer: plugins from a file, a module or an installed package's
entry point; regularizers reach a plain torch model by module surgery, and one that cannot
apply is refused before training."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from regbench.cli import app
from tests.conftest import REPO, write_config

runner = CliRunner()

PLUGIN = '''
import numpy as np
import torch.nn.functional as F
from torch import nn

import regbench


@regbench.register_model("{prefix}plainnet")
def plainnet(input_shape, output_dim, width: int = 16):
    """Plain nn.Linear and nn.ReLU modules, no regbench factory."""
    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(input_shape)), width), nn.ReLU(),
                         nn.Linear(width, width), nn.ReLU(), nn.Linear(width, output_dim))


class Functional(nn.Module):
    def __init__(self, features, outputs):
        super().__init__()
        self.hidden, self.out = nn.Linear(features, 8), nn.Linear(8, outputs)

    def forward(self, x):
        return self.out(F.relu(self.hidden(x.flatten(1))))


@regbench.register_model("{prefix}functional")
def functional(input_shape, output_dim):
    """Activations applied as functions: nowhere to put dropout."""
    return Functional(int(np.prod(input_shape)), output_dim)


class ReadsWeights(nn.Module):
    def __init__(self, features, outputs):
        super().__init__()
        self.hidden, self.act, self.out = nn.Linear(features, 8), nn.ReLU(), nn.Linear(8, outputs)

    def forward(self, x):   # the hidden layer's weight read directly, its forward never called
        return self.out(self.act(F.linear(x.flatten(1), self.hidden.weight, self.hidden.bias)))


@regbench.register_model("{prefix}reads_weights")
def reads_weights(input_shape, output_dim):
    """A layer whose weight the forward reads directly: replacing it changes nothing."""
    return ReadsWeights(int(np.prod(input_shape)), output_dim)


@regbench.register_dataset("{prefix}blobs", task="classification")
def blobs(n_samples: int = 300, seed: int = 0):
    """Two Gaussian blobs in 4 dimensions."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n_samples)
    return rng.normal(0, 1, (n_samples, 4)) + y[:, None] * 1.5, y
'''

CONFIG = """\
name: plugged
seeds: [0, 1]
dataset: {{name: {prefix}blobs, n_samples: 400}}
model: {{name: {prefix}plainnet, width: 24}}
train: {{epochs: 4, batch_size: 32, optimizer: {{name: sgd, lr: 0.1}}, threads: 1}}
recipes:
  baseline: {{}}
  dropout: {{dropout: {{p: 0.3}}}}
  batchnorm: {{batchnorm: {{}}}}
  dropconnect: {{dropconnect: {{p: 0.3}}}}
"""


def _write_plugin(tmp_path, prefix: str):
    path = tmp_path / f"{prefix or 'file'}_plugin.py"
    path.write_text(PLUGIN.format(prefix=prefix))
    return path


def test_a_plain_torch_model_from_a_plugin_file_gets_every_regularizer(tmp_path):
    """Acceptance 1: dropout, batchnorm and dropconnect each change the plugin's model (as
    validate lists) and its numbers."""
    plugin = _write_plugin(tmp_path, "file_")
    config = write_config(tmp_path / "c.yaml", CONFIG.format(prefix="file_"))
    result = runner.invoke(app, ["validate", str(config), "--plugin", str(plugin)])
    assert result.exit_code == 0, result.output
    assert "dropout: 2 dropout layers after hidden activations" in result.output
    assert "batchnorm: 2 norm layers after hidden linear/conv layers" in result.output
    assert "dropconnect: 2 hidden linear layers replaced" in result.output
    result = runner.invoke(app, ["run", str(config), "--plugin", str(plugin), "--out",
                                 str(tmp_path / "out"), "--no-report"])
    assert result.exit_code == 0, result.output
    runs = pd.read_csv(tmp_path / "out" / "plugged" / "runs.csv")
    assert set(runs.status) == {"completed"} and len(runs) == 8
    losses = runs.set_index("run_id")["val_loss"]
    for recipe in ("dropout", "batchnorm", "dropconnect"):
        for seed in (0, 1):
            assert losses[f"{recipe}__seed={seed}"] != losses[f"baseline__seed={seed}"], recipe


def test_a_regularizer_that_cannot_apply_is_refused_before_training(tmp_path):
    """Acceptance 2: no activation module to put dropout after -> exit 2, nothing written."""
    plugin = _write_plugin(tmp_path, "refuse_")
    config = write_config(tmp_path / "c.yaml", CONFIG.format(prefix="refuse_").replace(
        "refuse_plainnet, width: 24", "refuse_functional"))
    result = runner.invoke(app, ["run", str(config), "--plugin", str(plugin), "--out",
                                 str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert ("dropout cannot apply to model refuse_functional: it needs an activation module "
            "(nn.ReLU, nn.Tanh, …) after a hidden layer") in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out" / "plugged").exists()
    # a replaced layer whose forward the model never calls is no change either
    reads = write_config(tmp_path / "r.yaml", CONFIG.format(prefix="refuse_").replace(
        "refuse_plainnet, width: 24", "refuse_reads_weights"))
    result = runner.invoke(app, ["validate", str(reads), "--plugin", str(plugin)])
    assert result.exit_code == 2, result.output
    assert "dropconnect cannot apply to model refuse_reads_weights" in result.output
    # a built-in model with no hidden layer has no place for dropout either
    linear = write_config(tmp_path / "l.yaml", "name: l\nmodel: {name: linear}\n"
                                               "recipes: {d: {dropout: {}}}\n")
    result = runner.invoke(app, ["validate", str(linear)])
    assert result.exit_code == 2 and "dropout cannot apply to model linear" in result.output


def test_plugin_parameters_are_validated_like_built_ins(tmp_path):
    plugin = _write_plugin(tmp_path, "typed_")
    config = write_config(tmp_path / "c.yaml", CONFIG.format(prefix="typed_").replace(
        "width: 24", "width: wide"))
    result = runner.invoke(app, ["validate", str(config), "--plugin", str(plugin)])
    assert result.exit_code == 2 and "model.width" in result.output
    result = runner.invoke(app, ["list", "models", "--plugin", str(plugin)])
    assert result.exit_code == 0 and "typed_plainnet" in result.output
    assert "width=16" in result.output
    missing = runner.invoke(app, ["list", "--plugin", str(tmp_path / "nope.py")])
    assert missing.exit_code == 2 and "--plugin: file not found" in missing.output


def test_a_plugin_from_an_installed_packages_entry_point(tmp_path):
    """Acceptance 1, through the ``regbench.plugins`` entry point of an installed package (a
    dist-info folder as pip writes it, on the path of a fresh process)."""
    site = tmp_path / "site"
    (site / "entry_plug").mkdir(parents=True)
    (site / "entry_plug" / "__init__.py").write_text(PLUGIN.format(prefix="ep_"))
    info = site / "entry_plug-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: entry-plug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[regbench.plugins]\nentry_plug = entry_plug\n")
    config = write_config(tmp_path / "c.yaml", CONFIG.format(prefix="ep_").replace(
        "seeds: [0, 1]", "seeds: [0]"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    done = subprocess.run([sys.executable, "-m", "regbench", "run", str(config), "--out",
                           str(tmp_path / "out"), "--no-report", "--workers", "2",
                           "--fuse", "off"],   # four tasks: the plugin loads in each worker
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    summaries = [json.loads(p.read_text()) for p in
                 (tmp_path / "out" / "plugged" / "runs").glob("*/summary.json")]
    assert len(summaries) == 4 and {s["status"] for s in summaries} == {"completed"}


def test_the_examples_plugin_trains_its_own_regularizer(tmp_path):
    """examples/my_plugin.py: a model, a dataset and a penalty regularizer of one's own."""
    plugin = REPO / "examples" / "my_plugin.py"
    config = write_config(tmp_path / "c.yaml", textwrap.dedent("""\
        name: example
        dataset: {name: moons, n_samples: 200}
        model: {name: tinynet, width: 8}
        train: {epochs: 2, batch_size: 32, threads: 1}
        recipes: {l4: {weight_l4: {lambda: 10.0}}}
        """))
    listed = runner.invoke(app, ["list", "regularizers", "--plugin", str(plugin)])
    assert listed.exit_code == 0 and "weight_l4" in listed.output
    result = runner.invoke(app, ["run", str(config), "--plugin", str(plugin), "--out",
                                 str(tmp_path / "out"), "--no-report"])
    assert result.exit_code == 0, result.output
    metrics = pd.read_csv(tmp_path / "out" / "example" / "runs" / "l4__seed=0" / "metrics.csv")
    assert (metrics["penalty"] > 0).all()


def test_the_python_api_returns_the_frames_the_cli_writes(tmp_path):
    """Acceptance 6: regbench.run(...) writes the same folder as `regbench run` and returns its
    comparison, runs and per-epoch metrics as DataFrames (timings aside)."""
    import regbench

    config = write_config(tmp_path / "c.yaml", textwrap.dedent("""\
        name: api
        seeds: [0, 1]
        dataset: {name: digits, train_subset: 200}
        model: {name: mlp, hidden: [16]}
        train: {epochs: 3, batch_size: 32, threads: 1}
        recipes: {l2: {l2: {lambda: 1.0}}}
        """))
    cli = runner.invoke(app, ["run", str(config), "--out", str(tmp_path / "cli"), "--no-report",
                              "--set", "train.epochs=2"])
    assert cli.exit_code == 0, cli.output
    results = regbench.run(config, out=tmp_path / "api", report=False, train__epochs=2)
    assert isinstance(results, regbench.Results) and results.exit_code == 0
    timing = ["seconds", "seconds_per_epoch"]
    folder = tmp_path / "cli" / "api"
    pd.testing.assert_frame_equal(results.comparison.drop(columns="seconds_per_epoch"),
                                  pd.read_csv(folder / "comparison.csv").drop(
                                      columns="seconds_per_epoch"))
    pd.testing.assert_frame_equal(results.runs.drop(columns=timing),
                                  pd.read_csv(folder / "runs.csv").drop(columns=timing))
    metrics = results.metrics()
    assert set(metrics.run_id) == {"baseline__seed=0", "baseline__seed=1", "l2__seed=0",
                                   "l2__seed=1"} and metrics.epoch.max() == 2
    stored = pd.read_csv(folder / "runs" / "l2__seed=1" / "metrics.csv")
    mine = metrics[metrics.run_id == "l2__seed=1"].drop(columns=["run_id", "recipe", "seed"])
    pd.testing.assert_frame_equal(mine.reset_index(drop=True).drop(columns="seconds"),
                                  stored.drop(columns="seconds"))
    assert results.verdicts == {"l2": results.comparison.set_index("point").loc["l2", "verdict"]}


def _fashion_subset(folder, train: int = 256, test: int = 128):
    """The first images of Debian's real Fashion-MNIST files, written as smaller IDX files."""
    from regbench.data.images import read_idx
    from tests.test_bad_input import write_idx

    source = Path("/usr/share/datasets/fashion-mnist")
    folder.mkdir(parents=True)
    for prefix, count in (("train", train), ("t10k", test)):
        for kind in ("images-idx3", "labels-idx1"):
            name = f"{prefix}-{kind}-ubyte.gz"
            write_idx(folder / name, read_idx(source / name)[:count])


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="Debian's dataset-fashion-mnist package is not installed")
def _trains_with_stochastic_depth(tmp_path, dataset: str, library: str, arch: str,
                                  branches: int):
    """Validate lists the drop layers surgery put in, both recipes train, and their numbers
    differ; a misspelt architecture is a config error with a suggestion. Returns runs.csv."""
    config = write_config(tmp_path / "c.yaml", textwrap.dedent(f"""\
        name: zoo
        dataset: {dataset}
        model: {{name: {library}, arch: {arch}}}
        train: {{epochs: 1, batch_size: 64, optimizer: {{name: sgd, lr: 0.05}}}}
        recipes:
          baseline: {{}}
          depth: {{stochastic_depth: {{p: 0.5}}}}
        """))
    result = runner.invoke(app, ["validate", str(config)])
    assert result.exit_code == 0, result.output
    assert f"stochastic_depth: {branches} residual branches given a drop layer" in result.output
    result = runner.invoke(app, ["run", str(config), "--out", str(tmp_path / "out"),
                                 "--no-report"])
    assert result.exit_code == 0, result.output
    runs = pd.read_csv(tmp_path / "out" / "zoo" / "runs.csv")
    assert set(runs.status) == {"completed"}
    losses = runs.set_index("recipe")["val_loss"]
    assert losses["depth"] != losses["baseline"]
    wrong = write_config(tmp_path / "w.yaml", f"name: w\ndataset: {dataset}\n"
                         f"model: {{name: {library}, arch: resnet81}}\n")
    result = runner.invoke(app, ["validate", str(wrong)])
    assert result.exit_code == 2 and "did you mean 'resnet18'?" in result.output
    return runs


def test_torchvision_resnet18_trains_an_epoch_on_fashion_mnist_with_stochastic_depth(tmp_path):
    """Acceptance 3: any torchvision classifier by name, random weights, its first conv taking
    1 channel; stochastic depth reaches its 8 residual branches by surgery."""
    _fashion_subset(tmp_path / "fashion")
    runs = _trains_with_stochastic_depth(
        tmp_path, f"{{name: fashion_mnist, root: {tmp_path / 'fashion'}}}",
        "torchvision", "resnet18", branches=8)
    assert (runs.parameter_count > 11_000_000).all()


def test_a_timm_architecture_trains_with_stochastic_depth(tmp_path):
    """timm models by name (the optional `timm` extra), like torchvision's."""
    pytest.importorskip("timm", reason="timm is not installed (pip install 'regbench[timm]')")
    _trains_with_stochastic_depth(tmp_path, "{name: digits, train_subset: 256}",
                                  "timm", "resnet10t", branches=4)

"""The conformance kit (regbench.testing) over every registered regularizer, model and dataset,
so a new entry is checked for free; and the kit refuses entries that are wrong: a regularizer
that changes nothing, a model with the wrong output width or an unused parameter, a dataset
whose inputs and labels disagree."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from torch import nn

import regbench
from regbench.data import DATASETS
from regbench.models import MODELS
from regbench.regularizers import REGULARIZERS, Regularizer
from regbench.testing import ConformanceError, check_dataset, check_model, check_regularizer
from tests.conftest import REPO
from tests.test_datasets import write_cifar, write_csv, write_mnist_folder
from tests.test_own_data import _image_folder


@pytest.fixture
def scratch_registries(monkeypatch):
    """What a test registers is gone after it (the registries are global to the process)."""
    for registry in (REGULARIZERS, MODELS, DATASETS):
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))


# ------------------------------------------------------------------ every registered entry
@pytest.mark.parametrize("name", REGULARIZERS.names())
def test_every_regularizer_conforms(name):
    check_regularizer(name)


MODEL_PARAMS = {        # small enough to train two batches of 8×8 digits in well under a second
    "linear": {},
    "mlp": {"hidden": [16]},
    "cnn": {"channels": [4, 8], "hidden": [16], "kernel_size": 3},
    "resnet": {"channels": [4, 8], "blocks": 1},
    "resmlp": {"width": 16, "blocks": 2},
    "torchvision": {"arch": "resnet18"},
    "timm": {"arch": "resnet10t"},
}


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_conforms(name):
    if name not in MODEL_PARAMS:
        pytest.fail(f"add test params for model {name} to MODEL_PARAMS in {__file__}")
    if name == "timm":
        pytest.importorskip("timm", reason="timm is not installed (pip install 'regbench[timm]')")
    check_model(name, MODEL_PARAMS[name])


def _idx_files(tmp_path):
    write_mnist_folder(tmp_path / "idx")
    return {"root": str(tmp_path / "idx")}


def _cifar_batches(tmp_path):
    write_cifar(tmp_path / "cifar-10-batches-py")
    return {"root": str(tmp_path)}


def _csv_table(tmp_path):
    return {"path": str(write_csv(tmp_path / "table.csv")), "target": "label",
            "task": "classification"}


def _png_folders(tmp_path):
    _image_folder(tmp_path / "images")
    return {"path": str(tmp_path / "images"), "size": 8}


# name -> fn(tmp_path) -> its params, writing the files of the datasets that read files
DATASET_PARAMS = {
    "digits": lambda tmp_path: {},
    "breast_cancer": lambda tmp_path: {},
    "diabetes": lambda tmp_path: {},
    "synthetic_classification": lambda tmp_path: {"n_samples": 200},
    "synthetic_regression": lambda tmp_path: {"n_samples": 200},
    "csv": _csv_table,
    "mnist": _idx_files,
    "fashion_mnist": _idx_files,
    "cifar10": _cifar_batches,
    "image_folder": _png_folders,
}


@pytest.mark.parametrize("name", DATASETS.names())
def test_every_dataset_conforms(tmp_path, name):
    if name not in DATASET_PARAMS:
        pytest.fail(f"add test params for dataset {name} to DATASET_PARAMS in {__file__}")
    check_dataset(name, DATASET_PARAMS[name](tmp_path))


# ------------------------------------------------------------------ what the kit refuses
class ZeroPenalty(Regularizer):
    """Adds a penalty of exactly zero.

    Paper: none (a test double).
    Hook: penalty.
    Formula: loss += 0.
    Deviations from the paper: none.
    """

    summary = "adds zero to the loss"
    paper = "none"

    def penalty(self, model):
        return torch.zeros(())


class IdentityBatch(Regularizer):
    """Returns every training batch unchanged.

    Paper: none (a test double).
    Hook: batch.
    Formula: x, y ← x, y.
    Deviations from the paper: none.
    """

    summary = "leaves every batch as it is"
    paper = "none"
    batch_stage = "noise"

    def batch(self, x, y):
        return x, y


@pytest.mark.parametrize("cls", [ZeroPenalty, IdentityBatch])
def test_a_regularizer_that_changes_nothing_fails_with_a_message(scratch_registries, cls):
    regbench.register_regularizer("noop")(cls)
    with pytest.raises(ConformanceError, match="regularizer 'noop' changed nothing: its run's "
                                               "metrics equal the baseline's in every epoch"):
        check_regularizer(cls)
    # the same hook that does act passes: the check is on the effect, not on the hook
    class HalfPenalty(ZeroPenalty):
        """Half the squared parameters.

        Paper: none (a test double).
        Hook: penalty.
        Formula: loss += ½ · Σ p² over every parameter.
        Deviations from the paper: none.
        """

        def penalty(self, model):
            return 0.5 * sum(p.pow(2).sum() for p in model.parameters())

    regbench.register_regularizer("half")(HalfPenalty)
    check_regularizer("half")


def test_a_regularizer_must_be_registered_and_carry_its_method_card(scratch_registries):
    class Undocumented(Regularizer):
        """Halves the loss."""

        summary = "halves the loss"
        paper = "none"

        def penalty(self, model):
            return sum(p.pow(2).sum() for p in model.parameters())

    with pytest.raises(ConformanceError, match="is not registered under its name"):
        check_regularizer(Undocumented)
    regbench.register_regularizer("undocumented")(Undocumented)
    with pytest.raises(ConformanceError) as error:
        check_regularizer("undocumented")
    assert "lacks 'Paper', 'Hook', 'Formula', 'Deviations from the paper:'" in str(error.value)
    with pytest.raises(ConformanceError, match="unknown regularizer 'nowhere'"):
        check_regularizer("nowhere")


def test_a_model_with_the_wrong_output_width_fails_with_a_message(scratch_registries):
    @regbench.register_model("three_outputs")
    def three_outputs(input_shape, output_dim):
        """Three outputs, whatever the classes."""
        return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(input_shape)), 3))

    with pytest.raises(ConformanceError) as error:
        check_model("three_outputs")
    assert ("model 'three_outputs' returns outputs of shape (32, 3) for a batch of 32 inputs of "
            "shape (1, 8, 8); expected (32, 10): one output per class") in str(error.value)


class SpareLayer(nn.Module):
    def __init__(self, features, outputs):
        super().__init__()
        self.out, self.spare = nn.Linear(features, outputs), nn.Linear(features, outputs)

    def forward(self, x):
        return self.out(x.flatten(1))


def test_a_model_with_a_parameter_the_forward_never_uses_fails(scratch_registries):
    @regbench.register_model("spare")
    def spare(input_shape, output_dim):
        """A layer built but never called."""
        return SpareLayer(int(np.prod(input_shape)), output_dim)

    with pytest.raises(ConformanceError, match=r"2 trainable parameter\(s\) get no gradient "
                                               r"from the loss \(spare.weight, spare.bias\)"):
        check_model("spare")


def test_a_dataset_with_fewer_labels_than_inputs_fails(scratch_registries):
    @regbench.register_dataset("ragged", task="classification")
    def ragged(n_samples: int = 100):
        """Ten labels short."""
        rng = np.random.default_rng(0)
        return rng.normal(size=(n_samples, 4)), rng.integers(0, 2, n_samples - 10)

    with pytest.raises(ConformanceError, match="dataset 'ragged': the train split has 100 "
                                               "inputs but 90 targets"):
        check_dataset("ragged")


def test_the_example_plugin_runs_the_kit_in_its_own_tests():
    """examples/test_my_plugin.py: what a plugin author's tests look like, passing."""
    path = REPO / "examples" / "test_my_plugin.py"
    spec = importlib.util.spec_from_file_location("example_plugin_tests", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tests = [test for name, test in vars(module).items() if name.startswith("test_")]
    assert len(tests) == 3
    for test in tests:
        test()

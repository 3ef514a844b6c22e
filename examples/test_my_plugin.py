"""A plugin's own tests: regbench's conformance kit on the entries of my_plugin.py, the checks
every built-in passes.

    python -m pytest -n 0 examples/test_my_plugin.py

In a plugin package, import the module that registers the entries (``import my_plugin``) instead
of loading the file. Each check fails with a message that says what to fix.
"""
from pathlib import Path

from regbench import testing
from regbench.plugins import load_plugins

load_plugins([str(Path(__file__).with_name("my_plugin.py"))], entry_points=False)


def test_weight_l4_is_documented_trains_and_changes_training():
    testing.check_regularizer("weight_l4")


def test_tinynet_gives_one_output_per_class_and_a_gradient_to_every_weight():
    testing.check_model("tinynet", {"width": 8})


def test_moons_loads_consistent_arrays_that_train():
    testing.check_dataset("moons", {"n_samples": 200})

"""Targeted placement: an architecture regularizer's ``modules:`` globs and ``types:`` class
names narrow its changes to the layers that match (for dropout: the activation it follows or the
hidden layer feeding it), `validate` lists the matched paths, a glob or type that matches
nothing is refused naming the closest paths, ``dropout: {mode: channel}`` zeroes whole conv
feature maps, and configs without the new keys keep their run ids and config hashes.

The built models are inspected by module type and path (``named_modules()``), not through the
placements surgery records, so the counts do not take the code under test's word for them."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.ops import StochasticDepth
from typer.testing import CliRunner

from regbench.cli import app
from regbench.data import data_spec
from regbench.engine.fused import fusable_key
from regbench.engine.train import build_run_model
from regbench.experiment.config import load_config
from regbench.experiment.plan import build_plan, config_hash
from regbench.experiment.validate import shapes_only
from regbench.plugins import load_plugin
from regbench.regularizers.batchnorm import BatchNorm1d, BatchNorm2d
from regbench.regularizers.dropconnect import DropConnectConv2d, DropConnectLinear
from regbench.regularizers.dropout import ChannelDropout, InvertedDropout
from tests.conftest import write_config
from tests.test_bad_input import one_error_line

runner = CliRunner()

PLUGIN = '''
import numpy as np
from torch import nn

import regbench


class Heads(nn.Module):
    """Named layers, as a user's model has them: fc1, fc2 and mid are hidden, out the output."""

    def __init__(self, features, outputs):
        super().__init__()
        self.fc1, self.act1 = nn.Linear(features, 16), nn.ReLU()
        self.fc2, self.act2 = nn.Linear(16, 16), nn.ReLU()
        self.mid, self.act3 = nn.Linear(16, 16), nn.Tanh()
        self.out = nn.Linear(16, outputs)

    def forward(self, x):
        x = self.act2(self.fc2(self.act1(self.fc1(x.flatten(1)))))
        return self.out(self.act3(self.mid(x)))


@regbench.register_model("target_heads")
def heads(input_shape, output_dim):
    """Three hidden linear layers, each with its own activation module."""
    return Heads(int(np.prod(input_shape)), output_dim)
'''

HEADS = """\
name: targets
seeds: [0]
dataset: {{name: digits, train_subset: 300}}
model: {{name: target_heads}}
train: {{epochs: 1, batch_size: 32, optimizer: {{name: sgd, lr: 0.1}}, threads: 1}}
recipes:
{recipes}"""

CNN = """\
name: convs
seeds: [0]
dataset: {{name: digits, train_subset: 300}}
model: {{name: {model}, channels: [4, 8], hidden: [16], kernel_size: 3}}
train: {{epochs: 1, batch_size: 32, optimizer: {{name: sgd, lr: 0.1}}, threads: 1}}
recipes:
{recipes}"""


@pytest.fixture(scope="module")
def plugin(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("plugin") / "targets_plugin.py"
    path.write_text(PLUGIN)
    load_plugin(str(path))          # once per process, as `--plugin` loads it
    return str(path)


def built(config) -> dict[str, nn.Module]:
    """Each recipe's model as a run builds it (the dataset's shapes only: no training)."""
    plan = build_plan(load_config(config))
    data = shapes_only(data_spec(plan.experiment["dataset"]))
    return {spec["recipe"]: build_run_model(spec, data, torch.device("cpu"))[0]
            for spec in plan.runs}


def paths_of(model: nn.Module, kind) -> list[str]:
    return [path for path, module in model.named_modules() if type(module) is kind]


def test_dropout_on_fc_globs_changes_only_the_matched_layers(plugin, tmp_path):
    """Acceptance: `dropout: {p: 0.3, modules: "fc*"}` on a plugin model puts dropout after
    fc1's and fc2's activations only (mid's Tanh keeps none), where untargeted dropout goes
    after all three; validate lists the two places and the paths that matched."""
    config = write_config(tmp_path / "c.yaml", HEADS.format(recipes=(
        '  head: {dropout: {p: 0.3, modules: "fc*"}}\n'
        "  everywhere: {dropout: {p: 0.3}}\n"
        "  tanh: {dropout: {p: 0.3, types: Tanh}}\n")))
    models = built(config)
    # surgery wraps an activation as Sequential(activation, dropout): "act1" -> "act1.1"
    assert paths_of(models["head"], InvertedDropout) == ["act1.1", "act2.1"]
    assert [m.p for m in models["head"].modules() if isinstance(m, nn.Dropout)] == [0.3, 0.3]
    assert type(models["head"].act3) is nn.Tanh                    # untouched
    assert paths_of(models["everywhere"], InvertedDropout) == ["act1.1", "act2.1", "act3.1"]
    assert paths_of(models["tanh"], InvertedDropout) == ["act3.1"]
    assert type(models["tanh"].act1) is nn.ReLU
    # only the matched places change the forward in training: act3's Tanh output has no zeros
    head = models["head"].train()
    seen = {}

    def keep(name):
        def hook(module, inputs, output):
            seen[name] = (inputs[0], output)
        return hook

    head.act3.register_forward_hook(keep("act3"))
    head.act1.register_forward_hook(keep("act1"))      # the ReLU and its dropout
    head(torch.randn(64, 1, 8, 8))
    assert (seen["act3"][1] != 0).all()
    relu, dropped = seen["act1"]
    assert (dropped[relu.relu() > 0] == 0).any()                   # dropout zeroed some there

    result = runner.invoke(app, ["validate", str(config), "--plugin", plugin])
    assert result.exit_code == 0, result.output
    head_lines = result.output.split("recipe head:")[1].split("recipe ")[0]
    assert "dropout: 2 dropout layers after hidden activations, where modules 'fc*' match" \
        in head_lines
    assert "act1 → dropout after ReLU (matched fc1)" in head_lines
    assert "act2 → dropout after ReLU (matched fc2)" in head_lines
    assert "act3" not in head_lines and "mid" not in head_lines
    tanh_lines = result.output.split("recipe tanh:")[1]
    assert "act3 → dropout after Tanh (matched act3)" in tanh_lines


def test_types_conv2d_on_a_small_cnn_changes_only_the_convs(tmp_path):
    """`types: [Conv2d]` on a LeNet-style cnn (convs at 0 and 3, hidden Linear at 7): the
    norm, the DropConnect layers and the dropout go to the conv layers only."""
    config = write_config(tmp_path / "c.yaml", CNN.format(model="cnn", recipes=(
        "  bn: {batchnorm: {types: [Conv2d]}}\n"
        "  dc: {dropconnect: {p: 0.3, mode: per_batch, types: [Conv2d]}}\n"
        "  dl: {dropconnect: {p: 0.3, mode: per_batch, types: Linear}}\n"
        "  d: {dropout: {p: 0.3, types: Conv2d}}\n")))
    models = built(config)
    assert paths_of(models["bn"], BatchNorm2d) == ["0.1", "3.1"]
    assert paths_of(models["bn"], BatchNorm1d) == []
    assert paths_of(models["dc"], DropConnectConv2d) == ["0", "3"]
    assert paths_of(models["dc"], DropConnectLinear) == [] and paths_of(models["dc"], nn.Linear) \
        == ["7", "9"]
    assert paths_of(models["dl"], DropConnectLinear) == ["7"]         # never the output layer
    assert paths_of(models["dl"], DropConnectConv2d) == []
    assert paths_of(models["d"], InvertedDropout) == ["1.1", "4.1"]   # not after 8, fed by 7


def test_a_glob_or_type_that_matches_nothing_is_exit_2_naming_close_paths(plugin, tmp_path):
    config = write_config(tmp_path / "c.yaml", HEADS.format(
        recipes='  r: {dropout: {p: 0.3, modules: "fcx*"}}\n'))
    result = runner.invoke(app, ["validate", str(config), "--plugin", plugin])
    line = one_error_line(result, 2, "recipes.r.dropout.modules", "'fcx*' matches no place")
    assert "closest paths: " in line
    assert set(line.split("closest paths: ")[1].split(", ")) <= {"fc1", "fc2"}
    # the output layer is no place for dropout: refused, not silently ignored, saying why and
    # what gives dropout on the classifier's inputs
    config = write_config(tmp_path / "o.yaml", HEADS.format(
        recipes='  r: {dropout: {p: 0.3, modules: "out"}}\n'))
    one_error_line(runner.invoke(app, ["validate", str(config), "--plugin", plugin]), 2,
                   "recipes.r.dropout.modules", "'out' matches no place",
                   "out is the output layer: dropout goes after hidden activations only",
                   "drop_rate", "plugin model")
    # a class name typed wrong names the class it was meant to be
    config = write_config(tmp_path / "t.yaml", CNN.format(
        model="cnn", recipes="  r: {batchnorm: {types: Conv2D}}\n"))
    one_error_line(runner.invoke(app, ["validate", str(config)]), 2,
                   "recipes.r.batchnorm.types", "'Conv2D'", "closest types: Conv2d")
    # run refuses it before anything is written
    out = tmp_path / "out"
    config = write_config(tmp_path / "c.yaml", HEADS.format(
        recipes='  r: {dropout: {p: 0.3, modules: "fcx*"}}\n'))
    result = runner.invoke(app, ["run", str(config), "--plugin", plugin, "--out", str(out)])
    one_error_line(result, 2, "recipes.r.dropout.modules")
    assert not (out / "targets").exists()


def test_bad_placement_values_are_located_config_errors(tmp_path):
    for recipe, key in (("{dropout: {modules: []}}", "dropout.modules"),
                        ("{dropout: {types: nn.Linear}}", "dropout.types"),
                        ("{dropout: {mode: spatial}}", "dropout.mode")):
        config = write_config(tmp_path / "c.yaml", CNN.format(model="cnn",
                                                              recipes=f"  r: {recipe}\n"))
        one_error_line(runner.invoke(app, ["validate", str(config)]), 2, "c.yaml:",
                       f"recipes.r.{key}")


def test_channel_mode_zeroes_whole_channels_from_the_layers_own_stream(tmp_path):
    """`mode: channel` on a cnn: after the conv activations only; in training every (sample,
    channel) map is all zero or all scaled by 1/(1−p), the kept fraction is 1 − p over many
    draws, and the draws come from the layer's own stream (the global RNG is left alone, and
    a rebuilt run draws the same maps)."""
    p = 0.4
    config = write_config(tmp_path / "c.yaml", CNN.format(
        model="cnn", recipes=f"  ch: {{dropout: {{p: {p}, mode: channel}}}}\n"))
    model = built(config)["ch"]
    assert paths_of(model, ChannelDropout) == ["1.1", "4.1"]      # none after 8 (a Linear's)
    layer = model.get_submodule("4.1").train()
    x = torch.rand(64, 8, 5, 5) + 0.5                              # no zeros of its own
    rng = torch.get_rng_state()
    kept = []
    for _ in range(100):
        ratio = layer(x) / x                                       # [N, C, H, W]
        flat = ratio.flatten(2)
        zero = (flat == 0).all(-1)
        scaled = torch.isclose(flat, torch.tensor(1 / (1 - p))).all(-1)
        assert (zero | scaled).all()                               # whole maps only
        kept.append(scaled.float().mean())
    # 100 × 64 × 8 = 51,200 draws: the kept fraction's sd is 0.0022
    assert abs(float(torch.stack(kept).mean()) - (1 - p)) < 0.015
    assert torch.equal(torch.get_rng_state(), rng)
    again = built(config)["ch"].get_submodule("4.1").train()
    fresh = built(config)["ch"].get_submodule("4.1").train()
    assert torch.equal(again(x), fresh(x))


def test_channel_mode_on_a_model_without_convs_is_refused(plugin, tmp_path):
    config = write_config(tmp_path / "m.yaml", CNN.format(
        model="mlp", recipes="  r: {dropout: {mode: channel}}\n").replace(
        ", channels: [4, 8], hidden: [16], kernel_size: 3", ", hidden: [16]"))
    one_error_line(runner.invoke(app, ["validate", str(config)]), 2, "m.yaml:",
                   "recipes.r.dropout", "no conv layers")
    config = write_config(tmp_path / "p.yaml", HEADS.format(
        recipes="  r: {dropout: {mode: channel}}\n"))
    one_error_line(runner.invoke(app, ["validate", str(config), "--plugin", plugin]), 2,
                   "dropout cannot apply to model target_heads", "hidden nn.Conv2d")


SHARED_PLUGIN = '''
import numpy as np
from torch import nn

import regbench


class SharedAct(nn.Module):
    """One activation module used after fc1, fc2 and fc3, as many hand-written MLPs do."""

    def __init__(self, features, outputs):
        super().__init__()
        self.fc1 = nn.Linear(features, 32)
        self.fc2, self.fc3 = nn.Linear(32, 32), nn.Linear(32, 32)
        self.act = nn.ReLU()
        self.out = nn.Linear(32, outputs)

    def forward(self, x):
        x = self.act(self.fc1(x.flatten(1)))
        x = self.act(self.fc2(x))
        return self.out(self.act(self.fc3(x)))


@regbench.register_model("target_shared_act")
def shared_act(input_shape, output_dim):
    """Three hidden linear layers sharing one ReLU module."""
    return SharedAct(int(np.prod(input_shape)), output_dim)
'''


@pytest.fixture(scope="module")
def shared_plugin(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("plugin") / "shared_act_plugin.py"
    path.write_text(SHARED_PLUGIN)
    load_plugin(str(path))
    return str(path)


def dropped_calls(model: nn.Module, activation: str, x: torch.Tensor) -> list[bool]:
    """For each call of the activation module at ``activation`` (as the plain model named it:
    after surgery the ReLU is its first child) in one training forward: whether what leaves
    that place differs from what the ReLU gave, i.e. whether dropout acted there."""
    place = model.get_submodule(activation)
    relu = next(module for module in place.modules() if isinstance(module, nn.ReLU))
    given, left = [], []
    handles = [relu.register_forward_hook(lambda m, i, out: given.append(out)),
               place.register_forward_hook(lambda m, i, out: left.append(out))]
    model.train()
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    assert len(given) == len(left)
    return [not torch.equal(a, b) for a, b in zip(given, left)]


def test_a_shared_activation_gets_dropout_only_after_the_matched_layers_calls(
        shared_plugin, tmp_path):
    """One `self.act` after fc1, fc2 and fc3: `modules: fc1` drops after its first call only,
    `modules: fc3` after its third, `[fc1, fc3]` after both, `modules: act` and the untargeted
    dropout after all three; the calls stay in step over forwards of either mode."""
    config = write_config(tmp_path / "c.yaml", HEADS.format(recipes=(
        "  fc1: {dropout: {p: 0.5, modules: fc1}}\n"
        "  fc3: {dropout: {p: 0.5, modules: fc3}}\n"
        "  both: {dropout: {p: 0.5, modules: [fc1, fc3]}}\n"
        "  act: {dropout: {p: 0.5, modules: act}}\n"
        "  everywhere: {dropout: {p: 0.5}}\n")).replace("target_heads", "target_shared_act"))
    models = built(config)
    x = torch.rand(64, 1, 8, 8)
    expected = {"fc1": [True, False, False], "fc3": [False, False, True],
                "both": [True, False, True], "act": [True, True, True],
                "everywhere": [True, True, True]}
    for recipe, calls in expected.items():
        model = models[recipe]
        assert len(paths_of(model, InvertedDropout)) == 1, recipe     # one layer, after act
        assert dropped_calls(model, "act", x) == calls, recipe
        model.eval()(x)                                               # an eval forward between
        assert dropped_calls(model, "act", x) == calls, recipe

    result = runner.invoke(app, ["validate", str(config), "--plugin", shared_plugin])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "    act → dropout after ReLU (at call 1 of its 3 calls) (matched fc1)" in lines
    assert "    act → dropout after ReLU (at call 3 of its 3 calls) (matched fc3)" in lines
    assert "    act → dropout after ReLU (at calls 1, 3 of its 3 calls) (matched fc1, fc3)" \
        in lines
    assert "    act → dropout after ReLU (at each of its 3 calls)" in lines


MIXED_PLUGIN = '''
import numpy as np
from torch import nn

import regbench


class ConvThenLinear(nn.Module):
    """One activation module after a conv layer and after a linear layer."""

    def __init__(self, channels, side, outputs):
        super().__init__()
        self.conv = nn.Conv2d(channels, 4, 3, padding=1)
        self.fc = nn.Linear(4 * side * side, 16)
        self.act = nn.ReLU()
        self.out = nn.Linear(16, outputs)

    def forward(self, x):
        x = self.act(self.conv(x))
        return self.out(self.act(self.fc(x.flatten(1))))


@regbench.register_model("target_mixed_act", needs_images=True)
def mixed_act(input_shape, output_dim):
    return ConvThenLinear(input_shape[0], input_shape[1], output_dim)
'''


def test_a_shared_activation_after_a_conv_and_a_linear_layer_gets_each_calls_kind(tmp_path):
    """The ReLU's first call takes the conv's output, its second the linear layer's:
    DropBlock and channel dropout go after the first call only (a linear layer's output has
    no feature map: DropBlock there would fail), element-wise dropout after both (one layer
    per kind of call, each with its own stream)."""
    from regbench.models.surgery import AtCalls
    from regbench.regularizers.dropblock import DropBlockLayer
    from regbench.regularizers.dropout import ChannelDropout

    path = tmp_path / "mixed_act_plugin.py"
    path.write_text(MIXED_PLUGIN)
    load_plugin(str(path))
    config = write_config(tmp_path / "m.yaml", HEADS.format(recipes=(
        "  block: {dropblock: {p: 0.5, block_size: 3, schedule: constant}}\n"
        "  channel: {dropout: {p: 0.5, mode: channel}}\n"
        "  element: {dropout: {p: 0.5}}\n")).replace("target_heads", "target_mixed_act"))
    models = built(config)
    x = torch.rand(16, 1, 8, 8)
    for recipe, kind in (("block", DropBlockLayer), ("channel", ChannelDropout)):
        model = models[recipe]
        assert isinstance(model.act, AtCalls) and model.act.after == {0: 1}, recipe
        assert paths_of(model, kind) == ["act.1"], recipe
        assert dropped_calls(model, "act", x) == [True, False], recipe
    assert paths_of(models["element"], InvertedDropout) == ["act.1", "act.2"]
    assert models["element"].act.after == {0: 1, 1: 2}
    assert dropped_calls(models["element"], "act", x) == [True, True]
    result = runner.invoke(app, ["validate", str(config), "--plugin", str(path)])
    assert result.exit_code == 0, result.output
    assert "    act → dropout after ReLU (at call 1 of its 2 calls)" in result.output.splitlines()


def test_dropout_after_one_resnet18_blocks_conv2_drops_after_its_sum_only(tmp_path):
    """torchvision resnet18 shares one ReLU per block between conv1's output and the block's
    sum: `modules: layer4.1.conv2` drops after the sum of that block (the ReLU's second call)
    and nowhere else; `modules: "*conv2"` after every block's sum, fed by the downsample conv
    too where the block has one."""
    config = write_config(tmp_path / "r.yaml", CNN.format(model="torchvision", recipes=(
        "  one: {dropout: {p: 0.5, modules: layer4.1.conv2}}\n"
        '  sums: {dropout: {p: 0.5, modules: "*conv2"}}\n')).replace(
        "channels: [4, 8], hidden: [16], kernel_size: 3", "arch: resnet18"))
    models = built(config)
    x = torch.rand(4, 1, 8, 8)
    assert paths_of(models["one"], InvertedDropout) == ["layer4.1.relu.1"]
    assert dropped_calls(models["one"], "layer4.1.relu", x) == [False, True]
    blocks = [f"layer{stage}.{block}" for stage in range(1, 5) for block in range(2)]
    assert paths_of(models["sums"], InvertedDropout) == [f"{b}.relu.1" for b in blocks]
    for block in blocks:
        assert dropped_calls(models["sums"], f"{block}.relu", x) == [False, True], block

    result = runner.invoke(app, ["validate", str(config)])
    assert result.exit_code == 0, result.output
    assert ("    layer4.1.relu → dropout after ReLU (at call 2 of its 2 calls) (matched "
            "layer4.1.conv2)") in result.output.splitlines()


def test_a_target_that_matches_nothing_is_refused_at_its_line_of_the_config(plugin, tmp_path):
    """validate, run and tune name the file, line and column of the `modules:` or `types:`
    that matches nothing, as every other config error does."""
    config = write_config(tmp_path / "c.yaml", HEADS.format(
        recipes='  r: {dropout: {p: 0.3, modules: "fcx*"}}\n'))
    # recipes.r.dropout.modules is on line 7, its value at column 34
    where = f"{config}:7:34: recipes.r.dropout.modules: 'fcx*' matches no place"
    result = runner.invoke(app, ["validate", str(config), "--plugin", plugin])
    assert one_error_line(result, 2).startswith(f"regbench: error: {where}")
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", str(config), "--plugin", plugin, "--out", str(out)])
    assert one_error_line(result, 2).startswith(f"regbench: error: {where}")
    assert not (out / "targets").exists()
    config = write_config(tmp_path / "t.yaml", CNN.format(
        model="cnn", recipes="  r: {batchnorm: {types: Conv2D}}\n"))
    result = runner.invoke(app, ["validate", str(config)])
    assert one_error_line(result, 2).startswith(
        f"regbench: error: {config}:7:")


OLD_DUMPS = {     # each architecture regularizer's resolved params before placement existed
    "dropout": {"p": 0.3, "p_input": 0.0},
    "batchnorm": {"momentum": 0.1, "eps": 1e-05},
    "layernorm": {"eps": 1e-05},
    "groupnorm": {"groups": 2, "eps": 1e-05},
    "dropconnect": {"p": 0.3, "mode": "per_batch"},
    "weight_noise": {"sigma": 0.01},
    "bayes_by_backprop": {"prior_sigma": 0.1, "samples": 10, "kl_weight": 1.0},
    "variational_dropout": {"threshold": 3.0, "kl_weight": 1.0, "prune_eval": True},
}
OLD_RECIPES = """\
  dropout: {dropout: {p: 0.3}}
  batchnorm: {batchnorm: {}}
  layernorm: {layernorm: {}}
  groupnorm: {groupnorm: {groups: 2}}
  dropconnect: {dropconnect: {p: 0.3, mode: per_batch}}
  weight_noise: {weight_noise: {}}
  bayes_by_backprop: {bayes_by_backprop: {}}
  variational_dropout: {variational_dropout: {}}
  both: {dropout: {p: 0.2, p_input: 0.1}, batchnorm: {momentum: 0.2}}
"""
# config_hash of each recipe of CNN (model cnn, OLD_RECIPES) and of stochastic_depth on the
# resnet, as the code before placement computed them: commit 38b192f (`git archive 38b192f`,
# then build_plan(load_config(...)) with that tree first on PYTHONPATH). The same under
# pydantic 2.5.3 and 2.13.
HEAD_HASHES = {
    "baseline": "4175fd9376c63144", "dropout": "fa6c58b48f2e81cb",
    "batchnorm": "b7bde8c6f972a919", "layernorm": "8f0caa1b0d180087",
    "groupnorm": "26be10ab18248080", "dropconnect": "79857dfc27aad74b",
    "weight_noise": "a0b2b4109a0c6aaf", "bayes_by_backprop": "ca1b2f7b698002df",
    "variational_dropout": "f9f9da49ee8d7224", "both": "899dc2283f42e514",
}
HEAD_RESNET_HASHES = {"baseline": "e1e396016ae47195", "stochastic_depth": "b9e464c73057c55e"}


def test_configs_without_the_new_keys_keep_their_run_ids_and_hashes(tmp_path):
    config = write_config(tmp_path / "cnn.yaml", CNN.format(model="cnn", recipes=OLD_RECIPES))
    runs = {spec["recipe"]: spec for spec in build_plan(load_config(config)).runs}
    assert {recipe: spec["config_hash"] for recipe, spec in runs.items()} == HEAD_HASHES
    for name, dump in OLD_DUMPS.items():
        assert runs[name]["run_id"] == f"{name}__seed=0"
        assert runs[name]["regularizers"] == {name: dump}             # no new keys resolved
    config = write_config(tmp_path / "res.yaml", CNN.format(
        model="resnet", recipes="  stochastic_depth: {stochastic_depth: {p: 0.4}}\n").replace(
        ", hidden: [16], kernel_size: 3", ""))
    assert {spec["recipe"]: spec["config_hash"] for spec in build_plan(load_config(config)).runs
            } == HEAD_RESNET_HASHES


def test_the_new_keys_at_their_defaults_are_the_same_run_and_a_target_another(tmp_path):
    config = write_config(tmp_path / "c.yaml", CNN.format(model="cnn", recipes=(
        "  dropout: {dropout: {p: 0.3, mode: element, modules: null, types: null}}\n"
        "  batchnorm: {batchnorm: {modules: null, types: null}}\n"
        '  targeted: {dropout: {p: 0.3, modules: "fc*"}}\n'
        "  channel: {dropout: {p: 0.3, mode: channel}}\n")))
    runs = {spec["recipe"]: spec for spec in build_plan(load_config(config)).runs}
    # the defaults written out are the runs written without them (HEAD_HASHES)
    assert runs["dropout"]["config_hash"] == HEAD_HASHES["dropout"]
    assert runs["batchnorm"]["config_hash"] == HEAD_HASHES["batchnorm"]
    assert runs["dropout"]["regularizers"] == {"dropout": OLD_DUMPS["dropout"]}
    assert runs["targeted"]["regularizers"]["dropout"]["modules"] == ["fc*"]
    assert runs["channel"]["regularizers"]["dropout"]["mode"] == "channel"
    targeted = {**runs["targeted"], "recipe": "dropout"}
    assert config_hash(targeted) != runs["dropout"]["config_hash"]
    # nor do fused runs of different targets share a group
    assert fusable_key(runs["dropout"]) is not None
    assert fusable_key(targeted) != fusable_key(runs["dropout"])


def test_stochastic_depth_on_a_targeted_block_keeps_its_depth(tmp_path):
    """A targeted residual block keeps p_l = p·l/L with l, L over all the model's blocks."""
    config = write_config(tmp_path / "c.yaml", CNN.format(
        model="resnet", recipes='  sd: {stochastic_depth: {p: 0.4, modules: "2"}}\n').replace(
        ", hidden: [16], kernel_size: 3", ""))
    model = built(config)["sd"]
    drops = [(path, m.p) for path, m in model.named_modules() if isinstance(m, StochasticDepth)]
    assert drops == [("2.branch.1", pytest.approx(0.2))]      # block 1 of 2: 0.4·1/2, not 0.4

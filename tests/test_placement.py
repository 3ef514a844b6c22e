"""`regbench validate` shows where each change went: the layer path (the plain model's
``named_modules()`` name) of every dropout, norm and replaced layer, a long list cut with a
count, and a warning (exit code unchanged) where a norm regularizer meets a model with norms of
its own or dropout feeds a BatchNorm (Li et al. 2019's variance shift)."""
from __future__ import annotations

import re
from typing import Optional

import pytest
from torch import nn
from typer.testing import CliRunner

from regbench.cli import app
from regbench.models import build_model
from tests.conftest import REPO, digits_yaml, write_config

IMAGES = (1, 8, 8)                                     # digits
PLACEMENT = re.compile(r"^    (?:(\S+) → )?(\S.*)$")   # "    2 → dropout after ReLU"

# A ResNet written as the README's plugin section describes one: plain torch modules, blocks
# that declare their residual branch, registered with residual=True; BatchNorm of its own.
PLUGIN_RESNET = '''
from torch import nn
import regbench


class Block(nn.Module):
    residual_branch = "branch"      # the child whose output joins the shortcut

    def __init__(self, width):
        super().__init__()
        self.branch = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width))
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(x + self.branch(x))


@regbench.register_model("placement_resnet", residual=True, needs_images=True)
def placement_resnet(input_shape, output_dim, width: int = 8, blocks: int = 2):
    """A small ResNet from plain torch modules, with BatchNorm in its stem and blocks."""
    return nn.Sequential(
        nn.Conv2d(input_shape[0], width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
        nn.ReLU(), *[Block(width) for _ in range(blocks)], nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(width, output_dim))


@regbench.register_model("placement_dropout_head")
def placement_dropout_head(input_shape, output_dim, width: int = 16):
    """A VGG-style classifier head: dropout of its own after each hidden activation."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Dropout(0.5),
                         nn.Linear(width, width), nn.ReLU(), nn.Linear(width, output_dim))


class ReadsWeight(nn.Module):
    """Reads one layer's weight directly, as Swin's attention reads qkv.weight."""

    def __init__(self, output_dim):
        super().__init__()
        self.hidden, self.act = nn.Linear(64, 16), nn.ReLU()
        self.qkv = nn.Linear(16, 16)              # never called: replacing it changes nothing
        self.out = nn.Linear(16, output_dim)

    def forward(self, x):
        return self.out(self.act(self.hidden(x.flatten(1))) @ self.qkv.weight.T)


@regbench.register_model("placement_reads_weight")
def placement_reads_weight(input_shape, output_dim):
    return ReadsWeight(output_dim)
'''


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    path = tmp_path_factory.mktemp("plugin") / "placement_models.py"
    path.write_text(PLUGIN_RESNET)
    return path


def validate(config, *extra):
    result = CliRunner().invoke(app, ["validate", str(config), *map(str, extra)])
    assert result.exit_code == 0, result.output       # warnings never refuse
    return result.output


def placed_under(output: str, heading: str) -> list[tuple[Optional[str], str]]:
    """The (path, change) lines listed under the change line that starts with ``heading``
    (path None: the inputs)."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"  {heading}"))
    found = []
    for line in lines[start + 1:]:
        match = PLACEMENT.match(line)
        if not match:
            break
        found.append(match.groups())
    return found


def warnings_of(output: str) -> str:
    """The warnings, unfolded (the console wraps long lines)."""
    return " ".join(output[output.find("warning:"):].split()) if "warning:" in output else ""


def recipe_yaml(model: str, recipes: str) -> str:
    return (f"name: placement\nseeds: [0]\ndataset: {{name: digits, train_subset: 300}}\n"
            f"model: {model}\ntrain: {{epochs: 1, batch_size: 32}}\nrecipes:\n{recipes}")


def test_an_mlp_with_dropout_lists_each_dropout_layer_path(tmp_path):
    config = write_config(tmp_path / "mlp.yaml", digits_yaml(
        "mlp_dropout", "  dropout: {dropout: {p: 0.2, p_input: 0.1}}\n", seeds="[0]")
        .replace("hidden: [32]", "hidden: [16, 12]"))
    output = validate(config)
    assert "dropout: 2 dropout layers after hidden activations, 1 dropout on the inputs" \
        in output
    placed = placed_under(output, "dropout: ")
    assert placed == [(None, "dropout on the model's inputs"), ("2", "dropout after ReLU"),
                      ("4", "dropout after ReLU")]
    plain = dict(build_model({"name": "mlp", "hidden": [16, 12]}, IMAGES, 10).named_modules())
    assert all(isinstance(plain[path], nn.ReLU) for path, _ in placed[1:])   # real layers
    assert warnings_of(output) == ""


def test_the_plugin_resnet_lists_each_dropout_layer_path_and_warns_of_its_batchnorm(
        tmp_path, plugin):
    """Issue 36's acceptance: validate on the README's plugin ResNet lists each dropout's path;
    each dropout but the last feeds one of the model's own BatchNorms through a conv."""
    config = write_config(tmp_path / "resnet.yaml", recipe_yaml(
        "{name: placement_resnet}", "  dropout: {dropout: {p: 0.2}}\n")
        + "sweep: {recipes.dropout.dropout.p: [0.1, 0.2]}\n")
    output = validate(config, "--plugin", plugin)
    assert warnings_of(output).count("dropout feeds a BatchNorm") == 1   # not once per point
    assert "dropout: 5 dropout layers after hidden activations" in output
    placed = placed_under(output, "dropout: ")
    plain = build_model({"name": "placement_resnet"}, IMAGES, 10)
    relus = [name for name, module in plain.named_modules() if isinstance(module, nn.ReLU)]
    assert sorted(path for path, _ in placed) == sorted(relus) \
        == ["2", "3.branch.2", "3.relu", "4.branch.2", "4.relu"]
    assert {change for _, change in placed} == {"dropout after ReLU"}
    # stem relu → 3.branch.0 → 3.branch.1 (BN), and likewise in each block but after 4.relu
    assert ("dropout feeds a BatchNorm with no activation between in 4 places (e.g. the "
            "dropout after 2 → 3.branch.1)") in warnings_of(output)
    assert "Understanding the Disharmony between Dropout and Batch Normalization" \
        in warnings_of(output)


def test_batchnorm_on_a_model_with_its_own_batchnorm_warns(tmp_path, plugin):
    config = write_config(tmp_path / "bn.yaml", recipe_yaml(
        "{name: placement_resnet}", "  bn: {batchnorm: {}}\n  gn: {groupnorm: {groups: 2}}\n"))
    output = validate(config, "--plugin", plugin)
    placed = placed_under(output, "batchnorm: ")
    assert placed[:2] == [("0", "BatchNorm2d after Conv2d"),
                          ("3.branch.0", "BatchNorm2d after Conv2d")]
    assert len(placed) == 5                              # the stem's conv and four in blocks
    warned = warnings_of(output)
    for recipe, norm in (("bn", "batchnorm"), ("gn", "groupnorm")):
        assert (f"recipe '{recipe}': the model already has 5 BatchNorm2d layers of its own; "
                f"{norm} adds another norm after each of its 5 hidden linear/conv layers (5 of "
                "them right before one of the model's own, e.g. 0 →") in warned
    assert "0 → BatchNorm2d → 1)" in warned and "0 → GroupNorm → 1)" in warned


def test_the_models_own_dropout_before_a_batchnorm_the_recipe_adds_warns(tmp_path, plugin):
    """A classifier head with dropout of its own (as VGG's): batchnorm puts a BatchNorm1d
    after the Linear that the dropout feeds."""
    config = write_config(tmp_path / "head.yaml", recipe_yaml(
        "{name: placement_dropout_head}", "  bn: {batchnorm: {}}\n"))
    output = validate(config, "--plugin", plugin)
    assert ("dropout feeds a BatchNorm with no activation between in 1 place (e.g. 3 → the "
            "BatchNorm1d after 4)") in warnings_of(output)


def test_a_replaced_layer_the_forward_never_calls_is_not_listed(tmp_path, plugin):
    config = write_config(tmp_path / "reads.yaml", recipe_yaml(
        "{name: placement_reads_weight}", "  dc: {dropconnect: {}}\n"))
    output = validate(config, "--plugin", plugin)
    assert "dropconnect: 1 hidden linear layers replaced" in output
    assert placed_under(output, "dropconnect: ") == [
        ("hidden", "Linear replaced by DropConnectLinear")]


def test_a_plain_mlp_with_l2_shows_no_placement_and_no_warning(tiny_config):
    output = validate(tiny_config)
    assert "→" not in output and "warning" not in output
    assert "penalized: 2 weight tensors" in output


def test_validate_on_resnet18_stays_short(tmp_path):
    config = write_config(tmp_path / "resnet18.yaml", recipe_yaml(
        "{name: torchvision, arch: resnet18}",
        "  both: {dropout: {p: 0.1}, batchnorm: {}}\n"))
    output = validate(config)
    assert len(output.splitlines()) < 40, output
    assert placed_under(output, "batchnorm: 20 norm layers")[0] == \
        ("conv1", "BatchNorm2d after Conv2d")
    assert "    … and 12 more" in output.splitlines()               # 8 of 20 shown
    assert ("layer1.0.relu", "dropout after ReLU (at each of its 2 calls)") \
        in placed_under(output, "dropout: 9 dropout layers")
    assert "the model already has 20 BatchNorm2d layers of its own" in warnings_of(output)


def test_the_readme_plugin_example_lists_its_dropout_and_dropconnect_layers():
    """`regbench validate examples/my_plugin.yaml --plugin examples/my_plugin.py`, as the
    README runs it."""
    output = validate(REPO / "examples" / "my_plugin.yaml", "--plugin",
                      REPO / "examples" / "my_plugin.py")
    assert placed_under(output, "dropout: ") == [("2", "dropout after ReLU"),
                                                 ("4", "dropout after ReLU")]
    assert placed_under(output, "dropconnect: ") == [
        ("1", "Linear replaced by DropConnectLinear"),
        ("3", "Linear replaced by DropConnectLinear")]
    assert placed_under(output, "batchnorm: ") == [("1", "BatchNorm1d after Linear"),
                                                   ("3", "BatchNorm1d after Linear")]
    assert warnings_of(output) == ""

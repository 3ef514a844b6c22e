"""Your own data: an image folder decoded once into a cache, CSV tables with categorical and
missing values, and paths relative to the config file."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from regbench.cli import app
from regbench.data import forget_loaded, prepare
from regbench.data.folders import CACHE_DIR
from regbench.experiment.config import load_config
from regbench.experiment.plan import build_plan
from tests.conftest import REPO, write_config

runner = CliRunner()


def _image_folder(root, per_class: int = 12, size: int = 16):
    """Two classes of PNGs: bright squares on the left vs on the right, with noise."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, name in enumerate(("left", "right")):
        (root / name).mkdir(parents=True)
        for index in range(per_class):
            pixels = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            columns = slice(0, size // 2) if label == 0 else slice(size // 2, size)
            pixels[:, columns] += 150
            Image.fromarray(pixels).save(root / name / f"{index}.png")


def test_an_image_folder_trains_and_the_second_run_reuses_its_cache(tmp_path):
    """Acceptance 4: torchvision's ImageFolder layout, resized, cached next to the data."""
    _image_folder(tmp_path / "images")
    config = write_config(tmp_path / "c.yaml", """\
name: mine
dataset: {name: image_folder, path: images, size: 8, val_fraction: 0.25, test_fraction: 0.25}
model: {name: cnn, channels: [4], hidden: [8], kernel_size: 3}
train: {epochs: 2, batch_size: 4, threads: 1}
recipes: {augment: {augment: {crop_padding: 1}}}
""")
    result = runner.invoke(app, ["run", str(config), "--out", str(tmp_path / "out"),
                                 "--no-report"])
    assert result.exit_code == 0, result.output
    caches = list((tmp_path / "images" / CACHE_DIR).glob("*.npz"))
    assert len(caches) == 1
    stamp = caches[0].stat().st_mtime_ns
    stored = np.load(caches[0])
    assert stored["x"].shape == (24, 3, 8, 8) and stored["x"].dtype == np.uint8
    assert sorted(np.bincount(stored["y"])) == [12, 12]
    again = subprocess.run([sys.executable, "-m", "regbench", "run", str(config), "--out",
                            str(tmp_path / "out2"), "--no-report"], capture_output=True,
                           text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr     # the next run, a new process
    assert [p.stat().st_mtime_ns for p in (tmp_path / "images" / CACHE_DIR).glob("*.npz")] \
        == [stamp]                                         # reused, not rewritten
    first = pd.read_csv(tmp_path / "out" / "mine" / "runs.csv")
    second = pd.read_csv(tmp_path / "out2" / "mine" / "runs.csv")
    assert list(first.val_loss) == list(second.val_loss)     # the same arrays
    _image_folder(tmp_path / "more", per_class=1)
    os.replace(tmp_path / "more" / "left" / "0.png", tmp_path / "images" / "left" / "new.png")
    forget_loaded()
    dataset = build_plan(load_config(config)).experiment["dataset"]
    assert len(prepare(dataset).y_train) + len(prepare(dataset).y_test) == 20   # 25 images
    caches = list((tmp_path / "images" / CACHE_DIR).glob("*.npz"))   # a changed folder: a new
    assert len(caches) == 1 and caches[0].stat().st_mtime_ns != stamp  # cache replaces the old


def test_an_image_folder_with_one_class_is_refused(tmp_path):
    _image_folder(tmp_path / "images")
    (tmp_path / "solo").mkdir()
    os.replace(tmp_path / "images" / "left", tmp_path / "solo" / "left")
    config = write_config(tmp_path / "c.yaml", "name: solo\ndataset: {name: image_folder, "
                                               "path: solo}\nmodel: {name: cnn}\n")
    result = runner.invoke(app, ["run", str(config), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "holds 1 class folder(s)" in result.output


def _table(path, missing: bool = False):
    rng = np.random.default_rng(1)
    lines = ["x,colour,size,label"]
    for index in range(240):
        colour = ("red", "green", "blue")[index % 3]
        x = rng.normal()
        size = "" if missing and index % 11 == 0 else f"{rng.normal():.3f}"
        lines.append(f"{x:.3f},{colour},{size},{int((colour == 'red') ^ (x > 0))}")
    path.write_text("\n".join(lines) + "\n")


def test_csv_with_a_categorical_column_and_missing_values_trains_from_another_folder(tmp_path):
    """Acceptance 5: text columns one-hot (categories from the training split), missing numbers
    filled with the training median, the table found relative to the config file."""
    (tmp_path / "project").mkdir()
    _table(tmp_path / "project" / "table.csv", missing=True)
    config = write_config(tmp_path / "project" / "c.yaml", """\
name: table
dataset: {name: csv, path: table.csv, target: label, impute: median}
model: {name: mlp, hidden: [16]}
train: {epochs: 30, batch_size: 32, threads: 1}
""")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "regbench", "run", str(config), "--out",
                           str(elsewhere / "out"), "--no-report"], cwd=elsewhere, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = pd.read_csv(elsewhere / "out" / "table" / "runs.csv").iloc[0]
    assert summary.test_accuracy > 0.8          # the colour × x pattern needs the one-hot
    data = prepare(build_plan(load_config(config)).experiment["dataset"])
    assert data.input_shape == (5,)             # x, three colours, size
    refused = write_config(tmp_path / "project" / "r.yaml", """\
name: table
dataset: {name: csv, path: table.csv, target: label}
""")
    result = runner.invoke(app, ["run", str(refused), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "table.csv:2: column 'size' has a missing value" in \
        result.output and "impute: mean or median" in result.output


def test_categories_and_fill_values_come_from_the_training_split_alone():
    from regbench.data.tabular import table_encoder

    train = np.array([[1.0, "a"], [3.0, "b"], [np.nan, "a"]], dtype=object)
    other = np.array([[np.nan, "c"], [2.0, None]], dtype=object)
    encode = table_encoder({"x": "numeric", "k": "categorical"}, "mean")(train)
    np.testing.assert_array_equal(encode(train), [[1, 1, 0], [3, 0, 1], [2, 1, 0]])
    # an unseen category and a missing one are all zeros; a missing number is train's mean
    np.testing.assert_array_equal(encode(other), [[2, 0, 0], [2, 0, 0]])
    from regbench.data.tabular import _category

    assert _category(3.0) == _category(3) == "3" and _category(float("nan")) is None
    median = table_encoder({"x": "numeric", "k": "categorical"}, "median")(
        np.array([[1.0, "a"], [2.0, "a"], [10.0, "a"], [np.nan, "a"]], dtype=object))
    assert median(other)[0, 0] == 2.0


@pytest.mark.parametrize("key", ["path"])
def test_a_missing_table_names_the_absolute_path_it_tried(tmp_path, key):
    config = write_config(tmp_path / "c.yaml", f"name: t\ndataset: {{name: csv, {key}: "
                                               "nope.csv, target: y}\n")
    result = runner.invoke(app, ["validate", str(config)])
    assert result.exit_code == 2 and str(tmp_path / "nope.csv") in result.output


def test_a_csv_saved_with_a_byte_order_mark_keeps_its_first_column_name(tmp_path):
    """Excel's "CSV UTF-8" starts the file with a byte-order mark: the first column (here the
    target) keeps its name, in the header check and in the table read."""
    from typer.testing import CliRunner

    from regbench.cli import app

    rows = "\n".join(f"{i % 2},{i % 7},{(i * 3) % 5}" for i in range(60))
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufefflabel,a,b\n".encode("utf-8") + rows.encode("utf-8"))
    config = tmp_path / "c.yaml"
    config.write_text("name: bom\nseeds: [0]\n"
                      "dataset: {name: csv, path: excel.csv, target: label}\n"
                      "model: {name: mlp, hidden: [8]}\ntrain: {epochs: 1, batch_size: 16}\n"
                      "recipes: {}\n")
    result = CliRunner().invoke(app, ["run", str(config), "--out", str(tmp_path / "o"),
                                      "--no-report"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o" / "bom" / "runs" / "baseline__seed=0" / "summary.json").is_file()


def test_the_image_cache_is_never_used_through_a_link_and_a_stale_one_is_not_trusted(tmp_path):
    """A .regbench-cache that links elsewhere is neither read, written nor cleaned (a user's
    files there survive), and a cache of the right name but other arrays is decoded again."""
    import numpy as np

    from regbench.data.folders import CACHE_DIR, load_folder

    _image_folder(tmp_path / "images")
    elsewhere = tmp_path / "mine"
    elsewhere.mkdir()
    (elsewhere / "precious.npz").write_bytes(b"a user's file")
    (tmp_path / "images" / CACHE_DIR).symlink_to(elsewhere)
    x, y, _ = load_folder(tmp_path / "images", "path", 8, grayscale=False)
    assert x.shape[1:] == (3, 8, 8)
    assert sorted(p.name for p in elsewhere.iterdir()) == ["precious.npz"]
    (tmp_path / "images" / CACHE_DIR).unlink()
    load_folder(tmp_path / "images", "path", 8, grayscale=False)            # writes a cache
    cached = next((tmp_path / "images" / CACHE_DIR).glob("*.npz"))
    np.savez(cached, x=np.zeros((len(x), 3, 4, 4), dtype=np.uint8), y=y)    # stale: 4×4
    again, labels, _ = load_folder(tmp_path / "images", "path", 8, grayscale=False)
    assert again.shape == x.shape and np.array_equal(again, x) and np.array_equal(labels, y)

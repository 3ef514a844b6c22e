"""Hostile data through the real command line: tables with empty, blank or id-like columns and
values that cannot be used, images that would exhaust memory or cannot be opened, and plugin
loaders that return the wrong thing. Each ends in exit 2 and ONE line naming the file and line
(or the dataset) and what is expected, before any run trains or anything is written."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from test_bad_input import mnist_folder, one_error_line, write_idx
from typer.testing import CliRunner

from regbench.cli import app
from regbench.data import DATASETS, forget_loaded, prepare
from regbench.data.base import checked
from regbench.data.tabular import MAX_CATEGORIES, category_limit, table_encoder
from regbench.errors import DataError

runner = CliRunner()


def run(config: Path, *extra: str):
    """`regbench run` of ``config``; a refused one must leave no results folder."""
    out = config.parent / "out"
    result = runner.invoke(app, ["run", str(config), "--out", str(out), "--no-report", *extra])
    if result.exit_code:
        assert not out.exists(), "a refused run wrote results"
    return result


def csv_yaml(path: Path, task: str = "classification", extra: str = "") -> Path:
    config = path.parent / "c.yaml"
    config.write_text(f"name: t\ndataset: {{name: csv, path: '{path}', target: label, "
                      f"task: {task}{extra}}}\nmodel: {{name: mlp, hidden: [4]}}\n"
                      "train: {epochs: 1, batch_size: 8, threads: 1}\n")
    return config


def table(path: Path, rows: int = 40, columns=None, label=None) -> Path:
    """A CSV of ``rows`` rows: a numeric column a, the ``columns`` given as functions of the
    row number, and a label (0/1 unless ``label`` says otherwise)."""
    columns = columns or {}
    rng = np.random.default_rng(0)
    lines = [",".join(["a", *columns, "label"])]
    for row in range(rows):
        cells = [f"{rng.normal():.3f}", *(str(make(row)) for make in columns.values()),
                 str(label(row) if label else row % 2)]
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")
    return path


def replace_line(path: Path, line: int, text: str) -> Path:
    lines = path.read_text().splitlines()
    lines[line - 1] = text
    path.write_text("\n".join(lines) + "\n")
    return path


def csv_config(path: Path, **extra) -> dict:
    forget_loaded()
    return {"name": "csv", "path": str(path), "target": "label", "task": "classification",
            "val_path": None, "test_path": None, "categorical": [], "impute": "mean",
            "val_fraction": 0.2, "test_fraction": 0.2, "split_seed": 0, **extra}


# ----------------------------------------------------------------------------- tables

@pytest.mark.parametrize("impute", ["refuse", "mean"])
def test_a_column_with_no_value_at_all_is_refused_by_name(tmp_path, impute):
    """Decision: refused rather than dropped with a warning; a warning scrolls past, and a
    column the user listed but that carries nothing is most often a broken export."""
    path = table(tmp_path / "t.csv", columns={"empty": lambda row: ""})
    result = run(csv_yaml(path, extra=f", impute: {impute}"))
    one_error_line(result, 2, f"dataset.path: {path}: column 'empty' has no value in any of "
                   "its 40 rows", "drop the column")


def test_a_column_whose_values_all_fall_outside_the_training_rows_is_refused():
    encoder = table_encoder({"x": "numeric", "k": "categorical"}, "mean", "dataset.path: t.csv")
    with pytest.raises(DataError, match="t.csv: column 'x' has no value in the 2 training rows"):
        encoder(np.array([[np.nan, "a"], [np.nan, "b"]], dtype=object))
    with pytest.raises(DataError, match="column 'k' has no value in the 2 training rows"):
        encoder(np.array([[1.0, None], [2.0, None]], dtype=object))


def test_blank_cells_in_a_text_column_are_missing_values_not_a_category(tmp_path):
    """A blank colour is missing: refused under impute: refuse (by its line), and under
    impute: mean all zeros in the colour's one-hot columns, with no column of its own."""
    colours = ("red", "green", "")
    path = table(tmp_path / "t.csv", columns={"colour": lambda row: colours[row % 3]})
    one_error_line(run(csv_yaml(path)), 2, f"{path}:4: column 'colour' has a missing value")
    raw = DATASETS.get("csv").load(csv_config(path))
    encoded = raw.fit_encoder(raw.x_train)(raw.x_train)
    assert encoded.shape == (40, 3)                         # a, green, red: no third colour
    assert (encoded[:, 1:].sum(axis=0) > 0).all()           # no dead, all-zero column
    blank = np.arange(40) % 3 == 2
    assert (encoded[blank, 1:] == 0).all() and (encoded[~blank, 1:].sum(axis=1) == 1).all()
    assert prepare(csv_config(path)).input_shape == (3,)


def test_an_id_like_text_column_is_refused_with_its_count(tmp_path):
    path = table(tmp_path / "t.csv", columns={"id": lambda row: f"user{row}"})
    one_error_line(run(csv_yaml(path, extra=", impute: mean")), 2,
                   f"{path}: column 'id' has 40 distinct values in 40 rows", "drop it")


def test_the_category_limit_is_1000_and_half_the_rows():
    assert [category_limit(rows) for rows in (12, 100, 2000, 10**7)] == [10, 50, 1000, 1000]
    assert MAX_CATEGORIES == 1000


def test_more_than_1000_categories_are_refused_even_in_a_long_table(tmp_path):
    """4000 rows: half would allow 2000, the cap is 1000; 1000 exactly loads."""
    many = table(tmp_path / "many.csv", rows=4000, columns={"k": lambda row: f"c{row % 1001}"})
    with pytest.raises(DataError, match="column 'k' has 1001 distinct values in 4000 rows, more "
                                        "than the 1000 categories"):
        DATASETS.get("csv").load(csv_config(many))
    fine = table(tmp_path / "fine.csv", rows=4000, columns={"k": lambda row: f"c{row % 1000}"})
    raw = DATASETS.get("csv").load(csv_config(fine))
    assert raw.fit_encoder(raw.x_train)(raw.x_train).shape == (4000, 1001)


def test_value_errors_name_the_file_and_line(tmp_path):
    numbers = table(tmp_path / "r.csv", label=lambda row: row * 0.5)
    replace_line(numbers, 7, "1.0,abc")
    one_error_line(run(csv_yaml(numbers, "regression")), 2,
                   f"dataset.target: {numbers}:7: target 'label' is not numeric (got 'abc')")
    fractional = table(tmp_path / "f.csv")
    replace_line(fractional, 9, "1.0,0.5")
    one_error_line(run(csv_yaml(fractional)), 2,
                   f"dataset.task: {fractional}:9: target 'label' holds fractional numbers such "
                   "as 0.5", "task: regression")
    huge = replace_line(table(tmp_path / "h.csv"), 5, "1e39,1")
    one_error_line(run(csv_yaml(huge)), 2,
                   f"{huge}:5: column 'a' holds 1e+39, beyond float32's range")
    word = replace_line(table(tmp_path / "w.csv"), 6, "one,1")
    one_error_line(run(csv_yaml(word)), 2, f"{word}:6: column 'a' mixes numbers and text")


def multiline(path: Path, later: str) -> Path:
    """A table whose second row has a quoted cell over three lines, and a blank line (pandas
    skips it) before row 10, which is ``later``: on line 2 + 10 + 2 + 1 = 15 of the file."""
    rows = [f"{row * 0.1:.1f},note {row},{row % 2}" for row in range(40)]
    rows[1] = '0.1,"first line\nsecond line\nthird line",1'
    rows[10] = later
    rows.insert(10, "")
    path.write_text("a,note,label\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("later,fragment", [
    ("oops,x,1", ":15: column 'a' mixes numbers and text (got 'oops')"),
    (",x,1", ":15: column 'a' has a missing value"),
    ("1.0,x,1,extra", ":15: not a readable CSV table (line 15 has 4 fields, the header 3)"),
], ids=["a word", "a blank", "too many fields"])
def test_lines_after_a_quoted_multi_line_cell_are_the_files_own(tmp_path, later, fragment):
    path = multiline(tmp_path / "t.csv", later)
    assert path.read_text().splitlines()[14] == later          # line 15, counting from 1
    one_error_line(run(csv_yaml(path, extra=", categorical: [note]")), 2, f"{path}{fragment}")


# ----------------------------------------------------------------------------- IDX

def mnist_yaml(folder: Path) -> Path:
    config = folder.parent / "m.yaml"
    config.write_text(f"name: m\ndataset: {{name: mnist, root: '{folder}'}}\n"
                      "model: {name: mlp, hidden: [4]}\ntrain: {epochs: 1, threads: 1}\n")
    return config


def test_idx_labels_that_do_not_fit_their_images_name_the_labels_file(tmp_path):
    folder = tmp_path / "mnist"
    mnist_folder(folder)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.arange(29) % 10)
    one_error_line(run(mnist_yaml(folder)), 2,
                   f"dataset.root: {folder / 't10k-labels-idx1-ubyte.gz'}: test images",
                   "(29,) do not match", "t10k-images-idx3-ubyte.gz")
    labels = np.arange(30) % 10
    labels[7] = 12
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.arange(30) % 10)
    write_idx(folder / "train-labels-idx1-ubyte.gz", labels)
    one_error_line(run(mnist_yaml(folder)), 2,
                   f"{folder / 'train-labels-idx1-ubyte.gz'}: the train labels run from 0 to 12",
                   "expected classes 0 to 9 (label number 7, counting from 0, is 12)")


# ----------------------------------------------------------------------------- images

def png_declaring(path: Path, side: int) -> None:
    """A PNG of a hundred bytes whose header declares side × side RGB pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def image_folder(root: Path) -> Path:
    from PIL import Image

    for name in ("cats", "dogs"):
        (root / name).mkdir(parents=True)
        for index in range(6):
            Image.fromarray(np.full((8, 8, 3), 40 * index, np.uint8)).save(
                root / name / f"{index}.png")
    config = root.parent / "i.yaml"
    config.write_text(f"name: i\ndataset: {{name: image_folder, path: '{root}', size: 8}}\n"
                      "model: {name: mlp, hidden: [4]}\ntrain: {epochs: 1, threads: 1}\n")
    return config


@pytest.mark.parametrize("side", [30_000, 10_000], ids=["bomb error", "bomb warning"])
def test_a_decompression_bomb_is_refused_without_decoding_it(tmp_path, side):
    """30000² is past Pillow's error threshold; 10000² (100 MP, 300 MB decoded) only past its
    warning threshold, which is refused too."""
    import resource

    config = image_folder(tmp_path / "images")
    png_declaring(tmp_path / "images" / "cats" / "bomb.png", side)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    one_error_line(run(config), 2,
                   f"dataset.path: cannot read image {tmp_path / 'images' / 'cats' / 'bomb.png'}",
                   f"Image size ({side * side} pixels) exceeds limit",
                   "expected at most 89,478,485 pixels")
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before   # kB on Linux
    assert grown < 200_000, f"peak memory grew {grown} kB"


def test_an_image_that_links_to_itself_is_named(tmp_path):
    config = image_folder(tmp_path / "images")
    loop = tmp_path / "images" / "dogs" / "loop.png"
    loop.symlink_to(loop.name)
    one_error_line(run(config), 2, f"dataset.path: cannot read image {loop} (Too many levels "
                   "of symbolic links)")


# ----------------------------------------------------------------------------- plugins

PLUGIN = '''
import numpy as np

import regbench

rng = np.random.default_rng(0)
X = rng.normal(size=(60, 3))
y = (X[:, 0] > 0).astype(int)
LOADERS = {
    "none": lambda: None,
    "short_y": lambda: (X, y[:-1]),
    "names": lambda: (X, np.where(y == 1, "cat", "dog")),
    "fractional": lambda: (X, y + 0.5),
    "negative": lambda: (X, y - 1),
    "object_x": lambda: (np.array([[1.0, "a", 2.0]] * 60, dtype=object), y),
    "text_x": lambda: (X.astype(str), y),
    "nan_x": lambda: (np.where(np.arange(180).reshape(60, 3) == 7, np.nan, X), y),
    "inf_test": lambda: {"train": (X, y), "test": (np.full((5, 3), np.inf), y[:5])},
}
for key, loader in LOADERS.items():
    regbench.register_dataset(f"hostile_{key}", task="classification")(loader)
'''


@pytest.fixture(scope="module")
def plugin(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("plugin") / "hostile_plugin.py"
    path.write_text(PLUGIN)
    return path


def plugin_yaml(folder: Path, key: str) -> Path:
    config = folder / "p.yaml"
    config.write_text(f"name: p\ndataset: {{name: hostile_{key}}}\n"
                      "model: {name: mlp, hidden: [4]}\ntrain: {epochs: 1, threads: 1}\n")
    return config


@pytest.mark.parametrize("key,fragments", [
    ("none", ["dataset hostile_none: the loader returned None; expected (X, y)"]),
    ("short_y", ["dataset hostile_short_y: the train inputs have 60 rows but 59 labels",
                 "one label per row"]),
    ("fractional", ["dataset hostile_fractional: the train labels hold 1.5 (row 0)",
                    "class labels 0, 1, 2", "task='regression'"]),
    ("negative", ["dataset hostile_negative: the train labels hold -1", "class labels 0, 1, 2"]),
    ("object_x", ["dataset hostile_object_x: the train inputs hold 'a' (row 0, column 1, dtype "
                  "object); expected numbers"]),
    ("text_x", ["dataset hostile_text_x: the train inputs hold '", "dtype <U",
                "expected numbers"]),
    ("nan_x", ["dataset hostile_nan_x: the train inputs hold nan (row 2, column 1)",
               "expected finite numbers"]),
    ("inf_test", ["dataset hostile_inf_test: the test inputs hold inf (row 0, column 0)"]),
])
def test_a_plugin_loader_returning_the_wrong_thing_is_one_line(tmp_path, plugin, key,
                                                               fragments):
    result = run(plugin_yaml(tmp_path, key), "--plugin", str(plugin))
    one_error_line(result, 2, *fragments)


def test_class_names_from_a_plugin_are_numbered_like_the_csv_loader_numbers_them(tmp_path,
                                                                                 plugin):
    """Decision: string labels are friendlier mapped than refused: sorted, as csv does."""
    result = run(plugin_yaml(tmp_path, "names"), "--plugin", str(plugin))
    assert result.exit_code == 0, result.output
    forget_loaded()
    data = prepare({"name": "hostile_names", "val_fraction": 0.2, "test_fraction": 0.2})
    assert data.meta["class_names"] == ["cat", "dog"] and data.output_dim == 2
    raw = DATASETS.get("hostile_names").load({"name": "hostile_names"})
    numbered = checked("hostile_names", raw)
    np.testing.assert_array_equal(numbered.y_train, np.where(raw.y_train == "cat", 0, 1))

"""Dataset loaders on real files (written by the tests) and the shared preparation."""
from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest

from regbench.data import prepare
from regbench.data.images import read_idx
from regbench.errors import DataError

COMMON = {"root": "data", "download": False, "val_fraction": 0.1, "test_fraction": 0.2,
          "train_subset": None, "label_noise": 0.0, "split_seed": 0,
          "standardize_target": False}


def config(name: str, **extra) -> dict:
    return {**COMMON, "name": name, **extra}


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


def write_mnist_folder(folder: Path, n_train=120, n_test=40, compress=True, seed=0) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 50, (n, 28, 28))
        images[np.arange(n), labels, :] = 255  # a learnable pattern: a bright row per class
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images, compress)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, compress)


@pytest.mark.parametrize("name,layout", [("mnist", "flat"), ("fashion_mnist", "flat"),
                                         ("mnist", "torchvision"), ("fashion_mnist", "plain")])
def test_idx_folders_load(tmp_path, name, layout):
    raw_name = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}[name]
    folder = tmp_path / raw_name / "raw" if layout == "torchvision" else tmp_path
    write_mnist_folder(folder, compress=layout != "plain")
    bundle = prepare(config(name, root=str(tmp_path)))
    assert bundle.input_shape == (1, 28, 28)
    assert bundle.output_dim == 10
    assert bundle.x_test.shape[0] == 40  # the official test split is used, not a split
    assert bundle.x_train.shape[0] + bundle.x_val.shape[0] == 120
    # normalised with training statistics
    assert abs(bundle.x_train.mean().item()) < 1e-4
    assert bundle.x_train.std().item() == pytest.approx(1.0, abs=0.01)


DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(),
                    reason="Debian's dataset-fashion-mnist is not installed (.ci/run installs it)")
def test_debian_fashion_mnist_folder_loads():
    bundle = prepare(config("fashion_mnist", root=str(DEBIAN_FASHION), train_subset=500))
    assert bundle.x_train.shape == (500, 1, 28, 28)
    assert bundle.x_test.shape[0] == 10_000
    assert bundle.x_val.shape[0] == 6_000


def test_missing_idx_files_say_where_to_put_them(tmp_path):
    with pytest.raises(DataError) as error:
        prepare(config("mnist", root=str(tmp_path / "nowhere")))
    message = str(error.value)
    assert "not found" in message and "train-images-idx3-ubyte.gz" in message
    assert str(tmp_path / "nowhere") in message and "download: true" in message


def test_truncated_idx_file_is_reported(tmp_path):
    write_mnist_folder(tmp_path, compress=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_idx(path)
    with pytest.raises(DataError, match="truncated or corrupt"):
        prepare(config("mnist", root=str(tmp_path)))


def write_cifar(folder: Path, per_batch=20) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 b"labels": list(np.arange(per_batch) % 10)}
        with open(folder / name, "wb") as handle:
            pickle.dump(batch, handle)


def test_cifar10_batches_load(tmp_path):
    write_cifar(tmp_path / "cifar-10-batches-py")
    bundle = prepare(config("cifar10", root=str(tmp_path)))
    assert bundle.input_shape == (3, 32, 32)
    assert bundle.x_test.shape[0] == 20
    assert bundle.x_train.shape[0] + bundle.x_val.shape[0] == 100


class Boom:
    def __reduce__(self):
        return (Path.touch, (Path("/tmp/regbench-pwned"),))


def test_cifar_loader_never_unpickles_code(tmp_path):
    write_cifar(tmp_path / "cifar-10-batches-py")
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as handle:
        pickle.dump({b"data": Boom(), b"labels": [1]}, handle)
    Path("/tmp/regbench-pwned").unlink(missing_ok=True)
    with pytest.raises(DataError, match="not a readable CIFAR-10 batch"):
        prepare(config("cifar10", root=str(tmp_path)))
    assert not Path("/tmp/regbench-pwned").exists()


def test_bundled_tables_and_split_sizes():
    digits = prepare(config("digits"))
    assert digits.input_shape == (1, 8, 8)
    total = digits.x_train.shape[0] + digits.x_val.shape[0] + digits.x_test.shape[0]
    assert total == 1797
    assert digits.x_test.shape[0] == round(1797 * 0.2)
    cancer = prepare(config("breast_cancer"))
    assert cancer.input_shape == (30,) and cancer.output_dim == 2
    diabetes = prepare(config("diabetes"))
    assert diabetes.task == "regression" and diabetes.y_train.shape[1] == 1


def test_splits_are_seeded_and_stratified():
    a, b = prepare(config("digits")), prepare(config("digits"))
    assert (a.x_val == b.x_val).all()
    c = prepare(config("digits", split_seed=1))
    assert not (a.x_val.shape == c.x_val.shape and (a.x_val == c.x_val).all())
    val_counts = np.bincount(a.y_val.numpy(), minlength=10)
    train_counts = np.bincount(a.y_train.numpy(), minlength=10)
    # stratified: every class's share of val matches its share of train within one sample
    expected = train_counts / train_counts.sum() * val_counts.sum()
    assert np.abs(val_counts - expected).max() <= 1.5


def test_label_noise_flips_exactly_the_asked_fraction_of_training_labels():
    clean = prepare(config("digits"))
    noisy = prepare(config("digits", label_noise=0.3))
    changed = (clean.y_train != noisy.y_train).float().mean().item()
    assert changed == pytest.approx(0.3, abs=0.04)
    assert (clean.y_val == noisy.y_val).all() and (clean.y_test == noisy.y_test).all()


def test_uniform_label_noise_is_zhang_et_als_random_labels():
    """label_noise_mode: uniform replaces a chosen label by a class drawn from all K: a
    fraction p·(K − 1)/K ends up wrong, and p = 1 leaves labels independent of the digits."""
    clean = prepare(config("digits"))
    half = prepare(config("digits", label_noise=0.5, label_noise_mode="uniform"))
    wrong = (clean.y_train != half.y_train).float().mean().item()
    assert wrong == pytest.approx(0.5 * 9 / 10, abs=0.04)
    random = prepare(config("digits", label_noise=1.0, label_noise_mode="uniform"))
    agreement = (clean.y_train == random.y_train).float().mean().item()
    assert agreement == pytest.approx(0.1, abs=0.03)
    counts = np.bincount(random.y_train.numpy(), minlength=10)
    assert counts.min() > 0.6 * counts.mean()                       # uniform over the classes
    assert (clean.y_test == random.y_test).all()                     # test labels stay true


def test_label_noise_one_needs_the_uniform_mode(tmp_path):
    from typer.testing import CliRunner

    from regbench.cli import app

    path = tmp_path / "c.yaml"
    path.write_text("name: c\ndataset: {name: digits, label_noise: 1.0}\n")
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2 and "label_noise_mode: uniform" in result.output
    path.write_text("name: c\ndataset: {name: digits, label_noise: 1.0, "
                    "label_noise_mode: uniform}\n")
    assert CliRunner().invoke(app, ["validate", str(path)]).exit_code == 0


def test_synthetic_datasets_are_seeded():
    a = prepare(config("synthetic_classification", n_samples=200, n_features=10, n_classes=3,
                       n_informative=None, noise=0.1, class_sep=1.0, seed=0))
    b = prepare(config("synthetic_classification", n_samples=200, n_features=10, n_classes=3,
                       n_informative=None, noise=0.1, class_sep=1.0, seed=0))
    assert (a.x_train == b.x_train).all() and a.output_dim == 3
    r = prepare(config("synthetic_regression", n_samples=100, n_features=4, n_informative=None,
                       noise=1.0, seed=0))
    assert r.task == "regression" and r.input_shape == (4,)


def write_csv(path: Path, rows: int = 60, seed: int = 0, target_values=None) -> Path:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=rows), rng.normal(size=rows)
    label = target_values if target_values is not None else np.where(a + b > 0, "yes", "no")
    lines = ["a,b,label"] + [f"{x:.4f},{y:.4f},{t}" for x, y, t in zip(a, b, label)]
    path.write_text("\n".join(lines) + "\n")
    return path


def csv_config(path, **extra):
    return config("csv", **{"path": str(path), "target": "label", "task": "classification",
                            "val_path": None, "test_path": None, **extra})


def test_csv_with_own_validation_and_test_files(tmp_path):
    train = write_csv(tmp_path / "train.csv", 80, 0)
    val = write_csv(tmp_path / "val.csv", 30, 1)
    test = write_csv(tmp_path / "test.csv", 25, 2)
    bundle = prepare(csv_config(train, val_path=str(val), test_path=str(test)))
    assert (bundle.x_train.shape[0], bundle.x_val.shape[0], bundle.x_test.shape[0]) == (80, 30, 25)
    assert bundle.output_dim == 2
    # standardised with train statistics only
    assert abs(bundle.x_train.mean().item()) < 1e-5
    split = prepare(csv_config(train))
    assert split.x_train.shape[0] + split.x_val.shape[0] + split.x_test.shape[0] == 80


def test_csv_errors_name_the_column(tmp_path):
    path = write_csv(tmp_path / "t.csv")
    with pytest.raises(DataError, match="column 'target' not in"):
        prepare({**csv_config(path), "target": "target"})
    bad = tmp_path / "bad.csv"
    bad.write_text(path.read_text().splitlines()[0] + "\nred,1.0,yes\n" +
                   "\n".join(path.read_text().splitlines()[1:]) + "\n")
    with pytest.raises(DataError, match="column 'a' mixes numbers and text"):
        prepare(csv_config(bad))
    missing = tmp_path / "missing.csv"
    lines = path.read_text().splitlines()
    lines[3] = "," + lines[3].split(",", 1)[1]
    missing.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"missing.csv:4: column 'a' has a missing value"):
        prepare(csv_config(missing))
    single = write_csv(tmp_path / "single.csv", 40, 0, target_values=["yes"] * 40)
    with pytest.raises(DataError, match="single class"):
        prepare(csv_config(single))


def test_a_failed_download_is_one_line_and_leaves_no_folder(tmp_path, monkeypatch):
    import torchvision

    # a mirror nobody listens on (the discard port of this machine): the download fails at once
    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])
    root = tmp_path / "new" / "mnist"
    with pytest.raises(DataError) as error:
        prepare(config("mnist", root=str(root), download=True))
    message = str(error.value)
    assert message.startswith(f"dataset.download: could not download MNIST into {root}")
    assert "\n" not in message and "put the four IDX files" in message
    assert not (tmp_path / "new").exists()

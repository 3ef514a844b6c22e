"""Image datasets: MNIST, Fashion-MNIST (IDX files) and CIFAR-10 (python pickles).

Files are looked up under ``root`` (a folder that holds the files itself, as Debian's
``dataset-fashion-mnist`` installs them, or torchvision's ``root/<Name>/raw`` layout) and are
downloaded through torchvision only when ``download: true`` and they are missing.
"""
from __future__ import annotations

import contextlib
import gzip
import pickle
import shutil
from pathlib import Path
from typing import Any, Optional

import numpy as np

from regbench.data.base import DataSpec, RawData, register_dataset
from regbench.errors import DataError

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (optionally gzipped) into a uint8 array, checking its header."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"dataset.root: {path}: cannot read IDX file ({exc})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"dataset.root: {path}: not an IDX file of unsigned bytes (bad magic "
                        "number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim < 1 or len(data) < header:
        raise DataError(f"dataset.root: {path}: truncated IDX header")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        raise DataError(f"dataset.root: {path}: IDX file holds {len(data) - header} bytes of "
                        f"data, its header promises {expected} (truncated or corrupt)")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _torchvision_dataset(name: str):
    import torchvision

    return getattr(torchvision.datasets, name)


@contextlib.contextmanager
def _download(root: Path, pretty: str, advice: str):
    """Turn a failed download into one line, and remove the folders it created."""
    created = [p for p in [root, *root.parents] if not p.exists()]
    try:
        yield
    except Exception as exc:  # network errors come in many types
        for folder in created:
            shutil.rmtree(folder, ignore_errors=True)
        cause = (str(exc).strip().splitlines() or [""])[0][:200]
        raise DataError(f"dataset.download: could not download {pretty} into {root} "
                        f"({type(exc).__name__}: {cause}); {advice}") from None


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _idx_folder(root: Path, torchvision_name: str) -> Path | None:
    for folder in (root, root / torchvision_name / "raw", root / torchvision_name):
        if all(_find(folder, stem) for stem in IDX_FILES.values()):
            return folder
    return None


def _idx_missing(root: Path, torchvision_name: str, pretty: str) -> DataError:
    return DataError(f"dataset.root: {pretty} files not found in {root} (nor in "
                     f"{root / torchvision_name / 'raw'}); put the four IDX files "
                     f"({', '.join(s + '.gz' for s in IDX_FILES.values())}) there, or set "
                     "dataset.download: true where there is network")


def _idx_pending(config: dict[str, Any], torchvision_name: str, pretty: str) -> Optional[str]:
    root = Path(config["root"]).expanduser()
    if config.get("download") and _idx_folder(root, torchvision_name) is None:
        return f"the {pretty} files are not in {root}"
    return None


def _cifar_pending(config: dict[str, Any]) -> Optional[str]:
    folder, files = _cifar_files(Path(config["root"]).expanduser())
    if config.get("download") and not all(f.is_file() for f in files):
        return f"the CIFAR-10 batches are not in {folder}"
    return None


def _check_idx(config: dict[str, Any], torchvision_name: str, pretty: str) -> None:
    """Before any run: the four files are there (unless they are to be downloaded)."""
    root = Path(config["root"]).expanduser()
    if not config.get("download") and _idx_folder(root, torchvision_name) is None:
        raise _idx_missing(root, torchvision_name, pretty)


def _load_idx_dataset(root: str, download: bool, torchvision_name: str, pretty: str) -> RawData:
    root = Path(root).expanduser()
    folder = _idx_folder(root, torchvision_name)
    if folder is None and download:
        dataset_class = _torchvision_dataset(torchvision_name)
        with _download(root, pretty, f"without network, put the four IDX files "
                       f"({', '.join(s + '.gz' for s in IDX_FILES.values())}) in {root}"):
            dataset_class(str(root), train=True, download=True)
            dataset_class(str(root), train=False, download=True)
        folder = _idx_folder(root, torchvision_name)
    if folder is None:
        raise _idx_missing(root, torchvision_name, pretty)
    files = {key: _find(folder, stem) for key, stem in IDX_FILES.items()}
    arrays = {key: read_idx(path) for key, path in files.items()}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        images, labels = files[f"x_{split}"], files[f"y_{split}"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"dataset.root: {labels}: {split} images {x.shape} and labels "
                            f"{y.shape} do not match (expected N×H×W images in {images.name} "
                            f"and N labels in {labels.name})")
        if y.size and y.max() >= 10:
            item = int(np.argmax(y >= 10))
            raise DataError(f"dataset.root: {labels}: the {split} labels run from {y.min()} to "
                            f"{y.max()}; expected classes 0 to 9 (label number {item}, counting "
                            f"from 0, is {y[item]})")
    return RawData(x_train=arrays["x_train"][:, None].astype(np.float32) / 255.0,
                   y_train=arrays["y_train"].astype(np.int64),
                   x_test=arrays["x_test"][:, None].astype(np.float32) / 255.0,
                   y_test=arrays["y_test"].astype(np.int64),
                   task="classification", num_classes=10)


@register_dataset("mnist", summary="MNIST handwritten digits (28×28, 10 classes) from IDX files "
                  "under root; torchvision download when download: true",
                  spec=DataSpec("classification", (1, 28, 28), 10, mirror_changes_class=True),
                  check=lambda c: _check_idx(c, "MNIST", "MNIST"),
                  download_pending=lambda c: _idx_pending(c, "MNIST", "MNIST"))
def load_mnist(root: str, download: bool) -> RawData:
    return _load_idx_dataset(root, download, "MNIST", "MNIST")


@register_dataset("fashion_mnist", summary="Fashion-MNIST (28×28, 10 classes) from IDX files "
                  "under root, e.g. /usr/share/datasets/fashion-mnist",
                  spec=DataSpec("classification", (1, 28, 28), 10),
                  check=lambda c: _check_idx(c, "FashionMNIST", "Fashion-MNIST"),
                  download_pending=lambda c: _idx_pending(c, "FashionMNIST", "Fashion-MNIST"))
def load_fashion_mnist(root: str, download: bool) -> RawData:
    return _load_idx_dataset(root, download, "FashionMNIST", "Fashion-MNIST")


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and numpy arrays: a CIFAR batch, never code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar")}

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as handle:
            batch = _ArrayUnpickler(handle, encoding="bytes").load()
        data = np.asarray(batch[b"data"] if b"data" in batch else batch["data"], dtype=np.uint8)
        labels = batch.get(b"labels", batch.get("labels"))
        images = data.reshape(-1, 3, 32, 32)
        labels = np.asarray(labels, dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, AttributeError,
            OSError) as exc:
        raise DataError(f"dataset.root: {path}: not a readable CIFAR-10 batch ({exc})") from None
    if len(images) != len(labels):
        raise DataError(f"dataset.root: {path}: {len(images)} images but {len(labels)} labels")
    outside = (labels < 0) | (labels >= 10)
    if outside.any():
        raise DataError(f"dataset.root: {path}: label number {int(outside.argmax())}, counting "
                        f"from 0, is {labels[outside][0]}; expected CIFAR-10's classes 0 to 9")
    return images, labels


def _cifar_files(root: Path) -> tuple[Path, list[Path]]:
    folder = root / CIFAR_FOLDER if (root / CIFAR_FOLDER).is_dir() else root
    return folder, [folder / name for name in CIFAR_TRAIN + ["test_batch"]]


def _refuse_missing_cifar(folder: Path, files: list[Path]) -> None:
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise DataError(f"dataset.root: CIFAR-10 files missing in {folder}: {', '.join(missing)}; "
                        "put the python version's batches there, or set dataset.download: true "
                        "where there is network")


def _check_cifar(config: dict[str, Any]) -> None:
    """Before any run: the six batches are there (unless they are to be downloaded)."""
    if not config.get("download"):
        _refuse_missing_cifar(*_cifar_files(Path(config["root"]).expanduser()))


@register_dataset("cifar10", summary="CIFAR-10 (32×32 colour, 10 classes) from the python "
                  "batches under root/cifar-10-batches-py; torchvision download when download: "
                  "true", spec=DataSpec("classification", (3, 32, 32), 10), check=_check_cifar,
                  download_pending=_cifar_pending)
def load_cifar10(root: str, download: bool) -> RawData:
    root = Path(root).expanduser()
    folder, files = _cifar_files(root)
    if not all(f.is_file() for f in files) and download:
        with _download(root, "CIFAR-10", f"without network, put the python version's batches "
                       f"in {root / CIFAR_FOLDER}"):
            _torchvision_dataset("CIFAR10")(str(root), train=True, download=True)
        folder = root / CIFAR_FOLDER
        files = [folder / name for name in CIFAR_TRAIN + ["test_batch"]]
    _refuse_missing_cifar(folder, files)
    parts = [_read_cifar_batch(f) for f in files]
    x_train = np.concatenate([p[0] for p in parts[:-1]]).astype(np.float32) / 255.0
    y_train = np.concatenate([p[1] for p in parts[:-1]])
    x_test, y_test = parts[-1]
    return RawData(x_train=x_train, y_train=y_train, x_test=x_test.astype(np.float32) / 255.0,
                   y_test=y_test, task="classification", num_classes=10)

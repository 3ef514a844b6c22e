"""Your own images: ``image_folder``, torchvision's ``ImageFolder`` layout (one sub-folder per
class) decoded once into a uint8 cache next to the data.

The images are decoded with Pillow, converted to RGB (or grayscale) and resized to
``size``×``size``; the result is stored as ``.regbench-cache/<key>.npz`` inside the folder,
where the key hashes every file's relative path, size and modification time with the decoding
settings: the next run loads the cache, and any added, removed or changed file (or another
size) makes a new one, which replaces the old. A folder that cannot be written is decoded every time, with the same
result. The arrays then go through the shared preparation like every image set (held on the
device, so augmentation stays vectorised).
"""
from __future__ import annotations

import hashlib
import os
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any, Optional

import numpy as np
from pydantic import Field

from regbench.config.schema import StrictModel
from regbench.data.base import DataSpec, RawData, register_dataset
from regbench.errors import DataError

CACHE_DIR = ".regbench-cache"
EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class ImageFolderParams(StrictModel):
    path: str                                   # folder with one sub-folder of images per class
    test_path: Optional[str] = None             # the same layout for a test split (else drawn from path by test_fraction)
    size: int = Field(32, ge=4, le=512)         # images are resized to size×size
    grayscale: bool = False                     # one channel instead of RGB


def _classes(folder: Path, key: str) -> list[str]:
    if not folder.is_dir():
        raise DataError(f"dataset.{key}: folder not found: {folder.resolve()} (expected one "
                        "sub-folder of images per class)")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name != CACHE_DIR)
    if len(classes) < 2:
        raise DataError(f"dataset.{key}: {folder.resolve()} holds {len(classes)} class "
                        "folder(s); classification needs at least two sub-folders of images")
    return classes


def _files(folder: Path, classes: list[str]) -> list[tuple[Path, int]]:
    files = []
    for label, name in enumerate(classes):
        found = sorted(p for p in (folder / name).rglob("*") if p.suffix.lower() in EXTENSIONS)
        if not found:
            raise DataError(f"dataset: class folder {(folder / name).resolve()} holds no "
                            f"images ({', '.join(EXTENSIONS)})")
        files += [(p, label) for p in found]
    return files


OWN_CACHE = re.compile(r"[0-9a-f]{20}\.npz")    # the names _cache_key gives


def _own_folder(folder: Path) -> bool:
    """The cache folder is regbench's to use: absent (made here) or a real folder, not a link
    (a link elsewhere would have regbench write and delete files there)."""
    return not folder.is_symlink() and (not folder.exists() or folder.is_dir())


def _unreadable(path: Path, key: str, reason: str, advice: str = "") -> DataError:
    # abspath, not resolve(): resolving a link to itself raises instead of naming it
    return DataError(f"dataset.{key}: cannot read image {os.path.abspath(path)} "
                     f"({reason.strip().rstrip('.')}){advice}")


def _cache_key(folder: Path, files: list[tuple[Path, int]], size: int, mode: str,
               key: str) -> str:
    digest = hashlib.sha256(f"{size}:{mode}".encode())
    for path, label in files:
        try:
            stat = path.stat()
        except OSError as exc:                     # a link to itself (ELOOP), or to nothing
            raise _unreadable(path, key, exc.strerror or str(exc)) from None
        digest.update(f"{path.relative_to(folder)}:{label}:{stat.st_size}:"
                      f"{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def _decode(files: list[tuple[Path, int]], size: int, mode: str,
            key: str) -> tuple[np.ndarray, np.ndarray]:
    """Each image decoded and resized; one that declares more pixels than Pillow's
    decompression-bomb limit is refused before decoding (Pillow only warns up to twice the
    limit, yet decoding such a file is the memory blow-up the limit is there to stop)."""
    from PIL import Image  # deferred: only image folders need Pillow

    images = np.empty((len(files), 1 if mode == "L" else 3, size, size), dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        for index, (path, _) in enumerate(files):
            try:
                with Image.open(path) as image:
                    pixels = np.asarray(image.convert(mode).resize((size, size),
                                                                   Image.BILINEAR))
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
                raise _unreadable(path, key, str(exc), f"; expected at most "
                                  f"{Image.MAX_IMAGE_PIXELS:,} pixels: shrink the image or "
                                  "remove it") from None
            except (OSError, ValueError, SyntaxError, EOFError) as exc:  # Pillow's ways to
                raise _unreadable(path, key, str(exc)) from None          # say "damaged"
            images[index] = pixels[None] if mode == "L" else pixels.transpose(2, 0, 1)
    return images, np.array([label for _, label in files], dtype=np.int64)


def load_folder(folder: Path, key: str, size: int, grayscale: bool,
                classes: Optional[list[str]] = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """uint8 images (N, C, size, size), labels and class names, from the cache when current."""
    classes = classes or _classes(folder, key)
    missing = [name for name in classes if not (folder / name).is_dir()]
    if missing:
        raise DataError(f"dataset.{key}: {folder.resolve()} lacks the class folder(s) "
                        f"{', '.join(missing)} of dataset.path")
    mode = "L" if grayscale else "RGB"
    files = _files(folder, classes)
    cache = folder / CACHE_DIR / f"{_cache_key(folder, files, size, mode, key)}.npz"
    expected = (len(files), 1 if mode == "L" else 3, size, size)
    if not _own_folder(cache.parent):     # a link or a file there is not ours: never read,
        return (*_decode(files, size, mode, key), classes)   # write or clean up through it
    if cache.is_file() and not cache.is_symlink():
        try:
            with np.load(cache, allow_pickle=False) as stored:
                x, y = stored["x"], stored["y"]
            labels = np.array([label for _, label in files], dtype=np.int64)
            if x.shape == expected and x.dtype == np.uint8 and np.array_equal(y, labels):
                return x, y, classes
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass                                   # damaged or stale: decode again
    x, y = _decode(files, size, mode, key)
    partial = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
    try:
        cache.parent.mkdir(exist_ok=True)
        with open(partial, "wb") as handle:
            np.savez(handle, x=x, y=y)
        os.replace(partial, cache)
        for old in cache.parent.glob("*.npz"):    # caches of earlier contents or sizes: only
            if old != cache and OWN_CACHE.fullmatch(old.name) and not old.is_symlink():
                old.unlink(missing_ok=True)       # files named as regbench names them
    except OSError:                                # a read-only folder or a full disk: no
        partial.unlink(missing_ok=True)            # cache, the same arrays
    return x, y, classes


def _spec(config: dict[str, Any]) -> DataSpec:
    channels = 1 if config.get("grayscale") else 3
    size = int(config.get("size", 32))
    folder = Path(config["path"])
    classes = len(_classes(folder, "path")) if folder.is_dir() else None
    return DataSpec("classification", (channels, size, size), classes)


def _check(config: dict[str, Any]) -> None:
    _classes(Path(config["path"]), "path")
    if config.get("test_path"):
        _classes(Path(config["test_path"]), "test_path")


@register_dataset("image_folder", Params=ImageFolderParams, spec=_spec, check=_check,
                  summary="your own images: path/<class>/*.png|jpg (torchvision ImageFolder "
                  "layout), resized to size×size, decoded once into a cache next to the data")
def load_image_folder(path: str, test_path: Optional[str], size: int,
                      grayscale: bool) -> RawData:
    x, y, classes = load_folder(Path(path), "path", size, grayscale)
    x_test = y_test = None
    if test_path:
        x_test, y_test, _ = load_folder(Path(test_path), "test_path", size, grayscale, classes)
    scale = np.float32(1 / 255)
    return RawData(x_train=x.astype(np.float32) * scale, y_train=y, task="classification",
                   x_test=None if x_test is None else x_test.astype(np.float32) * scale,
                   y_test=y_test, num_classes=len(classes), class_names=classes)

"""Datasets: the registry and the preparation every dataset goes through (``base``), the
bundled and user tables (``tabular``), the image sets (``images``) and a user's image
folders (``folders``). Importing the package
registers them all."""
# isort: off
# registers them, in the order `regbench list datasets` shows them
from regbench.data import tabular, images, folders  # noqa: F401
# isort: on
from regbench.data.base import (
    DATASETS,
    DataBundle,
    DatasetEntry,
    DataSpec,
    RawData,
    data_spec,
    forget_loaded,
    load_bundle,
    prepare,
    register_dataset,
)

__all__ = ["DATASETS", "DataBundle", "DataSpec", "DatasetEntry", "RawData", "data_spec",
           "forget_loaded", "load_bundle", "prepare", "register_dataset"]

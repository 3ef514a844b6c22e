"""Datasets: the registry and the preparation every dataset goes through (``base``), the
bundled and user tables (``tabular``), the image sets (``images``) and a user's image
folders (``folders``). Importing the package
registers them all."""
from regbench.data import tabular, images, folders  # noqa: F401  (registers them; this order is the list's)
from regbench.data.base import (DATASETS, DataBundle, DataSpec, DatasetEntry, RawData, data_spec,
                                dataset, forget_loaded, load_bundle, prepare)

__all__ = ["DATASETS", "DataBundle", "DataSpec", "DatasetEntry", "RawData", "data_spec",
           "dataset", "forget_loaded", "load_bundle", "prepare"]

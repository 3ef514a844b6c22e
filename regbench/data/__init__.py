"""Datasets: the registry and the preparation every dataset goes through (``base``), the
bundled and user tables (``tabular``) and the image sets (``images``). Importing the package
registers them all."""
from regbench.data import tabular, images  # noqa: F401  (registers them; this order is the list's)
from regbench.data.base import (DATASETS, DataBundle, DataSpec, DatasetEntry, RawData, data_spec,
                                dataset, load_bundle, prepare)

__all__ = ["DATASETS", "DataBundle", "DataSpec", "DatasetEntry", "RawData", "data_spec",
           "dataset", "load_bundle", "prepare"]

"""Command-line sweep grids (`--param key.path=v1,v2`) and the `--smoke` budget."""
from __future__ import annotations

import copy
from typing import Iterable

from regbench.config import LoadedConfig, resolve_experiment, split_assignment
from regbench.config.yaml_io import parse_value
from regbench.errors import ConfigError

SMOKE_EPOCHS = 1          # epochs per run in a smoke run
SMOKE_SAMPLES = 256       # training samples kept in a smoke run


def parse_param(text: str) -> tuple[str, list]:
    """``key.path=v1,v2,...`` (or a YAML list ``[v1, v2]``) -> (path, values)."""
    key, value_text = split_assignment(text, "--param")
    source = f"--param {key}"
    stripped = value_text.strip()
    if stripped.startswith("["):
        values = parse_value(stripped, source)
    else:
        values = [parse_value(part.strip(), source) for part in stripped.split(",")]
    if not isinstance(values, list) or not values or any(v is None for v in values):
        raise ConfigError(f"expected one or more comma-separated values (got {value_text!r})",
                          source=source)
    return key, values


def apply_params(loaded: LoadedConfig, params: Iterable[str]) -> LoadedConfig:
    """Add command-line sweep keys to (or replace them in) the file's ``sweep:``."""
    raw = copy.deepcopy(loaded.raw)
    sweep = dict(raw.get("sweep") or {})
    positions = dict(loaded.positions)
    for text in params:
        key, values = parse_param(text)
        sweep[key] = values
        positions[("sweep", key)] = f"--param {key}"
    raw["sweep"] = sweep
    config, _ = resolve_experiment(raw, positions, loaded.source)
    return LoadedConfig(raw=raw, positions=positions, source=loaded.source, config=config,
                        warnings=list(loaded.warnings))


def shrink_for_smoke(loaded: LoadedConfig) -> LoadedConfig:
    """One epoch, a few hundred samples, one seed, the first value of each sweep list."""
    raw = copy.deepcopy(loaded.raw)
    raw.setdefault("train", {})["epochs"] = SMOKE_EPOCHS
    dataset = raw.setdefault("dataset", {})
    subset = dataset.get("train_subset")
    dataset["train_subset"] = min(subset, SMOKE_SAMPLES) if isinstance(subset, int) else SMOKE_SAMPLES
    seeds = raw.get("seeds") or [0]
    raw["seeds"] = seeds[:1] if isinstance(seeds, list) else seeds
    for recipe in (raw.get("recipes") or {}).values():
        if isinstance(recipe, dict) and isinstance(recipe.get("train"), dict):
            recipe["train"]["epochs"] = SMOKE_EPOCHS
    if isinstance(raw.get("sweep"), dict):
        raw["sweep"] = {k: v[:1] if isinstance(v, list) else v for k, v in raw["sweep"].items()}
    config, _ = resolve_experiment(raw, loaded.positions, loaded.source)
    return LoadedConfig(raw=raw, positions=loaded.positions, source=loaded.source, config=config,
                        warnings=list(loaded.warnings) + ["smoke run: 1 epoch, at most "
                                                          f"{SMOKE_SAMPLES} training samples, "
                                                          "one seed"])

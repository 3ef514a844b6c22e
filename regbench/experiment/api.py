"""The Python API for notebooks: ``regbench.run(config, **overrides) -> Results``.

It trains exactly what ``regbench run`` trains and writes the same results folder; ``Results``
reads that folder back as pandas DataFrames::

    import regbench
    results = regbench.run("configs/quickstart.yaml", train__epochs=5, seeds="0-2", workers=2)
    results.comparison            # comparison.csv
    results.metrics()             # every run's metrics.csv, with run_id, recipe and seed
    results.verdicts              # {"l2": "inconclusive", ...}
"""
from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from regbench.config.yaml_io import dump_yaml
from regbench.experiment.launch import Launch
from regbench.experiment.runner import ExperimentOutcome, run_experiment
from regbench.results import load_metrics, load_summaries
from regbench.vocabulary import COMPARISON, RUNS_TABLE


@dataclass
class Results:
    """One results folder, read back; ``outcome`` is what the run did (skipped, exit code)."""

    folder: Path
    outcome: Optional[ExperimentOutcome] = None

    @property
    def exit_code(self) -> int:
        return self.outcome.exit_code if self.outcome else 0

    @property
    def comparison(self):
        import pandas as pd

        return pd.read_csv(self.folder / COMPARISON["csv"])

    @property
    def runs(self):
        import pandas as pd

        return pd.read_csv(self.folder / RUNS_TABLE)

    def metrics(self):
        """Every run's metrics.csv in one frame, with run_id, recipe and seed columns first."""
        import pandas as pd

        frames = []
        for summary in load_summaries(self.folder):
            if "_dir" not in summary:
                continue
            try:
                frame = load_metrics(Path(summary["_dir"]))
            except (OSError, ValueError):     # a run cut before its first epoch, or damaged
                continue
            frame.insert(0, "seed", summary["seed"])
            frame.insert(0, "recipe", summary["recipe"])
            frame.insert(0, "run_id", summary["run_id"])
            frames.append(frame)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    @property
    def verdicts(self) -> dict[str, str]:
        """recipe or sweep point -> better / worse / inconclusive against the baseline."""
        table = self.comparison
        return {row["point"]: row["verdict"] for row in table.to_dict("records")
                if isinstance(row.get("verdict"), str)}


def _override(key: str, value: Any) -> str:
    """``train__epochs=5`` -> ``train.epochs=5`` (YAML text, as --set takes it)."""
    return f"{key.replace('__', '.')}={dump_yaml(value).strip()}"


def run(config: str | Path | dict[str, Any], **options: Any) -> Results:
    """Train a config (a YAML path, or the same data as a dict) as ``regbench run`` does.

    Options are those of ``regbench run``, named as :class:`regbench.Launch` names them
    (``out``, ``seeds``, ``workers``, ``executor``, ``address``, ``device``, ``fuse``, ``resume``,
    ``report``, ``metric``, ``min_effect``, ``confirm_seeds``, ``recipes``, ``plugins``, ``trackers``,
    ``mlflow_uri``, ``junit``) and checked the same way. Any other keyword is a key path set
    before validation, like ``--set``, with ``__`` for the dots: ``train__epochs=5`` is
    ``--set train.epochs=5``. Errors raise ``RegbenchError`` with the message the CLI prints;
    the launch's warnings are Python warnings."""
    fields = Launch.fields()
    launch = Launch(**{key: value for key, value in options.items() if key in fields})
    for warning in launch.warnings:
        warnings.warn(warning, stacklevel=2)
    settings = [_override(key, value) for key, value in options.items() if key not in fields]
    if isinstance(config, dict):
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"{config.get('name', 'experiment')}.yaml"
            path.write_text(dump_yaml(config))
            return _results(run_experiment(path, launch, overrides=settings))
    return _results(run_experiment(Path(config), launch, overrides=settings))


def _results(outcome: ExperimentOutcome) -> Results:
    """The headline folder: the confirmation's, when there is one."""
    final = outcome.confirmation or outcome
    return Results(folder=final.results_dir, outcome=outcome)

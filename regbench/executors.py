"""Executors: where runs train. Each yields (spec, RunResult) to the driver, which writes."""
from __future__ import annotations

from typing import Any, Iterable, Iterator, Optional

from regbench.errors import RegbenchError


class SequentialExecutor:
    """Runs one after another in this process (epoch-level progress)."""

    def run(self, specs: list[dict[str, Any]], threads: int, progress=None) -> Iterator:
        from regbench.experiment import execute_run

        for spec in specs:
            if progress is not None:
                progress.run_started(spec)
            on_epoch = progress.epoch if progress is not None else None
            yield spec, execute_run(spec, threads, on_epoch)

    def close(self) -> None:
        pass


def make_executor(name: str, workers: int = 1, address: Optional[str] = None):
    if name == "local" and workers <= 1:
        return SequentialExecutor()
    raise RegbenchError(f"--executor {name} with --workers {workers}: not available yet")

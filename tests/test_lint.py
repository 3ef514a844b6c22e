"""The code passes ruff's pyflakes and import-order rules (configured in pyproject.toml)."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import REPO


def test_ruff_finds_nothing():
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (it comes with the dev extra: pip install -e '.[dev]')")
    found = subprocess.run([ruff, "check", "--no-cache", "regbench", "tests", "benchmarks",
                            "tools", "examples"], cwd=REPO, capture_output=True, text=True)
    assert found.returncode == 0, found.stdout + found.stderr

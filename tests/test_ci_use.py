"""regbench in a CI pipeline: exit codes, `--junit FILE` read back by an XML parser, and
`sweep --smoke`."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from typer.testing import CliRunner

from regbench.cli import app
from tests.conftest import digits_yaml, write_config

runner = CliRunner()

DIVERGING = ("  l2: {l2: {lambda: 1.0}}\n"
             "  boom: {train: {optimizer: {name: sgd, lr: 1.0e+12}}}\n")


def test_junit_has_one_case_per_run_and_diverged_runs_fail(tmp_path: Path):
    config = write_config(tmp_path / "ci.yaml", digits_yaml("ci", DIVERGING, epochs=2))
    junit = tmp_path / "report.xml"
    result = runner.invoke(app, ["run", str(config), "--out", str(tmp_path / "r"),
                                 "--junit", str(junit), "--no-report"])
    assert result.exit_code == 1, result.output      # a run did not complete: exit 1
    root = ET.parse(junit).getroot()
    suite = root.find("testsuite")
    assert suite.get("name") == "ci" and suite.get("tests") == "6"
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert set(cases) == {f"{r}__seed={s}" for r in ("baseline", "l2", "boom") for s in (0, 1)}
    failed = {name for name, c in cases.items() if c.find("failure") is not None}
    assert failed == {"boom__seed=0", "boom__seed=1"}
    assert root.get("failures") == suite.get("failures") == "2"
    message = cases["boom__seed=0"].find("failure").get("message")
    stored = json.loads((tmp_path / "r" / "ci" / "runs" / "boom__seed=0" / "summary.json")
                        .read_text())
    assert stored["status"] == "diverged" and "diverged" in message
    for name in ("baseline__seed=0", "l2__seed=1"):
        run = json.loads((tmp_path / "r" / "ci" / "runs" / name / "summary.json").read_text())
        assert float(cases[name].get("time")) == round(run["seconds"], 3)
        assert cases[name].find("system-out").text.startswith("diagnosis: ")


def test_junit_of_a_clean_run_passes_and_a_bad_path_is_refused_first(tmp_path: Path):
    config = write_config(tmp_path / "ok.yaml",
                          digits_yaml("ok", "  l2: {l2: {lambda: 1.0}}\n", epochs=1))
    bad = runner.invoke(app, ["run", str(config), "--out", str(tmp_path / "r"),
                              "--junit", str(tmp_path / "missing" / "j.xml")])
    assert bad.exit_code == 2 and "--junit" in bad.output
    assert not (tmp_path / "r").exists()                  # refused before anything is written
    junit = tmp_path / "j.xml"
    result = runner.invoke(app, ["run", str(config), "--out", str(tmp_path / "r"),
                                 "--junit", str(junit), "--no-report"])
    assert result.exit_code == 0, result.output
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("tests") == "4" and suite.get("failures") == "0"
    # rerun: every run resumes from its folder and is still reported, passing
    again = runner.invoke(app, ["run", str(config), "--out", str(tmp_path / "r"),
                                "--junit", str(junit), "--no-report"])
    assert again.exit_code == 0
    assert ET.parse(junit).getroot().find("testsuite").get("tests") == "4"


def test_sweep_smoke_runs_one_epoch_into_its_own_folder(tmp_path: Path):
    config = write_config(tmp_path / "sw.yaml",
                          digits_yaml("sw", "  l2: {l2: {lambda: 1.0}}\n", epochs=3))
    junit = tmp_path / "j.xml"
    result = runner.invoke(app, ["sweep", str(config), "--param",
                                 "recipes.l2.l2.lambda=0.1,1,10", "--smoke", "--out",
                                 str(tmp_path / "r"), "--junit", str(junit), "--no-report"])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "r" / "sw").exists()
    runs = sorted(p.name for p in (tmp_path / "r" / "sw-smoke" / "runs").iterdir())
    assert runs == ["baseline__seed=0", "l2__lambda=0.1__seed=0"], runs   # first value, one seed
    metrics = (tmp_path / "r" / "sw-smoke" / "runs" / runs[1] / "metrics.csv").read_text()
    assert len(metrics.strip().splitlines()) == 2                       # header + 1 epoch
    assert ET.parse(junit).getroot().find("testsuite").get("name") == "sw-smoke"

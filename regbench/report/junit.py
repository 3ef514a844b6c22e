"""JUnit XML of an experiment's runs (``regbench run --junit FILE``), for CI systems.

One ``<testsuite>`` per experiment (a ``--confirm-seeds`` stage is a second one), one
``<testcase>`` per planned run: ``completed`` passes; ``failed``, ``diverged`` and a damaged
summary are failures carrying the run's message; a run that did not finish or never started
(Ctrl-C) is skipped. The file is written atomically, so a CI step never reads half of one.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Iterable

from regbench.analysis.diagnose import label
from regbench.errors import RegbenchError
from regbench.results import DAMAGED, load_summaries, write_output

FAILURES = ("failed", "diverged", DAMAGED)


def _message(summary: dict[str, Any]) -> str:
    status = summary.get("status", "?")
    error = summary.get("error")
    if status == "diverged":
        epoch = summary.get("stopped_epoch")
        return error or f"diverged: the loss became NaN/inf (epoch {epoch})"
    return error or f"run {status}"


def xml_text(text: str) -> str:
    """``text`` without the characters XML 1.0 forbids (control characters a failure message
    may carry, e.g. from a terminal's colour codes), which would make the whole report invalid
    for the CI system: each shown as its code point."""
    return "".join(ch if ch in "\t\n\r" or (0x20 <= ord(ch) <= 0xD7FF)
                   or (0xE000 <= ord(ch) <= 0xFFFD) or (0x10000 <= ord(ch) <= 0x10FFFF)
                   else f"\\x{ord(ch):02x}" for ch in text)


def testsuite(name: str, results_dir: Path, run_ids: Iterable[str]) -> ET.Element:
    """The suite of one experiment: its planned runs in plan order, from their run folders."""
    try:      # a folder with no finished run yet (Ctrl-C during the first) holds none
        stored = {s["run_id"]: s for s in load_summaries(results_dir)}
    except RegbenchError:
        stored = {}
    suite = ET.Element("testsuite", name=name)
    counts = {"tests": 0, "failures": 0, "skipped": 0}
    total = 0.0
    for run_id in run_ids:
        summary = stored.get(run_id)
        seconds = max(0.0, float((summary or {}).get("seconds") or 0.0))   # a clock step back
        total += seconds
        case = ET.SubElement(suite, "testcase", classname=name, name=run_id,
                             time=f"{seconds:.3f}")
        counts["tests"] += 1
        status = summary.get("status") if summary else None
        if status in FAILURES:
            counts["failures"] += 1
            message = xml_text(_message(summary))
            failure = ET.SubElement(case, "failure", message=message, type=status)
            failure.text = message
        elif status != "completed":
            counts["skipped"] += 1
            ET.SubElement(case, "skipped", message=f"run {status or 'not started'}: "
                          "run the same command again to resume")
        else:
            if isinstance(summary.get("verdict"), dict):
                ET.SubElement(case, "system-out").text = f"diagnosis: {label(summary['verdict'])}"
    suite.set("tests", str(counts["tests"]))
    suite.set("failures", str(counts["failures"]))
    suite.set("errors", "0")
    suite.set("skipped", str(counts["skipped"]))
    suite.set("time", f"{total:.3f}")
    return suite


def write_junit(path: Path, suites: list[ET.Element]) -> None:
    root = ET.Element("testsuites")
    for key in ("tests", "failures", "errors", "skipped"):
        root.set(key, str(sum(int(s.get(key, 0)) for s in suites)))
    root.extend(suites)
    ET.indent(root)
    write_output(Path(path), '<?xml version="1.0" encoding="utf-8"?>\n'
                 + ET.tostring(root, encoding="unicode") + "\n")

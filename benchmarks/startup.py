"""Start-up cost per command, against `python -c "import torch"` measured in the same run.

    python benchmarks/startup.py [--rounds 3]

Each round runs, as a new user would, in fresh processes and interleaved so that a noisy
machine slows every one alike: `python -c "import torch"`, a smoke run of
configs/smoke/digits.yaml (`--smoke --no-report`, then with its report), and the read-only
commands (`--help`, `list`, `compare`, `diagnose`, `report`) on the smoke's results. Prints the
median wall time of each, its ratio to importing torch, and for the smoke run the time over
`import torch` + its training time (the runs' own seconds, from their summaries): the target is
at most 1 s. Then `-X importtime` of one smoke run: the slowest imports, and whether the
compiler stack (torch._dynamo) or scikit-learn was imported.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "configs" / "smoke" / "digits.yaml"


def wall(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=REPO)
    return time.perf_counter() - started


def regbench(*args: str) -> list[str]:
    return [sys.executable, "-m", "regbench", *args]


def training_seconds(results: Path) -> float:
    return sum(json.loads(p.read_text())["seconds"] for p in results.glob("runs/*/summary.json"))


def slowest_imports(out: Path) -> tuple[list[tuple[float, str]], set[str]]:
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "regbench", "run",
                           str(SMOKE), "--smoke", "--no-report", "--fresh", "--out", str(out)],
                          capture_output=True, text=True, cwd=REPO, check=True)
    rows = []
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", line)
        if match and not match.group(3):            # top-level imports only
            rows.append((int(match.group(2)) / 1e6, match.group(4)))
    names = {m.group(1) for m in re.finditer(r"\| +(\S+)$", done.stderr, re.M)}
    return sorted(rows, reverse=True)[:8], names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    times: dict[str, list[float]] = {}
    train: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        results = out / "smoke_digits-smoke"
        commands = {
            "python -c 'import torch'": [sys.executable, "-c", "import torch"],
            "run --smoke --no-report": regbench("run", str(SMOKE), "--smoke", "--no-report",
                                                "--fresh", "--out", str(out)),
            "run --smoke (with report)": regbench("run", str(SMOKE), "--smoke", "--fresh",
                                                  "--out", str(out)),
            "--help": regbench("--help"),
            "list": regbench("list"),
            "compare": regbench("compare", str(results)),
            "diagnose": regbench("diagnose", str(results)),
            "report": regbench("report", str(results)),
        }
        for _ in range(args.rounds):
            for name, command in commands.items():
                times.setdefault(name, []).append(wall(command))
                if name == "run --smoke --no-report":
                    train.append(training_seconds(results))
        imports, names = slowest_imports(out / "importtime")
    torch_s = statistics.median(times["python -c 'import torch'"])
    print(f"{args.rounds} rounds, medians (fresh processes, interleaved):")
    for name, values in times.items():
        print(f"  {name:28s} {statistics.median(values):6.2f} s   "
              f"{statistics.median(values) / torch_s:5.2f}× import torch")
    smoke = statistics.median(times["run --smoke --no-report"])
    trained = statistics.median(train)
    print(f"smoke run: training {trained:.2f} s; over import torch + training: "
          f"{smoke - torch_s - trained:+.2f} s (target ≤ +1 s)")
    print("slowest top-level imports of a smoke run (s, cumulative):")
    for seconds, name in imports:
        print(f"  {seconds:6.2f}  {name}")
    for heavy in ("torch._dynamo", "sklearn", "matplotlib", "ray"):
        print(f"  {heavy}: {'imported' if heavy in names else 'not imported'}")


if __name__ == "__main__":
    main()

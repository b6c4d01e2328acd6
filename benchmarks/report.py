"""`interp report` end to end on a shipped model, with the time of every step.

Runs the command exactly as a user types it (a fresh process: imports, loading,
analyses, figures, atomic write), ``--repeat`` times, and prints the wall-clock
time of each run, the best, its ratio to the target, and the per-step breakdown
the report records in report.json (``timings``). Default settings: 400 held-out
examples, the sweep over the full shift range, attributions of 2 samples at 5
shifts. Target: under 30 s on 2 CPU cores.

    python benchmarks/report.py [--model trained/seed_cnn.pt] [--repeat 1]
        [--target 30] [-- extra interp report options, e.g. --samples 200]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_once(model: Path, out: Path, extra: list[str]) -> tuple[float, dict[str, float]]:
    """Wall-clock seconds of one `interp report` process, and the report's own timings."""
    cmd = [sys.executable, "-c", "from interp.cli.main import main; main()", "report", str(model),
           "--out", str(out), "--force", "--quiet", *extra]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"interp report failed ({done.returncode}):\n{done.stderr}")
    timings = json.loads((out / "report.json").read_text())["timings"]
    return seconds, timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "trained" / "seed_cnn.pt")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--target", type=float, default=30.0, help="seconds")
    parser.add_argument("extra", nargs="*", help="options passed to interp report (after --)")
    args = parser.parse_args()
    if not args.model.exists():
        sys.exit(f"{args.model} does not exist; train it with `interp train` or pass --model")
    threads = os.environ.get("OMP_NUM_THREADS", "default")
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"interp report {args.model} {' '.join(args.extra)}  ({os.cpu_count()} CPUs, "
          f"OMP_NUM_THREADS {threads}, load average {load} before the run)")  # fmt: skip
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            seconds, timings = run_once(args.model, Path(tmp) / "report", args.extra)
            runs.append((seconds, timings))
            print(f"run {i + 1}: {seconds:6.1f} s end to end")
    best, timings = min(runs, key=lambda r: r[0])
    total = timings.get("total", 0.0)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"load average after: {load} (other work on the machine slows every step)")
    print(
        f"\nbest {best:.1f} s vs target {args.target:.0f} s: "
        f"{best / args.target:.2f}x the target ({'met' if best <= args.target else 'MISSED'})"
    )
    print(f"\n{'step':<14}{'seconds':>9}{'share':>8}")
    for step, sec in timings.items():
        if step != "total":
            print(f"{step:<14}{sec:>9.2f}{sec / best:>8.0%}")
    overhead = best - total
    print(f"{'analyses':<14}{total:>9.2f}{total / best:>8.0%}   (report() call, all steps)")
    print(
        f"{'start/write':<14}{overhead:>9.2f}{overhead / best:>8.0%}   "
        "(imports, loading the model, writing files)"
    )


if __name__ == "__main__":
    main()

"""Times the demo and the weekly retrain per asset and in total, and records peak memory.

    make bench                              # default size: 50,000 videos, 1,000 users, 100,000 likes
    .venv/bin/python -m bench.demo_benchmark --likes 1000000 --users 10000   # larger

Each run uses a fresh state folder (embedded PostgreSQL, MLflow store, Dagster instance), runs
`twotower demo` (generate + load + the weekly retrain) and then `twotower retrain` alone (what the
schedule runs every week), and writes bench/results/demo-<date>.json plus a Markdown table.
Peak memory is the maximum resident set of the `twotower` process (the whole job runs in it);
the PostgreSQL server's own memory is not included.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from bench.machine import add_size_arguments, machine

RESULTS = Path(__file__).resolve().parent / "results"
TWOTOWER = str(Path(sys.executable).with_name("twotower"))
STEP_LINE = re.compile(r"^\s{2}(\w+)\s+([\d.]+) s$")


# Runs the command in a fresh interpreter that reports the peak RSS of its only child, so each
# measurement stands alone (ru_maxrss of children is a maximum over all children ever waited for).
_MEASURE = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def timed(args: list[str], env: dict[str, str]) -> dict[str, object]:
    """Run a twotower command; wall time, per-step seconds and its peak RSS."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", _MEASURE, TWOTOWER, *args], env=env, capture_output=True,
                            text=True)
    seconds = time.perf_counter() - started
    peak_kb = int(re.findall(r"PEAK_RSS_KB (\d+)", result.stderr)[-1])
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
        raise SystemExit(f"`twotower {' '.join(args)}` failed with exit code {result.returncode}")
    steps = {}
    for line in result.stdout.splitlines():
        match = STEP_LINE.match(line)
        if match and match[1] != "total":
            steps[match[1]] = float(match[2])
    return {
        "wall_seconds": round(seconds, 1),
        "steps_seconds": steps,
        "peak_rss_gib": round(peak_kb / 1024 / 1024, 2),
        "output_tail": result.stdout.splitlines()[-40:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_size_arguments(parser)
    parser.add_argument("--keep-state", action="store_true", help="keep the state folder for inspection")
    options = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="twotower-bench-"))
    env = {k: v for k, v in os.environ.items() if k not in ("TWOTOWER_DATABASE_URL", "MLFLOW_TRACKING_URI",
                                                            "DAGSTER_HOME")}
    env["TWOTOWER_HOME"] = str(state / "home")
    size = ["--videos", str(options.videos), "--users", str(options.users), "--likes", str(options.likes),
            "--seed", str(options.seed)]
    try:
        demo = timed(["demo", *size], env)
        retrain = timed(["retrain"], env)
    finally:
        subprocess.run([TWOTOWER, "db", "stop"], env=env, capture_output=True)
        if not options.keep_state:
            shutil.rmtree(state, ignore_errors=True)

    record = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "size": {"videos": options.videos, "users": options.users, "likes": options.likes},
        "machine": machine(),
        "demo": demo,
        "weekly_retrain": retrain,
    }
    RESULTS.mkdir(exist_ok=True)
    name = f"demo-{options.videos}v-{options.users}u-{options.likes}l.json"
    (RESULTS / name).write_text(json.dumps(record, indent=2) + "\n")

    print(f"\n{options.videos:,} videos, {options.users:,} users, {options.likes:,} likes on "
          f"{record['machine']['cores']} cores ({record['machine']['cpu']})\n")
    print("| asset | weekly retrain (s) | demo run (s) |\n|---|---:|---:|")
    for step in retrain["steps_seconds"]:
        print(f"| {step} | {retrain['steps_seconds'][step]:.1f} | {demo['steps_seconds'].get(step, 0):.1f} |")
    print(f"| **total wall time** | **{retrain['wall_seconds']:.1f}** | **{demo['wall_seconds']:.1f}** |")
    print(f"| peak memory (GiB) | {retrain['peak_rss_gib']} | {demo['peak_rss_gib']} |")
    print(f"\nwritten to {RESULTS / name}")


if __name__ == "__main__":
    main()

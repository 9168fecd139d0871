"""How heavy the two UIs are once started, and whether Dagster keeps restarting its code server.

    .venv/bin/python -m bench.ui_benchmark [--minutes 5] [--state FOLDER]

Starts `twotower ui` (the Dagster webserver, daemon and shared code server, and the MLflow UI) on a
state folder (a kept one, or a fresh small demo run), samples every 10 s for ``--minutes`` the
processes it started: their resident memory (Dagster and MLflow apart) and every code-server
process id seen, then stops it with SIGTERM. Left alone, Dagster's daemon starts a new code server
every 60 s (it reloads its workspace); the shared code server of `twotower ui` should be the only
one, for the whole run. Writes bench/results/ui.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.machine import machine

RESULTS = Path(__file__).resolve().parent / "results"
TWOTOWER = str(Path(sys.executable).with_name("twotower"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _tree(pid: int) -> list[tuple[int, str, int]]:
    """(pid, command line, resident KiB) of every descendant of ``pid``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    out, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        todo += children.get(child, [])
        try:
            command = (Path("/proc") / str(child) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            status = (Path("/proc") / str(child) / "status").read_text()
        except OSError:
            continue
        rss = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
        out.append((child, command, rss))
    return out


def _wait(url: str, seconds: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return time.monotonic() - started
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"{url} did not answer within {seconds} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--state", type=Path, default=None, help="a state folder with a trained model")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k not in ("TWOTOWER_DATABASE_URL", "MLFLOW_TRACKING_URI",
                                                              "DAGSTER_HOME")}
    state = args.state or Path(tempfile.mkdtemp(prefix="twotower-ui-")) / "state"
    env["TWOTOWER_HOME"] = str(state)
    if args.state is None:
        print("a small demo run for the UIs to show ...", file=sys.stderr, flush=True)
        subprocess.run([TWOTOWER, "demo", "--videos", "3000", "--users", "300", "--likes", "15000"], env=env,
                       check=True, capture_output=True)
    dagster_port, mlflow_port = _free_port(), _free_port()
    started = time.monotonic()
    ui = subprocess.Popen([TWOTOWER, "ui", "--port", str(dagster_port), "--mlflow-port", str(mlflow_port)], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        ready = {"Dagster": _wait(f"http://127.0.0.1:{dagster_port}/server_info", 300),
                 "MLflow": _wait(f"http://127.0.0.1:{mlflow_port}/health", 300)}
        ready = {name: round(seconds, 1) for name, seconds in ready.items()}
        code_servers: set[int] = set()
        samples = []
        deadline = time.monotonic() + args.minutes * 60
        while time.monotonic() < deadline:
            tree = _tree(ui.pid)
            code_servers |= {pid for pid, command, _ in tree if "code-server start" in command or " api grpc " in command}
            mlflow = sum(rss for _, command, rss in tree if "mlflow" in command or "uvicorn" in command or "huey" in command)
            dagster = sum(rss for _, command, rss in tree) - mlflow
            samples.append({"seconds": round(time.monotonic() - started), "dagster_mb": round(dagster / 1024),
                            "mlflow_mb": round(mlflow / 1024), "processes": len(tree)})
            time.sleep(10)
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=60)
    steady = samples[len(samples) // 2:]
    result = {
        "machine": machine(),
        "minutes": args.minutes,
        "seconds_until_ready": ready,
        "code_server_processes_seen": len(code_servers),
        "steady_dagster_mb": statistics.median(s["dagster_mb"] for s in steady),
        "steady_mlflow_mb": statistics.median(s["mlflow_mb"] for s in steady),
        "samples": samples,
    }
    result["steady_total_mb"] = result["steady_dagster_mb"] + result["steady_mlflow_mb"]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ui.json").write_text(json.dumps(result, indent=1))
    print("| | Dagster (webserver, daemon, code server) | MLflow | both |\n|---|---:|---:|---:|")
    print(f"| steady resident memory over {args.minutes:g} min | {result['steady_dagster_mb']:.0f} MB | "
          f"{result['steady_mlflow_mb']:.0f} MB | {result['steady_total_mb']:.0f} MB |")
    print(f"| seconds until it answers | {ready['Dagster']} | {ready['MLflow']} | |")
    print(f"\ncode-server processes seen over the run: {len(code_servers)} (the shared server and its child)")


if __name__ == "__main__":
    main()

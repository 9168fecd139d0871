"""What every benchmark shares: the demo size it runs at, and the machine it ran on (recorded next to
its figures)."""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

from twotower_pipeline.demo_data import DemoSize


def add_size_arguments(parser: argparse.ArgumentParser) -> None:
    """--videos, --users, --likes and --seed of the demo data; the defaults are `twotower demo`'s."""
    default = DemoSize()
    for name in ("videos", "users", "likes", "seed"):
        parser.add_argument(f"--{name}", type=int, default=getattr(default, name))


def demo_size(options: argparse.Namespace) -> DemoSize:
    return DemoSize(options.videos, options.users, options.likes, options.seed)


def machine() -> dict[str, object]:
    cpu, memory_kb = "unknown", 0
    try:
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), cpu)
        memory_kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                             if line.startswith("MemTotal")))
    except (OSError, StopIteration, ValueError):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(memory_kb / 1024 / 1024, 1),
            "os": platform.platform(), "python": platform.python_version()}

"""Training throughput, time per epoch, total time, peak memory and ONNX model sizes.

    .venv/bin/python -m bench.training_benchmark                         # default size
    .venv/bin/python -m bench.training_benchmark --users 10000 --likes 1000000     # 10x likes
    .venv/bin/python -m bench.training_benchmark --videos 500000 --users 10000 --likes 1000000  # 10x catalogue

Demo data is generated in memory (no database), in the catalogue format the pipeline reads;
the model is trained with the default configuration (in-batch softmax, early stopping), without
permutation importance, then both towers are exported with tf2onnx and their sizes recorded.
Writes bench/results/training-<videos>v-<users>u-<likes>l.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.machine import add_size_arguments, demo_size, machine
from twotower_pipeline.demo_data import generate_demo_data
from twotower_pipeline.model.config import TrainingConfig
from twotower_pipeline.model.export import export_tower
from twotower_pipeline.model.training import train_two_tower

RESULTS = Path(__file__).resolve().parent / "results"
MAX_ONNX_MB = 50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_size_arguments(parser)
    options = parser.parse_args()

    started = time.perf_counter()
    data = generate_demo_data(demo_size(options),
                              datetime(2026, 3, 1, 12, tzinfo=UTC))
    catalogue, likes, profiles = data.pipeline_frames()
    data = None
    generated = time.perf_counter() - started

    epochs: list[float] = []
    trained = train_two_tower(catalogue, likes, TrainingConfig(), importance=False, profiles=profiles,
                              on_epoch_end=lambda epoch, logs: epochs.append(time.perf_counter()))
    with tempfile.TemporaryDirectory() as directory:
        user = export_tower(trained.user_tower, Path(directory) / "user_tower.onnx").stat().st_size / 1e6
        item = export_tower(trained.item_tower, Path(directory) / "item_tower.onnx").stat().st_size / 1e6
    stats = trained.stats
    record = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "size": {"videos": options.videos, "users": options.users, "likes": options.likes},
        "machine": machine(),
        "generate_seconds": round(generated, 1),
        "training_examples": int(stats["training_examples"]),
        "epochs_run": int(stats["epochs_run"]),
        "best_epoch": int(stats["best_epoch"]),
        "seconds_per_epoch": round(stats["seconds_per_epoch"], 1),
        "examples_per_second": round(stats["examples_per_second"]),
        "fit_seconds": round(stats["fit_seconds"], 1),
        "train_and_evaluate_seconds": round(stats["total_seconds"], 1),
        "video_vocabulary": int(stats["video_vocabulary"]),
        "onnx_user_tower_mb": round(user, 2),
        "onnx_item_tower_mb": round(item, 2),
        "onnx_under_50_mb": user <= MAX_ONNX_MB and item <= MAX_ONNX_MB,
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024, 2),
        "recall_at_50": round(trained.metrics["recall_at_50"], 4),
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"training-{options.videos}v-{options.users}u-{options.likes}l.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()

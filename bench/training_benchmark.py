"""Training throughput, time per epoch, where a training's time goes, peak memory and ONNX sizes.

    .venv/bin/python -m bench.training_benchmark                         # default size, 3 repeats
    .venv/bin/python -m bench.training_benchmark --users 10000 --likes 1000000 --repeats 1     # 10x likes
    .venv/bin/python -m bench.training_benchmark --videos 500000 --users 10000 --likes 1000000 --repeats 1
    .venv/bin/python -m bench.training_benchmark --set batch_size=1024 --set learning_rate=0.004   # a variant

Demo data is generated in memory (no database), in the catalogue format the pipeline reads; the
model is trained ``--repeats`` times with the default configuration (in-batch softmax, early
stopping; same seed, so the same epochs up to TensorFlow's non-determinism), without permutation
importance, and the median and the range (min, max) of each timing are reported. Then permutation
importance is timed once (as the weekly job runs it) and both towers are exported with tf2onnx,
their sizes and the export's seconds recorded. The machine's load average is recorded next to the
figures: on a shared machine the timings are only as good as it was quiet.
Writes bench/results/training-<videos>v-<users>u-<likes>l.json (a variant: -<key>-<value>... appended).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.machine import add_size_arguments, demo_size, machine
from twotower_pipeline.demo_data import generate_demo_data
from twotower_pipeline.model.config import TrainingConfig
from twotower_pipeline.model.export import export_tower
from twotower_pipeline.model.importance import permutation_importance
from twotower_pipeline.model.training import embed_items, embed_users, train_two_tower

RESULTS = Path(__file__).resolve().parent / "results"
MAX_ONNX_MB = 50
TIMINGS = ("examples_per_second", "seconds_per_epoch", "fit_seconds", "prepare_seconds", "evaluation_seconds",
           "baselines_seconds", "total_seconds")


def spread(values: list[float], digits: int = 1) -> dict[str, object]:
    """Median, min and max of repeated measurements, and each of them."""
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits), "runs": [round(v, digits) for v in values]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_size_arguments(parser)
    parser.add_argument("--repeats", type=int, default=3, help="trainings measured (default 3)")
    parser.add_argument("--no-importance", action="store_true", help="skip timing permutation importance")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a TrainingConfig field for a variant (VALUE as JSON), e.g. batch_size=1024")
    options = parser.parse_args()
    if options.repeats < 1:
        parser.error("--repeats must be at least 1")
    overrides = {}
    for item in options.set:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value)

    load_before = os.getloadavg()
    started = time.perf_counter()
    data = generate_demo_data(demo_size(options), datetime(2026, 3, 1, 12, tzinfo=UTC))
    catalogue, likes, profiles = data.pipeline_frames()
    data = None
    generated = time.perf_counter() - started

    config = dataclasses.replace(TrainingConfig(), **overrides)
    runs = []
    for repeat in range(options.repeats):
        trained = train_two_tower(catalogue, likes, config, importance=False, profiles=profiles)
        runs.append(trained)
        print(f"run {repeat + 1}/{options.repeats}: " + ", ".join(
            f"{key} {trained.stats[key]:.1f}" for key in ("examples_per_second", "fit_seconds", "epochs_run")),
            flush=True)
    trained = runs[-1]
    importance_seconds = None
    if not options.no_importance:
        importance_started = time.perf_counter()
        permutation_importance(trained.prepared, lambda x: embed_users(trained.user_tower, x),
                               lambda x: embed_items(trained.item_tower, x), repeats=config.importance_repeats,
                               seed=config.seed, max_users=config.importance_users)
        importance_seconds = time.perf_counter() - importance_started
    with tempfile.TemporaryDirectory() as directory:
        export_started = time.perf_counter()
        user = export_tower(trained.user_tower, Path(directory) / "user_tower.onnx").stat().st_size / 1e6
        item = export_tower(trained.item_tower, Path(directory) / "item_tower.onnx").stat().st_size / 1e6
        export_seconds = time.perf_counter() - export_started
    stats = trained.stats
    timings = {key: spread([run.stats[key] for run in runs], 0 if key == "examples_per_second" else 1)
               for key in TIMINGS}
    record = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "size": {"videos": options.videos, "users": options.users, "likes": options.likes},
        "machine": machine(),
        "load_average_1_5_15_min": {"before": [round(v, 2) for v in load_before],
                                    "after": [round(v, 2) for v in os.getloadavg()]},
        "config": {"batch_size": config.batch_size, "learning_rate": config.learning_rate,
                   "learning_rate_schedule": config.learning_rate_schedule, "warmup_epochs": config.warmup_epochs,
                   "dense_embedding_gradients": config.dense_embedding_gradients, "epochs": config.epochs,
                   "min_epochs": config.min_epochs, "early_stopping_patience": config.early_stopping_patience},
        "variant_of_the_defaults": overrides,
        "repeats": options.repeats,
        "generate_seconds": round(generated, 1),
        "training_examples": int(stats["training_examples"]),
        "epochs_run": [int(run.stats["epochs_run"]) for run in runs],
        "best_epoch": [int(run.stats["best_epoch"]) for run in runs],
        "examples_per_second": timings["examples_per_second"],
        "seconds_per_epoch": timings["seconds_per_epoch"],
        "fit_seconds": timings["fit_seconds"],
        # One training, step by step (median of the repeats): the holdout, examples, feature spec and
        # cold-start tuning; the fit; the served evaluation and the baselines; then, once, importance
        # and the ONNX export of both towers (with the parity check).
        "breakdown_seconds": {
            "prepare": timings["prepare_seconds"]["median"],
            "fit": timings["fit_seconds"]["median"],
            "served_evaluation": round(timings["evaluation_seconds"]["median"]
                                       - timings["baselines_seconds"]["median"], 1),
            "baselines": timings["baselines_seconds"]["median"],
            "importance": None if importance_seconds is None else round(importance_seconds, 1),
            "onnx_export": round(export_seconds, 1),
        },
        "train_and_evaluate_seconds": timings["total_seconds"],
        "video_vocabulary": int(stats["video_vocabulary"]),
        "onnx_user_tower_mb": round(user, 2),
        "onnx_item_tower_mb": round(item, 2),
        "onnx_under_50_mb": user <= MAX_ONNX_MB and item <= MAX_ONNX_MB,
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024, 2),
        "recall_at_50": [round(run.metrics["recall_at_50"], 4) for run in runs],
    }
    RESULTS.mkdir(exist_ok=True)
    variant = "".join(f"-{key}-{value}" for key, value in overrides.items())
    out = RESULTS / f"training-{options.videos}v-{options.users}u-{options.likes}l{variant}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
